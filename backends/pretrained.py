"""Starting weights from a checkpoint on disk, mapped into the canonical layout (docs/weights.md).

Two formats are read, told apart by their content rather than their name:

* a torchvision state_dict of `resnet18`, `resnet50` or `vgg16`
  (`torch.save(model.state_dict(), path)`, the files torchvision's weight enums download),
  read with `torch.load(path, map_location="cpu", weights_only=True)`: PyTorch is imported
  only for such a file, and nothing in it but tensors and plain containers is unpickled;
* FER-Bench's own weights file (`backends/weights.py`, a `.npz` read without pickle), of
  any catalog model.

`read_checkpoint` renames a checkpoint's tensors into the canonical layout
(`backends/base.py`: torch names and conventions), which for torchvision's ResNets is the
identity (the zoo's ResNets carry torchvision's module names) and for its VGG-16 maps
`features.<i>` to `block<b>.conv<k>` and `classifier.0/3/6` to `classifier.fc1/2/3`.
`map_checkpoint` then fits the tensors to one built model's layout, layer by layer:

* a layer whose every tensor has the model's shape is loaded as stored;
* a 3-channel stem (the first conv's kernel (out, 3, kh, kw)) on the zoo's grayscale input
  is adapted by summing its kernel over the input channels: on a gray image replicated to
  three channels, which is what a 3-channel network sees of a gray picture, the summed
  kernel computes exactly what the stored one does;
* torchvision VGG-16's `classifier.0` follows an `AdaptiveAvgPool2d((7, 7))` that the zoo's
  VGG-16 does not have (its fc1 sees the last map as it is: 1×1 at 48×48). The pool is
  linear, so it is folded into the kernel: fc1 then computes on the zoo's map exactly what
  torchvision's pool and fc1 compute on it, at any input size;
* any other layer whose shapes differ (the classifier for another class count, fc1 of a
  FER-Bench VGG-16 trained at another input size) takes the shared initial weights
  (`backends/init.py`) and is listed as re-initialised, with its shapes.

A checkpoint of another architecture, a file that is no checkpoint and a pickle that
`weights_only` refuses are each a `CheckpointError` (a ValueError) naming the file and what
was expected. This module imports no deep-learning framework at import time.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The architectures a torchvision state_dict is accepted for, each a catalog model of the
# same name and the same layers.
TORCHVISION_MODELS = ("resnet18", "resnet50", "vgg16")
TORCHVISION, FER_BENCH = "torchvision", "fer-bench"  # the two formats, as records name them
EXPECTED = ("a torchvision resnet18, resnet50 or vgg16 state_dict (torch.save(model."
            "state_dict()), .pt/.pth) or a FER-Bench weights file (.npz, --save-weights)")
# torchvision's VGG pools its last map to 7×7 before classifier.0.
VGG_POOLED_SIDE = 7
_PARAM_PREFIX, _META_KEY = "param/", "checkpoint"  # the staged file's entries
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_RESNET_BLOCKS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}
_VGG16_STAGES = (2, 2, 3, 3, 3)  # convs per stage; each conv is followed by a ReLU


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, refused or for another model; names the file."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk, its tensors renamed into the canonical layout.

    Attributes:
        path: the file as given.
        source: TORCHVISION or FER_BENCH.
        architecture: the catalog model it holds the layers of.
        arrays: canonical name → float32 array, as stored (no layer adapted yet).
        sha256: hex digest of the file's bytes.
        size_bytes: the file's size.
        stored_shape: for a FER-Bench file, the (height, width, channels) it was trained
            at; None for torchvision's.
    """

    path: Path
    source: str
    architecture: str
    arrays: dict[str, np.ndarray]
    sha256: str
    size_bytes: int
    stored_shape: tuple[int, int, int] | None = None

    def describe(self) -> dict[str, Any]:
        """The record's facts about the file (JSON types)."""
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.size_bytes,
                "format": self.source, "architecture": self.architecture}

    def check_model(self, model: str) -> None:
        """Raises CheckpointError unless the checkpoint holds `model`'s layers."""
        if model != self.architecture:
            fits = (f"a torchvision or FER-Bench {model} checkpoint"
                    if model in TORCHVISION_MODELS else f"a FER-Bench {model} weights file")
            raise CheckpointError(f"{self.path}: a {self.source} {self.architecture} "
                                  f"checkpoint, but the run builds {model}, which takes {fits}; "
                                  f"pass --models {self.architecture} or another file")

    def stage(self, path: Path) -> Path:
        """Writes the canonical arrays and facts to `path` (uncompressed .npz, no pickle),
        for the workers: each reads them without PyTorch (`staged_checkpoint`)."""
        facts = {**self.describe(), "stored_shape": self.stored_shape}
        arrays = {f"{_PARAM_PREFIX}{name}": value for name, value in self.arrays.items()}
        np.savez(path, **arrays, **{_META_KEY: np.asarray([json.dumps(facts)])})
        return path


