"""The harness: prepares the shared data once, then runs each job in a fresh worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record.schema import failed_record
from benchmarks.runner.config import RunSpec
from benchmarks.runner.env import SUITE_ROOT
from datasets import FaceDataset, dataset_split

# Skipped files listed in each run's record (all of them are counted).
MAX_LISTED_SKIPPED = 100


def prepare_data(
    dataset: FaceDataset,
    split_seed: int,
    cache_dir: Path,
    folds: int | None = None,
    fold: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Splits `dataset` and writes the arrays every worker of this invocation reads.

    The split is datasets.dataset_split's: k-fold with `folds`, else the dataset's
    official split (FER2013), else a holdout; subject-independent where subjects exist.

    Args:
        dataset: the loaded dataset.
        split_seed: seed of the split.
        cache_dir: folder for the prepared file.
        folds: number of folds for k-fold cross-validation, or None.
        fold: with `folds`, the fold whose part is the test set.

    Returns:
        The .npz path and the data facts recorded with each run. A file already there is
        reused only when it reads back in full as exactly these arrays; a damaged one
        (truncated, altered) is rebuilt in its place.
    """
    import zipfile  # np.load's error for a damaged file; only this function needs it

    split = dataset_split(dataset, folds=folds, fold=fold, seed=split_seed)
    fingerprint = dataset.fingerprint()
    path = cache_dir / "prepared" / f"{dataset.name}-{fingerprint}-{split.tag}.npz"
    arrays = {"class_names": np.asarray(dataset.class_names)}
    for part in ("train", "val", "test"):
        indices = getattr(split, part)
        arrays[f"x_{part}"] = dataset.images[indices]
        arrays[f"y_{part}"] = dataset.labels[indices]
    # A file left truncated or altered (full disk, a copy cut short) would fail every run
    # that reuses it; zip checks each array's CRC as it is read in full here.
    try:
        with np.load(path) as stored:
            reusable = set(stored.files) == set(arrays) and all(
                np.array_equal(stored[key], value) for key, value in arrays.items())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or damaged
        reusable = False
    if not reusable:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name so a crash never leaves a truncated file behind.
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, **arrays)
        os.replace(partial, path)
    info = {
        "fingerprint": fingerprint,
        "protocol": split.protocol,
        "split": split.tag,
        "split_seed": split_seed,
        "folds": folds,
        "fold": fold,
        "num_train": len(split.train),
        "num_val": len(split.val),
        "num_test": len(split.test),
        "class_names": dataset.class_names,
        "image_shape": list(dataset.images.shape[1:]),
        "subjects": None if dataset.subjects is None else len(set(dataset.subjects.tolist())),
        "skipped_files": len(dataset.skipped),
        "skipped": dataset.skipped[:MAX_LISTED_SKIPPED],
        "duplicates": dataset.duplicates,
        "duplicates_dropped": len(split.dropped),
        "source": dataset.source,
        "preprocessing": dataset.preprocessing,
    }
    return path, info


def _failure_reason(returncode: int, stderr_tail: list[str]) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (likely out of memory)" if name == "SIGKILL" else ""
        return f"worker killed by {name}{hint}"
    lines = [line for line in stderr_tail if line.strip()]
    return lines[-1].strip() if lines else f"worker exited with status {returncode}"


def run_in_worker(spec: RunSpec, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs `spec` in a fresh `python -m benchmarks.runner.worker` process.

    Args:
        spec: the run.
        on_line: receives each progress line the worker prints.

    Returns:
        The worker's record, or a "failed" record carrying the error when the worker
        crashed, raised or was killed.
    """
    with tempfile.TemporaryDirectory(prefix="ferbench-") as work:
        spec_path, result_path = Path(work) / "spec.json", Path(work) / "result.json"
        stderr_path = Path(work) / "stderr.txt"
        spec_path.write_text(spec.to_json())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.runner.worker", str(spec_path),
                 str(result_path)],
                cwd=SUITE_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
            for line in process.stdout:
                on_line(line.rstrip("\n"))
            returncode = process.wait()
        if returncode == 0 and result_path.exists():
            return json.loads(result_path.read_text())
        tail = stderr_path.read_text(errors="replace").splitlines()[-40:]
    return failed_record(spec, _failure_reason(returncode, tail), "\n".join(tail))
