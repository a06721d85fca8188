"""What a report shows, computed from the records once: tables' rows, tests, figures, CSV
frames. `markdown` and `html` render it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backends.weights import WeightsError, read_test_probabilities
from benchmarks.analysis import grid_study as study
from benchmarks.analysis.load import (
    LOADED_MARK,
    LOADED_NOTE,
    affected_by_load,
    loaded_runs,
    loaded_warning,
)
from benchmarks.analysis.stats import (
    DEFAULT_EQUIVALENCE_MARGIN,
    FrameworkVerdict,
    Summary,
    framework_verdict,
    replicate_values,
    summarize_figure,
)
from benchmarks.backend_choice import reference_backend, registry_order
from benchmarks.messages import shortened
from benchmarks.record import schema
from benchmarks.record.figures import (
    HEADLINE,
    figure_keys,
    measure_for,
    runs_frame,
)
from benchmarks.record.layout import EXPLAIN_DIR, EXPLAIN_SUMMARY_FILE
from benchmarks.report import artifacts, gallery, plots

# The per-run table's figures; the full set is in runs.csv and the "All figures" tables.
_RUN_TABLE_KEYS = (
    f"{schema.METRICS}.accuracy",
    f"{schema.METRICS}.macro_f1",
    f"{schema.METRICS}.auc_macro_ovr",
    f"{schema.TIMING}.train_wall_s",
    f"{schema.TIMING}.train_throughput_img_s",
    f"{schema.TIMING}.eval_wall_s",
    f"{schema.MEMORY}.peak_host_rss_mb",
)
_SECTION_TITLES = {schema.METRICS: "Classification metrics", schema.TIMING: "Time",
                   schema.MEMORY: "Memory"}


@dataclass
class ReportData:
    """Everything the renderers need, computed once from the records.

    Attributes:
        source: the results file.
        records: every record, in file order.
        groups: label → backend → ok records (see `benchmarks.plots`), twins left out;
            labels with only failed runs are present with empty lists.
        twins: label → backend → ok records of twin runs (`schema.TWIN_OF`), which give
            the chaos floor only.
        totals: label → backend → number of runs, ok or not, twins left out.
        tests: label → backend other than the reference → its framework verdict against
            the reference, in the registry's order.
        reference: the backend every verdict is against (`backend_choice.
            reference_backend`); None for records of no backend.
        margin: the equivalence margin the verdicts use (`equivalence_margin`).
        keys: every figure key some record carries, catalog figures first.
        loaded: the run ids whose timings are not comparable (`analysis.load`).
        gallery_notes: why an image figure is missing (a damaged file), filled as the
            figures are read.
        grid: the folder's grid.json (`benchmarks.grid`'s choices and study) when the
            folder is a grid's; None for a plain run's.
    """

    source: Path
    records: list[dict[str, Any]]
    groups: plots.Groups = field(default_factory=dict)
    twins: plots.Groups = field(default_factory=dict)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    tests: dict[str, dict[str, FrameworkVerdict]] = field(default_factory=dict)
    margin: float = DEFAULT_EQUIVALENCE_MARGIN
    reference: str | None = None
    keys: list[str] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    gallery_notes: list[str] = field(default_factory=list)
    grid: dict[str, Any] | None = None

    @property
    def backends(self) -> list[str]:
        """The backends of the records, in the registry's order (tf, torch, …)."""
        return registry_order(record["backend"] for record in self.records)

    def compared(self, label: str) -> list[str]:
        """The backends other than the reference that have ok runs of `label` beside the
        reference's, in the registry's order: the columns set against the reference."""
        by_backend = self.groups[label]
        if not by_backend.get(self.reference):
            return []
        return [b for b in self.backends if b != self.reference and by_backend.get(b)]

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The runs that did not succeed (failed, timed out, interrupted, …)."""
        return [r for r in self.records if not schema.succeeded(r)]

    def summary(self, label: str, backend: str, key: str) -> Summary:
        return summarize_figure(self.groups[label].get(backend, []), key)

    def under_load(self, label: str, backend: str) -> bool:
        """Whether the group holds a run whose timings are not comparable."""
        return any(run["run_id"] in self.loaded for run in self.groups[label].get(backend, []))

    def cell(self, label: str, backend: str, key: str) -> str:
        """The group's figure as `format_summary` shows it, marked when taken under load."""
        return _marked(key, format_summary(key, self.summary(label, backend, key)),
                       self.under_load(label, backend))


