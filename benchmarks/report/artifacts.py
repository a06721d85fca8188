"""Reading what runs, `benchmarks.explain` and `benchmarks.export` leave in a report folder
beside the records: saved weights and test images (`weights/`), explanation figures
(`explain/`), ONNX exports and their onnxruntime figures (`onnx/`); the names are
`benchmarks.record.layout`'s.

A report folder is untrusted input: people attach its report to issues and hand the folder
to reviewers, and anyone may have edited it. So every file name read from its records or
summaries, or made from them (a run id), goes through `artifact_path`, which refuses a
name that would lead out of the folder.

numpy only: the report reads these without any deep-learning framework.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from backends.weights import WeightsError
from benchmarks.messages import quoted
from benchmarks.record import schema
from benchmarks.record.layout import (
    WEIGHTS_DIR,
    test_split_file_name,
)

# What every PNG file begins with (the PNG specification, 5.2).
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The largest figure the report embeds. explain's figures take well under 1 MB; a larger
# file in explain/ was put there by hand, and would only bloat report.html.
MAX_FIGURE_BYTES = 16 * 2**20


class UnsafeName(ValueError):
    """A file name from a report folder that is no plain name or leads out of the folder."""


def artifact_path(folder: Path, *names: Any) -> Path:
    """`folder / names[0] / names[1] …`, for names a report folder's records or summaries
    give (or that are made from them, such as a run id).

    Each name must be a plain file or folder name (text without a path separator, not
    "." or ".."), and the path must resolve inside `folder`, symbolic links followed: a
    folder someone edited cannot make a reader embed, or a writer overwrite, a file
    elsewhere.

    Args:
        folder: the report folder.
        names: the folders and file below it.

    Raises:
        UnsafeName: a name is not a plain name, or the path leads out of `folder` (through
            a symbolic link); the message names it.
    """
    path = Path(folder)
    for name in names:
        if (not isinstance(name, str) or name in ("", ".", "..")
                or any(c in name for c in "/\\\0")):
            raise UnsafeName(f"{quoted(name)} is not a plain file name inside {folder}: "
                             "refused (a report folder names only files in it); the folder "
                             "was edited or damaged: restore it or rerun")
        path = path / name
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise UnsafeName(f"{path} leads out of {folder} (a symbolic link to "
                         f"{path.resolve()}): refused; the folder was edited: restore it or "
                         "rerun")
    return path


def read_figure(path: Path) -> bytes:
    """The bytes of the PNG figure at `path` (made by `artifact_path`) for embedding.

    Raises:
        UnsafeName: the file is not a PNG or is larger than MAX_FIGURE_BYTES.
        OSError: it cannot be read.
    """
    size = path.stat().st_size
    if size > MAX_FIGURE_BYTES:
        raise UnsafeName(f"{path}: {size:,} bytes, more than a figure takes "
                         f"({MAX_FIGURE_BYTES:,}): not embedded")
    with open(path, "rb") as stream:
        png = stream.read(MAX_FIGURE_BYTES + 1)
    if not png.startswith(PNG_SIGNATURE) or len(png) > MAX_FIGURE_BYTES:
        raise UnsafeName(f"{path}: not a PNG figure: not embedded")
    return png


def described_difference(value: Any) -> str:
    """How far two frameworks' maps lie apart, as explain.json gives it, in words.

    A map holding NaN or Inf has no finite distance to the other framework's: explain
    records None, which reads as such, never as a parity of 0.
    """
    if value is None:
        return "not finite (a map holds NaN or Inf)"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"unreadable ({quoted(value)})"
    if not math.isfinite(value):
        return f"not finite ({value})"
    return f"{value:.1e} of a map's range"


def explained_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first ok run (lowest fold, then seed) of each (model, backend) with weights."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.get(schema.FOLD) or 0, r.get(schema.SEED)
                                                 or 0)):
        artifacts = record.get(schema.ARTIFACTS) or {}
        if schema.succeeded(record) and artifacts.get("weights_file"):
            first.setdefault((record[schema.MODEL], record[schema.BACKEND]), record)
    return list(first.values())


def weights_path(folder: Path, record: dict[str, Any]) -> Path:
    """The weights file a run saved, in WEIGHTS_DIR.

    Raises:
        UnsafeName: the record names no plain file name in WEIGHTS_DIR.
    """
    return artifact_path(folder, WEIGHTS_DIR,
                         (record.get(schema.ARTIFACTS) or {}).get("weights_file"))


def test_images_path(folder: Path, record: dict[str, Any]) -> Path:
    """The file of the test images a run was scored on, in WEIGHTS_DIR (one per split).

    Raises:
        UnsafeName: the record's split makes no plain file name.
    """
    return artifact_path(folder, WEIGHTS_DIR, test_split_file_name(
        str((record.get(schema.DATA) or {}).get("split", ""))))


def test_images(folder: Path, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels a run was scored on, from WEIGHTS_DIR.

    Raises:
        WeightsError: the file is missing or damaged, or not of the run's test set.
        UnsafeName: the record's split makes no plain file name.
    """
    path = test_images_path(folder, record)
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["x_test"], stored["y_test"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise WeightsError(f"{path}: test images missing or damaged ({error})") from None
    if labels.tolist() != record.get(schema.TEST_LABELS):
        raise WeightsError(f"{path}: not the test set run {record[schema.RUN_ID]} was scored "
                           "on (its labels differ)")
    return images, labels
