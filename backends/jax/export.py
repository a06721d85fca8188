"""ONNX export of a built JAX model (`backends.onnx_export.export_onnx`): not supported.

Mirrors backends/tf/export.py and backends/torch/export.py, whose frameworks ship or
maintain an exporter (tf2onnx, torch.onnx). JAX has none of its own; the one converter
on the registry, jax2onnx (0.17.1), would bring 25 packages into the environment
(orbax, equinox, huggingface_hub, its own onnx and onnxruntime pins), none of which the
`jax` extra otherwise needs, and it was not verified on these models. So the export
refuses with one line, and the weights of a jax run export through either other
framework: the canonical layout rebuilds the same model there (`backends.weights`).
"""

from __future__ import annotations

from pathlib import Path

from backends.jax.backend import JaxBackend

UNSUPPORTED = ("ONNX export from the jax backend is not supported: JAX has no exporter of "
               "its own and jax2onnx is not part of the jax extra; export the run's weights "
               "file with --backend torch or tf, which rebuild the same model from it")


def export_onnx(backend: JaxBackend, path: Path, input_shape: tuple[int, int, int],
                opset: int) -> None:
    """Refuses: raises NotImplementedError with UNSUPPORTED (one line), writing nothing.

    Args:
        backend: a built JaxBackend.
        path: the `.onnx` file that would be written; left untouched.
        input_shape: (height, width, channels) of the model's input.
        opset: the ONNX operator set version.

    Raises:
        NotImplementedError: always.
    """
    raise NotImplementedError(UNSUPPORTED)
