"""The cross-framework report of one report folder, rebuilt from its results file.

    python -m benchmarks.report reports/20260101-120000-synthetic

Reads `results.jsonl` (never modifies it) and (re)writes the derived files next to it:

* `report.html`: self-contained (inline CSS, figures as base64 PNG data URIs, no script),
  opens from disk without a network;
* `report.md`: the tables and test results as Markdown, for pull requests and terminals;
* `summary.csv`: one row per (dataset, model, backend) with each figure's n, mean, std and
  95% interval; `runs.csv`: one row per run with every figure it carries.

Nothing else in the folder is touched. Text that comes from the data (class names, paths,
error messages) is escaped in the HTML and Markdown.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import plots
from benchmarks.measures import (
    HEADLINE,
    figure_keys,
    measure_for,
    runs_frame,
    summarize_figure,
)
from benchmarks.results import ResultsFileError, read_records, results_path
from benchmarks.stats import PairedTest, Summary, paired_accuracy_test
from benchmarks.tables import html_table, markdown_escape, markdown_table

REPORT_HTML, REPORT_MD = "report.html", "report.md"
SUMMARY_CSV, RUNS_CSV = "summary.csv", "runs.csv"

# The per-run table's figures; the full set is in runs.csv and the "All figures" tables.
_RUN_TABLE_KEYS = (
    "metrics.accuracy",
    "metrics.macro_f1",
    "metrics.auc_macro_ovr",
    "timing.train_wall_s",
    "timing.train_throughput_img_s",
    "timing.eval_wall_s",
    "memory.peak_host_rss_mb",
)
_SECTION_TITLES = {"metrics": "Classification metrics", "timing": "Time", "memory": "Memory"}
# Sections of figures that are facts about the model, not measurements worth a chart.
_UNCHARTED_SECTIONS = ("model_info",)


@dataclass
class ReportData:
    """Everything the renderers need, computed once from the records.

    Attributes:
        source: the results file.
        records: every record, in file order.
        groups: label → backend → ok records (see `benchmarks.plots`); labels with only
            failed runs are present with empty lists.
        totals: label → backend → number of runs, ok or not.
        tests: label → paired accuracy tests, one per pair of backends.
        keys: every figure key some record carries, catalog figures first.
    """

    source: Path
    records: list[dict[str, Any]]
    groups: plots.Groups = field(default_factory=dict)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    tests: dict[str, list[PairedTest]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    @property
    def backends(self) -> list[str]:
        """The backends of the records, tf and torch first."""
        return plots.ordered_backends(record["backend"] for record in self.records)

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The runs that did not succeed (failed, skipped, …)."""
        return [r for r in self.records if r.get("status") != "ok"]

    def summary(self, label: str, backend: str, key: str) -> Summary:
        return summarize_figure(self.groups[label].get(backend, []), key)


def analyse(records: list[dict[str, Any]], source: Path) -> ReportData:
    """Groups the records by (label, backend) and runs the paired tests.

    Args:
        records: result records, as `read_records` returns them.
        source: the results file they came from (named in the report).
    """
    data = ReportData(source=source, records=records)
    several_datasets = len({r["dataset"] for r in records}) > 1
    for record in records:
        label = f"{record['dataset']} · {record['model']}" if several_datasets \
            else record["model"]
        data.groups.setdefault(label, {})
        data.totals.setdefault(label, {})
        backend = record["backend"]
        data.totals[label][backend] = data.totals[label].get(backend, 0) + 1
        runs = data.groups[label].setdefault(backend, [])
        if record.get("status") == "ok":
            runs.append(record)
    for label, by_backend in data.groups.items():
        present = [b for b in data.backends if by_backend.get(b)]
        data.tests[label] = [paired_accuracy_test(by_backend[a], by_backend[b], a, b)
                             for a, b in combinations(present, 2)]
    data.keys = figure_keys(runs_frame(records).columns)
    return data


# --- formatting -----------------------------------------------------------------------


def format_summary(key: str, summary: Summary) -> str:
    """"mean ± half-width" of the 95% interval, the mean alone for one replicate, or "—"."""
    measure = measure_for(key)
    if summary.mean is None:
        return "—"
    if summary.half_width is None:
        return measure.format(summary.mean)
    return f"{measure.format(summary.mean)} ± {measure.format(summary.half_width)}"


def _runs_cell(data: ReportData, label: str, backend: str) -> str:
    return f"{len(data.groups[label].get(backend, []))}/{data.totals[label].get(backend, 0)}"


def _pairs(data: ReportData) -> list[tuple[str, str]]:
    return [(label, backend) for label in data.groups for backend in data.backends
            if data.totals[label].get(backend)]


