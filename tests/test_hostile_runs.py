"""Hostile input and hostile conditions: numbers that would exhaust the machine, bad paths,
a full disk, damaged results files, Ctrl-C, hung and killed workers.

Every bad input stops at the door with one line and exit status 2, writing nothing; every
condition mid-run keeps what was recorded before it and says so in one line.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from benchmarks import compare, run
from benchmarks.record import schema, store
from benchmarks.record.layout import RESULTS_FILE
from benchmarks.record.store import append_record, read_records
from benchmarks.report import __main__ as report_cli
from benchmarks.runner import command_line, harness, launch
from benchmarks.runner.config import record_header
from tests.report_fixtures import make_record, write_results

ROOT = Path(__file__).resolve().parent.parent
# The smallest real invocation: one torch run of proposed_cnn on 6 synthetic people at 32×32,
# one epoch, one thread, with the CI preset's short latency probe and calibration.
TINY = ["--preset", "ci", "--backend", "torch", "--models", "proposed_cnn", "--epochs", "1"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """No busy-machine warning: these tests count the lines a fault prints, and the
    warning, which has its own test (test_loaded_timings.py), depends on the load."""
    monkeypatch.setattr(run, "busy_machine_warning", lambda: None)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private, not yet existing cache folder: nothing lands in the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FERBENCH_CACHE", str(folder))
    return folder


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.strip()


# --- bad numbers and paths: one line, exit 2, nothing written ----------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--image-size", "5000"], "image_size must be ≤ 256"),
    (["--image-size", "16", "--models", "vgg16"], "image_size must be ≥ 32 for vgg16"),
    (["--image-size", "200", "--models", "alexnet"], "image_size must be ≤ 118 for alexnet"),
    (["--lr", "inf"], "learning_rate must be a finite number > 0. Received: learning_rate=inf"),
    (["--lr", "nan"], "learning_rate must be a finite number > 0"),
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295]. Received: seed=-1"),
    (["--seed", "4294967295", "--seeds", "2"], "seed + seeds - 1 must be ≤ 4294967295"),
    (["--batch-size", "1000000"], "batch_size must be ≤ 1820 (at image_size 48"),
    (["--batch-size", "100", "--image-size", "256"], "batch_size must be ≤ 64"),
    (["--epochs", "1000000000"], "epochs must be ≤ 1000"),
    (["--seeds", "1000"], "seeds must be ≤ 100"),
    (["--threads", "100000"], "threads must be ≤"),
    (["--synthetic-subjects", "100000"], "synthetic_subjects must be ≤ 500"),
    (["--run-timeout", "0"], "run_timeout_s must be in [1, 1e+07] seconds"),
    (["--models", "proposed_cnn,sanet,proposed_cnn"],
     "models must name each one once (proposed_cnn repeated); for replicates use seeds"),
])
def test_bad_numbers_stop_at_the_door(argv, expected, tmp_path, cache, capsys):
    out = tmp_path / "reports"
    assert run.main([*argv, "--out", str(out)]) == 2
    assert expected in _one_line(capsys.readouterr().err)
    assert _files(tmp_path) == []


def test_help_states_every_bound():
    text = " ".join(command_line.build_parser().format_help().split())
    for bound in ("1 to 1000", "16 to 256; vgg16 ≥ 32, alexnet ≤ 118", "4,194,304 pixels",
                  "0 to 4294967295", "1 to 100", "1 to 500", "finite number > 0",
                  "--run-timeout SECONDS", "outside the dataset folder", "each once"):
        assert bound in text, bound


def _bad_paths(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """Name → (argv, environment, expected message) of each bad path."""
    a_file = tmp_path / "notes.txt"
    data = tmp_path / "CK+48"
    return {
        "out is a file": (["--out", str(a_file)], {},
                          f"--out {a_file} is not a folder: pass a folder"),
        "out under a file": (["--out", str(a_file / "reports")], {},
                             f"cannot be made: {a_file} is not a folder"),
        "cache is a file": (["--out", str(tmp_path / "reports")],
                            {"FERBENCH_CACHE": str(a_file)},
                            f"FERBENCH_CACHE {a_file} is not a folder: set FERBENCH_CACHE"),
        "out inside the data": (["--dataset", "ck+", "--data-dir", str(data),
                                 "--out", str(data / "reports")], {},
                                f"lies inside the dataset folder {data}; FER-Bench never "
                                "writes into dataset folders"),
    }


@pytest.mark.parametrize("case", ["out is a file", "out under a file", "cache is a file",
                                  "out inside the data"])
def test_bad_paths_stop_at_the_door(case, tmp_path, cache, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "CK+48").mkdir()
    before = _files(tmp_path)
    argv, environ, expected = _bad_paths(tmp_path)[case]
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert run.main(argv) == 2
    assert expected in _one_line(capsys.readouterr().err)
    assert _files(tmp_path) == before and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_batch_larger_than_the_training_split_stops_before_any_folder(tmp_path, cache,
                                                                        capsys):
    pytest.importorskip("torch")
    out = tmp_path / "reports"
    assert run.main([*TINY, "--batch-size", "100", "--out", str(out)]) == 2
    error = _one_line(capsys.readouterr().err)
    assert "batch_size must be ≤ 84, the size of the training split" in error
    assert "Received: batch_size=100" in error and not out.exists()


# --- a full disk -------------------------------------------------------------------------

class _FullDisk:
    """The `os` module as the results store sees it on a disk that fills up.

    Its first `writes` calls of `write` work; the next writes half of what it is given
    (as a disk with a few bytes left does) and every later one raises ENOSPC. With
    `fsync_fails`, every fsync raises ENOSPC instead.
    """

    def __init__(self, writes: int = 0, fsync_fails: bool = False) -> None:
        self.writes, self.fsync_fails, self.calls = writes, fsync_fails, 0

    def write(self, handle: int, data) -> int:
        self.calls += 1
        if self.fsync_fails or self.calls <= self.writes:
            return os.write(handle, data)
        if self.calls == self.writes + 1 and len(data) > 1:
            return os.write(handle, bytes(data[: len(data) // 2]))
        raise ENOSPC

    def fsync(self, handle: int) -> None:
        if self.fsync_fails:
            raise ENOSPC
        os.fsync(handle)

    def __getattr__(self, name: str):
        return getattr(os, name)


@pytest.mark.parametrize("fails", ["write", "fsync"])
def test_a_full_disk_leaves_the_results_file_as_it_was(fails, tmp_path, monkeypatch):
    append_record(tmp_path, make_record("tf", "proposed_cnn", 0))
    before = (tmp_path / RESULTS_FILE).read_bytes()
    monkeypatch.setattr(store, "os", _FullDisk(fsync_fails=fails == "fsync"))
    with pytest.raises(OSError) as raised:
        append_record(tmp_path, make_record("torch", "proposed_cnn", 0))
    assert raised.value.errno == errno.ENOSPC
    assert (tmp_path / RESULTS_FILE).read_bytes() == before
    monkeypatch.undo()
    assert [r["backend"] for r in read_records(tmp_path, on_warning=pytest.fail)] == ["tf"]


def _stub_worker(spec, on_line):
    """A worker that succeeds at once, without a framework."""
    return {**record_header(spec), "status": "ok", "error": None,
            "metrics": {"accuracy": 0.5}}


def test_a_full_disk_mid_grid_is_one_line_and_keeps_earlier_records(tmp_path, cache,
                                                                    monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setattr(launch, "run_in_worker", _stub_worker)
    monkeypatch.setattr(store, "os", _FullDisk(writes=1))
    out = tmp_path / "reports"
    assert run.main([*TINY, "--seeds", "3", "--out", str(out)]) == 1
    error = _one_line(capsys.readouterr().err)
    assert "could not write run 2/3 (torch-proposed_cnn-synthetic-seed1)'s record" in error
    assert "No space left on device; the 1 record before it is intact" in error
    (folder,) = out.iterdir()
    monkeypatch.undo()
    assert [r["seed"] for r in read_records(folder, on_warning=pytest.fail)] == [0]
    assert _files(folder) == [RESULTS_FILE]  # no stray temporary file, no half report


def test_a_full_disk_on_the_first_record_leaves_no_folder(tmp_path, cache, monkeypatch,
                                                          capsys):
    pytest.importorskip("torch")
    monkeypatch.setattr(launch, "run_in_worker", _stub_worker)
    monkeypatch.setattr(store, "os", _FullDisk())
    out = tmp_path / "reports"
    assert run.main([*TINY, "--out", str(out)]) == 1
    assert "nothing was recorded" in _one_line(capsys.readouterr().err)
    assert list(out.iterdir()) == []


def test_a_full_disk_while_reporting_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    folder = write_results(tmp_path, [make_record("tf", "proposed_cnn", 0)])
    results = (folder / RESULTS_FILE).read_bytes()
    real_write_text = Path.write_text

    def write_text(path, text, *args, **kwargs):
        if path.name.endswith(".tmp"):
            real_write_text(path, text[: len(text) // 2], *args, **kwargs)
            raise ENOSPC
        return real_write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert report_cli.main([str(folder)]) == 1
    error = _one_line(capsys.readouterr().err)
    assert f"could not write the report in {folder}: No space left on device" in error
    assert _files(folder) == [RESULTS_FILE] and (folder / RESULTS_FILE).read_bytes() == results


# --- damaged results files -----------------------------------------------------------------

def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, capsys):
    folder = write_results(tmp_path, [make_record("tf", "proposed_cnn", 0),
                                      make_record("torch", "proposed_cnn", 0)])
    torn = json.dumps(make_record("tf", "proposed_cnn", 1)).encode()[:300]
    with open(folder / RESULTS_FILE, "ab") as handle:
        handle.write(torn)  # what a machine that died mid-write leaves
    warnings = []
    assert len(read_records(folder, on_warning=warnings.append)) == 2
    assert len(warnings) == 1 and "line 3: skipped an incomplete last record" in warnings[0]
    assert report_cli.main([str(folder)]) == 0
    assert _one_line(capsys.readouterr().err).startswith(
        f"warning: {folder / RESULTS_FILE}, line 3: skipped an incomplete last record")


def test_a_damaged_line_before_the_last_is_an_error(tmp_path, capsys):
    folder = write_results(tmp_path, [make_record("tf", "proposed_cnn", 0)])
    with open(folder / RESULTS_FILE, "a", encoding="utf-8") as handle:
        handle.write('{"cut": \n' + json.dumps(make_record("torch", "proposed_cnn", 0)) + "\n")
    assert report_cli.main([str(folder)]) == 2
    assert f"{folder / RESULTS_FILE}, line 2: not valid JSON" in _one_line(
        capsys.readouterr().err)


def _with(record: dict, path: str, value) -> dict:
    """A copy of `record` with the field at dotted `path` set to `value`."""
    changed = copy.deepcopy(record)
    *sections, name = path.split(".")
    target = changed
    for section in sections:
        target = target[section]
    target[name] = value
    return changed


@pytest.mark.parametrize("path, value, expected", [
    ("metrics.accuracy", "high", "metrics.accuracy must be a number or null"),
    ("metrics", [0.9], "metrics must be an object or null"),
    ("metrics.confusion_matrix", [[1, 2]], "metrics.confusion_matrix must be a square"),
    ("history", "3 epochs", "history must be a list of objects"),
    ("history.0", {"train_loss": 1.0}, "history[1].epoch must be an integer"),
    ("test_predictions", [0, 1], "test_predictions must be as long as test_labels"),
    ("backend", 5, "backend must be text. Received: backend=5"),
    ("model", None, "model must be text. Received: model=None"),
    ("seed", "zero", "seed must be an integer or null"),
    ("data.class_names", [1, 2], "data.class_names must be a list of class names"),
])
def test_records_of_the_wrong_shape_are_one_line_errors(path, value, expected, tmp_path,
                                                        capsys):
    if path == "history.0":
        damaged = make_record("torch", "sanet", 0)
        damaged["history"][0] = value
    else:
        damaged = _with(make_record("torch", "sanet", 0), path, value)
    folder = write_results(tmp_path, [make_record("tf", "sanet", 0), damaged])
    for main in (report_cli.main, lambda argv: compare.main([*argv, *argv])):
        assert main([str(folder)]) == 2
        error = _one_line(capsys.readouterr().err)
        assert f"{folder / RESULTS_FILE}, line 2: record 'torch-sanet-synthetic-seed0': " \
               f"{expected}" in error, error


def test_a_results_file_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / RESULTS_FILE).write_bytes(
        (json.dumps(make_record("tf", "sanet", 0)) + "\n").encode() + b'{"run_id": "\xff"}\n')
    assert report_cli.main([str(tmp_path)]) == 2
    assert f"{tmp_path / RESULTS_FILE}, line 2: not UTF-8 text (byte 0xff at column 13)" in \
        _one_line(capsys.readouterr().err)


def test_missing_figures_show_as_dashes(tmp_path):
    bare = {name: value for name, value in make_record("torch", "sanet", 0).items()
            if name in (*schema.HEADER_FIELDS, *schema.OUTCOME_FIELDS)}
    folder = write_results(tmp_path, [make_record("tf", "sanet", 0), bare])
    assert report_cli.main([str(folder)]) == 0
    markdown = (folder / "report.md").read_text()
    (row,) = [line for line in markdown.splitlines() if line.startswith("| sanet | torch |")]
    assert row.count("| — ") >= 8  # ok, but no figure at all


# --- interrupted, timed-out and killed runs ----------------------------------------------------

def test_interrupted_and_timed_out_runs_count_as_not_ok(tmp_path, capsys):
    baseline = [make_record("tf", "sanet", 0), make_record("torch", "sanet", 0)]
    header = {name: value for name, value in baseline[1].items()
              if name in schema.HEADER_FIELDS}
    stopped = [baseline[0], {**header, "status": schema.TIMEOUT,
                             "error": "no result within the run time limit of 3 s",
                             "stderr_tail": ""}]
    a, b = write_results(tmp_path, baseline), write_results(tmp_path, stopped)
    assert compare.main([str(a), str(b), "--fail-on-regression"]) == 1
    assert "torch-sanet-synthetic-seed0: REGRESSION (ok in A, not in B)" in \
        capsys.readouterr().out
    assert report_cli.main([str(b)]) == 0
    assert "2 runs (1 not ok)" in (b / "report.md").read_text()
    for status in (schema.INTERRUPTED, schema.TIMEOUT):
        record = {**stopped[1], "status": status}
        schema.check_record(json.loads(json.dumps(record)))
        assert not schema.succeeded(record)


def test_signals_are_named_truthfully():
    assert harness._failure_reason(-signal.SIGKILL, [], oom_killed=False) == \
        "worker killed by SIGKILL"
    assert harness._failure_reason(-signal.SIGKILL, [], oom_killed=True).startswith(
        "worker killed by SIGKILL (out of memory? the kernel's OOM killer")
    assert harness._failure_reason(-signal.SIGSEGV, [], oom_killed=True) == \
        "worker killed by SIGSEGV"
    count = harness._oom_kill_count()
    assert count is None or count >= 0


def _act_on_worker(act) -> threading.Thread:
    """Starts a thread that applies `act` to this process's worker once it runs (60 s at most)."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for child in psutil.Process().children():
                try:
                    if "benchmarks.runner.worker" in " ".join(child.cmdline()):
                        act(child)
                        return
                except psutil.NoSuchProcess:  # gone between the listing and the look
                    continue
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_a_stopped_worker_is_killed_at_the_run_timeout(tmp_path, cache, capsys):
    pytest.importorskip("torch")
    watcher = _act_on_worker(lambda worker: worker.send_signal(signal.SIGSTOP))
    out = tmp_path / "reports"
    started = time.monotonic()
    assert run.main([*TINY, "--run-timeout", "3", "--out", str(out)]) == 1
    assert time.monotonic() - started < 60
    watcher.join(timeout=1)
    (record,) = read_records(next(out.iterdir()))
    assert record["status"] == schema.TIMEOUT
    assert record["error"].startswith("no result within the run time limit of 3 s")
    assert "run timeout: no result within" in capsys.readouterr().out


