"""FER-Bench's main command: train and evaluate models in every backend, side by side.

    python -m benchmarks.run --backend both --dataset synthetic
    python -m benchmarks.run --backend all --reference-backend torch   # every installed one
    python -m benchmarks.run --dataset ck+ --data-dir ~/data/CK+48 --folds 10
    python -m benchmarks.run --list-models
    python -m benchmarks.run --preset ci          # the CI regression check's runs (docs/ci.md)
    python -m benchmarks.run --recipe my.toml --lr 3e-4   # a recipe file, one field overridden

Every TrainConfig field has an option (`--label-smoothing`, `--compile/--no-compile`, …);
those given, and a preset's, override the recipe (`--recipe`: the dataset's shipped one by
default; see benchmarks/runner/recipe.py, which holds the presets and bounds too). The options
are defined in benchmarks/runner/command_line.py; this module runs the invocation they make
(`benchmarks.runner.launch.run_invocation`), writes its report and prints the results.

Every (backend, model, fold, seed) run executes in its own worker process; results go to
a new `reports/<timestamp>-<dataset>/results.jsonl` (the folder is made at the first
record), a side-by-side table is printed (with k-fold, also each model and backend's mean
± std accuracy over the folds), and the report (report.html, report.md, CSV summaries; see
`benchmarks.report`) is written next to the results. `--backend` is read by
`benchmarks.backend_choice` (names, comma lists, `both`, `all`, which prints one line
naming the backends it skipped for want of their framework).

Exit status: 0 when every run succeeded; 1 when a run failed or timed out, or a record or
the report could not be written (one line says what was kept); 2 for bad input, with one
line saying what is wrong, and nothing written; 130 after Ctrl-C and 143 after SIGTERM,
either of which records the run it interrupted and reports what finished.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from backends import MissingFrameworkError
from backends.catalog import describe_models
from benchmarks.analysis.load import LOADED_MARK, LOADED_NOTE, loaded_run, others_cpu_share
from benchmarks.console import run_command
from benchmarks.record.layout import (
    REPORT_HTML,
    RESULTS_FILE,
    TEST_SPLIT_PREFIX,
    WEIGHTS_DIR,
)
from benchmarks.record.schema import INTERRUPTED, is_twin
from benchmarks.runner.command_line import invocation_of, parse_args
from benchmarks.runner.env import available_cores
from benchmarks.runner.interrupts import exit_status, stop_name, stoppable_command
from benchmarks.runner.invocation import Invocation
from benchmarks.runner.launch import InvocationInterrupted, ResultsNotWritten, run_invocation


def fold_summary(records: list[dict[str, Any]]) -> str:
    """Mean ± std (sample) test accuracy over folds for each (model, backend)."""
    accuracies: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if record["status"] == "ok":
            key = (record["model"], record["backend"])
            accuracies.setdefault(key, []).append(record["metrics"]["accuracy"])
    lines = [f"{'model':<14}{'backend':<8}{'folds':>6}  accuracy (mean ± std over folds)"]
    for (model, backend), values in sorted(accuracies.items()):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"{model:<14}{backend:<8}{len(values):>6}  "
                     f"{statistics.mean(values):.3f} ± {spread:.3f}")
    return "\n".join(lines)


def list_models() -> str:
    lines = [f"{'model':<14}{'card':<6}{'params':>14}{'GFLOPs/img':>12}  (48×48×1, 7 classes)"]
    for row in describe_models():
        lines.append(f"{row['name']:<14}{'yes' if row['card'] else '':<6}"
                     f"{row['params']:>14,}{row['flops'] / 1e9:>12.3f}  {row['summary']}")
    return "\n".join(lines)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# How much of a core other processes may hold, on the 1-minute load average, before the
# machine counts as busy: the workers run one thread per core and every synchronous step
# waits for its slowest thread, so one core taken half the time already shows in the times.
BUSY_LOAD_MARGIN = 0.5


def busy_machine_warning() -> str | None:
    """One line saying the machine is already busy, so timings will suffer; None if not.

    Busy: the 1-minute load average leaves fewer than (cores this process may use) −
    BUSY_LOAD_MARGIN cores free, i.e. it exceeds the machine's other cores plus the
    margin. None where the OS has no load average.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = available_cores()
    limit = (os.cpu_count() or cores) - cores + BUSY_LOAD_MARGIN
    if load <= limit:
        return None
    return (f"warning: the machine is already busy (1-minute load average {load:.2f} > "
            f"{limit:.1f} on the {cores} cores this run may use): its timings will suffer "
            "and runs during which other processes take the CPU are marked as not "
            "comparable")


def _others_cell(record: dict[str, Any]) -> str:
    """The share of the run's CPU other processes took, marked when its timings are not
    comparable (that share, or a device shared with other runs: `analysis.load.loaded_run`)."""
    share = others_cpu_share(record)
    # A run that shared its device is marked even without the figure.
    mark = f" {LOADED_MARK}" if loaded_run(record) else ""
    return ("-" if share is None else f"{share:.0%}") + mark