def analyse(records: list[dict[str, Any]], source: Path,
            grid: dict[str, Any] | None = None, reference: str | None = None) -> ReportData:
    """Groups the records by (label, backend) and tests every backend against the
    reference.

    Args:
        records: result records, as `read_records` returns them.
        source: the results file they came from (named in the report).
        grid: the folder's grid.json, for a grid's report (its study section).
        reference: `--reference-backend`; None: the grid spec's `reference_backend`
            (grid.json's) where the records hold that backend, else the default rule
            (`backend_choice.reference_backend`).

    Returns:
        The report's data.

    Raises:
        ValueError: `reference` is not among the records' backends.
    """
    data = ReportData(source=source, records=records, grid=grid,
                      margin=equivalence_margin(records))
    spec_reference = (grid or {}).get("reference_backend")
    if reference is None and spec_reference in data.backends:
        reference = spec_reference
    data.reference = reference_backend(data.backends, reference)
    several_datasets = len({r["dataset"] for r in records}) > 1
    for record in records:
        label = f"{record['dataset']} · {record['model']}" if several_datasets \
            else record["model"]
        data.groups.setdefault(label, {})
        data.totals.setdefault(label, {})
        backend = record["backend"]
        if schema.is_twin(record):
            # A twin repeats a run to measure chaos: no replicate of the frameworks.
            if schema.succeeded(record):
                data.twins.setdefault(label, {}).setdefault(backend, []).append(record)
            continue
        data.totals[label][backend] = data.totals[label].get(backend, 0) + 1
        runs = data.groups[label].setdefault(backend, [])
        if schema.succeeded(record):
            runs.append(record)
    for label, by_backend in data.groups.items():
        # The tests read each run's accuracy; an ok record without one (hand-made, or cut
        # down) is left out of them, as it is shown "—" in the tables.
        scored = {backend: [r for r in runs if _has_accuracy(r)]
                  for backend, runs in by_backend.items()}
        twins = {backend: twin_pairs(scored[backend], runs)
                 for backend, runs in data.twins.get(label, {}).items() if backend in scored}
        reference = data.reference
        others = [b for b in data.backends if b != reference and scored.get(b)] \
            if scored.get(reference) else []
        data.tests[label] = {other: framework_verdict(scored[other], scored[reference], other,
                                                      reference, margin=data.margin,
                                                      twins_a=twins.get(other, []),
                                                      twins_b=twins.get(reference, []))
                             for other in others}
    data.keys = figure_keys(runs_frame(records).columns)
    data.loaded = {run.run_id for run in loaded_runs(records)}
    return data


