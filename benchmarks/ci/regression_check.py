"""The CI regression check: the `ci` preset's runs, speed A/B on this host, memory vs baseline.

    python -m benchmarks.ci check [--baseline DIR] [--out DIR] [RUN OPTIONS …]
    python -m benchmarks.ci baseline [--baseline DIR] [--out DIR] [--repeats N]

`check` judges the code it is part of (the *candidate*) two ways (docs/ci.md):

* **Speed, A/B on this host.** A speed figure measured on one CPU does not compare with one
  measured on another, even load-normalised: the models' speed relative to a matmul depends
  on the instruction set and the framework. So the check checks out the *reference* — the
  commit the committed baseline was measured on — in a temporary git worktree and runs the
  preset from both trees, one (model, backend) at a time, reference and candidate back to
  back, with the same Python and environment (test fault injection aside: it is meant for
  the candidate). The candidate ÷ reference ratio of the load-normalised speed is judged.
  The reference is the baseline's commit, not "main before the change", because it is the
  figure a human reviewed and committed, it is in every full clone, and a fixed point
  catches a slowdown that creeps in over many commits, each under the threshold.
* **Memory, against the committed figures.** Anonymous memory carried across CPU models
  (within ±2% of the AMD baseline on an Intel host), and the baseline averages 3 quiet runs
  where a single reference reading may carry TensorFlow's occasional extra 125 MB.

A figure that regresses is measured again at once, in up to `CONFIRMATION_RUNS` fresh
readings of its model and backend (a new A/B pair for speed, the order alternating), until
it is decided. Speed follows the sequential A/B rule of `benchmarks.ci.speed_rule` (same as
soon as the pairs' median slowdown is within its trigger; regressed only if, after every
reading, a Mann-Whitney test parts the candidate's speeds from the reference's at p ≤ 0.01;
otherwise undecided, which passes with a warning line); its false-alarm and detection rates
are replayed over a corpus of unchanged code's readings (`benchmarks.ci.corpus`). Memory
noise only adds, so a memory figure is judged at the candidate's leanest reading and fails
only if even that regresses after every reading. A candidate run that fails, where the
baseline's succeeded, is a regression at once. The comparisons are printed and saved as
`comparison.md` next to the candidate's first results; the exit status is 1 on a
regression.

Given a time budget (`--budget-s`, what is left of CI's 20 minutes), every reading keeps
to it: a pair whose reading is expected to end past the deadline is not started, and what
it would have judged passes with a warning line (docs/ci.md, "The time budget").

When the reference cannot be run (the commit is not in the clone, or its runs fail), one
line says so and speed is judged only if the baseline's figures come from this CPU model;
otherwise speed is not judged. Before judging, the check makes sure the judgement means
something, and exits 2 naming the fix otherwise: the baseline must hold every run the check
made, with the same recipe, measurement settings, threads and data, and no test fault
injection; and every run must carry the load-normalised speed the verdict rests on.

`baseline` runs the full preset `--repeats` times (default 3; the memory verdict uses the
means, so one unlucky run moves it less) from a committed tree, and writes the results as
the new baseline, unless a run failed or carried test fault injection. Its records name
the commit they measured (`env.suite_commit`): the next checks' reference. A human reviews
and commits it (docs/ci.md).

Both sides run as `python -m benchmarks.run` subprocesses: the command line is the one
interface an older commit is sure to share with this one, and the candidate is run the
same way so that neither side carries the other's start-up cost.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.train_config import TrainConfig
from benchmarks.analysis.comparison import (
    Comparison,
    Delta,
    best_of_readings,
    compare_records,
)
from benchmarks.backend_choice import expand_backends
from benchmarks.ci.speed_rule import RULE as SPEED_RULE
from benchmarks.ci.speed_rule import Decision, slowdown
from benchmarks.ci.thresholds import BASELINE_THRESHOLDS, SPEED_THRESHOLDS
from benchmarks.record import schema
from benchmarks.record.figures import ANON_MEMORY, NORMALISED
from benchmarks.record.layout import RESULTS_FILE
from benchmarks.record.store import append_record, read_records
from benchmarks.report.comparison import render
from benchmarks.runner import command_line
from benchmarks.runner import faults as fault_injection
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.env import SUITE_ROOT, cpu_model, git_commit

DEFAULT_BASELINE = Path("reports/baselines/ci-cpu")
DEFAULT_REPEATS = 3
# Readings after the first, at most, of a model and backend whose figure regressed; they
# stop once the figure is decided. Speed is decided by the sequential A/B rule of
# benchmarks.ci.speed_rule (its false-alarm rate measured over a corpus of unchanged code).
# Memory noise is one-sided (TensorFlow's resnet50 peaks about 125 MB higher in 5 of 8 full
# preset runs of a fresh clone, docs/ci.md), so a memory figure is judged at the candidate's
# leanest reading (`best_of_readings`) and fails only if even that regresses after all
# 1 + CONFIRMATION_RUNS readings; one good reading clears it.
CONFIRMATION_RUNS = SPEED_RULE.max_readings - 1
SPEED_FIGURE = "train_img_per_calibration"  # in each record's schema.TIMING section
REFRESH = "if the change is intended, refresh the baseline with `make ci-baseline` and commit it"
# Header fields two records must share for their figures to be comparable.
_SETTINGS = (schema.CONFIG, schema.MEASURE_CONFIG, schema.THREADS, schema.DETERMINISTIC,
             schema.INIT)
# A setting added since a record was made counts, where that record lacks it, as its
# default: a new field whose default keeps the old behaviour leaves runs comparable.
_SETTING_DEFAULTS = {schema.CONFIG: asdict(TrainConfig()),
                     schema.MEASURE_CONFIG: asdict(MeasureConfig())}
_TEST_VARIABLES = (fault_injection.SLOWDOWN_VARIABLE, fault_injection.ALLOC_VARIABLE,
                   fault_injection.ARM_VARIABLE)

Pair = tuple[str, str]  # (model, backend)
Key = tuple[str, str, str]  # (model, backend, figure)


class NotComparableError(ValueError):
    """The baseline (or reference) and the new runs cannot be judged against each other."""


class ReferenceUnavailable(Exception):
    """The reference commit cannot be run here; the message says why and what to do."""


@dataclass(frozen=True)
class Side:
    """A code tree the check runs the `ci` preset from.

    Attributes:
        name: "reference" or "candidate", for logs and tables.
        root: the tree's root; `python -m benchmarks.run` runs there.
        commit: the tree's commit, as its records name it (env.suite_commit).
        env: the subprocess's environment.
    """

    name: str
    root: Path
    commit: str | None
    env: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.name} {self.commit[:12] if self.commit else '(no commit)'}"


def candidate_side() -> Side:
    """This checkout, with this process's environment (test fault injection included)."""
    return Side("candidate", SUITE_ROOT, git_commit(), dict(os.environ))


