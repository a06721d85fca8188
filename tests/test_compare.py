"""benchmarks.compare: deltas, regression rules and the CLI's exit status."""

from __future__ import annotations

import copy
import math

import pytest

from benchmarks import compare
from benchmarks.analysis import comparison
from benchmarks.record.figures import ANON_MEMORY, QUALITY, TIME, measure_for
from tests.report_fixtures import failed_record, grid, slower, write_results


@pytest.fixture(scope="module")
def baseline():
    return grid(seeds=2)


def _cli(tmp_path, records_a, records_b, *flags) -> int:
    a = write_results(tmp_path, records_a)
    b = write_results(tmp_path, records_b)
    return compare.main([str(a), str(b / "results.jsonl"), *flags])


def test_identical_reports_exit_0(tmp_path, baseline, capsys):
    assert _cli(tmp_path, baseline, baseline, "--fail-on-regression") == 0
    assert "0 regressions." in capsys.readouterr().out


def test_a_20_percent_slowdown_exits_1(tmp_path, baseline, capsys):
    assert _cli(tmp_path, baseline, slower(baseline, 1.2), "--fail-on-regression") == 1
    out = capsys.readouterr().out
    assert "REGRESSION (slowdown 20.0% > 10%)" in out
    # Throughput ÷ 1.2 is the same 20% slowdown, counted as time per image.
    assert any("train throughput" in line and "slowdown 20.0%" in line
               for line in out.splitlines())


def test_regressions_only_fail_when_asked_and_beyond_the_threshold(tmp_path, baseline):
    assert _cli(tmp_path, baseline, slower(baseline, 1.2)) == 0
    assert _cli(tmp_path, baseline, slower(baseline, 1.2), "--fail-on-regression",
                "--max-slowdown", "0.25") == 0
    assert _cli(tmp_path, baseline, slower(baseline, 0.5), "--fail-on-regression") == 0


def test_ok_in_a_failed_in_b_is_a_regression(tmp_path, baseline, capsys):
    broken = [failed_record(r["backend"], r["model"], r["seed"])
              if r["run_id"] == "torch-sanet-synthetic-seed1" else r for r in baseline]
    assert _cli(tmp_path, baseline, broken, "--fail-on-regression") == 1
    assert "torch-sanet-synthetic-seed1: REGRESSION (ok in A, not in B)" in \
        capsys.readouterr().out


def test_accuracy_drop_and_memory_growth(baseline):
    worse = copy.deepcopy(baseline)
    for record in worse:
        if record["backend"] == "tf":
            record["metrics"]["accuracy"] -= 0.03
            record["memory"]["peak_host_rss_mb"] *= 1.05
    regressions = comparison.compare_records(baseline, worse).regressions
    assert any("tf accuracy: REGRESSION (drop 0.030 > 0.02)" in r for r in regressions)
    assert not any("peak host RSS" in r for r in regressions)
    loose = comparison.compare_records(baseline, worse, {QUALITY: 0.05, TIME: math.inf})
    assert loose.regressions == []


def test_worst_of_a_judges_b_against_a_s_least_favourable_replicate(baseline):
    # Seeds 0 and 1 of A hold 1000 and 1100 MB; B holds 1130 MB: +7.6% on the mean of A
    # (a regression at 6%), +2.7% on A's worst replicate (none).
    noisy, fatter = copy.deepcopy(baseline), copy.deepcopy(baseline)
    for a, b in zip(noisy, fatter, strict=True):
        a["memory"]["peak_anon_rss_mb"] = 1000.0 + 100.0 * a["seed"]
        b["memory"]["peak_anon_rss_mb"] = 1130.0
    limits = {ANON_MEMORY: 0.06}
    on_mean = comparison.compare_records(noisy, fatter, limits)
    on_worst = comparison.compare_records(noisy, fatter, limits, worst_of_a=(ANON_MEMORY,))
    assert any("peak anonymous RSS (MB): REGRESSION (growth 7.6% > 6%)" in r
               for r in on_mean.regressions)
    assert not any("anonymous" in r for r in on_worst.regressions)
    delta = next(d for d in on_worst.deltas if d.measure.key == "memory.peak_anon_rss_mb")
    assert delta.a == 1100.0
    # Higher is better for accuracy: its least favourable replicate is the lowest.
    lowest = comparison.compare_records(noisy, fatter, worst_of_a=(QUALITY,))
    accuracy = next(d for d in lowest.deltas if d.measure.key == "metrics.accuracy")
    assert accuracy.a == min(r["metrics"]["accuracy"] for r in noisy
                             if (r["dataset"], r["model"], r["backend"]) ==
                             (accuracy.dataset, accuracy.model, accuracy.backend))


def test_missing_figures_and_runs_are_listed_not_judged(baseline):
    fewer = [r for r in baseline if r["model"] != "sanet"]
    result = comparison.compare_records(baseline, fewer)
    assert result.regressions == []
    assert {c.verdict for c in result.run_changes} == {"only in A"}
    sanet = [d for d in result.deltas if d.model == "sanet"]
    assert sanet and all(d.b is None and d.change == "—" for d in sanet)


def test_context_lists_version_changes(baseline):
    upgraded = copy.deepcopy(baseline)
    for record in upgraded:
        record["env"]["python"] = "3.12.1"
    context = comparison.compare_records(baseline, upgraded).context
    assert ("tf", "env.python", "3.11.7", "3.12.1") in context


def test_bad_input_and_thresholds_exit_2(tmp_path, baseline, capsys):
    folder = write_results(tmp_path, baseline)
    assert compare.main([str(folder), str(tmp_path / "nowhere")]) == 2
    assert "no results file" in capsys.readouterr().err
    for bad in ("-1", "nan"):
        assert compare.main([str(folder), str(folder), "--max-slowdown", bad]) == 2
        assert "--max-slowdown must be a number ≥ 0" in capsys.readouterr().err


def test_best_of_readings_takes_each_sides_best_and_skips_loaded_readings():
    speed = measure_for("timing.train_img_per_calibration")
    memory = measure_for("memory.peak_anon_rss_mb")

    def delta(measure, a, b, under_load=()):
        limit = 0.15 if measure is speed else 0.06
        return comparison.Delta("synthetic", "vgg16", "tf", measure, a, b, 1, 1,
                                comparison._worse_by(measure, a, b), limit, under_load)

    # Speed: the fastest of each side. 2.0 → 2.6 on the reference, 1.8 → 2.4 on the
    # candidate: 2.6 / 2.4 − 1 = 8.3% slower, under the bar, though two pairs regressed.
    best = comparison.best_of_readings([delta(speed, 2.6, 2.0), delta(speed, 2.0, 2.4),
                                        delta(speed, 2.5, 1.8)])
    assert (best.a, best.b, best.runs_b) == (2.6, 2.4, 3)
    assert best.worse_by == pytest.approx(2.6 / 2.4 - 1) and not best.regression
    # Memory: the lowest reading of the candidate against the fixed bar.
    best = comparison.best_of_readings([delta(memory, 100, 120), delta(memory, 100, 110)])
    assert best.worse_by == pytest.approx(0.10)
    assert best.b == 110 and best.regression
    # A reading under load is left out; if every one is, the first stands (not judged).
    best = comparison.best_of_readings([delta(speed, 2.6, 2.0),
                                        delta(speed, 2.6, 3.0, under_load=("B",))])
    assert best.b == 2.0 and best.regression
    only_loaded = comparison.best_of_readings([delta(speed, 2.6, 2.0, under_load=("B",))])
    assert only_loaded.under_load == ("B",) and not only_loaded.regression
