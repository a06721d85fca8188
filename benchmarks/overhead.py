"""How much the suite's machinery costs: suite training throughput vs a bare loop.

    python -m benchmarks.overhead [--backend both|all|tf,torch,keras-jax,jax] [--repeats 3]

For each backend this trains `proposed_cnn` on the same synthetic images, with the same
batch size and batch order, two ways, each in its own fresh process:

* bare: a minimal hand-written loop, the way each framework's users write one (model
  definition, Adam at the suite's default rate and ε, cross-entropy, step), each epoch
  timed up to the loss read at its end:
  * tf: the step in a `tf.function`;
  * torch: model and batches on the backend's device, channels-last;
  * keras-jax: the Keras model's `stateless_call` inside `jax.value_and_grad`, then the
    Keras optimizer's `stateless_apply`, in one `jax.jit` step;
  * jax: the Flax NNX model split into parameters and the rest, merged back inside one
    `jax.jit` step with optax's Adam;
  both JAX steps donate the state they are given, so updates reuse its buffers as
  torch's and TF's in-place updates do;
* suite: `Backend.fit` as a worker runs it, with the host-memory, GPU-memory and energy
  trackers running; each epoch's `train_s` is the suite's own measurement.

Both processes start together and then take turns, one epoch at a time, on the parent's
signal (the order alternates), so that each suite epoch has a bare epoch seconds away:
other processes' load, which comes and goes over seconds to minutes, then hits both
sides of a pair alike. The first epoch of each process (tracing, XLA's compilation,
warm-up) is not counted. The script prints each mode's median images/s and the median
over epoch pairs of the suite's fraction of the bare loop's, the figure to hold against
the target of 0.95.

Both apply the framework's runtime settings through the same call, `configure_runtime`
of backends/<package>/runtime.py (threads, determinism off, IEEE float32, cuDNN
autotuning in torch, one GPU with memory growth in TF, XLA_FLAGS and the "highest"
matmul precision in the JAX backends), after the same package import, which pins
KERAS_BACKEND in each process for the Keras backends whatever the process inherited and
turns XLA's GPU memory preallocation off for the JAX ones; so the ratio measures the
machinery alone. XLA takes one thread count, 1 (`--threads 1`: one compute thread); any
other keeps its pool of a thread per CPU the process may use. A backend whose framework
is not installed is refused in one line naming the extra (exit status 2). See
docs/measurement.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from backends import MissingFrameworkError, check_available
from backends.base import PIXEL_CENTER, PIXEL_SCALE
from backends.schedule import epoch_batches
from backends.train_config import TrainConfig
from benchmarks.backend_choice import BackendChoice, add_backend_option, expand_backends
from benchmarks.runner.env import SUITE_ROOT, available_cores, cpu_model
from datasets import generate_synthetic

MODEL = "proposed_cnn"
MODES = ("bare", "suite")
# Every bare loop trains with Adam at the suite's default rate and ε.
LEARNING_RATE = TrainConfig.learning_rate
ADAM_EPSILON = TrainConfig.epsilon
# Marks the child's protocol lines on stdout, which frameworks may also print to.
_PROTOCOL = "@overhead"
# A bare loop's model and its training step (batch indices → loss tensor, not awaited).
BareTraining = tuple[Any, Callable[[np.ndarray], Any]]


class Turns:
    """A child's side of the turn-taking: wait for the parent's go, report an epoch."""

    def __init__(self) -> None:
        self._say("ready")

    @staticmethod
    def _say(message: str) -> None:
        print(f"{_PROTOCOL} {message}", flush=True)

    def wait(self) -> None:
        """Blocks until the parent lets this process run its next epoch."""
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("parent went away")

    def report(self, epoch_s: float) -> None:
        self._say(repr(epoch_s))

    def linger(self) -> None:
        """Blocks until the parent is done, so that tearing this process down cannot slow
        the other child's last epoch."""
        sys.stdin.read()