def reference_side(root: Path, commit: str) -> Side:
    """The reference tree: the same Python and environment, but no test fault injection
    (it targets the change under test) and imports from its own tree."""
    env = {name: value for name, value in os.environ.items() if name not in _TEST_VARIABLES}
    return Side("reference", root, commit, {**env, "PYTHONPATH": str(root)})


def run_preset(side: Side, out_root: Path, run_options: list[str]) -> tuple[int, Path | None]:
    """Runs `python -m benchmarks.run --preset ci` from `side`'s tree into a new folder.

    Returns:
        benchmarks.run's exit status and the report folder it wrote (None when it stopped
        before writing one, e.g. on bad input).
    """
    out_root.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix=f"ci-{side.name}-", dir=out_root)).resolve()
    print(f"--- {side.label}: benchmarks.run --preset ci {' '.join(run_options)}", flush=True)
    status = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--preset", "ci", *run_options,
         *_no_report(side), "--out", str(parent)],
        cwd=side.root, env=side.env, check=False).returncode
    folders = list(parent.iterdir())
    return status, folders[0] if folders else None


_NO_REPORT = "--no-report"
_no_report_support: dict[Path, bool] = {}


def _no_report(side: Side) -> tuple[str, ...]:
    """`--no-report` where the side's benchmarks.run has it: the check reads records only,
    and a report costs about 4 s an invocation. A reference older than the option writes
    its report, which changes none of its figures (it is written after the run)."""
    if side.root not in _no_report_support:
        usage = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"],
                               cwd=side.root, env=side.env, capture_output=True, text=True,
                               check=False).stdout
        _no_report_support[side.root] = _NO_REPORT in usage
    return (_NO_REPORT,) if _no_report_support[side.root] else ()


