"""ONNX export of a built Keras model with tf2onnx (`backends.onnx_export.export_onnx`).

Mirrors backends/torch/export.py. tf2onnx converts a `tf.function`'s concrete function
(`tf2onnx.convert.from_function`) rather than the Keras model (`from_keras`, or Keras 3's
`model.export(format="onnx")`, which calls tf2onnx too): the function can hold the pixel
scaling and the softmax, so the graph takes uint8 images as `predict_proba` does.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from backends.onnx_export import INPUT_NAME, name_io
from backends.tf.backend import TFBackend, _scale


def export_onnx(backend: TFBackend, path: Path, input_shape: tuple[int, int, int],
                opset: int) -> None:
    """Writes `backend`'s model, eval mode, as ONNX: uint8 NHWC in, logits and softmax out.

    Args:
        backend: a built TFBackend.
        path: the `.onnx` file to write.
        input_shape: (height, width, channels) of the model's input.
        opset: the ONNX operator set version.
    """
    import tf2onnx

    model = backend.model
    signature = (tf.TensorSpec((None, *input_shape), tf.uint8, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def deployed(images):
        logits = tf.cast(model(_scale(images), training=False), tf.float32)
        # A tuple keeps the outputs in OUTPUT_NAMES' order.
        return logits, tf.nn.softmax(logits, axis=-1)

    proto, _ = tf2onnx.convert.from_function(deployed, input_signature=signature,
                                             opset=opset)
    name_io(proto)
    path.write_bytes(proto.SerializeToString())
