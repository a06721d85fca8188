"""The figures a result record carries, what each means, and which way is better.

Every numeric leaf of a record's measurement sections (`schema.MEASUREMENT_SECTIONS`, and
any section a worker adds later that is not one of `schema.FACT_SECTIONS`) is a *figure*,
named by its dotted path ("timing.train_wall_s"). The report and `benchmarks.compare` show
every figure that exists; this catalog only adds labels, units, a direction and a
threshold kind. Figures it does not list are described from their name's unit suffix
(`_s`, `_ms`, `_mb`, `_j`, `_img_s`, …), so new probes show up, and are judged, without
touching this file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmarks.record import schema

HIGHER, LOWER = "higher", "lower"

# Threshold kinds: how `benchmarks.compare` decides that a change is a regression.
QUALITY = "quality"  # absolute drop, in fraction points (0.02 = two accuracy points)
TIME = "time"  # relative slowdown
# Relative slowdown of speed figures normalised for the machine's load (docs/ci.md),
# judged apart from raw times, which CI shows but does not judge on a shared machine.
NORMALISED = "normalised"
MEMORY = "memory"  # relative growth
# Relative growth of anonymous memory (RSS without mapped files). Judged apart from the
# whole RSS, whose library pages depend on the page cache as well as on the code: after a
# fresh install, unchanged code read up to +20% RSS after import and +17% peak (docs/ci.md).
ANON_MEMORY = "anon_memory"
ENERGY = "energy"  # relative growth


# The columns every run table starts with.
RUN_KEYS = (schema.RUN_ID, schema.STATUS, schema.DATASET, schema.MODEL, schema.BACKEND,
            schema.FOLD, schema.SEED, schema.TWIN_OF, schema.RUN_POSITION, schema.ERROR)


@dataclass(frozen=True)
class Measure:
    """How to show and judge one figure.

    Attributes:
        key: dotted path in the record, e.g. "metrics.accuracy".
        label: short human name.
        unit: display unit ("" for fractions and counts).
        better: HIGHER, LOWER, or None when neither is better (a parameter count).
        kind: threshold kind (QUALITY, TIME, NORMALISED, MEMORY, ANON_MEMORY, ENERGY), or
            None for a figure that is shown but never judged a regression.
        digits: decimals shown.
        measured: False for a figure the run did not measure but was set or derived from
            the architecture (a matmul size, a call count, FLOPs per image, a parameter
            count): reports list these in a table and never plot them.
    """

    key: str
    label: str
    unit: str = ""
    better: str | None = None
    kind: str | None = None
    digits: int = 3
    measured: bool = True

    @property
    def title(self) -> str:
        """The label with its unit, e.g. "train time (s)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def format(self, value: Any) -> str:
        """The value with this figure's decimals; "—" when it was not measured."""
        if value is None or (isinstance(value, float) and value != value):
            return "—"
        return f"{value:,.{self.digits}f}"