def preset_pairs(run_options: list[str]) -> list[Pair]:
    """The (model, backend) runs of the preset under `run_options`, in the preset's order.

    Raises:
        ValueError: an unknown model or backend.
    """
    args = command_line.parse_args(["--preset", "ci", *run_options])
    return [(model, backend) for model in command_line.model_names(args.models)
            for backend in expand_backends(args.backend).backends]


def _ok_commits(records: list[dict[str, Any]]) -> set[str | None]:
    return {(r.get(schema.ENV) or {}).get("suite_commit") for r in records
            if schema.succeeded(r)}


def reference_commit(baseline: list[dict[str, Any]]) -> str:
    """The commit the baseline's runs measured: the speed check's reference.

    Raises:
        ReferenceUnavailable: the runs name no commit, several, or uncommitted changes.
    """
    commits = _ok_commits(baseline)
    if len(commits) != 1 or None in commits:
        raise ReferenceUnavailable(f"the baseline names no single commit (it names "
                                   f"{', '.join(sorted(map(str, commits)))})")
    (commit,) = commits
    if commit.endswith("-dirty"):
        raise ReferenceUnavailable(f"the baseline was measured on uncommitted changes to "
                                   f"{commit[:12]}, which no checkout can reproduce")
    return commit


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)


@contextmanager
def reference_worktree(commit: str, repo: Path = SUITE_ROOT) -> Iterator[Path]:
    """Checks `commit` out in a temporary git worktree of `repo`; removes it on exit.

    The checkout under test is not touched (git only notes the worktree in its metadata,
    and forgets it again on exit).

    Raises:
        ReferenceUnavailable: `repo` is not a git checkout or lacks `commit`.
    """
    try:
        found = _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    except OSError as error:
        raise ReferenceUnavailable(f"git cannot run ({error})") from None
    if found.returncode != 0:
        raise ReferenceUnavailable(f"commit {commit[:12]} is not in this clone's history "
                                   f"(a shallow clone? `git fetch --unshallow`)")
    parent = Path(tempfile.mkdtemp(prefix="ferbench-reference-"))
    tree = parent / "tree"
    added = _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
    if added.returncode != 0:
        parent.rmdir()
        raise ReferenceUnavailable(f"git worktree add failed: {added.stderr.strip()}")
    try:
        yield tree
    finally:
        _git(repo, "worktree", "remove", "--force", str(tree))
        parent.rmdir()


def check_comparable(reference: list[dict[str, Any]], records: list[dict[str, Any]],
                     what: str = "baseline") -> None:
    """Raises NotComparableError unless `records` can be judged against `reference`.

    Args:
        reference: the baseline's (or the reference tree's) records.
        records: the candidate's.
        what: how the errors name `reference`.
    """
    by_id = {r["run_id"]: r for r in reference}
    injected = sorted({r["run_id"] for r in reference if r.get(schema.TEST_INJECTION)})
    if injected:
        raise NotComparableError(f"the {what} holds runs measured with test fault "
                                 f"injection ({', '.join(injected)}): rebuild it with "
                                 f"`make ci-baseline`")
    for record in records:
        other = by_id.get(record["run_id"])
        if other is None or not schema.succeeded(other):
            raise NotComparableError(f"the {what} has no successful run {record['run_id']}: "
                                     f"refresh the baseline with `make ci-baseline`")
        differing = [name for name in _SETTINGS
                     if _setting(other, name) != _setting(record, name)]
        if (other.get(schema.DATA) or {}).get("fingerprint") != \
                (record.get(schema.DATA) or {}).get("fingerprint"):
            differing.append("data fingerprint")
        if differing:
            raise NotComparableError(f"{record['run_id']} ran with other {', '.join(differing)} "
                                     f"than the {what}: run the `ci` preset unchanged, or "
                                     f"{REFRESH}")
        if schema.succeeded(record) and \
                (record.get(schema.TIMING) or {}).get(SPEED_FIGURE) is None:
            raise NotComparableError(f"{record['run_id']} has no {schema.TIMING}.{SPEED_FIGURE}, "
                                     f"which the speed verdict needs: it takes Linux's "
                                     f"scheduler statistics (/proc/self/task/*/schedstat)")


