"""The commands under hostile conditions (issue 29): output that cannot be written, SIGTERM,
a resume with another spec, huge grids, files that are no recipe, checkpoints that are no
weights, reports with nothing in common. Every bad input is one line and exit 2, and no
finished run is lost.

No training: the workers are stand-ins, the records the report fixtures'.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backends.train_config import TrainConfig
from benchmarks import compare, console, run
from benchmarks.explain import _relative_difference
from benchmarks.grid import __main__ as grid_cli
from benchmarks.grid.spec import MAX_RUNS, load_spec, parse_spec
from benchmarks.record import schema
from benchmarks.record.layout import GRID_SPEC_FILE, GRID_SUMMARY_FILE
from benchmarks.record.store import read_records
from benchmarks.report.artifacts import described_difference
from benchmarks.runner import harness, launch
from benchmarks.runner.config import RunSpec, record_header
from benchmarks.runner.recipe import load_recipe
from benchmarks.runner.toml_files import MAX_TOML_BYTES
from tests.grid_specs import TINY_SPEC, write_spec
from tests.report_fixtures import make_record, write_results

ROOT = Path(__file__).resolve().parent.parent
# benchmarks.run's smallest invocation (tests/test_hostile_runs.py): its runs are stand-ins here.
TINY = ["--preset", "ci", "--backend", "torch", "--models", "proposed_cnn", "--epochs", "1",
        "--save-weights", "none"]


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """No busy-machine warning: these tests count the lines a command prints."""
    monkeypatch.setattr(run, "busy_machine_warning", lambda: None)


@pytest.fixture
def private_temp(tmp_path, monkeypatch) -> Path:
    """A private cache and temporary folder: what a command leaves there is its own."""
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def _one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.strip()


def _stub_worker(spec, on_line):
    """A worker that succeeds at once, without a framework."""
    return {**record_header(spec), "status": "ok", "error": None,
            "metrics": {"accuracy": 0.5}}


# --- output that cannot be written never costs a run ---------------------------------------

def _python(*args: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def two_reports(tmp_path) -> tuple[Path, Path]:
    """Two report folders of the same runs, on a dataset whose name is not ASCII."""
    records = [{**make_record("tf", "proposed_cnn", 0), "dataset": "données→"}]
    return write_results(tmp_path / "a", records), write_results(tmp_path / "b", records)


def test_output_a_stream_cannot_encode_is_escaped_not_an_error(two_reports):
    process = _python("-m", "benchmarks.compare", *map(str, two_reports),
                      env={"PYTHONIOENCODING": "ascii"})
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert b"donn\\xe9es\\u2192" in out and err == b""


def test_a_reader_that_goes_away_ends_nothing_in_a_traceback(two_reports):
    # `| head -1`: the reader is gone before the command has written its output.
    process = _python("-m", "benchmarks.compare", *map(str, two_reports))
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


def test_a_finished_run_is_recorded_before_anything_is_printed_about_it(tmp_path):
    record = make_record("tf", "proposed_cnn", 0)

    def unprintable(line: str) -> None:
        raise UnicodeEncodeError("ascii", line, 0, 1, "ordinal not in range(128)")

    results = launch._Results(tmp_path, "synthetic", unprintable)
    with pytest.raises(UnicodeEncodeError):
        results.keep(record, "run 1/1")
    (folder,) = tmp_path.iterdir()
    assert read_records(folder) == [record]


def test_a_run_under_an_ascii_stdout_is_kept_and_said(tmp_path, private_temp, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(launch, "run_in_worker", _stub_worker)
    raw = io.BytesIO()
    # PYTHONIOENCODING=ascii: a strict ASCII stdout, as the interpreter would make it.
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # run_command replaces it: restored after
    out = tmp_path / "reports"
    status = console.run_command(lambda: run.main([*TINY, "--no-report", "--out", str(out)]))
    sys.stdout.flush()
    assert status == 0
    (folder,) = out.iterdir()
    assert [r["status"] for r in read_records(folder)] == ["ok"]
    assert "results \\u2192 " in raw.getvalue().decode("ascii")


# --- SIGTERM is Ctrl-C ---------------------------------------------------------------------

def _terminated_in_the_second_run(spec, on_line):
    """A worker stand-in: the first run succeeds; SIGTERM comes during the second."""
    if spec.train.seed == 1:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
        pytest.fail("SIGTERM did not interrupt the run")
    return _stub_worker(spec, on_line)


def test_sigterm_records_the_interrupted_run_reports_the_rest_and_exits_143(
        tmp_path, private_temp, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setattr(launch, "run_in_worker", _terminated_in_the_second_run)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "reports"
    assert run.main([*TINY, "--seeds", "2", "--out", str(out)]) == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone
    (folder,) = out.iterdir()
    records = read_records(folder)
    assert [r["status"] for r in records] == [schema.OK, schema.INTERRUPTED]
    assert records[1]["error"] == "interrupted (SIGTERM)"
    assert (folder / "report.html").is_file()
    assert "interrupted (SIGTERM): 1 of 2 runs finished" in capsys.readouterr().out
    assert not list(private_temp.glob("ferbench-*"))  # its temporary folders went


class _StandIn:
    """An executor that returns fabricated records; SIGTERM after the first."""

    def __init__(self, *args) -> None:
        self.ran: list[str] = []

    def describe(self) -> str:
        return "stand-in"

    def run(self, specs, on_line):
        for spec in specs:
            if self.ran and _StandIn.terminate:
                os.kill(os.getpid(), signal.SIGTERM)
            record = make_record(spec.backend, spec.model, spec.train.seed)
            record.update(run_id=spec.run_id, selection={"best_val_accuracy": 0.5,
                                                         "best_val_loss": 0.5})
            self.ran.append(spec.run_id)
            yield spec, record

    terminate = False


@pytest.fixture
def stand_in(monkeypatch, private_temp):
    """benchmarks.grid's local executor replaced by `_StandIn`."""
    pytest.importorskip("torch")
    monkeypatch.setattr(grid_cli, "LocalExecutor", _StandIn)
    monkeypatch.setattr(_StandIn, "terminate", False)
    return _StandIn


