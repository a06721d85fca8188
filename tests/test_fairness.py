"""Same start, same data, same order, same recipe ⇒ the same training trajectory.

torch and each other backend build proposed_cnn (dropout off, the only random layer), load
the same shared initial weights and fit on the same images with the same seed. If anything
of docs/design.md §1–§4 drifted (sample order, pixel scaling, loss, label smoothing, class
weights, optimizer constants, BN momentum), their weights would part after a few steps.
"""

import re

import numpy as np
import pytest

pytest.importorskip("torch")

from backends import create_backend  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402
from backends.schedule import class_weight_table  # noqa: E402
from backends.train_config import TrainConfig  # noqa: E402
from datasets.synthetic import generate  # noqa: E402
from tests.conftest import (  # noqa: E402
    BROAD_FAST_BACKENDS,
    COMPARED_BACKENDS,
    REFERENCE_BACKEND,
    backend_params,
    make_backend,
    missing_framework,
)

# Images kept per class of the 12 each the 4 subjects give: imbalanced, so that "balanced"
# class weights (n / (C · count)) run from 0.57 to 2.3 and weighting changes the loss.
TRAJECTORY_CLASS_COUNTS = (12, 10, 8, 6, 5, 4, 3)


def trajectory_data():
    """48 synthetic 32×32 faces of 4 subjects, TRAJECTORY_CLASS_COUNTS of each class, and
    their labels."""
    faces = generate(num_subjects=4, per_expression=3, seed=5, image_size=32)
    keep = np.sort(np.concatenate([np.flatnonzero(faces.labels == label)[:count]
                                   for label, count in enumerate(TRAJECTORY_CLASS_COUNTS)]))
    return faces.images[keep], faces.labels[keep]


@pytest.fixture(scope="module")
def data():
    return trajectory_data()


def _train(name: str, data, config: TrainConfig):
    backend = make_backend(name)
    backend.build("proposed_cnn", data[0].shape[1:], 7, dropout=0.0)
    backend.set_weights(shared_initial_weights(backend.get_weights(), seed=1))
    history = backend.fit(data[0], data[1], config)
    return backend, history


TRAJECTORY_CONFIGS = {
    "adam": TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, seed=2),
    "sgd-smoothing-classweights": TrainConfig(epochs=1, batch_size=16, learning_rate=1e-2,
                                              optimizer="sgd", label_smoothing=0.1,
                                              class_weighting="balanced", seed=3),
    "adamw-warmup": TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, optimizer="adamw",
                                weight_decay=0.01, warmup_epochs=1, seed=4),
}
# From the noise floor (tests/noise_floor.py, AMD EPYC, docs/design.md §10, measured on this
# imbalanced set), ≥ 3× the larger of the same-framework gap under a perturbation and the
# cross-framework gap. Train loss: Adam floor 2.9e-3 (one thread instead of two), cross
# 2.5e-3; AdamW floor 2.1e-3, cross 2.1e-3; SGD floor and cross 3.2e-5. Adam's first steps
# move near-zero gradients by about ±lr whatever their size, so rounding changes the
# trajectory far more than under SGD, which keeps a tolerance 10× tighter. 1 − update
# cosine: floor 2.9e-2 (AdamW, one thread), cross 3.5e-2. keras-jax against torch, same
# host and set: train loss cross 2.3e-3 (Adam; AdamW 2.3e-3; SGD 1.7e-5), the floors as
# above (torch's side: one XLA thread and XLA at AVX2 moved keras-jax by 0), so 3.4×,
# 4.3× and 31×; 1 − cosine cross 3.4e-2: 5.9×. The same tolerances hold for both.
TRAIN_LOSS_TOLERANCE = {  # relative
    "adam": 1e-2,
    "sgd-smoothing-classweights": 1e-3,
    "adamw-warmup": 1e-2,
}
UPDATE_COSINE_MIN = 0.8


def weight_updates(backend, data) -> dict[str, np.ndarray]:
    """Each trained tensor's change from the shared start, flattened.

    Every conv bias of proposed_cnn sits right before a BN, so its true gradient is zero and
    its update is rounding noise (which Adam scales up to full steps): those are left out.
    """
    start = _initial(data)
    weights = backend.get_weights()
    return {name: (weights[name] - initial).ravel() for name, initial in start.items()
            if not re.fullmatch(r"block\d\.conv\d\.bias", name)}


