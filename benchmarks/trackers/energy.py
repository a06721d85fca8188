"""GPU energy over a block, from NVML's cumulative counter."""

from __future__ import annotations

import os
from typing import Any

from benchmarks.trackers import nvml


class EnergyTracker:
    """Energy the GPUs this process computes on drew over a block, in J (`energy_j`).

    Reads NVML's cumulative energy counter (mJ) at both ends. It measures whole boards,
    so anything else running on the same GPU is counted too: benchmark on an idle GPU.
    `energy_j` stays None on a CPU-only machine or a GPU without the counter. Start it
    after the framework has created its GPU context, so the process's GPUs are known.
    """

    def __init__(self) -> None:
        self._handles: tuple[Any, ...] = ()
        self._start_mj: list[int] | None = None
        self.energy_j: float | None = None

    def _read_mj(self) -> list[int] | None:
        """Each GPU's counter; None unless every GPU of the process has one."""
        readings = [nvml.energy_mj(handle) for handle in self._handles]
        return readings if readings and None not in readings else None

    def __enter__(self) -> EnergyTracker:
        self._handles = nvml.process_devices(os.getpid())
        self._start_mj = self._read_mj()
        return self

    def __exit__(self, *exc) -> None:
        end_mj = self._read_mj() if self._start_mj is not None else None
        if end_mj is not None:
            self.energy_j = sum(e - s for s, e in zip(self._start_mj, end_mj, strict=True)) / 1e3


