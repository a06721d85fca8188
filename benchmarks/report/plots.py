"""The report's figures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than
through pyplot, so no global state or interactive backend is involved and nothing needs
a display.

Every function takes `groups`: label (a model, or "dataset · model") → backend → the ok
records of that pair, in the order to draw them. Each returns None when there is nothing
to draw, so a report of failed runs still renders.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from backends import BACKEND_NAMES
from benchmarks.analysis.grid_selection import format_value
from benchmarks.analysis.stats import (
    bootstrap_interval,
    replicate_values,
    summarize,
    summarize_figure,
)
from benchmarks.backend_choice import registry_order
from benchmarks.record.figures import measure_for

Groups = dict[str, dict[str, list[dict[str, Any]]]]

# Colour-blind-safe (Okabe-Ito) colours; each registered backend keeps its own in every
# figure (tf orange, torch blue, then green and purple), other names take the rest.
_PALETTE = ("#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
_DPI = 100


def backend_color(backend: str, backends: list[str]) -> str:
    """The colour of `backend`: fixed for each registered backend (`BACKEND_NAMES`), else
    by position in `backends`."""
    if backend in BACKEND_NAMES:
        return _PALETTE[BACKEND_NAMES.index(backend)]
    extra = [b for b in backends if b not in BACKEND_NAMES]
    known = len(BACKEND_NAMES)
    return _PALETTE[known + extra.index(backend) % (len(_PALETTE) - known)]


def _text(value: Any) -> str:
    """Data text made literal: matplotlib would otherwise parse "$…$" as math."""
    return str(value).replace("$", r"\$")


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _backends(groups: Groups) -> list[str]:
    return registry_order(b for by_backend in groups.values() for b in by_backend)


def _grid(count: int, columns: int, cell_in: tuple[float, float]) -> tuple[Figure, list]:
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = Figure(figsize=(cell_in[0] * columns, cell_in[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, list(axes[:count])


def _legend(figure: Figure, backends: list[str]) -> None:
    handles = [Patch(color=backend_color(b, backends), label=_text(b)) for b in backends]
    # Below the panels: above them it would collide with the figure's title.
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))


# Units whose figures span orders of magnitude between models: drawn on a log scale.
_LOG_UNITS = ("s", "ms")


def bar_interval(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float] | None:
    """(mean, low, high) of figure `key` over the replicates among `runs`, as drawn.

    The interval is the percentile bootstrap of the mean (`stats.bootstrap_interval`),
    which stays inside the replicates' range, so a positive figure's never reaches below
    zero; low = high = mean with one replicate. None when no run carries the figure.
    """
    values = replicate_values(runs, key)
    if not values:
        return None
    mean = float(np.mean(values))
    low, high = bootstrap_interval(values) or (mean, mean)
    return mean, low, high


def figure_bars(groups: Groups, keys: list[str], title: str) -> bytes | None:
    """Bars of each figure per label, the backends side by side.

    Each bar is the mean over replicates (seeds), its whisker the 95% percentile-bootstrap
    interval of that mean (`bar_interval`), and the dots are the replicates themselves.
    Panels of times use a log scale where every value drawn is positive.

    Args:
        groups: see the module docstring.
        keys: figure keys, one panel each; figures no run carries are left out.
        title: the figure's title.
    """
    backends = _backends(groups)
    keys = [k for k in keys
            if any(replicate_values(runs, k) for g in groups.values() for runs in g.values())]
    if not keys:
        return None
    figure, axes = _grid(len(keys), 3, (4.6, 3.2))
    labels = list(groups)
    width = 0.8 / max(1, len(backends))
    rng = np.random.default_rng(0)  # fixed jitter: the same report renders identically
    for ax, key in zip(axes, keys, strict=True):
        drawn: list[float] = []
        for b_index, backend in enumerate(backends):
            color = backend_color(backend, backends)
            for x, label in enumerate(labels):
                runs = groups[label].get(backend, [])
                interval = bar_interval(runs, key)
                if interval is None:
                    continue
                mean, low, high = interval
                position = x + (b_index - (len(backends) - 1) / 2) * width
                error = [[mean - low], [high - mean]] if high > low else None
                ax.bar(position, mean, width, color=color, yerr=error, capsize=3,
                       ecolor="#333333")
                values = replicate_values(runs, key)
                drawn += [mean, *values]
                if len(values) > 1:
                    jitter = rng.uniform(-width / 6, width / 6, len(values))
                    ax.scatter(position + jitter, values, s=9, color="#222222", zorder=3)
        measure = measure_for(key)
        if measure.unit in _LOG_UNITS and drawn and min(drawn) > 0:
            ax.set_yscale("log")
        ax.set_title(_text(measure.title), fontsize=10)
        ax.set_xticks(range(len(labels)), [_text(label) for label in labels],
                      rotation=20 if len(labels) > 2 else 0, ha="right" if len(labels) > 2
                      else "center", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(_text(title))
    _legend(figure, backends)
    return _png(figure)


def figure_ratios(groups: Groups, keys: list[str], a: str,
                  b: str) -> dict[str, dict[str, float]]:
    """label → figure key → mean of `a` ÷ mean of `b`, where both are known and > 0."""
    ratios: dict[str, dict[str, float]] = {}
    for label, by_backend in groups.items():
        for key in keys:
            means = [summarize_figure(by_backend.get(name, []), key).mean for name in (a, b)]
            if all(m is not None and m > 0 for m in means):
                ratios.setdefault(label, {})[key] = means[0] / means[1]
    return ratios


def ratio_chart(groups: Groups, keys: list[str], others: list[str],
                reference: str) -> bytes | None:
    """One chart of every figure's ratio of means, each backend of `others` ÷ `reference`,
    a panel per (label, other backend): a row per label, a column per other backend (two
    columns of labels when there is one).

    Horizontal bars on a log scale around 1 (equal), so 2× and ½× lie equally far out;
    each bar is labelled with its ratio and takes the colour of the backend whose figure
    is larger.

    Args:
        groups: see the module docstring.
        keys: the figure keys to show (measured figures).
        others: the backends set against the reference (numerators).
        reference: the reference backend (the denominator).

    Returns:
        The PNG; None when no figure has a ratio.
    """
    panels = {(label, other): by_key for other in others
              for label, by_key in figure_ratios(groups, keys, other, reference).items()}
    if not panels:
        return None
    # A label's panels side by side, so each model reads across one row.
    panels = dict(sorted(panels.items(), key=lambda item: (list(groups).index(item[0][0]),
                                                             others.index(item[0][1]))))
    rows = max(len(by_key) for by_key in panels.values())
    # Narrower panels side by side with more than one other backend, so that a row of
    # them fits the page at a legible size.
    figure, axes = _grid(len(panels), 2 if len(others) == 1 else len(others),
                         (6.0 if len(others) == 1 else 4.6, 0.25 * rows + 1.2))
    colored = [*others, reference]
    for ax, ((label, other), by_key) in zip(axes, panels.items(), strict=True):
        names = [_text(measure_for(key).title) for key in by_key]
        values = np.asarray(list(by_key.values()))
        colors = [backend_color(other if v > 1 else reference, colored) for v in values]
        ax.barh(range(len(values)), np.log10(values), color=colors)
        for row, value in enumerate(values):
            ax.text(np.log10(value), row, f" {value:.2f}× ", va="center", fontsize=6,
                    ha="left" if value > 1 else "right")
        ax.axvline(0, color="#333333", linewidth=0.8)
        span = max(0.3, float(np.abs(np.log10(values)).max()) * 1.35)
        ax.set_xlim(-span, span)
        ticks = [t for t in (-2, -1, np.log10(0.5), np.log10(0.8), 0, np.log10(1.25),
                             np.log10(2), 1, 2) if abs(t) <= span]
        ax.set_xticks(ticks, [f"{10 ** t:.3g}×" for t in ticks], fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{_text(label)}: {_text(other)} ÷ {_text(reference)}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def _metrics(run: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics section; empty for a record that carries none."""
    return run.get("metrics") or {}


