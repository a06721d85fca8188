"""The report as Markdown (report.md)."""

from __future__ import annotations

from benchmarks.analysis.published import published_view
from benchmarks.record.layout import REPORT_HTML
from benchmarks.report.data import (
    ReportData,
    data_rows,
    facts_table,
    figure_rows,
    grid_study,
    headline_rows,
    injection_warning,
    load_warning,
    loaded_note,
    per_class_accuracy_rows,
    pretrained_rows,
    problem_rows,
    run_rows,
    setting_rows,
    skipped_file_rows,
    test_lines,
    tests_note,
)
from benchmarks.report.deployment import deployment
from benchmarks.report.tables import markdown_escape, markdown_table


def render_markdown(data: ReportData) -> str:
    """The report as Markdown: every table and test; the figures are in report.html."""
    datasets = ", ".join(dict.fromkeys(r["dataset"] for r in data.records))
    warnings = [w for w in (injection_warning(data), load_warning(data)) if w]
    # The footnote of the † on timing cells, under every table that can hold one.
    footnote = loaded_note(data)
    note = [markdown_escape(footnote)] if footnote else []
    parts = [
        f"# FER-Bench report: {markdown_escape(datasets)}",
        *(f"**{markdown_escape(warning)}**" for warning in warnings),
        f"{len(data.records)} runs ({len(data.problems)} not ok) from "
        f"`{markdown_escape(data.source.name)}`. Figures: `{REPORT_HTML}`. Cells are the mean over "
        "seeds ± half-width of its 95% t-interval.",
        "## Headline", markdown_table(*headline_rows(data)), *note,
        *_published_markdown(data),
        *_study_markdown(data),
        "## Do the frameworks differ? (test accuracy, paired by seed)",
        markdown_escape(tests_note(data)),
        "\n".join(f"- **{markdown_escape(label)}**: "
                  + "\n  ".join(markdown_escape(line) for line in verdict.lines)
                  for label, verdict in test_lines(data)) or "No pair of backends to test.",
    ]
    headers, rows = per_class_accuracy_rows(data)
    if rows:
        parts += ["## Accuracy per class", markdown_table(headers, rows),
                  f"Grad-CAM, feature maps and the most confident mistakes: `{REPORT_HTML}`."]
    for label in data.groups:
        headers, rows = figure_rows(data, label)
        if rows:
            parts += [f"## All figures: {markdown_escape(label)}", markdown_table(headers, rows),
                      *note]
    headers, rows = setting_rows(data)
    if rows:
        parts += ["## Settings and counts (not plotted)", markdown_table(headers, rows)]
    parts += ["## Deployment (ONNX)", *_deployment_parts(data)]
    parts += ["## Runs", markdown_table(*run_rows(data)), *note]
    headers, rows = pretrained_rows(data)
    if rows:
        parts += ["## Starting weights (--pretrained)", markdown_table(headers, rows)]
    if data.problems:
        parts += ["## Failed or skipped runs", markdown_table(*problem_rows(data))]
    parts += ["## Data", markdown_table(*data_rows(data))]
    headers, rows = skipped_file_rows(data)
    if rows:
        parts += ["## Skipped input files", markdown_table(headers, rows)]
    parts += ["## Environment", markdown_table(*facts_table(data.records, "env",
                                                              data.backends))]
    return "\n\n".join(parts) + "\n"


def _published_markdown(data: ReportData) -> list[str]:
    """A reproduced study's figures beside the measured ones (none for other folders)."""
    view = published_view(data.source.parent, data.records)
    if view is None:
        return []
    parts = ["## Published vs measured", markdown_escape(view.note)]
    if view.rows:
        parts.append(markdown_table(view.headers, view.rows))
    if view.caveats:
        parts += ["### Caveats", "\n".join(f"- {markdown_escape(c)}" for c in view.caveats)]
    return parts


def _study_markdown(data: ReportData) -> list[str]:
    """A grid's study section (none for a plain run's report); its chart is in report.html."""
    study = grid_study(data, draw=False)
    if study is None:
        return []
    parts = ["## Hyper-parameter study", markdown_escape(study.note),
             "### Chosen configuration beside the defaults", markdown_table(*study.choices)]
    if study.agreement:
        parts.append("\n".join(f"- {markdown_escape(line)}" for line in study.agreement))
    parts.append(f"The chart of the figure against each hyper-parameter: `{REPORT_HTML}`.")
    for axis, headers, rows in study.axes:
        parts += [f"### {markdown_escape(axis)}", markdown_table(headers, rows)]
    if study.trials is not None:
        parts += ["### Trials", markdown_table(*study.trials)]
    return parts


def _deployment_parts(data: ReportData) -> list[str]:
    section = deployment(data)
    if section.note and not section.parity[1]:
        return [markdown_escape(section.note)]
    parts = [markdown_table(*section.latency)] if section.latency[1] else \
        [markdown_escape(section.note)]
    return [*parts, markdown_table(*section.parity), *map(markdown_escape, section.facts)]
