"""The environment a run executed in: versions, hardware, the suite's commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.trackers import nvml

# The checkout (or installed tree) this code runs from.
SUITE_ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one.

    This is os.cpu_count() unless the process is pinned (taskset, a container's cpuset),
    in which case more threads than cores would only oversubscribe them.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def git_commit() -> str | None:
    """The suite's git commit, with "-dirty" when the tree has changes; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=SUITE_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=SUITE_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


# Variables that change how many threads or which devices the frameworks use.
_RUNTIME_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
)


def host_environment() -> dict[str, Any]:
    """Framework-independent facts about the host: versions, CPU, memory, GPUs (via NVML)."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "available_cores": available_cores(),
        "host_memory_mb": psutil.virtual_memory().total / 1024**2,
        # Above the core count, other processes competed for the CPU during the run.
        "load_average_1_5_15m": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **nvml.gpu_facts(),
        "runtime_variables": {k: os.environ[k] for k in _RUNTIME_VARIABLES if k in os.environ},
        "suite_commit": git_commit(),
    }
