"""Host and GPU memory: RSS and anonymous RSS now and at their peak over a block.

* `HostMemoryTracker`: peak RSS and peak anonymous RSS over a block, sampled in a
  background thread.
* `GpuMemoryTracker`: peak GPU memory NVML attributes to this process, sampled likewise.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

import psutil

from benchmarks.trackers import nvml
from benchmarks.trackers.sampling import PeakSampler

_MB = 1024 * 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB."""
    return psutil.Process(os.getpid()).memory_info().rss / _MB


def _anon_mb(info: Any) -> float | None:
    # psutil's `shared` (Linux only) is the resident file-backed and shared-memory part.
    shared = getattr(info, "shared", None)
    return None if shared is None else (info.rss - shared) / _MB


def current_anon_rss_mb() -> float | None:
    """Anonymous resident memory of this process now, in MB; None where unknown.

    This is the RSS without the resident pages of mapped files (the frameworks' shared
    libraries): what the process itself allocated (heap, tensors, stacks). The file part
    depends on the page cache as well as on the code: after a fresh `pip install`, the
    same `import torch` maps 133 MB of library pages instead of 77 MB, while its anonymous
    memory stays at 148 MB (docs/measurement.md). Linux only (psutil's `shared`).
    """
    return _anon_mb(psutil.Process(os.getpid()).memory_info())


def os_peak_rss_mb() -> float:
    """The OS's high-water mark of this process's RSS, in MB.

    On Linux this is VmHWM, the peak of this process's own address space. `ru_maxrss`
    is not used there: the kernel carries the pre-exec high-water mark into a spawned
    child, so a worker started by a 2 GB harness would report at least 2 GB.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, the BSDs KiB.
    return peak / _MB if sys.platform == "darwin" else peak / 1024


class HostMemoryTracker(PeakSampler):
    """Peak resident set size of this process over a block, in MB (`peak_mb`), and the
    peak of its anonymous part (`peak_anon_mb`, see `current_anon_rss_mb`; None where
    unknown), both from the same samples.

    Sampling catches the peak of one phase (training, evaluation); allocations shorter
    than the interval can slip between samples, which `os_peak_rss_mb()` never misses
    (for the whole RSS; the kernel keeps no high-water mark of the anonymous part).

    Args:
        interval_s: seconds between samples. A sample (thread wake-up, GIL, /proc read)
            costs about 0.25 ms of CPU, so 20 a second take 0.5% of one core.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        process = psutil.Process(os.getpid())
        self.peak_anon_mb: float | None = None

        def sample() -> float:
            info = process.memory_info()
            anon = _anon_mb(info)
            if anon is not None and (self.peak_anon_mb is None or anon > self.peak_anon_mb):
                self.peak_anon_mb = anon
            return info.rss / _MB

        super().__init__(sample, interval_s)


class GpuMemoryTracker(PeakSampler):
    """Peak GPU memory NVML attributes to this process over a block, in MB (`peak_mb`).

    This counts everything the process holds on the GPU (CUDA context, framework pools,
    cuDNN/cuBLAS workspaces), measured outside either framework, so it is the one GPU
    memory figure that compares TensorFlow and PyTorch like for like. None on a machine
    without NVML or where the driver does not list this process.

    Args:
        interval_s: seconds between samples (a sample is one NVML call per GPU).
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        pid = os.getpid()
        super().__init__(lambda: nvml.process_memory_mb(pid), interval_s)


