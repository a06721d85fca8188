"""`run_invocation`: every (fold, model, seed, backend) run of one invocation, each in its
own worker.

The library behind `python -m benchmarks.run`: given an `Invocation` (what to run, checked
when it was made), `run_invocation` checks the output and cache folders, the frameworks
and a pretrained checkpoint, loads the data once (`benchmarks.runner.data`), checks the
batch size against the training split, then runs each job in a fresh worker process,
appends every record (failed, timed-out and interrupted runs included) to a new report
folder's results.jsonl, made at the first record, and hands the records to the report
writer it was given. Ctrl-C (or SIGTERM, within `interrupts.stoppable`) stops the
invocation: the run it interrupted is recorded as such, and what finished is reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from backends import check_available
from backends.pretrained import Checkpoint, read_checkpoint
from backends.registry import bfloat16_refusal, visible_gpu
from backends.train_config import FLOAT16_NEEDS_GPU
from benchmarks.console import say
from benchmarks.record.layout import (
    EXPLAIN_DIR,
    RESULTS_FILE,
    WEIGHTS_DIR,
    test_split_file_name,
    weights_file_name,
)
from benchmarks.record.schema import ERROR, INTERRUPTED, OK, RUN_ID, STATUS
from benchmarks.record.store import append_record, new_report_dir
from benchmarks.runner.config import failed_record
from benchmarks.runner.data import check_batch_size, load_invocation_data
from benchmarks.runner.env import SUITE_ROOT
from benchmarks.runner.faults import InjectedFaults, injected_faults
from benchmarks.runner.harness import RunInterrupted, run_in_worker
from benchmarks.runner.interrupts import deferred, stop_name
from benchmarks.runner.invocation import Invocation
from datasets.cache import default_cache_dir


def _check_folder(path: Path, name: str, fix: str) -> None:
    """Raises ValueError unless `path` is a folder this process can write in, or can make."""
    existing = path
    # mkdir(parents=True) makes what is missing; what exists must be a writable folder.
    while not (existing.exists() or existing.is_symlink()):
        existing = existing.parent
    if not existing.is_dir():
        what = ("is not a folder" if existing == path
                else f"cannot be made: {existing} is not a folder")
        raise ValueError(f"{name} {path} {what}: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path} is not writable (no write permission in {existing}): "
                         f"{fix}")


def check_folders(invocation: Invocation, out_root: Path) -> None:
    """Raises before anything is read or written if the output or cache folder is unusable.

    Raises:
        ValueError: `out_root` or the cache folder (`datasets.cache.default_cache_dir`) is,
            or lies under, something other than a writable folder, or `out_root` lies
            inside the dataset folder, which is never written to.
    """
    _check_folder(out_root, "--out", "pass a folder for the report folders (made if missing)")
    cache = default_cache_dir()
    if "FERBENCH_CACHE" in os.environ:
        _check_folder(cache, "FERBENCH_CACHE", "set FERBENCH_CACHE to a folder (made if "
                                               "missing), or unset it for ~/.cache/fer-bench")
    else:
        _check_folder(cache, "the cache folder", "remove what is there, or set FERBENCH_CACHE "
                                                 "to a folder elsewhere")
    data = invocation.dataset_folder()
    if data is not None:
        out, data_resolved = out_root.resolve(), data.resolve()
        if out == data_resolved or data_resolved in out.parents:
            raise ValueError(f"--out {out_root} lies inside the dataset folder {data}; "
                             "FER-Bench never writes into dataset folders: pass an --out "
                             "outside it")


def check_ready(invocation: Invocation) -> InjectedFaults | None:
    """Raises before anything runs if a framework is missing or a test switch is stray.

    Returns:
        The test-only faults the environment arms (benchmarks.runner.faults), read here once
        for every run of the invocation; None for real measurements.

    Raises:
        MissingFrameworkError: a backend's framework is not installed.
        ValueError: a test-only fault-injection switch is set but not armed, or malformed;
            or float16 is asked for where a backend would compute on the CPU, or bfloat16
            where a backend has no bfloat16 convolution.
    """
    for backend in invocation.backends:
        check_available(backend)
    # The workers would refuse these too, one failed record each; here they are bad input.
    precisions = {train.precision for train in invocation.train.values()}
    for backend in invocation.backends:
        if "float16" in precisions and visible_gpu(backend)[0] is None:
            raise ValueError(f"{backend}: {FLOAT16_NEEDS_GPU}")
        if "bfloat16" in precisions and (refusal := bfloat16_refusal(backend)):
            raise ValueError(f"{backend}: {refusal}")
    return injected_faults()


def read_pretrained(invocation: Invocation) -> Checkpoint | None:
    """Reads `invocation.pretrained` and checks that it holds every model's layers.

    Returns:
        The checkpoint; None when the invocation has none.

    Raises:
        ValueError (a CheckpointError): the file is missing, is no checkpoint, is refused
            by `weights_only`, or is another architecture's; one line naming the file.
    """
    if invocation.pretrained is None:
        return None
    checkpoint = read_checkpoint(invocation.pretrained)
    for model in invocation.models:
        checkpoint.check_model(model)
    return checkpoint


def stage_pretrained(checkpoint: Checkpoint | None, folder: Path) -> dict[str, Any]:
    """Stages `checkpoint` for the workers: its canonical arrays written to
    `folder`/<sha256>.npz, which workers read without PyTorch (`Checkpoint.stage`).

    Written once: a file already there under that sha256 holds the same arrays (a resumed
    grid stages into the cache and finds them again). Written under a temporary name, so a
    crash never leaves a truncated file there.

    Args:
        checkpoint: the checkpoint (`read_pretrained`), or None.
        folder: where to stage it: the invocation's temporary folder, or the cache.

    Returns:
        The RunSpec fields `pretrained` (the checkpoint's facts) and `pretrained_file`;
        {} without a checkpoint.
    """
    if checkpoint is None:
        return {}
    path = folder / f"{checkpoint.sha256}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        checkpoint.stage(partial)
        os.replace(partial, path)
    return {"pretrained": checkpoint.describe(), "pretrained_file": str(path)}


class ResultsNotWritten(RuntimeError):
    """The report folder could not take a record or the report (a full disk, …).

    The message says what was kept and how to rebuild the rest.
    """


class InvocationInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the invocation; what finished, and the run it interrupted,
    are recorded.

    Attributes:
        report_dir: the report folder; None when no record was kept.
        records: the records kept, in run order.
        planned: the number of runs the invocation had.
        reported: whether the report of `records` was written.
    """

    def __init__(self, report_dir: Path | None, records: list[dict[str, Any]], planned: int,
                 reported: bool) -> None:
        super().__init__(f"interrupted after {len(records)} of {planned} runs")
        self.report_dir, self.records = report_dir, records
        self.planned, self.reported = planned, reported


class _Results:
    """One invocation's report folder, made at its first record, and the records kept in it.

    Made lazily, so that an invocation that records nothing leaves no empty folder.
    """

    def __init__(self, out_root: Path, dataset: str, on_line: Callable[[str], None]) -> None:
        self.out_root, self.dataset, self.on_line = out_root, dataset, on_line
        self.folder: Path | None = None
        self.records: list[dict[str, Any]] = []

    def keep(self, record: dict[str, Any], label: str, weights: Path | None = None,
             test_split: tuple[Path, str] | None = None) -> None:
        """Appends `record` to the results file (making the folder first) and to `records`.

        Args:
            record: the run's record.
            label: how error messages name the run.
            weights: the weights file the worker wrote, moved into WEIGHTS_DIR before the
                record is appended (so a record never names a file that is not there).
            test_split: (the prepared data, its split tag): with `weights`, the split's
                test images are copied into WEIGHTS_DIR once, for `benchmarks.explain`.

        Raises:
            ResultsNotWritten: the folder or the record could not be written; the records
                kept before are intact, and a folder made for this record is removed.
        """
        with deferred():
            first = self.folder is None
            try:
                if first:
                    self.folder = new_report_dir(self.out_root, self.dataset)
                if weights is not None:
                    self._keep_weights(weights, test_split)
                append_record(self.folder, record)
            except OSError as error:
                where = self.out_root if self.folder is None else self.folder / RESULTS_FILE
                reason = f"could not write {label}'s record to {where}: {error.strerror or error}"
                kept = len(self.records)
                if kept:
                    intact = (f"{kept} record before it is" if kept == 1
                              else f"{kept} records before it are")
                    raise ResultsNotWritten(
                        f"{reason}; the {intact} intact: free space, then rebuild the report "
                        f"with `python -m benchmarks.report {self.folder}`") from error
                self._discard_folder()
                raise ResultsNotWritten(f"{reason}; nothing was recorded: free space, then "
                                        "rerun") from error
            self.records.append(record)
        # Said once the record is written: output that fails can no longer cost it.
        if first:
            self.on_line(f"results → {self.folder / RESULTS_FILE}")

    def _keep_weights(self, weights: Path, test_split: tuple[Path, str] | None) -> None:
        """Moves a run's weights file into WEIGHTS_DIR, with its split's test images."""
        target = self.folder / WEIGHTS_DIR
        target.mkdir(exist_ok=True)
        if test_split is not None:
            prepared, split = test_split
            images = target / test_split_file_name(split)
            if not images.exists():
                with np.load(prepared, allow_pickle=False) as data:
                    arrays = {"x_test": data["x_test"], "y_test": data["y_test"],
                              "class_names": data["class_names"]}
                partial = images.with_name(f".{images.name}.tmp.npz")
                np.savez_compressed(partial, **arrays)
                os.replace(partial, images)
        shutil.move(weights, target / weights.name)

    def _discard_folder(self) -> None:
        """Removes the folder made for a first record that could not be written."""
        if self.folder is None:
            return
        results = self.folder / RESULTS_FILE
        if results.exists() and results.stat().st_size == 0:
            results.unlink()
        if not any(self.folder.iterdir()):
            self.folder.rmdir()
            self.folder = None


def _run_jobs(invocation: Invocation, prepared: dict, faults: InjectedFaults | None,
              results: _Results, on_line: Callable[[str], None], staging: Path,
              checkpoint: Checkpoint | None = None) -> bool:
    """Runs the invocation's jobs in order, keeping each record; True when Ctrl-C stopped
    them.

    Workers write their weights into `staging`, from where each ok run's file moves into
    the report folder with its record; a pretrained checkpoint is staged there for them.
    """
    pretrained = stage_pretrained(checkpoint, staging)
    jobs = invocation.jobs()
    try:
        for number, job in enumerate(jobs, 1):
            path, data_info = prepared[job.fold]
            if number == 1 or job.fold != jobs[number - 2].fold:
                on_line(f"{data_info['protocol']}: {data_info['num_train']} train / "
                        f"{data_info['num_val']} val / {data_info['num_test']} test images")
            spec = invocation.run_spec(job, path, data_info, faults=faults, **pretrained)
            weights = None
            if invocation.save_weights == "best":
                weights = staging / weights_file_name(spec.run_id)
                spec = replace(spec, weights_path=str(weights))
            try:
                on_line(f"== run {number}/{len(jobs)}: {job.backend} {job.model} seed {job.seed}"
                        + (" (twin: initial weights one ulp away)" if job.twin else ""))
                record = run_in_worker(spec, on_line)
                interrupted = record[STATUS] == INTERRUPTED
            except RunInterrupted as stop:
                record, interrupted = stop.record, True
            except KeyboardInterrupt:
                # The run was announced, but its worker was not running yet.
                record = failed_record(spec, f"interrupted ({stop_name()})", "", INTERRUPTED)
                interrupted = True
            if record[STATUS] != OK:
                on_line(f"   run {record[STATUS]}: {record[ERROR]}")
            kept = weights if record[STATUS] == OK and weights and weights.exists() else None
            results.keep(record, f"run {number}/{len(jobs)} ({record[RUN_ID]})", kept,
                         (path, data_info["split"]))
            if interrupted:
                on_line(f"interrupted: stopped after run {number}/{len(jobs)}")
                return True
    except KeyboardInterrupt:
        # Between two runs: none was in progress, so there is nothing more to record.
        on_line(f"interrupted: stopped after {len(results.records)}/{len(jobs)} runs")
        return True
    return False


def run_invocation(invocation: Invocation, out_root: Path,
                   on_line: Callable[[str], None] = say,
                   on_start: Callable[[], None] | None = None,
                   report: Callable[[Path, list[dict[str, Any]]], Any] | None = None,
                   ) -> tuple[Path, list[dict[str, Any]]]:
    """Runs every job of `invocation`, each in a fresh worker, into a new report folder.

    Args:
        invocation: what to run.
        out_root: parent of the new report folder, made at the first record.
        on_line: receives every progress line (default: printed at once).
        on_start: called once every check has passed, right before the first run (where
            the command warns of a busy machine: bad input still gets its one line alone).
        report: writes the report of the folder's records after the runs
            (`benchmarks.report.write_report`, which the runner, a peer of the report,
            does not import), and then the saved runs' explanations are added; None
            leaves results.jsonl and the weights only.

    Returns:
        The report folder and the records, in run order (failed and timed-out runs
        included).

    Raises:
        MissingFrameworkError, ValueError, FileNotFoundError: before any folder is made
            (a bad `pretrained` checkpoint is a ValueError).
        ResultsNotWritten: a record or the report could not be written (the message says
            what was kept).
        InvocationInterrupted: Ctrl-C stopped the invocation; the runs before, and the one
            it interrupted, are recorded and reported.
        KeyboardInterrupt: Ctrl-C while the data was loading: nothing was written.
    """
    check_folders(invocation, out_root)
    faults = check_ready(invocation)
    checkpoint = read_pretrained(invocation)
    dataset, prepared = load_invocation_data(invocation)
    check_batch_size(invocation, prepared)
    if on_start is not None:
        on_start()
    on_line(f"{dataset.name}: {len(dataset)} images, {len(dataset.class_names)} classes, "
            f"{len(dataset.skipped)} files skipped, {dataset.duplicates} duplicates")
    results = _Results(out_root, invocation.dataset, on_line)
    with tempfile.TemporaryDirectory(prefix="ferbench-weights-") as staging:
        interrupted = _run_jobs(invocation, prepared, faults, results, on_line, Path(staging),
                                checkpoint)
    planned = len(invocation.jobs())
    if results.folder is None:  # interrupted before the first record: nothing to report
        raise InvocationInterrupted(None, [], planned, reported=False)
    if report is None:
        if interrupted:
            raise InvocationInterrupted(results.folder, results.records, planned,
                                        reported=False)
        return results.folder, results.records
    try:
        report(results.folder, results.records)
    except KeyboardInterrupt:
        raise InvocationInterrupted(results.folder, results.records, planned,
                                    reported=False) from None
    except OSError as error:
        raise ResultsNotWritten(
            f"could not write the report in {results.folder}: {error.strerror or error}; "
            f"results.jsonl holds all {len(results.records)} records: free space, then "
            f"rebuild it with `python -m benchmarks.report {results.folder}`") from error
    if interrupted:
        raise InvocationInterrupted(results.folder, results.records, planned, reported=True)
    if invocation.save_weights == "best" and any(r[STATUS] == OK for r in results.records):
        _explain(results.folder, on_line, invocation.reference_backend)
    return results.folder, results.records


def _explain(folder: Path, on_line: Callable[[str], None], reference: str | None) -> None:
    """Adds the saved runs' Grad-CAM and feature maps to the report (`benchmarks.explain`).

    In a worker process of its own, as every run was: this process imports no framework.
    A failure costs only those figures (the report is already written), so it is one
    line, not an error.

    Args:
        folder: the report folder.
        on_line: receives the one line saying what was written, or why not.
        reference: the invocation's `--reference-backend` (None: the default), which the
            rebuilt report's verdicts keep.
    """
    chosen = [] if reference is None else ["--reference-backend", reference]
    done = subprocess.run([sys.executable, "-m", "benchmarks.explain", str(folder), *chosen],
                          cwd=SUITE_ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        on_line(f"explanations (Grad-CAM, feature maps) → {folder / EXPLAIN_DIR}")
    else:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        on_line(f"no explanations: {reason}; retry with `python -m benchmarks.explain "
                f"{folder}`")
