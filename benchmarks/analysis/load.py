"""Which runs' timings are not comparable: the one definition the report, the summary
table of `benchmarks.run`, the grid's summary and `benchmarks.compare` apply
(docs/measurement.md).

A run's timings are *not comparable* when

* its CPU wait, spread over its threads as `runner.worker.timing_summary` spreads it,
  exceeds MAX_CPU_WAIT_SHARE of its steady epochs' training time (the sum of
  `history[1:].train_s`, the time `timing.train_cpu_wait_s` is measured over): other
  processes' load; records without CPU-wait data are unknown, not flagged; or
* its record's `execution.exclusive_timing` is false: a grid run that shared its device
  with other runs on purpose (`--jobs N > 1`, a Ray task beside others on its node's
  CPUs). Records without an `execution` section (`benchmarks.run`'s) had the machine to
  themselves.
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
# The mark on a timing figure that is not comparable, and what it means.
LOADED_MARK = "†"
LOADED_NOTE = (f"{LOADED_MARK} not comparable: a run behind this timing waited for a CPU "
               f"(other processes' load) for more than {MAX_CPU_WAIT_SHARE:.0%} of its "
               "steady training time, or shared its device with other runs "
               "(execution.exclusive_timing false: a grid's --jobs N > 1 or a shared Ray "
               "node).")


@dataclass(frozen=True)
class LoadedRun:
    """A run whose timings are not comparable.

    Attributes:
        run_id: the run.
        wait_share: its CPU wait per thread as a share of its steady training time; None
            where the record holds no CPU wait.
        shared: whether it shared its device with other runs (`execution.exclusive_timing`
            false).
    """

    run_id: str
    wait_share: float | None
    shared: bool = False

    @property
    def reason(self) -> str:
        """"CPU wait 23% of training", "shared its device with other runs", or both."""
        reasons = []
        if self.wait_share is not None and self.wait_share > MAX_CPU_WAIT_SHARE:
            reasons.append(f"CPU wait {self.wait_share:.0%} of training")
        if self.shared:
            reasons.append("shared its device with other runs")
        return "; ".join(reasons)

    def describe(self) -> str:
        """"<run_id> (CPU wait 23% of training)"."""
        return f"{self.run_id} ({self.reason})"


def shared_device(record: dict[str, Any]) -> bool:
    """Whether the run shared its device with other runs on purpose (a grid's record with
    `execution.exclusive_timing` false); False for records without that section."""
    return (record.get(schema.EXECUTION) or {}).get("exclusive_timing") is False


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
    share, shared = cpu_wait_share(record), shared_device(record)
    if not shared and (share is None or share <= MAX_CPU_WAIT_SHARE):
        return None
    return LoadedRun(record[schema.RUN_ID], share, shared)


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
    return (f"Warning: the timings of {len(runs)} run{'s' if len(runs) != 1 else ''} "
            f"(marked {LOADED_MARK}) are not comparable: they waited for a CPU for more "
            f"than {MAX_CPU_WAIT_SHARE:.0%} of training or shared their device with other "
            f"runs: {', '.join(r.describe() for r in runs)}")
