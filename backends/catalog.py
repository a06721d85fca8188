"""The model catalog shared by both frameworks: every fact of a model but its framework code.

Each backend's `models.py` registers one builder per catalog name with its own
`ModelRegistry`; a test checks that both registries cover exactly this catalog. What is
shared by both frameworks' definitions lives here: names, descriptions, reference
counts, default dropout rates, stages, the argument checks, and each model's
framework-neutral architecture, which gives its parameter and FLOP counts
(`model_cost`, on backends/flops.py's `Trace`). A new model is one `ModelInfo` here and
one builder in each framework's `models.py` (docs/design.md, "Add a model").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.flops import ModelCost, Trace

DEFAULT_INPUT_SHAPE = (48, 48, 1)  # (height, width, channels)
DEFAULT_NUM_CLASSES = 7


@dataclass(frozen=True)
class ModelInfo:
    """A catalog entry.

    Attributes:
        name: registry name, identical in both frameworks.
        summary: one line for `--list-models`.
        card: True for the design card's models (the default benchmark set).
        reference_params: trainable parameters at 48×48×1 and 7 classes: the design
            card's figures (docs/design.md, Models), and for alexnet, not a card model, this
            suite's own.
        dropout: default dropout rate, None for models without dropout layers.
        stages: the model's stages, in forward order, by canonical name (the module whose
            output the stage is, after its ReLU or attention and before any pooling):
            what `Backend.feature_maps` returns; Grad-CAM (`Backend.grad_cam`) explains
            the last one, the last convolutional stage. Both frameworks' definitions tap
            exactly these (docs/design.md §9).
        architecture: the model once more, framework-neutral: walks a `Trace` from the
            input shape to `num_classes` outputs, which counts its parameters and FLOPs
            (`model_cost`).
    """

    name: str
    summary: str
    card: bool
    reference_params: int
    dropout: float | None
    stages: tuple[str, ...]
    architecture: Callable[[Trace, int], None]


# --- each architecture on shapes alone (backends/flops.py says what counts) ---------------
def _conv_stage(
    t: Trace,
    out: int,
    convs: int,
    batch_norm: bool = True,
    attention_groups: int | None = None,
) -> None:
    for _ in range(convs):
        t.conv(out, 3)
        if batch_norm:
            t.batch_norm()
        t.relu()
    if attention_groups is not None:
        t.shuffle_attention(attention_groups)


def _classifier(t: Trace, num_classes: int, hidden: int = 4096) -> None:
    t.flatten()
    for _ in range(2):
        t.dense(hidden)
        t.relu()
    t.dense(num_classes)


def _proposed_cnn(t: Trace, num_classes: int, attention_groups: int | None = None) -> None:
    for width in (32, 64, 128):
        _conv_stage(t, width, 2, attention_groups=attention_groups)
        t.max_pool(2, 2)
    _conv_stage(t, 256, 1, attention_groups=attention_groups)
    t.global_avg_pool()
    t.dense(num_classes)


def _sanet(t: Trace, num_classes: int) -> None:
    _proposed_cnn(t, num_classes, attention_groups=8)


def _vgg16(t: Trace, num_classes: int) -> None:
    for width, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        _conv_stage(t, width, convs, batch_norm=False)
        t.max_pool(2, 2)
    _classifier(t, num_classes)


def _alexnet(t: Trace, num_classes: int) -> None:
    layers = ((64, 3, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))
    for width, kernel, pool in layers:
        t.conv(width, kernel)
        t.relu()
        if pool:
            t.max_pool(3, 2)
    _classifier(t, num_classes)


def _basic_block(t: Trace, width: int, stride: int) -> None:
    shortcut = _downsample(t, width, stride)
    t.conv(width, 3, stride, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(width, 3, bias=False)
    t.batch_norm()
    t.add(shortcut)
    t.relu()


def _bottleneck(t: Trace, width: int, stride: int) -> None:
    shortcut = _downsample(t, 4 * width, stride)
    t.conv(width, 1, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(width, 3, stride, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(4 * width, 1, bias=False)
    t.batch_norm()
    t.add(shortcut)
    t.relu()


def _downsample(t: Trace, out: int, stride: int) -> Trace:
    shortcut = t.branch()
    if stride != 1 or t.c != out:
        shortcut.conv(out, 1, stride, bias=False)
        shortcut.batch_norm()
    return shortcut


def _resnet(
    t: Trace, num_classes: int, block: Callable[[Trace, int, int], None], layers: tuple
) -> None:
    t.conv(64, 7, 2, bias=False)
    t.batch_norm()
    t.relu()
    t.max_pool(3, 2, pad=1)
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        for i in range(blocks):
            block(t, width, 2 if stage > 0 and i == 0 else 1)
    t.global_avg_pool()
    t.dense(num_classes)


def _resnet18(t: Trace, num_classes: int) -> None:
    _resnet(t, num_classes, _basic_block, (2, 2, 2, 2))


def _resnet50(t: Trace, num_classes: int) -> None:
    _resnet(t, num_classes, _bottleneck, (3, 4, 6, 3))


CATALOG: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "proposed_cnn",
            "3×[Conv-BN-ReLU ×2 + MaxPool] (32/64/128), Conv 256 + Dropout, GAP, Linear",
            True,
            584_807,
            0.5,
            ("block1", "block2", "block3", "block4"),
            _proposed_cnn,
        ),
        ModelInfo(
            "vgg16",
            "VGG-16 (configuration D: 13 conv 3×3, 5 max-pools), Flatten, FC 4096-4096-C",
            True,
            33_624_775,
            0.5,
            ("block1", "block2", "block3", "block4", "block5"),
            _vgg16,
        ),
        ModelInfo(
            "resnet50",
            "ResNet-50 v1.5 (bottlenecks 3-4-6-3, stride on the 3×3 conv), GAP, Linear",
            True,
            23_516_103,
            None,
            ("layer1", "layer2", "layer3", "layer4"),
            _resnet50,
        ),
        ModelInfo(
            "sanet",
            "proposed_cnn + a Shuffle-Attention layer (G=8) after each of its 4 conv stages",
            True,
            584_987,
            0.5,
            ("block1", "block2", "block3", "block4"),
            _sanet,
        ),
        ModelInfo(
            "resnet18",
            "ResNet-18 (basic blocks 2-2-2-2), 7×7/2 stem + 3×3/2 max-pool, GAP, Linear",
            False,
            11_173_831,
            None,
            ("layer1", "layer2", "layer3", "layer4"),
            _resnet18,
        ),
        ModelInfo(
            "alexnet",
            "AlexNet (5 conv 64-192-384-256-256, FC 4096-4096-C), first conv 3×3/1",
            False,
            45_475_527,
            0.5,
            ("conv1", "conv2", "conv3", "conv4", "conv5"),
            _alexnet,
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(CATALOG)
CARD_MODELS: tuple[str, ...] = tuple(n for n, i in CATALOG.items() if i.card)


def model_cost(name: str, input_shape: tuple[int, int, int], num_classes: int) -> ModelCost:
    """Returns the trainable parameters and forward FLOPs of a model at one input shape.

    Args:
        name: a catalog model name.
        input_shape: (height, width, channels).
        num_classes: output classes.

    Returns:
        The ModelCost (FLOPs per image; backends/flops.py says what counts).

    Raises:
        ValueError: unknown model, or an input too small for the model's down-sampling.
    """
    check_model_name(name)
    trace = Trace(name, tuple(input_shape))
    CATALOG[name].architecture(trace, num_classes)
    return trace.cost()


def model_stages(name: str) -> tuple[str, ...]:
    """The stages of model `name`, in forward order (see `ModelInfo.stages`)."""
    check_model_name(name)
    return CATALOG[name].stages


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


def model_options(name: str, dropout: float | None = None) -> dict[str, Any]:
    """Resolves a model's architecture options from the catalog and any overrides.

    Args:
        name: a catalog name.
        dropout: rate for every dropout layer of the model, in [0, 1); None keeps the
            catalog default. Models without dropout layers accept only None or 0.

    Returns:
        The keyword arguments its builders take beyond input_shape and num_classes:
        `{"dropout": rate}` for models with dropout layers, else `{}`.

    Raises:
        ValueError: an invalid rate, or a non-zero rate for a model without dropout.
    """
    check_model_name(name)
    default = CATALOG[name].dropout
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if default is None:
        if dropout:
            raise ValueError(
                f"{name} has no dropout layers, so dropout must be None or 0. "
                f"Received: dropout={dropout!r}"
            )
        return {}
    return {"dropout": default if dropout is None else float(dropout)}


def describe_models(
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> list[dict[str, Any]]:
    """Describes every catalog model at one input shape, without any framework.

    Args:
        input_shape: (height, width, channels).
        num_classes: output classes.

    Returns:
        One dict per model, in catalog order: name, summary, card, params (trainable)
        and flops (forward FLOPs per image, see backends/flops.py).
    """
    check_model_args(input_shape, num_classes)
    rows = []
    for info in CATALOG.values():
        cost = model_cost(info.name, input_shape, num_classes)
        rows.append(
            {
                "name": info.name,
                "summary": info.summary,
                "card": info.card,
                "params": cost.params,
                "flops": cost.flops,
            }
        )
    return rows


class ModelRegistry:
    """A name → builder table for one framework (timm's `register_model` pattern).

    Builders take `(input_shape, num_classes, **model_options(name))` with
    input_shape = (H, W, C).
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

    def create(
        self,
        name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        framework_args: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Any:
        """Builds a model.

        Args:
            name: a catalog name.
            input_shape: (height, width, channels).
            num_classes: output classes.
            framework_args: what this framework's builders take besides the catalog's
                arguments (Flax's `rngs` and compute `dtype`); None: nothing.
            **overrides: options replacing catalog defaults, see `model_options`.

        Returns:
            The framework's model object.

        Raises:
            ValueError: unknown model, invalid arguments, or an input too small for it.
        """
        check_model_name(name)
        check_model_args(input_shape, num_classes)
        options = model_options(name, **overrides)
        # Fails on inputs the model would shrink to nothing, with the same message in both
        # frameworks, before either builds anything.
        model_cost(name, input_shape, num_classes)
        if name not in self._builders:
            raise ValueError(f"model {name!r} has no {self.framework} definition yet")
        return self._builders[name](
            input_shape=tuple(input_shape), num_classes=num_classes, **options,
            **(framework_args or {}),
        )
