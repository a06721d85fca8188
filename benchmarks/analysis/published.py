"""Published against measured: a study's figures beside what its runs measured.

`python -m benchmarks.reproduce` keeps the study in each of its report folders as
PUBLISHED_FILE (`StudySpec.as_json`: the figures, their splits and sources, the caveats).
The folder's report then shows, for every published figure and every framework it is of,
the measured mean with its 95% t-interval over the replicates (seeds, or folds for one
seed) and a verdict: the published value lies within the interval, or the measurement
lies below or above it. A figure published on another split than the one measured is
shown but not judged. The leaderboard (`benchmarks.leaderboard`) reads the same file.

A report folder is untrusted input: the file is read only when it is a regular file of
at most MAX_PUBLISHED_BYTES, and every field is checked before it is shown.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.analysis.published_metrics import FRAMEWORKS, PUBLISHED_METRICS, UNSTATED
from benchmarks.analysis.stats import Summary, seed_replicates, summarize
from benchmarks.backend_choice import registry_order
from benchmarks.messages import shortened
from benchmarks.record import schema
from benchmarks.record.figures import figures_of

PUBLISHED_FILE = "reproduce.json"  # a reproduce run's study, beside results.jsonl
MAX_PUBLISHED_BYTES = 1 << 20  # a shipped study's file takes about 10 kB
# The verdicts, as the report and the leaderboard write them.
WITHIN, BELOW, ABOVE = "within", "below", "above"
ONE_REPLICATE = "no interval (1 replicate)"
NOT_MEASURED = "not measured"
OTHER_SPLIT = "other split"


class PublishedFileError(ValueError):
    """A PUBLISHED_FILE that cannot be shown; the message names it and why."""


@dataclass(frozen=True)
class Comparison:
    """One published figure beside one framework's measurement of it.

    Attributes:
        figure: the published figure (`PublishedFigure.as_json`'s fields).
        backend: the framework measured; None when no run of the model was.
        measured: the measurement's Summary over the replicates.
        verdict: WITHIN, BELOW or ABOVE; ONE_REPLICATE, NOT_MEASURED or OTHER_SPLIT.
        split_unstated: the study did not say what it tested on.
    """

    figure: dict[str, Any]
    backend: str | None
    measured: Summary
    verdict: str
    split_unstated: bool


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise PublishedFileError(f"{where}: {name} must be text. Received: {name}="
                                 f"{shortened(repr(value))}")
    return value


def _check_figure(figure: Any, where: str) -> dict[str, Any]:
    """A published figure from the file, each field of the type the readers rely on."""
    if not isinstance(figure, dict):
        raise PublishedFileError(f"{where}: a published figure is no object")
    for name in ("model", "as_named", "split", "source"):
        _text(figure.get(name), name, where)
    if figure.get("metric") not in PUBLISHED_METRICS:
        raise PublishedFileError(f"{where}: metric {shortened(repr(figure.get('metric')))} "
                                 f"is none of {', '.join(PUBLISHED_METRICS)}")
    if figure.get("framework", "any") not in FRAMEWORKS:
        raise PublishedFileError(f"{where}: framework must be one of {', '.join(FRAMEWORKS)}")
    value = figure.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise PublishedFileError(f"{where}: value must be a number")
    if figure["metric"] == "class_accuracy":
        _text(figure.get("class_name"), "class_name", where)
    return figure


def read_published(folder: Path) -> dict[str, Any] | None:
    """The study a report folder keeps (PUBLISHED_FILE); None where it keeps none.

    Raises:
        PublishedFileError: the file is a link or no regular file, too large, not JSON, or
            of another shape (one line naming it).
    """
    path = Path(folder) / PUBLISHED_FILE
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PublishedFileError(f"{path}: unreadable ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise PublishedFileError(f"{path} is not a plain file (a link, a folder, a FIFO): "
                                 "left out")
    if info.st_size > MAX_PUBLISHED_BYTES:
        raise PublishedFileError(f"{path} is larger than {MAX_PUBLISHED_BYTES:,} bytes: left "
                                 "out")
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise PublishedFileError(f"{path}: unreadable ({shortened(str(error), 120)})") from None
    if not isinstance(study, dict):
        raise PublishedFileError(f"{path}: not a JSON object")
    for name in ("study", "title", "split"):
        _text(study.get(name), name, str(path))
    caveats, figures = study.get("caveats"), study.get("published")
    if not isinstance(caveats, list) or not isinstance(figures, list):
        raise PublishedFileError(f"{path}: caveats and published must be lists")
    for caveat in caveats:
        _text(caveat, "a caveat", str(path))
    study["published"] = [_check_figure(f, f"{path}, figure {n}")
                          for n, f in enumerate(figures, 1)]
    return study


def _value_of(figure: dict[str, Any]):
    """record → the figure's value in it (None where the record lacks it)."""
    metric = PUBLISHED_METRICS[figure["metric"]]
    if metric.key is not None:
        return lambda record: figures_of(record).get(metric.key)

    def class_recall(record: dict[str, Any]) -> float | None:
        scores = ((record.get(schema.METRICS) or {}).get(schema.PER_CLASS) or {})
        recall = (scores.get(figure["class_name"]) or {}).get("recall")
        return recall if isinstance(recall, (int, float)) else None
    return class_recall


def _verdict(figure: dict[str, Any], measured: Summary, measured_split: str) -> str:
    if figure["split"] not in (measured_split, UNSTATED):
        return OTHER_SPLIT
    if measured.mean is None:
        return NOT_MEASURED
    if measured.ci_low is None or measured.ci_high is None:
        return ONE_REPLICATE
    value = figure["value"]
    if value < measured.ci_low:
        return ABOVE  # the measurement lies above the published value
    if value > measured.ci_high:
        return BELOW
    return WITHIN


def compare(study: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[Comparison]:
    """Every published figure of `study` beside each framework's measurement of it.

    Args:
        study: a PUBLISHED_FILE's content (`read_published`).
        records: the folder's records; ok runs that are no twins are measured.

    Returns:
        One Comparison per (figure, framework it is of that ran the model), or one with
        backend None where no run of the model succeeded; in the study's order.
    """
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if schema.succeeded(record) and not schema.is_twin(record):
            runs.setdefault((record[schema.MODEL], record[schema.BACKEND]), []).append(record)
    backends = registry_order(backend for _, backend in runs)
    comparisons = []
    for figure in study["published"]:
        wanted = figure.get("framework", "any")
        measured_by = [b for b in backends if (figure["model"], b) in runs
                       and wanted in ("any", b)]
        unstated = figure["split"] == UNSTATED
        if not measured_by:
            comparisons.append(Comparison(figure, None, Summary(n=0),
                                          _verdict(figure, Summary(n=0), study["split"]),
                                          unstated))
        for backend in measured_by:
            summary = summarize(seed_replicates(runs[figure["model"], backend],
                                                _value_of(figure)))
            comparisons.append(Comparison(figure, backend, summary,
                                          _verdict(figure, summary, study["split"]),
                                          unstated))
    return comparisons


def format_value(figure: dict[str, Any], value: float | None) -> str:
    """`value` in the figure's unit: a percentage for fractions, else with its unit."""
    if value is None:
        return "—"
    metric = PUBLISHED_METRICS[figure["metric"]]
    return f"{100 * value:.1f} %" if metric.fraction else f"{value:,.1f} {metric.unit}"


def figure_name(figure: dict[str, Any]) -> str:
    """The figure's metric in words ("accuracy of class fear")."""
    label = PUBLISHED_METRICS[figure["metric"]].label
    return f"{label} {figure['class_name']}" if figure["metric"] == "class_accuracy" else label


def measured_text(comparison: Comparison) -> str:
    """The measured mean with its 95% interval ("68.1 % [66.0 %, 70.2 %]"), or the mean
    alone."""
    summary, figure = comparison.measured, comparison.figure
    if summary.mean is None:
        return "—"
    mean = format_value(figure, summary.mean)
    if summary.ci_low is None:
        return mean
    low, high = (format_value(figure, end) for end in (summary.ci_low, summary.ci_high))
    return f"{mean} [{low}, {high}]"


def verdict_text(comparison: Comparison, measured_split: str) -> str:
    """The verdict in words, with what qualifies it."""
    verdict = comparison.verdict
    if verdict == OTHER_SPLIT:
        return (f"not judged: published on {comparison.figure['split']}, measured on "
                f"{measured_split}")
    if verdict in (WITHIN, BELOW, ABOVE):
        verdict = {WITHIN: "within the interval", BELOW: "measured below",
                   ABOVE: "measured above"}[verdict]
    return f"{verdict}; split unstated" if comparison.split_unstated else verdict


def comparison_rows(study: dict[str, Any],
                    records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The "Published vs measured" table: one row per figure and framework."""
    headers = ["model (as the study names it)", "figure", "published", "published on",
               "backend", "measured (95% interval)", "replicates", "verdict", "source"]
    rows = []
    for comparison in compare(study, records):
        figure = comparison.figure
        name = f"{figure['model']} ({figure['as_named']})"
        if figure.get("anchor"):
            name += ", field anchor"
        rows.append([name, figure_name(figure), format_value(figure, figure["value"]),
                     figure["split"], comparison.backend or "—", measured_text(comparison),
                     str(comparison.measured.n), verdict_text(comparison, study["split"]),
                     figure["source"]])
    return headers, rows


@dataclass(frozen=True)
class PublishedView:
    """The report's "Published vs measured" section.

    Attributes:
        note: what the section compares, in one paragraph.
        headers: the table's columns.
        rows: its rows (`comparison_rows`).
        caveats: the study's caveats.
    """

    note: str
    headers: list[str]
    rows: list[list[str]]
    caveats: list[str]


def published_view(folder: Path, records: Sequence[dict[str, Any]]) -> PublishedView | None:
    """The section of a report folder that keeps a study; None for any other folder.

    A file that cannot be shown becomes a section holding only the reason.
    """
    try:
        study = read_published(folder)
    except PublishedFileError as error:
        return PublishedView(note=str(error), headers=[], rows=[], caveats=[])
    if study is None:
        return None
    scale = study.get("scale")
    smoke = (" At --scale smoke the runs are a machinery check on generated faces: their "
             "figures say nothing about the study." if scale == "smoke" else "")
    measured_on = (f"The study's protocol: {study['split']}, run here with fewer folds, "
                   "seeds, epochs and images" if scale == "smoke"
                   else f"Measured on {study['split']}")
    note = (f"Study {study['study']}: {study['title']}. {measured_on}; each "
            "published figure beside the mean of the runs with its 95% t-interval over the "
            "replicates (seeds, or the folds of one seed). Verdict: the published value "
            "lies within the interval, or the measurement lies below or above it; a figure "
            f"published on another split is shown, not judged.{smoke}")
    headers, rows = comparison_rows(study, records)
    return PublishedView(note=note, headers=headers, rows=rows,
                         caveats=list(study["caveats"]))
