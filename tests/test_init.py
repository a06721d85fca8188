"""Same start, by each family's reference practice (docs/design.md §2, backends/init.py).

The shared initial weights are drawn once in numpy from the canonical names, so both
frameworks start from the same point; this file checks that they do, that each family's
rules hold in the drawn arrays, and that every card model starts as an untrained
classifier should: with a loss near ln(C), not with exploding logits.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from backends import create_backend  # noqa: E402
from backends.base import PIXEL_CENTER, PIXEL_SCALE  # noqa: E402
from backends.catalog import CARD_MODELS, DEFAULT_INPUT_SHAPE, MODEL_NAMES  # noqa: E402
from backends.init import VGG_HEAD_STD, one_ulp_away, shared_initial_weights  # noqa: E402
from backends.schedule import epoch_batches  # noqa: E402
from datasets.synthetic import generate  # noqa: E402

NUM_CLASSES = 7
SEED = 0
# An untrained classifier's loss is ln(C); the old He-uniform init of every kernel started
# vgg16 at several times that (first-epoch mean 4.86 = 2.5 ln 7).
LOSS_RANGE = (0.5, 1.6)


@pytest.fixture(scope="module")
def built():
    """(model, backend name) → (a backend holding that model, its initial weights).

    Built lazily and kept for the module: the heavy models take seconds per build. The
    weights are exported right after loading them, before any training-mode pass moves
    the BatchNorm statistics.
    """
    cache = {}

    def get(model: str, backend_name: str):
        if (model, backend_name) not in cache:
            backend = create_backend(backend_name)
            # Dropout off so that training-mode logits are the same in both frameworks.
            dropout = {"dropout": 0.0} if model not in ("resnet18", "resnet50") else {}
            backend.build(model, DEFAULT_INPUT_SHAPE, NUM_CLASSES, **dropout)
            backend.set_weights(shared_initial_weights(backend.get_weights(), SEED))
            cache[model, backend_name] = backend, backend.get_weights()
        return cache[model, backend_name]

    return get


@pytest.fixture(scope="module")
def first_batch():
    """fit's first batch of a synthetic set, scaled as the backends scale it."""
    faces = generate(num_subjects=4, per_expression=2, seed=SEED, image_size=48)
    index = epoch_batches(len(faces.images), 32, SEED, 0)[0]
    x = (faces.images[index].astype(np.float32) - PIXEL_CENTER) / PIXEL_SCALE
    return x, faces.labels[index]


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize("model", CARD_MODELS)
def test_initial_loss_is_an_untrained_classifiers(built, first_batch, model):
    """Training-mode loss of the first batch, as the first step sees it, in both frameworks."""
    x, y = first_batch
    losses = {b: _cross_entropy(built(model, b)[0].logits(x, training=True), y)
              for b in ("torch", "tf")}
    low, high = (bound * math.log(NUM_CLASSES) for bound in LOSS_RANGE)
    for backend_name, loss in losses.items():
        assert low <= loss <= high, f"{model} ({backend_name}) starts at loss {loss:.3f}"
    assert losses["tf"] == pytest.approx(losses["torch"], rel=1e-4)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_both_frameworks_draw_identical_weights(built, model):
    """The draw depends on names and shapes only, which both frameworks export alike."""
    torch_start, tf_start = (built(model, b)[1] for b in ("torch", "tf"))
    assert sorted(torch_start) == sorted(tf_start)
    for name, value in torch_start.items():
        np.testing.assert_array_equal(tf_start[name], value, err_msg=name)


def test_the_draw_is_deterministic_given_the_seed(built):
    template = built("proposed_cnn", "torch")[1]
    again, other = shared_initial_weights(template, SEED), shared_initial_weights(template, 1)
    for name, value in shared_initial_weights(template, SEED).items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    assert not np.array_equal(other["block1.conv1.weight"], again["block1.conv1.weight"])