def _classes(y: np.ndarray) -> int:
    """The number of classes of labels `y` (0, 1, …), as the suite counts them."""
    return int(y.max()) + 1


def build_bare_torch(x: np.ndarray, y: np.ndarray, threads: int) -> BareTraining:
    """Builds the bare PyTorch loop: its model and its training step.

    The runtime settings, device and memory format (channels-last) are the backend's,
    from the same `configure_runtime`.

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        threads: intra- and inter-op thread pool sizes.

    Returns:
        (model, step): `step(batch)` trains on the samples `batch` (int64 indices into
        `x`) and returns the loss without waiting for the device.
    """
    import torch
    import torch.nn.functional as F

    from backends.torch.models import create_model
    from backends.torch.runtime import configure_runtime

    runtime = configure_runtime(threads, deterministic=False)
    torch.manual_seed(0)
    model = runtime.place_model(create_model(MODEL, x.shape[1:], _classes(y)))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=ADAM_EPSILON)
    images = torch.from_numpy(x).to(runtime.device)
    labels = torch.from_numpy(y).to(runtime.device)
    model.train()

    def step(batch: np.ndarray):
        index = torch.from_numpy(batch).to(runtime.device)
        inputs = (images[index].permute(0, 3, 1, 2).float() - PIXEL_CENTER) / PIXEL_SCALE
        loss = F.cross_entropy(model(runtime.format_batch(inputs)), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return model, step


def build_bare_tf(x: np.ndarray, y: np.ndarray, threads: int) -> BareTraining:
    """Builds the bare TensorFlow/Keras loop: its model and its training step.

    The runtime settings and device are the backend's, from the same `configure_runtime`,
    and so is Keras's backend, pinned to TensorFlow (backends/tf/) before keras is
    imported.

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        threads: intra- and inter-op thread pool sizes.

    Returns:
        (model, step): `step(batch)` trains on the samples `batch` (int64 indices into
        `x`) and returns the loss without waiting for the device.
    """
    from backends.tf.runtime import configure_runtime

    # Before keras is imported: importing backends.tf pinned KERAS_BACKEND.
    configure_runtime(threads, deterministic=False)
    import keras
    import tensorflow as tf

    from backends.keras.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model(MODEL, x.shape[1:], _classes(y))
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON)
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    variables = model.trainable_variables

    @tf.function
    def traced_step(index):
        with tf.GradientTape() as tape:
            inputs = (tf.cast(tf.gather(images, index), tf.float32) - PIXEL_CENTER) / PIXEL_SCALE
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.gather(labels, index), model(inputs, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def step(batch: np.ndarray):
        return traced_step(tf.constant(batch.astype(np.int32)))

    return model, step


def _jitted_jax_step(train_step: Callable[..., tuple[Any, Any]], state: Any, x: np.ndarray,
                     y: np.ndarray) -> Callable[[np.ndarray], Any]:
    """The host side of a JAX training step, as both JAX loops drive theirs.

    Args:
        train_step: (state, images, labels, index) → (new state, loss), pure; `images`
            and `labels` are all of `x` and `y` on the device, `index` the batch's int32
            sample indices.
        state: the first step's state, a pytree of arrays (parameters, the rest of the
            model's variables, the optimizer's).
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).

    Returns:
        `step(batch)`: one jitted step on the samples `batch` (int64 indices into `x`),
        returning the loss without waiting for the device. Each step donates the state it
        is given, whose buffers the new state reuses as torch's and TF's in-place updates
        do, and keeps the new one for the next.
    """
    import jax
    import jax.numpy as jnp

    compiled = jax.jit(train_step, donate_argnums=0)
    images, labels = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    def step(batch: np.ndarray):
        nonlocal state
        state, loss = compiled(state, images, labels, batch.astype(np.int32))
        return loss

    return step


def build_bare_jax(x: np.ndarray, y: np.ndarray, threads: int) -> BareTraining:
    """Builds the bare native JAX loop: its Flax NNX model and its training step.

    As a JAX user writes it: the model split once into its parameters and the rest
    (BatchNorm statistics, the dropout stream), optax's Adam, and one `jax.jit` step that
    merges them, takes `jax.value_and_grad` of the cross-entropy and returns the new
    trees. The runtime settings and device are the backend's, from the same
    `configure_runtime` (backends/jax/runtime.py), after backends/jax/ has turned XLA's
    GPU memory preallocation off.

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        threads: 1 for single-threaded XLA CPU code; any other count keeps XLA's pool
            (backends/jax/runtime.py).

    Returns:
        (model, step): `step(batch)` trains on the samples `batch` (int64 indices into
        `x`) and returns the loss without waiting for the device. The model holds the
        initial weights until the first step, which takes over (donates) its arrays.
    """
    from backends.jax.runtime import configure_runtime

    # Before JAX's first array: XLA reads its flags once (importing backends.jax turned
    # GPU memory preallocation off before jax was imported).
    configure_runtime(threads, deterministic=False)
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from backends.jax.models import create_model

    model = create_model(MODEL, x.shape[1:], _classes(y),
                         framework_args={"rngs": nnx.Rngs(params=0, dropout=0)})
    model.train()
    optimizer = optax.adam(LEARNING_RATE, eps=ADAM_EPSILON)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def train_step(state, images, labels, index):
        params, rest, optimizer_state = state

        def loss_of(params):
            # A copy: BatchNorm updates its statistics in place, which the variables of
            # `rest`, made outside the differentiated function, would refuse.
            model = nnx.merge(graphdef, params, rest, copy=True)
            inputs = (images[index].astype(jnp.float32) - PIXEL_CENTER) / PIXEL_SCALE
            loss = optax.softmax_cross_entropy_with_integer_labels(
                model(inputs), labels[index]).mean()
            return loss, nnx.split(model, nnx.Param, ...)[2]

        (loss, rest), gradients = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        return (optax.apply_updates(params, updates), rest, optimizer_state), loss

    return model, _jitted_jax_step(train_step, (params, rest, optimizer.init(params)), x, y)


def build_bare_keras_jax(x: np.ndarray, y: np.ndarray, threads: int) -> BareTraining:
    """Builds the bare Keras-on-JAX loop: its Keras model and its training step.

    As Keras's guide to a JAX training loop writes it: the variables' values taken out of
    the model and the optimizer, and one `jax.jit` step of `model.stateless_call` inside
    `jax.value_and_grad`, then `optimizer.stateless_apply`. Keras's backend is pinned to
    JAX (backends/keras_jax/) before keras is imported, whatever KERAS_BACKEND this
    process inherited; the runtime settings are the backend's, from the same
    `configure_runtime` (backends/keras_jax/runtime.py).

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        threads: 1 for single-threaded XLA CPU code; any other count keeps XLA's pool
            (backends/keras_jax/runtime.py).

    Returns:
        (model, step): `step(batch)` trains on the samples `batch` (int64 indices into
        `x`) and returns the loss without waiting for the device. The model's variables
        keep their initial values: the step trains values taken out of them.
    """
    from backends.keras_jax.runtime import configure_runtime

    # Before keras is imported: importing backends.keras_jax pinned KERAS_BACKEND.
    configure_runtime(threads, deterministic=False)
    import jax
    import jax.numpy as jnp
    import keras

    from backends.keras.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model(MODEL, x.shape[1:], _classes(y))
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON)
    optimizer.build(model.trainable_variables)

    def loss_of(trainable, non_trainable, inputs, targets):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, inputs,
                                                     training=True)
        loss = keras.ops.mean(keras.ops.sparse_categorical_crossentropy(
            targets, logits, from_logits=True))
        return loss, non_trainable

    gradient_of = jax.value_and_grad(loss_of, has_aux=True)

    def train_step(state, images, labels, index):
        trainable, non_trainable, optimizer_values = state
        inputs = (images[index].astype(jnp.float32) - PIXEL_CENTER) / PIXEL_SCALE
        (loss, non_trainable), gradients = gradient_of(trainable, non_trainable, inputs,
                                                       labels[index])
        trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, gradients,
                                                                trainable)
        return (trainable, non_trainable, optimizer_values), loss

    state = tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, optimizer.variables))
    return model, _jitted_jax_step(train_step, state, x, y)