def staged_checkpoint(path: Path) -> Checkpoint:
    """Reads back a file written by `Checkpoint.stage`."""
    with np.load(path, allow_pickle=False) as stored:
        facts = json.loads(str(stored[_META_KEY][0]))
        arrays = {key[len(_PARAM_PREFIX):]: stored[key] for key in stored.files
                  if key.startswith(_PARAM_PREFIX)}
    shape = facts["stored_shape"]
    return Checkpoint(Path(facts["path"]), facts["format"], facts["architecture"], arrays,
                      facts["sha256"], facts["bytes"], None if shape is None else tuple(shape))


@dataclass
class PretrainedWeights:
    """A checkpoint fitted to one built model: what `set_weights` takes, and where it came from.

    Attributes:
        weights: the model's full canonical layout.
        loaded: layers loaded from the checkpoint as stored, in the model's order.
        adapted: layer → how it was adapted (also from the checkpoint).
        reinitialised: layer → why it took the shared initial weights instead.
    """

    weights: dict[str, np.ndarray]
    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    reinitialised: dict[str, str] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """The record's layer lists."""
        return {"loaded_layers": self.loaded, "adapted_layers": self.adapted,
                "reinitialised_layers": self.reinitialised}


# --- torchvision's key layout -------------------------------------------------------------
def torchvision_layers(architecture: str) -> dict[str, str]:
    """torchvision layer name → canonical layer name, for one of TORCHVISION_MODELS.

    Built from the architecture's definition (torchvision.models.resnet / vgg), so no
    torchvision is needed to read its files.
    """
    if architecture in _RESNET_BLOCKS:
        blocks, bottleneck = _RESNET_BLOCKS[architecture]
        names = ["conv1", "bn1"]
        for stage, count in enumerate(blocks, 1):
            for block in range(count):
                prefix = f"layer{stage}.{block}"
                for k in range(1, 4 if bottleneck else 3):
                    names += [f"{prefix}.conv{k}", f"{prefix}.bn{k}"]
                # The first block of a stage changes the shape, except a basic layer1's.
                if block == 0 and (stage > 1 or bottleneck):
                    names += [f"{prefix}.downsample.0", f"{prefix}.downsample.1"]
        return {name: name for name in [*names, "fc"]}
    if architecture == "vgg16":
        layers, index = {}, 0
        for stage, convs in enumerate(_VGG16_STAGES, 1):
            for conv in range(1, convs + 1):
                layers[f"features.{index}"] = f"block{stage}.conv{conv}"
                index += 2  # the conv and its ReLU
            index += 1  # the stage's max-pool
        # classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        layers.update({f"classifier.{i}": f"classifier.fc{n}" for n, i in enumerate((0, 3, 6), 1)})
        return layers
    raise ValueError(f"no torchvision layout for {architecture!r}; torchvision's: "
                     f"{', '.join(TORCHVISION_MODELS)}")


def torchvision_keys(architecture: str) -> dict[str, str]:
    """torchvision state_dict key → canonical name (BatchNorm's num_batches_tracked left out)."""
    keys = {}
    for source, target in torchvision_layers(architecture).items():
        norm = source == "bn1" or ".bn" in source or source.endswith("downsample.1")
        # ResNet convs have no bias; VGG's convs and every Linear do.
        no_bias = architecture in _RESNET_BLOCKS and source != "fc"
        params = _BN_PARAMS if norm else ("weight",) if no_bias else ("weight", "bias")
        keys.update({f"{source}.{p}": f"{target}.{p}" for p in params})
    return keys


def _torchvision_architecture(path: Path, keys: set[str]) -> str:
    """The architecture whose torchvision key set `keys` is; CheckpointError if none."""
    for architecture in TORCHVISION_MODELS:
        if keys == set(torchvision_keys(architecture)):
            return architecture

    def distance(architecture: str) -> int:
        return len(keys ^ set(torchvision_keys(architecture)))

    closest = min(TORCHVISION_MODELS, key=distance)
    expected = set(torchvision_keys(closest))
    missing, extra = sorted(expected - keys), sorted(keys - expected)
    raise CheckpointError(
        f"{path}: a state_dict of {len(keys)} tensors that is none of torchvision's "
        f"{', '.join(TORCHVISION_MODELS)} (closest {closest}: missing {_few(missing)}, "
        f"unexpected {_few(extra)}); expected {EXPECTED}")