def test_an_external_sigkill_is_not_called_out_of_memory(tmp_path, cache):
    pytest.importorskip("torch")
    oom_kills = harness._oom_kill_count()
    watcher = _act_on_worker(lambda worker: worker.kill())
    assert run.main([*TINY, "--out", str(tmp_path / "reports")]) == 1
    watcher.join(timeout=1)
    (record,) = read_records(next((tmp_path / "reports").iterdir()))
    assert record["status"] == schema.FAILED
    if oom_kills is not None and harness._oom_kill_count() == oom_kills:
        assert record["error"] == "worker killed by SIGKILL"


def _interrupt(tmp_path: Path, argv: list[str], *at: str,
               stop=lambda process: os.killpg(process.pid, signal.SIGINT),
               ) -> tuple[int, str, str, Path]:
    """Runs benchmarks.run in a terminal-like process group; stops it with `stop` (Ctrl-C:
    SIGINT to the command and its worker) once lines starting with each of `at`, in turn,
    are printed.

    Returns:
        The exit status, stdout, stderr and the --out folder.
    """
    out = tmp_path / "reports"
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", *argv, "--out", str(out)], cwd=ROOT,
        env={**os.environ, "FERBENCH_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
             "TMPDIR": str(tmp_path / "tmp")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
        # ignored across exec: a terminal's Ctrl-C reaches the command, so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, waiting_for = [], list(at)
    for line in process.stdout:
        lines.append(line)
        if line.startswith(waiting_for[0]):
            waiting_for.pop(0)
        if not waiting_for:
            stop(process)
            break
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, "".join(lines) + stdout, stderr, out


@pytest.mark.slow  # 24 s; SIGTERM's grid test stays in the fast run (CI's time, docs/ci.md)
def test_ctrl_c_records_the_interrupted_run_reports_the_rest_and_exits_130(tmp_path):
    pytest.importorskip("torch")
    # Once run 2's worker has said something: Ctrl-C reaches a running worker.
    status, stdout, stderr, out = _interrupt(tmp_path, [*TINY, "--seeds", "2"],
                                             "== run 2/2", "[torch proposed_cnn]")
    assert status == 130, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    (folder,) = out.iterdir()
    records = read_records(folder, on_warning=pytest.fail)
    assert [r["status"] for r in records] == [schema.OK, schema.INTERRUPTED]
    assert records[1]["error"] == "interrupted (Ctrl-C): worker stopped"
    assert (folder / "report.html").is_file()
    assert "interrupted (Ctrl-C): 1 of 2 runs finished" in stdout


@pytest.mark.slow
def test_sigterm_to_the_command_alone_is_ctrl_c_with_exit_143(tmp_path):
    pytest.importorskip("torch")
    # `kill -TERM PID`, as a batch scheduler or a container stop sends it, while run 2 trains.
    status, stdout, stderr, out = _interrupt(
        tmp_path, [*TINY, "--seeds", "2"], "== run 2/2", "[torch proposed_cnn]",
        stop=lambda process: process.send_signal(signal.SIGTERM))
    assert status == 143, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    (folder,) = out.iterdir()
    records = read_records(folder, on_warning=pytest.fail)
    assert [r["status"] for r in records] == [schema.OK, schema.INTERRUPTED]
    assert records[1]["error"] == "interrupted (SIGTERM): worker stopped"
    assert (folder / "report.html").is_file()
    assert "interrupted (SIGTERM): 1 of 2 runs finished" in stdout
    assert not list((tmp_path / "tmp").glob("ferbench-*"))  # its temporary folders went


def test_ctrl_c_in_the_first_run_leaves_no_empty_folder(tmp_path):
    pytest.importorskip("torch")
    # As soon as the run is announced: Ctrl-C may come before its worker has started.
    status, stdout, stderr, out = _interrupt(tmp_path, TINY, "== run 1/1")
    assert status == 130, stderr
    assert "Traceback" not in stderr
    (folder,) = out.iterdir()
    assert [r["status"] for r in read_records(folder)] == [schema.INTERRUPTED]
    assert all(any(path.iterdir()) for path in out.rglob("*") if path.is_dir())