def _setting(record: dict[str, Any], name: str) -> Any:
    """The record's setting `name`, with the fields it predates filled by their defaults."""
    value = record.get(name)
    defaults = _SETTING_DEFAULTS.get(name)
    if defaults is None or not isinstance(value, dict):
        return value
    return {**defaults, **value}


def _ok_cpus(records: list[dict[str, Any]]) -> set[str | None]:
    return {(r.get(schema.ENV) or {}).get("cpu") for r in records if schema.succeeded(r)}


def _judged_figures(comparison: Comparison, kinds: Collection[str]) -> dict[Key, Delta]:
    """(model, backend, figure) → Delta, for every figure of these threshold kinds."""
    return {(d.model, d.backend, d.measure.key): d for d in comparison.deltas
            if d.measure.kind in kinds}


def _speed_pairs(readings: list[Delta]) -> list[tuple[float, float]]:
    """The A/B (reference, candidate) speeds of a figure's readings not taken under load
    (the first alone if all were)."""
    judged = [d for d in readings if not d.under_load] or readings[:1]
    return [(d.a, d.b) for d in judged if d.a is not None and d.b is not None]


def _outcome(readings: list[Delta], ab: bool) -> Decision:
    """Whether a suspect figure regressed, is the same, needs more readings or stays
    undecided after the last.

    Args:
        readings: the figure in each reading so far, the first (which regressed) included.
        ab: speed was measured A/B against the reference tree (not against the committed
            baseline's fixed figure, which only each side's best reading can judge).
    """
    if ab and readings[0].measure.kind == NORMALISED:
        return SPEED_RULE.decide(_speed_pairs(readings))
    if not best_of_readings(readings).regression:
        return Decision.SAME
    return Decision.REGRESSED if len(readings) == 1 + CONFIRMATION_RUNS else Decision.MORE


@dataclass
class Reading:
    """One reading of some (model, backend) pairs, and what it showed.

    Attributes:
        name: "run" or "rerun N", for the tables.
        folder: the candidate's first report folder of this reading.
        comparisons: (comparison, A's name, B's name) for the printed tables.
        figures: every figure of this reading, from the comparison that judges it (speed:
            the A/B one, or the baseline on its own CPU model; the rest: the baseline).
        failed_runs: one line per candidate run that failed where the baseline's succeeded.
        notes: one line per pair whose speed this reading could not judge.
        skipped: the pairs not run, because their reading would not have fit before the
            check's deadline.
    """

    name: str
    folder: Path | None
    comparisons: list[tuple[Comparison, str, str]]
    figures: dict[Key, Delta]
    failed_runs: list[str]
    notes: list[str]
    skipped: list[Pair] = field(default_factory=list)

    @property
    def regressed(self) -> dict[Key, Delta]:
        """The figures that regressed in this reading."""
        return {key: delta for key, delta in self.figures.items() if delta.regression}


