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


# The x86 vector instruction sets that move oneDNN's and XLA's kernels, widest first.
_WIDEST_ISA = (("AVX-512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"))


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU as far as speed figures are concerned: its model name, and on x86 Linux its
    family, model number and widest vector instruction sets, e.g. "AMD EPYC (family 25,
    model 1; AVX2)".

    A virtual machine may show only "AMD EPYC" for CPUs that differ 2.7× in TensorFlow's
    convolutions (AVX2 against AVX-512, docs/ci.md), and oneDNN picks its kernels by the
    instruction sets: a speed figure compares only between equal strings.

    Args:
        cpuinfo: the file to read (Linux's /proc/cpuinfo).

    Returns:
        The description; elsewhere than Linux, what `platform` knows.
    """
    if not cpuinfo.exists():
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = [f"family {fields['cpu family']}, model {fields['model']}"] \
        if "cpu family" in fields and "model" in fields else []
    flags = set(fields.get("flags", "").split())
    widest = [isa for isa, flag in _WIDEST_ISA if flag in flags]
    if widest:
        details.append(", ".join(widest[:1] + (["AMX"] if "amx_tile" in flags else [])))
    return f"{name} ({'; '.join(details)})" if details else name


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