def _class_names(run: dict[str, Any]) -> list[str]:
    names = (run.get("data") or {}).get("class_names")
    if names:
        return [str(n) for n in names]
    return list(_metrics(run).get("per_class") or {})


def confusion_matrices(groups: Groups) -> bytes | None:
    """Confusion matrices summed over each pair's runs, one per (label, backend).

    Cells hold counts; their shade is the row-normalised rate (recall per true class),
    which keeps classes of different sizes comparable.
    """
    panels = []
    backends = _backends(groups)
    for label, by_backend in groups.items():
        for backend in backends:
            counted = [r for r in by_backend.get(backend, [])
                       if _metrics(r).get("confusion_matrix")]
            if not counted:
                continue
            # Runs of one pair share their classes, but a hand-merged file may not, and
            # matrices of different sizes cannot be added: the first run's size counts.
            matrices = [np.asarray(_metrics(r)["confusion_matrix"], np.int64) for r in counted]
            same = [m for m in matrices if m.shape == matrices[0].shape]
            names = _class_names(counted[0])
            if len(names) != len(matrices[0]):
                names = [str(c) for c in range(len(matrices[0]))]
            panels.append((label, backend, len(same), sum(same), names))
    if not panels:
        return None
    num_classes = max(len(names) for *_, names in panels)
    cell = 0.45 * num_classes + 1.6
    figure, axes = _grid(len(panels), len(backends), (cell, cell))
    for ax, (label, backend, summed, counts, class_names) in zip(axes, panels, strict=True):
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        names = [_text(n) for n in class_names]
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=6,
                    color="white" if rates[row, col] > 0.5 else "black")
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{_text(label)} — {_text(backend)} ({summed} run"
                     f"{'s' if summed > 1 else ''})", fontsize=9,
                     color=backend_color(backend, backends))
    return _png(figure)