def bare_loop(build: Callable[..., BareTraining], x: np.ndarray, y: np.ndarray,
              batch_size: int, epochs: int, threads: int, turns: Turns) -> None:
    """The bare loop of `build` (a `build_bare_*`), one epoch per turn."""
    _, step = build(x, y, threads)
    for epoch in range(epochs):
        turns.wait()
        start = time.perf_counter()
        for batch in epoch_batches(len(x), batch_size, 0, epoch):
            loss = step(batch)
        float(loss)  # waits for the device
        turns.report(time.perf_counter() - start)


def suite(backend_name: str, x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int,
          threads: int, turns: Turns) -> None:
    """`Backend.fit` with the worker's trackers running, one epoch per turn."""
    from backends import create_backend
    from backends.train_config import TrainConfig
    from benchmarks.trackers.energy import EnergyTracker
    from benchmarks.trackers.memory import GpuMemoryTracker, HostMemoryTracker

    def next_turn(log) -> None:  # runs after the epoch's clock has stopped
        turns.report(log.train_s)
        if log.epoch < epochs:
            turns.wait()

    backend = create_backend(backend_name, threads=threads)
    backend.seed(0)
    with GpuMemoryTracker():
        backend.build(MODEL, x.shape[1:], int(y.max()) + 1)
        with HostMemoryTracker(), EnergyTracker():
            turns.wait()
            backend.fit(x, y, TrainConfig(epochs=epochs, batch_size=batch_size),
                        on_epoch_end=next_turn)


