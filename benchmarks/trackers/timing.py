"""Time and the machine's speed: trackers with one job each.

* `Stopwatch`: wall time of a block, the device synchronised at both ends.
* `LatencyTracker`: latency percentiles of repeated calls, warm-up calls kept apart;
  `inference_latency`: the record's batch-1 and training-batch latencies of a predictor.
* `peak_matmul_flops`: the machine's demonstrated float32 FLOP/s (calibration).
* `CpuWaitClock`: how long this process's threads waited for a CPU (run-queue delay, which
  its own threads cause too when they outnumber the cores).
* `OthersCpuClock`: how much CPU time other processes used on this process's CPUs.
* `SpeedCalibration`: the momentary speed of the machine for a fixed reference workload.

None of them knows a framework: device synchronisation and the calibration matmul come
in as callables from the Backend, so both frameworks are measured by the same code, and
nothing here adds a host synchronisation inside a training epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil

from benchmarks.trackers.sampling import SAMPLER_THREADS

_MB = 1024 * 1024


def _no_sync() -> None:
    """The synchronisation of a device that runs synchronously (the host)."""


class Stopwatch:
    """Wall-clock interval timer: `with Stopwatch(sync) as t: …; t.seconds`.

    Args:
        sync: waits until the device has finished all queued work; called before the
            clock starts (so earlier work is not billed to the block) and before it stops
            (so the block's own asynchronous work is).
    """

    def __init__(self, sync: Callable[[], None] = _no_sync) -> None:
        self._sync = sync
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


class LatencyTracker:
    """Latencies of individual calls, each bracketed by device synchronisation.

    Args:
        sync: waits for the device, as for `Stopwatch`.
    """

    def __init__(self, sync: Callable[[], None] = _no_sync) -> None:
        self._sync = sync
        self.latencies_s: list[float] = []

    @contextmanager
    def track(self):
        """Times the enclosed block as one latency sample."""
        with Stopwatch(self._sync) as watch:
            yield
        self.latencies_s.append(watch.seconds)

    def repeat(
        self,
        call: Callable[[], Any],
        repeats: int,
        budget_s: float = float("inf"),
        min_repeats: int = 1,
    ) -> None:
        """Times up to `repeats` calls, stopping early once `budget_s` is spent.

        Args:
            call: the unit of work.
            repeats: calls at most.
            budget_s: stop once the timed calls took this long in total …
            min_repeats: … but only after at least this many.
        """
        if repeats < 1 or not 1 <= min_repeats <= repeats:
            raise ValueError(
                "repeats must be ≥ 1 and 1 ≤ min_repeats ≤ repeats. "
                f"Received: repeats={repeats}, min_repeats={min_repeats}"
            )
        for done in range(repeats):
            if done >= min_repeats and sum(self.latencies_s) >= budget_s:
                break
            with self.track():
                call()

    def percentile_ms(self, q: float) -> float | None:
        """The q-th percentile (0–100, linear interpolation) in ms; None before any call."""
        if not self.latencies_s:
            return None
        return float(np.percentile(self.latencies_s, q)) * 1e3


def measure_latency(
    call: Callable[[], Any],
    sync: Callable[[], None] = _no_sync,
    warmup: int = 3,
    repeats: int = 50,
    budget_s: float = 5.0,
) -> dict[str, float | int | None]:
    """Times `call` after warm-up; warm-up calls are reported apart, not in the percentiles.

    Args:
        call: one inference (or any unit of work) to time.
        sync: waits for the device.
        warmup: calls before the timed ones (tracing, autotuning, caches); ≥ 1.
        repeats: timed calls at most.
        budget_s: stop once the timed calls took this long, after at least 5 (or
            `repeats`) of them.

    Returns:
        first_ms (the first warm-up call, which includes tracing/compilation), p50_ms,
        p95_ms and calls (the number of timed calls).
    """
    if warmup < 1:
        raise ValueError(f"warmup must be ≥ 1. Received: warmup={warmup}")
    warm = LatencyTracker(sync)
    warm.repeat(call, warmup)
    timed = LatencyTracker(sync)
    timed.repeat(call, repeats, budget_s, min_repeats=min(5, repeats))
    return {
        "first_ms": warm.latencies_s[0] * 1e3,
        "p50_ms": timed.percentile_ms(50),
        "p95_ms": timed.percentile_ms(95),
        "calls": len(timed.latencies_s),
    }


def inference_latency(
    predict: Callable[[np.ndarray, int], Any],
    images: np.ndarray,
    train_batch_size: int,
    sync: Callable[[], None] = _no_sync,
    warmup: int = 3,
    repeats: int = 50,
    budget_s: float = 5.0,
) -> dict[str, float | int | None]:
    """Inference latency at batch 1 and at the training batch size: the record's `latency`.

    The one owner of what a latency figure measures, for every runtime that predicts:
    the training worker's backends and the onnxruntime worker call it alike.

    Args:
        predict: `predict(batch, batch_size)` → class probabilities: one call is the
            whole batch (`Backend.predict_proba`'s signature).
        images: uint8 NHWC images, cycled when fewer than a batch.
        train_batch_size: the second batch size timed.
        sync: waits for the device.
        warmup, repeats, budget_s: as for `measure_latency`, per batch size.

    Returns:
        `latency_train_batch_size`, then for the prefixes `latency_b1` and
        `latency_train_batch` each of `measure_latency`'s fields (`latency_b1_p50_ms`, …).
    """
    out: dict[str, float | int | None] = {"latency_train_batch_size": train_batch_size}
    for prefix, size in (("latency_b1", 1), ("latency_train_batch", train_batch_size)):
        batch = np.take(images, np.arange(size) % len(images), axis=0)
        stats = measure_latency(lambda batch=batch: predict(batch, len(batch)), sync,
                                warmup=warmup, repeats=repeats, budget_s=budget_s)
        out.update({f"{prefix}_{name}": value for name, value in stats.items()})
    return out


def peak_matmul_flops(
    matmul: Callable[[], Any],
    size: int,
    sync: Callable[[], None] = _no_sync,
    budget_s: float = 1.0,
    max_calls: int = 20,
) -> float:
    """The best FLOP/s of repeated size×size float32 matmuls: the machine's usable peak.

    Interference only ever slows a call down, so the fastest call is the closest to what
    the hardware does with this framework's kernels and thread settings.

    Args:
        matmul: runs one size×size @ size×size float32 matmul on the device.
        size: the matrix side, for the FLOP count 2·size³.
        sync: waits for the device.
        budget_s: stop once the timed calls took this long, after at least 3 of them.
        max_calls: timed calls at most.

    Returns:
        FLOP/s.
    """
    if size < 1:
        raise ValueError(f"size must be ≥ 1. Received: size={size}")
    # Warm-up, untimed: kernel selection, thread-pool start, first touch of the output.
    LatencyTracker(sync).repeat(matmul, 1)
    timed = LatencyTracker(sync)
    timed.repeat(matmul, max_calls, budget_s, min_repeats=min(3, max_calls))
    return 2 * size**3 / min(timed.latencies_s)


class CpuWaitClock:
    """Cumulative seconds this process's threads were ready to run but waited for a CPU.

    A compute thread that waits 2 s in the run queue finishes its work 2 s later, whereas
    sleeping or blocking on I/O is not counted. The queue does not say whom a thread
    waited behind: on 2 cores TensorFlow's own intra- and inter-op threads queue behind
    each other on a quiet machine (8–23% of its training), so this is information about
    the run, not a measure of other processes' load (`OthersCpuClock` is). Read it at
    both ends of a block; the difference is the block's wait. Reads Linux's per-thread
    scheduler statistics (`/proc/self/task/*/schedstat`, run-queue delay); the trackers'
    sampler threads are left out. A thread that ends keeps its last reading, so waits are
    never lost or counted twice. Calling it returns None where the kernel does not keep the
    statistics.
    """

    _TASKS = "/proc/self/task"

    def __init__(self) -> None:
        self._seen_ns: dict[str, int] = {}  # thread id → run-queue delay at the last read
        self._ended_ns = 0  # waits of threads whose id was reused since
        self.available = _schedstat("/proc/self/schedstat") not in (None, (0, 0))

    def __call__(self) -> float | None:
        if not self.available:
            return None
        for tid in os.listdir(self._TASKS):
            if int(tid) in SAMPLER_THREADS:
                continue
            reading = _schedstat(f"{self._TASKS}/{tid}/schedstat")
            if reading is None:
                continue  # the thread ended between listing and reading
            delay_ns = reading[1]
            last = self._seen_ns.get(tid)
            if last is not None and delay_ns < last:
                self._ended_ns += last  # a new thread with an old thread's id
            self._seen_ns[tid] = delay_ns
        return (self._ended_ns + sum(self._seen_ns.values())) / 1e9


def _schedstat(path: str) -> tuple[int, int] | None:
    """(time on a CPU, time waiting for one) in ns from a schedstat file; None if unreadable."""
    try:
        with open(path) as handle:
            fields = handle.read().split()
        return int(fields[0]), int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


# /proc/stat's per-CPU columns: user nice system idle iowait irq softirq steal (guest and
# guest_nice follow, already counted in user and nice). Busy is every column but idle and
# iowait; steal is time the hypervisor gave to other virtual machines: others' load too.
_PROC_STAT_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


class OthersCpuClock:
    """Cumulative CPU seconds other processes used on the CPUs this process may run on.

    The machine's busy time on those CPUs (`/proc/stat`, including the time a hypervisor
    gave to other virtual machines) minus this process tree's own CPU time (psutil: every
    thread of this process, its children, reaped or alive, and theirs). The run's own
    threads never count, however much they queue behind each other; what remains is the
    capacity someone else took. Read it at both ends of a block; the difference is the
    block's. Both sides are kept in clock ticks (10 ms), so a block's figure is exact to a
    few ticks. Calling it returns None where there is no `/proc/stat` (non-Linux).
    """

    _STAT = "/proc/stat"

    def __init__(self) -> None:
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._process = psutil.Process()
        self.available = bool(self.cpus) and self._busy_s() is not None

    def __call__(self) -> float | None:
        if not self.available:
            return None
        own_s = self._tree_cpu_s()
        busy_s = self._busy_s()
        return None if busy_s is None else busy_s - own_s

    def _busy_s(self) -> float | None:
        """Seconds the CPUs in `self.cpus` were busy since boot; None if unreadable."""
        wanted = {f"cpu{n}" for n in self.cpus}
        try:
            with open(self._STAT) as handle:
                rows = [line.split() for line in handle if line.startswith("cpu")]
            ticks = sum(int(row[1 + column]) for row in rows if row[0] in wanted
                        for column in _PROC_STAT_BUSY_COLUMNS)
        except (OSError, IndexError, ValueError):
            return None
        return ticks * self._tick_s

    def _tree_cpu_s(self) -> float:
        """CPU seconds of this process and its descendants, reaped children included."""
        total = 0.0
        for process in (self._process, *self._process.children(recursive=True)):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue  # ended between listing and reading; its reaper's figures hold it
            total += times.user + times.system + times.children_user + times.children_system
        return total


class SpeedCalibration:
    """Times a fixed reference workload, its CPU wait taken out: the machine's speed now.

    On a shared machine, work slows down in two ways: it waits for a CPU (which
    `CpuWaitClock` measures and takes out) and, while it runs, it shares caches and memory
    bandwidth with the other processes, which no counter shows. The reference workload
    feels the second kind the way training does: it mixes compute (float32 matmuls in the
    backend's framework, device and threads) and memory traffic (streaming an array larger
    than the CPU's caches), so training time divided by this one's changes much less with
    the load than either alone (docs/ci.md has the measurements).

    Args:
        matmul: the backend's `matmul_op(matmul_size)`.
        sync: waits for the device.
        clock: the process's `CpuWaitClock`.
        matmul_calls: matmuls per calibration.
        stream_mb: size of the array copied, in MB.
        stream_calls: copies per calibration.
    """

    def __init__(
        self,
        matmul: Callable[[], Any],
        sync: Callable[[], None],
        clock: CpuWaitClock,
        matmul_calls: int = 20,
        stream_mb: int = 32,
        stream_calls: int = 10,
    ) -> None:
        self._matmul, self._sync, self._clock = matmul, sync, clock
        self._matmul_calls, self._stream_calls = matmul_calls, stream_calls
        self._source = np.ones(stream_mb * _MB // 4, np.float32)
        self._target = np.empty_like(self._source)
        self()  # warm-up, untimed: kernel selection, first touch of every buffer

    def __call__(self) -> float | None:
        """The reference workload's duration now, without its CPU wait, in s.

        None where the CPU wait is unknown.
        """
        self._sync()
        waited_from, started = self._clock(), time.perf_counter()
        for _ in range(self._matmul_calls):
            self._matmul()
        self._sync()
        for _ in range(self._stream_calls):
            np.copyto(self._target, self._source)
        elapsed, waited_to = time.perf_counter() - started, self._clock()
        return None if waited_from is None else elapsed - (waited_to - waited_from)
