"""What changed between two sets of results: deltas of every figure, regressions marked.

For every (dataset, model, backend) the figures of B's successful runs (mean over seeds;
twins left out) are set against A's. A figure is a regression when it got worse by more than the
threshold of its kind (THRESHOLD_RULES: quality drops in fraction points; time, normalised
speed, memory, anonymous memory and energy as relative changes; throughputs count as time
per image). A run that was ok in A and did not succeed in B (failed, timed out or
interrupted) is a regression too; a run present in only one of them is listed, not
judged. A time figure whose A or B side holds a run whose timings are not comparable
(other processes took more than `analysis.load.MAX_OTHERS_CPU_SHARE` of its CPU
capacity, or it shared its device with other runs) is shown, marked, and not judged;
those runs are listed. Which figures exist, and their directions and kinds, come from the
figure catalogue (`benchmarks.record.figures`).
`benchmarks.compare` is the command line; the CI check calls `compare_records` directly;
`benchmarks.report.comparison.render` writes a comparison as text or Markdown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.analysis.load import LOADED_MARK, LoadedRun, affected_by_load, loaded_runs
from benchmarks.analysis.stats import replicate_values, summarize_figure
from benchmarks.record import schema
from benchmarks.record.figures import (
    ANON_MEMORY,
    ENERGY,
    HIGHER,
    MEMORY,
    NORMALISED,
    QUALITY,
    TIME,
    Measure,
    figure_keys,
    measure_for,
    runs_frame,
)


@dataclass(frozen=True)
class ThresholdRule:
    """How one threshold kind is judged.

    Attributes:
        word: what getting worse is called ("slowdown").
        relative: whether the limit is a fraction of A's value (else absolute).
        default: the default limit.
        flag: the command-line option that sets it.
    """

    word: str
    relative: bool
    default: float
    flag: str


THRESHOLD_RULES = {
    QUALITY: ThresholdRule("drop", relative=False, default=0.02, flag="--max-accuracy-drop"),
    TIME: ThresholdRule("slowdown", relative=True, default=0.10, flag="--max-slowdown"),
    NORMALISED: ThresholdRule("slowdown", relative=True, default=0.10,
                              flag="--max-normalised-slowdown"),
    MEMORY: ThresholdRule("growth", relative=True, default=0.10, flag="--max-memory-growth"),
    ANON_MEMORY: ThresholdRule("growth", relative=True, default=0.10,
                               flag="--max-anon-memory-growth"),
    ENERGY: ThresholdRule("growth", relative=True, default=0.10, flag="--max-energy-growth"),
}
DEFAULT_THRESHOLDS = {kind: rule.default for kind, rule in THRESHOLD_RULES.items()}

# Record sections whose differences explain a change (and are listed as context).
_CONTEXT_SECTIONS = (schema.DATA, schema.CONFIG, schema.MEASURE_CONFIG, schema.ENV,
                     schema.FLAGS)
# Changes smaller than this (relative, or in fraction points for quality) round to zero in
# the table, so they are called neither "worse" nor "better".
_NEGLIGIBLE = 1e-3
# Fields that differ between runs by design, not between A and B.
_CONTEXT_IGNORED = frozenset({f"{schema.CONFIG}.seed"})


def check_thresholds(thresholds: Mapping[str, float]) -> None:
    """Raises ValueError unless every threshold is a known kind with a limit ≥ 0 (inf: off)."""
    for kind, limit in thresholds.items():
        if kind not in THRESHOLD_RULES:
            raise ValueError(f"unknown threshold kind {kind!r}; valid kinds: "
                             f"{', '.join(THRESHOLD_RULES)}")
        # `not limit >= 0` also rejects NaN, which would silently pass every change.
        if not isinstance(limit, (int, float)) or not limit >= 0:
            raise ValueError(f"{THRESHOLD_RULES[kind].flag} must be a number ≥ 0. "
                             f"Received: {limit!r}")


@dataclass(frozen=True)
class Delta:
    """One figure of one (dataset, model, backend) in A and in B.

    Attributes:
        dataset: dataset name.
        model: model name.
        backend: backend name.
        measure: the figure.
        a: mean over A's successful runs (seeds), or their least favourable value for a
            kind in `compare_records`' `worst_of_a`; None when A lacks it.
        b: the same for B.
        runs_a: successful runs A averages over.
        runs_b: successful runs B averages over.
        worse_by: how much worse B is, in the terms of the figure's threshold kind
            (absolute for quality, relative otherwise; throughputs as time per image);
            negative when B is better; None when the figure has no direction or a side
            lacks it.
        limit: the threshold in force; None for figures that are not judged.
        under_load: the sides ("A", "B") holding a run whose timings are not comparable,
            for a figure that load distorts; such a figure is not judged.
    """

    dataset: str
    model: str
    backend: str
    measure: Measure
    a: float | None
    b: float | None
    runs_a: int
    runs_b: int
    worse_by: float | None
    limit: float | None
    under_load: tuple[str, ...] = ()

    @property
    def regression(self) -> bool:
        return not self.under_load and self.worse_by is not None and self.limit is not None \
            and self.worse_by > self.limit

    @property
    def change(self) -> str:
        """B against A: a difference for quality figures, a percentage otherwise."""
        if self.a is None or self.b is None:
            return "—"
        if self.measure.kind == QUALITY:
            return f"{self.b - self.a:+.{self.measure.digits}f}"
        return "—" if self.a == 0 else f"{self.b / self.a - 1:+.1%}"

    @property
    def verdict(self) -> str:
        """"REGRESSION (…)", "worse", "better", "" or why the figure is not judged."""
        if self.under_load:
            return (f"{LOADED_MARK} not judged: timings taken under load in "
                    f"{' and '.join(self.under_load)}")
        if self.worse_by is None or abs(self.worse_by) < _NEGLIGIBLE:
            return ""
        if not self.regression:
            return "worse" if self.worse_by > 0 else "better"
        rule = THRESHOLD_RULES[self.measure.kind]
        amount, limit = ((f"{self.worse_by:.1%}", f"{self.limit:.0%}") if rule.relative
                         else (f"{self.worse_by:.3f}", f"{self.limit:g}"))
        return f"REGRESSION ({rule.word} {amount} > {limit})"


@dataclass(frozen=True)
class RunChange:
    """A run whose status differs between A and B, or that only one of them holds.

    Attributes:
        run_id: the run (backend, model, dataset, fold, seed).
        a_status: its status in A; None when A lacks it.
        b_status: its status in B; None when B lacks it.
        error: B's error (else A's), if any.
    """

    run_id: str
    a_status: str | None
    b_status: str | None
    error: str | None

    @property
    def regression(self) -> bool:
        return self.a_status == schema.OK and self.b_status not in (None, schema.OK)

    @property
    def verdict(self) -> str:
        if self.regression:
            return "REGRESSION (ok in A, not in B)"
        if self.a_status is None:
            return "only in B"
        if self.b_status is None:
            return "only in A"
        return "fixed" if self.b_status == schema.OK else "still not ok"


@dataclass
class Comparison:
    """The outcome of `compare_records`.

    Attributes:
        deltas: every figure of every (dataset, model, backend) either side holds.
        run_changes: runs whose status differs, or that only one side holds.
        context: (scope, field, A's values, B's values) for facts that differ (versions,
            data fingerprint, recipe, flags): what may explain the deltas.
        injected: ("A" or "B", run_id, faults) for every run measured with test-only fault
            injection (`schema.describe_injection`): not real measurements.
        loaded: ("A" or "B", run) for every ok run whose timings are not comparable.
        shared_runs: how many run ids both sides hold.
    """

    deltas: list[Delta] = field(default_factory=list)
    run_changes: list[RunChange] = field(default_factory=list)
    context: list[tuple[str, str, str, str]] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)
    loaded: list[tuple[str, LoadedRun]] = field(default_factory=list)
    shared_runs: int = 0

    @property
    def matched(self) -> bool:
        """Whether A and B have anything in common to judge: a run both hold, or a figure
        both measured for one (dataset, model, backend). Without, "0 regressions" would
        only mean that nothing was compared."""
        return self.shared_runs > 0 or any(d.a is not None and d.b is not None
                                           for d in self.deltas)

    @property
    def regressions(self) -> list[str]:
        """One line per regression."""
        lines = [f"{c.run_id}: {c.verdict}" + (f": {c.error}" if c.error else "")
                 for c in self.run_changes if c.regression]
        lines += [f"{d.dataset} {d.model} {d.backend} {d.measure.title}: {d.verdict}"
                  for d in self.deltas if d.regression]
        return lines


def _worse_by(measure: Measure, a: float | None, b: float | None) -> float | None:
    if measure.better is None or a is None or b is None:
        return None
    sign = 1.0 if measure.better == HIGHER else -1.0
    if measure.kind == QUALITY:
        return sign * (a - b)
    if a <= 0 or b <= 0:
        return None
    # Rates are compared as time per unit of work, so both directions read as a slowdown.
    return a / b - 1 if measure.better == HIGHER else b / a - 1


def best_of_readings(deltas: list[Delta]) -> Delta:
    """One figure over several readings, each side at its most favourable reading.

    Noise on a shared machine takes away: a neighbour slows a run or fattens it, it does not
    make code faster or leaner than it is. So where readings disagree, each side's best one
    is the closest to what its code does, and a change that costs something shows in every
    reading of its side, the best included.

    Args:
        deltas: the same figure of the same (dataset, model, backend), one per reading.

    Returns:
        The figure with A and B at their best values (A's constant where A is a committed
        baseline) over the readings not taken under load (the first reading alone if all
        were), under the same threshold; `runs_a` / `runs_b` count the readings used.
    """
    # A reading taken under load is not judged, so it does not enter the best either.
    judged = [d for d in deltas if not d.under_load] or deltas[:1]
    first = judged[0]
    best = max if first.measure.better == HIGHER else min
    a_values = [d.a for d in judged if d.a is not None]
    b_values = [d.b for d in judged if d.b is not None]
    a = best(a_values) if a_values else None
    b = best(b_values) if b_values else None
    return replace(first, a=a, b=b, runs_a=len(a_values), runs_b=len(b_values),
                   worse_by=_worse_by(first.measure, a, b))


def _ok_groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict]]:
    """(dataset, model, backend) → its ok runs. Twins (`schema.TWIN_OF`) are left out, as
    in the report's figures: they measure chaos and are no replicates."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        runs = groups.setdefault((record["dataset"], record["model"], record["backend"]), [])
        if schema.succeeded(record) and not schema.is_twin(record):
            runs.append(record)
    return groups


