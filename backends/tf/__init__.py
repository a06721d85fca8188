"""Keras 3 on TensorFlow backend: model definitions (models.py) and trainer (backend.py).

Keras picks its backend when first imported, so this package pins it to TensorFlow
before anything imports keras.
"""

import os

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    raise RuntimeError(
        f"KERAS_BACKEND={os.environ['KERAS_BACKEND']!r}: FER-Bench's tf backend needs "
        "KERAS_BACKEND=tensorflow (unset it or set it so)"
    )
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