def summary_table(records: list[dict[str, Any]]) -> str:
    """A plain-text side-by-side table: one row per run, backends of a model adjacent.

    Its last column is the share of the run's CPU capacity other processes used while it
    trained, marked when the run's timings are not comparable; a footnote then says what
    the mark means.
    """
    header = (f"{'model':<14}{'backend':<12}{'status':<12}{'acc':>7}{'mF1':>7}{'AUC':>7}"
              f"{'train s':>9}{'img/s':>9}{'eval s':>8}{'peak MB':>9}{'others':>10}")
    lines = [header, "-" * len(header)]
    for rec in sorted(records, key=lambda r: (r["model"], r.get("fold") or 0, r["seed"],
                                              is_twin(r), r["backend"])):
        m, t, mem = rec.get("metrics", {}), rec.get("timing", {}), rec.get("memory", {})
        backend = f"{rec['backend']} twin" if is_twin(rec) else rec["backend"]
        lines.append(
            f"{rec['model']:<14}{backend:<12}{rec['status']:<12}"
            f"{_fmt(m.get('accuracy'), '.3f'):>7}{_fmt(m.get('macro_f1'), '.3f'):>7}"
            f"{_fmt(m.get('auc_macro_ovr'), '.3f'):>7}{_fmt(t.get('train_wall_s'), '.1f'):>9}"
            f"{_fmt(t.get('train_throughput_img_s'), '.0f'):>9}"
            f"{_fmt(t.get('eval_wall_s'), '.2f'):>8}"
            f"{_fmt(mem.get('peak_host_rss_mb'), '.0f'):>9}{_others_cell(rec):>10}"
        )
    if any(map(loaded_run, records)):
        lines.append(LOADED_NOTE)
    return "\n".join(lines)


def weights_disk_line(report_dir: Path) -> str | None:
    """One line saying how much disk the saved weights (and test images) take; None if none."""
    folder = report_dir / WEIGHTS_DIR
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        return None
    total_bytes = sum(f.stat().st_size for f in files)
    runs = sum(not f.name.startswith(TEST_SPLIT_PREFIX) for f in files)
    return (f"weights: {total_bytes / 1e6:,.1f} MB on disk for {runs} run"
            f"{'s' if runs != 1 else ''} (with the test images): {folder}")


def _print_results(records: list[dict[str, Any]], invocation: Invocation) -> None:
    print()
    print(summary_table(records))
    if len(invocation.fold_indices()) > 1:
        print()
        print(fold_summary(records))


def _interrupted(stop: InvocationInterrupted, invocation: Invocation) -> int:
    """Says what an interrupted invocation kept; the exit status of the signal that stopped
    it."""
    if stop.report_dir is None:
        print(f"interrupted ({stop_name()}) before the first run was recorded; nothing "
              "written", file=sys.stderr)
        return exit_status()
    _print_results(stop.records, invocation)
    finished = sum(r["status"] != INTERRUPTED for r in stop.records)
    print(f"\ninterrupted ({stop_name()}): {finished} of {stop.planned} runs finished; results: "
          f"{stop.report_dir / RESULTS_FILE}")
    if stop.reported:
        print(f"report: {stop.report_dir / REPORT_HTML}")
    else:
        print(f"no report: rebuild it with `python -m benchmarks.report {stop.report_dir}`")
    return exit_status()


def _warn_if_busy() -> None:
    warning = busy_machine_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)


@stoppable_command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_models:
        print(list_models())
        return 0
    started = time.perf_counter()
    report = None
    if not args.no_report:
        # Imported only when asked: the report's libraries (scipy.stats, matplotlib) take
        # 1.9 s to import, paid by each of the CI check's 16 --no-report invocations.
        from benchmarks.report import write_report
        report = write_report
    try:
        invocation = invocation_of(args, on_line=print)
        report_dir, records = run_invocation(
            invocation, args.out, on_start=_warn_if_busy,
            report=report and partial(report, reference=invocation.reference_backend))
    except InvocationInterrupted as stop:
        return _interrupted(stop, invocation)
    except KeyboardInterrupt:
        print(f"interrupted ({stop_name()}) while loading the data; nothing written",
              file=sys.stderr)
        return exit_status()
    except ResultsNotWritten as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, MissingFrameworkError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_results(records, invocation)
    print(f"\n{len(records)} runs in {time.perf_counter() - started:.0f}s; "
          f"results: {report_dir / RESULTS_FILE}")
    disk = weights_disk_line(report_dir)
    if disk:
        print(disk)
    if args.no_report:
        print(f"report: not written (--no-report); `python -m benchmarks.report {report_dir}` "
              f"writes it")
    else:
        print(f"report: {report_dir / REPORT_HTML}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
