"""The model zoo is the same in every framework (docs/design.md §1, Models).

Every model is built once per input shape in the reference framework, torch, and in each
other registered backend (module-scoped fixture; pytest runs one shape's tests together
and frees its models before the next). Weights are ported through the canonical layout in
both directions and the logits compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.base import Backend  # noqa: E402
from backends.catalog import CATALOG, DEFAULT_INPUT_SHAPE, MODEL_NAMES, model_cost  # noqa: E402
from backends.train_config import TrainConfig  # noqa: E402
from tests.conftest import (  # noqa: E402
    BROAD_FAST_BACKENDS,
    COMPARED_BACKENDS,
    MODEL_STEPS,
    REFERENCE_BACKEND,
    backend_params,
    calibrated_weights,
    make_backend,
    missing_framework,
    model_step_losses,
)

NUM_CLASSES = 7
# docs/design.md §1: max |Δlogits| in float32, for every backend against torch. Measured
# (AMD EPYC, 2 cores, docs/design.md §10, at 48×48×1): keras-jax's largest gap over the six
# models 8.8e-6 (resnet50; 1.0e-5 under a perturbation), the floor 1.6e-5 (resnet50, one
# thread): 6.4×; the other five models 1.4e-6 or less, 72× and more.
TOLERANCE = 1e-4
# Seconds per build and pass in both frameworks on 2 cores: their other input shapes run
# in `make test-slow` (AlexNet at 64×64: a 37M-parameter classifier).
HEAVY = ("vgg16", "resnet50", "alexnet")
# test_every_model_trains_like_torch_for_20_steps: the backends it compares with torch, the
# models it runs in the fast run (XLA compiles a larger model's training step for up to
# two minutes on 2 cores: those run in `make test-slow`), and its tolerance on the largest
# relative loss gap, per model: at least 3× the larger of the gap to torch and the floor
# measured by tests/noise_floor.py (docs/design.md §10, the per-model table; AMD EPYC,
# AVX2, 2 cores). vgg16's gap, 2.0e-3 (9× torch's own floor), and alexnet's floor, 6.8e-4,
# are the largest; the other models part by 1.9e-4 or less, floors included. Since XLA's
# CPU convolutions run on Eigen (backends/xla_flags.py) alexnet parts from torch by 2.2e-3
# in both JAX backends, as jax on YNNPACK parts from jax on Eigen: 7e-3 is 3.2× that.
STEPS_BACKENDS = ("keras-jax", "jax")
FAST_STEP_MODELS = ("proposed_cnn", "sanet")
MODEL_STEPS_TOLERANCE = {"proposed_cnn": 1e-3, "vgg16": 1e-2, "resnet50": 1e-3, "sanet": 1e-3,
                         "resnet18": 1e-3, "alexnet": 7e-3}


def _slow(name: str, shape: tuple[int, int, int], backend: str) -> bool:
    """Heavy models at other shapes; beyond BROAD_FAST_BACKENDS, every heavy model or shape."""
    if name in HEAVY and shape != DEFAULT_INPUT_SHAPE:
        return True
    return backend not in BROAD_FAST_BACKENDS and (name in HEAVY or shape != DEFAULT_INPUT_SHAPE)


def _variant(name: str, shape: tuple[int, int, int], backend: str):
    marks = [pytest.mark.slow] if _slow(name, shape, backend) else []
    if reason := missing_framework(backend):
        marks.append(pytest.mark.skip(reason=reason))
    return pytest.param((name, shape, backend), marks=marks,
                        id=f"{name}-{'x'.join(map(str, shape))}-{backend}")


# 64×56 is not square so that an H/W mix-up in the flatten reorder cannot cancel out.
SHAPES = (DEFAULT_INPUT_SHAPE, (64, 64, 3), (64, 56, 1))
VARIANTS = [_variant(name, shape, backend)
            for name in MODEL_NAMES for shape in SHAPES for backend in COMPARED_BACKENDS]


@dataclass
class Pair:
    """One model built in torch and in one other backend, and the test weights to port."""

    name: str
    shape: tuple[int, int, int]
    compared: str  # the other backend's name
    backends: dict[str, Backend]
    weights: dict[str, np.ndarray]
    x: np.ndarray  # a float32 NHWC test batch, already scaled


_reference_cache: dict[tuple[str, tuple[int, int, int]], tuple] = {}


def _reference(name: str, shape: tuple[int, int, int]) -> tuple[Backend, dict, np.ndarray]:
    """torch's model `name` at `shape`, its test weights and batch; the last one is kept,
    so the variants of one model and shape (one per backend, run in a row) share it."""
    if (name, shape) not in _reference_cache:
        _reference_cache.clear()
        backend = create_backend(REFERENCE_BACKEND)
        # Dropout 0 makes training-mode outputs deterministic; eval mode ignores dropout.
        backend.build(name, shape, NUM_CLASSES, dropout=0.0)
        weights = calibrated_weights(backend, shape, seed=1)
        x = np.random.default_rng(2).uniform(-1, 1, (4, *shape)).astype(np.float32)
        _reference_cache[name, shape] = (backend, weights, x)
    return _reference_cache[name, shape]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request) -> Pair:
    name, shape, compared = request.param
    reference, weights, x = _reference(name, shape)
    backend = make_backend(compared)
    backend.build(name, shape, NUM_CLASSES, dropout=0.0)
    return Pair(name, shape, compared, {REFERENCE_BACKEND: reference, compared: backend},
                weights, x)


def _port(pair: Pair, direction: str) -> tuple[Backend, Backend]:
    """Loads the test weights into the source, then the source's export into the target."""
    source, target = (pair.backends[REFERENCE_BACKEND], pair.backends[pair.compared])
    if direction == "to_torch":
        source, target = target, source
    source.set_weights(pair.weights)
    target.set_weights(source.get_weights())
    return source, target


