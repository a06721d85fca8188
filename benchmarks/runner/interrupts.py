"""Stopping a command: Ctrl-C and SIGTERM alike.

Ctrl-C (SIGINT) raises KeyboardInterrupt, and the commands handle it: the run it
interrupted is recorded `interrupted`, what finished is reported, temporary folders are
removed. SIGTERM, which batch schedulers, container stops and CI time-outs send, ends a
Python process on the spot by default, with none of that. Within `stoppable`, SIGTERM
raises KeyboardInterrupt too, so both take the same path; `stop_name` and `exit_status`
then say which signal it was.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The stop signals `stoppable` has turned into KeyboardInterrupt, in order; empty when the
# command was not stopped, or by Ctrl-C (Python's own SIGINT handler raises it).
_received: list[int] = []


def _interrupt(number: int, frame: object) -> None:
    _received.append(number)
    raise KeyboardInterrupt


@contextmanager
def stoppable() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does.

    For a command's `main`, in the main thread (where Python runs signal handlers).
    """
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _received.clear()


def stoppable_command(
    command: Callable[[list[str] | None], int],
) -> Callable[[list[str] | None], int]:
    """A command's `main`: `command` run `stoppable`, so SIGTERM stops it as Ctrl-C does.

    Args:
        command: the command's body, taking its arguments (None: sys.argv's) and
            returning its exit status.

    Returns:
        `main(argv=None)`, which runs `command(argv)` within `stoppable`.
    """
    @functools.wraps(command)
    def main(argv: list[str] | None = None) -> int:
        with stoppable():
            return command(argv)

    return main


def stop_name() -> str:
    """What stopped the command, for messages and records: "SIGTERM" or "Ctrl-C"."""
    return signal.Signals(_received[0]).name if _received else "Ctrl-C"


def exit_status() -> int:
    """The exit status of a stopped command: 128 + the signal's number, as a shell
    reports a process the signal ended (130 after Ctrl-C, 143 after SIGTERM)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


@contextmanager
def deferred() -> Iterator[None]:
    """Holds Ctrl-C and SIGTERM back until the block is done, then delivers them.

    So a record written to the results file is also among the records reported.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only: none can strike here.
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: caught.append(number))
                for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            signal.raise_signal(caught[0])