def twin_pairs(runs: list[dict[str, Any]],
               twins: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(run, its twin) for every twin whose run is among `runs` (`schema.TWIN_OF`)."""
    by_id = {run[schema.RUN_ID]: run for run in runs}
    return [(by_id[twin[schema.TWIN_OF]], twin) for twin in twins
            if twin[schema.TWIN_OF] in by_id and _has_accuracy(twin)]


def equivalence_margin(records: list[dict[str, Any]]) -> float:
    """The equivalence margin the records were run with (`schema.EQUIVALENCE_MARGIN`).

    Records without one (older ones) take DEFAULT_EQUIVALENCE_MARGIN; where records of
    one folder name several, the smallest, so that "equivalent" is never claimed on a
    looser margin than any of the runs set.
    """
    recorded = [r.get(schema.EQUIVALENCE_MARGIN) for r in records]
    return min((m for m in recorded if m is not None), default=DEFAULT_EQUIVALENCE_MARGIN)


def _has_accuracy(record: dict[str, Any]) -> bool:
    return (record.get(schema.METRICS) or {}).get("accuracy") is not None


# --- formatting -----------------------------------------------------------------------


def format_summary(key: str, summary: Summary) -> str:
    """"mean ± half-width" of the 95% interval, the mean alone for one replicate, or "—"."""
    measure = measure_for(key)
    if summary.mean is None:
        return "—"
    if summary.half_width is None:
        return measure.format(summary.mean)
    return f"{measure.format(summary.mean)} ± {measure.format(summary.half_width)}"


def _marked(key: str, text: str, under_load: bool) -> str:
    """`text` with LOADED_MARK when it shows a timing some run behind it took under load."""
    if under_load and text != "—" and affected_by_load(measure_for(key)):
        return f"{text} {LOADED_MARK}"
    return text


def _runs_cell(data: ReportData, label: str, backend: str) -> str:
    return f"{len(data.groups[label].get(backend, []))}/{data.totals[label].get(backend, 0)}"


def _pairs(data: ReportData) -> list[tuple[str, str]]:
    return [(label, backend) for label in data.groups for backend in data.backends
            if data.totals[label].get(backend)]


def headline_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The headline table: one row per (label, backend)."""
    headers = ["model", "backend", "ok runs"] + [measure_for(k).title for k in HEADLINE]
    rows = [[label, backend, _runs_cell(data, label, backend)]
            + [data.cell(label, backend, k) for k in HEADLINE]
            for label, backend in _pairs(data)]
    return headers, rows


def figure_rows(data: ReportData, label: str) -> tuple[list[str], list[list[str]]]:
    """Every figure of one label, the backends side by side, then the reference's figure
    over each other backend's ("torch / tf")."""
    backends = [b for b in data.backends if data.groups[label].get(b)]
    reference, compared = data.reference, data.compared(label)
    headers = ["figure"] + backends + [f"{reference} / {other}" for other in compared]
    rows = []
    for key in measured_keys(data):
        summaries = [data.summary(label, b, key) for b in backends]
        if all(s.mean is None for s in summaries):
            continue
        row = [measure_for(key).title] + [data.cell(label, b, key) for b in backends]
        theirs = data.summary(label, reference, key).mean if compared else None
        for other in compared:
            ours = data.summary(label, other, key).mean
            row.append(_marked(
                key, "—" if ours in (None, 0) or theirs is None else f"{theirs / ours:.2f}×",
                data.under_load(label, other) or data.under_load(label, reference)))
        rows.append(row)
    return headers, rows


def measured_keys(data: ReportData) -> list[str]:
    """The figure keys that are measurements (plotted), not settings or counts."""
    return [key for key in data.keys if measure_for(key).measured]


def setting_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The figures that are settings or counts (`Measure.measured` False), never plotted:
    one row per figure, one column per (label, backend), distinct values joined."""
    pairs = _pairs(data)
    headers = ["setting or count"] + [f"{label} · {backend}" for label, backend in pairs]
    rows = []
    for key in data.keys:
        measure = measure_for(key)
        if measure.measured:
            continue
        cells = [_distinct([measure.format(v) for v in replicate_values(
            data.groups[label].get(backend, []), key)]) for label, backend in pairs]
        if any(cell != "—" for cell in cells):
            rows.append([measure.title] + cells)
    return headers, rows


def per_class_accuracy_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Accuracy for each class (its recall: the share of its test images classified as
    it), from the confusion matrices summed over each (label, backend)'s runs."""
    pairs, columns, names = _pairs(data), [], []
    for label, backend in pairs:
        runs = [r for r in data.groups[label].get(backend, [])
                if (r.get(schema.METRICS) or {}).get(schema.CONFUSION_MATRIX)]
        matrices = [np.asarray(r[schema.METRICS][schema.CONFUSION_MATRIX]) for r in runs]
        matrices = [m for m in matrices if matrices and m.shape == matrices[0].shape]
        if not matrices:
            columns.append({})
            continue
        counts = sum(matrices)
        class_names = (runs[0].get(schema.DATA) or {}).get("class_names") or \
            [str(c) for c in range(len(counts))]
        names += [n for n in class_names if n not in names]
        totals = counts.sum(axis=1)
        columns.append({name: counts[c, c] / totals[c] for c, name in enumerate(class_names)
                        if totals[c]})
    headers = ["accuracy for class"] + [f"{label} · {backend}" for label, backend in pairs]
    rows = [[name] + [f"{column[name]:.1%}" if name in column else "—" for column in columns]
            for name in names]
    return headers, rows


def mistake_figures(data: ReportData, count: int = 12) -> list[tuple[str, str, bytes]]:
    """(anchor, caption, PNG) of each explained run's most confident test mistakes.

    Read from the run's saved test probabilities and its split's test images (the
    weights themselves are not read); a run whose files are missing or damaged is left
    out, and named in the caption of none: `benchmarks.explain` reports those.
    """
    folder = data.source.parent
    figures = []
    for record in artifacts.explained_runs(data.records):
        run_id = record[schema.RUN_ID]
        try:
            probabilities = read_test_probabilities(artifacts.weights_path(folder, record))
            images, labels = artifacts.test_images(folder, record)
        except (WeightsError, artifacts.UnsafeName) as error:
            data.gallery_notes.append(f"{run_id}: no error gallery: {error}")
            continue
        names = [str(n) for n in (record.get(schema.DATA) or {}).get("class_names") or []]
        # Probabilities of another shape, or labels beyond the class names, would be drawn
        # wrong or not at all: such a run (its files edited) gets no gallery.
        if probabilities is None or probabilities.shape != (len(labels), len(names)) or (
                len(labels) and not 0 <= labels.min() <= labels.max() < len(names)):
            continue
        png = gallery.mistakes_figure(images, labels, probabilities, names,
                                      f"{run_id}: the most confident mistakes", count)
        if png is not None:
            figures.append((f"mistakes-{run_id}", f"{run_id}: its {count} most confident "
                            "wrong predictions on the test set, with the true and the "
                            "predicted class and the probability it gave.", png))
    return figures


# explain.json's key of how far the frameworks' Grad-CAM maps lie apart.
_GRADCAM_GAP = "gradcam_max_relative_difference"


def explanation_figures(data: ReportData) -> list[tuple[str, str, bytes]]:
    """(anchor, caption, PNG) of the Grad-CAM and feature-map figures `benchmarks.explain`
    wrote into the folder, in its summary's order; none when it has not run.

    A figure the summary names outside explain/ (or by a link leading out of the folder),
    or that is no PNG, is left out with a note, as is an entry that is no object.
    """
    folder = data.source.parent
    try:
        summary_path = artifacts.artifact_path(folder, EXPLAIN_DIR,
                                               EXPLAIN_SUMMARY_FILE)
    except artifacts.UnsafeName as error:
        data.gallery_notes.append(f"no explanations: {error}")
        return []
    if not summary_path.is_file():
        return []
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        entries = list(summary["runs"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        # ValueError: not JSON or not UTF-8; RecursionError: nested too deep to parse.
        data.gallery_notes.append(f"{summary_path}: unreadable ({shortened(str(error), 200)}); "
                                  "rerun `python -m benchmarks.explain`")
        return []
    figures = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            data.gallery_notes.append(f"{summary_path}: run {number} is no object: left out")
            continue
        run_id = str(entry.get("run_id"))
        frameworks = entry.get("frameworks")
        frameworks = " and ".join(map(str, frameworks)) if isinstance(frameworks, list) \
            else str(frameworks)
        gap = (artifacts.described_difference(entry[_GRADCAM_GAP]) if _GRADCAM_GAP in entry
               else "not recorded")
        for kind, caption in (
                ("gradcam", f"{run_id}: Grad-CAM of each image's true class, computed in "
                            f"{frameworks} from the same saved weights (trained by "
                            f"{entry.get('trained_by')}); largest difference between the "
                            f"frameworks' maps: {gap}. Titles: ✓/✗ and the class the run "
                            "predicted."),
                ("features", f"{run_id}: the first channels of every stage's feature maps "
                             "for one test image.")):
            if entry.get(kind) is None:  # explain drew no such figure
                continue
            try:
                path = artifacts.artifact_path(folder, EXPLAIN_DIR, entry[kind])
                if path.is_file():
                    figures.append((f"{kind}-{run_id}", caption, artifacts.read_figure(path)))
            except (artifacts.UnsafeName, OSError) as error:
                data.gallery_notes.append(f"{summary_path}: {run_id}'s {kind} figure left "
                                          f"out: {error}")
    return figures


def run_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Every run, ok or not, with its main figures."""
    headers = ["run", "status", "seed", "fold", "order"] + [measure_for(k).title
                                                           for k in _RUN_TABLE_KEYS]
    frame = runs_frame(data.records)
    rows = []
    for _, run in frame.iterrows():
        # The run's place among its (fold, model, seed)'s runs, counted from 1.
        position = run[schema.RUN_POSITION]
        order = "—" if position is None or position != position else str(int(position) + 1)
        rows.append([str(run["run_id"]), str(run["status"]), _fact(run["seed"]),
                     _fact(run["fold"]), order]
                    + [_marked(k, measure_for(k).format(run.get(k)), run["run_id"] in data.loaded)
                       for k in _RUN_TABLE_KEYS])
    return headers, rows


def pretrained_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The runs that started from a checkpoint (`--pretrained`): which file, and which
    canonical layers it provided; no rows when none did."""
    headers = ["run", "checkpoint", "sha256", "from the checkpoint", "adapted",
               "re-initialised"]
    rows = []
    for record in data.records:
        found = record.get(schema.PRETRAINED)
        if not found:
            continue
        size_mb = (found.get("bytes") or 0) / 1e6
        row = [record["run_id"], f"{Path(str(found.get('path'))).name} ({found.get('format')} "
                                 f"{found.get('architecture')}, {size_mb:,.1f} MB)",
               str(found.get("sha256", "—"))[:12]]
        loaded = found.get("loaded_layers")
        if loaded is None:  # a run that failed before its worker fitted the checkpoint
            rows.append(row + ["—", "—", "—"])
            continue
        adapted = found.get("adapted_layers") or {}
        reinitialised = found.get("reinitialised_layers") or {}
        rows.append(row + [
            f"{len(loaded) + len(adapted)} layers",
            "; ".join(f"{layer}: {how}" for layer, how in adapted.items()) or "none",
            "; ".join(f"{layer} ({why})" for layer, why in reinitialised.items()) or "none"])
    return headers, rows


def problem_rows(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The runs that did not succeed, with their error."""
    headers = ["run", "status", "error"]
    return headers, [[r["run_id"], str(r.get(schema.STATUS)), str(r.get(schema.ERROR) or "—")]
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


def facts_table(records: list[dict[str, Any]], section: str,
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
    by_dataset = {d: [r.get(schema.DATA) or {} for r in data.records if r["dataset"] == d]
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
        skipped = (record.get(schema.DATA) or {}).get("skipped_files")
        if isinstance(skipped, list):
            for item in skipped:
                entry = item if isinstance(item, dict) else {"path": item}
                seen[(record["dataset"], str(entry.get("path", "—")),
                      str(entry.get("reason", "—")))] = None
    return ["dataset", "file", "reason"], [list(key) for key in seen]


def skipped_count(data: ReportData) -> int:
    counts: dict[str, int] = {}
    for record in data.records:
        skipped = (record.get(schema.DATA) or {}).get("skipped_files")
        count = len(skipped) if isinstance(skipped, list) else skipped
        if isinstance(count, int):
            counts[record["dataset"]] = count
    return sum(counts.values())


def chart_sections(data: ReportData) -> list[tuple[str, list[str]]]:
    """(title, figure keys) per chart: one per record section, in catalog order."""
    sections: dict[str, list[str]] = {}
    for key in measured_keys(data):
        sections.setdefault(key.split(".", 1)[0], []).append(key)
    return [(_SECTION_TITLES.get(s, s.replace("_", " ").capitalize()), keys)
            for s, keys in sections.items()]


def charts(data: ReportData) -> list[tuple[str, str, bytes]]:
    """(anchor, caption, PNG) of every figure that has something to draw."""
    drawn: list[tuple[str, str, bytes | None]] = [
        (f"chart-{title.lower().replace(' ', '-')}",
         f"{title}: mean over seeds (bars), 95% percentile-bootstrap interval of the mean "
         "(whiskers, inside the seeds' range), seeds (dots); times on a log scale.",
         plots.figure_bars(data.groups, keys, title))
        for title, keys in chart_sections(data)
    ]
    reference = data.reference
    others = [b for b in data.backends if b != reference]
    if reference is not None and others:
        named = "each other backend's" if len(others) > 1 else f"{others[0]}'s"
        drawn.append(("chart-ratio", f"Each measured figure's {', '.join(others)} ÷ "
                      f"{reference} ratio of means, per model (log scale; right of 1: "
                      f"{named} figure is larger).",
                      plots.ratio_chart(data.groups, measured_keys(data), others, reference)))
    drawn += [
        ("chart-confusion", "Confusion matrices summed over runs (shade: share of the true "
         "class).", plots.confusion_matrices(data.groups)),
        ("chart-per-class", "Per-class F1.", plots.per_class_f1(data.groups)),
        ("chart-curves", "Training curves: loss (train solid, validation dashed) and "
         "validation accuracy per epoch; band: min–max over runs.",
         plots.training_curves(data.groups)),
    ]
    return [(anchor, caption, png) for anchor, caption, png in drawn if png is not None]


@dataclass
class StudyView:
    """A grid's hyper-parameter study, as the report shows it (from grid.json).

    Attributes:
        note: how the configurations were chosen, and what else the report holds.
        choices: (headers, rows): each (model, backend)'s chosen configuration beside the
            defaults, its validation figure and its test accuracy.
        agreement: whether the backends chose the same configuration, per model.
        axes: (axis, headers, rows) per axis: the validation figure at each value.
        figure: (anchor, caption, PNG) of the study's chart; None with nothing to draw.
        trials: (headers, rows) of a search's trials; None for a grid.
    """

    note: str
    choices: tuple[list[str], list[list[str]]]
    agreement: list[str]
    axes: list[tuple[str, list[str], list[list[str]]]]
    figure: tuple[str, str, bytes] | None
    trials: tuple[list[str], list[list[str]]] | None = None


def grid_study(data: ReportData, draw: bool = True) -> StudyView | None:
    """The study section of a grid folder's report; None for a plain run's report, and
    for a grid without axes (a reproduced study's), which chose nothing.

    Args:
        data: the report's data; its `grid` is the folder's grid.json.
        draw: whether to draw the chart (the Markdown report has none).
    """
    grid = data.grid
    if grid is None or not grid.get("axes"):
        return None
    select_by = grid["select_by"]
    figure = None
    if draw:
        png = plots.study_chart(study.chart_panels(grid), select_by)
        if png is not None:
            figure = ("chart-study", f"{select_by} against each hyper-parameter, per model, "
                      "one line per backend: the mean over every run at each value (bars: "
                      "its 95% t-interval over the seeds and folds); a ring marks the chosen "
                      "configuration's value.",
                      png)
    return StudyView(note=study.choice_note(grid), choices=study.choice_rows(grid),
                     agreement=study.agreement_lines(grid), axes=study.axis_rows(grid),
                     figure=figure, trials=study.trial_rows(grid))


def test_lines(data: ReportData) -> list[tuple[str, FrameworkVerdict]]:
    """(heading, verdict) of every backend the report tests against the reference: the
    heading is the label, followed by the pair ("proposed_cnn: jax vs torch") where the
    report tests more than one pair."""
    several = len({other for tests in data.tests.values() for other in tests}) > 1
    return [(f"{label}: {other} vs {data.reference}" if several else label, verdict)
            for label, tests in data.tests.items() for other, verdict in tests.items()]


def tests_note(data: ReportData) -> str:
    """What the framework section tested, and on what, in one paragraph."""
    return (f"Test accuracy of each backend against the reference backend, {data.reference} "
            "(--reference-backend), on the same test images, runs paired by "
            "seed and fold, at α = 0.05; twins (runs repeated from initial weights one ulp "
            "away, --twins) are left out of the pairs and measure the chaos floor. One "
            "seed: McNemar's exact test says whether the two trained models differ, which "
            "no framework verdict can rest on. Several seeds: the mean per-seed accuracy "
            "difference with its 95% t-interval, a paired t-test against 0 and two "
            "one-sided t-tests (TOST) against the equivalence margin of "
            f"±{100 * data.margin:g} accuracy points (set by benchmarks.run "
            "--equivalence-margin, recorded with the runs).")


def injection_warning(data: ReportData) -> str | None:
    """A warning naming the runs measured with test-only fault injection; None without."""
    injected = [r["run_id"] for r in data.records if r.get(schema.TEST_INJECTION)]
    if not injected:
        return None
    return (f"Warning: {len(injected)} run{'s' if len(injected) != 1 else ''} measured with "
            f"test-only fault injection, not real measurements: {', '.join(injected)}")


def load_warning(data: ReportData) -> str | None:
    """A warning naming the runs whose timings are not comparable; None without."""
    return loaded_warning(data.records)


def loaded_note(data: ReportData) -> str | None:
    """The footnote of the LOADED_MARK on timing cells; None when no cell has it."""
    return LOADED_NOTE if data.loaded else None


def summary_frame(data: ReportData) -> pd.DataFrame:
    """One row per (dataset, model, backend): run counts and each figure's statistics."""
    rows = []
    for (dataset, model, backend), group in _by_pair(data.records).items():
        ok = [r for r in group if schema.succeeded(r)]
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
    """(dataset, model, backend) → its records, twins left out as in the tables."""
    grouped: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        if schema.is_twin(record):
            continue
        grouped.setdefault((record["dataset"], record["model"], record["backend"]),
                           []).append(record)
    return grouped


