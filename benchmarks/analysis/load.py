"""Which runs' timings are not comparable: the one definition the report, the summary
table of `benchmarks.run`, the grid's summary and `benchmarks.compare` apply
(docs/measurement.md).

A run's timings are *not comparable* when

* other processes used more than MAX_OTHERS_CPU_SHARE of the capacity of the CPUs the run
  could use during its steady epochs (`timing.train_others_cpu_share`: the machine's busy
  time minus the run's own process tree's CPU time, `trackers.timing.OthersCpuClock`);
  records without it are unknown, not flagged. The run's CPU wait (run-queue delay,
  `timing.train_cpu_wait_s`) is information only: its own threads queue behind each other
  too, which is no other process's load; or
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

# The largest share of the run's CPU capacity (its CPUs × its steady epochs' training time)
# other processes may have used while it trained, with its timings still comparable. A run
# that would use every core loses at least share / (1 − share) of its speed to them, 11%
# at 10%: beyond `benchmarks.compare`'s default time threshold (10%), so a share above it
# could alone make an unchanged run read as a regression, and a synchronous step waiting
# for a descheduled thread loses more. On a quiet machine only system daemons, the harness
# waiting for its worker and tick sampling remain; two CPU-bound processes on 2 cores put
# both frameworks' runs above it (tests/test_loaded_timings.py).
MAX_OTHERS_CPU_SHARE = 0.10
# The mark on a timing figure that is not comparable, and what it means.
LOADED_MARK = "†"
LOADED_NOTE = (f"{LOADED_MARK} not comparable: other processes used more than "
               f"{MAX_OTHERS_CPU_SHARE:.0%} of the CPU capacity of a run behind this timing "
               "during its steady training epochs, or it shared its device with other runs "
               "(execution.exclusive_timing false: a grid's --jobs N > 1 or a shared Ray "
               "node).")


@dataclass(frozen=True)
class LoadedRun:
    """A run whose timings are not comparable.

    Attributes:
        run_id: the run.
        others_share: the share of its CPU capacity other processes used during its
            steady epochs; None where the record does not hold it.
        shared: whether it shared its device with other runs (`execution.exclusive_timing`
            false).
    """

    run_id: str
    others_share: float | None
    shared: bool = False

    @property
    def reason(self) -> str:
        """"other processes took 23% of the CPU", "shared its device with other runs", or
        both."""
        reasons = []
        if self.others_share is not None and self.others_share > MAX_OTHERS_CPU_SHARE:
            reasons.append(f"other processes took {self.others_share:.0%} of the CPU")
        if self.shared:
            reasons.append("shared its device with other runs")
        return "; ".join(reasons)

    def describe(self) -> str:
        """"<run_id> (other processes took 23% of the CPU)"."""
        return f"{self.run_id} ({self.reason})"


def shared_device(record: dict[str, Any]) -> bool:
    """Whether the run shared its device with other runs on purpose (a grid's record with
    `execution.exclusive_timing` false); False for records without that section."""
    return (record.get(schema.EXECUTION) or {}).get("exclusive_timing") is False


def others_cpu_share(record: dict[str, Any]) -> float | None:
    """The share of the run's CPU capacity other processes used during its steady epochs.

    Args:
        record: a result record.

    Returns:
        `timing.train_others_cpu_share`; None when the record lacks it (one epoch, a failed
        run, a worker before it was measured, a machine without `/proc/stat`).
    """
    share = (record.get(schema.TIMING) or {}).get("train_others_cpu_share")
    return share if isinstance(share, (int, float)) else None


def loaded_run(record: dict[str, Any]) -> LoadedRun | None:
    """The record as a LoadedRun when its timings are not comparable; None otherwise."""
    share, shared = others_cpu_share(record), shared_device(record)
    if not shared and (share is None or share <= MAX_OTHERS_CPU_SHARE):
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
            f"(marked {LOADED_MARK}) are not comparable: other processes used more than "
            f"{MAX_OTHERS_CPU_SHARE:.0%} of their CPU capacity while they trained, or they "
            f"shared their device with other runs: {', '.join(r.describe() for r in runs)}")
