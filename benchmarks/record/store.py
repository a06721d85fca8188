"""Report folders and result records: created new, appended to, never overwritten (the
folder's file names: `benchmarks.record.layout`).

Each record is one line of results.jsonl, written whole or not at all: one write of the
full line, then fsync; when either fails (a full disk) the file is cut back to the size it
had, so the records before stay intact and readable. A line can still be cut off by a crash
of the whole machine mid-write; readers skip such a torn last line with a warning.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.record.layout import RESULTS_FILE
from benchmarks.record.schema import RecordError, check_record


def new_report_dir(out_root: Path, dataset: str) -> Path:
    """Creates and returns a fresh `<out_root>/<timestamp>-<dataset>/` folder.

    An existing folder is never reused: a clash within the same second gets a suffix.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace("+", "plus").replace("/", "_")
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        candidate = out_root / f"{stamp}-{safe}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new report folder under {out_root}")


def append_record(report_dir: Path, record: dict[str, Any]) -> None:
    """Appends one run's record as a JSON line to the folder's results file, durably.

    Raises:
        OSError: the line could not be written or synced (a full disk, …); the file then
            holds exactly what it held before.
    """
    append_json_line(report_dir / RESULTS_FILE, record)


def append_json_line(path: Path, entry: dict[str, Any]) -> None:
    """Appends `entry` as one JSON line to the file at `path`, durably (`append_record`).

    Raises:
        OSError: the line could not be written or synced; the file then holds exactly what
            it held before.
    """
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        size = os.fstat(handle).st_size
        try:
            # One write of the whole line. A regular file takes less only when it cannot
            # take more (the disk filling up): the rest is written on until the error.
            unwritten = memoryview(line)
            while unwritten:
                unwritten = unwritten[os.write(handle, unwritten):]
            os.fsync(handle)
        except BaseException:
            # Also on Ctrl-C: a record is whole or absent, never half a line.
            os.ftruncate(handle, size)
            raise
    finally:
        os.close(handle)


def cut_torn_tail(report_dir: Path, name: str = RESULTS_FILE) -> int:
    """Cuts a results file (or the folder's JSON-lines file `name`) back to its last whole
    line, so the next record starts a line.

    A driver killed in the middle of `append_record`'s write can leave part of a line;
    readers skip it, but a record appended after it would be glued to it.

    Returns:
        The bytes cut (0 when the file ends with a line end, is empty or is missing).
    """
    path = report_dir / name
    if not path.is_file():
        return 0
    content = path.read_bytes()
    whole = content.rfind(b"\n") + 1
    if whole == len(content):
        return 0
    with open(path, "r+b") as handle:
        handle.truncate(whole)
        os.fsync(handle.fileno())
    return len(content) - whole


class ResultsFileError(ValueError):
    """A results file that is missing, empty or unreadable; the message names the fix."""


def results_path(path: Path) -> Path:
    """The results file itself, given either it or the report folder holding it."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_records(path: Path,
                 on_warning: Callable[[str], None] = _warn) -> list[dict[str, Any]]:
    """Reads every record of a results file (or of the results file in a folder).

    A last line that is cut off (no line end, not JSON: the write of a run that was killed
    with its machine) is skipped, and `on_warning` told so; a damaged line anywhere else is
    an error.

    Args:
        path: a results file or the report folder holding one.
        on_warning: receives one line per problem that does not stop the reading (default:
            printed to stderr as "warning: …").

    Raises:
        ResultsFileError: the file is missing or unreadable, holds no records, or holds a
            line that is not UTF-8, not JSON, or not a record `schema.check_record`
            accepts (one lacking a field every record has, with a field of the wrong type,
            or written by a newer schema than this code reads).
    """
    path = results_path(path)
    rerun = "rerun `python -m benchmarks.run` to produce it"
    if not path.is_file():
        raise ResultsFileError(f"no results file at {path}: pass a report folder or its "
                               f"{RESULTS_FILE}, or {rerun}")
    records = []
    for number, record in read_json_lines(path, on_warning, "record", rerun):
        try:
            check_record(record)
        except RecordError as error:
            raise ResultsFileError(f"{path}, line {number}: {error}") from None
        records.append(record)
    if not records:
        raise ResultsFileError(f"{path} holds no result records; {rerun}")
    return records


def read_json_lines(path: Path, on_warning: Callable[[str], None], what: str,
                    fix: str) -> list[tuple[int, Any]]:
    """(line number, value) of each JSON line of the file at `path`, blank lines skipped.

    A last line cut off mid-write (no line end, not JSON) is skipped, and `on_warning`
    told so; a damaged line anywhere else is an error.

    Args:
        path: the file.
        on_warning: receives the warning of a cut-off last line.
        what: what a line holds ("record"), for the messages.
        fix: what to do about a damaged file, for the message.

    Raises:
        ResultsFileError: the file is unreadable, or a line is not UTF-8 or not JSON.
    """
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError as error:
        raise ResultsFileError(f"cannot read {path}: {error.strerror or error}") from None
    values = []
    for number, raw in enumerate(lines, 1):
        # Cut off mid-write: the last line, without its line end (which is written last).
        torn = number == len(lines) and not raw.endswith(b"\n")
        try:
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            values.append((number, json.loads(line)))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            if torn:
                kept = (f"the {len(values)} {what} before it is" if len(values) == 1
                        else f"the {len(values)} {what}s before it are")
                on_warning(f"{path}, line {number}: skipped an incomplete last {what} "
                           f"({len(raw)} bytes, cut off while it was written); {kept} read")
                continue
            if isinstance(error, UnicodeDecodeError):
                problem = (f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                           f"{error.start + 1})")
            elif isinstance(error, RecursionError):  # json recurses on each level
                problem = "JSON nested too deep to read (no record nests so)"
            else:
                problem = f"not valid JSON ({error.msg})"
            raise ResultsFileError(f"{path}, line {number}: {problem}; the file is damaged: "
                                   f"restore it or {fix}") from None
    return values
