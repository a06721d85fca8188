"""Report folders and result records: created new, appended to, never overwritten."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.record.schema import RecordError, check_record

RESULTS_FILE = "results.jsonl"


def new_report_dir(out_root: Path, dataset: str) -> Path:
    """Creates and returns a fresh `<out_root>/<timestamp>-<dataset>/` folder.

    An existing folder is never reused: a clash within the same second gets a suffix.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace("+", "plus").replace("/", "_")
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        candidate = out_root / f"{stamp}-{safe}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new report folder under {out_root}")


def append_record(report_dir: Path, record: dict[str, Any]) -> None:
    """Appends one run's record as a JSON line to the folder's results file."""
    with open(report_dir / RESULTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


class ResultsFileError(ValueError):
    """A results file that is missing, empty or unreadable; the message names the fix."""


def results_path(path: Path) -> Path:
    """The results file itself, given either it or the report folder holding it."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Reads every record of a results file (or of the results file in a folder).

    Raises:
        ResultsFileError: the file is missing, holds no records, or holds a line that is
            not JSON or not a record `schema.check_record` accepts (one lacking a field
            every record has, or written by a newer schema than this code reads).
    """
    path = results_path(path)
    rerun = "rerun `python -m benchmarks.run` to produce it"
    if not path.is_file():
        raise ResultsFileError(f"no results file at {path}: pass a report folder or its "
                               f"{RESULTS_FILE}, or {rerun}")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ResultsFileError(
                    f"{path}, line {number}: not valid JSON ({error.msg}); the file is "
                    f"damaged: restore it or {rerun}"
                ) from None
            try:
                check_record(record)
            except RecordError as error:
                raise ResultsFileError(f"{path}, line {number}: {error}") from None
            records.append(record)
    if not records:
        raise ResultsFileError(f"{path} holds no result records; {rerun}")
    return records