# The figures' keys are "<section>.<name>", the section one of schema.MEASUREMENT_SECTIONS.
CATALOG = {
    m.key: m
    for m in (
        Measure(f"{schema.METRICS}.accuracy", "accuracy", better=HIGHER, kind=QUALITY),
        Measure(f"{schema.METRICS}.balanced_accuracy", "balanced accuracy", better=HIGHER,
                kind=QUALITY),
        Measure(f"{schema.METRICS}.macro_f1", "macro F1", better=HIGHER, kind=QUALITY),
        Measure(f"{schema.METRICS}.weighted_f1", "weighted F1", better=HIGHER, kind=QUALITY),
        Measure(f"{schema.METRICS}.auc_macro_ovr", "AUC (macro OvR)", better=HIGHER,
                kind=QUALITY),
        # Unbounded, so an absolute threshold in fraction points would mean nothing.
        Measure(f"{schema.METRICS}.log_loss", "log loss", better=LOWER),
        # Sub-second and dominated by noise: shown, not judged.
        Measure(f"{schema.TIMING}.build_s", "model build", "s", LOWER, digits=2),
        Measure(f"{schema.TIMING}.first_epoch_s", "first epoch (incl. tracing)", "s", LOWER,
                TIME, 2),
        Measure(f"{schema.TIMING}.steady_epoch_s_mean", "steady epoch", "s", LOWER, TIME, 2),
        Measure(f"{schema.TIMING}.train_wall_s", "train time", "s", LOWER, TIME, 1),
        Measure(f"{schema.TIMING}.train_throughput_img_s", "train throughput", "img/s", HIGHER,
                TIME, 0),
        Measure(f"{schema.TIMING}.train_throughput_corrected_img_s",
                "train throughput, CPU wait out", "img/s", HIGHER, TIME, 0),
        Measure(f"{schema.TIMING}.train_img_per_calibration", "train speed, load-normalised",
                "img/cal", HIGHER, NORMALISED, 2),
        # The run-queue delay of the run's threads, behind other processes or behind each
        # other (TF's threads on 2 cores): context, not performance, and not the load rule.
        Measure(f"{schema.TIMING}.train_cpu_wait_s", "CPU wait (run queue)", "s", digits=2),
        # Other processes' CPU time while the run trained (`analysis.load`'s rule): context.
        Measure(f"{schema.TIMING}.train_others_cpu_s", "others' CPU time", "s", digits=2),
        Measure(f"{schema.TIMING}.train_others_cpu_share", "others' CPU share", digits=3),
        # Epoch F + 1 of a --freeze-epochs F run starts a fresh optimizer (TF retraces its
        # step): reported apart from the steady epochs, as the first epoch is.
        Measure(f"{schema.TIMING}.unfreeze_epoch_s", "unfreeze epoch (incl. retracing)", "s",
                LOWER, TIME, 2),
        # The input path's own cost, overlapped with training: shown, not judged; what
        # training waited for it is in the epoch times already.
        Measure(f"{schema.TIMING}.augment_s_per_epoch", "augmentation per epoch", "s",
                digits=2),
        Measure(f"{schema.TIMING}.input_wait_s_per_epoch", "input wait per epoch", "s",
                digits=3),
        Measure(f"{schema.TIMING}.eval_wall_s", "eval time", "s", LOWER, TIME, 2),
        Measure(f"{schema.LATENCY}.latency_b1_p50_ms", "latency b1 p50", "ms", LOWER, TIME, 2),
        Measure(f"{schema.MEMORY}.peak_host_rss_mb", "peak host RSS", "MB", LOWER, MEMORY, 0),
        Measure(f"{schema.MEMORY}.rss_after_import_mb", "RSS after import", "MB", LOWER,
                MEMORY, 0),
        Measure(f"{schema.MEMORY}.peak_anon_rss_mb", "peak anonymous RSS", "MB", LOWER,
                ANON_MEMORY, 0),
        Measure(f"{schema.MEMORY}.train_peak_anon_rss_mb", "train peak anonymous RSS", "MB",
                LOWER, ANON_MEMORY, 0),
        Measure(f"{schema.MEMORY}.eval_peak_anon_rss_mb", "eval peak anonymous RSS", "MB",
                LOWER, ANON_MEMORY, 0),
        Measure(f"{schema.MEMORY}.anon_rss_after_import_mb", "anonymous RSS after import", "MB",
                LOWER, ANON_MEMORY, 0),
        Measure(f"{schema.MEMORY}.nvml_peak_mb", "GPU peak (NVML)", "MB", LOWER, MEMORY, 0),
        Measure(f"{schema.MODEL_INFO}.trainable_params", "trainable params", digits=0,
                measured=False),
        Measure(f"{schema.WORK}.forward_flops_per_img", "forward FLOPs per image", digits=0,
                measured=False),
        Measure(f"{schema.WORK}.train_flops_multiplier", "train FLOPs multiplier", digits=0,
                measured=False),
    )
}