# In the registry's order, which `--backend all` keeps.
BARE = {name: partial(bare_loop, build) for name, build in (
    ("tf", build_bare_tf), ("torch", build_bare_torch), ("keras-jax", build_bare_keras_jax),
    ("jax", build_bare_jax))}


class _Child:
    """The parent's handle on one child process."""

    def __init__(self, mode: str, backend: str, data: Path, args: argparse.Namespace) -> None:
        self.name = f"{backend} {mode}"
        command = [sys.executable, "-m", "benchmarks.overhead", "--child", mode,
                   "--backend", backend, "--data", str(data), "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        # The same TF log level as the backend sets, whichever module imports TF first.
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ}
        self.process = subprocess.Popen(command, cwd=SUITE_ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)

    def _read(self) -> str:
        for line in self.process.stdout:
            if line.startswith(_PROTOCOL):
                return line.split(maxsplit=1)[1].strip()
        raise RuntimeError(f"{self.name} exited with status {self.process.wait()} "
                           "(its error is above)")

    def ready(self) -> None:
        self._read()

    def epoch(self) -> float:
        """Lets the child run one epoch; returns its wall time in seconds."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return float(self._read())

    def close(self) -> None:
        self.process.stdin.close()  # lets a lingering child exit
        if self.process.wait() != 0:
            raise RuntimeError(f"{self.name} exited with status {self.process.returncode}")


def _load() -> str:
    """The 1-minute load average: above the core count, other work competes for the CPU."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def _paired_repeat(backend: str, data: Path, args: argparse.Namespace,
                   images: int) -> dict[str, list[float]]:
    """One bare and one suite process taking turns; returns their steady epochs' img/s."""
    children = {mode: _Child(mode, backend, data, args) for mode in MODES}
    try:
        for child in children.values():
            child.ready()
        img_s = {mode: [] for mode in MODES}
        for epoch in range(args.epochs):
            for mode in MODES if epoch % 2 == 0 else MODES[::-1]:
                seconds = children[mode].epoch()
                if epoch > 0:  # the first epoch traces and warms up
                    img_s[mode].append(images / seconds)
        for child in children.values():
            child.close()
    finally:
        for child in children.values():
            if child.process.poll() is None:
                child.process.kill()
    return img_s


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="Suite training throughput as a fraction of a bare training loop's.",
    )
    add_backend_option(parser, registered=tuple(BARE))
    parser.add_argument("--repeats", type=int, default=3,
                        help="pairs of fresh processes per backend (default: 3)")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs per process; the first is not counted (default: 6)")
    parser.add_argument("--images", type=int, default=640,
                        help="training images (default: 640)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="threads for both frameworks (default: all %(default)s cores)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return parser


def _validate(args: argparse.Namespace) -> BackendChoice:
    """The backends `args` names, once every option is checked.

    Args:
        args: the parent's parsed command line.

    Returns:
        The backends to measure, and those `--backend all` skipped.

    Raises:
        ValueError: an option out of range, or an unknown backend.
        MissingFrameworkError: a named backend's framework is not installed.
    """
    choice = expand_backends(args.backend, registered=tuple(BARE))
    for backend in choice.backends:
        check_available(backend)
    for name in ("repeats", "threads", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1. "
                             f"Received: {getattr(args, name)}")
    if args.epochs < 2:
        raise ValueError(f"--epochs must be ≥ 2 (the first is warm-up). Received: {args.epochs}")
    if args.images < 2 * args.batch_size:
        raise ValueError(f"--images must hold at least 2 batches. Received: {args.images}")
    return choice


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        data = np.load(args.data)
        runner = BARE[args.backend] if args.child == "bare" else partial(suite, args.backend)
        turns = Turns()
        runner(data["x"], data["y"], args.batch_size, args.epochs, args.threads, turns)
        turns.linger()
        return 0
    try:
        choice = _validate(args)
    except (ValueError, MissingFrameworkError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # 7 expressions × 3 images per synthetic subject: enough subjects to reach --images.
    dataset = generate_synthetic(num_subjects=-(-args.images // 21), per_expression=3,
                                 image_size=args.image_size)
    images = len(epoch_batches(args.images, args.batch_size, 0, 0)) * args.batch_size
    print(f"{MODEL}, {args.images} synthetic {args.image_size}×{args.image_size} images, "
          f"batch {args.batch_size}, {args.epochs} epochs (first not counted), {args.threads} "
          f"threads, {args.repeats} repeats; {cpu_model()}, {os.cpu_count()} cores, "
          f"load average {_load()}", flush=True)
    if skipped := choice.skipped_line():
        print(skipped, flush=True)
    lines = [f"{'backend':<10}{'bare img/s':>12}{'suite img/s':>13}{'suite/bare':>12}"
             f"{'pairs':>7}{'ratio IQR':>16}"]
    with tempfile.TemporaryDirectory(prefix="ferbench-overhead-") as work:
        data = Path(work) / "data.npz"
        np.savez(data, x=dataset.images[: args.images], y=dataset.labels[: args.images])
        for backend in choice.backends:
            img_s = {mode: [] for mode in MODES}
            for repeat in range(args.repeats):
                result = _paired_repeat(backend, data, args, images)
                for mode in MODES:
                    img_s[mode] += result[mode]
                    print(f"  {backend} {mode:<5} repeat {repeat + 1}: "
                          f"{' '.join(f'{v:.1f}' for v in result[mode])} img/s", flush=True)
            ratios = [s / b for b, s in zip(img_s["bare"], img_s["suite"], strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            lines.append(f"{backend:<10}{statistics.median(img_s['bare']):>12.1f}"
                         f"{statistics.median(img_s['suite']):>13.1f}"
                         f"{statistics.median(ratios):>12.3f}{len(ratios):>7}"
                         f"{f'{q1:.3f}–{q3:.3f}':>16}")
    print(f"\nload average {_load()}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
