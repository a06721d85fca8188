"""The grid's study: the validation figure against each hyper-parameter, per model and backend.

For each axis value, the figure is averaged over every ok run at that value (the other
axes, the folds and the seeds). Its 95% t-interval is over the replicates (each seed and
fold, the other axes averaged within it), so it says how much the figure moves between
repeats of the same configuration, not how much the other axes move it; with one seed and
one fold there is none. The driver computes it here, once,
and keeps it in grid.json (`study_entries`); the report of a grid folder reads it back from
there (`read_grid_summary`) and draws it beside the chosen configurations
(`benchmarks.report`). Like the choice, it reads no test figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.analysis.grid_selection import describe_point, format_value, validation_view
from benchmarks.analysis.stats import Summary, summarize
from benchmarks.messages import shortened
from benchmarks.record import schema
from benchmarks.record.layout import GRID_SUMMARY_FILE
from benchmarks.record.store import ResultsFileError

# How an axis' values are laid out along a chart's x axis.
CATEGORICAL, LINEAR, LOG = "categorical", "linear", "log"


def axis_scale(values: Sequence[Any] | Mapping[str, Any]) -> str:
    """CATEGORICAL for an axis of listed values; LINEAR or LOG for a search's range (a
    mapping with "low", "high" and "log", as grid.json writes it)."""
    if isinstance(values, Mapping):
        return LOG if values.get("log") else LINEAR
    return CATEGORICAL


def marginals(records: Sequence[Mapping[str, Any]], select_by: str,
              axes: Mapping[str, Sequence[Any] | Mapping[str, Any]]
              ) -> dict[tuple[str, str, str], dict[str, list]]:
    """(dataset, model, backend) → axis → [(value, Summary)].

    Args:
        records: the runs to average (each with its grid point).
        select_by: the validation figure.
        axes: axis → its listed values (the order of the rows), or a search's range
            (the rows then in the order of the values the runs took).
    """
    # key → axis → value → replicate (seed, fold) → the figures of its runs at that value
    values: dict[tuple, dict[str, dict[Any, dict[tuple, list]]]] = {}
    for record in records:
        view = validation_view(record, select_by)
        if view is None:
            continue
        replicate = (record.get(schema.SEED), record.get(schema.FOLD))
        for axis in axes:
            values.setdefault(view["key"], {}).setdefault(axis, {}).setdefault(
                view["point"][axis], {}).setdefault(replicate, []).append(view["value"])
    study = {}
    for key, by_axis in sorted(values.items()):
        study[key] = {}
        for axis, by_value in by_axis.items():
            listed = axes[axis]
            order = sorted(by_value) if isinstance(listed, Mapping) else listed
            study[key][axis] = [(value, summarize([sum(runs) / len(runs) for runs in
                                                   by_value[value].values()]))
                                for value in order if value in by_value]
    return study


def study_entries(records: Sequence[Mapping[str, Any]], select_by: str,
                  axes: Mapping[str, Sequence[Any] | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The study as grid.json keeps it: one entry per (dataset, model, backend, axis),
    with its scale and the figure's Summary at each value."""
    return [{"dataset": dataset, "model": model, "backend": backend, "axis": axis,
             "scale": axis_scale(axes[axis]),
             "values": [{"value": value, "validation": asdict(summary)}
                        for value, summary in rows]}
            for (dataset, model, backend), by_axis in marginals(records, select_by,
                                                                axes).items()
            for axis, rows in by_axis.items()]


def read_grid_summary(folder: Path) -> dict[str, Any] | None:
    """The folder's grid.json, or None when the folder is no grid's (a plain run's).

    Raises:
        ResultsFileError: grid.json is there but not JSON, or not of the shape this module
            writes (one line naming the fix).
    """
    path = Path(folder) / GRID_SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        # An edited grid.json of another shape fails here, in one line, rather than
        # anywhere in the report: every part the report reads is read once.
        for read in (choice_note, choice_rows, agreement_lines, axis_rows, trial_rows,
                     chart_panels):
            read(summary)
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError,
            IndexError) as error:  # ValueError: not UTF-8 or not JSON, or a bad value
        raise ResultsFileError(f"{path} is unreadable or not what benchmarks.grid writes "
                               f"({type(error).__name__}: {shortened(str(error), 200)}): "
                               "rebuild it with `python -m benchmarks.grid SPEC --resume "
                               "FOLDER --summary-only`") from None
    return summary


def choice_note(summary: Mapping[str, Any]) -> str:
    """How the configurations were chosen, among how many, from how many runs: the study
    section's opening note."""
    select_by, runs = summary["select_by"], summary["runs"]
    points = max((len(c["points"]) for c in summary["choices"]), default=0)
    note = (f"Chosen on validation only: each (model, backend) takes the configuration with "
            f"the {'lowest' if select_by == 'val_loss' else 'highest'} {select_by} averaged "
            f"over its folds and seeds, among the {points} configurations tried "
            f"({runs['ok']} of {runs['planned']} runs ok; spec {summary['spec']}). The rest of "
            "this report holds the chosen configurations' runs only; their test figures were "
            "read after the choice. Chosen configurations: mean ± half-width of the 95% "
            "t-interval over their runs. Per axis: the mean over every run at that value, "
            "± the 95% t-interval over the seeds and folds (n), the other axes averaged "
            "within each.")
    if "search" in summary:
        search = summary["search"]
        note += (f" A {search['sampler']} search of {search['trials']} trials"
                 + (", a trial pruned after its first run where that run's per-epoch "
                    "figure was worse than the median of the complete trials' first runs"
                    if search["pruning"] else "")
                 + ": the configurations tried are its complete trials.")
    return note


