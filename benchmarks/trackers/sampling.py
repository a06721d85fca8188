"""A peak sampler shared by the memory trackers, and the ids of its threads.

The samplers run in daemon threads that sleep between samples; `timing.CpuWaitClock`
leaves their threads out, since their waits for a CPU delay no measured work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# Native ids of the samplers' own threads.
SAMPLER_THREADS: set[int] = set()


class PeakSampler:
    """Calls `sample()` (a size in MB) every `interval_s` in a daemon thread, keeps the max.

    One sample is also taken synchronously at start and at stop, so even a block shorter
    than the interval has a value. Samples of None (nothing to measure) are ignored, so
    `peak_mb` stays None when nothing could be measured.
    """

    def __init__(self, sample: Callable[[], float | None], interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0. Received: interval_s={interval_s!r}")
        self._sample = sample
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_mb: float | None = None

    def _take(self) -> None:
        value = self._sample()
        if value is not None and (self.peak_mb is None or value > self.peak_mb):
            self.peak_mb = value

    def _run(self) -> None:
        SAMPLER_THREADS.add(threading.get_native_id())
        try:
            while not self._stop.wait(self._interval_s):
                self._take()
        finally:
            SAMPLER_THREADS.discard(threading.get_native_id())

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a tracker can be started only once")
        self._take()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


