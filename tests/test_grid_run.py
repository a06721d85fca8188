"""benchmarks.grid end to end on a tiny synthetic grid: local, --jobs, SIGKILL and --resume."""

import json
from collections import Counter

import pytest

from benchmarks.grid import __main__ as grid_cli
from benchmarks.grid.driver import summary_table
from benchmarks.record.layout import GRID_SUMMARY_FILE, RESULTS_FILE
from benchmarks.record.store import read_records
from datasets import fixtures
from tests.grid_specs import TINY_SPEC, kill_after_first_record, start_driver, write_spec


def _folder(out):
    (folder,) = out.iterdir()
    return folder


def test_a_grid_runs_chooses_and_refuses_to_rerun(tmp_path, capsys):
    spec, out = write_spec(tmp_path), tmp_path / "out"
    assert grid_cli.main([str(spec), "--out", str(out)]) == 0
    folder = _folder(out)
    records = read_records(folder)
    assert [r["grid_point"]["learning_rate"] for r in records] == [1e-3, 3e-3]
    assert len({r["run_id"] for r in records}) == 2
    assert all(r["execution"]["exclusive_timing"] and r["execution"]["jobs"] == 1
               for r in records)
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    (choice,) = summary["choices"]
    best = max(records, key=lambda r: r["selection"]["best_val_accuracy"])  # first of ties
    assert choice["point"] == best["grid_point"] and choice["validation"]["n"] == 1
    assert choice["test_accuracy"]["mean"] == best["metrics"]["accuracy"]
    assert choice["defaults"] == {"learning_rate": 1e-3}
    report = (folder / "report.html").read_text()
    assert 'id="study"' in report and 'id="chart-study"' in report
    capsys.readouterr()
    # Every run is done: one line, exit 2, nothing written.
    before = (folder / RESULTS_FILE).read_bytes()
    assert grid_cli.main([str(spec), "--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "every run of grid spec" in err and "already recorded ok" in err
    assert (folder / RESULTS_FILE).read_bytes() == before


@pytest.mark.slow  # 30 s; one-dataset grids stay in the fast run (CI's time, docs/ci.md)
def test_a_grid_over_two_datasets_chooses_on_each(tmp_path, monkeypatch):
    data = tmp_path / "data"
    fixtures.write_ckplus48(data / "ck+", num_subjects=4)
    monkeypatch.setenv("FERBENCH_DATA", str(data))
    text = TINY_SPEC.replace('dataset = "synthetic"', 'datasets = ["synthetic", "ck+"]')
    spec, out = write_spec(tmp_path, text), tmp_path / "out"
    assert grid_cli.main([str(spec), "--out", str(out)]) == 0
    folder = _folder(out)
    assert folder.name.endswith("synthetic-ckplus-grid")
    records = read_records(folder)
    assert [(r["dataset"], r["grid_point"]["learning_rate"]) for r in records] == [
        ("synthetic", 1e-3), ("synthetic", 3e-3), ("ck+", 1e-3), ("ck+", 3e-3)]
    assert records[2]["data"]["fingerprint"] != records[0]["data"]["fingerprint"]
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    assert summary["runs"]["planned"] == summary["runs"]["ok"] == 4
    for dataset in ("synthetic", "ck+"):
        (choice,) = [c for c in summary["choices"] if c["dataset"] == dataset]
        ours = [r for r in records if r["dataset"] == dataset]
        best = max(ours, key=lambda r: r["selection"]["best_val_accuracy"])
        assert choice["point"] == best["grid_point"]
        assert choice["test_accuracy"]["mean"] == best["metrics"]["accuracy"]
    assert {e["dataset"] for e in summary["study"]} == {"synthetic", "ck+"}
    # The closing table tells the datasets' choices apart.
    header = summary_table(summary).splitlines()[0]
    assert header.split()[:3] == ["dataset", "model", "backend"]


@pytest.mark.slow
def test_sigkill_of_the_driver_then_resume_loses_and_duplicates_nothing(tmp_path):
    text = TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]",
                             "learning_rate = [1e-3, 2e-3, 3e-3, 4e-3]")
    spec, out = write_spec(tmp_path, text), tmp_path / "out"
    folder = kill_after_first_record(start_driver(spec, "--out", out), out)
    kept = read_records(folder, on_warning=lambda m: None)
    assert 1 <= len(kept) < 4
    resumed = start_driver(spec, "--resume", folder)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    records = read_records(folder)
    ids = Counter(r["run_id"] for r in records if r["status"] == "ok")
    assert len(ids) == 4 and set(ids.values()) == {1}  # none lost, none duplicated
    assert {r["run_id"] for r in kept} <= set(ids)
    assert json.loads((folder / GRID_SUMMARY_FILE).read_text())["runs"]["ok"] == 4


@pytest.mark.slow
def test_jobs_2_marks_timings_shared_and_summary_only_chooses_again(tmp_path):
    spec, out = write_spec(tmp_path), tmp_path / "out"
    assert grid_cli.main([str(spec), "--out", str(out), "--jobs", "2"]) == 0
    records = read_records(_folder(out))
    assert len(records) == 2
    assert all(not r["execution"]["exclusive_timing"] and r["execution"]["jobs"] == 2
               for r in records)
    folder = _folder(out)
    # The report marks the chosen run's timings as not comparable, the summary counts both.
    assert "shared its device with other runs" in (folder / "report.html").read_text()
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    assert summary["runs"]["timing_not_comparable"] == 2
    before = (folder / RESULTS_FILE).read_bytes()
    # Choosing by another figure (no part of a run's id) runs nothing, chooses again.
    by_loss = write_spec(tmp_path, TINY_SPEC.replace('recipe = "none"',
                                                     'recipe = "none"\nselect_by = "val_loss"'),
                         "by_loss.toml")
    assert grid_cli.main([str(by_loss), "--resume", str(folder), "--summary-only"]) == 0
    assert (folder / RESULTS_FILE).read_bytes() == before
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    best = min(records, key=lambda r: r["selection"]["best_val_loss"])
    assert summary["select_by"] == "val_loss"
    assert summary["choices"][0]["point"] == best["grid_point"]


