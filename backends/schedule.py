"""The seeded host-side stream that decides what each training step sees (docs/design.md §3).

Both backends take their per-epoch sample order and class weights from here, so given a
seed they train on identical batches, pixel for pixel.
"""

from __future__ import annotations

import math

import numpy as np

LR_SCHEDULES = ("constant", "cosine")


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Returns the index batches of one epoch, in order.

    The order is a permutation drawn from a generator seeded by (seed, epoch), so any
    epoch can be reproduced on its own. When the set holds more than one batch, the last
    incomplete batch is dropped (a batch of one breaks BatchNorm's training mode); a set
    smaller than one batch is a single batch.

    Args:
        num_samples: size of the training set.
        batch_size: images per batch.
        seed: the run's seed.
        epoch: 0-based epoch number.

    Returns:
        A list of int64 index arrays.
    """
    if num_samples < 2:
        raise ValueError(f"training needs at least 2 samples. Received: {num_samples}")
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    if num_samples <= batch_size:
        return [order]
    full = num_samples // batch_size
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(full)]


def class_weight_table(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Returns one loss weight per class (float32, shape (num_classes,)).

    Args:
        labels: training labels.
        num_classes: number of classes C.
        mode: "none" (all ones) or "balanced" (n / (C * count_c); 0 for absent classes).
    """
    if mode == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    table = np.zeros(num_classes)
    present = counts > 0
    table[present] = len(labels) / (num_classes * counts[present])
    return table.astype(np.float32)


def epoch_learning_rate(base_lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of one epoch, the same for both frameworks.

    "cosine" anneals per epoch, lr · ½(1 + cos(π · epoch / epochs)), so the last epochs
    take small steps and the final weights (and BN running statistics) settle instead of
    being caught mid-swing; "constant" keeps `base_lr`.

    Args:
        base_lr: the configured learning rate.
        schedule: one of LR_SCHEDULES.
        epoch: 0-based epoch number.
        epochs: total epochs.
    """
    if schedule == "constant":
        return base_lr
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
