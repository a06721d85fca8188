"""Session settings for the test suite, and the helpers several test files share.

`FERBENCH_TEST_THREADS=N make test` runs every in-process test with N compute threads per
framework instead of each framework's default (one per core), so that the parity
tolerances can be shown to hold at another thread count, as docs/design.md ("Tolerances
from a noise floor") asks of every gate host. Nothing here pins numerics by default: the
tests run with each framework's defaults, as the suite's own runs do.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from backends import create_backend
from backends.base import Backend, MissingFrameworkError, TrainConfig
from backends.catalog import CATALOG
from backends.init import shared_initial_weights
from backends.registry import check_available
from backends.schedule import epoch_batches

THREADS_VARIABLE = "FERBENCH_TEST_THREADS"


def pytest_configure(config) -> None:
    apply_test_threads()


def apply_test_threads() -> None:
    """Sets every framework's thread pools to FERBENCH_TEST_THREADS, where it is set.

    XLA (the jax backend) takes only 1, which runs its CPU code single-threaded.

    Raises:
        ValueError: the variable is not an integer ≥ 1.
    """
    threads = os.environ.get(THREADS_VARIABLE)
    if not threads:
        return
    if not threads.isdigit() or int(threads) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be an integer ≥ 1. Received: {threads!r}")
    import tensorflow as tf
    import torch

    if int(threads) == 1 and installed("jax"):
        # XLA takes no other count, and reads its flags when JAX starts: set them now.
        from backends.jax.runtime import SINGLE_THREAD_FLAGS

        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                            *SINGLE_THREAD_FLAGS]).strip()
    torch.set_num_threads(int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def installed(*names: str) -> tuple[str, ...]:
    """The backends among `names` whose framework is installed here, in order.

    Args:
        names: backend names (`backends.registry.BACKEND_NAMES`).

    Returns:
        Those that `check_available` passes.
    """
    found = []
    for name in names:
        try:
            check_available(name)
        except MissingFrameworkError:
            continue
        found.append(name)
    return tuple(found)


def skip_unless_installed(name: str) -> None:
    """Skips the calling test, naming the extra, when backend `name` is not installed."""
    try:
        check_available(name)
    except MissingFrameworkError as error:
        pytest.skip(str(error))


# --- a framework-free backend with scripted epochs (test_selection, test_weights) ---------
class ScriptedBackend(Backend):
    """A backend whose model is one bias per class and whose epochs are scripted.

    Every image gets softmax(bias); training epoch k (1-based) sets the bias to
    `script[k - 1]`. Predictions come from whatever weights the model holds, so after
    `fit` they show which epoch's weights were restored.

    Args:
        script: one bias vector per epoch, float32.
    """

    name = "scripted"
    framework = "none"

    def __init__(self, script, threads: int | None = None,
                 deterministic: bool = False) -> None:
        super().__init__(threads, deterministic)
        self.script = script
        self.snapshots = 0  # get_weights calls
        self.learning_rates: list[np.ndarray] = []  # each epoch's, per step

    def versions(self):
        return {}

    def device_name(self):
        return "cpu"

    def flags(self):
        return {}

    def seed(self, seed):
        pass

    def synchronize(self):
        pass

    def gpu_allocator_peak_mb(self):
        return None

    def matmul_op(self, size):
        a = np.ones((size, size), np.float32)
        return lambda: a @ a

    def _build(self, model_name, input_shape, num_classes, precision, overrides):
        self.bias = np.zeros(num_classes, np.float32)

    def num_trainable_params(self):
        return self.num_classes

    def get_weights(self):
        self.snapshots += 1
        return {"bias": self.bias.copy()}

    def set_weights(self, weights):
        self.bias = np.array(weights["bias"], np.float32)

    def logits(self, x, training=False):
        return np.tile(self.bias, (len(x), 1))

    def _prepare_training(self, config, class_weights, layers=None):
        self.epochs_trained = 0

    def _train_epoch(self, batches, learning_rates):
        self.learning_rates.append(learning_rates)
        self.bias = np.array(self.script[self.epochs_trained], np.float32)
        self.epochs_trained += 1
        return 1.0

    def _stage_outputs(self, x, stages):
        raise NotImplementedError("a model of biases alone has no stages")

    _stage_gradients = _stage_outputs

    def predict_proba(self, x, batch_size=256):
        logits = self.logits(x).astype(np.float64)
        exp = np.exp(logits - logits.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)


# The worker's script: three classes; epoch 2 favours class 0, epochs 1 and 3 class 1.
WORKER_SCRIPT = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]


def prepared_file(tmp_path, name: str, x_test: np.ndarray, y_test: np.ndarray):
    """A prepared-data .npz of three classes ("a", "b", "c"): random 16×16 train and
    validation images (validation mostly class 0) and the test set given."""
    rng = np.random.default_rng(0)
    path = tmp_path / f"{name}.npz"
    np.savez(path, class_names=np.array(["a", "b", "c"]),
             x_train=rng.integers(0, 256, (12, 16, 16, 1), dtype=np.uint8),
             y_train=np.arange(12) % 3,
             x_val=rng.integers(0, 256, (5, 16, 16, 1), dtype=np.uint8),
             y_val=np.array([0, 0, 0, 1, 2]),
             x_test=x_test, y_test=y_test)
    return path


# --- one model in both frameworks with the same weights (test_models, test_explain, …) ----
def calibrated_weights(backend: Backend, shape: tuple[int, int, int], seed: int) -> dict:
    """Random canonical weights under which every model's logits stay of order 1.

    Kernels are the shared initialisation's (backends/init.py), biases and attention
    parameters random, BN/GN scales in [0.2, 0.5], and each BN's running statistics those
    of a calibration batch (so that eval mode normalises as in a trained net). Scales
    below 1, as in trained residual nets, keep a random ResNet-50 from amplifying float32
    rounding: with scales near 1, torch alone drifts 2e-4 from a float64 run, more than
    the tolerance.

    Args:
        backend: a torch backend with the model built; it is left holding the weights.
        shape: the model's input shape.
        seed: seeds everything random here.
    """
    import torch

    rng = np.random.default_rng(seed)
    weights = shared_initial_weights(backend.get_weights(), seed)
    for name, value in weights.items():
        if value.ndim != 1 or name.endswith(("running_mean", "running_var")):
            continue
        if name.endswith(".weight"):
            weights[name] = rng.uniform(0.2, 0.5, value.shape).astype(np.float32)
        else:
            weights[name] = rng.normal(0.0, 0.3, value.shape).astype(np.float32)
    backend.set_weights(weights)
    norms = [m for m in backend.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        # momentum None averages all batches seen since the reset: here exactly one.
        bn.reset_running_stats()
        bn.momentum = None
    backend.logits(rng.uniform(-1, 1, (8, *shape)).astype(np.float32), training=True)
    for bn in norms:
        bn.momentum = 0.1
    return backend.get_weights()


def same_weights_pair(name: str, shape: tuple[int, int, int], num_classes: int,
                      seed: int = 1, partner: str = "tf") -> dict[str, Backend]:
    """`name` built in torch and `partner` (dropout off where it has any) with
    `calibrated_weights`.

    Returns:
        backend name → Backend, both holding the same weights.
    """
    backends = {b: create_backend(b) for b in ("torch", partner)}
    overrides = {} if CATALOG[name].dropout is None else {"dropout": 0.0}
    for backend in backends.values():
        backend.build(name, shape, num_classes, **overrides)
    backends[partner].set_weights(calibrated_weights(backends["torch"], shape, seed=seed))
    return backends


# --- a few Adam steps from the shared start (test_precision, test_gpu, noise_floor) ------
SIDE, BATCH, STEPS = 16, 16, 8


def step_data(seed: int):
    """STEPS batches of random SIDE×SIDE grayscale images and labels of 7 classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (BATCH * STEPS, SIDE, SIDE, 1), dtype=np.uint8)
    return images, rng.integers(0, 7, len(images))


def step_losses(name: str, model: str, precision: str, seed: int):
    """Per-step losses of STEPS Adam steps from the shared start, on the shared batches."""
    x, y = step_data(seed)
    backend = create_backend(name)
    backend.build(model, (SIDE, SIDE, 1), 7, precision=precision, dropout=0.0)
    backend.set_weights(shared_initial_weights(backend.get_weights(), seed))
    backend.start_training(x, y, TrainConfig(precision=precision))
    losses = [backend.train_step(b) for b in epoch_batches(len(x), BATCH, seed, 0)]
    return np.array(losses), backend
