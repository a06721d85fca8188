"""What changed between two reports: deltas of every figure, regressions marked.

    python -m benchmarks.compare reports/BEFORE reports/AFTER
    python -m benchmarks.compare BASELINE.jsonl reports/AFTER --fail-on-regression

A and B are report folders or results files. For every (dataset, model, backend) the
figures of B's successful runs (mean over seeds) are set against A's. A figure is a
regression when it got worse by more than the threshold of its kind:

* quality (accuracy, balanced accuracy, macro/weighted F1, AUC): an absolute drop, in
  fraction points, above `--max-accuracy-drop` (default 0.02);
* time (times, latencies; throughputs count as time per image): a relative slowdown above
  `--max-slowdown` (default 0.10);
* normalised speed (training speed normalised for the machine's load, docs/ci.md): a
  relative slowdown above `--max-normalised-slowdown` (default 0.10);
* memory (absolute RSS, GPU memory): a relative growth above `--max-memory-growth`
  (default 0.10);
* anonymous memory (RSS without the pages of mapped files, i.e. what the process
  allocated): a relative growth above `--max-anon-memory-growth` (default 0.10);
* energy: a relative growth above `--max-energy-growth` (default 0.10).

A time figure whose A or B side holds a run during whose steady training epochs other
processes used more than 10% of its CPU capacity (`analysis.load`, docs/measurement.md) is
not judged: it is marked †, its verdict says why, and such runs are listed under "Timings
taken under load". Normalised speed, memory and quality figures are judged as usual.

A run (same backend, model, dataset, fold and seed) that was ok in A and did not succeed in
B is a regression too. A run present in only one of them is listed, not judged: the grids
differ. With `--fail-on-regression` the exit status is 1 when there is a regression and 0
otherwise; 2 means unusable input, or (with `--fail-on-regression`) two reports with
nothing in common to judge: no shared run, no (dataset, model, backend) measured on both
sides. `--profile ci` swaps the defaults for the CI check's
(CI_THRESHOLDS: judge normalised speed and anonymous memory, show the rest); explicit threshold
options still win.

The comparison itself is `benchmarks.analysis.comparison.compare_records`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.analysis.comparison import (
    DEFAULT_THRESHOLDS,
    THRESHOLD_RULES,
    check_thresholds,
    compare_records,
)
from benchmarks.ci.thresholds import CI_THRESHOLDS
from benchmarks.console import run_command
from benchmarks.record.store import read_records
from benchmarks.report.comparison import render

PROFILES = {"default": DEFAULT_THRESHOLDS, "ci": CI_THRESHOLDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Compare two FER-Bench reports: deltas of every figure per (dataset, "
                    "model, backend), regressions marked.",
    )
    parser.add_argument("a", type=Path, help="reference report folder or results.jsonl")
    parser.add_argument("b", type=Path, help="candidate report folder or results.jsonl")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit with status 1 when B regresses against A")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="threshold defaults: 'default', or 'ci' for the CI check on a "
                             "shared machine (judges normalised speed and anonymous memory only; "
                             "see docs/ci.md)")
    for kind, rule in THRESHOLD_RULES.items():
        what = ("absolute drop of any quality metric, in fraction points" if not rule.relative
                else f"relative {rule.word} of any {kind.replace('_', ' ')} figure")
        parser.add_argument(rule.flag, type=float, default=None, dest=kind,
                            help=f"largest {what} that is not a regression; inf: never "
                                 f"(default: {rule.default:g}, with --profile ci "
                                 f"{CI_THRESHOLDS[kind]:g})")
    parser.add_argument("--markdown", action="store_true",
                        help="print Markdown tables (for pull-request comments)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile = PROFILES[args.profile]
    thresholds = {kind: profile[kind] if getattr(args, kind) is None else getattr(args, kind)
                  for kind in THRESHOLD_RULES}
    try:
        check_thresholds(thresholds)
        comparison = compare_records(read_records(args.a), read_records(args.b), thresholds)
    except ValueError as error:  # bad thresholds, or a ResultsFileError naming the fix
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.fail_on_regression and not comparison.matched:
        print(f"error: nothing to compare: {args.a} and {args.b} share no run and no "
              "(dataset, model, backend) measured on both sides, so no regression could be "
              "found: compare reports of the same models and datasets", file=sys.stderr)
        return 2
    print(render(comparison, str(args.a), str(args.b), markdown=args.markdown), end="")
    return 1 if args.fail_on_regression and comparison.regressions else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