def headline_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The headline table: one row per (label, backend)."""
    headers = ["model", "backend", "ok runs"] + [measure_for(k).title for k in HEADLINE]
    rows = [[label, backend, _runs_cell(data, label, backend)]
            + [format_summary(k, data.summary(label, backend, k)) for k in HEADLINE]
            for label, backend in _pairs(data)]
    return headers, rows


def figure_rows(data: ReportData, label: str) -> tuple[list[str], list[list[str]]]:
    """Every figure of one label, the backends side by side (and their ratio for two)."""
    backends = [b for b in data.backends if data.groups[label].get(b)]
    ratio = len(backends) == 2
    headers = ["figure"] + backends + ([f"{backends[1]} / {backends[0]}"] if ratio else [])
    rows = []
    for key in data.keys:
        summaries = [data.summary(label, b, key) for b in backends]
        if all(s.mean is None for s in summaries):
            continue
        row = [measure_for(key).title] + [format_summary(key, s) for s in summaries]
        if ratio:
            a, b = summaries[0].mean, summaries[1].mean
            row.append("—" if a in (None, 0) or b is None else f"{b / a:.2f}×")
        rows.append(row)
    return headers, rows


def run_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Every run, ok or not, with its main figures."""
    headers = ["run", "status", "seed", "fold"] + [measure_for(k).title for k in _RUN_TABLE_KEYS]
    frame = runs_frame(data.records)
    rows = []
    for _, run in frame.iterrows():
        rows.append([str(run["run_id"]), str(run["status"]), _fact(run["seed"]),
                     _fact(run["fold"])]
                    + [measure_for(k).format(run.get(k)) for k in _RUN_TABLE_KEYS])
    return headers, rows


def problem_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The runs that did not succeed, with their error."""
    headers = ["run", "status", "error"]
    return headers, [[r["run_id"], str(r.get("status")), str(r.get("error") or "—")]
                     for r in data.problems]


def _fact(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _distinct(values: Sequence[Any]) -> str:
    """The distinct values, joined; "—" when none (fields one backend lacks)."""
    seen = dict.fromkeys(_fact(v) for v in values if v is not None)
    return "; ".join(seen) or "—"


def _facts_table(records: list[dict[str, Any]], section: str,
                 columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """A section's fields (rows) per backend (columns), distinct values joined."""
    by_backend = {b: [r.get(section) or {} for r in records if r["backend"] == b]
                  for b in columns}
    names = list(dict.fromkeys(k for rs in by_backend.values() for r in rs for k in r))
    rows = [[name] + [_distinct([r.get(name) for r in by_backend[b]]) for b in columns]
            for name in names]
    return ["field"] + columns, rows


def data_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Facts about each dataset (protocol, sizes, fingerprint, class names, skips)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in data.records))
    by_dataset = {d: [r.get("data") or {} for r in data.records if r["dataset"] == d]
                  for d in datasets}
    names = list(dict.fromkeys(k for infos in by_dataset.values() for info in infos
                               for k in info))
    rows = []
    for name in names:
        cells = []
        for dataset in datasets:
            values = [info.get(name) for info in by_dataset[dataset]]
            # A list of skipped files gets its own table; here it is counted.
            cells.append(_distinct([len(v) if name == "skipped_files" and isinstance(v, list)
                                    else v for v in values]))
        rows.append([name] + cells)
    return ["field"] + datasets, rows


