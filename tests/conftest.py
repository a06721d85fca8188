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

from backends import BACKEND_NAMES, MissingFrameworkError, check_available, create_backend
from backends.base import Backend
from backends.catalog import CATALOG
from backends.init import shared_initial_weights
from backends.schedule import epoch_batches
from backends.train_config import TrainConfig
from tests.remote_backend import RemoteBackend

THREADS_VARIABLE = "FERBENCH_TEST_THREADS"


def pytest_configure(config) -> None:
    apply_xla_flags()
    apply_test_threads()


def apply_xla_flags() -> None:
    """Writes the JAX backends' standing XLA flags (backends/xla_flags.py) to XLA_FLAGS.

    XLA reads them once, when JAX's client starts, and a JAX backend refuses a client
    started without them; tests that use JAX directly (an optimizer test, a jaxpr) may
    start it first, so the session sets them before any test does.
    """
    if missing_framework("jax") is not None:
        return
    import jaxlib

    from backends.xla_flags import cpu_convolution_flags

    present = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = " ".join(
        [*present.split(), *cpu_convolution_flags(jaxlib.__version__, present)])


def threads_for_tests() -> int | None:
    """FERBENCH_TEST_THREADS as a number; None where it is not set."""
    threads = os.environ.get(THREADS_VARIABLE)
    return int(threads) if threads and threads.isdigit() else None


def apply_test_threads() -> None:
    """Sets both frameworks' thread pools to FERBENCH_TEST_THREADS, where it is set.

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

    if int(threads) == 1 and missing_framework("jax") is None:
        # The in-process jax backend's XLA takes no other count, and reads its flags when
        # JAX starts: set them now (keras-jax's own process gets the count as an argument).
        from backends.jax.runtime import SINGLE_THREAD_FLAGS

        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                            *SINGLE_THREAD_FLAGS]).strip()
    torch.set_num_threads(int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))


# --- every backend against the reference (test_models, test_fairness, test_explain, …) -----
# The parity tests compare every registered backend with this one, whose formulas
# (BatchNorm, optimizers, loss) the suite pins the others to (docs/design.md §1–§4).
REFERENCE_BACKEND = "torch"
COMPARED_BACKENDS = tuple(name for name in BACKEND_NAMES if name != REFERENCE_BACKEND)
# Keras runs one backend per process and this one's is TensorFlow's (tf's tests reach into
# its Keras models), so these run in a child process of their own (tests/remote_backend.py).
SEPARATE_PROCESS_BACKENDS = frozenset({"keras-jax"})
# The backends whose every parity case stays in the fast run (`make test`), as tf's did
# before there were others. A further backend keeps the light cases there and moves its
# long ones to `make test-slow`: XLA compiles each new step or shape for seconds (15–20 s
# for proposed_cnn's training step on 2 cores), which the fast run's budget cannot pay
# for every model, shape and recipe.
BROAD_FAST_BACKENDS = ("tf",)


def missing_framework(name: str) -> str | None:
    """Why backend `name` cannot run here (its framework's install line), or None."""
    try:
        check_available(name)
    except MissingFrameworkError as error:
        return str(error)
    return None


def backend_params(names: tuple[str, ...] = COMPARED_BACKENDS,
                   slow: tuple[str, ...] = ()) -> list:
    """pytest params of backend names, each skipped with its install line where its
    framework is missing, those in `slow` marked slow."""
    params = []
    for name in names:
        marks = [pytest.mark.slow] if name in slow else []
        if reason := missing_framework(name):
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def make_backend(name: str):
    """Backend `name`, in this process, or in its own (SEPARATE_PROCESS_BACKENDS) behind a
    RemoteBackend, which forwards every call."""
    if name in SEPARATE_PROCESS_BACKENDS:
        return RemoteBackend(name, threads=threads_for_tests())
    return create_backend(name)


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
                      compared: str = "tf", seed: int = 1) -> dict[str, Backend]:
    """`name` built in torch and `compared` (dropout off where it has any) with
    `calibrated_weights`.

    Returns:
        backend name → Backend (`make_backend`'s), both holding the same weights.
    """
    backends = {REFERENCE_BACKEND: create_backend(REFERENCE_BACKEND),
                compared: make_backend(compared)}
    overrides = {} if CATALOG[name].dropout is None else {"dropout": 0.0}
    for backend in backends.values():
        backend.build(name, shape, num_classes, **overrides)
    backends[compared].set_weights(
        calibrated_weights(backends[REFERENCE_BACKEND], shape, seed=seed))
    return backends


