"""An Optuna search over a spec's axes (a spec with a [search] table; docs/grids.md).

A trial is one point drawn by the sampler (TPE or random) from the axes' ranges and
choices. Its runs are the grid's runs of that point (every model, backend, fold and seed,
`driver.plan_point`), run by the same executors and kept as ordinary records with their
`grid_point`, so the choice, the study and the report are the grid's: per (dataset,
model, backend), the finished trial with the best validation figure averaged over its
folds and seeds (`driver.summarise`). The sampler is told each trial's value: that
figure averaged over all of the trial's runs, every model and backend alike, so that the
frameworks are searched over the same points and their choices can be compared.

Pruning (`pruning = true`) happens between runs, in the driver. A trial's first run (its
first fold, model, seed and backend: the same in every trial) runs alone; its record's
per-epoch validation figures (`history`) are then reported to the trial epoch by epoch
(`Trial.report`, step = epoch - 1), and Optuna's MedianPruner stops the trial at the first
epoch where its best figure so far is worse than the median of the complete trials' first
runs at the same epoch. The trial's other runs are then not run. The first run itself
always trains to its end: it runs in a worker process, on another node under Ray, that the
driver has no channel to stop mid-training. So pruning saves (runs per trial - 1) runs per
pruned trial, and nothing where a trial is one run (one fold, seed, backend and model).

`trials.jsonl`, beside results.jsonl, holds one line per trial the driver finished (its
number, point, state: complete, pruned or failed, value and first run's per-epoch
figures), appended whole like a record. A resumed search (`--resume DIR`) replays the
complete and pruned trials into a new study (`optuna.trial.create_trial`,
`Study.add_trial`), enqueues the points of trials it holds records of but did not finish
(cut off by a kill, or failed) so that they come first, their recorded runs skipped by
id, and asks the sampler for the rest until `trials` trials are finished. The sampler's
random state is not kept: after a resume it proposes other points than the uninterrupted
search would have.

Optuna is an optional extra (`pip install -e '.[optuna]'`), imported only here, when a
search starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.analysis.grid_selection import SELECTION_SECTION, describe_point, point_key
from benchmarks.grid.driver import (
    grid_folder,
    keep_spec,
    latest_records,
    plan_point,
    run_pending,
    start_writing,
    summarise,
)
from benchmarks.grid.spec import SELECT_BY, TRAIN_KEYS, GridSpec, Range
from benchmarks.record import schema
from benchmarks.record.layout import TRIALS_FILE
from benchmarks.record.store import append_json_line, cut_torn_tail, read_json_lines
from benchmarks.runner.data import check_batch_size

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
FINISHED = (COMPLETE, PRUNED)  # the states that count towards `trials`
OPTUNA_MISSING = "optuna is not installed: pip install -e '.[optuna]'"


def import_optuna():
    """The optuna module, quiet (its per-trial log lines would drown the runs' progress).

    Raises:
        ValueError: OPTUNA_MISSING.
    """
    try:
        import optuna
    except ImportError:
        raise ValueError(OPTUNA_MISSING) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(optuna, spec: GridSpec) -> dict[str, Any]:
    """axis → the Optuna distribution its trials draw from: a range's Int or Float
    distribution (by the field's type), or a Categorical one of the listed choices."""
    found = {}
    for axis, values in spec.axes.items():
        if not isinstance(values, Range):
            found[axis] = optuna.distributions.CategoricalDistribution(list(values))
        elif TRAIN_KEYS[axis].kind is int:
            found[axis] = optuna.distributions.IntDistribution(
                values.low, values.high, log=values.log, step=values.step or 1)
        else:
            found[axis] = optuna.distributions.FloatDistribution(
                values.low, values.high, log=values.log, step=values.step)
    return found


def make_study(optuna, spec: GridSpec):
    """A new in-memory study with the spec's sampler, pruner and direction."""
    search = spec.search
    if search.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=search.seed,
                                             n_startup_trials=search.startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=search.seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=search.pruning_startup_trials,
                                          n_warmup_steps=search.pruning_warmup_epochs)
              if search.pruning else optuna.pruners.NopPruner())
    direction = "maximize" if SELECT_BY[spec.select_by] else "minimize"
    return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)


def read_trials(folder: Path, on_line: Callable[[str], None]) -> list[dict[str, Any]]:
    """The trials the folder's trials.jsonl holds, in order (a line cut off by a kill is
    skipped, with a warning)."""
    path = folder / TRIALS_FILE
    if not path.is_file():
        return []
    return [entry for _, entry in read_json_lines(
        path, lambda m: on_line(f"warning: {m}"), "trial",
        "remove it to run its trials again (their runs are kept in results.jsonl)")]


