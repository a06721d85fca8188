"""Statistics over repeated runs: summaries with intervals, and paired framework tests.

Replicates are seeds. With k-fold protocols a seed's figure is first averaged over its
folds, because the folds of one seed share a training recipe and are not independent
repetitions of the experiment; with a single seed the folds themselves are the replicates.

Paired tests compare two backends on the *same* test images (docs/reports.md, Statistics):

* one seed: McNemar's exact test (a binomial test on the discordant images, those right
  with one framework and wrong with the other). With k folds each image is tested once,
  so the folds' predictions are pooled into one paired sample.
* several seeds: a paired t-test on the per-seed accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05


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


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired accuracy test of backend `b` against backend `a`.

    Attributes:
        test: "McNemar exact" or "paired t-test"; None when no test could be made.
        p_value: two-sided p-value; None when no test could be made.
        statement: the result in words, e.g. "no significant difference between tf and
            torch (…; p = 0.41)", or why no test was made.
        significant: whether p < alpha.
    """

    test: str | None
    p_value: float | None
    statement: str
    significant: bool = False


def format_p(p_value: float) -> str:
    """p-values as reviewers read them: "p = 0.41", "p = 0.043", "p < 0.001"."""
    if p_value < 0.001:
        return "p < 0.001"
    # Two significant digits; fixed-point above 0.1 so that 1 reads "1.00".
    return f"p = {p_value:.2f}" if p_value >= 0.1 else f"p = {p_value:.2g}"


def _verdict(name_a: str, name_b: str, difference: float, p_value: float, alpha: float,
             evidence: str, test: str) -> PairedTest:
    significant = p_value < alpha
    if significant:
        better, worse = (name_b, name_a) if difference > 0 else (name_a, name_b)
        head = f"{better} is significantly more accurate than {worse}"
    else:
        head = f"no significant difference between {name_a} and {name_b}"
    return PairedTest(test=test, p_value=p_value, significant=significant,
                      statement=f"{head} ({test}, {evidence}; {format_p(p_value)})")


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


def paired_accuracy_test(
    runs_a: Sequence[dict[str, Any]],
    runs_b: Sequence[dict[str, Any]],
    name_a: str,
    name_b: str,
    alpha: float = DEFAULT_ALPHA,
) -> PairedTest:
    """Tests whether two backends' accuracies on the same test images differ.

    Runs are paired by (seed, fold); unpaired runs are left out.

    Args:
        runs_a: ok records of backend `name_a` for one (dataset, model).
        runs_b: ok records of backend `name_b` for the same (dataset, model).
        name_a: the first backend's name, for the statement.
        name_b: the second backend's name.
        alpha: significance level.

    Returns:
        The test's outcome; with no paired runs, or records that lack per-image
        predictions, a PairedTest without p-value that says why.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1). Received: alpha={alpha!r}")
    by_unit_a = {_unit(r): r for r in runs_a}
    by_unit_b = {_unit(r): r for r in runs_b}
    units = sorted(set(by_unit_a) & set(by_unit_b), key=repr)
    if not units:
        return PairedTest(None, None, f"not tested: no successful {name_a} and {name_b} runs "
                                      "with the same seed and fold")
    seeds = sorted({seed for seed, _ in units}, key=repr)
    if len(seeds) == 1:
        return _mcnemar_over_folds([by_unit_a[u] for u in units], [by_unit_b[u] for u in units],
                                   name_a, name_b, alpha)
    accuracy_a, accuracy_b = [], []
    for seed in seeds:
        seed_units = [u for u in units if u[0] == seed]
        accuracy_a.append(np.mean([by_unit_a[u]["metrics"]["accuracy"] for u in seed_units]))
        accuracy_b.append(np.mean([by_unit_b[u]["metrics"]["accuracy"] for u in seed_units]))
    differences = np.asarray(accuracy_b) - np.asarray(accuracy_a)
    evidence = (f"{len(seeds)} seeds, mean accuracy difference {name_b} − {name_a} = "
                f"{differences.mean():+.4f}")
    # A t-test needs spread: identical differences in every seed leave it undefined.
    if np.ptp(differences) < 1e-12:
        if abs(differences[0]) < 1e-12:
            return PairedTest("paired t-test", 1.0, f"no difference between {name_a} and "
                              f"{name_b}: equal accuracy with every one of {len(seeds)} seeds")
        return PairedTest(None, None, f"not tested: {name_b} − {name_a} accuracy is "
                          f"{differences[0]:+.4f} with every seed, so a t-test is undefined")
    p_value = float(scipy_stats.ttest_rel(accuracy_b, accuracy_a).pvalue)
    return _verdict(name_a, name_b, float(differences.mean()), p_value, alpha, evidence,
                    "paired t-test")


def _mcnemar_over_folds(runs_a, runs_b, name_a, name_b, alpha) -> PairedTest:
    correct_a, correct_b = [], []
    for run_a, run_b in zip(runs_a, runs_b, strict=True):
        labels_a, labels_b = run_a.get("test_labels"), run_b.get("test_labels")
        if labels_a is None or labels_b is None or run_a.get("test_predictions") is None \
                or run_b.get("test_predictions") is None:
            return PairedTest(None, None, "not tested: the records lack per-image test "
                                          "predictions")
        if labels_a != labels_b:
            return PairedTest(None, None, f"not tested: {name_a} and {name_b} were scored on "
                                          "different test images")
        labels = np.asarray(labels_a)
        correct_a.append(np.asarray(run_a["test_predictions"]) == labels)
        correct_b.append(np.asarray(run_b["test_predictions"]) == labels)
    correct_a, correct_b = np.concatenate(correct_a), np.concatenate(correct_b)
    only_a, only_b, p_value = mcnemar_exact(correct_a, correct_b)
    evidence = (f"{len(correct_a)} test images: {only_a} right only with {name_a}, "
                f"{only_b} only with {name_b}")
    return _verdict(name_a, name_b, only_b - only_a, p_value, alpha, evidence, "McNemar exact")
