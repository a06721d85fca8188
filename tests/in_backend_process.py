"""Parity work that runs inside a Keras backend's own process (tests/remote_backend.py).

The functions here build plain Keras models, so they run where the backend has pinned
Keras's backend: in the test process for tf, in its child for keras-jax. This module
imports no framework at its top, so a child can import it before pinning.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from backends.base import TrainConfig

INPUT_SHAPE = (4, 4, 1)  # the dense tests' images: 16 pixels, one channel


def dense_config(config: TrainConfig, steps: int) -> TrainConfig:
    """`config` for the dense tests: `steps` one-step epochs, all but the last warm-up,
    so the rate changes every step until it reaches the base rate."""
    return replace(config, epochs=steps, batch_size=16, warmup_epochs=steps - 1, seed=7)


def keras_dense_model(weights: list[np.ndarray], biases: list[np.ndarray]):
    """A Keras Sequential of dense layers (ReLU between) on the flattened pixels.

    The layers are named as torch's Sequential indices ("1", "3", …, after the Flatten
    and between the ReLUs), so their canonical names are torch's.

    Args:
        weights: each layer's kernel, (out, in) as torch's.
        biases: each layer's bias.

    Returns:
        (the model, its Dense layers).
    """
    import keras

    last = len(weights) - 1
    denses = [keras.layers.Dense(weight.shape[0], activation=None if i == last else "relu",
                                 name=str(2 * i + 1)) for i, weight in enumerate(weights)]
    model = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Flatten(), *denses])
    for dense, weight, bias in zip(denses, weights, biases, strict=True):
        dense.set_weights([weight.T, bias])
    return model, denses


def fit_keras_dense(backend_name: str, start: tuple[list, list], config: TrainConfig,
                    x: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], list[float]]:
    """Backend `backend_name`'s `fit` of `keras_dense_model(*start)` on (x, y).

    Returns:
        (the canonical weights after, each epoch's learning rate).
    """
    from backends import create_backend

    backend = create_backend(backend_name)
    backend.model, _ = keras_dense_model(*start)
    backend.model_name, backend.num_classes = "softmax_regression", start[0][-1].shape[0]
    logs = backend.fit(x, y, config)
    return backend.get_weights(), [log.learning_rate for log in logs]
