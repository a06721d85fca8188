"""`python -m benchmarks.report FOLDER`: rebuilds a report folder's report files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.backend_choice import add_reference_option
from benchmarks.console import run_command
from benchmarks.explain import explain_folder
from benchmarks.record.store import ResultsFileError, results_path
from benchmarks.report import write_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Rebuild a report folder's report.html, report.md and CSV summaries "
                    "from its results.jsonl, without training.",
    )
    parser.add_argument("location", type=Path,
                        help="a report folder (reports/<timestamp>-<dataset>) or its "
                             "results.jsonl")
    parser.add_argument("--explain", action="store_true",
                        help="first compute the saved runs' Grad-CAM and feature maps in "
                             "every backend (what `python -m benchmarks.explain` does)")
    add_reference_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.explain:
            # benchmarks.explain reads the report package, so the report's writer never
            # imports it: only this command line does.
            explain_folder(results_path(args.location), reference=args.reference_backend)
        written = write_report(args.location, reference=args.reference_backend)
    except (ResultsFileError, ValueError) as error:  # WeightsError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The input was fine; the folder could not take the report (a full disk, …).
        print(f"error: could not write the report in {results_path(args.location).parent}: "
              f"{error.strerror or error}; the results file is untouched: free space (or "
              "fix the folder's permissions), then rerun", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
