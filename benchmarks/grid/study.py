"""The grid's study: the validation figure against each hyper-parameter, per model and backend.

For each axis value, the figure is averaged over every ok run at that value (the other
axes, the folds and the seeds), with a 95% t-interval; `study.md` tables it beside the
chosen configuration, and `study.png` draws it, one panel per (model, axis) and one line
per backend. Like the choice, it reads no test figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.analysis.stats import Summary, summarize
from benchmarks.grid.selection import validation_view
from benchmarks.report.plots import backend_color, ordered_backends

STUDY_MD, STUDY_PNG = "study.md", "study.png"
PANEL_IN = (4.0, 3.0)  # inches per panel


def marginals(records: Sequence[Mapping[str, Any]], select_by: str,
              axes: Mapping[str, Sequence[Any]]) -> dict[tuple[str, str, str], dict[str, list]]:
    """(dataset, model, backend) → axis → [(value, Summary)], in the axis' order."""
    values: dict[tuple, dict[str, dict[Any, list]]] = {}
    for view in filter(None, (validation_view(r, select_by) for r in records)):
        for axis in axes:
            values.setdefault(view["key"], {}).setdefault(axis, {}).setdefault(
                view["point"][axis], []).append(view["value"])
    return {key: {axis: [(value, summarize(by_value[value])) for value in axes[axis]
                         if value in by_value]
                  for axis, by_value in by_axis.items()}
            for key, by_axis in sorted(values.items())}


def _cell(summary: Summary) -> str:
    if summary.half_width is None:
        return f"{summary.mean:.4f} (n {summary.n})"
    return f"{summary.mean:.4f} ± {summary.half_width:.4f} (n {summary.n})"


def study_markdown(study: Mapping, summary: Mapping[str, Any]) -> str:
    """study.md: per (model, backend), the figure at each value of each axis, the chosen
    configuration and the defaults, then whether the backends chose alike."""
    select_by = summary["select_by"]
    chosen = {(c["dataset"], c["model"], c["backend"]): c for c in summary["choices"]}
    lines = [f"# Grid study: {select_by} (mean ± 95% CI over the other axes, folds and "
             "seeds)", ""]
    for key, by_axis in study.items():
        dataset, model, backend = key
        lines += [f"## {model} · {backend} · {dataset}", ""]
        choice = chosen.get(key)
        if choice:
            lines += [f"chosen: `{choice['point']}`; defaults: `{choice['defaults']}`", ""]
        for axis, rows in by_axis.items():
            lines += [f"| {axis} | {select_by} |", "|---|---|"]
            lines += [f"| {value!r} | {_cell(s)} |" for value, s in rows]
            lines.append("")
    for entry in summary["same_choice_across_backends"]:
        verdict = "the same" if entry["same"] else "different"
        lines.append(f"- {entry['model']} on {entry['dataset']}: the backends chose {verdict} "
                     "configuration")
    return "\n".join(lines) + "\n"


def study_figure(study: Mapping, select_by: str) -> Figure:
    """One panel per (dataset, model, axis): the figure against the axis' values, a line
    with interval bars per backend."""
    panels: dict[tuple, dict[str, list]] = {}
    for (dataset, model, backend), by_axis in study.items():
        for axis, rows in by_axis.items():
            panels.setdefault((dataset, model, axis), {})[backend] = rows
    figure = Figure(figsize=(PANEL_IN[0] * len(panels), PANEL_IN[1]))
    FigureCanvasAgg(figure)
    for index, ((dataset, model, axis), by_backend) in enumerate(panels.items()):
        ax = figure.add_subplot(1, len(panels), index + 1)
        backends = ordered_backends(by_backend)
        labels = [repr(value) for value, _ in next(iter(by_backend.values()))]
        for number, backend in enumerate(backends):
            rows = by_backend[backend]
            # Offset the backends a little so their bars do not hide each other.
            xs = [labels.index(repr(value)) + 0.05 * (number - (len(backends) - 1) / 2)
                  for value, _ in rows]
            means = [s.mean for _, s in rows]
            errors = [s.half_width or 0.0 for _, s in rows]
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=backend,
                        color=backend_color(backend, backends))
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(axis)
        ax.set_ylabel(select_by)
        ax.set_title(f"{model} · {dataset}", fontsize=9)
        ax.legend(fontsize=8)
    return figure


def write_study(folder: Path, records: Sequence[Mapping[str, Any]],
                summary: Mapping[str, Any]) -> None:
    """Writes study.md and study.png into the grid folder."""
    axes = summary["axes"]
    study = marginals(records, summary["select_by"], axes)
    (folder / STUDY_MD).write_text(study_markdown(study, summary), encoding="utf-8")
    if study and axes:
        study_figure(study, summary["select_by"]).savefig(folder / STUDY_PNG, dpi=100,
                                                          bbox_inches="tight")