def test_sigterm_stops_a_grid_whose_finished_runs_are_chosen_from_and_reported(
        tmp_path, stand_in, capsys):
    stand_in.terminate = True
    out = tmp_path / "reports"
    assert grid_cli.main([str(write_spec(tmp_path)), "--out", str(out)]) == 143
    assert _one_line(capsys.readouterr().err).startswith("interrupted (SIGTERM): what "
                                                         "finished is recorded and reported")
    (folder,) = out.iterdir()
    assert len(read_records(folder)) == 1
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    assert summary["runs"] == {"planned": 2, "ok": 1, "not_ok": 0, "missing": 1,
                               "timing_not_comparable": 0}
    assert (folder / "report.html").is_file()


def test_a_worker_stopped_alone_by_sigterm_is_interrupted_not_failed():
    spec = RunSpec(backend="torch", model="proposed_cnn", dataset="synthetic",
                   prepared_data="/p.npz", train=TrainConfig(), threads=1,
                   data_info={"fingerprint": "f", "split": "holdout-seed0"})
    ended = harness.ProcessExit(None, -signal.SIGTERM, [], interrupted=False, expired=False,
                                oom_kills_before=None)
    record = harness._unfinished_record(spec, ended)
    assert record["status"] == schema.INTERRUPTED
    assert record["error"] == "worker interrupted by SIGTERM"


# --- explain: a map that is not finite is not parity --------------------------------------------

def test_a_map_holding_nan_has_no_difference_and_says_so():
    maps = np.ones((2, 4, 4), np.float32)
    maps[0, 0, 0] = 3.0
    assert _relative_difference(maps, maps) == 0.0
    broken = maps.copy()
    broken[1, 2, 2] = np.nan
    assert _relative_difference(maps, broken) is None
    assert described_difference(None) == "not finite (a map holds NaN or Inf)"
    assert described_difference(float("inf")) == "not finite (inf)"
    assert described_difference(2e-7) == "2.0e-07 of a map's range"


# --- a resume with another spec --------------------------------------------------------------

OTHER_SPEC = TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]", "learning_rate = [1e-2]")


def _grid_folder(tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    assert grid_cli.main([str(write_spec(tmp_path)), "--out", str(out)]) == 0
    (folder,) = out.iterdir()
    return folder


def test_a_resume_with_another_spec_is_refused_naming_what_differs(tmp_path, stand_in,
                                                                    capsys):
    folder = _grid_folder(tmp_path)
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    other = write_spec(tmp_path, OTHER_SPEC, "other.toml")
    assert grid_cli.main([str(other), "--resume", str(folder)]) == 2
    error = _one_line(capsys.readouterr().err)
    assert "[axes] learning_rate: [0.001, 0.003] there, [0.01] here" in error
    assert "pass --extend" in error
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    # select_by is no part of a run's id: choosing again by another figure is a resume.
    by_loss = write_spec(tmp_path, TINY_SPEC.replace('recipe = "none"',
                                                     'recipe = "none"\nselect_by = "val_loss"'),
                         "by-loss.toml")
    assert grid_cli.main([str(by_loss), "--resume", str(folder), "--summary-only"]) == 0


def test_extend_runs_the_new_spec_into_the_folder_and_keeps_both_specs(tmp_path, stand_in):
    folder = _grid_folder(tmp_path)
    other = write_spec(tmp_path, OTHER_SPEC, "other.toml")
    assert grid_cli.main([str(other), "--resume", str(folder), "--extend"]) == 0
    assert (folder / GRID_SPEC_FILE).read_text() == OTHER_SPEC
    assert (folder / "grid-spec.1.toml").read_text() == TINY_SPEC
    rates = [r["grid_point"]["learning_rate"] for r in read_records(folder)]
    assert sorted(rates) == [1e-3, 3e-3, 1e-2]  # the earlier runs kept, the new one added
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    assert summary["runs"]["planned"] == 1 and summary["axes"] == {"learning_rate": [1e-2]}


# --- grid size ---------------------------------------------------------------------------------

def test_a_huge_grid_is_refused_before_any_point_is_made():
    axes = {"learning_rate": "1e-{}", "weight_decay": "1e-{}", "epsilon": "1e-{}",
            "momentum": "0.{}5", "lr_gamma": "0.{}5", "eval_batch_size": "{}"}
    lines = "\n".join(f"{axis} = [{', '.join(form.format(i) for i in range(1, 11))}]"
                      for axis, form in axes.items())
    text = TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]", lines)
    started = time.perf_counter()
    with pytest.raises(ValueError) as refused:
        parse_spec(text, "huge.toml")
    assert time.perf_counter() - started < 5  # 35 s and 1.7 GB before
    message = str(refused.value)
    assert "\n" not in message and f"more than the {MAX_RUNS:,} one spec may plan" in message
    assert "10 learning_rate × 10 weight_decay" in message and "1,000,000 points" in message


