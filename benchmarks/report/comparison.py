"""A comparison of two result sets (`benchmarks.analysis.comparison`) as a text or
Markdown report: what `python -m benchmarks.compare` prints and the CI check writes."""

from __future__ import annotations

from benchmarks.analysis.comparison import Comparison
from benchmarks.analysis.load import LOADED_MARK
from benchmarks.report.tables import markdown_escape, markdown_table, terminal_escape, text_table

_DELTA_HEADERS = ["dataset", "model", "backend", "runs A/B", "figure", "A", "B", "change",
                  "verdict"]


def _delta_rows(comparison: Comparison) -> list[list[str]]:
    return [[d.dataset, d.model, d.backend, f"{d.runs_a}/{d.runs_b}", d.measure.title,
             d.measure.format(d.a), d.measure.format(d.b), d.change, d.verdict]
            for d in comparison.deltas]


def _run_rows(comparison: Comparison) -> list[list[str]]:
    return [[c.run_id, c.a_status or "—", c.b_status or "—", c.verdict, c.error or ""]
            for c in comparison.run_changes]


def render(comparison: Comparison, name_a: str, name_b: str, markdown: bool = False) -> str:
    """The comparison as a text or Markdown report.

    Every text from the records (run ids, errors, names) and the two names passes its
    format's escaper (`terminal_escape`, `markdown_escape`), in the tables and out of them.
    """
    table = markdown_table if markdown else text_table
    escape = markdown_escape if markdown else terminal_escape

    def heading(title: str) -> str:
        shown = escape(title)
        return f"## {shown}" if markdown else f"{shown}\n{'=' * len(shown)}"

    parts = [heading(f"Comparison: A = {name_a}, B = {name_b}"),
             table(_DELTA_HEADERS, _delta_rows(comparison))]
    if comparison.run_changes:
        parts += [heading("Runs whose status changed"),
                  table(["run", "A", "B", "verdict", "error"], _run_rows(comparison))]
    if comparison.context:
        parts += [heading("What else differs"),
                  table(["scope", "field", "A", "B"], [list(c) for c in comparison.context])]
    if comparison.loaded:
        parts += [heading(f"Timings taken under load: {LOADED_MARK} time figures not judged"),
                  table(["side", "run", "why"],
                        [[side, run.run_id, run.reason] for side, run in comparison.loaded])]
    if comparison.injected:
        parts += [heading("Test fault injection: these runs are not real measurements"),
                  table(["side", "run", "injected"], [list(i) for i in comparison.injected])]
    regressions = comparison.regressions
    summary = (f"{len(regressions)} regression{'s' if len(regressions) != 1 else ''}"
               + (":\n" + "\n".join(f"- {escape(line)}" for line in regressions)
                  if regressions else "."))
    return "\n\n".join(parts + [summary]) + "\n"
