"""`python -m benchmarks.leaderboard DIR... [--out DIR]`: one leaderboard over every report
folder under the given folders: leaderboard.html (self-contained), leaderboard.md and
leaderboard.csv (`benchmarks.leaderboard`).

Exit status: 0 when written (folders that could not be read are left out, each with a
note on stderr and on the page); 2 for bad input: a folder that does not exist, none
holding a report folder, or an --out that is a file or not writable (one line, nothing
written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.console import run_command
from benchmarks.leaderboard import LeaderboardError, collect
from benchmarks.leaderboard.render import (
    LEADERBOARD_CSV,
    LEADERBOARD_HTML,
    LEADERBOARD_MD,
    render_csv,
    render_html,
    render_markdown,
)
from benchmarks.record.store import new_report_dir

# The report's atomic write: a crash never leaves a half-written page behind.
from benchmarks.report import write_text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.leaderboard",
        description="One leaderboard over every report folder under the given folders: "
                    "rows ranked within their protocol only.")
    parser.add_argument("folders", type=Path, nargs="+", metavar="DIR",
                        help="folders holding report folders (searched at any depth)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the folder to write leaderboard.html, .md and .csv into "
                             "(made if missing; earlier leaderboard files there are "
                             "replaced); default: a new reports/<timestamp>-leaderboard/")
    return parser


def _check_out(out: Path) -> None:
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise LeaderboardError(f"--out {out}: {existing} is not a writable folder: pass a "
                               "folder for the leaderboard (made if missing)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    notes: list[str] = []
    try:
        if args.out is not None:
            _check_out(args.out)
        ranked, folders = collect(args.folders, notes.append)
    except LeaderboardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else new_report_dir(Path("reports"), "leaderboard")
    out.mkdir(parents=True, exist_ok=True)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    for name, text in ((LEADERBOARD_HTML, render_html(ranked, out, folders, notes)),
                       (LEADERBOARD_MD, render_markdown(ranked, out, folders, notes)),
                       (LEADERBOARD_CSV, render_csv(ranked, out))):
        write_text(out / name, text)
    rows = sum(map(len, ranked.values()))
    print(f"{rows} rows in {len(ranked)} protocol(s) from {folders} report folder(s): "
          f"{out / LEADERBOARD_HTML}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
