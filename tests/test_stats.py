"""Summaries, intervals and the framework verdict: no verdict from one seed, the effect,
its difference and equivalence tests over seeds, and the chaos floor from twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks.analysis.stats import (
    DIFFER,
    EQUIVALENT,
    UNDECIDED,
    disagreement,
    format_p,
    framework_verdict,
    mcnemar_exact,
    seed_replicates,
    summarize,
    tost_p_value,
)
from tests.report_fixtures import make_record, twin_of


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


def test_one_seed_states_that_the_two_models_differ_and_no_framework_verdict():
    tf = [make_record("tf", "m", 0, accuracy=0.9, fold=f) for f in range(3)]
    torch = [make_record("torch", "m", 0, accuracy=0.3, fold=f) for f in range(3)]
    found = framework_verdict(tf, torch, "tf", "torch")
    assert found.verdict is None and found.p_difference < 0.001
    # 3 folds × 120 images, each once.
    assert found.lines[0].startswith("these two trained models differ (McNemar exact on the "
                                     "360 test images of seed 0, 3 folds pooled")
    assert found.lines[-1].endswith("run with `--seeds 5 --twins`.")
    assert "more accurate" not in found.statement and "framework verdict" in found.statement


def _with_accuracy(records, accuracies):
    for record, accuracy in zip(records, accuracies, strict=True):
        record["metrics"]["accuracy"] = accuracy
    return records


def _seeds(backend, accuracies):
    return _with_accuracy([make_record(backend, "m", s) for s in range(len(accuracies))],
                          accuracies)


def test_several_seeds_give_the_effect_with_its_interval_and_both_tests():
    tf_accuracy = [0.80, 0.74, 0.77, 0.79, 0.75]
    torch_accuracy = [0.78, 0.75, 0.74, 0.80, 0.73]
    found = framework_verdict(_seeds("tf", tf_accuracy), _seeds("torch", torch_accuracy),
                              "tf", "torch")
    differences = np.subtract(tf_accuracy, torch_accuracy)  # tf − torch
    expected = summarize(differences)
    assert (found.effect.mean, found.effect.ci_low, found.effect.ci_high) == pytest.approx(
        (expected.mean, expected.ci_low, expected.ci_high))
    assert found.p_difference == pytest.approx(
        scipy_stats.ttest_rel(tf_accuracy, torch_accuracy).pvalue)
    assert found.p_equivalence == pytest.approx(tost_p_value(differences, 0.02))
    assert f"tf − torch test accuracy, paired by seed over 5 seeds: +{100 * expected.mean:.1f}" \
        in found.statement


@pytest.mark.parametrize("torch_accuracy, verdict, opening", [
    # Close with little spread: inside ±2 points.
    ([0.701, 0.699, 0.702, 0.700, 0.698], EQUIVALENT, "equivalent within ±2 points (TOST"),
    # 9.6 points apart with little spread.
    ([0.60, 0.61, 0.59, 0.60, 0.62], DIFFER,
     "the frameworks differ: tf is more accurate than torch by 9.6 points (paired t-test"),
    # 1 point apart on average, spread over ±10 points: neither is shown.
    ([0.80, 0.60, 0.75, 0.62, 0.68], UNDECIDED, "undecided: neither a difference"),
])
def test_the_verdict_follows_the_two_tests(torch_accuracy, verdict, opening):
    tf = _seeds("tf", [0.70] * 5)
    found = framework_verdict(tf, _seeds("torch", torch_accuracy), "tf", "torch")
    assert found.verdict == verdict and found.lines[0].startswith(opening), found.statement
    assert "Chaos floor not measured: `--twins`" in found.statement


def test_the_margin_decides_equivalence():
    tf, torch = _seeds("tf", [0.70] * 5), _seeds("torch", [0.71, 0.68, 0.72, 0.69, 0.70])
    assert framework_verdict(tf, torch, "tf", "torch", margin=0.05).verdict == EQUIVALENT
    assert framework_verdict(tf, torch, "tf", "torch", margin=0.005).verdict == UNDECIDED
    with pytest.raises(ValueError, match=r"^equivalence_margin must be a number in \(0, 1\), "
                                         r".*Received: equivalence_margin=-1$"):
        framework_verdict(tf, torch, "tf", "torch", margin=-1)


def test_tost_is_significant_exactly_when_the_90_percent_interval_lies_inside_the_margin():
    rng = np.random.default_rng(0)
    for _ in range(200):
        differences = rng.normal(rng.uniform(-0.03, 0.03), rng.uniform(0.001, 0.02), 5)
        interval = summarize(differences, confidence=0.90)
        inside = -0.02 < interval.ci_low and interval.ci_high < 0.02
        assert (tost_p_value(differences, 0.02) < 0.05) == inside, differences


def test_degenerate_pairs_are_explained_not_crashed():
    tf = [make_record("tf", "m", s) for s in range(2)]
    same = framework_verdict(tf, tf, "tf", "torch")
    assert same.verdict == UNDECIDED and "+0.0 points with every seed" in same.statement
    assert framework_verdict(tf, [], "tf", "torch").statement.startswith("not tested")
    no_predictions = [{**r, "test_predictions": None} for r in tf[:1]]
    assert "lack per-image" in framework_verdict(no_predictions, tf[:1], "a", "b").statement


def test_disagreement_counts_images_predicted_differently():
    run = make_record("tf", "m", 0)
    other = {**run, "test_predictions": list(run["test_predictions"]),
             "metrics": {**run["metrics"], "accuracy": run["metrics"]["accuracy"] - 0.05}}
    for index in range(12):  # 12 of 120 images: 10%
        other["test_predictions"][index] = (other["test_predictions"][index] + 1) % 4
    found = disagreement([(run, other)])
    assert (found.pairs, found.prediction_share) == (1, pytest.approx(0.10))
    assert found.accuracy_difference == pytest.approx(0.05)


def test_twins_give_the_chaos_floor_and_stay_out_of_the_pairs():
    tf = make_record("tf", "m", 0, accuracy=0.7)
    torch = make_record("torch", "m", 0, accuracy=0.7)
    # Twins that agree with their run on all but a few images.
    tf_twin, torch_twin = twin_of(tf, changed=3), twin_of(torch, changed=6)
    found = framework_verdict([tf], [torch], "tf", "torch", twins_a=[(tf, tf_twin)],
                              twins_b=[(torch, torch_twin)])
    assert found.chaos_floor["tf"].prediction_share == pytest.approx(3 / 120)
    assert found.chaos_floor["torch"].prediction_share == pytest.approx(6 / 120)
    # The twins change no pair: the same McNemar as without them.
    alone = framework_verdict([tf], [torch], "tf", "torch")
    assert found.p_difference == alone.p_difference and found.verdict is None
    share = disagreement([(tf, torch)]).prediction_share
    assert share > 6 / 120
    assert (f"which exceeds the chaos floor (prediction share {share:.1%} against 5.0%)"
            in found.statement)
    # The frameworks as close as a twin: within the floor.
    near = framework_verdict([tf], [twin_of(tf, changed=2, backend="torch")], "tf", "torch",
                             twins_a=[(tf, tf_twin)], twins_b=[(torch, torch_twin)])
    assert "which does not exceed the chaos floor" in near.statement


def test_format_p():
    assert [format_p(p) for p in (0.4123, 0.0432, 0.0041, 0.0002)] == [
        "p = 0.41", "p = 0.043", "p = 0.0041", "p < 0.001"]