@dataclass(frozen=True)
class Check:
    """What one `check` compares.

    Attributes:
        baseline: the committed baseline's records.
        baseline_name: how the tables name the baseline.
        candidate: this checkout.
        reference: the reference tree, or None when it cannot be run.
        out_root: parent of every run's folder.
        run_options: benchmarks.run options after `--preset ci`.
        deadline: the `_now()` by which every reading must be done; None for no limit. A
            pair whose reading is expected to end past it is not started.
        pair_seconds: (model, backend) → seconds its first reading took, both sides: what
            a confirmation reading of it is expected to cost.
    """

    baseline: list[dict[str, Any]]
    baseline_name: str
    candidate: Side
    reference: Side | None
    out_root: Path
    run_options: list[str]
    deadline: float | None = None
    pair_seconds: dict[Pair, float] = field(default_factory=dict)

    @property
    def speed_from_baseline(self) -> bool:
        """No reference tree, but the baseline's speeds come from this CPU model."""
        return self.reference is None and _ok_cpus(self.baseline) == {cpu_model()}

    def _run(self, side: Side, pair: Pair) -> tuple[list[dict[str, Any]], Path | None]:
        """One side's run of one pair: its records (none when it did not start) and folder.

        Raises:
            NotComparableError: the candidate stopped before running (bad options).
        """
        model, backend = pair
        status, folder = run_preset(side, self.out_root,
                                    [*self.run_options, "--backend", backend, "--models", model])
        if folder is None and side is self.candidate:
            raise NotComparableError(f"benchmarks.run stopped before running {backend} {model} "
                                     f"(exit status {status}): see its message above")
        return (read_records(folder) if folder is not None else []), folder

    def read(self, name: str, pairs: list[Pair], speed_pairs: set[Pair],
             reference_first: bool = True) -> Reading:
        """Runs the candidate for `pairs`, and the reference for those of `speed_pairs`
        right before (or after) it, then judges them.

        Args:
            name: the reading's name in the tables.
            pairs: the (model, backend) pairs to measure.
            speed_pairs: the pairs whose speed is judged.
            reference_first: order within each A/B pair; reruns alternate it, so that an
                effect of running first or second cancels out.
        """
        candidate: list[dict[str, Any]] = []
        reference: list[dict[str, Any]] = []
        folders = []
        skipped = []
        for pair in pairs:
            if self.deadline is not None and \
                    _now() + self.expected_seconds(pair, pair in speed_pairs) > self.deadline:
                skipped.append(pair)
                continue
            sides = [self.candidate]
            if self.reference is not None and pair in speed_pairs:
                sides.insert(0 if reference_first else 1, self.reference)
            started = _now()
            for side in sides:
                records, folder = self._run(side, pair)
                if side is self.reference:
                    reference += records
                else:
                    candidate += records
                    folders.append(folder)
            self.pair_seconds.setdefault(pair, _now() - started)
        read = [pair for pair in pairs if pair not in skipped]
        if not read:
            return Reading(name, None, [], {}, [], [], skipped)
        reading = self._judge(name, read, speed_pairs & set(read), candidate, reference,
                              next((f for f in folders if f is not None), None))
        reading.skipped = skipped
        return reading

    def expected_seconds(self, pair: Pair, ab: bool = True) -> float:
        """What a reading of `pair` is expected to take: what its first reading took; before
        that, the baseline's run time for it (one run a side) scaled by how much longer
        this host took than the baseline for the pairs read so far.

        Args:
            pair: the (model, backend).
            ab: the reading runs the reference too, not the candidate alone.
        """
        if pair in self.pair_seconds:
            return self.pair_seconds[pair]
        sides = 2 if ab and self.reference is not None else 1
        estimated = {read: self._baseline_seconds(read) * sides for read in self.pair_seconds}
        scale = (sum(self.pair_seconds.values()) / sum(estimated.values())
                 if sum(estimated.values()) > 0 else 1.0)
        return self._baseline_seconds(pair) * sides * scale

    def _baseline_seconds(self, pair: Pair) -> float:
        """The mean run time of `pair` in the baseline (0 when it holds none)."""
        times = [r[schema.WALL_S] for r in self.baseline if (r["model"], r["backend"]) == pair
                 and schema.succeeded(r) and r.get(schema.WALL_S)]
        return statistics.fmean(times) if times else 0.0

    def _judge(self, name: str, pairs: list[Pair], speed_pairs: set[Pair],
               candidate: list[dict[str, Any]], reference: list[dict[str, Any]],
               folder: Path | None) -> Reading:
        baseline = [r for r in self.baseline if (r["model"], r["backend"]) in pairs]
        check_comparable(baseline, candidate)
        now = f"{self.candidate.label}, {name}"
        against_baseline = compare_records(baseline, candidate, BASELINE_THRESHOLDS,
                                           worst_of_a=(ANON_MEMORY,))
        comparisons = [(against_baseline, f"baseline {self.baseline_name}", now)]
        figures = _judged_figures(against_baseline, set(BASELINE_THRESHOLDS) - {NORMALISED})
        notes = []
        speed = None
        if self.reference is not None and speed_pairs:
            judged = _judgeable_pairs(reference, speed_pairs, self.reference.commit)
            notes = [f"{model} {backend} ({name}): the reference run failed, so its speed is "
                     f"not judged" for model, backend in sorted(speed_pairs - judged)]
            ab_reference = [r for r in reference if (r["model"], r["backend"]) in judged]
            ab_candidate = [r for r in candidate if (r["model"], r["backend"]) in judged]
            check_comparable(ab_reference, ab_candidate, what="reference")
            speed = (compare_records(ab_reference, ab_candidate, SPEED_THRESHOLDS),
                     f"{self.reference.label}, {name}", now)
        elif self.speed_from_baseline:
            speed = (compare_records(baseline, candidate, SPEED_THRESHOLDS),
                     f"baseline {self.baseline_name} (same CPU model)", now)
        if speed is not None:
            comparisons.append(speed)
            figures.update(_judged_figures(speed[0], {NORMALISED}))
        failed = [f"{change.run_id} ({name}): {change.verdict}"
                  for change in against_baseline.run_changes if change.regression]
        return Reading(name, folder, comparisons, figures, failed, notes)

    def affordable(self, pairs: Collection[Pair]) -> set[Pair]:
        """The pairs whose next reading fits before the deadline, the cheapest first."""
        if self.deadline is None:
            return set(pairs)
        left = self.deadline - _now()
        chosen = set()
        for pair in sorted(pairs, key=self.expected_seconds):
            left -= self.expected_seconds(pair)
            if left < 0:
                break
            chosen.add(pair)
        return chosen

    def scope(self, reason: str) -> str:
        """One line: what speed and memory are judged against, and why."""
        if self.reference is not None:
            return (f"speed: {self.candidate.label} against {self.reference.label} (the "
                    f"baseline's commit), both measured now on this host ({cpu_model()}); "
                    f"memory: against the committed baseline's highest reading; run status: "
                    f"against the committed baseline")
        cpus = ", ".join(sorted(map(str, _ok_cpus(self.baseline))))
        if self.speed_from_baseline:
            return (f"the reference cannot be run ({reason}): speed is judged against the "
                    f"baseline's own figures, measured on this CPU model ({cpus})")
        return (f"the reference cannot be run ({reason}): speed is NOT judged (the baseline "
                f"measured it on {cpus}, this host is {cpu_model()}); memory is judged against "
                f"the baseline's highest reading, run status against the baseline")