DIRECTIONS = ["from_torch", "to_torch"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_weights_round_trip_exactly(pair: Pair, direction: str) -> None:
    source, target = _port(pair, direction)
    exported = target.get_weights()
    assert set(exported) == set(pair.weights)
    for name, value in pair.weights.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_canonical_layouts_match(pair: Pair) -> None:
    torch_shapes = {k: v.shape for k, v in pair.backends["torch"].get_weights().items()}
    shapes = {k: v.shape for k, v in pair.backends[pair.compared].get_weights().items()}
    assert shapes == torch_shapes


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
    for name, backend in pair.backends.items():
        assert backend.num_trainable_params() == expected, name


@pytest.mark.parametrize(
    ("name", "shape"),
    [pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}",
                  marks=[pytest.mark.slow] if name in HEAVY and shape != DEFAULT_INPUT_SHAPE
                  else [])
     for name in MODEL_NAMES for shape in SHAPES])
def test_flops_match_torch_counter(name: str, shape: tuple[int, int, int]) -> None:
    """The neutral count's conv/dense part equals torch's counter; the rest is small."""
    model = _reference(name, shape)[0].model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, shape[2], shape[0], shape[1]))
    counted = counter.get_total_flops() // 2
    cost = model_cost(name, shape, NUM_CLASSES)
    assert cost.matmul_flops == counted
    assert counted <= cost.flops <= 1.02 * counted


def _fit_variant(name: str, backend_name: str):
    # Tracing ResNet-50's TF train step alone takes ~15 s on 2 cores, AlexNet's steps 10 s or
    # more in each framework (its 48×48 classifier); the card models' fits stay in the fast
    # run. XLA compiles a step in 15–20 s on 2 cores even for proposed_cnn, so the other
    # backends fit proposed_cnn alone there (its dropout: the seeded JAX key's path).
    slow = ((name, backend_name) == ("resnet50", "tf") or name == "alexnet"
            or (backend_name not in ("torch", *BROAD_FAST_BACKENDS) and name != "proposed_cnn"))
    marks = [pytest.mark.slow] if slow else []
    if reason := missing_framework(backend_name):
        marks.append(pytest.mark.skip(reason=reason))
    return pytest.param(name, backend_name, id=f"{name}-{backend_name}", marks=marks)


@pytest.mark.parametrize(
    ("name", "backend_name"),
    [_fit_variant(n, b) for n in MODEL_NAMES for b in (REFERENCE_BACKEND, *COMPARED_BACKENDS)],
)
def test_fit_takes_finite_steps(name: str, backend_name: str) -> None:
    """Two training steps with the model's default dropout leave finite, changed weights."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *DEFAULT_INPUT_SHAPE), dtype=np.uint8)
    y = np.arange(16) % NUM_CLASSES
    backend = make_backend(backend_name)
    backend.seed(0)
    backend.build(name, DEFAULT_INPUT_SHAPE, NUM_CLASSES)
    before = backend.get_weights()
    logs = backend.fit(x, y, TrainConfig(epochs=1, batch_size=8))
    after = backend.get_weights()
    assert logs[0].steps == 2 and np.isfinite(logs[0].train_loss)
    assert all(np.isfinite(v).all() for v in after.values())
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} changed"


def _steps_variant(name: str, backend_name: str):
    marks = [] if name in FAST_STEP_MODELS else [pytest.mark.slow]
    if reason := missing_framework(backend_name):
        marks.append(pytest.mark.skip(reason=reason))
    return pytest.param(name, backend_name, id=f"{name}-{backend_name}", marks=marks)


@cache
def _torch_step_losses(name: str) -> np.ndarray:
    """torch's side of the per-model steps, once per model for both JAX backends."""
    return model_step_losses(REFERENCE_BACKEND, name)