def skipped_file_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Input files the loader passed over, when the records list them."""
    seen: dict[tuple[str, str, str], None] = {}
    for record in data.records:
        skipped = (record.get("data") or {}).get("skipped_files")
        if isinstance(skipped, list):
            for item in skipped:
                entry = item if isinstance(item, dict) else {"path": item}
                seen[(record["dataset"], str(entry.get("path", "—")),
                      str(entry.get("reason", "—")))] = None
    return ["dataset", "file", "reason"], [list(key) for key in seen]


def _skipped_count(data: ReportData) -> int:
    counts: dict[str, int] = {}
    for record in data.records:
        skipped = (record.get("data") or {}).get("skipped_files")
        count = len(skipped) if isinstance(skipped, list) else skipped
        if isinstance(count, int):
            counts[record["dataset"]] = count
    return sum(counts.values())


def chart_sections(data: ReportData) -> list[tuple[str, list[str]]]:
    """(title, figure keys) per chart: one per record section, in catalog order."""
    sections: dict[str, list[str]] = {}
    for key in data.keys:
        section = key.split(".", 1)[0]
        if section not in _UNCHARTED_SECTIONS:
            sections.setdefault(section, []).append(key)
    return [(_SECTION_TITLES.get(s, s.replace("_", " ").capitalize()), keys)
            for s, keys in sections.items()]


def charts(data: ReportData) -> list[tuple[str, str, bytes]]:
    """(anchor, caption, PNG) of every figure that has something to draw."""
    drawn: list[tuple[str, str, bytes | None]] = [
        (f"chart-{title.lower().replace(' ', '-')}",
         f"{title}: mean over seeds (bars), 95% t-interval (whiskers), seeds (dots).",
         plots.figure_bars(data.groups, keys, title))
        for title, keys in chart_sections(data)
    ]
    drawn += [
        ("chart-confusion", "Confusion matrices summed over runs (shade: share of the true "
         "class).", plots.confusion_matrices(data.groups)),
        ("chart-per-class", "Per-class F1.", plots.per_class_f1(data.groups)),
        ("chart-curves", "Training curves: loss (train solid, validation dashed) and "
         "validation accuracy per epoch; band: min–max over runs.",
         plots.training_curves(data.groups)),
    ]
    return [(anchor, caption, png) for anchor, caption, png in drawn if png is not None]


# --- Markdown -------------------------------------------------------------------------


def _test_lines(data: ReportData) -> list[tuple[str, str]]:
    return [(label, test.statement) for label, tests in data.tests.items()
            for test in tests]


def injection_warning(data: ReportData) -> str | None:
    """A warning naming the runs measured with test-only fault injection; None without."""
    injected = [r["run_id"] for r in data.records if r.get("test_injection")]
    if not injected:
        return None
    return (f"Warning: {len(injected)} run{'s' if len(injected) != 1 else ''} measured with "
            f"test-only fault injection, not real measurements: {', '.join(injected)}")


def render_markdown(data: ReportData) -> str:
    """The report as Markdown: every table and test; the figures are in report.html."""
    datasets = ", ".join(dict.fromkeys(r["dataset"] for r in data.records))
    warning = injection_warning(data)
    parts = [
        f"# FER-Bench report: {markdown_escape(datasets)}",
        *([f"**{markdown_escape(warning)}**"] if warning else []),
        f"{len(data.records)} runs ({len(data.problems)} not ok) from "
        f"`{markdown_escape(data.source.name)}`. Figures: `{REPORT_HTML}`. Cells are the mean over "
        "seeds ± half-width of its 95% t-interval.",
        "## Headline", markdown_table(*headline_rows(data)),
        "## Do the frameworks differ? (paired accuracy tests)",
        "\n".join(f"- **{markdown_escape(label)}**: {markdown_escape(statement)}"
                  for label, statement in _test_lines(data)) or "No pair of backends to test.",
    ]
    for label in data.groups:
        headers, rows = figure_rows(data, label)
        if rows:
            parts += [f"## All figures: {markdown_escape(label)}", markdown_table(headers, rows)]
    parts += ["## Runs", markdown_table(*run_rows(data))]
    if data.problems:
        parts += ["## Failed or skipped runs", markdown_table(*problem_rows(data))]
    parts += ["## Data", markdown_table(*data_rows(data))]
    headers, rows = skipped_file_rows(data)
    if rows:
        parts += ["## Skipped input files", markdown_table(headers, rows)]
    parts += ["## Environment", markdown_table(*_facts_table(data.records, "env",
                                                              data.backends))]
    return "\n\n".join(parts) + "\n"


# --- HTML -----------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 24px 48px; color: #1b1b1b; }
h1 { margin-top: 24px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px;
       margin-top: 36px; }
nav a { margin-right: 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d8d8d8; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
td:first-child { white-space: nowrap; }
tr.bad td { background: #fdecea; }
figure { margin: 16px 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 13px; }
.note { color: #555; }
ul.tests li { margin: 4px 0; }
.significant { font-weight: 600; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def render_html(data: ReportData, figures: list[tuple[str, str, bytes]]) -> str:
    """The self-contained HTML report: inline CSS, figures as data URIs, no script."""
    esc = html.escape
    datasets = ", ".join(dict.fromkeys(r["dataset"] for r in data.records))
    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)
    headers, rows = headline_rows(data)
    sections.append(("headline", "Headline", (
        f"<p class=\"note\">Mean over seeds ± half-width of its 95% t-interval; a single "
        f"value where there is one replicate; “—” where not measured. "
        f"Ok runs / all runs per pair.</p>{html_table(headers, rows, _not_all_ok)}")))
    tests = "".join(
        f'<li class="{"significant" if test.significant else ""}"><b>{esc(label)}</b>: '
        f"{esc(test.statement)}</li>"
        for label, pair_tests in data.tests.items() for test in pair_tests)
    sections.append(("tests", "Do the frameworks differ?", (
        "<p class=\"note\">Paired tests on the same test images at α = 0.05: McNemar's "
        "exact test for one seed (folds pooled), a paired t-test over seeds otherwise.</p>"
        + (f'<ul class="tests">{tests}</ul>' if tests else "<p>No pair of backends to "
                                                           "test.</p>"))))
    sections.append(("figures", "Figures", "".join(
        f'<figure id="{anchor}">{_img(png, caption)}<figcaption>{esc(caption)}</figcaption>'
        f"</figure>" for anchor, caption, png in figures) or "<p>No successful runs to "
                                                              "draw.</p>"))
    tables = [(label, figure_rows(data, label)) for label in data.groups]
    details = "".join(f"<h3>{esc(label)}</h3>{html_table(headers, rows)}"
                      for label, (headers, rows) in tables if rows)
    sections.append(("all-figures", "All figures", details or "<p>No figures.</p>"))
    sections.append(("runs", "Runs", html_table(*run_rows(data), lambda r: r[1] != "ok")))
    problems = "<p>Every run succeeded.</p>"
    if data.problems:
        headers, rows = problem_rows(data)
        tails = "".join(
            f"<details><summary>{esc(r['run_id'])}: worker output</summary>"
            f"<pre>{esc(r['stderr_tail'])}</pre></details>"
            for r in data.problems if r.get("stderr_tail"))
        problems = html_table(headers, rows, lambda r: True) + tails
    sections.append(("problems", "Failed or skipped runs", problems))
    skipped_headers, skipped = skipped_file_rows(data)
    count = _skipped_count(data)
    skipped_html = (html_table(skipped_headers, skipped) if skipped else
                    f"<p>{count} input file{'s' if count != 1 else ''} skipped while "
                    "loading.</p>")
    sections.append(("data", "Data", html_table(*data_rows(data))
                     + f"<h3>Skipped input files</h3>{skipped_html}"))
    sections.append(("environment", "Environment", (
        html_table(*_facts_table(data.records, "env", data.backends))
        + "<h3>Fast-path flags</h3>"
        + html_table(*_facts_table(data.records, "flags", data.backends))
        + "<h3>Training recipe</h3>"
        + html_table(*_facts_table(data.records, "config", data.backends)))))
    warning = injection_warning(data)
    banner = f"<p><strong>{esc(warning)}</strong></p>" if warning else ""
    nav = " ".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{esc(title)}</h2>{content}</section>'
                   for anchor, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>FER-Bench report: {esc(datasets)}</title><style>{_CSS}</style></head><body>"
        f"<h1>FER-Bench report: {esc(datasets)}</h1>{banner}"
        f"<p class=\"note\">{len(data.records)} runs ({len(data.problems)} not ok) from "
        f"<code>{esc(str(data.source))}</code></p><nav>{nav}</nav>{body}</body></html>\n"
    )


def _not_all_ok(row: Sequence[Any]) -> bool:
    ok, total = str(row[2]).split("/")
    return ok != total


# --- CSV ------------------------------------------------------------------------------


def summary_frame(data: ReportData) -> pd.DataFrame:
    """One row per (dataset, model, backend): run counts and each figure's statistics."""
    rows = []
    for (dataset, model, backend), group in _by_pair(data.records).items():
        ok = [r for r in group if r.get("status") == "ok"]
        row: dict[str, Any] = {"dataset": dataset, "model": model, "backend": backend,
                               "runs": len(group), "runs_ok": len(ok)}
        for key in data.keys:
            summary = summarize_figure(ok, key)
            row.update({f"{key}.n": summary.n, f"{key}.mean": summary.mean,
                        f"{key}.std": summary.std, f"{key}.ci95_low": summary.ci_low,
                        f"{key}.ci95_high": summary.ci_high})
        rows.append(row)
    return pd.DataFrame(rows)


