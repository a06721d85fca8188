"""Where a report folder keeps what runs, `benchmarks.explain` and `benchmarks.export` leave
beside the records: saved weights and test images (`weights/`), explanation figures
(`explain/`), ONNX exports and their onnxruntime figures (`onnx/`).

numpy only: the report reads these without any deep-learning framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backends.weights import WeightsError
from benchmarks.record import schema
from benchmarks.record.store import WEIGHTS_DIR, test_split_file_name

EXPLAIN_DIR = "explain"
SUMMARY_FILE = "explain.json"
ONNX_DIR = "onnx"
ONNX_SUMMARY_FILE = "onnx.json"


def explained_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first ok run (lowest fold, then seed) of each (model, backend) with weights."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.get(schema.FOLD) or 0, r.get(schema.SEED)
                                                 or 0)):
        artifacts = record.get(schema.ARTIFACTS) or {}
        if schema.succeeded(record) and artifacts.get("weights_file"):
            first.setdefault((record[schema.MODEL], record[schema.BACKEND]), record)
    return list(first.values())


def test_images(folder: Path, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels a run was scored on, from WEIGHTS_DIR.

    Raises:
        WeightsError: the file is missing or damaged, or not of the run's test set.
    """
    path = folder / WEIGHTS_DIR / test_split_file_name((record.get(schema.DATA) or {})
                                                       .get("split", ""))
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["x_test"], stored["y_test"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise WeightsError(f"{path}: test images missing or damaged ({error})") from None
    if labels.tolist() != record.get(schema.TEST_LABELS):
        raise WeightsError(f"{path}: not the test set run {record[schema.RUN_ID]} was scored "
                           "on (its labels differ)")
    return images, labels
