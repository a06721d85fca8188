"""The model zoo is the same in both frameworks (docs/design.md §1, Models).

Every model is built once per input shape in each framework (module-scoped fixture;
pytest runs one shape's tests together and frees its models before the next). Weights
are ported through the canonical layout in both directions and the logits compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.base import Backend, TrainConfig  # noqa: E402
from backends.catalog import CATALOG, DEFAULT_INPUT_SHAPE, MODEL_NAMES, model_cost  # noqa: E402
from tests.conftest import calibrated_weights  # noqa: E402

NUM_CLASSES = 7
TOLERANCE = 1e-4  # docs/design.md §1: max |Δlogits| in float32
# Seconds per build and pass in both frameworks on 2 cores: their other input shapes run
# in `make test-slow` (AlexNet at 64×64: a 37M-parameter classifier).
HEAVY = ("vgg16", "resnet50", "alexnet")


def _variant(name: str, shape: tuple[int, int, int]):
    marks = [pytest.mark.slow] if name in HEAVY and shape != DEFAULT_INPUT_SHAPE else []
    return pytest.param((name, shape), id=f"{name}-{'x'.join(map(str, shape))}", marks=marks)


# 64×56 is not square so that an H/W mix-up in the flatten reorder cannot cancel out.
VARIANTS = [
    _variant(name, shape)
    for name in MODEL_NAMES
    for shape in (DEFAULT_INPUT_SHAPE, (64, 64, 3), (64, 56, 1))
]


@dataclass
class Pair:
    """One model built in both frameworks, and the test weights to port between them."""

    name: str
    shape: tuple[int, int, int]
    backends: dict[str, Backend]
    weights: dict[str, np.ndarray]
    x: np.ndarray  # a float32 NHWC test batch, already scaled






@pytest.fixture(scope="module", params=VARIANTS)
def pair(request) -> Pair:
    name, shape = request.param
    # Dropout 0 makes training-mode outputs deterministic; eval mode ignores dropout.
    backends = {b: create_backend(b) for b in ("torch", "tf")}
    for backend in backends.values():
        backend.build(name, shape, NUM_CLASSES, dropout=0.0)
    weights = calibrated_weights(backends["torch"], shape, seed=1)
    x = np.random.default_rng(2).uniform(-1, 1, (4, *shape)).astype(np.float32)
    return Pair(name, shape, backends, weights, x)


def _port(pair: Pair, direction: str) -> tuple[Backend, Backend]:
    """Loads the test weights into the source, then the source's export into the target."""
    source, target = (pair.backends[b] for b in direction.split("->"))
    source.set_weights(pair.weights)
    target.set_weights(source.get_weights())
    return source, target


DIRECTIONS = ["torch->tf", "tf->torch"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_weights_round_trip_exactly(pair: Pair, direction: str) -> None:
    source, target = _port(pair, direction)
    exported = target.get_weights()
    assert set(exported) == set(pair.weights)
    for name, value in pair.weights.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_canonical_layouts_match(pair: Pair) -> None:
    torch_shapes = {k: v.shape for k, v in pair.backends["torch"].get_weights().items()}
    tf_shapes = {k: v.shape for k, v in pair.backends["tf"].get_weights().items()}
    assert tf_shapes == torch_shapes


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_logits_match_after_porting(pair: Pair, direction: str, training: bool) -> None:
    """Eval mode uses the ported BN statistics; training mode the batch's own."""
    source, target = _port(pair, direction)
    expected = source.logits(pair.x, training=training)
    actual = target.logits(pair.x, training=training)
    scale = np.abs(expected).max()
    assert 0.1 < scale < 100, f"test weights give degenerate logits (max |logit| {scale:.3g})"
    diff = np.abs(actual - expected).max()
    assert diff <= TOLERANCE, f"max |Δlogits| {diff:.2e} (max |logit| {scale:.2f})"


def test_trainable_params_match_reference(pair: Pair) -> None:
    expected = model_cost(pair.name, pair.shape, NUM_CLASSES).params
    if pair.shape == DEFAULT_INPUT_SHAPE:
        assert expected == CATALOG[pair.name].reference_params
    for backend in pair.backends.values():
        assert backend.num_trainable_params() == expected, backend.name


def test_flops_match_torch_counter(pair: Pair) -> None:
    """The neutral count's conv/dense part equals torch's counter; the rest is small."""
    model = pair.backends["torch"].model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, pair.shape[2], pair.shape[0], pair.shape[1]))
    counted = counter.get_total_flops() // 2
    cost = model_cost(pair.name, pair.shape, NUM_CLASSES)
    assert cost.matmul_flops == counted
    assert counted <= cost.flops <= 1.02 * counted