def interval_cell(validation: Mapping[str, Any], digits: int = 4) -> str:
    """"0.5100 ± 0.0254" (mean ± half-width of its 95% interval), the mean alone for one
    run, or "—"."""
    if validation.get("mean") is None:
        return "—"
    if validation.get("ci_low") is None:
        return f"{validation['mean']:.{digits}f}"
    half = (validation["ci_high"] - validation["ci_low"]) / 2
    return f"{validation['mean']:.{digits}f} ± {half:.{digits}f}"


def choice_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The chosen configuration of each (model, backend) beside the defaults it replaces,
    its validation figure over its folds and seeds, and (read only now) its test accuracy;
    led by the dataset when the grid has several."""
    several = _several_datasets(summary)
    headers = ["dataset"] * several + [
        "model", "backend", "chosen", "default", f"{summary['select_by']} (95% CI)", "n",
        "test accuracy"]
    rows = [[choice["dataset"]] * several + [
             choice["model"], choice["backend"], describe_point(choice["point"]),
             describe_point(choice["defaults"]), interval_cell(choice["validation"]),
             str(choice["validation"]["n"]), interval_cell(choice["test_accuracy"], 3)]
            for choice in summary["choices"]]
    return headers, rows


def _several_datasets(summary: Mapping[str, Any]) -> bool:
    return len({choice["dataset"] for choice in summary["choices"]}) > 1


def agreement_lines(summary: Mapping[str, Any]) -> list[str]:
    """Whether the backends chose the same configuration, one line per (dataset, model)."""
    return [f"{entry['model']} on {entry['dataset']}: the backends chose "
            f"{'the same configuration' if entry['same'] else 'DIFFERENT configurations'}"
            for entry in summary["same_choice_across_backends"]]


def axis_rows(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(axis, headers, rows) per axis: the figure at each of its values, one column per
    (model, backend): "mean ± half-width (n runs)"."""
    tables = []
    for axis in summary["axes"]:
        entries = [e for e in summary.get("study", []) if e["axis"] == axis]
        columns = [" · ".join([e["dataset"]] * _several_datasets(summary)
                              + [e["model"], e["backend"]]) for e in entries]
        cells: dict[str, dict[str, str]] = {}
        for column, entry in zip(columns, entries, strict=True):
            for row in entry["values"]:
                cells.setdefault(format_value(row["value"]), {})[column] = (
                    f"{interval_cell(row['validation'])} (n {row['validation']['n']})")
        rows = [[value] + [by_column.get(c, "—") for c in columns]
                for value, by_column in cells.items()]
        tables.append((axis, [axis] + columns, rows))
    return tables


def trial_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """A search's trials in order: state, value (the validation figure over all of the
    trial's runs), point, and the epoch of the first run where it was pruned; None for a
    grid."""
    if "trials" not in summary:
        return None
    headers = ["trial", "state", f"{summary['select_by']} (all runs)", "point", "pruned at epoch"]
    rows = [[str(trial["number"]), trial["state"],
             "—" if trial["value"] is None else f"{trial['value']:.4f}",
             describe_point(trial["point"]),
             "—" if trial["pruned_at_epoch"] is None else str(trial["pruned_at_epoch"])]
            for trial in summary["trials"]]
    return headers, rows


def chart_panels(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One panel per (dataset, model, axis) of the study, as the report draws it.

    Returns:
        [{"title", "axis", "scale", "lines": {backend: [(value, mean, half_width)]},
          "chosen": {backend: (value, mean)}}]: the chosen configuration's value on the
        axis and the figure there, per backend.
    """
    chosen = {(c["dataset"], c["model"], c["backend"]): c["point"] for c in summary["choices"]}
    panels: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in summary.get("study", []):
        key = (entry["dataset"], entry["model"], entry["axis"])
        panel = panels.setdefault(key, {"title": f"{entry['model']} · {entry['dataset']}",
                                        "axis": entry["axis"], "scale": entry["scale"],
                                        "lines": {}, "chosen": {}})
        rows = [(row["value"], row["validation"]["mean"], _half_width(row["validation"]))
                for row in entry["values"] if row["validation"]["mean"] is not None]
        panel["lines"][entry["backend"]] = rows
        point = chosen.get((entry["dataset"], entry["model"], entry["backend"]))
        marked = [(v, mean) for v, mean, _ in rows if point and point.get(entry["axis"]) == v]
        if marked:
            panel["chosen"][entry["backend"]] = marked[0]
    return list(panels.values())


def _half_width(validation: Mapping[str, Any]) -> float | None:
    return Summary(**validation).half_width