def _few(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count]) or "none"
    return f"{shown} and {len(names) - count} more" if len(names) > count else shown


# --- reading ------------------------------------------------------------------------------
def read_checkpoint(path: Path) -> Checkpoint:
    """Reads a checkpoint and renames its tensors into the canonical layout.

    Raises:
        CheckpointError: the file is missing, is neither format, is refused by
            `weights_only`, holds tensors that are not floating point or values that are
            not finite (NaN, Inf: a run would train on them and fail only at its end), or
            holds the tensors of no supported architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected {EXPECTED}")
    digest, size = _sha256(path), path.stat().st_size
    kind = _format_of(path)
    if kind == FER_BENCH:
        from backends.weights import WeightsError, read_weights

        try:
            saved = read_weights(path)
        except WeightsError as error:
            raise CheckpointError(f"{error}; expected {EXPECTED}") from None
        checkpoint = Checkpoint(path, FER_BENCH, saved.meta.model, saved.weights, digest,
                                size, tuple(saved.meta.input_shape))
    else:
        state = _torch_state_dict(path)
        architecture = _torchvision_architecture(path, set(state))
        names = torchvision_keys(architecture)
        checkpoint = Checkpoint(path, TORCHVISION, architecture,
                                {names[key]: value for key, value in state.items()}, digest,
                                size)
    broken = sorted(name for name, value in checkpoint.arrays.items()
                    if not np.isfinite(value).all())
    if broken:
        raise CheckpointError(f"{path}: {_few(broken)} hold NaN or Inf: no weights to start "
                              f"from; expected {EXPECTED}")
    return checkpoint


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format_of(path: Path) -> str:
    """FER_BENCH or TORCHVISION by the file's content (torch.save writes a zip holding
    `<name>/data.pkl`; np.savez one holding `meta.npy`); CheckpointError for neither."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path}: a damaged zip archive ({error}); expected "
                                  f"{EXPECTED}") from None
        if "meta.npy" in names:
            return FER_BENCH
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return TORCHVISION
        raise CheckpointError(f"{path}: a zip archive that is neither a PyTorch checkpoint nor "
                              f"a FER-Bench weights file; expected {EXPECTED}")
    if path.suffix in (".pt", ".pth"):
        return TORCHVISION  # torch.save's legacy, pre-zip format: torch.load tells
    raise CheckpointError(f"{path}: not a checkpoint (neither a torch.save zip nor an .npz); "
                          f"expected {EXPECTED}")


def _torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A torch.save'd state_dict as float32 arrays, BatchNorm's step counters dropped."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: a PyTorch checkpoint, which needs PyTorch to read: "
                              "pip install -e '.[torch]'") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's restricted unpickler says so; other unpickling errors are plain garbage.
        if "Weights only load failed" in str(error):
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" (it pickles {found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused by torch.load(weights_only=True), which unpickles only "
                f"tensors and plain containers{what}; expected {EXPECTED}, not a pickled "
                "model or training state") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({error}); expected "
                              f"{EXPECTED}") from None
    except Exception as error:  # named in the message, never swallowed
        # On bytes that are no pickle, torch's restricted unpickler raises whatever its
        # parser meets first (IndexError, KeyError, RuntimeError, EOFError, …).
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}"
                              f": {reason[:120]}); expected {EXPECTED}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state_dict (a dict "
                              f"of tensors by name); expected {EXPECTED}")
    wrong = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if wrong:
        raise CheckpointError(f"{path}: entries {_few(wrong)} are not tensors: not a state_dict; "
                              f"expected {EXPECTED}")
    state = {key: value for key, value in state.items()
             if not key.endswith("num_batches_tracked")}
    # Weights are real floating point: an integer (quantised) or complex tensor cast to
    # float32 would be other weights, or lose its imaginary part, without a word.
    wrong = sorted(f"{key} ({value.dtype})".replace("torch.", "")
                   for key, value in state.items() if not value.is_floating_point())
    if wrong:
        raise CheckpointError(f"{path}: tensors {_few(wrong)} are not floating point: not "
                              f"weights this suite reads; expected {EXPECTED}")
    return {key: value.detach().to(torch.float32).numpy().copy() for key, value in state.items()}


