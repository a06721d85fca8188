"""Measurement probes: small trackers with one job each (time, host memory)."""

from __future__ import annotations

import os
import resource
import sys
import time

import psutil

_MB = 1024 * 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB."""
    return psutil.Process(os.getpid()).memory_info().rss / _MB


def os_peak_rss_mb() -> float:
    """The OS's high-water mark of this process's RSS, in MB (ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / _MB if sys.platform == "darwin" else peak / 1024


class Stopwatch:
    """Wall-clock interval timer: `with Stopwatch() as t: …; t.seconds`."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