def _fit_variant(name: str, backend_name: str):
    # Tracing ResNet-50's TF train step alone takes ~15 s on 2 cores, AlexNet's steps 10 s or
    # more in each framework (its 48×48 classifier); the card models' fits stay in the fast run.
    slow = (name, backend_name) == ("resnet50", "tf") or name == "alexnet"
    return pytest.param(
        name, backend_name, id=f"{name}-{backend_name}", marks=[pytest.mark.slow] if slow else []
    )


@pytest.mark.parametrize(
    ("name", "backend_name"),
    [_fit_variant(n, b) for n in MODEL_NAMES for b in ("torch", "tf")],
)
def test_fit_takes_finite_steps(name: str, backend_name: str) -> None:
    """Two training steps with the model's default dropout leave finite, changed weights."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *DEFAULT_INPUT_SHAPE), dtype=np.uint8)
    y = np.arange(16) % NUM_CLASSES
    backend = create_backend(backend_name)
    backend.seed(0)
    backend.build(name, DEFAULT_INPUT_SHAPE, NUM_CLASSES)
    before = backend.get_weights()
    logs = backend.fit(x, y, TrainConfig(epochs=1, batch_size=8))
    after = backend.get_weights()
    assert logs[0].steps == 2 and np.isfinite(logs[0].train_loss)
    assert all(np.isfinite(v).all() for v in after.values())
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} changed"


def test_registries_cover_the_catalog() -> None:
    from backends.keras.models import list_models as tf_models
    from backends.torch.models import list_models as torch_models

    assert sorted(torch_models()) == sorted(MODEL_NAMES)
    assert sorted(tf_models()) == sorted(MODEL_NAMES)


def _dropout_rates(backend: Backend) -> list[float]:
    if backend.name == "torch":
        return [m.p for m in backend.model.modules() if isinstance(m, torch.nn.Dropout)]
    return [layer.rate for layer in backend.model.layers if hasattr(layer, "rate")]


@pytest.mark.parametrize("backend_name", ["torch", "tf"])
def test_dropout_defaults_to_catalog_and_can_be_overridden(backend_name: str) -> None:
    backend = create_backend(backend_name)
    backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES)
    assert _dropout_rates(backend) == [CATALOG["proposed_cnn"].dropout]
    backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES, dropout=0.25)
    assert _dropout_rates(backend) == [0.25]


@pytest.fixture(scope="module")
def bn_statistics() -> dict[str, dict[str, np.ndarray]]:
    """Both frameworks' BN running statistics after one identical training-mode pass."""
    backends = {b: create_backend(b) for b in ("torch", "tf")}
    for backend in backends.values():
        backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES, dropout=0.0)
    weights = calibrated_weights(backends["torch"], DEFAULT_INPUT_SHAPE, seed=3)
    x = np.random.default_rng(4).uniform(-1, 1, (4, *DEFAULT_INPUT_SHAPE)).astype(np.float32)
    stats = {}
    for name, backend in backends.items():
        backend.set_weights(weights)
        backend.logits(x, training=True)
        stats[name] = {k: v for k, v in backend.get_weights().items() if ".running_" in k}
    return stats


def test_bn_running_means_update_alike(bn_statistics) -> None:
    """Catches an unpinned BN momentum, which logits never show."""
    for name, value in bn_statistics["torch"].items():
        if name.endswith("running_mean"):
            np.testing.assert_allclose(bn_statistics["tf"][name], value, atol=1e-6, err_msg=name)


def test_bn_running_variances_update_alike(bn_statistics) -> None:
    """torch tracks the unbiased batch variance; so must TF (TorchBatchNormalization)."""
    for name, value in bn_statistics["torch"].items():
        if name.endswith("running_var"):
            np.testing.assert_allclose(bn_statistics["tf"][name], value, rtol=1e-5, err_msg=name)