# --- fitting a checkpoint to a model ------------------------------------------------------
def map_checkpoint(checkpoint: Checkpoint, template: dict[str, np.ndarray],
                   initial: dict[str, np.ndarray]) -> PretrainedWeights:
    """Fits `checkpoint` to the model whose canonical layout is `template` (module docstring).

    Args:
        checkpoint: read by `read_checkpoint` (or `staged_checkpoint`).
        template: the built model's `get_weights()`: names and shapes.
        initial: the model's shared initial weights (`backends.init.shared_initial_weights`),
            which re-initialised layers take.

    Returns:
        The weights for `set_weights` and the lists of loaded, adapted and re-initialised
        layers.

    Raises:
        CheckpointError: the checkpoint's tensor names are not the model's.
    """
    stored = checkpoint.arrays
    missing, extra = sorted(set(template) - set(stored)), sorted(set(stored) - set(template))
    if missing or extra:
        raise CheckpointError(f"{checkpoint.path}: its {checkpoint.architecture} tensors are not "
                              f"the model's: missing {_few(missing)}, unexpected {_few(extra)}")
    layers: dict[str, list[str]] = {}
    for name in template:
        layers.setdefault(name.rpartition(".")[0], []).append(name)
    result = PretrainedWeights({})
    for layer, names in layers.items():
        shapes = {n: (stored[n].shape, template[n].shape) for n in names}
        if all(have == want for have, want in shapes.values()):
            result.loaded.append(layer)
            result.weights.update({n: np.asarray(stored[n], np.float32) for n in names})
            continue
        adapted = _adapt(checkpoint, layer, {n: stored[n] for n in names},
                         {n: template[n].shape for n in names})
        if adapted is not None:
            arrays, how = adapted
            result.adapted[layer] = how
            result.weights.update(arrays)
            continue
        result.reinitialised[layer] = "; ".join(
            f"{n.rpartition('.')[2]} {_shape(have)} stored, {_shape(want)} here"
            for n, (have, want) in shapes.items() if have != want)
        result.weights.update({n: initial[n] for n in names})
    return result


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _adapt(checkpoint: Checkpoint, layer: str, stored: dict[str, np.ndarray],
           wanted: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], str] | None:
    """The layer's arrays adapted to the model's shapes, and how; None where no rule applies."""
    kernel, want = stored.get(f"{layer}.weight"), wanted.get(f"{layer}.weight")
    others_fit = all(stored[n].shape == wanted[n] for n in stored if n != f"{layer}.weight")
    if kernel is None or not others_fit:
        return None
    gray = (kernel.shape[0], 1, *kernel.shape[2:])
    if kernel.ndim == 4 and kernel.shape[1] == 3 and want == gray:
        summed = kernel.sum(axis=1, keepdims=True, dtype=np.float32)
        return {**stored, f"{layer}.weight": summed}, "3 input channels summed to 1 (grayscale)"
    if (checkpoint.source == TORCHVISION and checkpoint.architecture == "vgg16"
            and layer == "classifier.fc1" and len(want) == 2 and want[0] == kernel.shape[0]):
        channels = kernel.shape[1] // VGG_POOLED_SIDE**2
        side = math.isqrt(want[1] // channels)
        if channels * side * side != want[1]:
            return None
        folded = fold_adaptive_pool(kernel, channels, side, side)
        return ({**stored, f"{layer}.weight": folded},
                f"torchvision's AdaptiveAvgPool2d((7, 7)) from the {side}×{side} map folded in")
    return None


def adaptive_pool_matrix(size: int, out: int = VGG_POOLED_SIDE) -> np.ndarray:
    """(out, size) matrix of torch's AdaptiveAvgPool along one axis: row i averages the
    inputs floor(i·size/out) … ceil((i+1)·size/out) − 1."""
    matrix = np.zeros((out, size), np.float64)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def fold_adaptive_pool(kernel: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """A dense kernel after AdaptiveAvgPool2d((7, 7)) as one on the unpooled (C, H, W) map.

    Args:
        kernel: (out, C·7·7), its input in torch's flatten order (C, 7, 7).
        channels, height, width: the unpooled map's shape.

    Returns:
        (out, C·H·W) float32 with kernel · flatten(pool(x)) = folded · flatten(x).
    """
    out = kernel.shape[0]
    grid = kernel.reshape(out, channels, VGG_POOLED_SIDE, VGG_POOLED_SIDE)
    # float32 throughout: vgg16's kernel is 411 MB so; each output sums at most 49 terms.
    rows = adaptive_pool_matrix(height).astype(np.float32)
    cols = adaptive_pool_matrix(width).astype(np.float32)
    # (o, c, i, j)·(i, y) → (o, c, j, y); then ·(j, x) → (o, c, y, x)
    folded = np.tensordot(np.tensordot(grid, rows, axes=([2], [0])), cols, axes=([2], [0]))
    return folded.reshape(out, channels * height * width).astype(np.float32)
