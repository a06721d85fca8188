"""The report as one self-contained HTML page (report.html)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from benchmarks.analysis.published import PublishedView, published_view
from benchmarks.report.data import (
    ReportData,
    StudyView,
    data_rows,
    explanation_figures,
    facts_table,
    figure_rows,
    grid_study,
    headline_rows,
    injection_warning,
    load_warning,
    loaded_note,
    mistake_figures,
    per_class_accuracy_rows,
    pretrained_rows,
    problem_rows,
    run_rows,
    setting_rows,
    skipped_count,
    skipped_file_rows,
    test_lines,
    tests_note,
)
from benchmarks.report.deployment import deployment
from benchmarks.report.tables import html_table

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
.differ { font-weight: 600; }
.beside { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.beside > figure { flex: 1 1 480px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _figure(anchor: str, caption: str, png: bytes) -> str:
    return (f'<figure id="{html.escape(anchor)}">{_img(png, caption)}<figcaption>'
            f"{html.escape(caption)}</figcaption></figure>")


def render_html(data: ReportData, figures: list[tuple[str, str, bytes]]) -> str:
    """The self-contained HTML report: inline CSS, figures as data URIs, no script."""
    esc = html.escape
    datasets = ", ".join(dict.fromkeys(r["dataset"] for r in data.records))
    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)
    note = loaded_note(data)
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    headers, rows = headline_rows(data)
    sections.append(("headline", "Headline", (
        f"<p class=\"note\">Mean over seeds ± half-width of its 95% t-interval; a single "
        f"value where there is one replicate; “—” where not measured. "
        f"Ok runs / all runs per pair.</p>{html_table(headers, rows, _not_all_ok)}{note_html}")))
    published = published_view(data.source.parent, data.records)
    if published is not None:
        sections.append(("published", "Published vs measured", _published_html(published)))
    study = grid_study(data)
    if study is not None:
        sections.append(("study", "Hyper-parameter study", _study_html(study)))
    tests = "".join(
        f'<li class="{esc(verdict.verdict or "no-verdict")}"><b>{esc(label)}</b>: '
        + "<br>".join(esc(line) for line in verdict.lines) + "</li>"
        for label, verdict in test_lines(data))
    sections.append(("tests", "Do the frameworks differ?", (
        f'<p class="note">{esc(tests_note(data))}</p>'
        + (f'<ul class="tests">{tests}</ul>' if tests else "<p>No pair of backends to "
                                                           "test.</p>"))))
    accuracy = html_table(*per_class_accuracy_rows(data))
    parts = []
    for anchor, caption, png in figures:
        figure = _figure(anchor, caption, png)
        # The per-class accuracies beside the matrices they are read from.
        parts.append(f'<div class="beside">{figure}<div><h3>Accuracy per class</h3>'
                     f"{accuracy}</div></div>" if anchor == "chart-confusion" else figure)
    sections.append(("figures", "Figures", "".join(parts) or "<p>No successful runs to "
                                                              "draw.</p>"))
    images = explanation_figures(data) + mistake_figures(data)
    notes = "".join(f'<p class="note">{esc(note)}</p>' for note in data.gallery_notes)
    sections.append(("explain", "What the models look at", (
        "".join(_figure(*item) for item in images) + notes) or (
        "<p>No explanations: the runs saved no weights (<code>--save-weights none</code>), "
        "or <code>python -m benchmarks.explain</code> has not run on this folder.</p>")))
    tables = [(label, figure_rows(data, label)) for label in data.groups]
    details = "".join(f"<h3>{esc(label)}</h3>{html_table(headers, rows)}"
                      for label, (headers, rows) in tables if rows)
    headers, rows = setting_rows(data)
    if rows:
        details += ("<h3>Settings and counts (not plotted)</h3><p class=\"note\">Set by "
                    "the suite or the architecture, or counted, not measured: distinct "
                    f"values over the runs.</p>{html_table(headers, rows)}")
    sections.append(("all-figures", "All figures",
                     details + note_html if details else "<p>No figures.</p>"))
    headers, rows = pretrained_rows(data)
    pretrained = ("<h3>Starting weights (--pretrained)</h3><p class=\"note\">The checkpoint "
                  "each run started from and the canonical layers it provided; the others "
                  "took the shared initial weights.</p>" + html_table(headers, rows)
                  if rows else "")
    sections.append(("deployment", "Deployment (ONNX)", _deployment_html(data)))
    sections.append(("runs", "Runs",
                     html_table(*run_rows(data), lambda r: r[1] != "ok") + note_html
                     + pretrained))
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
    count = skipped_count(data)
    skipped_html = (html_table(skipped_headers, skipped) if skipped else
                    f"<p>{count} input file{'s' if count != 1 else ''} skipped while "
                    "loading.</p>")
    sections.append(("data", "Data", html_table(*data_rows(data))
                     + f"<h3>Skipped input files</h3>{skipped_html}"))
    sections.append(("environment", "Environment", (
        html_table(*facts_table(data.records, "env", data.backends))
        + "<h3>Fast-path flags</h3>"
        + html_table(*facts_table(data.records, "flags", data.backends))
        + "<h3>Training recipe</h3>"
        + html_table(*facts_table(data.records, "config", data.backends)))))
    banner = "".join(f"<p><strong>{esc(warning)}</strong></p>"
                     for warning in (injection_warning(data), load_warning(data)) if warning)
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


def _study_html(study: StudyView) -> str:
    """The study section: the choices beside the defaults, whether the backends agreed,
    the chart, then the figure at each value of each axis."""
    esc = html.escape
    agreement = "".join(f"<li>{esc(line)}</li>" for line in study.agreement)
    parts = [f'<p class="note">{esc(study.note)}</p>',
             "<h3>Chosen configuration beside the defaults</h3>", html_table(*study.choices),
             f"<ul>{agreement}</ul>" if agreement else ""]
    if study.figure is not None:
        parts.append(_figure(*study.figure))
    for axis, headers, rows in study.axes:
        parts += [f"<h3>{esc(axis)}</h3>", html_table(headers, rows)]
    if study.trials is not None:
        parts += ["<h3>Trials</h3>", html_table(*study.trials, lambda r: r[1] == "failed")]
    return "".join(parts)


def _published_html(view: PublishedView) -> str:
    """A study's figures beside the measured ones (rows measured outside the published
    value's reach highlighted), then the study's caveats."""
    esc = html.escape
    caveats = "".join(f"<li>{esc(caveat)}</li>" for caveat in view.caveats)
    table = html_table(view.headers, view.rows,
                       lambda row: row[7].startswith(("measured below", "measured above")))
    return (f'<p class="note">{esc(view.note)}</p>' + (table if view.rows else "")
            + (f"<h3>Caveats</h3><ul>{caveats}</ul>" if caveats else ""))


def _not_all_ok(row: Sequence[Any]) -> bool:
    ok, total = str(row[2]).split("/")
    return ok != total


def _deployment_html(data: ReportData) -> str:
    esc = html.escape
    section = deployment(data)
    note = f'<p class="note">{esc(section.note)}</p>' if section.note else ""
    if not section.parity[1]:
        return note
    latency = html_table(*section.latency) if section.latency[1] else note
    facts = "".join(f'<p class="note">{esc(line)}</p>' for line in section.facts)
    return (f"{latency}<h3>Parity with the native framework</h3>"
            f"{html_table(*section.parity, lambda row: row[4] != 'yes')}{facts}")