def test_points_are_made_one_at_a_time():
    values = ", ".join(f"{i}e-4" for i in range(1, 51))
    spec = parse_spec(TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]",
                                        f"learning_rate = [{values}]\nweight_decay = [{values}]"),
                      "big.toml")
    assert spec.runs == 2500 <= MAX_RUNS
    assert inspect.isgenerator(spec.points()) and inspect.isgenerator(spec.cells())
    assert sum(1 for _ in spec.points()) == 2500


# --- recipes and specs: regular files of a bounded size and depth ------------------------------

def _refused_within(seconds: float, call) -> str:
    """The ValueError `call` raises, within `seconds` (a FIFO blocked for ever before)."""
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            call()
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    assert isinstance(outcome[0], ValueError), outcome[0]
    return str(outcome[0])


@pytest.mark.parametrize("make, expected", [
    (lambda p: os.mkfifo(p), "is not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),
    (lambda p: p.mkdir(), "is not a regular file"),
    (lambda p: p.write_bytes(b"# x\n" * (MAX_TOML_BYTES // 4 + 1)), "is larger than 65,536"),
    (lambda p: p.write_bytes(b"[train]\nepochs = 6 \xff\n"), "is not UTF-8 text (byte 0xff"),
    (lambda p: p.write_text("[train]\nx = " + "[" * 1000 + "]" * 1000 + "\n"),
     "nests tables and arrays more than 8 deep"),
    (lambda p: p.write_text("[train]\nx = " + "{a = " * 20 + "1" + "}" * 20 + "\n"),
     "nests tables and arrays more than 8 deep"),
])
def test_a_file_that_is_no_recipe_is_one_line_at_once(tmp_path, make, expected):
    path = tmp_path / "recipe.toml"
    make(path)
    message = _refused_within(10, lambda: load_recipe(path))
    assert expected in message and "\n" not in message
    assert expected in _refused_within(10, lambda: load_spec(path))


def test_a_huge_value_is_quoted_short(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(f'[train]\noptimizer = "{"x" * 60_000}"\n')
    message = _refused_within(10, lambda: load_recipe(path))
    assert "optimizer must be one of" in message and len(message) < 400


def test_a_grid_spec_nested_a_thousand_deep_is_one_line_and_exit_2(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]",
                                                  "learning_rate = " + "[" * 1000 + "]" * 1000))
    assert grid_cli.main([str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "nests tables and arrays more than 8 deep" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# --- compare: nothing in common is no pass -----------------------------------------------------

def test_fail_on_regression_with_nothing_in_common_is_one_line_and_exit_2(tmp_path, capsys):
    a = write_results(tmp_path / "a", [make_record("tf", "proposed_cnn", 0)])
    b = write_results(tmp_path / "b", [make_record("tf", "sanet", 0)])
    assert compare.main([str(a), str(b), "--fail-on-regression"]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err).startswith("error: nothing to compare") and not captured.out
    assert compare.main([str(a), str(b)]) == 0  # shown, not judged
    assert compare.main([str(a), str(a), "--fail-on-regression"]) == 0


# --- the current folder cannot shadow the suite's packages ----------------------------------

def test_a_datasets_folder_in_the_current_folder_is_not_imported(tmp_path):
    shadow = tmp_path / "datasets"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("the wrong datasets package")\n')
    process = _python("-m", "benchmarks.run", "--list-models", cwd=tmp_path,
                      env={"PYTHONPATH": str(ROOT)})
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert b"proposed_cnn" in out