def first_run_curve(record: Mapping[str, Any], select_by: str) -> list[tuple[int, float]]:
    """(epoch, validation figure) of each epoch of an ok record's history that has one."""
    return [(int(epoch["epoch"]), float(epoch[select_by]))
            for epoch in record.get(schema.HISTORY) or [] if epoch.get(select_by) is not None]


def replay(optuna, study, spec: GridSpec, dists: dict[str, Any],
           trials: list[dict[str, Any]]) -> None:
    """Adds the complete and pruned trials of a folder's trials.jsonl to `study`, each with
    its first run's per-epoch figures (what the pruner compares a trial with).

    Raises:
        ValueError: a recorded trial's point lies outside the spec's axes (the spec changed).
    """
    state = {COMPLETE: optuna.trial.TrialState.COMPLETE,
             PRUNED: optuna.trial.TrialState.PRUNED}
    for entry in trials:
        if entry["state"] not in FINISHED:
            continue
        # A pruned trial was told its figures up to the epoch it was stopped at only.
        last = entry["pruned_at_epoch"] or max((e for e, _ in entry["curve"]), default=0)
        try:
            study.add_trial(optuna.trial.create_trial(
                params=entry["point"], distributions=dists, state=state[entry["state"]],
                value=entry["value"] if entry["state"] == COMPLETE else None,
                intermediate_values={epoch - 1: value for epoch, value in entry["curve"]
                                     if epoch <= last}))
        except (ValueError, KeyError) as error:
            raise ValueError(f"trial {entry['number']} of {TRIALS_FILE} "
                             f"({describe_point(entry['point'])}) does not fit the axes of "
                             f"grid spec {spec.source} ({error}): resume with the spec that "
                             "made the folder") from None


def run_search(spec: GridSpec, out_root: Path, resume: Path | None, executor,
               on_line: Callable[[str], None], summary_only: bool = False,
               extend: bool = False) -> tuple[Path, dict[str, Any]]:
    """Runs the search `spec` into a grid folder (a new one, or `resume`), then chooses.

    Args:
        spec: a checked spec with a [search] table.
        out_root: parent of a new folder (without `resume`).
        resume: a search's folder to continue: its finished trials are replayed, its
            unfinished ones completed first.
        executor: a LocalExecutor or RayExecutor.
        on_line: receives every progress line.
        summary_only: with `resume`, run nothing: choose again from the folder.
        extend: `resume` may hold another spec's search (`driver.run_study`).

    Returns:
        The folder and its summary (what grid.json holds).

    Raises:
        ValueError: Optuna missing, bad input (nothing written), every trial already
            finished, the folder locked by another driver.
        RunInterrupted, KeyboardInterrupt: Ctrl-C (or SIGTERM, `interrupts.stoppable`);
            what finished is recorded, and grid.json and the report describe it.
    """
    optuna = import_optuna()
    if summary_only and resume is None:
        raise ValueError("--summary-only needs --resume DIR: the search folder to choose from")
    with grid_folder(spec, out_root, resume, extend) as (folder, prepared):
        if summary_only:
            keep_spec(spec, folder)
        else:
            try:
                _search(optuna, spec, folder, prepared, executor, on_line)
            except KeyboardInterrupt:
                # As a grid's: what finished is chosen from and reported, then the stop.
                _summarise(spec, folder, prepared, on_line)
                raise
        return folder, _summarise(spec, folder, prepared, on_line)


def _search(optuna, spec: GridSpec, folder: Path, prepared: dict, executor,
            on_line: Callable[[str], None]) -> None:
    """Replays the folder's trials, then runs trials until `trials` are finished."""
    trials = read_trials(folder, on_line)
    study, dists = make_study(optuna, spec), distributions(optuna, spec)
    replay(optuna, study, spec, dists, trials)
    finished = sum(t["state"] in FINISHED for t in trials)
    remaining = spec.search.trials - finished
    if remaining <= 0:
        raise ValueError(f"every trial of search spec {spec.source} ({spec.search.trials}) is "
                         f"already recorded in {folder}: nothing to run (raise [search] "
                         "trials to search on)")
    done = {point_key(t["point"]) for t in trials if t["state"] in FINISHED}
    # Trials cut off by a kill or failed: their points first, their recorded runs skipped.
    unfinished = dict.fromkeys(point_key(r[schema.GRID_POINT])
                               for r in latest_records(folder, on_line).values()
                               if schema.GRID_POINT in r)
    again = [key for key in unfinished if key not in done]
    for key in again:
        study.enqueue_trial(_point_from_key(key, spec))
    start_writing(spec, folder, on_line)
    cut = cut_torn_tail(folder, TRIALS_FILE)
    if cut:
        on_line(f"warning: cut {cut} bytes of a trial cut off mid-write from "
                f"{folder / TRIALS_FILE}; it runs again")
    on_line(f"search folder {folder}: {finished} trial(s) recorded, {remaining} to run "
            f"({len(again)} of them unfinished before), {spec.search.sampler} sampler"
            f"{', median pruning' if spec.search.pruning else ''} ({executor.describe()})")
    for _ in range(remaining):
        trial = study.ask(dists)
        point = {axis: trial.params[axis] for axis in spec.axes}
        entry = _run_trial(spec, folder, prepared, executor, on_line, trial, point,
                           number=len(trials))
        trials.append(entry)
        append_json_line(folder / TRIALS_FILE, entry)
        state = {COMPLETE: optuna.trial.TrialState.COMPLETE,
                 PRUNED: optuna.trial.TrialState.PRUNED,
                 FAILED: optuna.trial.TrialState.FAIL}[entry["state"]]
        study.tell(trial, entry["value"] if entry["state"] == COMPLETE else None, state=state)
        on_line(f"== trial {entry['number']} ({describe_point(point)}): {entry['state']}"
                + (f", {spec.select_by} {entry['value']:.4f}" if entry["value"] is not None
                   else "")
                + (f" at epoch {entry['pruned_at_epoch']}" if entry["state"] == PRUNED else ""))