def _kaiming_fan_out_std(kernel: np.ndarray) -> float:
    return math.sqrt(2.0 / (kernel.shape[0] * kernel.shape[2] * kernel.shape[3]))


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_convolutions_are_kaiming_normal_fan_out(built, model):
    weights = built(model, "torch")[1]
    kernels = {k: v for k, v in weights.items() if v.ndim == 4}
    assert kernels
    for name, kernel in kernels.items():
        std = _kaiming_fan_out_std(kernel)
        # A normal sample's std is within 3/√(2n) of σ, relatively, 3 times in 1,000.
        tolerance = 3 / math.sqrt(2 * kernel.size) + 1e-3
        assert kernel.std() == pytest.approx(std, rel=tolerance), name
        assert abs(kernel.mean()) < 4 * std / math.sqrt(kernel.size), name
        bias = weights.get(name.replace(".weight", ".bias"))
        assert bias is None or not bias.any(), name


@pytest.mark.parametrize("model", ["vgg16", "alexnet"])
def test_the_vgg_head_is_normal_0_01_with_zero_biases(built, model):
    weights = built(model, "torch")[1]
    for layer in ("classifier.fc1", "classifier.fc2", "classifier.fc3"):
        kernel = weights[f"{layer}.weight"]
        assert kernel.std() == pytest.approx(VGG_HEAD_STD, rel=3 / math.sqrt(2 * kernel.size))
        assert abs(kernel.mean()) < 4 * VGG_HEAD_STD / math.sqrt(kernel.size)
        assert not weights[f"{layer}.bias"].any()


@pytest.mark.parametrize(("model", "head"), [("resnet18", "fc"), ("resnet50", "fc"),
                                             ("proposed_cnn", "classifier"),
                                             ("sanet", "classifier")])
def test_a_pooled_head_keeps_torchs_linear_default(built, model, head):
    """U(±1/√fan_in) for weight and bias: what torchvision's ResNet leaves its fc with."""
    weights = built(model, "torch")[1]
    kernel, bias = weights[f"{head}.weight"], weights[f"{head}.bias"]
    bound = 1 / math.sqrt(kernel.shape[1])
    for value in (kernel, bias):
        assert np.abs(value).max() <= bound
    assert kernel.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert bias.any()


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_batch_norms_start_at_one_and_zero_and_residual_branches_at_zero(built, model):
    weights = built(model, "torch")[1]
    norms = sorted(k[: -len(".running_mean")] for k in weights if k.endswith(".running_mean"))
    last_of_branch = {"resnet18": "bn2", "resnet50": "bn3"}.get(model)
    zeroed = []
    for norm in norms:
        block = re.fullmatch(r"layer\d+\.\d+\.(bn\d)", norm)
        gamma = 0.0 if block and block.group(1) == last_of_branch else 1.0
        if gamma == 0.0:
            zeroed.append(norm)
        np.testing.assert_array_equal(weights[f"{norm}.weight"], gamma, err_msg=norm)
        np.testing.assert_array_equal(weights[f"{norm}.bias"], 0.0, err_msg=norm)
        np.testing.assert_array_equal(weights[f"{norm}.running_mean"], 0.0, err_msg=norm)
        np.testing.assert_array_equal(weights[f"{norm}.running_var"], 1.0, err_msg=norm)
    blocks = {"resnet18": 8, "resnet50": 16}.get(model, 0)
    assert len(zeroed) == blocks, f"{model}: zero-γ on {zeroed}"


def test_a_twin_starts_one_ulp_away_from_every_nonzero_weight():
    template = {"layer1.0.conv1.weight": np.zeros((8, 4, 3, 3), np.float32),
                "layer1.0.bn2.weight": np.zeros(8, np.float32),
                "fc.weight": np.zeros((7, 8), np.float32), "fc.bias": np.zeros(7, np.float32)}
    plain = shared_initial_weights(template, SEED)
    twin = shared_initial_weights(template, SEED, twin=True)
    assert plain["layer1.0.bn2.weight"].sum() == 0  # a zero-initialised residual scale
    for name, value in plain.items():
        moved = twin[name]
        assert moved.dtype == np.float32
        nonzero = value != 0
        # Exactly one ulp, away from zero: same sign, larger magnitude; zeros stay zero.
        assert np.array_equal(np.abs(moved[nonzero]) - np.abs(value[nonzero]),
                              np.spacing(np.abs(value[nonzero]))), name
        assert np.array_equal(np.sign(moved), np.sign(value))
        assert np.all(moved[~nonzero] == 0), name
    assert one_ulp_away(np.float32([1.0, -2.0, 0.0])).tolist() == [
        1.0 + 2.0**-23, -2.0 - 2.0**-22, 0.0]
