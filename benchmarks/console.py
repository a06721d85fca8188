"""The commands' output streams: printing never costs a result, nor ends in a traceback.

Output can meet a stream that cannot encode it (`PYTHONIOENCODING=ascii`, a C locale) or a
reader that has gone (`… | head -1`). Either used to raise in the middle of a command,
between a finished run and its record. `run_command` runs a command with stdout and stderr
writing what they cannot encode as escapes (`\\u2192`), and writing nothing more, quietly,
once their reader has gone: the command itself goes on, records its runs and writes its
report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TextIO


class _Tolerant:
    """A text stream that stops writing, instead of raising, once its reader has gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        # Point the file descriptor at the null device: what is still buffered and all
        # that follows go nowhere, and the interpreter's last flush raises nothing either.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, self._stream.fileno())
        os.close(null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run_command(main: Callable[[], int]) -> int:
    """Runs a command's `main` with tolerant stdout and stderr (see the module).

    For `if __name__ == "__main__": sys.exit(run_command(main))`: it replaces the
    process's streams, which only a command's own process should.

    Returns:
        `main`'s exit status.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, _Tolerant(stream))
    return main()


def say(line: str) -> None:
    """Prints one progress line at once: the commands' default `on_line`.

    Flushed, so that a line reaches a pipe or a log as its step happens, not when the
    buffer fills.

    Args:
        line: the line, without its newline.
    """
    print(line, flush=True)
