"""The figures a study spec may publish, and where a run's record holds each.

Apart from `spec` so that the report (`benchmarks.analysis.published`) reads them
without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends import BACKEND_NAMES

# A published figure's split when the study does not say what it tested on: compared
# with the protocol's measurement all the same, with that caveat.
UNSTATED = "unstated"
FRAMEWORKS = ("any", *BACKEND_NAMES)  # which framework a published figure is of


@dataclass(frozen=True)
class Metric:
    """A figure a study may publish, and where a run's record holds it.

    Attributes:
        key: the record's figure key ("metrics.accuracy"); None for the accuracy of one
            class (its recall, from `metrics.per_class`).
        label: how a report names it.
        fraction: the value is a fraction in [0, 1] (written 0.68 for 68 %).
        unit: the unit of a value that is no fraction.
    """

    key: str | None
    label: str
    fraction: bool = True
    unit: str = ""


PUBLISHED_METRICS = {
    "accuracy": Metric("metrics.accuracy", "accuracy"),
    "balanced_accuracy": Metric("metrics.balanced_accuracy", "balanced accuracy"),
    "macro_f1": Metric("metrics.macro_f1", "macro F1"),
    "weighted_f1": Metric("metrics.weighted_f1", "weighted F1"),
    "auc": Metric("metrics.auc_macro_ovr", "AUC (macro, one-vs-rest)"),
    "class_accuracy": Metric(None, "accuracy of class"),
    "train_time_s": Metric("timing.train_wall_s", "training time", False, "s"),
    "eval_time_s": Metric("timing.eval_wall_s", "evaluation time", False, "s"),
    "peak_memory_mb": Metric("memory.peak_host_rss_mb", "peak host memory", False, "MB"),
}
