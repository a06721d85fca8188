"""Keras 3 on TensorFlow backend: the trainer (backend.py) for the shared Keras models
(backends/keras/).

Keras picks its backend when first imported, so this package pins it to TensorFlow
before anything imports keras.
"""

import os

from backends.keras import pin_keras_backend

pin_keras_backend("tensorflow", "tf")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
