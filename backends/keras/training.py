"""What a Keras backend's training step computes besides the model: the loss, and the
dtype policy of each precision. Written in `keras.ops`, so tf and keras-jax share it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# The framework package that imports this module has pinned KERAS_BACKEND
# (backends/keras/__init__.py).
import keras

ops = keras.ops

# The Keras dtype policy of each TrainConfig precision: "mixed_*" keeps variables (the
# master weights) in float32 and computes layers in the 16-bit type.
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                  "float16": "mixed_float16"}


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Makes `name` Keras's global dtype policy for the block only.

    Keras layers take the global policy when they are made, so the model built in the
    block keeps it, and nothing built later in the process (another model, the
    calibration's tensors) inherits it.

    Args:
        name: a Keras dtype policy name (a value of DTYPE_POLICIES).
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def cross_entropy(logits, labels, num_classes: int, smoothing: float):
    """Per-sample cross-entropy with torch's label smoothing: (1-s)·onehot + s/C.

    Args:
        logits: (N, C) float32 logits.
        labels: (N,) integer labels.
        num_classes: C.
        smoothing: label smoothing in [0, 1).

    Returns:
        (N,) float32 losses.
    """
    target = ops.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return -ops.sum(target * ops.log_softmax(logits, axis=-1), axis=-1)


def training_loss(logits, labels, class_weights, smoothing: float):
    """The training step's loss, torch's `training_loss` in Keras ops.

    Args:
        logits: (N, C) float32 logits.
        labels: (N,) integer labels.
        class_weights: (C,) float32 per-class loss weights.
        smoothing: label smoothing in [0, 1).

    Returns:
        The class-weighted mean of the per-sample cross-entropies: Σ wᵢ·ℓᵢ / Σ wᵢ, wᵢ the
        weight of sample i's class (torch's `cross_entropy(weight=…)` mean reduction).
    """
    per_sample = cross_entropy(logits, labels, logits.shape[-1], smoothing)
    weights = ops.take(class_weights, labels)
    return ops.sum(per_sample * weights) / ops.sum(weights)
