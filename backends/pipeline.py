"""The host input path: one epoch's training batches, augmented and prepared ahead.

`fit` hands a backend the pixels of every step, not indices into a set held on the
device: augmentation (backends/augment.py) has to run on the host, in numpy, so that
both frameworks train on the same pixels. A background thread gathers and augments the
coming batches while the framework computes the current step, so the host's work
overlaps the device's instead of adding to it (docs/design.md §3). numpy releases the
GIL in the gathers and arithmetic that dominate augmentation, so the thread runs beside
the framework's own threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from backends.augment import AugmentConfig, augment_batch, batch_rng

# Batches prepared ahead of the one being trained on: enough to ride out one slow batch,
# few enough that the queue's memory stays a small multiple of one batch.
PREFETCH_BATCHES = 2


@dataclass
class InputTiming:
    """Where one epoch's input path spent its time.

    Attributes:
        augment_s: seconds the background thread spent gathering and augmenting batches
            (overlapped with training, so not part of the epoch's time unless the
            training loop waited for it).
        wait_s: seconds the training loop waited for its next batch: the time the input
            path held up training. Near 0 when the host keeps ahead of the device.
    """

    augment_s: float = 0.0
    wait_s: float = 0.0


def host_batch(
    x: np.ndarray,
    y: np.ndarray,
    indices: np.ndarray,
    augment: AugmentConfig,
    seed: int,
    epoch: int,
    step: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels and labels of one training step, augmented from the shared stream.

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        indices: the step's sample indices (`backends.schedule.epoch_batches`).
        augment: the recipe's augmentation.
        seed: the run's seed.
        epoch: 0-based epoch.
        step: 0-based step within the epoch; with seed and epoch it seeds the step's
            augmentation (`batch_rng`), so any step is reproducible on its own.

    Returns:
        (images uint8 (B, H, W, C), labels int64 (B,)), both new arrays.
    """
    images = x[indices]
    if not augment.is_identity:
        images = augment_batch(images, augment, batch_rng(seed, epoch, step))
    return images, y[indices].astype(np.int64)


class EpochStream:
    """Iterates one epoch's (images, labels) batches, prepared by a background thread.

    The batches are exactly `host_batch(x, y, batches[i], augment, seed, epoch, i)` in
    order, whatever the thread's timing. An exception in the thread is raised in the
    consumer at the batch it would have produced. Closing the iterator early (an error
    or Ctrl-C in the training loop) stops the thread.

    Args:
        x: training images, uint8 (N, H, W, C).
        y: integer labels (N,).
        batches: the epoch's index batches.
        augment: the recipe's augmentation.
        seed: the run's seed.
        epoch: 0-based epoch.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batches: list[np.ndarray],
                 augment: AugmentConfig, seed: int, epoch: int) -> None:
        self._args = (x, y, augment, seed, epoch)
        self._batches = batches
        self.timing = InputTiming()

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ready: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(ready, stop), daemon=True,
                                  name="fer-bench-input")
        worker.start()
        try:
            for _ in self._batches:
                start = time.perf_counter()
                item = ready.get()
                self.timing.wait_s += time.perf_counter() - start
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # Unblocks a producer waiting on a full queue so it sees `stop` and ends.
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.01)

    def _produce(self, ready: queue.Queue, stop: threading.Event) -> None:
        x, y, augment, seed, epoch = self._args
        for step, indices in enumerate(self._batches):
            if stop.is_set():
                return
            start = time.perf_counter()
            try:
                item = host_batch(x, y, indices, augment, seed, epoch, step)
            except BaseException as error:  # handed to the consumer, which raises it
                item = error
            self.timing.augment_s += time.perf_counter() - start
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