def _judgeable_pairs(reference: list[dict[str, Any]], speed_pairs: set[Pair],
                     commit: str | None) -> set[Pair]:
    """The speed pairs whose reference run succeeded, on the reference's own code."""
    return {(r["model"], r["backend"]) for r in reference
            if schema.succeeded(r) and (r["model"], r["backend"]) in speed_pairs
            and (r.get(schema.ENV) or {}).get("suite_commit") == commit}


def _open_reference(baseline: list[dict[str, Any]], stack: ExitStack) -> tuple[Side | None, str]:
    """The reference side, checked out until `stack` closes; or None and why not."""
    try:
        commit = reference_commit(baseline)
        tree = stack.enter_context(reference_worktree(commit))
    except ReferenceUnavailable as error:
        return None, str(error)
    return reference_side(tree, commit), ""


def _now() -> float:
    """The check's clock, in seconds (monotonic)."""
    return time.monotonic()


def check(baseline_dir: Path, out_root: Path, run_options: list[str],
          budget_s: float | None = None) -> int:
    """Runs the readings, confirms what regressed, prints the verdict.

    Args:
        baseline_dir: the committed baseline's folder.
        out_root: parent of every run's folder.
        run_options: benchmarks.run options after `--preset ci`.
        budget_s: seconds from now by which every reading must be done (CI's time limit,
            less what came before). A pair of the first reading that would not fit is not
            run, and a suspect figure whose next reading would not fit stays undecided;
            either passes with a warning. None: no limit.

    Returns:
        The exit status: 0 pass, 1 a confirmed regression.
    """
    baseline = read_records(baseline_dir)
    pairs = preset_pairs(run_options)
    with ExitStack() as stack:
        reference, reason = _open_reference(baseline, stack)
        state = Check(baseline, str(baseline_dir), candidate_side(), reference, out_root,
                      run_options, None if budget_s is None else _now() + budget_s)
        scope = state.scope(reason)
        print(scope, flush=True)
        readings = [state.read("run", pairs, set(pairs))]
        seen, out_of_time = _confirm(state, pairs, readings)
    first = readings[0]
    ab = reference is not None
    outcomes = {key: _outcome(figure, ab) for key, figure in seen.items()}
    confirmed = sorted(key for key, outcome in outcomes.items() if outcome is Decision.REGRESSED)
    undecided = sorted(key for key, outcome in outcomes.items() if outcome is Decision.UNDECIDED)
    notes = [note for reading in readings for note in reading.notes]
    notes += [f"regressed in the run, not confirmed by its reruns (noise, not judged): "
              f"{d.model} {d.backend} {d.measure.title}: {d.verdict}; "
              + _summary(seen[key], ab)
              for key, d in sorted(first.regressed.items())
              if outcomes[key] is Decision.SAME]
    failures = [line for reading in readings for line in reading.failed_runs]
    for key in confirmed:
        first_reading = seen[key][0]
        against = "reference" if first_reading.measure.kind == NORMALISED and ab else "baseline"
        failures.append(f"{first_reading.model} {first_reading.backend} "
                        f"{first_reading.measure.title} against the {against}: "
                        + _summary(seen[key], ab))
    warnings = [f"WARNING: undecided after {len(seen[key])} readings, passed: {key[0]} {key[1]} "
                f"{seen[key][0].measure.title}: " + _summary(seen[key], ab) for key in undecided]
    if first.skipped:
        warnings.append(f"WARNING: not read within the check's time budget ({budget_s:.0f} s), "
                        f"so their speed, memory and run status are not judged: "
                        + ", ".join(f"{model} {backend}" for model, backend in first.skipped))
    warnings += [f"WARNING: not decided within the check's time budget ({budget_s:.0f} s), "
                 f"passed after {len(seen[key])} reading(s): {key[0]} {key[1]} "
                 f"{seen[key][0].measure.title}: " + _summary(seen[key], ab)
                 for key in sorted(out_of_time)]
    if failures:
        verdict = (f"\nFAIL: {len(failures)} regression(s); {REFRESH}.\n"
                   + "".join(f"- {line}\n" for line in failures))
    else:
        verdict = "\nPASS: no regression.\n"

    def report(markdown: bool) -> str:
        tables = "\n\n".join(render(comparison, name_a, name_b, markdown)
                             for reading in readings
                             for comparison, name_a, name_b in reading.comparisons)
        listed = "".join(f"- {note}\n" for note in notes)
        cautions = "".join(f"{line}\n" for line in warnings)
        return (f"{scope}\n\n{tables}" + (f"\nNotes:\n{listed}" if listed else "")
                + (f"\n{cautions}" if cautions else "") + verdict)

    if first.folder is not None:
        (first.folder / "comparison.md").write_text(report(markdown=True), encoding="utf-8")
    print()
    print(report(markdown=False), end="")
    return 1 if failures else 0


