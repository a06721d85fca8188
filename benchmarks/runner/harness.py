"""The harness: prepares the shared data once, then runs each job in a fresh worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record.schema import ERROR, INTERRUPTED, TIMEOUT, failed_record
from benchmarks.runner.config import RunSpec
from benchmarks.runner.env import SUITE_ROOT
from benchmarks.runner.interrupts import STOP_SIGNALS, stop_name
from datasets import FaceDataset
from datasets.selection import NO_SELECTION, DataSelection, selected_split

# Skipped files listed in each run's record (all of them are counted).
MAX_LISTED_SKIPPED = 100


def prepare_data(
    dataset: FaceDataset,
    split_seed: int,
    cache_dir: Path,
    folds: int | None = None,
    fold: int | None = None,
    selection: DataSelection = NO_SELECTION,
) -> tuple[Path, dict[str, Any]]:
    """Splits `dataset` and writes the arrays every worker of this invocation reads.

    The split is datasets.dataset_split's: k-fold with `folds`, else the dataset's
    official split (FER2013), else a holdout; subject-independent where subjects exist;
    then `selection`'s test part and per-class draws (`datasets.selection.selected_split`).

    Args:
        dataset: the loaded dataset, its classes already selected.
        split_seed: seed of the split.
        cache_dir: folder for the prepared file.
        folds: number of folds for k-fold cross-validation, or None.
        fold: with `folds`, the fold whose part is the test set.
        selection: the test part and per-class draws, recorded in the data facts.

    Returns:
        The .npz path and the data facts recorded with each run. A file already there is
        reused only when it reads back in full as exactly these arrays; a damaged one
        (truncated, altered) is rebuilt in its place.
    """
    import zipfile  # np.load's error for a damaged file; only this function needs it

    split = selected_split(dataset, selection, folds=folds, fold=fold, seed=split_seed)
    fingerprint = dataset.fingerprint()
    path = cache_dir / "prepared" / f"{dataset.name}-{fingerprint}-{split.tag}.npz"
    arrays = {"class_names": np.asarray(dataset.class_names)}
    for part in ("train", "val", "test"):
        indices = getattr(split, part)
        arrays[f"x_{part}"] = dataset.images[indices]
        arrays[f"y_{part}"] = dataset.labels[indices]
    # A file left truncated or altered (full disk, a copy cut short) would fail every run
    # that reuses it; zip checks each array's CRC as it is read in full here.
    try:
        with np.load(path) as stored:
            reusable = set(stored.files) == set(arrays) and all(
                np.array_equal(stored[key], value) for key, value in arrays.items())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or damaged
        reusable = False
    if not reusable:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name so a crash never leaves a truncated file behind.
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, **arrays)
        os.replace(partial, path)
    info = {
        "fingerprint": fingerprint,
        "protocol": split.protocol,
        "split": split.tag,
        "split_seed": split_seed,
        "folds": folds,
        "fold": fold,
        "num_train": len(split.train),
        "num_val": len(split.val),
        "num_test": len(split.test),
        "class_names": dataset.class_names,
        "image_shape": list(dataset.images.shape[1:]),
        "subjects": None if dataset.subjects is None else len(set(dataset.subjects.tolist())),
        "skipped_files": len(dataset.skipped),
        "skipped": dataset.skipped[:MAX_LISTED_SKIPPED],
        "duplicates": dataset.duplicates,
        "duplicates_dropped": len(split.dropped),
        "source": dataset.source,
        "preprocessing": dataset.preprocessing,
        "selection": selection.as_record(),
    }
    return path, info


def _oom_kill_count() -> int | None:
    """How many processes the kernel's OOM killer has killed on this host since it booted.

    /proc/vmstat's `oom_kill` counts every kill, whether the host ran out of memory or a
    cgroup hit its limit (Linux ≥ 4.13); None where it cannot be read (no evidence).
    """
    try:
        text = Path("/proc/vmstat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return None


def _failure_reason(returncode: int, stderr_tail: list[str], oom_killed: bool) -> str:
    """One line saying why a worker ended without a result.

    Args:
        returncode: the worker's exit status; negative: the signal that killed it.
        stderr_tail: the last lines of its stderr.
        oom_killed: whether the kernel's OOM killer killed some process while it ran,
            the only evidence that a SIGKILL came from running out of memory.
    """
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL and oom_killed:
            return (f"worker killed by {name} (out of memory? the kernel's OOM killer killed "
                    "a process while it ran)")
        return f"worker killed by {name}"
    lines = [line for line in stderr_tail if line.strip()]
    return lines[-1].strip() if lines else f"worker exited with status {returncode}"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while a worker ran: the worker is stopped, its run's record kept.

    A KeyboardInterrupt, so a caller that does not know it stops as on any Ctrl-C.

    Attributes:
        record: the run's record: status `interrupted`, or the worker's own record when
            it had finished before it could be stopped.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record[ERROR] or "interrupted after the run finished")
        self.record = record


def _expire(process: subprocess.Popen, expired: threading.Event) -> None:
    expired.set()
    # SIGKILL: a hung or stopped (SIGSTOP) worker handles no gentler signal.
    process.kill()


@dataclass
class ProcessExit:
    """How a fresh worker process of `run_process` ended.

    Attributes:
        result: the JSON object it wrote as its result, or None when it wrote none.
        returncode: its exit status; negative: the signal that killed it.
        stderr_tail: the last lines it wrote to stderr.
        interrupted: Ctrl-C (KeyboardInterrupt) reached this process while it ran; it
            was stopped.
        expired: it ran past its time limit and was killed.
        oom_kills_before: the kernel's OOM-kill count when it started (`_oom_kill_count`).
    """

    result: dict[str, Any] | None
    returncode: int
    stderr_tail: list[str]
    interrupted: bool
    expired: bool
    oom_kills_before: int | None

    def failure_reason(self) -> str:
        """One line saying why the process left no result (`_failure_reason`)."""
        after = _oom_kill_count()
        before = self.oom_kills_before
        oom_killed = before is not None and after is not None and after > before
        return _failure_reason(self.returncode, self.stderr_tail, oom_killed)


def run_process(module: str, spec_json: str, timeout_s: float | None,
                on_line: Callable[[str], None] = print) -> ProcessExit:
    """Runs `python -m MODULE SPEC.json RESULT.json` in a fresh interpreter.

    The one place that starts a measured job in its own process: the training runs'
    worker (`run_in_worker`) and the onnxruntime runs (`benchmarks.runner.onnx_worker`)
    both go through it, with the same time limit, Ctrl-C and crash handling.

    Args:
        module: the worker module; it reads SPEC.json and writes RESULT.json (a JSON
            object) when it succeeds.
        spec_json: the text of SPEC.json.
        timeout_s: kill the process once it has run this long; None: no limit.
        on_line: receives each progress line it prints.

    Returns:
        How it ended, with its result when it wrote one.
    """
    oom_kills = _oom_kill_count()
    with tempfile.TemporaryDirectory(prefix="ferbench-") as work:
        spec_path, result_path = Path(work) / "spec.json", Path(work) / "result.json"
        stderr_path = Path(work) / "stderr.txt"
        spec_path.write_text(spec_json)
        # The worker's progress comes back through a pipe in UTF-8, whatever encoding
        # this process's own output has (PYTHONIOENCODING=ascii would reach the worker).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        expired = threading.Event()
        interrupted = False
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", module, str(spec_path), str(result_path)],
                cwd=SUITE_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr,
                encoding="utf-8", errors="replace",
            )
            watchdog = None
            if timeout_s is not None:
                watchdog = threading.Timer(timeout_s, _expire, (process, expired))
                watchdog.daemon = True
                watchdog.start()
            try:
                for line in process.stdout:
                    on_line(line.rstrip("\n"))
            except KeyboardInterrupt:
                interrupted = True
                # A terminal's Ctrl-C reached the worker too, but a SIGINT sent to this
                # process alone did not: either way the run is over.
                process.kill()
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                process.stdout.close()
                returncode = process.wait()
        finished = returncode == 0 and result_path.exists()
        result = json.loads(result_path.read_text()) if finished else None
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
    return ProcessExit(result, returncode, tail, interrupted, expired.is_set(), oom_kills)


def run_in_worker(spec: RunSpec, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs `spec` in a fresh `python -m benchmarks.runner.worker` process.

    Args:
        spec: the run; with `spec.timeout_s`, the worker is killed once it has run that
            long.
        on_line: receives each progress line the worker prints.

    Returns:
        The worker's record, or a record carrying the error when the worker crashed,
        raised or was killed (status `failed`), ran past `spec.timeout_s` (`timeout`), or
        was interrupted by SIGINT on its own (`interrupted`).

    Raises:
        RunInterrupted: Ctrl-C (KeyboardInterrupt) here while the worker ran. The worker is
            stopped; the exception carries the run's record: `interrupted`, or the
            worker's own when it had just finished.
    """
    ended = run_process("benchmarks.runner.worker", spec.to_json(), spec.timeout_s, on_line)
    record = ended.result
    if record is None:
        record = _unfinished_record(spec, ended)
    if ended.interrupted:
        raise RunInterrupted(record) from None
    return record


def _unfinished_record(spec: RunSpec, ended: ProcessExit) -> dict[str, Any]:
    """The record of a worker that left no result, its status naming what stopped it."""
    stderr_tail = "\n".join(ended.stderr_tail)
    if ended.interrupted:
        return failed_record(spec, f"interrupted ({stop_name()}): worker stopped", stderr_tail,
                             INTERRUPTED)
    if ended.expired:
        return failed_record(
            spec, f"no result within the run time limit of {spec.timeout_s:g} s: worker "
                  "killed (hung, stopped or too slow); allow more with --run-timeout",
            stderr_tail, TIMEOUT)
    if -ended.returncode in STOP_SIGNALS:
        # Stopped, not crashed: SIGINT or SIGTERM sent to the worker alone.
        name = signal.Signals(-ended.returncode).name
        return failed_record(spec, f"worker interrupted by {name}", stderr_tail, INTERRUPTED)
    return failed_record(spec, ended.failure_reason(), stderr_tail)
