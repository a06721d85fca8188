"""Keras 3 on JAX backend: the trainer (backend.py) for the shared Keras models
(backends/keras/) under a jitted, stateless train step.

Keras picks its backend when first imported, so this package pins it to JAX before
anything imports keras, as backends/tf/ pins TensorFlow; a worker process runs one
backend, so each sets its own. XLA's GPU client would reserve 75% of the GPU's memory
when it starts, so every memory tracker would read that reservation instead of what
training uses: preallocation is turned off here, before jax is imported (docs/design.md
§5).
"""

import os

from backends.keras import pin_keras_backend

pin_keras_backend("jax", "keras-jax")
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