# Name endings of figures that are settings or counts, not measurements: the latency
# probe's call counts and batch size, the calibration matmul's size.
_SETTING_SUFFIXES = ("_calls", "_size", "_multiplier")
# Which epochs the worker's `selection` section (not a measurement section) names: counts,
# shown with the settings.
_SETTING_KEYS = ("selection.best_epoch", "selection.last_epoch")

# Unit suffixes of figures the catalog does not list, checked in order: rates before
# times, since "_img_s" also ends in "_s".
_SUFFIXES = (
    (("_img_s", "_per_s"), "/s", HIGHER, TIME, 1),
    (("_tflops",), "TFLOP/s", HIGHER, TIME, 2),
    (("_gflops",), "GFLOP/s", HIGHER, TIME, 1),
    (("_ms",), "ms", LOWER, TIME, 2),
    (("_s",), "s", LOWER, TIME, 2),
    (("_mb",), "MB", LOWER, MEMORY, 0),
    (("_gb",), "GB", LOWER, MEMORY, 2),
    (("_j",), "J", LOWER, ENERGY, 1),
    (("_wh",), "Wh", LOWER, ENERGY, 3),
    (("_w",), "W", LOWER, ENERGY, 1),
)

# The headline table's figures, in order; missing ones show as "—".
HEADLINE = (
    f"{schema.METRICS}.accuracy",
    f"{schema.METRICS}.macro_f1",
    f"{schema.METRICS}.auc_macro_ovr",
    f"{schema.TIMING}.train_wall_s",
    f"{schema.TIMING}.train_throughput_img_s",
    f"{schema.TIMING}.eval_wall_s",
    f"{schema.LATENCY}.latency_b1_p50_ms",
    f"{schema.MEMORY}.peak_host_rss_mb",
    f"{schema.MEMORY}.nvml_peak_mb",
)


def measure_for(key: str) -> Measure:
    """The Measure of `key`: from the catalog, else described from its unit suffix.

    An unlisted key is labelled by its path below the section
    ("latency.latency_train_batch_p95_ms" reads "latency train batch p95", in ms).
    """
    if key in CATALOG:
        return CATALOG[key]
    path = key.split(".", 1)[-1]
    if path.lower().endswith(_SETTING_SUFFIXES) or key in _SETTING_KEYS:
        return Measure(key, _words(path), digits=0, measured=False)
    for suffixes, unit, better, kind, digits in _SUFFIXES:
        for suffix in suffixes:
            if path.lower().endswith(suffix):
                stem = path[: -len(suffix)]
                unit = "img/s" if suffix == "_img_s" else unit
                return Measure(key, _words(stem), unit, better, kind, digits)
    return Measure(key, _words(path))


def _words(path: str) -> str:
    return path.replace(".", " ").replace("_", " ")


def _numeric_leaves(section: dict[str, Any], prefix: str) -> Iterable[tuple[str, float]]:
    for name, value in section.items():
        if name in schema.METRIC_STRUCTURES:
            continue
        if isinstance(value, dict):
            yield from _numeric_leaves(value, f"{prefix}{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)


def figures_of(record: dict[str, Any]) -> dict[str, float]:
    """Every numeric figure of one record, keyed by dotted path."""
    figures = {}
    for section, content in record.items():
        if section not in schema.FACT_SECTIONS and isinstance(content, dict):
            figures.update(_numeric_leaves(content, f"{section}."))
    return figures


def figure_keys(columns: Iterable[str]) -> list[str]:
    """The figure columns among `columns`, catalog figures first, in catalog order."""
    keys = [c for c in columns if c not in RUN_KEYS]
    order = {key: i for i, key in enumerate(CATALOG)}
    return sorted(keys, key=lambda k: (order.get(k, len(order)), k))


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its identity (RUN_KEYS) and every figure it carries.

    Figures a run lacks (a failed run, an older worker) are NaN.
    """
    rows = [{**{k: record.get(k) for k in RUN_KEYS}, **figures_of(record)}
            for record in records]
    frame = pd.DataFrame(rows, columns=None if rows else list(RUN_KEYS))
    return frame[list(RUN_KEYS) + figure_keys(frame.columns)]
