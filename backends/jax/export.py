"""ONNX export of a built Flax NNX model with jax2onnx (`backends.onnx_export.export_onnx`).

Mirrors backends/tf/export.py and backends/torch/export.py. JAX has no exporter of its
own; jax2onnx (the `jax-onnx` extra) traces a JAX function and writes its ONNX graph.
The function traced holds the pixel scaling and the softmax, so the graph takes uint8
images as `predict_proba` does, and the model in eval mode, its weights closed over.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from backends.jax.backend import JaxBackend, _scale
from backends.onnx_export import jax_to_onnx


def export_onnx(backend: JaxBackend, path: Path, input_shape: tuple[int, int, int],
                opset: int) -> None:
    """Writes `backend`'s model, eval mode, as ONNX: uint8 NHWC in, logits and softmax out.

    Args:
        backend: a built JaxBackend.
        path: the `.onnx` file to write.
        input_shape: (height, width, channels) of the model's input.
        opset: the ONNX operator set version.
    """
    # A second model over the same (immutable) arrays, set to eval mode: the backend's
    # own model keeps the mode it was in.
    graphdef, state = nnx.split(backend.model)
    model = nnx.merge(graphdef, state)
    model.eval()

    def deployed(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = model(_scale(images)).astype(jnp.float32)
        return logits, jax.nn.softmax(logits, axis=-1)

    jax_to_onnx(deployed, path, input_shape, opset)
