"""The few NVML queries the suite makes, each answering None where NVML cannot.

NVML (the NVIDIA driver's management library, via `pynvml` from nvidia-ml-py) measures
the GPU from outside any framework, which is what makes its figures comparable across
TensorFlow and PyTorch. Every query here degrades to None (never 0) when pynvml is not
installed, no NVIDIA driver is loaded, the GPU does not support the query, or the driver
hides what is asked (per-process memory under WDDM, or for a PID that this container
cannot see), so a CPU-only machine simply records nulls.
"""

from __future__ import annotations

import functools
from typing import Any

_MB = 1024 * 1024

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a broken install must not crash runs
    pynvml = None


@functools.cache
def device_handles() -> tuple[Any, ...]:
    """Returns a handle per GPU that NVML sees (NVML's own, PCI-bus order); () without NVML.

    NVML is initialised once per process and left initialised: shutting it down while a
    sampler thread may still query it would race for nothing.
    """
    if pynvml is None:
        return ()
    try:
        pynvml.nvmlInit()
        return tuple(
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        )
    except pynvml.NVMLError:
        return ()


def _query(function, *args):
    """Calls an NVML function; None where it raises an NVMLError (unsupported, no driver)."""
    try:
        return function(*args)
    except pynvml.NVMLError:
        return None


def _processes(handle: Any) -> list[Any]:
    """The compute processes NVML lists on one GPU ([] where it cannot say)."""
    return _query(pynvml.nvmlDeviceGetComputeRunningProcesses, handle) or []


def process_memory_mb(pid: int) -> float | None:
    """GPU memory NVML attributes to process `pid`, summed over GPUs, in MB.

    None when NVML is absent, `pid` holds no GPU context, or the driver does not report
    the process's usage. In a container without the host's PID namespace NVML lists host
    PIDs, so `pid` is not found and this is None rather than a wrong number.
    """
    total, found = 0, False
    for handle in device_handles():
        for process in _processes(handle):
            if process.pid == pid and process.usedGpuMemory is not None:
                total += process.usedGpuMemory
                found = True
    return total / _MB if found else None


def process_devices(pid: int) -> tuple[Any, ...]:
    """Handles of the GPUs on which `pid` holds a compute context.

    Falls back to the only GPU when NVML sees exactly one and `pid` is not listed (a
    container hides host PIDs), since the process can then only be computing there.
    """
    handles = device_handles()
    mine = tuple(h for h in handles if any(p.pid == pid for p in _processes(h)))
    return mine or (handles if len(handles) == 1 else ())


def energy_mj(handle: Any) -> int | None:
    """The GPU's cumulative energy counter in mJ (Volta and later); None where unsupported."""
    return _query(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)


def gpu_facts() -> dict[str, Any]:
    """Driver version and GPU models as NVML reports them (None/[] without NVML)."""
    handles = device_handles()
    if not handles:
        return {"nvml_driver_version": None, "nvml_gpus": []}
    gpus = []
    for handle in handles:
        memory = _query(pynvml.nvmlDeviceGetMemoryInfo, handle)
        gpus.append({
            "name": _query(pynvml.nvmlDeviceGetName, handle),
            "memory_mb": memory.total / _MB if memory is not None else None,
        })
    return {
        "nvml_driver_version": _query(pynvml.nvmlSystemGetDriverVersion),
        "nvml_gpus": gpus,
    }
