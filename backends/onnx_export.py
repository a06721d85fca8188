"""ONNX export: a built model exported to ONNX from either framework, run by onnxruntime.

The exported graph takes what a Backend's `predict_proba` takes, uint8 NHWC images
(input `images`, batch axis dynamic), and scales them inside the graph with the backends'
constants, ``(x - PIXEL_CENTER) / PIXEL_SCALE``, so an exported model needs no
preprocessing code beside it and cannot be fed pixels scaled another way. It gives two
outputs: `logits` (float32, (N, classes)), which the parity check compares with the
native framework's, and `probabilities`, their softmax, which the latency is timed on
(what `predict_proba` returns natively).

Each framework exports with its own tool (`backends/tf/export.py`: tf2onnx;
`backends/torch/export.py`: torch.onnx), both the `onnx` extra, with onnxruntime. JAX
has no exporter of its own: both JAX backends (`backends/jax/export.py`,
`backends/keras_jax/export.py`) export through jax2onnx (`jax_to_onnx`), the `jax-onnx`
extra. This module imports none of them until asked, and no deep-learning framework at
all: the onnxruntime worker (`benchmarks.runner.onnx_worker`) imports only onnxruntime.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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
# jax2onnx and its runtime: an extra of its own, never in `make setup` (pyproject.toml).
JAX_ONNX_EXTRA, JAX_ONNX_MAKE_TARGET = "jax-onnx", "setup-jax-onnx"
RUNTIME_MODULE = "onnxruntime"


class _Exporter(NamedTuple):
    """What one backend's export needs: modules beside onnxruntime, and what installs them."""

    modules: tuple[str, ...]
    extra: str
    make_target: str | None = None


_JAX2ONNX = _Exporter(("onnx", "jax2onnx"), JAX_ONNX_EXTRA, JAX_ONNX_MAKE_TARGET)
_EXPORTERS = {"tf": _Exporter(("onnx", "tf2onnx"), ONNX_EXTRA),
              "torch": _Exporter(("onnx", "onnxscript"), ONNX_EXTRA),
              "keras-jax": _JAX2ONNX, "jax": _JAX2ONNX}
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


def check_onnx_available(frameworks: tuple[str, ...] = ("tf", "torch")) -> None:
    """Raises MissingFrameworkError naming the install unless the exports and runtime import.

    Args:
        frameworks: the backends whose exporter is needed.

    Raises:
        ValueError: a backend without an ONNX exporter.
        MissingFrameworkError: an exporter or the runtime is not installed; one line
            naming each extra (and Makefile target) that installs what is missing.
    """
    unsupported = [f for f in frameworks if f not in _EXPORTERS]
    if unsupported:
        raise ValueError(f"ONNX export is not supported for backend {unsupported[0]!r}: "
                         f"export a run of the same model with {', '.join(_EXPORTERS)}")
    missing: dict[str, None] = {}
    installs: dict[str, None] = {}
    for exporter in (_EXPORTERS[f] for f in frameworks):
        absent = [m for m in (*exporter.modules, RUNTIME_MODULE)
                  if importlib.util.find_spec(m) is None]
        missing.update(dict.fromkeys(absent))
        if absent:
            target = f" (or run `make {exporter.make_target}`)" if exporter.make_target else ""
            installs[f"pip install -e '.[{exporter.extra}]'{target}"] = None
    if missing:
        raise MissingFrameworkError(
            f"ONNX export from {', '.join(frameworks)} and onnxruntime need "
            f"{', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: {'; '.join(installs)}")


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
    # Backend names are registry names ("keras-jax"), packages Python names (keras_jax).
    module = importlib.import_module(f"backends.{backend.name.replace('-', '_')}.export")
    module.export_onnx(backend, Path(path), tuple(input_shape), OPSET)
    return Path(path).stat().st_size


def jax_to_onnx(deployed: Callable[[Any], tuple[Any, Any]], path: Path,
                input_shape: tuple[int, int, int], opset: int) -> None:
    """Writes a JAX function of uint8 NHWC images to `path` as ONNX, with jax2onnx.

    Both JAX backends' exporters call it (`backends/jax/export.py`,
    `backends/keras_jax/export.py`) with a function that closes over the model's weights,
    which the trace bakes into the graph as initialisers.

    Args:
        deployed: uint8 NHWC images → (logits, probabilities), float32, as JAX arrays.
        path: the `.onnx` file to write (one file: weights inside, as the other exports).
        input_shape: (height, width, channels) of the images.
        opset: the ONNX operator set version.
    """
    import jax
    import jax.numpy as jnp
    import jax2onnx

    # A symbolic batch axis: the graph takes any number of images, as the others' do.
    images = jax.ShapeDtypeStruct((*jax.export.symbolic_shape("batch"), *input_shape),
                                  jnp.uint8)
    proto = jax2onnx.to_onnx(deployed, [images], opset=opset, input_names=[INPUT_NAME],
                             output_names=list(OUTPUT_NAMES), return_mode="proto")
    pool_height_and_width(proto)
    path.write_bytes(proto.SerializeToString())


