"""The workload options of the one-off training studies (`benchmarks.precision`,
`benchmarks.tf_threads`): how long each of their runs trains, on how many synthetic faces,
in batches of how many.

Both report a run's first epoch apart from its steady ones, so both need two epochs at
least; one owner keeps their options and that bound the same.
"""

from __future__ import annotations

import argparse

# The first epoch carries compilation and warm-up; the steady epochs after it are timed.
MIN_STUDY_EPOCHS = 2


def add_workload_options(parser: argparse.ArgumentParser) -> None:
    """Adds --epochs, --subjects and --batch-size to a study's parser.

    Args:
        parser: the study's command-line parser.
    """
    parser.add_argument("--epochs", type=int, default=4,
                        help=f"epochs per run, ≥ {MIN_STUDY_EPOCHS}: the first is reported "
                             "apart (default 4)")
    parser.add_argument("--subjects", type=int, default=28,
                        help="synthetic subjects, 21 images each (default 28)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default 32)")


def check_workload(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Ends the study with a usage error (exit status 2) when `args.epochs` is too few.

    Args:
        parser: the study's parser, which prints the error.
        args: its parsed arguments, `add_workload_options`'s among them.
    """
    if args.epochs < MIN_STUDY_EPOCHS:
        parser.error(f"--epochs must be ≥ {MIN_STUDY_EPOCHS} (a steady epoch after the "
                     f"first). Received: {args.epochs}")
