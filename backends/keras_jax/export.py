"""ONNX export of a built Keras model on JAX with jax2onnx (`backends.onnx_export.export_onnx`).

Mirrors backends/tf/export.py. Keras 3's `model.export(format="onnx")` does not serve
here: on the JAX backend it converts through jax2tf and tf2onnx, so it needs TensorFlow
in the keras-jax process, and it exports the model alone, whose graph would take scaled
floats. jax2onnx (the `jax-onnx` extra) instead traces the backend's own stateless
forward pass at the model's newest values, in eval mode, inside a function that also
holds the pixel scaling and the softmax, so the graph takes uint8 images as
`predict_proba` does.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from backends.keras_jax.backend import KerasJaxBackend, _scale
from backends.onnx_export import jax_to_onnx


def export_onnx(backend: KerasJaxBackend, path: Path, input_shape: tuple[int, int, int],
                opset: int) -> None:
    """Writes `backend`'s model, eval mode, as ONNX: uint8 NHWC in, logits and softmax out.

    Args:
        backend: a built KerasJaxBackend.
        path: the `.onnx` file to write.
        input_shape: (height, width, channels) of the model's input.
        opset: the ONNX operator set version.
    """
    # The newest values (a training state newer than the model's variables included),
    # which the trace bakes into the graph as constants.
    state = backend._current_state()

    def deployed(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits, _ = backend._stateless_forward(state, _scale(images), training=False)
        logits = logits.astype(jnp.float32)
        return logits, jax.nn.softmax(logits, axis=-1)

    jax_to_onnx(deployed, path, input_shape, opset)
