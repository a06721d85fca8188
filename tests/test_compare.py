"""benchmarks.compare: deltas, regression rules and the CLI's exit status."""

from __future__ import annotations

import copy
import math

import pytest

from benchmarks import compare
from benchmarks.analysis import comparison
from benchmarks.record.figures import QUALITY, TIME
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