def _summary(readings: list[Delta], ab: bool) -> str:
    """How a suspect figure read over its readings, as its rule judged it."""
    digits = readings[0].measure.digits
    if ab and readings[0].measure.kind == NORMALISED:
        pairs = _speed_pairs(readings)
        slowdowns = ", ".join(f"{slowdown(p):+.1%}" for p in pairs)
        median = statistics.median(slowdown(p) for p in pairs)
        p_value = (f"; Mann-Whitney p = {SPEED_RULE.p_value(pairs):.3f}"
                   if len(pairs) == SPEED_RULE.max_readings else "")
        return (f"candidate slower by {slowdowns} in {len(pairs)} A/B reading(s), median "
                f"{median:+.1%} (the rule: same at ≤ {SPEED_RULE.trigger:.0%}, regressed at "
                f"p ≤ {SPEED_RULE.alpha} after {SPEED_RULE.max_readings}){p_value}")
    best = best_of_readings(readings)
    return (f"{best.verdict}, each side at its best of {best.runs_b} reading(s): "
            f"{best.b:,.{digits}f} against {best.a:,.{digits}f}")


def _confirm(state: Check, pairs: list[Pair],
             readings: list[Reading]) -> tuple[dict[Key, list[Delta]], set[Key]]:
    """Measures the first reading's suspects again until each is confirmed or cleared, or
    its next reading would not fit before the check's deadline.

    Appends each new reading to `readings`.

    Returns:
        Per suspect figure, the figure in every reading that measured it, the first
        included; and the figures left undecided for lack of time.
    """
    suspects = readings[0].regressed
    seen = {key: [delta] for key, delta in suspects.items()}
    if suspects:
        print(f"\n{len(suspects)} figure(s) regressed; measuring "
              f"{', '.join(f'{b} {m}' for m, b in sorted({k[:2] for k in suspects}))} up to "
              f"{CONFIRMATION_RUNS} more times to confirm", flush=True)
    out_of_time: set[Key] = set()
    for number in range(1, CONFIRMATION_RUNS + 1):
        pending = [key for key, figure in seen.items() if key not in out_of_time
                   and _outcome(figure, state.reference is not None) is Decision.MORE]
        suspect_pairs = state.affordable({key[:2] for key in pending})
        out_of_time.update(key for key in pending if key[:2] not in suspect_pairs)
        pending = [key for key in pending if key[:2] in suspect_pairs]
        if not pending:
            break
        speed_pairs = {key[:2] for key in pending if suspects[key].measure.kind == NORMALISED}
        again = state.read(f"rerun {number}", [p for p in pairs if p in suspect_pairs],
                           speed_pairs, reference_first=number % 2 == 0)
        readings.append(again)
        out_of_time.update(key for key in pending if key[:2] in again.skipped)
        for key in pending:
            if key in again.figures:
                seen[key].append(again.figures[key])
    return seen, out_of_time


