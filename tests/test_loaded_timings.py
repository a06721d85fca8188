"""Timings taken under load are flagged, not presented as figures (analysis.load)."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.analysis.comparison import compare_records
from benchmarks.analysis.load import (
    LOADED_MARK,
    MAX_OTHERS_CPU_SHARE,
    loaded_run,
    loaded_runs,
    others_cpu_share,
)
from benchmarks.record.store import read_records
from benchmarks.report.comparison import render
from benchmarks.report.data import analyse, headline_rows
from benchmarks.report.html import render_html
from benchmarks.report.markdown import render_markdown
from benchmarks.trackers.timing import OthersCpuClock
from tests.report_fixtures import grid, slower

LOADED_ID = "torch-proposed_cnn-synthetic-seed0"


def with_others(records: list[dict], loaded_share: float = 0.375) -> list[dict]:
    """Copies in which other processes took 1% of every run's CPU, `loaded_share` of
    LOADED_ID's; every run also waited in the run queue for 30% of its training (a TF run's
    own threads on 2 cores), which is information, not load."""
    result = copy.deepcopy(records)
    for record in result:
        share = loaded_share if record["run_id"] == LOADED_ID else 0.01
        record["timing"]["train_others_cpu_share"] = share
        record["timing"]["train_cpu_wait_s"] = 0.3 * record["timing"]["train_wall_s"]
    return result


def test_the_rule_reads_the_share_of_other_processes_not_the_run_queue():
    records = with_others(grid(seeds=1))
    loaded = next(r for r in records if r["run_id"] == LOADED_ID)
    assert others_cpu_share(loaded) == pytest.approx(0.375)
    assert [run.run_id for run in loaded_runs(records)] == [LOADED_ID]
    loaded["timing"]["train_others_cpu_share"] = 0.09  # below the threshold: comparable
    assert loaded_runs(records) == []


def test_a_record_without_the_share_is_not_flagged(tmp_path):
    records = grid(seeds=1)
    for record in records:  # as an older worker wrote them
        del record["timing"]["train_others_cpu_share"]
        record["timing"]["train_cpu_wait_s"] = 0.5 * record["timing"]["train_wall_s"]
    assert all(others_cpu_share(r) is None for r in records)
    assert loaded_runs(records) == []
    assert LOADED_MARK not in render_markdown(analyse(records, tmp_path / "results.jsonl"))
    assert LOADED_MARK not in run.summary_table(records)


def test_report_warns_and_marks_only_the_timings_of_the_loaded_group(tmp_path):
    data = analyse(with_others(grid(seeds=2)), tmp_path / "results.jsonl")
    markdown = render_markdown(data)
    assert f"{LOADED_ID} (other processes took 38% of the CPU)" in markdown
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
    assert f"{LOADED_ID} (other processes took 38% of the CPU)" in html
    assert f"{LOADED_MARK}</td>" in html


def test_compare_does_not_judge_loaded_time_figures_but_judges_the_rest():
    before = with_others(grid(seeds=1))
    after = slower(with_others(grid(seeds=1)), 1.5)
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
    table = run.summary_table(with_others(grid(seeds=1)))
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
    monkeypatch.setattr(run, "run_invocation", _invocation_that_starts)
    assert run.main(["--models", "proposed_cnn", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert ("machine is already busy" in err) == warned


def _invocation_that_starts(*_args, on_start, **_kwargs):
    on_start()
    raise ValueError("no invocation in this test")


def shared(records: list[dict], run_id: str = LOADED_ID) -> list[dict]:
    """Copies in which `run_id` ran beside other runs on its device (a grid's --jobs 2),
    none with an others' CPU figure (as the CPU rule cannot see it)."""
    result = copy.deepcopy(records)
    for record in result:
        del record["timing"]["train_others_cpu_share"]
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


# --- real runs: a quiet machine, and one with a competing process ---------------------------
# Both frameworks, tiny: 3 epochs (2 steady, about a second each) of proposed_cnn on 168
# synthetic faces at 32×32, every core, nothing saved. The workers are this process's
# children, so this process's `OthersCpuClock` around the command sees everyone else.
REAL_RUN = ["--backend", "both", "--models", "proposed_cnn", "--epochs", "3",
            "--synthetic-subjects", "8", "--image-size", "32", "--save-weights", "none",
            "--no-report"]


def _real_runs(out: Path) -> tuple[list[dict], float]:
    """Runs REAL_RUN into `out`; returns its records and the share of the machine's CPU
    capacity processes outside this test's tree used meanwhile."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    clock = OthersCpuClock()
    if not clock.available:
        pytest.skip("needs Linux's /proc/stat")
    started, others_from = time.perf_counter(), clock()
    assert run.main([*REAL_RUN, "--out", str(out)]) == 0
    elapsed_s, others_s = time.perf_counter() - started, clock() - others_from
    (folder,) = out.iterdir()
    records = read_records(folder)
    assert sorted(r["backend"] for r in records) == ["tf", "torch"]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    return records, others_s / (len(clock.cpus) * elapsed_s)


@pytest.mark.slow  # two workers: about 30 s on 2 cores
def test_a_quiet_machine_gives_no_mark_in_either_framework(tmp_path):
    records, background = _real_runs(tmp_path)
    if background > MAX_OTHERS_CPU_SHARE / 2:
        pytest.skip(f"the machine was not quiet: other processes used {background:.0%} of "
                    "its CPU during the runs")
    for record in records:
        # The run-queue figure stays, as information (TF's own threads queue on 2 cores).
        assert record["timing"]["train_cpu_wait_s"] is not None
        assert others_cpu_share(record) <= MAX_OTHERS_CPU_SHARE, record["run_id"]
        assert loaded_run(record) is None
    assert LOADED_MARK not in run.summary_table(records)


@pytest.mark.slow  # two workers beside two CPU-bound processes: about a minute on 2 cores
def test_a_competing_process_marks_the_runs_it_overlapped_in_both_frameworks(tmp_path):
    cores = len(OthersCpuClock().cpus) or 1
    # One spinning process per core: whatever the frameworks' thread pools do, the
    # competitors take a large share of every core for the whole run.
    competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in range(cores)]
    try:
        records, _ = _real_runs(tmp_path)
    finally:
        for competitor in competitors:
            competitor.kill()
            competitor.wait()
    for record in records:
        loaded = loaded_run(record)
        assert loaded is not None, (record["run_id"], others_cpu_share(record))
        assert "other processes took" in loaded.reason
    assert run.summary_table(records).count(LOADED_MARK) == 3  # two runs and the footnote
