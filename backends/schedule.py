"""The seeded host-side stream that decides what each training step sees (docs/design.md §3).

Both backends take their per-epoch sample order, class weights and per-step learning rates
from here, so given a seed they train on identical batches, pixel for pixel, at identical
rates.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

LR_SCHEDULES = ("constant", "cosine", "step", "plateau")


class ScheduleFields(Protocol):
    """The fields of TrainConfig the schedule reads (backends/train_config.py imports this
    module, so it cannot import TrainConfig)."""

    learning_rate: float
    lr_schedule: str
    epochs: int
    warmup_epochs: int
    lr_step_epochs: int
    lr_gamma: float


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


def step_learning_rates(
    config: ScheduleFields, epoch: int, steps_per_epoch: int, plateau_factor: float = 1.0
) -> np.ndarray:
    """The learning rate of every step of one epoch, the same for both frameworks.

    With `warmup_epochs` = W > 0, the first W epochs warm up linearly per step: global
    step k (0-based, counted from the first step of epoch 0) takes
    lr · (k + 1) / (W · steps_per_epoch), so the first step is small and the last
    warm-up step takes the full lr. Then the schedule runs, per epoch, over the remaining
    E = epochs − W epochs, with e = epoch − W (0-based), starting from the full lr:

    * "constant": lr;
    * "cosine": lr · ½(1 + cos(π · e / E)), so the last epochs take small steps and the
      final weights (and BN running statistics) settle instead of being caught mid-swing;
    * "step": lr · lr_gamma^⌊e / lr_step_epochs⌋ (torch's StepLR);
    * "plateau": lr · `plateau_factor`, the product of the reductions `PlateauState`
      has decided so far (ignored by the other schedules).

    Args:
        config: the recipe, a backends.train_config.TrainConfig (validated there).
        epoch: 0-based epoch number.
        steps_per_epoch: training steps in every epoch (`len(epoch_batches(...))`).
        plateau_factor: `PlateauState.factor` after the previous epoch.

    Returns:
        float64 array of shape (steps_per_epoch,): the rate of each step, in order.
    """
    if steps_per_epoch < 1:
        raise ValueError(
            f"steps_per_epoch must be ≥ 1. Received: steps_per_epoch={steps_per_epoch}"
        )
    warmup = config.warmup_epochs
    if epoch < warmup:
        first = epoch * steps_per_epoch + 1
        steps = np.arange(first, first + steps_per_epoch, dtype=np.float64)
        return config.learning_rate * steps / (warmup * steps_per_epoch)
    after, remaining = epoch - warmup, config.epochs - warmup
    factor = {
        "constant": 1.0,
        "cosine": 0.5 * (1.0 + math.cos(math.pi * after / remaining)),
        "step": config.lr_gamma ** (after // config.lr_step_epochs),
        "plateau": plateau_factor,
    }[config.lr_schedule]
    return np.full(steps_per_epoch, config.learning_rate * factor, np.float64)


class PlateauState:
    """The "plateau" schedule's decision, taken on the host from the validation loss.

    torch's ReduceLROnPlateau in mode "min" with threshold 0, cooldown 0 and no minimum
    learning rate: an epoch improves when its validation loss is strictly lower than the
    best so far (a NaN loss never does); once more than `patience` epochs in a row have
    not improved, the factor is multiplied by `gamma` and the count starts again (the best
    loss is kept). `Backend.fit` feeds it every validation loss after warm-up, so given
    the same validation losses both frameworks reduce at the same epochs; float rounding
    that moves a loss across the best could in principle move a reduction by an epoch.

    Args:
        patience: epochs without improvement tolerated before a reduction (≥ 0).
        gamma: the reduction factor, in (0, 1).

    Attributes:
        factor: the product of the reductions so far (1.0 before any).
    """

    def __init__(self, patience: int, gamma: float) -> None:
        self.patience, self.gamma = patience, gamma
        self.best = math.inf
        self.bad_epochs = 0
        self.factor = 1.0

    def update(self, val_loss: float) -> float:
        """Takes one epoch's validation loss; returns the factor for the next epoch."""
        if val_loss < self.best:
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.factor *= self.gamma
            self.bad_epochs = 0
        return self.factor
