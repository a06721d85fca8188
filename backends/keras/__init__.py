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


def pin_keras_backend(keras_backend: str, backend_name: str) -> None:
    """Makes `keras_backend` Keras's backend in this process, before keras is imported.

    Args:
        keras_backend: the KERAS_BACKEND value, e.g. "tensorflow" or "jax".
        backend_name: the FER-Bench backend that needs it, for the error message.

    Raises:
        RuntimeError: KERAS_BACKEND names another Keras backend (one line with the fix).
    """
    chosen = os.environ.get("KERAS_BACKEND", keras_backend)
    if chosen != keras_backend:
        raise RuntimeError(
            f"KERAS_BACKEND={chosen!r}: FER-Bench's {backend_name} backend needs "
            f"KERAS_BACKEND={keras_backend} (unset it or set it so); Keras runs one backend "
            "per process, so run each Keras backend in its own process"
        )
    os.environ["KERAS_BACKEND"] = keras_backend
