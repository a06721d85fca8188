"""Keras 3 code shared by the backends that run the Keras models: tf and keras-jax.

The model definitions (models.py), the optimizers that take torch's steps
(optimizers.py), the canonical weight conversion (weights.py) and the training loss and
precision policies (training.py) are written in `keras.layers` and `keras.ops` alone, so
they run on whichever Keras backend the process has. Keras picks that backend once, when
it is first imported, so the submodules (which import keras) are imported only by a
framework package (backends/tf/, backends/keras_jax/) after it has called
`pin_keras_backend`. This module itself imports no framework.
"""

import os
import sys


def pin_keras_backend(keras_backend: str, backend_name: str) -> None:
    """Makes `keras_backend` Keras's backend in this process, before keras is imported.

    A KERAS_BACKEND inherited from the environment (a parent process that ran another
    backend, a user's shell) is overridden: each worker runs one backend and sets its own.
    Only a keras already imported on another backend cannot be changed.

    Args:
        keras_backend: the KERAS_BACKEND value, e.g. "tensorflow" or "jax".
        backend_name: the FER-Bench backend that needs it, for the error message.

    Raises:
        RuntimeError: keras is already imported on another backend in this process (one
            line with the fix).
    """
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != keras_backend:
        raise RuntimeError(
            f"Keras already runs on {keras.backend.backend()!r} in this process: FER-Bench's "
            f"{backend_name} backend needs Keras on {keras_backend!r}, and Keras runs one "
            "backend per process: run each Keras backend in its own process")
    os.environ["KERAS_BACKEND"] = keras_backend
