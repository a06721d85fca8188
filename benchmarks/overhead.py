"""How much the suite's machinery costs: suite training throughput vs a bare loop.

    python -m benchmarks.overhead [--backend both] [--repeats 5]

For each backend this trains `proposed_cnn` on the same synthetic images, with the same
batch size and batch order, two ways, each in its own fresh process:

* bare: a minimal hand-written loop (model definition, optimizer, loss, step; TF's step
  in a `tf.function`), timed per epoch with the loss read at the end of the epoch;
* suite: `Backend.fit` as a worker runs it, with the host-memory, GPU-memory and energy
  trackers running.

Each process reports the images/s of each epoch after the first (tracing, warm-up). Per
mode the script prints the median over repeats of each process's median epoch, and the
best epoch of all, and each as the suite's fraction of the bare loop's. The modes
alternate so that drift in the machine's load hits both alike. Other processes can only
slow an epoch down, so on a shared machine, where the medians swing with their load
(the load average is printed before and after), the best epochs are the steadier
comparison, as `timeit` argues for its minimum.

Both apply the framework settings the suite pins for fairness (threads; on a GPU IEEE
float32, cuDNN autotuning, channels-last in torch), so the ratio measures the machinery
alone. See docs/measurement.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backends import BACKEND_NAMES, check_available
from backends.schedule import epoch_batches
from benchmarks.env import available_cores, cpu_model
from datasets import generate_synthetic

MODEL = "proposed_cnn"
MODES = ("bare", "suite")
_ROOT = Path(__file__).resolve().parent.parent


def _steady_throughputs(epoch_s: list[float], images_per_epoch: int) -> list[float]:
    """Images/s of each epoch after the first (tracing, warm-up)."""
    return [images_per_epoch / s for s in epoch_s[1:]]


def bare_torch(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int,
               threads: int) -> list[float]:
    """A minimal PyTorch training loop; returns each epoch's wall time in seconds."""
    import torch
    import torch.nn.functional as F

    from backends.torch.backend import pin_ieee_float32
    from backends.torch.models import create_model

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    pin_ieee_float32()
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    torch.manual_seed(0)
    model = create_model(MODEL, x.shape[1:], int(y.max()) + 1).to(device)
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    images, labels = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    model.train()
    epoch_s = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for batch in epoch_batches(len(x), batch_size, 0, epoch):
            index = torch.from_numpy(batch).to(device)
            inputs = (images[index].permute(0, 3, 1, 2).float() - 127.5) / 127.5
            loss = F.cross_entropy(model(inputs.contiguous(memory_format=memory_format)),
                                   labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loss.item()  # waits for the device
        epoch_s.append(time.perf_counter() - start)
    return epoch_s


def bare_tf(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int,
            threads: int) -> list[float]:
    """A minimal TensorFlow/Keras training loop; returns each epoch's wall time in seconds."""
    import keras
    import tensorflow as tf

    from backends.tf.models import create_model

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(0)
    model = create_model(MODEL, x.shape[1:], int(y.max()) + 1)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8)
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    variables = model.trainable_variables

    @tf.function
    def step(index):
        with tf.GradientTape() as tape:
            inputs = (tf.cast(tf.gather(images, index), tf.float32) - 127.5) / 127.5
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.gather(labels, index), model(inputs, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    epoch_s = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for batch in epoch_batches(len(x), batch_size, 0, epoch):
            loss = step(tf.constant(batch.astype(np.int32)))
        float(loss)  # waits for the device
        epoch_s.append(time.perf_counter() - start)
    return epoch_s


def suite(backend_name: str, x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int,
          threads: int) -> list[float]:
    """`Backend.fit` with the worker's trackers running; returns each epoch's train_s."""
    from backends import create_backend
    from backends.base import TrainConfig
    from benchmarks.probes import EnergyTracker, GpuMemoryTracker, HostMemoryTracker

    backend = create_backend(backend_name, threads=threads)
    backend.seed(0)
    with GpuMemoryTracker():
        backend.build(MODEL, x.shape[1:], int(y.max()) + 1)
        with HostMemoryTracker(), EnergyTracker():
            history = backend.fit(x, y, TrainConfig(epochs=epochs, batch_size=batch_size))
    return [log.train_s for log in history]


BARE = {"torch": bare_torch, "tf": bare_tf}


def _load() -> str:
    """The 1-minute load average: above the core count, other work competes for the CPU."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def _child(args: argparse.Namespace) -> None:
    data = np.load(args.data)
    x, y = data["x"], data["y"]
    if args.child == "bare":
        epoch_s = BARE[args.backend](x, y, args.batch_size, args.epochs, args.threads)
    else:
        epoch_s = suite(args.backend, x, y, args.batch_size, args.epochs, args.threads)
    images = len(epoch_batches(len(x), args.batch_size, 0, 0)) * args.batch_size
    print(json.dumps({"img_s": _steady_throughputs(epoch_s, images)}))


def _run_child(mode: str, backend: str, data: Path, args: argparse.Namespace) -> list[float]:
    """Runs one mode in a fresh process; returns its steady epochs' images/s."""
    command = [sys.executable, "-m", "benchmarks.overhead", "--child", mode,
               "--backend", backend, "--data", str(data), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {backend} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])["img_s"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="Suite training throughput as a fraction of a bare training loop's.",
    )
    parser.add_argument("--backend", default="both",
                        help=f"one of {', '.join(BACKEND_NAMES)}, both (default: both)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="processes per backend and mode (default: 5)")
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs per process; the first is not timed (default: 6)")
    parser.add_argument("--images", type=int, default=640,
                        help="training images (default: 640)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="threads for both frameworks (default: all %(default)s cores)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return parser


def _validate(args: argparse.Namespace) -> list[str]:
    backends = list(BACKEND_NAMES) if args.backend == "both" else [args.backend]
    for backend in backends:
        check_available(backend)
    for name in ("repeats", "threads", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1. "
                             f"Received: {getattr(args, name)}")
    if args.epochs < 2:
        raise ValueError(f"--epochs must be ≥ 2 (the first is warm-up). Received: {args.epochs}")
    if args.images < 2 * args.batch_size:
        raise ValueError(f"--images must hold at least 2 batches. Received: {args.images}")
    return backends


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        _child(args)
        return 0
    try:
        backends = _validate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # 7 expressions per subject and repetition: enough subjects to reach --images.
    per_subject = 7 * 3
    dataset = generate_synthetic(num_subjects=-(-args.images // per_subject),
                                 per_expression=3, image_size=args.image_size)
    print(f"{MODEL}, {args.images} synthetic {args.image_size}×{args.image_size} images, "
          f"batch {args.batch_size}, {args.epochs} epochs (first untimed), {args.threads} "
          f"threads, {args.repeats} repeats; {cpu_model()}, {os.cpu_count()} cores, "
          f"load average {_load()}", flush=True)
    lines = [f"{'':<8}{'median of repeats, img/s':^36}{'best epoch, img/s':^36}",
             f"{'backend':<8}" + f"{'bare':>12}{'suite':>12}{'suite/bare':>12}" * 2]
    with tempfile.TemporaryDirectory(prefix="ferbench-overhead-") as work:
        data = Path(work) / "data.npz"
        np.savez(data, x=dataset.images[: args.images], y=dataset.labels[: args.images])
        for backend in backends:
            runs = {mode: [] for mode in MODES}  # per mode, each process's epoch img/s
            for repeat in range(args.repeats):
                # Alternate the order so that a trend in the machine's load cancels out.
                for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                    runs[mode].append(_run_child(mode, backend, data, args))
                    print(f"  {backend} {mode:<5} repeat {repeat + 1}: "
                          f"{' '.join(f'{v:.1f}' for v in runs[mode][-1])} img/s", flush=True)
            median = {m: statistics.median(map(statistics.median, runs[m])) for m in MODES}
            best = {m: max(map(max, runs[m])) for m in MODES}
            lines.append(f"{backend:<8}" + "".join(
                f"{v['bare']:>12.1f}{v['suite']:>12.1f}{v['suite'] / v['bare']:>12.3f}"
                for v in (median, best)))
    print(f"\nload average {_load()}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
