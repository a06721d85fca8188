"""Trained weights on disk: one uncompressed `.npz` per run, readable without pickle.

Uncompressed: trained float32 weights barely compress, and zlib's time is paid by every
run (docs/design.md, saved weights).

A weights file holds, as plain numpy arrays (`np.load(..., allow_pickle=False)` reads it):

* ``param/<canonical name>``: every parameter and BatchNorm statistic in the canonical,
  framework-neutral layout of `backends/base.py` (torch names and conventions, float32),
  so either framework rebuilds the model from it (`load_backend`);
* ``meta``: a one-element unicode array holding a JSON object, `WeightsMeta`: what is
  needed to rebuild the model (model name, input shape, classes and their names, the pixel
  normalisation, the layout version) and where the weights came from (backend, run);
* optionally ``test_probabilities``: the run's (N, C) float32 test-set probabilities, in
  test-set order, which the report's error gallery reads.

This module imports no deep-learning framework: `load_backend` imports the one asked for.
Every problem with a file is a `WeightsError` (a ValueError) whose message names the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import PIXEL_CENTER, PIXEL_SCALE, Backend
from backends.catalog import check_model_args, check_model_name

# Bumped when the canonical layout (backends/base.py) changes meaning: a file of a newer
# layout is refused rather than loaded into the wrong places.
LAYOUT_VERSION = 1
PARAM_PREFIX = "param/"
META_KEY = "meta"
PROBABILITIES_KEY = "test_probabilities"


class WeightsError(ValueError):
    """A weights file that is missing, damaged, or for another model; names the file."""


@dataclass(frozen=True)
class WeightsMeta:
    """What a weights file says about its weights.

    Attributes:
        model: catalog model name.
        input_shape: (height, width, channels) the model was built for.
        num_classes: output classes.
        class_names: one name per class, in label order.
        normalisation: how uint8 pixels were scaled before the model,
            ``(x - pixel_center) / pixel_scale``.
        backend: the backend that trained the weights ("tf" or "torch").
        layout_version: the canonical layout's version (LAYOUT_VERSION when written).
        run_id: the run that trained them; "" when not from a run.
        best_epoch: the 1-based epoch whose weights these are (None when unknown).
    """

    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    backend: str
    normalisation: dict[str, float] = field(
        default_factory=lambda: {"pixel_center": PIXEL_CENTER, "pixel_scale": PIXEL_SCALE})
    layout_version: int = LAYOUT_VERSION
    run_id: str = ""
    best_epoch: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path) -> WeightsMeta:
        """Parses and checks a file's metadata; WeightsError naming `path` if it is wrong."""
        try:
            raw = json.loads(text)
            meta = cls(**{**raw, "input_shape": tuple(raw["input_shape"]),
                          "class_names": tuple(raw["class_names"])})
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise WeightsError(f"{path}: unreadable metadata ({error})") from None
        if not isinstance(meta.layout_version, int) or meta.layout_version > LAYOUT_VERSION:
            raise WeightsError(f"{path}: canonical layout version {meta.layout_version!r} is "
                               f"newer than this FER-Bench reads ({LAYOUT_VERSION}); update it")
        try:
            check_model_name(meta.model)
            check_model_args(meta.input_shape, meta.num_classes)
        except ValueError as error:
            raise WeightsError(f"{path}: {error}") from None
        if len(meta.class_names) != meta.num_classes:
            raise WeightsError(f"{path}: {len(meta.class_names)} class names for "
                               f"{meta.num_classes} classes")
        if meta.normalisation != {"pixel_center": PIXEL_CENTER, "pixel_scale": PIXEL_SCALE}:
            # Both backends scale with these constants on their device; other values would
            # need a backend that scales differently, which none does.
            raise WeightsError(f"{path}: normalisation {meta.normalisation} differs from the "
                               f"backends' ({PIXEL_CENTER}, {PIXEL_SCALE})")
        return meta


