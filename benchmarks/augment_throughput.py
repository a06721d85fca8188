"""How fast the host-side augmentation is, per level, on one thread.

    python -m benchmarks.augment_throughput [--image-size 48] [--batch-size 32] [--seconds 5]

Times `augment_batch` alone on random uint8 grayscale batches, `--seconds` per level,
each step with its own generator as training draws it (`batch_rng`), and prints images/s
per level beside the 1-minute load average. numpy's elementwise ops and fancy indexing
run on the calling thread, so the figure is one core's. The target is 2,500 images/s at
48×48, batch 32: ten times the fastest model's training throughput on a 2-core machine,
so that augmentation never shows in a training epoch's time. Imports no framework.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from backends.augment import AUGMENT_LEVELS, augment_batch, augment_config, batch_rng

TARGET_IMAGES_PER_S = 2500.0


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def images_per_second(level: str, image_size: int, batch_size: int, seconds: float) -> float:
    """Augments batches at `level` for about `seconds` and returns images/s."""
    config = augment_config(level)
    images = np.random.default_rng(0).integers(
        0, 256, (batch_size, image_size, image_size, 1), dtype=np.uint8)
    augment_batch(images, config, batch_rng(0, 0, 0))  # warm-up: caches, first allocations
    steps = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        augment_batch(images, config, batch_rng(0, 0, steps))
        steps += 1
    return steps * batch_size / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=48, help="image side (default 48)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per level")
    args = parser.parse_args(argv)
    if args.image_size < 8 or args.batch_size < 1 or not args.seconds > 0:
        raise SystemExit("image-size must be ≥ 8, batch-size ≥ 1 and seconds > 0. Received: "
                         f"image-size={args.image_size}, batch-size={args.batch_size}, "
                         f"seconds={args.seconds}")
    print(f"augment_batch, {args.image_size}×{args.image_size}×1, batch {args.batch_size}, "
          f"{args.seconds:g} s per level; target ≥ {TARGET_IMAGES_PER_S:,.0f} images/s")
    print(f"{'level':<10} {'images/s':>12}  {'load 1m':>7}")
    for level in AUGMENT_LEVELS:
        rate = images_per_second(level, args.image_size, args.batch_size, args.seconds)
        mark = "" if rate >= TARGET_IMAGES_PER_S else "  below target"
        print(f"{level:<10} {rate:>12,.0f}  {_load():>7}{mark}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