def _by_pair(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict]]:
    grouped: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        grouped.setdefault((record["dataset"], record["model"], record["backend"]),
                           []).append(record)
    return grouped


# --- files ----------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Writes via a temporary file, so a crash never leaves a half-written report."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_report(location: Path, records: list[dict[str, Any]] | None = None) -> list[Path]:
    """Writes the report files of a report folder from its results.

    Args:
        location: the report folder, or its results file.
        records: the records, when the caller already holds them; read from the results
            file otherwise.

    Returns:
        The files written, all in the results file's folder.

    Raises:
        ResultsFileError: the results file is missing, empty or damaged.
    """
    source = results_path(location)
    records = read_records(source) if records is None else records
    if not records:
        raise ResultsFileError(f"no records to report for {source}")
    folder = source.parent
    data = analyse(records, source)
    written = {folder / REPORT_HTML: render_html(data, charts(data)),
               folder / REPORT_MD: render_markdown(data),
               folder / SUMMARY_CSV: summary_frame(data).to_csv(index=False),
               folder / RUNS_CSV: runs_frame(records).to_csv(index=False)}
    for path, text in written.items():
        _write(path, text)
    return list(written)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Rebuild a report folder's report.html, report.md and CSV summaries "
                    "from its results.jsonl, without training.",
    )
    parser.add_argument("location", type=Path,
                        help="a report folder (reports/<timestamp>-<dataset>) or its "
                             "results.jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = write_report(args.location)
    except ResultsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