def save_weights(path: Path, weights: dict[str, np.ndarray], meta: WeightsMeta,
                 test_probabilities: np.ndarray | None = None) -> int:
    """Writes `weights` (canonical layout) and `meta` to `path`; returns its bytes.

    Written under a temporary name and renamed, so a crash never leaves a truncated file
    under the final name.

    Args:
        path: the `.npz` to write; its folder must exist.
        weights: canonical name → float32 array (`Backend.get_weights()`).
        meta: what the file says about them.
        test_probabilities: optional (N, C) test-set probabilities of the run.

    Returns:
        The file's size in bytes.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {f"{PARAM_PREFIX}{name}": np.asarray(value, np.float32)
                                     for name, value in weights.items()}
    arrays[META_KEY] = np.asarray([meta.to_json()])
    if test_probabilities is not None:
        arrays[PROBABILITIES_KEY] = np.asarray(test_probabilities, np.float32)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path.stat().st_size


@dataclass
class SavedWeights:
    """A weights file read in full.

    Attributes:
        path: where it was read from.
        meta: its metadata.
        weights: canonical name → float32 array.
        test_probabilities: (N, C) float32, or None when the file holds none.
    """

    path: Path
    meta: WeightsMeta
    weights: dict[str, np.ndarray]
    test_probabilities: np.ndarray | None


def read_weights(path: Path) -> SavedWeights:
    """Reads a weights file in full (every array's CRC is checked), without pickle.

    Raises:
        WeightsError: the file is missing, not a weights file, truncated or damaged, or
            its metadata is unreadable or of a newer layout.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no weights file (was the run made with "
                           "--save-weights none, or did it fail?)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except _DAMAGED as error:
        raise _damaged(path, error) from None
    if META_KEY not in arrays or arrays[META_KEY].shape != (1,):
        raise WeightsError(f"{path}: no '{META_KEY}' entry: not a FER-Bench weights file")
    meta = WeightsMeta.from_json(str(arrays.pop(META_KEY)[0]), path)
    probabilities = arrays.pop(PROBABILITIES_KEY, None)
    weights = {key[len(PARAM_PREFIX):]: value for key, value in arrays.items()
               if key.startswith(PARAM_PREFIX)}
    if not weights:
        raise WeightsError(f"{path}: holds no '{PARAM_PREFIX}…' arrays")
    wrong = sorted(name for name, value in weights.items() if value.dtype != np.float32)
    if wrong:
        raise WeightsError(f"{path}: arrays {wrong[:3]} are not float32")
    if probabilities is not None and (probabilities.ndim != 2
                                      or probabilities.shape[1] != meta.num_classes):
        raise WeightsError(f"{path}: test probabilities of shape {probabilities.shape} "
                           f"do not have {meta.num_classes} columns")
    return SavedWeights(path, meta, weights, probabilities)


def read_test_probabilities(path: Path) -> np.ndarray | None:
    """Only the test probabilities of a weights file (the weights are not read).

    Returns:
        (N, C) float32, or None when the file holds none.

    Raises:
        WeightsError: the file is missing, truncated or damaged.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return stored[PROBABILITIES_KEY] if PROBABILITIES_KEY in stored.files else None
    except _DAMAGED as error:
        raise _damaged(path, error) from None


# What np.load raises for a file cut short or altered (zip checks each array's CRC).
_DAMAGED = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _damaged(path: Path, error: Exception) -> WeightsError:
    return WeightsError(f"{path}: not a readable weights file, truncated or damaged "
                        f"({type(error).__name__}: {error})")


def check_matches(saved: SavedWeights, model: str | None = None,
                  input_shape: tuple[int, int, int] | None = None,
                  num_classes: int | None = None) -> None:
    """Raises WeightsError when the file is not for the expected model, shape or classes.

    Args:
        saved: a file read by `read_weights`.
        model, input_shape, num_classes: what the caller expects; None accepts any.
    """
    meta = saved.meta
    for name, expected, found in (("model", model, meta.model),
                                  ("input shape", input_shape and tuple(input_shape),
                                   meta.input_shape),
                                  ("classes", num_classes, meta.num_classes)):
        if expected is not None and expected != found:
            raise WeightsError(f"{saved.path}: weights for {name} {found!r}, expected "
                               f"{expected!r}")


def load_into(backend: Backend, saved: SavedWeights) -> Backend:
    """Builds the file's model in `backend` and loads its weights; returns `backend`.

    The model is built with dropout off (weights do not depend on it; inference never
    uses it), so training-mode passes are deterministic too.

    Raises:
        WeightsError: the arrays do not fit the model the metadata names (another model,
            input shape or class count).
    """
    meta = saved.meta
    from backends.catalog import CATALOG  # the dropout default decides the override

    overrides: dict[str, Any] = {} if CATALOG[meta.model].dropout is None else {"dropout": 0.0}
    backend.build(meta.model, meta.input_shape, meta.num_classes, **overrides)
    try:
        backend.set_weights(saved.weights)
    except ValueError as error:
        raise WeightsError(f"{saved.path}: the weights do not fit {meta.model} at "
                           f"{meta.input_shape} with {meta.num_classes} classes: "
                           f"{_short(str(error))}") from None
    return backend


def load_backend(path: Path, backend_name: str, threads: int | None = None,
                 **expected: Any) -> tuple[Backend, SavedWeights]:
    """Rebuilds a saved model in the framework `backend_name` ("tf" or "torch").

    Args:
        path: a weights file written by `save_weights`.
        backend_name: the backend to rebuild it in, whichever trained it.
        threads: the backend's thread pools (None: the framework's default).
        **expected: `check_matches`'s model, input_shape, num_classes.

    Returns:
        The backend holding the model with the file's weights, and the file read.

    Raises:
        WeightsError: see `read_weights`, `check_matches` and `load_into`.
    """
    from backends.registry import create_backend

    saved = read_weights(path)
    check_matches(saved, **expected)
    return load_into(create_backend(backend_name, threads=threads), saved), saved


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}…"
