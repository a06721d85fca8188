"""Choosing a grid's configuration on validation only, then reporting its test figures.

Per (dataset, model, backend), every point's validation figure (the kept epoch's,
`selection.best_<select_by>` in the record) is averaged over its folds and seeds, and the
point with the best mean is chosen; ties go to the point written first in the spec. The
choice is made from a projection of each record that holds no test figure
(`validation_view`); only then are the chosen point's test figures read (`chosen_test_summary`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.analysis.stats import Summary, summarize
from benchmarks.record import schema

# The worker's `selection` section (benchmarks/runner/worker.py `selection_summary`).
SELECTION_SECTION = "selection"

Key = tuple[str, str, str]  # (dataset, model, backend)


def point_key(point: Mapping[str, Any]) -> str:
    """A point as a hashable, order-independent text (canonical JSON)."""
    return json.dumps(dict(point), sort_keys=True)


def describe_point(point: Mapping[str, Any]) -> str:
    """"learning_rate=0.001, augment='light'": a point, as the tables and messages show it."""
    return ", ".join(f"{axis}={format_value(value)}" for axis, value in point.items()) \
        or "(no axes)"


def format_value(value: Any) -> str:
    """An axis value as the tables show it: its repr, a float to 6 significant digits (a
    search's draws, 0.0012520653814999472, read 0.00125207; a spec's 3e-4 stays 0.0003)."""
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


@dataclass(frozen=True)
class PointScore:
    """One point's validation figure over its folds and seeds.

    Attributes:
        point: axis → value.
        validation: the figure's Summary over the point's ok runs (n, mean, interval).
    """

    point: dict[str, Any]
    validation: Summary


def validation_view(record: Mapping[str, Any], select_by: str) -> dict[str, Any] | None:
    """What selection may see of a record: its place and its validation figure.

    Args:
        record: a grid run's record.
        select_by: "val_accuracy" or "val_loss" (`spec.SELECT_BY`).

    Returns:
        {"key": (dataset, model, backend), "point": {...}, "value": float or None};
        None for a run that did not succeed, or a record the grid driver did not keep.
    """
    if not schema.succeeded(record) or schema.GRID_POINT not in record:
        return None
    selection = record.get(SELECTION_SECTION) or {}
    return {"key": (record[schema.DATASET], record[schema.MODEL], record[schema.BACKEND]),
            "point": dict(record[schema.GRID_POINT]),
            "value": selection.get(f"best_{select_by}")}


def score_points(records: Sequence[Mapping[str, Any]], select_by: str,
                 points: Sequence[Mapping[str, Any]]) -> dict[Key, list[PointScore]]:
    """Every point's validation Summary, per (dataset, model, backend).

    Args:
        records: the grid's records, one per run (the latest of each run id).
        select_by: the validation figure.
        points: the spec's points, in its order: the scores' order, and the tie-break.

    Returns:
        (dataset, model, backend) → one PointScore per point with an ok run, in `points`'
        order.
    """
    values: dict[Key, dict[str, list[float | None]]] = {}
    for view in filter(None, (validation_view(r, select_by) for r in records)):
        values.setdefault(view["key"], {}).setdefault(point_key(view["point"]), []).append(
            view["value"])
    order = {point_key(p): dict(p) for p in points}
    return {key: [PointScore(point, summarize(by_point[k]))
                  for k, point in order.items() if k in by_point]
            for key, by_point in sorted(values.items())}


def choose(scores: Mapping[Key, list[PointScore]], larger_is_better: bool) -> dict[Key, PointScore]:
    """The chosen point of each (dataset, model, backend): the best mean validation figure.

    Points without a measured figure are never chosen; among equal means the first in the
    spec's order wins (max and min keep the first of equals).
    """
    chosen = {}
    for key, candidates in scores.items():
        measured = [c for c in candidates if c.validation.mean is not None]
        if not measured:
            continue
        best = max if larger_is_better else min
        chosen[key] = best(measured, key=lambda c: c.validation.mean)
    return chosen


def chosen_test_summary(records: Sequence[Mapping[str, Any]], key: Key,
                 point: Mapping[str, Any], figure: str = "accuracy") -> Summary:
    """The chosen point's test `figure` (of the record's metrics) over its folds and seeds."""
    wanted = point_key(point)
    return summarize(record[schema.METRICS].get(figure) for record in records
                     if schema.succeeded(record) and schema.GRID_POINT in record
                     and (record[schema.DATASET], record[schema.MODEL],
                          record[schema.BACKEND]) == key
                     and point_key(record[schema.GRID_POINT]) == wanted)


def same_choice(chosen: Mapping[Key, PointScore]) -> dict[tuple[str, str], bool]:
    """(dataset, model) → whether every backend chose the same point (with ≥ 2 backends)."""
    by_model: dict[tuple[str, str], set[str]] = {}
    for (dataset, model, _), score in chosen.items():
        by_model.setdefault((dataset, model), set()).add(point_key(score.point))
    counts = {}
    for dataset, model, _ in chosen:
        counts[(dataset, model)] = counts.get((dataset, model), 0) + 1
    return {pair: len(points) == 1 for pair, points in by_model.items() if counts[pair] > 1}


def chosen_runs(records: Sequence[Mapping[str, Any]],
                choices: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ok records of each (dataset, model, backend)'s chosen point, in file order.

    Args:
        records: a grid folder's records.
        choices: grid.json's "choices" (each with dataset, model, backend and point).
    """
    wanted = {(c["dataset"], c["model"], c["backend"]): point_key(c["point"]) for c in choices}
    return [r for r in records if schema.succeeded(r) and schema.GRID_POINT in r
            and wanted.get((r[schema.DATASET], r[schema.MODEL], r[schema.BACKEND]))
            == point_key(r[schema.GRID_POINT])]
