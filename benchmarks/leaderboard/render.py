"""The leaderboard as one self-contained HTML page, Markdown and CSV.

Every text that comes from a report folder (model names, recipes, hardware, paths, the
published figures' sources) is escaped for where it goes: HTML, Markdown without links or
images, CSV without spreadsheet formulas (`benchmarks.report.tables`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmarks.analysis.stats import Summary
from benchmarks.leaderboard import Protocol, Row
from benchmarks.record.layout import REPORT_HTML
from benchmarks.report.tables import csv_text, markdown_escape, markdown_table

LEADERBOARD_HTML, LEADERBOARD_MD, LEADERBOARD_CSV = ("leaderboard.html", "leaderboard.md",
                                                     "leaderboard.csv")
HEADERS = ["rank", "model", "backend", "test accuracy (95% interval)", "replicates",
           "seeds × folds", "macro F1", "recipe", "hardware", "report", "reports",
           "published"]
_NUMERIC = ("rank", "replicates", "reports", "macro F1", "test accuracy (95% interval)")
_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1400px; padding: 0 24px 48px; color: #1b1b1b; }
h1 { margin-top: 24px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px;
       margin-top: 36px; font-size: 17px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d8d8d8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
tr.first td { background: #eef7ee; }
.note { color: #555; }
"""


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def accuracy_text(summary: Summary) -> str:
    """"71.2 % [69.8, 72.6]", the mean alone for one replicate, "—" for none."""
    if summary.mean is None:
        return "—"
    if summary.ci_low is None:
        return _percent(summary.mean)
    return f"{_percent(summary.mean)} [{100 * summary.ci_low:.1f}, {100 * summary.ci_high:.1f}]"


def _replicates(row: Row) -> str:
    seeds, folds = len(row.best.seeds), len(row.best.folds)
    return f"{seeds} × {folds}" if folds else f"{seeds} × holdout"


def report_link(row: Row, out_dir: Path) -> str:
    """The row's report, relative to the leaderboard's folder ("./" first, so that no
    folder name can read as a URL scheme)."""
    target = row.best.folder.resolve() / REPORT_HTML
    return "./" + Path(os.path.relpath(target, out_dir.resolve())).as_posix()


def cells(row: Row, out_dir: Path) -> list[str]:
    """The row as text, in HEADERS' order."""
    best = row.best
    return [str(row.rank), best.model, best.backend, accuracy_text(best.accuracy),
            str(best.accuracy.n), _replicates(row), _percent(best.macro_f1.mean), best.recipe,
            best.hardware, report_link(row, out_dir), str(len(row.entries)),
            "; ".join(row.published) or "—"]


def _note(folders: int, notes: Sequence[str]) -> str:
    left = f" {len(notes)} note(s) below." if notes else ""
    return (f"{folders} report folder(s). Each table is one protocol (dataset, split, class "
            "set, part tested on, per-class draws, test images): rows are ranked within "
            "their table only, never across. A row is the best mean test accuracy any "
            "report reached for its model and backend (the 'reports' column counts those "
            "compared: the best of several reads high), with its 95% t-interval over the "
            "replicates (seeds, or folds for one seed); a grid folder counts its chosen "
            f"configuration only.{left}")


def render_html(ranked: dict[Protocol, list[Row]], out_dir: Path, folders: int,
                notes: Sequence[str]) -> str:
    """The self-contained page: inline CSS, no script, no figure fetched."""
    esc = html.escape
    sections = []
    for protocol, rows in ranked.items():
        head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
        body = []
        for row in rows:
            values = cells(row, out_dir)
            tds = []
            for header, value in zip(HEADERS, values, strict=True):
                if header == "report":
                    tds.append(f'<td><a href="{esc(value, quote=True)}">{esc(value)}</a></td>')
                else:
                    css = ' class="num"' if header in _NUMERIC else ""
                    tds.append(f"<td{css}>{esc(value)}</td>")
            css = ' class="first"' if row.rank == 1 else ""
            body.append(f"<tr{css}>{''.join(tds)}</tr>")
        sections.append(f"<section><h2>{esc(protocol.describe())}</h2><table><thead><tr>"
                        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>")
    listed = "".join(f"<li>{esc(note)}</li>" for note in notes)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>FER-Bench leaderboard</title><style>{_CSS}</style></head><body>"
            f"<h1>FER-Bench leaderboard</h1><p class=\"note\">{esc(_note(folders, notes))}</p>"
            + "".join(sections)
            + (f"<h2>Notes</h2><ul>{listed}</ul>" if listed else "") + "</body></html>\n")


def render_markdown(ranked: dict[Protocol, list[Row]], out_dir: Path, folders: int,
                    notes: Sequence[str]) -> str:
    """The leaderboard as Markdown: one table per protocol, report paths as text."""
    parts = ["# FER-Bench leaderboard", markdown_escape(_note(folders, notes))]
    for protocol, rows in ranked.items():
        parts += [f"## {markdown_escape(protocol.describe())}",
                  markdown_table(HEADERS, [cells(row, out_dir) for row in rows])]
    if notes:
        parts += ["## Notes", "\n".join(f"- {markdown_escape(note)}" for note in notes)]
    return "\n\n".join(parts) + "\n"


def render_csv(ranked: dict[Protocol, list[Row]], out_dir: Path) -> str:
    """One CSV row per leaderboard row, the protocol's fields first."""
    rows = []
    for protocol, ranked_rows in ranked.items():
        for row in ranked_rows:
            best = row.best
            rows.append({
                "dataset": protocol.dataset, "split": protocol.split,
                "classes": ",".join(protocol.classes), "test_part": protocol.test_part,
                "train_per_class": protocol.train_per_class,
                "test_per_class": protocol.test_per_class,
                "test_images": protocol.test_images, "rank": row.rank, "model": best.model,
                "backend": best.backend, "accuracy_mean": best.accuracy.mean,
                "accuracy_ci_low": best.accuracy.ci_low,
                "accuracy_ci_high": best.accuracy.ci_high, "replicates": best.accuracy.n,
                "seeds": len(best.seeds), "folds": len(best.folds),
                "macro_f1_mean": best.macro_f1.mean, "recipe": best.recipe,
                "hardware": best.hardware, "report": report_link(row, out_dir),
                "reports": len(row.entries), "published": "; ".join(row.published)})
    return csv_text(pd.DataFrame(rows))
