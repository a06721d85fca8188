"""The cross-framework report of one report folder, rebuilt from its results file.

    python -m benchmarks.report reports/20260101-120000-synthetic

Reads `results.jsonl` (never modifies it) and (re)writes the derived files next to it:

* `report.html`: self-contained (inline CSS, figures as base64 PNG data URIs, no script),
  opens from disk without a network;
* `report.md`: the tables and test results as Markdown, for pull requests and terminals;
* `summary.csv`: one row per (dataset, model, backend) with each figure's n, mean, std and
  95% interval; `runs.csv`: one row per run with every figure it carries.

In a grid's folder (`python -m benchmarks.grid`, grid.json present) the report is of the
chosen configurations' runs, with a section of the hyper-parameter study read from
grid.json. Nothing else in the folder is touched. Text that comes from the data (class
names, paths, error messages) is escaped for each file it reaches: HTML, Markdown, and in
the CSV files what a spreadsheet would run as a formula (`benchmarks.report.tables`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.analysis.grid_selection import chosen_runs
from benchmarks.analysis.grid_study import read_grid_summary
from benchmarks.record.figures import runs_frame
from benchmarks.record.layout import REPORT_HTML, REPORT_MD, RUNS_CSV, SUMMARY_CSV
from benchmarks.record.store import ResultsFileError, read_records, results_path
from benchmarks.report.data import analyse, charts, summary_frame
from benchmarks.report.html import render_html
from benchmarks.report.markdown import render_markdown
from benchmarks.report.tables import csv_text


def write_text(path: Path, text: str) -> None:
    """Writes via a temporary file, so a crash never leaves a half-written report.

    Raises:
        OSError: the file could not be written (a full disk, …); the previous version of
            `path`, if any, is kept and the temporary file removed.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text, encoding="utf-8", newline="")  # as given: CSV ends in CRLF
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_report(location: Path, records: list[dict[str, Any]] | None = None,
                 reference: str | None = None) -> list[Path]:
    """Writes the report files of a report folder from its results.

    Args:
        location: the report folder, or its results file.
        records: the records, when the caller already holds them; read from the results
            file otherwise.
        reference: the backend the framework verdicts are against (`--reference-backend`);
            None: a grid folder's spec's `reference_backend` (grid.json's) where the
            records hold it, else torch where they hold it, else the first in the
            registry's order.

    Returns:
        The files written, all in the results file's folder.

    Raises:
        ResultsFileError: the results file is missing, empty or damaged, or the folder's
            grid.json is damaged.
        ValueError: `reference` is not among the records' backends; nothing is written.
        OSError: a report file could not be written (a full disk, …); the files written
            before it are complete, the others keep their previous version.
    """
    source = results_path(location)
    folder = source.parent
    grid = read_grid_summary(folder)
    if records is None:
        records = read_records(source)
        if grid is not None:
            # A grid's report is of its chosen configurations' runs, as its driver wrote it.
            records = chosen_runs(records, grid["choices"])
    if not records:
        raise ResultsFileError(f"no records to report for {source}")
    data = analyse(records, source, grid, reference)
    written = {folder / REPORT_HTML: render_html(data, charts(data)),
               folder / REPORT_MD: render_markdown(data),
               folder / SUMMARY_CSV: csv_text(summary_frame(data)),
               folder / RUNS_CSV: csv_text(runs_frame(records))}
    for path, text in written.items():
        write_text(path, text)
    return list(written)