# --- a few Adam steps from the shared start (test_precision, test_gpu, test_models,
# noise_floor) -----------------------------------------------------------------------------
SIDE, BATCH, STEPS = 16, 16, 8


def step_data(seed: int, side: int = SIDE, batch: int = BATCH, steps: int = STEPS):
    """`steps` batches of `batch` random side×side grayscale images and labels of 7
    classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch * steps, side, side, 1), dtype=np.uint8)
    return images, rng.integers(0, 7, len(images))


def train_steps(backend: Backend, model: str, precision: str, seed: int, side: int = SIDE,
                batch: int = BATCH, steps: int = STEPS,
                learning_rate: float = TrainConfig.learning_rate) -> np.ndarray:
    """Per-step losses of `steps` Adam steps of `model` (dropout 0) in `backend`, from the
    shared start, on `step_data`'s batches in the shared order.

    Args:
        backend: a fresh backend (any of the registry's, or a RemoteBackend).
        model: a catalog model name.
        precision: the training precision.
        seed: seeds the start, the data and the batch order.
        side: the images' side in pixels.
        batch: images per step.
        steps: optimizer steps.
        learning_rate: Adam's rate.

    Returns:
        The losses, one per step.
    """
    x, y = step_data(seed, side, batch, steps)
    backend.build(model, (side, side, 1), 7, precision=precision, dropout=0.0)
    backend.set_weights(shared_initial_weights(backend.get_weights(), seed))
    backend.start_training(x, y, TrainConfig(precision=precision, learning_rate=learning_rate))
    return np.array([backend.train_step(b) for b in epoch_batches(len(x), batch, seed, 0)])


def step_losses(name: str, model: str, precision: str, seed: int):
    """Per-step losses of STEPS Adam steps from the shared start, on the shared batches.

    Returns:
        (the losses, the backend: `make_backend`'s).
    """
    backend = make_backend(name)
    return train_steps(backend, model, precision, seed), backend


# Every model's training steps (test_models' per-model test, noise_floor): more steps than
# STEPS, so that a wrong gradient anywhere in a model has time to show in its losses. At
# Adam's default rate, 1e-3, these runs are chaotic or collapsed: vgg16's and alexnet's
# losses jump to 4.3 and 6.2 at step 2 and then stay near ln 7 (near-uniform predictions,
# where a wrong gradient would hardly show), and torch alone, at one thread against two,
# parts from itself by up to 1.3e-2 (resnet18); at 1e-4 none jumps, and that floor is
# 6.8e-4 at most (measured 2026-12-06, AMD EPYC, AVX2, 2 vCPUs; docs/design.md, the
# per-model table of the native JAX backend).
MODEL_STEPS_SIDE, MODEL_STEPS_BATCH, MODEL_STEPS = 32, 8, 20
MODEL_STEPS_LEARNING_RATE = 1e-4


def model_step_losses(name: str, model: str, seed: int = 0) -> np.ndarray:
    """Per-step losses of MODEL_STEPS float32 Adam steps (rate MODEL_STEPS_LEARNING_RATE)
    of `model` in backend `name` (`make_backend`'s: keras-jax in its own process) from the
    shared start, on the shared batches of MODEL_STEPS_BATCH MODEL_STEPS_SIDE² images.

    Args:
        name: a backend name.
        model: a catalog model name.
        seed: seeds the start, the data and the batch order.

    Returns:
        The losses, one per step.
    """
    return train_steps(make_backend(name), model, "float32", seed, MODEL_STEPS_SIDE,
                       MODEL_STEPS_BATCH, MODEL_STEPS, MODEL_STEPS_LEARNING_RATE)
