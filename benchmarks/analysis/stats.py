"""Statistics over repeated runs: summaries with intervals, and the framework verdict.

Replicates are seeds. With k-fold protocols a seed's figure is first averaged over its
folds, because the folds of one seed share a training recipe and are not independent
repetitions of the experiment; with a single seed the folds themselves are the replicates.

Two trained models always differ: float rounding, amplified over hundreds of chaotic
steps, makes any two runs differ, two runs of one framework included. So the framework
question is answered over seeds only (`framework_verdict`, docs/reports.md, Statistics):

* one seed: McNemar's exact test (a binomial test on the discordant images, those right
  with one model and wrong with the other; with k folds the folds' predictions are
  pooled) says whether *these two trained models* differ. It is no framework verdict.
* several seeds: the framework effect is the mean paired (a − b) accuracy difference over
  seeds with its t-interval; a paired t-test asks whether it differs from 0, and two
  one-sided t-tests (TOST) whether it lies within ±margin (equivalence).
* twins (each run repeated from initial weights one ulp away, `--twins`): the chaos floor,
  how far one framework's run and its twin lie apart, set against how far the two
  frameworks' runs of the same seed lie apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from benchmarks.record.figures import figures_of

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
# The equivalence margin, in accuracy (a fraction): ±2 accuracy points. Set per invocation
# with `benchmarks.run --equivalence-margin` and recorded in every record, so that it is
# chosen before the results are seen.
DEFAULT_EQUIVALENCE_MARGIN = 0.02
# How the report says to answer the framework question where a run cannot.
SEEDS_ADVICE = "--seeds 5 --twins"
# Verdicts of `framework_verdict`; None where the runs allow none (one seed).
DIFFER, EQUIVALENT, UNDECIDED = "differ", "equivalent", "undecided"


def check_equivalence_margin(margin: Any) -> None:
    """Raises ValueError unless `margin` is an accuracy margin: a number in (0, 1).

    Args:
        margin: the equivalence margin, in accuracy (0.02 is ±2 points).
    """
    if not _is_real(margin) or not 0 < margin < 1:
        raise ValueError("equivalence_margin must be a number in (0, 1), in accuracy (0.02 is "
                         f"±2 points). Received: equivalence_margin={margin!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Summary:
    """Mean, spread and confidence interval of one figure's replicates.

    Attributes:
        n: number of replicates (missing values excluded).
        mean: their mean; None when n is 0.
        std: sample standard deviation (ddof=1); None when n < 2.
        ci_low: lower end of the two-sided t-interval of the mean; None when n < 2.
        ci_high: upper end of that interval; None when n < 2.
    """

    n: int
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (the "±" figure); None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


def _finite(values: Iterable[Any]) -> np.ndarray:
    """The values that are real numbers, as float64 (None and NaN are "not measured")."""
    kept = [float(v) for v in values if v is not None and not _is_nan(v)]
    return np.asarray(kept, dtype=np.float64)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def summarize(values: Iterable[Any], confidence: float = DEFAULT_CONFIDENCE) -> Summary:
    """Summarizes replicate values with a Student-t confidence interval of the mean.

    Args:
        values: one number per replicate; None and NaN entries are ignored.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        A Summary; its std and interval are None with fewer than two values.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1). Received: confidence={confidence!r}")
    data = _finite(values)
    n = len(data)
    if n == 0:
        return Summary(n=0)
    mean = float(data.mean())
    if n == 1:
        return Summary(n=1, mean=mean)
    std = float(data.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return Summary(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half)


def bootstrap_interval(values: Iterable[Any], confidence: float = DEFAULT_CONFIDENCE,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of `values`.

    Each end is a mean of values drawn from `values`, so the interval stays inside their
    range: a positive quantity (a time, a latency) never gets an interval reaching below
    zero, as a t-interval of a skewed sample can.

    Args:
        values: one number per replicate; None and NaN entries are ignored.
        confidence: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples.
        seed: seeds the resampling, so a report renders identically every time.

    Returns:
        (low, high), or None with fewer than two values.
    """
    data = _finite(values)
    if len(data) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def seed_replicates(runs: Sequence[dict[str, Any]], value_of) -> list[float]:
    """One value per replicate: per seed averaged over folds, or per fold for one seed.

    Args:
        runs: ok records of one (dataset, model, backend).
        value_of: maps a record to its number (or None when it was not measured).

    Returns:
        The replicate values, missing ones left out.
    """
    by_seed: dict[Any, list[float]] = {}
    for run in runs:
        value = value_of(run)
        if value is not None and not _is_nan(value):
            by_seed.setdefault(run.get("seed"), []).append(float(value))
    if len(by_seed) == 1:
        return next(iter(by_seed.values()))
    return [float(np.mean(values)) for values in by_seed.values()]


def format_p(p_value: float) -> str:
    """p-values as reviewers read them: "p = 0.41", "p = 0.043", "p < 0.001"."""
    if p_value < 0.001:
        return "p < 0.001"
    # Two significant digits; fixed-point above 0.1 so that 1 reads "1.00".
    return f"p = {p_value:.2f}" if p_value >= 0.1 else f"p = {p_value:.2g}"


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on paired per-image correctness.

    Args:
        correct_a: (N,) bool, image right with the first classifier.
        correct_b: (N,) bool, the same images with the second classifier.

    Returns:
        (images right only with a, images right only with b, two-sided p-value).
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(
            "correct_a and correct_b must be 1-D and of the same length. "
            f"Received shapes: {correct_a.shape} and {correct_b.shape}"
        )
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 0, 0, 1.0
    return only_a, only_b, float(scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def _unit(run: dict[str, Any]) -> tuple[Any, Any]:
    return run.get("seed"), run.get("fold")


def _points(fraction: float) -> str:
    """An accuracy difference in points, signed: 0.0123 → "+1.2"."""
    return f"{100 * fraction:+.1f}"


def tost_p_value(differences: Sequence[float], margin: float) -> float:
    """Two one-sided t-tests (TOST) that the mean of `differences` lies within ±margin.

    The larger of the two one-sided p-values (H0: mean ≤ −margin, H0: mean ≥ +margin);
    below α, the mean is shown to lie inside the margin (equivalently, the 1 − 2α
    t-interval lies inside it).

    Args:
        differences: one paired difference per replicate, at least two, not all equal.
        margin: the equivalence margin, > 0, in the differences' unit.

    Returns:
        The TOST p-value.
    """
    data = _finite(differences)
    if len(data) < 2 or np.ptp(data) == 0:
        raise ValueError("differences must hold at least two values that are not all equal. "
                         f"Received: differences={list(differences)!r}")
    check_equivalence_margin(margin)
    standard_error = float(data.std(ddof=1)) / math.sqrt(len(data))
    mean, df = float(data.mean()), len(data) - 1
    p_above_lower = float(scipy_stats.t.sf((mean + margin) / standard_error, df))
    p_below_upper = float(scipy_stats.t.cdf((mean - margin) / standard_error, df))
    return max(p_above_lower, p_below_upper)


@dataclass(frozen=True)
class Disagreement:
    """How far paired trained models lie apart, averaged over their pairs.

    Attributes:
        pairs: the pairs of runs compared.
        accuracy_difference: the mean absolute test-accuracy difference (a fraction).
        prediction_share: the mean share of test images the two predict differently;
            None when a record lacks per-image predictions.
    """

    pairs: int
    accuracy_difference: float
    prediction_share: float | None

    def describe(self) -> str:
        """"1.2 points of accuracy apart, 6.3% of test images predicted differently"."""
        text = f"{100 * self.accuracy_difference:.1f} points of accuracy apart"
        if self.prediction_share is not None:
            text += f", {self.prediction_share:.1%} of test images predicted differently"
        return text

    @property
    def size(self) -> float:
        """What the chaos floor compares: the prediction share, else the accuracy gap."""
        return self.accuracy_difference if self.prediction_share is None \
            else self.prediction_share


def disagreement(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> Disagreement | None:
    """How far each pair of runs lies apart, averaged over the pairs.

    Args:
        pairs: (record, record) of runs scored on the same test images.

    Returns:
        The Disagreement; None without pairs.
    """
    if not pairs:
        return None
    gaps, shares = [], []
    for first, second in pairs:
        gaps.append(abs(first["metrics"]["accuracy"] - second["metrics"]["accuracy"]))
        predictions = first.get("test_predictions"), second.get("test_predictions")
        if None in predictions or len(predictions[0]) != len(predictions[1]) \
                or first.get("test_labels") != second.get("test_labels"):
            shares.append(None)
        else:
            shares.append(float(np.mean(np.asarray(predictions[0]) != np.asarray(predictions[1]))))
    share = None if None in shares else float(np.mean(shares))
    return Disagreement(len(pairs), float(np.mean(gaps)), share)


@dataclass(frozen=True)
class FrameworkVerdict:
    """What the runs of two backends say about the frameworks, for one (dataset, model).

    Attributes:
        verdict: DIFFER, EQUIVALENT or UNDECIDED over several seeds; None where the runs
            allow no framework verdict (one seed, no paired runs).
        lines: the result in words: the verdict (or what was tested instead), then the
            chaos floor and what to run next, where they apply.
        p_difference: the difference test's two-sided p-value (McNemar exact for one seed,
            the paired t-test over seeds); None when none was made.
        p_equivalence: the TOST p-value against ±margin; None when none was made.
        effect: the per-seed (a − b) accuracy differences' Summary (mean and t-interval);
            None with fewer than two seeds.
        chaos_floor: backend → how far its runs and their twins lie apart.
        cross: how far the two backends' runs of the same seed and fold lie apart.
    """

    verdict: str | None
    lines: tuple[str, ...]
    p_difference: float | None = None
    p_equivalence: float | None = None
    effect: Summary | None = None
    chaos_floor: dict[str, Disagreement] = field(default_factory=dict)
    cross: Disagreement | None = None

    @property
    def statement(self) -> str:
        """The lines as one paragraph."""
        return " ".join(self.lines)


def framework_verdict(
    runs_a: Sequence[dict[str, Any]],
    runs_b: Sequence[dict[str, Any]],
    name_a: str,
    name_b: str,
    alpha: float = DEFAULT_ALPHA,
    margin: float = DEFAULT_EQUIVALENCE_MARGIN,
    twins_a: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
    twins_b: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
) -> FrameworkVerdict:
    """Says whether two backends' accuracies differ, are equivalent, or neither is shown.

    Runs are paired by (seed, fold); twins (`schema.TWIN_OF`) come apart, as (run, twin)
    pairs, and give the chaos floor. With one seed no framework verdict is made: McNemar's
    exact test says whether the two trained models differ. With several, the per-seed
    accuracy differences (a − b, averaged over folds) get a paired t-test and a TOST
    against ±margin. A paired t-test rather than a sign or Wilcoxon test: with 5 seeds
    their smallest two-sided p-value is 2/32 = 0.0625, so they could never reject at 0.05;
    a seed's accuracy averages over every test image, close to normal.

    Args:
        runs_a: ok records of backend `name_a` for one (dataset, model), twins left out.
        runs_b: ok records of backend `name_b` for the same (dataset, model).
        name_a: the first backend's name, for the statement.
        name_b: the second backend's name.
        alpha: significance level, in (0, 1).
        margin: the equivalence margin, in accuracy (a fraction in (0, 1)).
        twins_a: (run, its twin) of backend `name_a`, ok records both.
        twins_b: the same of backend `name_b`.

    Returns:
        The verdict and its statement.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1). Received: alpha={alpha!r}")
    check_equivalence_margin(margin)
    main_a = {_unit(r): r for r in runs_a}
    main_b = {_unit(r): r for r in runs_b}
    units = sorted(set(main_a) & set(main_b), key=repr)
    if not units:
        return FrameworkVerdict(None, (f"not tested: no successful {name_a} and {name_b} runs "
                                       "with the same seed and fold.",))
    cross = disagreement([(main_a[u], main_b[u]) for u in units])
    floor = {name: found for name, pairs in ((name_a, twins_a), (name_b, twins_b))
             if (found := disagreement(pairs)) is not None}
    chaos = _chaos_line(floor, cross, name_a, name_b)
    seeds = sorted({seed for seed, _ in units}, key=repr)
    if len(seeds) == 1:
        found = _mcnemar_over_folds([main_a[u] for u in units], [main_b[u] for u in units],
                                    name_a, name_b, alpha, seeds[0])
        advice = (f"One seed cannot tell a framework effect from run-to-run chaos: no "
                  f"framework verdict; to answer the framework question, run with "
                  f"`{SEEDS_ADVICE}`.")
        return FrameworkVerdict(None, (found[0], *chaos, advice), p_difference=found[1],
                                chaos_floor=floor, cross=cross)
    differences = np.asarray([
        np.mean([main_a[u]["metrics"]["accuracy"] - main_b[u]["metrics"]["accuracy"]
                 for u in units if u[0] == seed]) for seed in seeds])
    folds = len(units) // len(seeds)
    tested = (f"test accuracy, paired by seed over {len(seeds)} seeds"
              + (f" (each the mean of {folds} folds)" if folds > 1 else ""))
    advice = () if floor else ("Chaos floor not measured: `--twins` repeats every run from "
                               "initial weights one ulp away.",)
    if np.ptp(differences) < 1e-12:
        # Neither test is defined without spread.
        line = (f"undecided: {name_a} − {name_b} {tested} is {_points(differences[0])} points "
                "with every seed, so neither a t-test nor TOST is defined.")
        return FrameworkVerdict(UNDECIDED, (line, *chaos, *advice), chaos_floor=floor,
                                cross=cross)
    effect = summarize(differences)
    p_difference = float(scipy_stats.ttest_1samp(differences, 0.0).pvalue)
    p_equivalence = tost_p_value(differences, margin)
    evidence = (f"{name_a} − {name_b} {tested}: {_points(effect.mean)} points "
                f"[95% CI {_points(effect.ci_low)}, {_points(effect.ci_high)}]")
    within = f"±{100 * margin:g} points"
    difference = f"paired t-test {format_p(p_difference)}"
    equivalence = f"TOST against {within} {format_p(p_equivalence)}"
    if p_equivalence < alpha:
        verdict = EQUIVALENT
        head = f"equivalent within {within} ({equivalence})"
        tail = (f"; the difference, though inside the margin, is significant ({difference})"
                if p_difference < alpha else f" ({difference})")
        line = f"{head}: {evidence}{tail}."
    elif p_difference < alpha:
        verdict = DIFFER
        better, worse = (name_a, name_b) if effect.mean > 0 else (name_b, name_a)
        line = (f"the frameworks differ: {better} is more accurate than {worse} by "
                f"{abs(100 * effect.mean):.1f} points ({difference}; {equivalence}): "
                f"{evidence}.")
    else:
        verdict = UNDECIDED
        line = (f"undecided: neither a difference ({difference}) nor equivalence within "
                f"{within} ({equivalence}) is shown: {evidence}; more seeds narrow the "
                "interval.")
    return FrameworkVerdict(verdict, (line, *chaos, *advice), p_difference, p_equivalence,
                            effect, floor, cross)


