"""The model catalog shared by both frameworks: names, descriptions, reference counts.

Each backend's `models.py` registers one builder per catalog name with its own
`ModelRegistry`; a test checks that both registries cover exactly this catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_INPUT_SHAPE = (48, 48, 1)  # (height, width, channels)
DEFAULT_NUM_CLASSES = 7


@dataclass(frozen=True)
class ModelInfo:
    """A catalog entry.

    Attributes:
        name: registry name, identical in both frameworks.
        summary: one line for `--list-models`.
        card: True for the design card's models (the default benchmark set).
        reference_params: DESIGN §3 trainable parameters at 48×48×1 and 7 classes.
    """

    name: str
    summary: str
    card: bool
    reference_params: int | None


CATALOG: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "proposed_cnn",
            "3×[Conv-BN-ReLU ×2 + MaxPool] (32/64/128), Conv 256 + Dropout, GAP, Linear",
            True,
            584_807,
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(CATALOG)
CARD_MODELS: tuple[str, ...] = tuple(n for n, i in CATALOG.items() if i.card)


def check_model_name(name: str) -> None:
    """Raises ValueError naming the valid models if `name` is not in the catalog."""
    if name not in CATALOG:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")


def check_model_args(input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Validates the arguments every model builder takes, in both frameworks."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2. Received: num_classes={num_classes!r}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            "input_shape must be (height, width, channels) of positive sizes. "
            f"Received: input_shape={input_shape!r}"
        )


class ModelRegistry:
    """A name → builder table for one framework (timm's `register_model` pattern).

    Builders take `(input_shape, num_classes)` with input_shape = (H, W, C).
    """

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, builder: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: registers `builder` under its function name (a catalog name)."""
        check_model_name(builder.__name__)
        self._builders[builder.__name__] = builder
        return builder

    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def create(self, name: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        """Builds model `name` for `input_shape` (H, W, C) and `num_classes`."""
        check_model_name(name)
        check_model_args(input_shape, num_classes)
        if name not in self._builders:
            raise ValueError(f"model {name!r} has no {self.framework} definition yet")
        return self._builders[name](input_shape=tuple(input_shape), num_classes=num_classes)
