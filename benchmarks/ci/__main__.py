"""The CI regression check's command line (docs/ci.md).

    python -m benchmarks.ci check [--baseline DIR] [--out DIR] [--budget-s S] [RUN OPTIONS …]
    python -m benchmarks.ci baseline [--baseline DIR] [--out DIR] [--repeats N]
    python -m benchmarks.ci corpus [--pairs N] [--corpus FILE] [RUN OPTIONS …]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.ci.corpus import DEFAULT_CORPUS, collect
from benchmarks.ci.regression_check import DEFAULT_BASELINE, DEFAULT_REPEATS, check, write_baseline
from benchmarks.console import run_command
from benchmarks.record.store import ResultsFileError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ci",
        description="CI regression check on training speed and memory (docs/ci.md). "
                    "check: further options go to benchmarks.run.",
    )
    parser.add_argument("command", choices=["check", "baseline", "corpus"],
                        help="check: run the ci preset from this tree and from the baseline's "
                             "commit, judge speed between them and memory against the "
                             "baseline; baseline: run it and write the results as the new "
                             "baseline; corpus: A/B readings of unchanged code for the "
                             "speed rule's false-alarm rate")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                        help=f"baseline folder (default: {DEFAULT_BASELINE})")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the new runs' folders (default: reports)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="baseline: runs of the preset to average "
                             f"(default: {DEFAULT_REPEATS})")
    parser.add_argument("--budget-s", type=float, default=None, metavar="S",
                        help="check: seconds from its start by which its readings must be "
                             "done (.ci/run passes what is left of CI's 20 minutes); a run "
                             "that would not fit is not started, and what it would have "
                             "judged passes with a warning line (default: no limit)")
    parser.add_argument("--pairs", type=int, default=5,
                        help="corpus: A/B passes of the preset to read (default: 5)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help=f"corpus: the JSON file to append to (default: {DEFAULT_CORPUS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, run_options = build_parser().parse_known_args(argv)
    try:
        if args.command == "baseline":
            if run_options or args.repeats < 1:
                print(f"error: the baseline is the full ci preset, repeated ≥ 1 times. "
                      f"Received: {' '.join(run_options)} --repeats {args.repeats}",
                      file=sys.stderr)
                return 2
            return write_baseline(args.baseline, args.out, args.repeats)
        if args.command == "corpus":
            if args.pairs < 1:
                print(f"error: --pairs must be ≥ 1. Received: --pairs {args.pairs}",
                      file=sys.stderr)
                return 2
            return collect(args.baseline, args.out, args.corpus, args.pairs, run_options)
        if args.budget_s is not None and not args.budget_s >= 0:
            print(f"error: --budget-s must be ≥ 0 seconds. Received: --budget-s {args.budget_s}",
                  file=sys.stderr)
            return 2
        return check(args.baseline, args.out, run_options, args.budget_s)
    except ResultsFileError as error:
        print(f"error: {error}; to create the baseline run `make ci-baseline`",
              file=sys.stderr)
        return 2
    except ValueError as error:  # bad run options, or a NotComparableError naming the fix
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_command(main))