def update_cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Per tensor, the cosine between two sets of weight updates."""
    return {name: float(a[name] @ b[name] / (np.linalg.norm(a[name]) * np.linalg.norm(b[name])))
            for name in a}


def _trajectory_cases() -> list:
    """(recipe, backend) for every compared backend; beyond BROAD_FAST_BACKENDS, AdamW's
    (6 steps, a third XLA compilation) in `make test-slow`: Adam and the SGD recipe, which
    carries the class weights and label smoothing, stay in the fast run."""
    return [pytest.param(name, *param.values, id=f"{name}-{param.id}",
                         marks=[*param.marks, *([pytest.mark.slow] if name == "adamw-warmup"
                                                and param.id not in BROAD_FAST_BACKENDS
                                                else [])])
            for name in TRAJECTORY_CONFIGS for param in backend_params(COMPARED_BACKENDS)]


@pytest.mark.parametrize(("name", "backend_name"), _trajectory_cases())
def test_both_frameworks_follow_the_same_trajectory(data, name, backend_name):
    config = TRAJECTORY_CONFIGS[name]
    if config.class_weighting == "balanced":  # weights of 1 would prove nothing
        weights = class_weight_table(data[1], 7, "balanced")
        assert weights.min() < 0.6 and weights.max() > 2.0, weights
    backend, history = _train(backend_name, data, config)
    torch_backend, torch_history = _train(REFERENCE_BACKEND, data, config)
    tolerance = TRAIN_LOSS_TOLERANCE[name]
    for log, torch_log in zip(history, torch_history, strict=True):
        assert log.steps == torch_log.steps == len(data[0]) // 16
        assert log.train_loss == pytest.approx(torch_log.train_loss, rel=tolerance)
    last_rate = torch_history[-1].learning_rate
    assert [log.learning_rate for log in history] == [log.learning_rate for log in torch_history]
    if backend_name == "tf":  # the rate the optimizer itself last stepped with
        assert float(np.asarray(backend._optimizer.learning_rate)) == pytest.approx(last_rate)
    assert torch_backend._optimizer.param_groups[0]["lr"] == pytest.approx(last_rate)
    cosines = update_cosines(weight_updates(backend, data), weight_updates(torch_backend, data))
    for name, cosine in cosines.items():
        # float32 rounding differs between the frameworks' kernels and a few steps
        # amplify it, so updates agree in direction, not to the last bit.
        assert cosine > UPDATE_COSINE_MIN, f"{name}: updates point apart (cosine {cosine:.3f})"


def _initial(data):
    reference = create_backend("torch")
    reference.build("proposed_cnn", data[0].shape[1:], 7, dropout=0.0)
    return shared_initial_weights(reference.get_weights(), seed=1)


def _pixels_each_step_receives(name: str, data, config: TrainConfig) -> list[np.ndarray]:
    """Trains one backend and returns the images its step function was given, per step.

    The step is wrapped where the framework takes over: what is recorded is the
    framework's own tensor, after the backend's host-to-device handover.
    """
    backend = create_backend(name)
    backend.build("proposed_cnn", data[0].shape[1:], 7, dropout=0.0)
    backend.start_training(data[0], data[1], config)
    step, seen = backend._step, []

    def recording_step(images, labels, *rest):
        seen.append(np.array(images))
        return step(images, labels, *rest)

    backend._step = recording_step
    for epoch in range(config.epochs):
        batches = backend._fit_epoch(data[0], data[1], config, epoch, 1.0, {})
        assert batches.steps == len(seen) // (epoch + 1)
    return seen


def test_both_frameworks_train_on_the_same_augmented_pixels(data):
    """tf's and torch's steps: the pixels come from the shared host pipeline
    (backends/pipeline.py), the same code for every backend."""
    pytest.importorskip("tensorflow")
    from backends.augment import augment_config

    config = TrainConfig(epochs=2, batch_size=16, augment=augment_config("standard"), seed=6)
    tf_pixels = _pixels_each_step_receives("tf", data, config)
    torch_pixels = _pixels_each_step_receives("torch", data, config)
    assert len(tf_pixels) == len(torch_pixels) > 2
    for tf_images, torch_images in zip(tf_pixels, torch_pixels, strict=True):
        assert tf_images.dtype == torch_images.dtype == np.uint8
        np.testing.assert_array_equal(tf_images, torch_images)
    # Augmented, and differently each step: not the raw training images.
    raw = {data[0][i].tobytes() for i in range(len(data[0]))}
    assert sum(image.tobytes() in raw for image in tf_pixels[0]) < len(tf_pixels[0]) // 2
    assert not np.array_equal(tf_pixels[0], tf_pixels[len(tf_pixels) // 2])


@pytest.mark.parametrize("backend_name", backend_params())
def test_test_time_augmentation_is_the_same_in_both_frameworks(data, backend_name):
    from backends.augment import TTA_MODES

    backends = {}
    for name in (backend_name, REFERENCE_BACKEND):
        backend = make_backend(name)
        backend.build("proposed_cnn", data[0].shape[1:], 7, dropout=0.0)
        backend.set_weights(shared_initial_weights(backend.get_weights(), seed=8))
        backends[name] = backend
    images = data[0][:12]
    for mode in TTA_MODES:
        probs = backends[backend_name].predict_proba_tta(images, mode)
        torch_probs = backends["torch"].predict_proba_tta(images, mode)
        assert probs.shape == (len(images), 7)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
        # The views are host pixels, so the frameworks differ by float32 rounding only.
        np.testing.assert_allclose(probs, torch_probs, atol=1e-5)
    torch_backend = backends["torch"]
    mirrored = (torch_backend.predict_proba(images)
                + torch_backend.predict_proba(images[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(torch_backend.predict_proba_tta(images, "flip"), mirrored,
                               atol=1e-12)
    # Ten crops see other pixels than the plain images: the mean moves.
    assert np.abs(torch_backend.predict_proba_tta(images, "tencrop")
                  - torch_backend.predict_proba(images)).max() > 1e-4


# --- the loss itself, both frameworks on the same numbers -----------------------------------
def _reference_loss(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                    smoothing: float) -> float:
    """The class-weighted, label-smoothed cross-entropy in float64 numpy (docs/design.md §4)."""
    shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    num_classes = logits.shape[1]
    target = np.eye(num_classes)[labels] * (1 - smoothing) + smoothing / num_classes
    per_sample = -(target * log_probs).sum(1)
    sample_weights = weights[labels].astype(np.float64)
    return float((per_sample * sample_weights).sum() / sample_weights.sum())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_both_frameworks_losses_agree_with_imbalanced_labels_and_class_weights(smoothing):
    """tf's and torch's; keras-jax computes the same `backends.keras.training.training_loss`
    (test_the_keras_loss_is_the_same_on_jax)."""
    tf = pytest.importorskip("tensorflow")
    import torch

    import backends.tf  # noqa: F401  (pins KERAS_BACKEND before backends.keras imports keras)
    from backends.keras.training import training_loss as tf_loss
    from backends.torch.backend import training_loss as torch_loss

    rng = np.random.default_rng(11)
    # 96 images, from 46 of one class to 1 of another: "balanced" weights from 0.3 to 13.7.
    labels = rng.choice(7, 96, p=[0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])
    logits = rng.normal(0.0, 3.0, (96, 7)).astype(np.float32)
    weights = class_weight_table(labels, 7, "balanced")
    assert weights.min() < 0.5 and weights.max() > 2.0, weights
    expected = _reference_loss(logits, labels, weights, smoothing)
    # Both the weights and the smoothing move the loss far beyond the tolerance.
    assert abs(_reference_loss(logits, labels, np.ones(7), smoothing) - expected) > 1e-2
    assert abs(_reference_loss(logits, labels, weights, 0.1 - smoothing) - expected) > 1e-2
    tf_value = float(tf_loss(tf.constant(logits), tf.constant(labels), tf.constant(weights),
                             smoothing))
    torch_value = float(torch_loss(torch.from_numpy(logits), torch.from_numpy(labels),
                                   torch.from_numpy(weights), smoothing))
    assert tf_value == pytest.approx(expected, rel=1e-6)
    assert torch_value == pytest.approx(expected, rel=1e-6)
    assert tf_value == pytest.approx(torch_value, rel=1e-6)
    if missing_framework("jax") is None:
        from backends.jax.backend import training_loss as jax_loss

        jax_value = float(jax_loss(logits, labels, weights, smoothing))
        assert jax_value == pytest.approx(expected, rel=1e-6)
        assert jax_value == pytest.approx(torch_value, rel=1e-6)


@pytest.mark.parametrize("backend_name", backend_params(("keras-jax",)))
def test_the_keras_loss_is_the_same_on_jax(backend_name):
    """The loss tf trains with (`backends.keras.training.training_loss`), on Keras's JAX
    backend, against the float64 reference, with class weights and label smoothing."""
    from tests.in_backend_process import keras_training_loss
    from tests.remote_backend import run_in_backend_process

    rng = np.random.default_rng(11)
    labels = rng.choice(7, 96, p=[0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])
    logits = rng.normal(0.0, 3.0, (96, 7)).astype(np.float32)
    weights = class_weight_table(labels, 7, "balanced")
    for smoothing in (0.0, 0.1):
        value = run_in_backend_process(backend_name, keras_training_loss, backend_name, logits,
                                       labels, weights, smoothing)
        assert value == pytest.approx(_reference_loss(logits, labels, weights, smoothing),
                                      rel=1e-6)
