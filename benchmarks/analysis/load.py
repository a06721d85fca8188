"""Which runs' timings were taken under load: the one definition the report, the summary
table of `benchmarks.run` and `benchmarks.compare` apply (docs/measurement.md).

A run's timings are *not comparable* when its CPU wait, spread over its threads as
`runner.worker.timing_summary` spreads it, exceeds MAX_CPU_WAIT_SHARE of its steady
epochs' training time (the sum of `history[1:].train_s`, the time `timing.train_cpu_wait_s`
is measured over). Records without CPU-wait data are unknown, not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from benchmarks.record import schema
from benchmarks.record.figures import TIME, Measure

# The largest share of its steady training time a run may have spent waiting for a CPU and
# still have comparable timings. It is the default time threshold of `benchmarks.compare`:
# a wait above it could alone make an unchanged run read as a regression.
MAX_CPU_WAIT_SHARE = 0.10
# The mark on a timing figure taken under load, and what it means.
LOADED_MARK = "†"
LOADED_NOTE = (f"{LOADED_MARK} not comparable: a run behind this timing waited for a CPU "
               f"(other processes' load) for more than {MAX_CPU_WAIT_SHARE:.0%} of its "
               "steady training time.")


@dataclass(frozen=True)
class LoadedRun:
    """A run whose timings are not comparable.

    Attributes:
        run_id: the run.
        wait_share: its CPU wait per thread as a share of its steady training time.
    """

    run_id: str
    wait_share: float

    def describe(self) -> str:
        """"<run_id> (CPU wait 23% of training)"."""
        return f"{self.run_id} (CPU wait {self.wait_share:.0%} of training)"


def cpu_wait_share(record: dict[str, Any]) -> float | None:
    """The run's CPU wait per thread as a share of its steady epochs' training time.

    The wait is summed over the worker's threads, so it is divided by the record's
    `threads` (1 when not recorded: the largest share the wait can stand for). None when
    the record lacks the wait or its steady epochs (one epoch, a failed run, an older
    worker).
    """
    wait = (record.get(schema.TIMING) or {}).get("train_cpu_wait_s")
    steady_s = sum(epoch.get("train_s") or 0.0 for epoch in (record.get("history") or [])[1:])
    if not isinstance(wait, (int, float)) or steady_s <= 0:
        return None
    return wait / (record.get(schema.THREADS) or 1) / steady_s


def loaded_run(record: dict[str, Any]) -> LoadedRun | None:
    """The record as a LoadedRun when its timings are not comparable; None otherwise."""
    share = cpu_wait_share(record)
    if share is None or share <= MAX_CPU_WAIT_SHARE:
        return None
    return LoadedRun(record[schema.RUN_ID], share)


def loaded_runs(records: Iterable[dict[str, Any]]) -> list[LoadedRun]:
    """The records whose timings are not comparable, in order."""
    return [run for run in map(loaded_run, records) if run is not None]


def affected_by_load(measure: Measure) -> bool:
    """Whether a figure is a timing that other processes' load distorts.

    Time-kind figures only. The load-normalised speed (NORMALISED) is measured against a
    reference workload timed under the same load, and stays comparable; memory and quality
    figures do not depend on the time taken.
    """
    return measure.kind == TIME


def loaded_warning(records: Iterable[dict[str, Any]]) -> str | None:
    """One sentence naming the runs whose timings are not comparable; None without."""
    runs = loaded_runs(records)
    if not runs:
        return None
    return (f"Warning: {len(runs)} run{'s' if len(runs) != 1 else ''} waited for a CPU for "
            f"more than {MAX_CPU_WAIT_SHARE:.0%} of training, so their timings (marked "
            f"{LOADED_MARK}) are not comparable: {', '.join(r.describe() for r in runs)}")
