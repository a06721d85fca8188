"""Hand-written TOML files (recipes, grid specs), read at the door: a regular file of a
bounded size and depth, and messages that name the line a key is set on."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from benchmarks.messages import shortened

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, under its PyPI name
    import tomli as tomllib

# A recipe or grid spec is written by hand (a shipped recipe takes under 2 kB), and every
# run's record carries its recipe's text: 64 KiB is room for any, and keeps a file that is
# no recipe from being read whole.
MAX_TOML_BYTES = 64 * 2**10
# Tables in tables and arrays in arrays: a recipe nests 4 deep ([models.vgg16.augment]
# and its values), a spec's range 3. tomllib recurses on each level, into a RecursionError
# near a thousand.
MAX_TOML_DEPTH = 8


def line_of(text: str, table: str, key: str | None = None) -> str:
    """" (line N)" where `key` is set in `table` (dotted, as "models.vgg16"; "" for the top
    level), or the table's header line without a key; "" where the text does not show it
    plainly (an inline table, say)."""
    lines = text.splitlines()
    begin = 0
    if table:
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(
            rf'"?{re.escape(part)}"?' for part in table.split(".")) + r"\s*\]")
        start = next((n for n, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            return ""
        if key is None:
            return f" (line {start + 1})"
        begin = start + 1
    assignment = re.compile(rf'^\s*"?{re.escape(key or "")}"?\s*=')
    for n in range(begin, len(lines)):
        if lines[n].lstrip().startswith("["):
            break
        if assignment.match(lines[n]):
            return f" (line {n + 1})"
    return ""


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """The tables of the TOML `text`, nested at most MAX_TOML_DEPTH deep.

    Raises:
        ValueError: one line naming `where`: it is not TOML, or nests deeper.
    """
    too_deep = (f"{where} nests tables and arrays more than {MAX_TOML_DEPTH} deep; a recipe "
                "or grid spec needs 4 at most: flatten it")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{where} is not valid TOML: {error}") from None
    except RecursionError:  # tomllib recurses per level: a 2 kB file can exhaust it
        raise ValueError(too_deep) from None
    levels = [(raw, 1)]
    while levels:
        value, depth = levels.pop()
        if depth > MAX_TOML_DEPTH:
            raise ValueError(too_deep)
        inner = value.values() if isinstance(value, dict) else value
        levels += [(item, depth + 1) for item in inner if isinstance(item, (dict, list))]
    return raw


def read_toml_text(path: str | Path, what: str, fix: str) -> str:
    """The text of the TOML file at `path`: a regular file of at most MAX_TOML_BYTES.

    Args:
        path: the file.
        what: what the file is, for the message ("recipe", "grid spec").
        fix: what to pass instead, for the message.

    Raises:
        ValueError: one line, when the file is missing, unreadable, not a regular file (a
            FIFO would wait for a writer for ever, /dev/zero give bytes for ever), larger
            than MAX_TOML_BYTES or not UTF-8.
    """
    shown = shortened(str(path), 200)
    try:
        # Without O_NONBLOCK, opening a FIFO waits for a writer; it is refused below.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        reason = ("not found" if isinstance(error, FileNotFoundError)
                  else f"unreadable ({error.strerror or type(error).__name__})")
        raise ValueError(f"{what} {shown} {reason}: {fix}") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise ValueError(f"{what} {shown} is not a regular file (a folder, a FIFO or a "
                         f"device): {fix}")
    with os.fdopen(handle, "rb") as stream:
        data = stream.read(MAX_TOML_BYTES + 1)
    if len(data) > MAX_TOML_BYTES:
        raise ValueError(f"{what} {shown} is larger than {MAX_TOML_BYTES:,} bytes, far more "
                         f"than any {what} holds: {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {shown} is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                         f"offset {error.start}): {fix}") from None