def pool_height_and_width(model: Any) -> int:
    """Rewrites jax2onnx's NHWC max pools as MaxPools over height and width alone.

    jax2onnx (0.17.1) lowers `lax.reduce_window_max`, which Keras's max pooling on JAX
    calls, at any rank by prepending two axes and pooling over all the others: an NHWC
    pool becomes Unsqueeze(0) → Unsqueeze(1) → MaxPool over (N, H, W, C), window
    (1, kh, kw, 1) → Squeeze(0, 1), and onnxruntime's MaxPool pools over three axes at
    most ("Unsupported pooling size"). Each such chain becomes Transpose to NCHW →
    MaxPool over (H, W) → Transpose back: the same windows, so the same values.

    Args:
        model: an `onnx.ModelProto`, changed in place.

    Returns:
        How many pools were rewritten.

    Raises:
        NotImplementedError: a MaxPool over more than three axes that is not such a chain
            (one line naming it and the other exporters).
    """
    from onnx import NodeProto, helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t).tolist() for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # Nodes are keyed by their first output, unique in a graph.
    replacements: dict[str, list[Any]] = {}
    for pool in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        if pool.op_type != "MaxPool" or len(attributes["kernel_shape"]) <= 3:
            continue
        chain = _nhwc_pool_chain(pool, attributes, producers, consumers, constants)
        if chain is None:
            raise NotImplementedError(
                f"ONNX export from JAX is not supported for this model: jax2onnx wrote "
                f"MaxPool {pool.name!r} over {len(attributes['kernel_shape'])} axes, which "
                "onnxruntime cannot run; export the run's weights file with --backend tf "
                "or torch, which rebuild the same model")
        first, second, squeeze = chain
        _, kernel_h, kernel_w, _ = attributes["kernel_shape"]
        _, stride_h, stride_w, _ = attributes.get("strides", (1, 1, 1, 1))
        pads = attributes.get("pads", (0,) * 8)
        nchw, pooled = f"{pool.output[0]}_nchw", f"{pool.output[0]}_pooled_nchw"
        replacements[pool.output[0]] = [
            helper.make_node("Transpose", [first.input[0]], [nchw], perm=[0, 3, 1, 2]),
            helper.make_node("MaxPool", [nchw], [pooled], kernel_shape=[kernel_h, kernel_w],
                             strides=[stride_h, stride_w],
                             pads=[pads[1], pads[2], pads[5], pads[6]]),
            helper.make_node("Transpose", [pooled], [squeeze.output[0]], perm=[0, 2, 3, 1])]
        replacements.update({node.output[0]: [] for node in (first, second, squeeze)})
    if not replacements:
        return 0
    nodes = []
    for node in graph.node:
        for kept in replacements.get(node.output[0], [node]):
            copy = NodeProto()
            copy.CopyFrom(kept)
            nodes.append(copy)
    del graph.node[:]
    graph.node.extend(nodes)
    # The chains' axes constants, read by no node now.
    used = {name for node in graph.node for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return sum(1 for new in replacements.values() if new)


def _nhwc_pool_chain(pool: Any, attributes: dict[str, Any], producers: dict[str, Any],
                     consumers: dict[str, list[Any]],
                     constants: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """The (Unsqueeze, Unsqueeze, Squeeze) around `pool` where it pools an NHWC tensor's
    height and width alone, undilated; None where it is anything else."""
    kernel = attributes["kernel_shape"]
    strides = attributes.get("strides", (1,) * len(kernel))
    pads = attributes.get("pads", (0,) * 2 * len(kernel))
    if (len(kernel) != 4 or attributes.get("ceil_mode", 0)
            or any(d != 1 for d in attributes.get("dilations", ()))
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or kernel[0] != 1 or kernel[3] != 1 or strides[0] != 1 or strides[3] != 1
            or any(pads[i] for i in (0, 3, 4, 7))):
        return None
    second = producers.get(pool.input[0])
    first = producers.get(second.input[0]) if second is not None else None
    users = consumers.get(pool.output[0], [])
    squeeze = users[0] if len(users) == 1 else None
    chain = (first, second, squeeze)
    if (None in chain or [n.op_type for n in chain] != ["Unsqueeze", "Unsqueeze", "Squeeze"]
            or [constants.get(n.input[1]) if len(n.input) == 2 else None for n in chain]
            != [[0], [1], [0, 1]]
            or len(consumers[first.output[0]]) != 1 or len(consumers[second.output[0]]) != 1):
        return None
    return chain


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
