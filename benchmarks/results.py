"""Report folders and result records: created new, appended to, never overwritten."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.config import SCHEMA_VERSION

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


# Fields without which a record cannot be placed in a report or a comparison.
_REQUIRED_FIELDS = ("schema_version", "run_id", "status", "backend", "model", "dataset")


def results_path(path: Path) -> Path:
    """The results file itself, given either it or the report folder holding it."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Reads every record of a results file (or of the results file in a folder).

    Raises:
        ResultsFileError: the file is missing, holds no records, holds a line that is not
            a JSON record with the fields every record has, or was written by a newer
            schema than this code reads.
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
            missing = [f for f in _REQUIRED_FIELDS
                       if not isinstance(record, dict) or f not in record]
            if missing:
                raise ResultsFileError(
                    f"{path}, line {number}: not a FER-Bench result record (missing "
                    f"{', '.join(missing)}); pass a results.jsonl written by benchmarks.run"
                )
            version = record["schema_version"]
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise ResultsFileError(
                    f"{path}, line {number}: result schema {version!r} is not one this "
                    f"FER-Bench reads (1 to {SCHEMA_VERSION}); update FER-Bench"
                )
            records.append(record)
    if not records:
        raise ResultsFileError(f"{path} holds no result records; {rerun}")
    return records


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(records: list[dict[str, Any]]) -> str:
    """A plain-text side-by-side table: one row per run, backends of a model adjacent."""
    header = (f"{'model':<14}{'backend':<8}{'status':<8}{'acc':>7}{'mF1':>7}{'AUC':>7}"
              f"{'train s':>9}{'img/s':>9}{'eval s':>8}{'peak MB':>9}")
    lines = [header, "-" * len(header)]
    for rec in sorted(records, key=lambda r: (r["model"], r.get("fold") or 0, r["seed"],
                                              r["backend"])):
        m, t, mem = rec.get("metrics", {}), rec.get("timing", {}), rec.get("memory", {})
        lines.append(
            f"{rec['model']:<14}{rec['backend']:<8}{rec['status']:<8}"
            f"{_fmt(m.get('accuracy'), '.3f'):>7}{_fmt(m.get('macro_f1'), '.3f'):>7}"
            f"{_fmt(m.get('auc_macro_ovr'), '.3f'):>7}{_fmt(t.get('train_wall_s'), '.1f'):>9}"
            f"{_fmt(t.get('train_throughput_img_s'), '.0f'):>9}"
            f"{_fmt(t.get('eval_wall_s'), '.2f'):>8}"
            f"{_fmt(mem.get('peak_host_rss_mb'), '.0f'):>9}"
        )
    return "\n".join(lines)
