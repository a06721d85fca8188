"""Timings taken under load are flagged, not presented as figures (analysis.load)."""

from __future__ import annotations

import copy

import pytest

from benchmarks import run
from benchmarks.analysis.comparison import compare_records, render
from benchmarks.analysis.load import LOADED_MARK, cpu_wait_share, loaded_runs
from benchmarks.report.data import analyse, headline_rows
from benchmarks.report.html import render_html
from benchmarks.report.markdown import render_markdown
from tests.report_fixtures import grid, slower

LOADED_ID = "torch-proposed_cnn-synthetic-seed0"


def with_waits(records: list[dict], loaded_wait_s: float = 5.0) -> list[dict]:
    """Copies with a small CPU wait on every run and `loaded_wait_s` on LOADED_ID.

    The fixtures' steady epochs train 2 × 20/3 s, so 5 s is a share of 37.5%.
    """
    result = copy.deepcopy(records)
    for record in result:
        wait = loaded_wait_s if record["run_id"] == LOADED_ID else 0.1
        record["timing"]["train_cpu_wait_s"] = wait
    return result


def test_share_is_of_the_steady_training_time_per_thread():
    records = with_waits(grid(seeds=1))
    loaded = next(r for r in records if r["run_id"] == LOADED_ID)
    assert cpu_wait_share(loaded) == pytest.approx(5.0 / (2 * 20.0 / 3))
    loaded["threads"] = 5
    assert cpu_wait_share(loaded) == pytest.approx(1.0 / (2 * 20.0 / 3))
    assert loaded_runs([loaded]) == []


def test_a_record_without_cpu_wait_is_not_flagged(tmp_path):
    records = grid(seeds=1)
    for record in records:  # as an older worker wrote them
        del record["timing"]["train_cpu_wait_s"]
    assert all(cpu_wait_share(r) is None for r in records)
    assert loaded_runs(records) == []
    assert LOADED_MARK not in render_markdown(analyse(records, tmp_path / "results.jsonl"))
    assert LOADED_MARK not in run.summary_table(records)


def test_report_warns_and_marks_only_the_timings_of_the_loaded_group(tmp_path):
    data = analyse(with_waits(grid(seeds=2)), tmp_path / "results.jsonl")
    markdown = render_markdown(data)
    assert f"{LOADED_ID} (CPU wait 38% of training)" in markdown
    assert "not comparable" in markdown
    headers, rows = headline_rows(data)
    row = {(r[0], r[1]): dict(zip(headers, r, strict=True)) for r in rows}
    loaded, quiet = row[("proposed_cnn", "torch")], row[("proposed_cnn", "tf")]
    assert loaded["train time (s)"].endswith(LOADED_MARK)
    assert loaded["eval time (s)"].endswith(LOADED_MARK)
    assert not loaded["accuracy"].endswith(LOADED_MARK)
    assert not loaded["peak host RSS (MB)"].endswith(LOADED_MARK)
    assert not quiet["train time (s)"].endswith(LOADED_MARK)
    html = render_html(data, [])
    assert f"{LOADED_ID} (CPU wait 38% of training)" in html
    assert f"{LOADED_MARK}</td>" in html


def test_compare_does_not_judge_loaded_time_figures_but_judges_the_rest():
    before = with_waits(grid(seeds=1))
    after = slower(with_waits(grid(seeds=1)), 1.5)
    for record in after:
        record["memory"]["peak_host_rss_mb"] *= 1.5
    comparison = compare_records(before, after)
    regressions = "\n".join(comparison.regressions)
    assert "proposed_cnn torch train time" not in regressions
    assert "proposed_cnn tf train time (s): REGRESSION" in regressions
    assert "proposed_cnn torch peak host RSS (MB): REGRESSION" in regressions
    delta = next(d for d in comparison.deltas if d.backend == "torch"
                 and d.model == "proposed_cnn" and d.measure.key == "timing.train_wall_s")
    assert delta.under_load == ("A", "B")
    assert "not judged: timings taken under load in A and B" in delta.verdict
    text = render(comparison, "A", "B")
    assert "Timings taken under load" in text
    assert LOADED_ID in text


def test_summary_table_marks_the_loaded_run():
    table = run.summary_table(with_waits(grid(seeds=1)))
    lines = {line.split()[0] + " " + line.split()[1]: line for line in table.splitlines()[2:6]}
    assert lines["proposed_cnn torch"].endswith(f"38% {LOADED_MARK}")
    assert lines["proposed_cnn tf"].endswith("1%")
    assert "not comparable" in table


@pytest.mark.parametrize(("load", "warned"), [(1.0, True), (0.2, False)])
def test_start_warning_when_the_machine_is_busy(monkeypatch, capsys, load, warned):
    monkeypatch.setattr(run.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(run, "available_cores", lambda: 2)
    assert (run.busy_machine_warning() is not None) == warned
    assert run.main(["--list-models"]) == 0
    # Bad input keeps its one line: the warning comes once every check has passed.
    assert run.main(["--epochs", "0"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    monkeypatch.setattr(run, "run_grid", _grid_that_starts)
    assert run.main(["--models", "proposed_cnn", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert ("machine is already busy" in err) == warned


def _grid_that_starts(*_args, on_start, **_kwargs):
    on_start()
    raise ValueError("no grid in this test")


def shared(records: list[dict], run_id: str = LOADED_ID) -> list[dict]:
    """Copies in which `run_id` ran beside other runs on its device (a grid's --jobs 2),
    none waiting for a CPU (no wait figure at all, as the CPU-wait rule cannot see it)."""
    result = copy.deepcopy(records)
    for record in result:
        del record["timing"]["train_cpu_wait_s"]
        record["execution"] = {"executor": "local", "node": "here", "device": "cpu",
                               "exclusive_timing": record["run_id"] != run_id, "jobs": 2}
    return result


def test_a_run_that_shared_its_device_is_marked_like_a_loaded_one(tmp_path):
    records = shared(grid(seeds=1))
    assert [run.run_id for run in loaded_runs(records)] == [LOADED_ID]
    data = analyse(records, tmp_path / "results.jsonl")
    headers, rows = headline_rows(data)
    row = {(r[0], r[1]): dict(zip(headers, r, strict=True)) for r in rows}
    assert row[("proposed_cnn", "torch")]["train time (s)"].endswith(LOADED_MARK)
    assert not row[("proposed_cnn", "torch")]["accuracy"].endswith(LOADED_MARK)
    assert not row[("proposed_cnn", "tf")]["train time (s)"].endswith(LOADED_MARK)
    for text in (render_markdown(data), render_html(data, [])):
        assert f"{LOADED_ID} (shared its device with other runs)" in text
        assert "exclusive_timing false" in text  # the footnote says what the mark means
    table = run.summary_table(records)
    lines = {line.split()[0] + " " + line.split()[1]: line for line in table.splitlines()[2:6]}
    assert lines["proposed_cnn torch"].endswith(f"- {LOADED_MARK}")
    assert not lines["proposed_cnn tf"].endswith(LOADED_MARK)
    comparison = compare_records(grid(seeds=1), slower(records, 1.5))
    assert "proposed_cnn torch train time" not in "\n".join(comparison.regressions)
    assert "shared its device with other runs" in render(comparison, "A", "B")