def per_class_f1(groups: Groups) -> bytes | None:
    """Per-class F1 of each label, the backends side by side, with 95% intervals."""
    labels = [label for label, by_backend in groups.items()
              if any(runs for runs in by_backend.values())]
    if not labels:
        return None
    backends = _backends(groups)
    figure, axes = _grid(len(labels), 2, (6.0, 3.2))
    width = 0.8 / len(backends)
    for ax, label in zip(axes, labels, strict=True):
        names: list[str] = []
        for b_index, backend in enumerate(backends):
            runs = groups[label].get(backend, [])
            if not runs:
                continue
            names = _class_names(runs[0])
            for c, name in enumerate(names):
                summary = summarize(
                    ((_metrics(run).get("per_class") or {}).get(name) or {}).get("f1")
                    for run in runs)
                if summary.mean is None:
                    continue
                error = None if summary.half_width is None else [[summary.half_width]] * 2
                ax.bar(c + (b_index - (len(backends) - 1) / 2) * width, summary.mean, width,
                       yerr=error, capsize=2, color=backend_color(backend, backends),
                       ecolor="#333333")
        ax.set_xticks(range(len(names)), [_text(n) for n in names], rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1", fontsize=8)
        ax.set_title(_text(label), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Per-class F1 (mean over runs, 95% interval)")
    _legend(figure, backends)
    return _png(figure)


def _epoch_series(runs: list[dict[str, Any]], field: str) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """Epochs, and per epoch the mean, min and max of `field` over the runs."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for log in run.get("history") or []:
            value = log.get(field)
            if value is not None:
                by_epoch.setdefault(int(log["epoch"]), []).append(float(value))
    epochs = np.asarray(sorted(by_epoch))
    values = [by_epoch[e] for e in epochs]
    return (epochs, np.asarray([np.mean(v) for v in values]),
            np.asarray([np.min(v) for v in values]), np.asarray([np.max(v) for v in values]))


def training_curves(groups: Groups) -> bytes | None:
    """Loss and validation accuracy per epoch, every backend overlaid.

    Lines are the mean over a pair's runs; the shaded band spans their min to max.
    """
    labels = [label for label, by_backend in groups.items()
              if any(run.get("history") for runs in by_backend.values() for run in runs)]
    if not labels:
        return None
    backends = _backends(groups)
    figure = Figure(figsize=(10, 3.0 * len(labels)), layout="constrained")
    axes = figure.subplots(len(labels), 2, squeeze=False)
    panels = ((("train_loss", "-", "train"), ("val_loss", "--", "val")),
              (("val_accuracy", "-", "val"),))
    for row, label in enumerate(labels):
        for ax, series, name in zip(axes[row], panels, ("loss", "validation accuracy"),
                                    strict=True):
            for backend in backends:
                runs = groups[label].get(backend, [])
                color = backend_color(backend, backends)
                for field, style, part in series:
                    epochs, mean, low, high = _epoch_series(runs, field)
                    if len(epochs) == 0:
                        continue
                    ax.plot(epochs, mean, style, color=color, marker="o", markersize=3,
                            label=f"{_text(backend)} {part}")
                    if len(runs) > 1:
                        ax.fill_between(epochs, low, high, color=color, alpha=0.15)
            ax.set_title(f"{_text(label)}: {name}", fontsize=10)
            ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    return _png(figure)


def study_chart(panels: list[dict[str, Any]], select_by: str) -> bytes | None:
    """A grid's study: the validation figure against each hyper-parameter.

    One panel per (model, axis), one line per backend: the figure's mean over every run at
    each value (the other axes, the folds and the seeds), its bars the 95% t-interval over
    the seeds and folds (the other axes averaged within each); a ring marks the value the
    backend's chosen configuration takes. Listed values sit side by side in the spec's
    order; a search's ranges are drawn to scale (a log range on a log axis).

    Args:
        panels: `benchmarks.analysis.grid_study.chart_panels` of grid.json.
        select_by: the validation figure, for the y axis.
    """
    panels = [p for p in panels if any(p["lines"].values())]
    if not panels:
        return None
    figure, axes = _grid(len(panels), 3, (4.2, 3.0))
    backends = registry_order(b for panel in panels for b in panel["lines"])
    for ax, panel in zip(axes, panels, strict=True):
        categorical = panel["scale"] == "categorical"
        # Keyed by repr: 1, 1.0 and True are one dict key, three values of an axis.
        ticks = {repr(value): format_value(value) for rows in panel["lines"].values()
                 for value, _, _ in rows}
        labels = list(ticks)
        drawn = [b for b in backends if panel["lines"].get(b)]
        for number, backend in enumerate(drawn):
            rows = panel["lines"][backend]
            # Listed values: the backends a little apart, so that their bars do not hide
            # each other.
            offset = 0.06 * (number - (len(drawn) - 1) / 2) if categorical else None
            color = backend_color(backend, backends)
            ax.errorbar([_study_x(v, labels, offset) for v, _, _ in rows],
                        [mean for _, mean, _ in rows], yerr=[half or 0.0 for _, _, half in rows],
                        marker="o", markersize=4, capsize=3, linewidth=1, color=color,
                        label=_text(backend))
            if backend in panel["chosen"]:
                value, mean = panel["chosen"][backend]
                ax.scatter([_study_x(value, labels, offset)], [mean], s=160, facecolors="none",
                           edgecolors=color, linewidths=1.5, zorder=3)
        if categorical:
            ax.set_xticks(range(len(labels)), [_text(tick) for tick in ticks.values()],
                          fontsize=8)
        elif panel["scale"] == "log":
            ax.set_xscale("log")
            # A narrow range holds no decade: matplotlib would label every minor tick, on
            # top of each other. Four labelled ticks spread evenly on the log scale.
            low, high = ax.get_xlim()
            ticks = np.geomspace(low, high, 6)[1:-1]
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=7)
        ax.set_xlabel(_text(panel["axis"]), fontsize=9)
        ax.set_ylabel(_text(select_by), fontsize=9)
        ax.set_title(_text(panel["title"]), fontsize=10)
        ax.grid(alpha=0.3)
    figure.suptitle(f"{_text(select_by)} against each hyper-parameter (mean, 95% interval; "
                    "ring: chosen)", fontsize=10)
    _legend(figure, backends)
    return _png(figure)


def _study_x(value: Any, labels: list[str], offset: float | None) -> float:
    """Where a study value lies on x: its listed position plus `offset`, or (offset None,
    a search's range) the value itself."""
    return float(value) if offset is None else labels.index(repr(value)) + offset
