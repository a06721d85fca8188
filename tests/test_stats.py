"""Summaries, intervals and the paired framework tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks.analysis.stats import (
    format_p,
    mcnemar_exact,
    paired_accuracy_test,
    seed_replicates,
    summarize,
)
from tests.report_fixtures import make_record


def test_summarize_gives_the_t_interval_and_ignores_missing_values():
    summary = summarize([0.70, None, 0.74, float("nan"), 0.72])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.72)
    assert summary.std == pytest.approx(0.02)
    half = 4.302652729749464 * 0.02 / math.sqrt(3)  # t(0.975, df=2)
    assert (summary.ci_low, summary.ci_high) == pytest.approx((0.72 - half, 0.72 + half))
    assert summary.half_width == pytest.approx(half)


def test_summarize_small_samples():
    assert summarize([]).mean is None
    one = summarize([3.0])
    assert (one.mean, one.std, one.ci_low, one.half_width) == (3.0, None, None, None)
    with pytest.raises(ValueError, match="confidence must be in"):
        summarize([1.0, 2.0], confidence=95)


def test_seed_replicates_average_folds_within_a_seed():
    runs = [{"seed": s, "fold": f, "v": s * 10 + f} for s in (0, 1) for f in (0, 1)]
    assert seed_replicates(runs, lambda r: r["v"]) == [0.5, 10.5]
    one_seed = [r for r in runs if r["seed"] == 1]
    assert seed_replicates(one_seed, lambda r: r["v"]) == [10, 11]


def test_mcnemar_exact_is_a_binomial_test_on_discordant_images():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, 1], bool)
    only_a, only_b, p_value = mcnemar_exact(a, b)
    assert (only_a, only_b) == (4, 1)
    assert p_value == pytest.approx(scipy_stats.binomtest(4, 5, 0.5).pvalue)
    assert mcnemar_exact(a, a)[2] == 1.0


def test_one_seed_uses_mcnemar_and_pools_folds():
    tf = [make_record("tf", "m", 0, accuracy=0.9, fold=f) for f in range(3)]
    torch = [make_record("torch", "m", 0, accuracy=0.3, fold=f) for f in range(3)]
    test = paired_accuracy_test(tf, torch, "tf", "torch")
    assert test.test == "McNemar exact"
    assert "360 test images" in test.statement  # 3 folds × 120 images, each once
    assert test.significant and test.statement.startswith("tf is significantly more accurate")


def test_several_seeds_use_a_paired_t_test():
    tf = [make_record("tf", "m", s, accuracy=0.7) for s in range(3)]
    torch = [make_record("torch", "m", s, accuracy=0.7) for s in range(3)]
    test = paired_accuracy_test(tf, torch, "tf", "torch")
    expected = scipy_stats.ttest_rel([r["metrics"]["accuracy"] for r in torch],
                                     [r["metrics"]["accuracy"] for r in tf]).pvalue
    assert test.test == "paired t-test"
    assert test.p_value == pytest.approx(expected)
    assert test.statement.endswith(f"{format_p(expected)})")


def test_degenerate_pairs_are_explained_not_crashed():
    tf = [make_record("tf", "m", s) for s in range(2)]
    same = paired_accuracy_test(tf, tf, "tf", "torch")
    assert same.p_value == 1.0 and "equal accuracy with every one of 2 seeds" in same.statement
    assert paired_accuracy_test(tf, [], "tf", "torch").p_value is None
    no_predictions = [{**r, "test_predictions": None} for r in tf[:1]]
    assert "lack per-image" in paired_accuracy_test(no_predictions, tf[:1], "a", "b").statement


def test_format_p():
    assert [format_p(p) for p in (0.4123, 0.0432, 0.0041, 0.0002)] == [
        "p = 0.41", "p = 0.043", "p = 0.0041", "p < 0.001"]
