"""`python -m benchmarks.grid SPEC.toml`: a hyper-parameter grid, chosen on validation only.

    python -m benchmarks.grid study.toml                       # one run at a time, here
    python -m benchmarks.grid study.toml --jobs 2              # quality only: shared cores
    python -m benchmarks.grid study.toml --executor ray --address auto
    python -m benchmarks.grid study.toml --resume reports/20261201-120000-synthetic-grid
    python -m benchmarks.grid wider.toml --resume reports/20261201-120000-synthetic-grid --extend
    python -m benchmarks.grid search.toml                      # a spec with [search]: Optuna

Exit status: 0 when every run succeeded; 1 when a run failed (its record says why; rerun
with --resume to retry it); 2 for bad input (one line naming the problem and the spec's
line, nothing written), a --resume with another spec than the folder ran (without
--extend), a spec whose every run (a search: every trial) is already done, a grid folder
another driver holds, an executor that cannot start, or a search without Optuna
installed; 130 after Ctrl-C and 143 after SIGTERM (what finished is recorded and
reported: --resume completes it). docs/grids.md says more.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends import MissingFrameworkError
from benchmarks.console import run_command, say
from benchmarks.grid.driver import run_study, summary_table
from benchmarks.grid.executors import EXECUTORS, LocalExecutor, RayExecutor
from benchmarks.grid.search import import_optuna, run_search
from benchmarks.grid.spec import load_spec
from benchmarks.record.store import ResultsFileError
from benchmarks.runner.interrupts import exit_status, stop_name, stoppable_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grid",
        description="Run a hyper-parameter grid in both frameworks; choose each model's "
                    "configuration on validation only (docs/grids.md).")
    parser.add_argument("spec", type=Path, help="the grid spec (TOML: [grid], [fixed], "
                                                "[axes], [measure])")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the new grid folder (default: reports)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="complete the grid folder DIR: runs recorded ok there are "
                             "skipped, missing and failed ones run")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: the spec may differ from the one the folder ran "
                             "(say, more values on an axis): its runs not yet recorded run "
                             "into the folder, grid.json and the report describe it, and the "
                             "earlier spec stays as grid-spec.<N>.toml. Without it, a "
                             "different spec is refused")
    parser.add_argument("--summary-only", action="store_true",
                        help="with --resume: run nothing, choose again from the folder's "
                             "records (after changing select_by) and rewrite grid.json, the "
                             "study and the report")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: worker processes on this machine (default); ray: one "
                             "Ray task per run")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local: worker processes at once (default 1: timings have the "
                             "machine to themselves; more: records say they were shared)")
    parser.add_argument("--address", default=None,
                        help="ray: auto (this machine's cluster) or HOST:PORT of the head "
                             "(default: a new local Ray instance)")
    parser.add_argument("--gpus-per-run", type=int, default=0,
                        help="ray: GPUs each run's task asks for (default 0)")
    parser.add_argument("--deterministic", action="store_true",
                        help="both frameworks' deterministic-algorithm switches in every run")
    return parser


@stoppable_command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec, args.deterministic)
        if spec.search is not None:
            import_optuna()  # before an executor starts: a missing extra is bad input
        if args.executor == "ray":
            executor = RayExecutor(args.address, args.gpus_per_run)
        else:
            executor = LocalExecutor(args.jobs)
        run = run_search if spec.search is not None else run_study
        if args.extend and args.resume is None:
            raise ValueError("--extend needs --resume DIR: the grid folder to extend")
        folder, summary = run(spec, args.out, args.resume, executor, say, args.summary_only,
                              args.extend)
    except KeyboardInterrupt:
        print(f"interrupted ({stop_name()}): what finished is recorded and reported; complete "
              "it with --resume", file=sys.stderr)
        return exit_status()
    except (ValueError, MissingFrameworkError, FileNotFoundError, ResultsFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print()
    print(summary_table(summary))
    print(f"\ngrid folder: {folder} (grid.json, results.jsonl; report.html: the chosen "
          "configurations' runs)")
    return 0 if summary["runs"]["not_ok"] == 0 and summary["runs"]["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