def _chaos_line(floor: dict[str, Disagreement], cross: Disagreement | None, name_a: str,
                name_b: str) -> tuple[str, ...]:
    """The chaos floor against the frameworks' disagreement, in words; () without twins."""
    if not floor or cross is None:
        return ()
    twins = "; ".join(f"{name} and its twin: {found.describe()} ({found.pairs} "
                      f"pair{'s' if found.pairs != 1 else ''})" for name, found in floor.items())
    worst = max(found.size for found in floor.values())
    what = "prediction share" if cross.prediction_share is not None else "accuracy gap"
    exceeds = "exceeds" if cross.size > worst else "does not exceed"
    return (f"Chaos floor (each run repeated from initial weights one ulp away): {twins}. "
            f"{name_a} and {name_b} with the same seed: {cross.describe()}, which {exceeds} "
            f"the chaos floor ({what} {_share(cross.size)} against {_share(worst)}).",)


def _share(value: float) -> str:
    return f"{value:.1%}"


def _mcnemar_over_folds(runs_a, runs_b, name_a, name_b, alpha, seed) -> tuple[str, float | None]:
    """McNemar's exact test on the pooled folds of one seed, as (statement, p-value)."""
    correct_a, correct_b = [], []
    for run_a, run_b in zip(runs_a, runs_b, strict=True):
        labels_a, labels_b = run_a.get("test_labels"), run_b.get("test_labels")
        if labels_a is None or labels_b is None or run_a.get("test_predictions") is None \
                or run_b.get("test_predictions") is None:
            return "not tested: the records lack per-image test predictions.", None
        if labels_a != labels_b:
            return (f"not tested: {name_a} and {name_b} were scored on different test "
                    "images.", None)
        labels = np.asarray(labels_a)
        correct_a.append(np.asarray(run_a["test_predictions"]) == labels)
        correct_b.append(np.asarray(run_b["test_predictions"]) == labels)
    correct_a, correct_b = np.concatenate(correct_a), np.concatenate(correct_b)
    only_a, only_b, p_value = mcnemar_exact(correct_a, correct_b)
    folds = f", {len(runs_a)} folds pooled" if len(runs_a) > 1 else ""
    evidence = (f"McNemar exact on the {len(correct_a)} test images of seed {seed}{folds}: "
                f"{only_a} right only with {name_a}, {only_b} only with {name_b}; "
                f"{format_p(p_value)}")
    head = ("these two trained models differ" if p_value < alpha
            else "these two trained models do not differ detectably")
    return f"{head} ({evidence}).", p_value


def replicate_values(runs: list[dict[str, Any]], key: str) -> list[float]:
    """The replicate values of figure `key` over `runs` (see `seed_replicates`)."""
    return seed_replicates(runs, lambda run: figures_of(run).get(key))


def summarize_figure(runs: list[dict[str, Any]], key: str) -> Summary:
    """Mean, std and 95% interval of figure `key` over the replicates among `runs`."""
    return summarize(replicate_values(runs, key))