def write_baseline(baseline_dir: Path, out_root: Path, repeats: int) -> int:
    """Runs the full preset `repeats` times and writes the results as the new baseline.

    Returns:
        The exit status: 0 when written; 1 when a run failed or carried injected faults;
        2 when the tree has uncommitted changes (the baseline must name a commit the
        check can check out). The baseline is unchanged unless 0.
    """
    candidate = candidate_side()
    if candidate.commit is None or candidate.commit.endswith("-dirty"):
        print(f"error: the baseline names the commit it measured, which later checks run as "
              f"their reference, but this tree is {candidate.commit or 'not a git checkout'}: "
              f"commit (or stash) the changes first; the baseline is unchanged",
              file=sys.stderr)
        return 2
    records = []
    for number in range(1, repeats + 1):
        print(f"=== baseline run {number}/{repeats}", flush=True)
        status, folder = run_preset(candidate, out_root, [])
        if status != 0 or folder is None:
            print("error: not every run succeeded; the baseline is unchanged", file=sys.stderr)
            return 1
        records += read_records(folder)
    if any(r.get(schema.TEST_INJECTION) for r in records):
        print("error: test fault injection is active; the baseline is unchanged",
              file=sys.stderr)
        return 1
    baseline_dir.mkdir(parents=True, exist_ok=True)
    target = baseline_dir / RESULTS_FILE
    target.unlink(missing_ok=True)
    for record in records:
        append_record(baseline_dir, record)
    print(f"\nbaseline written: {target} ({repeats} runs of the ci preset of "
          f"{candidate.commit[:12]}); review it, then commit it: git add {target}")
    return 0