def _context_values(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(scope, "section.field") → the distinct values among `records`, joined."""
    values: dict[tuple[str, str], dict[str, None]] = {}
    for record in records:
        scope = record["backend"] if schema.succeeded(record) else None
        if scope is None:
            continue
        for section in _CONTEXT_SECTIONS:
            for name, value in (record.get(section) or {}).items():
                key = f"{section}.{name}"
                if key not in _CONTEXT_IGNORED:
                    values.setdefault((scope, key), {})[str(value)] = None
    return {key: "; ".join(sorted(seen)) for key, seen in values.items()}


def _least_favourable(measure: Measure, values: list[float]) -> float | None:
    if not values:
        return None
    return min(values) if measure.better == HIGHER else max(values)


def compare_records(
    records_a: list[dict[str, Any]],
    records_b: list[dict[str, Any]],
    thresholds: Mapping[str, float] | None = None,
    worst_of_a: Collection[str] = (),
) -> Comparison:
    """Compares two sets of result records.

    Args:
        records_a: the reference (before, baseline).
        records_b: the candidate (after).
        thresholds: threshold kind → limit (see THRESHOLD_RULES); kinds left out keep their
            default, and a kind mapped to math.inf is never a regression.
        worst_of_a: threshold kinds whose A figure is A's least favourable replicate
            instead of the mean: for figures whose noise is one-sided, so that B is judged
            against the worst that unchanged code was seen to do (the CI check's memory).

    Returns:
        The deltas, run status changes and differing context.
    """
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    check_thresholds(limits)
    comparison = Comparison()
    groups_a, groups_b = _ok_groups(records_a), _ok_groups(records_b)
    comparison.loaded = [(side, run) for side, groups in (("A", groups_a), ("B", groups_b))
                         for runs in groups.values() for run in loaded_runs(runs)]
    loaded_ids = {(side, run.run_id) for side, run in comparison.loaded}
    keys = figure_keys(runs_frame(records_a + records_b).columns)
    for group in dict.fromkeys([*groups_a, *groups_b]):
        runs_a, runs_b = groups_a.get(group, []), groups_b.get(group, [])
        loaded_sides = tuple(side for side, runs in (("A", runs_a), ("B", runs_b))
                             if any((side, r["run_id"]) in loaded_ids for r in runs))
        for key in keys:
            measure = measure_for(key)
            a = (_least_favourable(measure, replicate_values(runs_a, key))
                 if measure.kind in worst_of_a else summarize_figure(runs_a, key).mean)
            b = summarize_figure(runs_b, key).mean
            if a is None and b is None:
                continue
            comparison.deltas.append(Delta(
                *group, measure, a, b, len(runs_a), len(runs_b), _worse_by(measure, a, b),
                limits.get(measure.kind), loaded_sides if affected_by_load(measure) else ()))
    runs_a = {r["run_id"]: r for r in records_a}
    runs_b = {r["run_id"]: r for r in records_b}
    comparison.shared_runs = len(runs_a.keys() & runs_b.keys())
    for run_id in dict.fromkeys([*runs_a, *runs_b]):
        a, b = runs_a.get(run_id), runs_b.get(run_id)
        a_status, b_status = (a or {}).get(schema.STATUS), (b or {}).get(schema.STATUS)
        if a is None or b is None or a_status != b_status:
            error = (b or {}).get(schema.ERROR) or (a or {}).get(schema.ERROR)
            comparison.run_changes.append(RunChange(run_id, a_status, b_status, error))
    for side, records in (("A", records_a), ("B", records_b)):
        comparison.injected += [
            (side, r["run_id"], schema.describe_injection(r[schema.TEST_INJECTION]))
            for r in records if r.get(schema.TEST_INJECTION)]
    context_a, context_b = _context_values(records_a), _context_values(records_b)
    for scope_key in sorted(set(context_a) & set(context_b)):
        if context_a[scope_key] != context_b[scope_key]:
            comparison.context.append((*scope_key, context_a[scope_key],
                                       context_b[scope_key]))
    return comparison