def _point_from_key(key: str, spec: GridSpec) -> dict[str, Any]:
    """The point of a recorded run, as `Study.enqueue_trial` takes it (the spec's axes)."""
    point = json.loads(key)
    return {axis: point[axis] for axis in spec.axes if axis in point}


def _run_trial(spec: GridSpec, folder: Path, prepared: dict, executor,
               on_line: Callable[[str], None], trial, point: dict[str, Any],
               number: int) -> dict[str, Any]:
    """Runs one trial's missing runs (the first alone when pruning) and judges it.

    Returns:
        Its trials.jsonl entry.
    """
    entry = {"number": number, "point": point, "value": None, "curve": [],
             "pruned_at_epoch": None}
    try:
        invocation = spec.invocation_at(point)
        check_batch_size(invocation, prepared[invocation.dataset])
    except ValueError as error:
        on_line(f"warning: trial {number} ({describe_point(point)}) cannot run: {error}")
        return {**entry, "state": FAILED}
    runs = plan_point(invocation, prepared)
    records = {run_id: record for run_id, record in latest_records(folder, on_line).items()
               if schema.succeeded(record)}
    done = set(records)
    first, rest = (runs[:1], runs[1:]) if spec.search.pruning else (runs, [])
    for batch in (first, rest):
        pending = [(point, run) for run in batch if run.run_id not in done]
        records.update(run_pending(folder, pending, executor, on_line, spec.select_by))
        if batch is first and spec.search.pruning:
            head = records[runs[0].run_id]
            if not schema.succeeded(head):
                return {**entry, "state": FAILED}
            entry["curve"] = first_run_curve(head, spec.select_by)
            for epoch, value in entry["curve"]:
                trial.report(value, epoch - 1)
                if trial.should_prune():
                    return {**entry, "state": PRUNED, "pruned_at_epoch": epoch}
    ours = [records[run.run_id] for run in runs]
    if not all(map(schema.succeeded, ours)):
        return {**entry, "state": FAILED}
    if not entry["curve"]:
        entry["curve"] = first_run_curve(ours[0], spec.select_by)
    values = [(r.get(SELECTION_SECTION) or {}).get(f"best_{spec.select_by}") for r in ours]
    if None in values:
        return {**entry, "state": FAILED}
    return {**entry, "state": COMPLETE, "value": sum(values) / len(values)}


def _summarise(spec: GridSpec, folder: Path, prepared: dict,
               on_line: Callable[[str], None]) -> dict[str, Any]:
    """grid.json and the report of a search folder: chosen among its complete trials."""
    # In the spec's order of the axes (a line of trials.jsonl has its keys sorted).
    trials = [{**entry, "point": {axis: entry["point"][axis] for axis in spec.axes
                                  if axis in entry["point"]}}
              for entry in read_trials(folder, on_line)]
    planned: dict[str, tuple[dict[str, Any], Any]] = {}
    points = {}
    for entry in trials:
        try:
            runs = plan_point(spec.invocation_at(entry["point"]), prepared)
        except ValueError:
            continue  # a point that could not run (its trial's warning said why)
        # A pruned trial ran its first run only; the others were never meant to run. A
        # point drawn twice, or failed then completed, plans its runs once.
        for run in runs[:1] if entry["state"] == PRUNED else runs:
            planned.setdefault(run.run_id, (entry["point"], run))
        if entry["state"] == COMPLETE:
            points.setdefault(point_key(entry["point"]), entry["point"])
    extra = {"search": asdict(spec.search),
             "trials": [{key: entry[key] for key in ("number", "point", "state", "value",
                                                      "pruned_at_epoch")}
                        for entry in trials]}
    return summarise(spec, folder, list(planned.values()), on_line, list(points.values()),
                     extra)