@pytest.mark.parametrize(("name", "backend_name"),
                         [_steps_variant(n, b) for n in MODEL_NAMES for b in STEPS_BACKENDS])
def test_every_model_trains_like_torch_for_20_steps(name: str, backend_name: str) -> None:
    """Every model, from the shared start on the shared batches, loses as torch's does over
    MODEL_STEPS float32 Adam steps (tests.conftest.model_step_losses).

    The logits test holds each model's forward pass; this one its backward pass and
    optimizer step, layer by layer, where the dense-stack optimizer tests cannot reach (a
    BatchNorm's gradient, a residual's, an attention block's). Tolerances per model
    (MODEL_STEPS_TOLERANCE): docs/design.md §10, the per-model table.
    """
    losses = model_step_losses(backend_name, name)
    reference = _torch_step_losses(name)
    assert losses.shape == reference.shape == (MODEL_STEPS,)
    gap = np.abs(losses - reference) / reference
    assert gap.max() <= MODEL_STEPS_TOLERANCE[name], (
        f"max relative loss gap {gap.max():.2e} at step {gap.argmax() + 1} (tolerance "
        f"{MODEL_STEPS_TOLERANCE[name]:.0e}): {backend_name} {np.round(losses, 4)}, "
        f"torch {np.round(reference, 4)}")


def test_registries_cover_the_catalog() -> None:
    pytest.importorskip("tensorflow")
    import backends.tf  # noqa: F401  (pins KERAS_BACKEND before backends.keras imports keras)
    from backends.keras.models import list_models as tf_models
    from backends.torch.models import list_models as torch_models

    assert sorted(torch_models()) == sorted(MODEL_NAMES)
    assert sorted(tf_models()) == sorted(MODEL_NAMES)
    if missing_framework("jax") is None:
        from backends.jax.models import list_models as jax_models

        assert sorted(jax_models()) == sorted(MODEL_NAMES)


def _dropout_rates(backend: Backend) -> list[float]:
    if backend.name == "torch":
        return [m.p for m in backend.model.modules() if isinstance(m, torch.nn.Dropout)]
    if backend.name == "jax":
        from flax import nnx

        return [m.rate for _, m in nnx.iter_modules(backend.model) if isinstance(m, nnx.Dropout)]
    return [layer.rate for layer in backend.model.layers if hasattr(layer, "rate")]


@pytest.mark.parametrize("backend_name", backend_params((REFERENCE_BACKEND, "tf", "jax")))
def test_dropout_defaults_to_catalog_and_can_be_overridden(backend_name: str) -> None:
    backend = create_backend(backend_name)
    backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES)
    assert _dropout_rates(backend) == [CATALOG["proposed_cnn"].dropout]
    backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES, dropout=0.25)
    assert _dropout_rates(backend) == [0.25]


@pytest.fixture(scope="module", params=backend_params())
def bn_statistics(request) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """torch's and another backend's BN running statistics after one identical
    training-mode pass: (that backend, backend → statistics)."""
    backends = {b: make_backend(b) for b in (REFERENCE_BACKEND, request.param)}
    for backend in backends.values():
        backend.build("proposed_cnn", DEFAULT_INPUT_SHAPE, NUM_CLASSES, dropout=0.0)
    weights = calibrated_weights(backends["torch"], DEFAULT_INPUT_SHAPE, seed=3)
    x = np.random.default_rng(4).uniform(-1, 1, (4, *DEFAULT_INPUT_SHAPE)).astype(np.float32)
    stats = {}
    for name, backend in backends.items():
        backend.set_weights(weights)
        backend.logits(x, training=True)
        stats[name] = {k: v for k, v in backend.get_weights().items() if ".running_" in k}
    return request.param, stats


def test_bn_running_means_update_alike(bn_statistics) -> None:
    """Catches an unpinned BN momentum, which logits never show."""
    compared, stats = bn_statistics
    for name, value in stats[REFERENCE_BACKEND].items():
        if name.endswith("running_mean"):
            np.testing.assert_allclose(stats[compared][name], value, atol=1e-6, err_msg=name)


def test_bn_running_variances_update_alike(bn_statistics) -> None:
    """torch tracks the unbiased batch variance; so must Keras (TorchBatchNormalization)."""
    compared, stats = bn_statistics
    for name, value in stats[REFERENCE_BACKEND].items():
        if name.endswith("running_var"):
            np.testing.assert_allclose(stats[compared][name], value, rtol=1e-5, err_msg=name)

