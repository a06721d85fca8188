"""ONNX export: a built model exported to ONNX from either framework, run by onnxruntime.

The exported graph takes what a Backend's `predict_proba` takes, uint8 NHWC images
(input `images`, batch axis dynamic), and scales them inside the graph with the backends'
constants, ``(x - PIXEL_CENTER) / PIXEL_SCALE``, so an exported model needs no
preprocessing code beside it and cannot be fed pixels scaled another way. It gives two
outputs: `logits` (float32, (N, classes)), which the parity check compares with the
native framework's, and `probabilities`, their softmax, which the latency is timed on
(what `predict_proba` returns natively).

Each framework exports with its own tool (`backends/tf/export.py`: tf2onnx;
`backends/torch/export.py`: torch.onnx); both are the `onnx` extra, with onnxruntime.
This module imports none of them until asked, and no deep-learning framework at all:
the onnxruntime worker (`benchmarks.runner.onnx_worker`) imports only onnxruntime.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import PIXEL_CENTER, PIXEL_SCALE, Backend, MissingFrameworkError

INPUT_NAME = "images"
LOGITS, PROBABILITIES = "logits", "probabilities"
OUTPUT_NAMES = (LOGITS, PROBABILITIES)
# ONNX's default operator set version the exports target: supported by tf2onnx 1.17,
# torch.onnx's exporter and every onnxruntime since 1.14.
OPSET = 18
# An export is correct when its logits lie this close to the native framework's, image
# by image and class by class (the suite's cross-framework tolerance, docs/design.md §1).
PARITY_TOLERANCE = 1e-4
ONNX_EXTRA = "onnx"
# The modules each exporter needs, beside onnxruntime (which runs and checks every export).
_EXPORTER_MODULES = {"tf": ("onnx", "tf2onnx"), "torch": ("onnx", "onnxscript")}
RUNTIME_MODULE = "onnxruntime"
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


def check_onnx_available(frameworks: tuple[str, ...] = ("tf", "torch")) -> None:
    """Raises MissingFrameworkError naming the extra unless ONNX export and runtime import.

    Args:
        frameworks: the frameworks whose exporter is needed.

    Raises:
        ValueError: a backend without an ONNX exporter (keras-jax: Keras's JAX backend
            exports through jax2onnx, which the suite does not pin yet).
        MissingFrameworkError: an exporter or the runtime is not installed.
    """
    unsupported = [f for f in frameworks if f not in _EXPORTER_MODULES]
    if unsupported:
        raise ValueError(f"ONNX export is not supported for backend {unsupported[0]!r} "
                         f"yet: export a {' or '.join(_EXPORTER_MODULES)} run of the same "
                         "model")
    needed = dict.fromkeys([m for f in frameworks for m in _EXPORTER_MODULES[f]]
                           + [RUNTIME_MODULE])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingFrameworkError(
            f"ONNX export and onnxruntime need {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install -e '.[{ONNX_EXTRA}]'")


def export_onnx(backend: Backend, path: Path, input_shape: tuple[int, int, int]) -> int:
    """Writes the model `backend` holds to `path` as ONNX, exported by its own framework.

    Args:
        backend: a built backend (its model in eval mode is exported; its weights as
            they are).
        path: the `.onnx` file to write; its folder must exist.
        input_shape: (height, width, channels) the model was built for.

    Returns:
        The file's size in bytes.
    """
    module = importlib.import_module(f"backends.{backend.name}.export")
    module.export_onnx(backend, Path(path), tuple(input_shape), OPSET)
    return Path(path).stat().st_size


def name_io(model: Any) -> None:
    """Names an ONNX model's graph input INPUT_NAME and its outputs OUTPUT_NAMES, in order.

    For exporters that name them after their own tensors (tf2onnx: "images:0",
    "Identity:0"); every node reading or writing a renamed tensor follows.

    Args:
        model: an `onnx.ModelProto` with one input and two outputs, changed in place.
    """
    graph = model.graph
    renames = {graph.input[0].name: INPUT_NAME}
    renames.update({out.name: name for out, name in zip(graph.output, OUTPUT_NAMES,
                                                        strict=True)})
    for value in (*graph.input, *graph.output):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


def scaled(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as the models take them natively (`Backend.logits`' input)."""
    return (images.astype(np.float32) - PIXEL_CENTER) / PIXEL_SCALE


def providers() -> list[str]:
    """onnxruntime's execution providers to use: CUDA first where present, then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in (CUDA_PROVIDER, CPU_PROVIDER) if p in available]


class OnnxSession:
    """An exported model in onnxruntime, predicting as a Backend does.

    Its `predict_proba` and `synchronize` have the Backend's signatures, so the latency
    trackers time it exactly as they time the frameworks (`trackers.timing.inference_latency`).

    Args:
        path: an `.onnx` file written by `export_onnx`.
        threads: intra- and inter-op threads (as `--threads` sets them in the frameworks);
            None: onnxruntime's default.
        provider_names: execution providers in order of preference; None: `providers()`.
    """

    def __init__(self, path: Path, threads: int | None = None,
                 provider_names: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no warning per unused initialiser
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = threads
        self.version = onnxruntime.__version__
        self.threads = threads
        self._session = onnxruntime.InferenceSession(
            str(path), options, providers=provider_names or providers())
        # What onnxruntime actually runs the graph on: the first provider it accepted.
        self.provider = self._session.get_providers()[0]

    def _run(self, output: str, x: np.ndarray, batch_size: int) -> np.ndarray:
        parts = [self._session.run([output], {INPUT_NAME: np.ascontiguousarray(
            x[start:start + batch_size])})[0] for start in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def logits(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 logits (N, C) of uint8 NHWC images."""
        return self._run(LOGITS, x, batch_size)

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, C) float64 of uint8 NHWC images, as `Backend.predict_proba`."""
        return self._run(PROBABILITIES, x, batch_size).astype(np.float64)

    def synchronize(self) -> None:
        """Nothing to wait for: `run` returns once the outputs are on the host."""


def parity(backend: Backend, session: OnnxSession, images: np.ndarray,
           batch_size: int = 64) -> float:
    """max |Δ logits| between the exported model and its framework on `images`.

    Args:
        backend: the backend the model was exported from, holding the same weights.
        session: the exported model.
        images: uint8 NHWC images.
        batch_size: images per forward pass.
    """
    native = np.concatenate([backend.logits(scaled(images[start:start + batch_size]))
                             for start in range(0, len(images), batch_size)])
    return float(np.abs(session.logits(images, batch_size) - native).max())
