"""The grid driver: plans a spec's runs, runs the missing ones, keeps every record, chooses.

One driver owns a grid folder at a time (`GridLock`). Each run's id is derived from its
full spec (`RunSpec.spec_digest`), so a resumed grid knows which of its runs are already
recorded ok and runs only the others. Records are appended one whole line at a time by
this process alone (`store.append_record`), whatever executor ran them.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.analysis.grid_selection import (
    choose,
    chosen_runs,
    chosen_test_summary,
    describe_point,
    point_key,
    same_choice,
    score_points,
)
from benchmarks.analysis.grid_study import agreement_lines, choice_rows, study_entries
from benchmarks.analysis.load import LOADED_MARK, loaded_runs
from benchmarks.grid.spec import SELECT_BY, GridSpec, spec_differences
from benchmarks.record import schema
from benchmarks.record.layout import GRID_LOCK_FILE, GRID_SPEC_FILE, GRID_SUMMARY_FILE, RESULTS_FILE
from benchmarks.record.store import append_record, cut_torn_tail, new_report_dir, read_records
from benchmarks.report import write_report
from benchmarks.report.tables import text_table
from benchmarks.runner.config import RunSpec
from benchmarks.runner.data import check_batch_size, load_invocation_data
from benchmarks.runner.harness import RunInterrupted
from benchmarks.runner.invocation import Invocation
from benchmarks.runner.launch import (
    check_folders,
    check_ready,
    read_pretrained,
    stage_pretrained,
)
from benchmarks.runner.toml_files import read_toml_text
from datasets.cache import default_cache_dir


class GridBusy(ValueError):
    """Another driver holds the grid folder."""


class NothingToRun(ValueError):
    """Every run of the spec is already recorded ok in the folder being resumed."""


@contextmanager
def grid_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on `folder` (fcntl.flock on folder/.lock) for the block.

    The kernel drops the lock with the process, however it ends (a SIGKILL included), so
    a folder is never left locked by a dead driver.

    Raises:
        GridBusy: another process holds it; the message names its pid.
    """
    handle = open(folder / GRID_LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise GridBusy(f"another benchmarks.grid driver (pid {holder}) is running on "
                           f"{folder}: wait for it to finish; two drivers would run the "
                           "same runs twice") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def plan(spec: GridSpec, prepared: dict) -> list[tuple[dict[str, Any], RunSpec]]:
    """(point, RunSpec) of every run of `spec`, in run order: dataset by dataset, point by
    point, and within a point `Invocation.jobs`' order (the backends of one fold, model and
    seed back to back)."""
    staged: dict[str, dict[str, Any]] = {}  # dataset → its checkpoint's RunSpec fields
    planned = []
    for point, invocation in spec.cells():
        if invocation.dataset not in staged:
            # In the cache, under its sha256, where a resumed grid finds it again.
            staged[invocation.dataset] = stage_pretrained(
                read_pretrained(invocation), default_cache_dir() / "pretrained")
        planned += [(point, run) for run in
                    plan_point(invocation, prepared, staged[invocation.dataset])]
    return planned


def plan_point(invocation: Invocation, prepared: dict,
               pretrained: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """The RunSpec of each of one point's runs (its `Invocation`), in `Invocation.jobs`'
    order; each run's id ends in its spec's digest, so a resumed grid knows it.

    Args:
        invocation: the point's Invocation on one dataset.
        prepared: dataset → fold → (prepared .npz path, data facts), from `prepare`.
        pretrained: the grid's checkpoint fields (`runner.launch.stage_pretrained`); None for none.
    """
    return [invocation.run_spec(job, *prepared[invocation.dataset][job.fold], id_from_spec=True,
                                **(pretrained or {}))
            for job in invocation.jobs()]


def latest_records(folder: Path, on_line: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """run id → its latest record in the folder (an ok one beats a later failure)."""
    if not (folder / RESULTS_FILE).is_file() or (folder / RESULTS_FILE).stat().st_size == 0:
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for record in read_records(folder, on_warning=lambda m: on_line(f"warning: {m}")):
        kept = latest.get(record[schema.RUN_ID])
        if kept is None or not schema.succeeded(kept):
            latest[record[schema.RUN_ID]] = record
    return latest


def prepare(spec: GridSpec, out_root: Path, resume: Path | None, extend: bool = False) -> dict:
    """Checks the folders, the frameworks and every dataset; returns the prepared data.

    Every dataset is read and split before the first run, so that a missing one stops the
    grid before anything is written, not hours into it.

    Args:
        spec: the checked spec.
        out_root: parent of a new grid folder (without `resume`).
        resume: a grid folder to complete; its spec must be `spec` (`check_resumable`).
        extend: allow `resume` to hold another spec: `spec`'s runs are added to it.

    Returns:
        dataset → fold → (prepared .npz path, data facts for the records).

    Raises:
        ValueError, MissingFrameworkError, FileNotFoundError: bad input, before anything
            is written.
    """
    # Each dataset's first Invocation: its data settings, which every point shares.
    first_point = next(spec.points())
    firsts = {dataset: spec.invocation_at(first_point, dataset) for dataset in spec.datasets}
    if resume is None:
        for invocation in firsts.values():
            check_folders(invocation, out_root)
    else:
        check_resumable(spec, resume, extend)
    check_ready(firsts[spec.datasets[0]])
    for invocation in firsts.values():
        read_pretrained(invocation)  # a bad checkpoint is bad input: refused before the folder
    prepared = {dataset: load_invocation_data(invocation)[1]
                for dataset, invocation in firsts.items()}
    for point, invocation in spec.cells():
        try:
            check_batch_size(invocation, prepared[invocation.dataset])
        except ValueError as error:
            on = f" on {invocation.dataset}" if len(spec.datasets) > 1 else ""
            raise ValueError(f"grid spec {spec.source}{spec.line_of('batch_size')} at "
                             f"{describe_point(point)}{on}: {error}") from None
    return prepared


def check_resumable(spec: GridSpec, folder: Path, extend: bool) -> None:
    """Raises ValueError unless `folder` is a grid folder that ran `spec` (changes in
    `spec.RESUMABLE_CHANGES` aside), or `extend` allows another spec.

    A resume with another spec would otherwise replace the study: grid.json and the
    report would describe the new spec only.
    """
    kept = folder / GRID_SPEC_FILE
    if not kept.is_file():
        raise ValueError(f"--resume {folder} is not a grid folder (it holds no {GRID_SPEC_FILE}): "
                         "pass the folder a `python -m benchmarks.grid` run made")
    differences = spec_differences(read_toml_text(kept, "grid spec", f"restore {kept}"),
                                   spec.text, f"grid spec {kept}")
    if differences and not extend:
        more = f"; {len(differences) - 2} more" if len(differences) > 2 else ""
        raise ValueError(f"grid spec {spec.source} differs from {kept}, the spec grid folder "
                         f"{folder} ran: {'; '.join(differences[:2])}{more}: resume with that "
                         "spec, or pass --extend to add this spec's runs to the folder (both "
                         "specs are kept)")


def keep_spec(spec: GridSpec, folder: Path) -> None:
    """Writes `spec`'s text into the folder as GRID_SPEC_FILE; another spec there before (a
    resume with --extend, or another select_by or reference_backend) stays beside it, as
    grid-spec.<N>.toml."""
    current = folder / GRID_SPEC_FILE
    if current.is_file() and current.read_text(encoding="utf-8") != spec.text:
        names = (current.with_suffix(f".{n}{current.suffix}") for n in itertools.count(1))
        os.replace(current, next(name for name in names if not name.exists()))
    _write_atomically(current, spec.text)


def run_study(spec: GridSpec, out_root: Path, resume: Path | None, executor,
              on_line: Callable[[str], None], summary_only: bool = False,
              extend: bool = False) -> tuple[Path, dict[str, Any]]:
    """Runs `spec`'s missing runs with `executor` into a grid folder, then chooses.

    Args:
        spec: the checked grid spec.
        out_root: parent of a new grid folder (without `resume`).
        resume: a grid folder to complete: runs recorded ok there are skipped.
        executor: a LocalExecutor or RayExecutor.
        on_line: receives every progress line.
        summary_only: with `resume`, run nothing: choose again from the records there
            (after a change of `select_by` or `reference_backend`, which are no part of
            a run's id).
        extend: `resume` may hold another spec's runs: this spec's missing runs are added,
            and grid.json and the report describe this spec; the other's text is kept.

    Returns:
        The folder and its summary (what grid.json holds).

    Raises:
        ValueError: bad input (nothing written), every run already done, or the folder
            locked by another driver.
        RunInterrupted, KeyboardInterrupt: Ctrl-C (or SIGTERM, `interrupts.stoppable`);
            what finished is recorded, and grid.json and the report describe it.
    """
    if summary_only and resume is None:
        raise ValueError("--summary-only needs --resume DIR: the grid folder to choose from")
    with grid_folder(spec, out_root, resume, extend) as (folder, prepared):
        planned = plan(spec, prepared)
        if summary_only:
            keep_spec(spec, folder)
            return folder, summarise(spec, folder, planned, on_line)
        done = ok_run_ids(folder, on_line)
        pending = [(point, run) for point, run in planned if run.run_id not in done]
        if not pending:
            raise NothingToRun(f"every run of grid spec {spec.source} ({len(planned)}) is "
                             f"already recorded ok in {folder}: nothing to run")
        start_writing(spec, folder, on_line)
        on_line(f"grid folder {folder}: {len(planned)} runs, {len(planned) - len(pending)} "
                f"already recorded ok, {len(pending)} to run ({executor.describe()})")
        try:
            run_pending(folder, pending, executor, on_line, spec.select_by)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: what finished is chosen from and reported, as
            # benchmarks.run reports the runs before a stop; --resume completes the grid.
            summarise(spec, folder, planned, on_line)
            raise
        return folder, summarise(spec, folder, planned, on_line)


@contextmanager
def grid_folder(spec: GridSpec, out_root: Path, resume: Path | None,
                extend: bool = False) -> Iterator[tuple[Path, dict]]:
    """Checks the input (`prepare`), then holds the grid folder's lock for the block: the
    folder `resume`, or a new one under `out_root`, made only once the checks passed.

    Yields:
        The folder and the prepared data (`prepare`).
    """
    prepared = prepare(spec, out_root, resume, extend)
    folder = resume if resume is not None else new_report_dir(
        out_root, f"{'-'.join(spec.datasets)}-grid")
    with grid_lock(folder):
        yield folder, prepared


def ok_run_ids(folder: Path, on_line: Callable[[str], None]) -> set[str]:
    """The ids of the runs recorded ok in the folder."""
    return {run_id for run_id, record in latest_records(folder, on_line).items()
            if schema.succeeded(record)}


def start_writing(spec: GridSpec, folder: Path, on_line: Callable[[str], None]) -> None:
    """Before the first record of this driver: cuts a record a kill cut off mid-write, and
    keeps the spec (verbatim) in the folder (`keep_spec`)."""
    cut = cut_torn_tail(folder)
    if cut:
        on_line(f"warning: cut {cut} bytes of a record cut off mid-write from "
                f"{folder / RESULTS_FILE}; its run runs again")
    keep_spec(spec, folder)


def run_pending(folder: Path, pending: list[tuple[dict[str, Any], RunSpec]], executor,
                on_line: Callable[[str], None], select_by: str) -> dict[str, dict[str, Any]]:
    """Runs `pending` with `executor`, appending each record (with its point) as it comes.

    Returns:
        run id → its record.

    Raises:
        RunInterrupted: Ctrl-C; the interrupted run's record is kept first.
    """
    points = {run.run_id: point for point, run in pending}
    records = {}
    try:
        for number, (run, record) in enumerate(
                executor.run([run for _, run in pending], on_line), 1):
            _keep(folder, record, points[run.run_id])
            records[run.run_id] = record
            on_line(f"== {number}/{len(pending)} {run.run_id} "
                    f"({describe_point(points[run.run_id])}): {_outcome(record, select_by)}")
    except RunInterrupted as stop:
        _keep(folder, stop.record, points[stop.record[schema.RUN_ID]])
        raise
    return records


def _keep(folder: Path, record: dict[str, Any], point: dict[str, Any]) -> None:
    append_record(folder, {**record, schema.GRID_POINT: point})


def _outcome(record: dict[str, Any], select_by: str) -> str:
    if not schema.succeeded(record):
        return f"{record[schema.STATUS]}: {record[schema.ERROR]}"
    value = (record.get("selection") or {}).get(f"best_{select_by}")
    return f"ok, {select_by} {value:.4f}" if value is not None else "ok"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def summarise(spec: GridSpec, folder: Path, planned: list, on_line: Callable[[str], None],
              points: Sequence[Mapping[str, Any]] | None = None,
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Chooses on validation; writes grid.json (the choices and the study) and the chosen
    runs' report, whose study section reads grid.json.

    Args:
        spec: the grid spec.
        folder: the grid folder.
        planned: (point, RunSpec) of every run meant to run.
        on_line: receives the warnings.
        points: the points to choose among (default: the spec's); a search's finished
            trials'.
        extra: more of grid.json (a search's trials).

    Returns:
        The summary written to grid.json.
    """
    latest = latest_records(folder, on_line)
    records = [latest[run.run_id] for _, run in planned if run.run_id in latest]
    foreign = len(latest) - len(records)
    if foreign:
        # Their ids come from another spec: other settings, or another --deterministic.
        on_line(f"warning: {foreign} run(s) recorded in {folder} belong to no run of "
                f"{spec.source} and are left out of the choice")
    summary = {**build_summary(spec, records, len(planned), points), **(extra or {})}
    # In insertion order (deterministic): a point's axes stay in the spec's order, which
    # the report shows them in.
    _write_atomically(folder / GRID_SUMMARY_FILE, json.dumps(summary, indent=2))
    chosen_records = chosen_runs(records, summary["choices"])
    reference = spec.reference_backend
    if chosen_records and reference is not None and reference not in {
            record[schema.BACKEND] for record in chosen_records}:
        # A grid stopped before the reference's runs, or with every one of them failed:
        # the report still judges the backends that were chosen, by the default rule.
        on_line(f"warning: the reference backend {reference} ({spec.source}) has no chosen "
                f"configuration in {folder} yet; the report's verdicts use the default "
                "reference until it has")
    if chosen_records:
        # The report reads the spec's reference_backend from grid.json (`analyse`).
        write_report(folder, chosen_records)
    return summary


def build_summary(spec: GridSpec, records: list[dict[str, Any]], planned: int,
                  points: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """What grid.json holds: each (dataset, model, backend)'s choice on validation beside
    the defaults, every point's score, the run counts and the study.

    Args:
        spec: the grid spec.
        records: the latest record of each of its runs recorded so far.
        planned: how many runs the spec plans.
        points: the points to choose among and to study (default: the spec's).
    """
    points = list(spec.points()) if points is None else points
    scores = score_points(records, spec.select_by, points)
    chosen = choose(scores, SELECT_BY[spec.select_by])
    choices = []
    for key, best in chosen.items():
        dataset, model, backend = key
        choices.append({
            "dataset": dataset, "model": model, "backend": backend, "point": best.point,
            "defaults": {axis: spec.default_value(model, axis, dataset) for axis in spec.axes},
            "validation": asdict(best.validation),
            "test_accuracy": asdict(chosen_test_summary(records, key, best.point)),
            "points": [{"point": s.point, "validation": asdict(s.validation)}
                       for s in scores[key]]})
    axes = spec.axes_json()
    studied = {point_key(p) for p in points}
    return {
        "spec": spec.source, "select_by": spec.select_by,
        "reference_backend": spec.reference_backend,
        "axes": axes,
        "runs": {"planned": planned,
                 "ok": sum(map(schema.succeeded, records)),
                 "not_ok": sum(not schema.succeeded(r) for r in records),
                 "missing": planned - len(records),
                 "timing_not_comparable": len(loaded_runs(records))},
        "choices": choices,
        "same_choice_across_backends": [
            {"dataset": d, "model": m, "same": same}
            for (d, m), same in same_choice(chosen).items()],
        # Of the points chosen among only: a pruned trial's first run is no sample of it.
        "study": study_entries([r for r in records if schema.GRID_POINT in r
                                and point_key(r[schema.GRID_POINT]) in studied],
                               spec.select_by, axes),
    }


def summary_table(summary: dict[str, Any]) -> str:
    """The chosen configuration of each (dataset, model, backend) beside the defaults,
    its validation figure and (only now) its test accuracy, then whether the backends
    agreed, the run counts and how many runs' timings are not comparable."""
    lines = [text_table(*choice_rows(summary)), *agreement_lines(summary)]
    runs = summary["runs"]
    lines.append(f"runs: {runs['planned']} planned, {runs['ok']} ok, {runs['not_ok']} not ok, "
                 f"{runs['missing']} missing")
    if "trials" in summary:
        states = [trial["state"] for trial in summary["trials"]]
        lines.append("trials: " + ", ".join(f"{states.count(state)} {state}" for state in
                                            dict.fromkeys(states)))
    if runs.get("timing_not_comparable"):
        lines.append(f"{LOADED_MARK} the timings of {runs['timing_not_comparable']} run(s) are "
                     "not comparable (they shared their device, or other processes took "
                     "their CPU): report.html marks them")
    return "\n".join(lines)
