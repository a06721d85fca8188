"""Test-only fault injection: proves that the CI regression check can fail (docs/ci.md).

Two switches, read from the environment once, where a run starts (`runner.launch.run_invocation`),
carried to the worker in its RunSpec and applied from outside the backend:

* ``FERBENCH_TEST_INJECT_SLOWDOWN="BACKEND:FRACTION"`` (e.g. ``"torch:0.30"``): every
  training epoch (and `Backend.train_step`) of that backend (`slow_down` wraps its
  `_train_epoch`, the code path of both) keeps the CPU busy for
  FRACTION × its own measured duration before returning, inside the timed region: a 30%
  slower training step. Busy, not asleep: an idle CPU makes the reference workload timed
  after the epoch about 10% slower on the development machine, which hid a third of a
  sleeping slowdown from the load-normalised speed (docs/ci.md).
* ``FERBENCH_TEST_INJECT_ALLOC_MB="MB"`` (e.g. ``"100"``): the worker holds MB of touched,
  resident memory from just after the framework import (the `rss_after_import_mb`
  reading) until its memory figures are read: memory the run adds, as a fatter model,
  batch or data pipeline would.

Neither acts unless ``FERBENCH_TEST_INJECT_ARMED`` holds the exact phrase ARM_PHRASE, so
a stray variable cannot skew a real benchmark unnoticed: a switch that is set but not
armed, or malformed, is an error (the run stops), never silently ignored. Every record a
worker writes carries the active injection in its ``test_injection`` field (None without).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from backends.registry import BACKEND_NAMES
from benchmarks.record.schema import describe_injection

SLOWDOWN_VARIABLE = "FERBENCH_TEST_INJECT_SLOWDOWN"
ALLOC_VARIABLE = "FERBENCH_TEST_INJECT_ALLOC_MB"
ARM_VARIABLE = "FERBENCH_TEST_INJECT_ARMED"
ARM_PHRASE = "corrupt-my-measurements"

_MB = 1024 * 1024


@dataclass(frozen=True)
class InjectedFaults:
    """The faults a worker must inject.

    Attributes:
        slowdown_backend: backend whose training is slowed, or None.
        slowdown_fraction: extra busy time as a fraction of each epoch's measured time.
        alloc_mb: resident memory held for the whole worker run, in MB (0: none).
    """

    slowdown_backend: str | None = None
    slowdown_fraction: float = 0.0
    alloc_mb: int = 0

    def slowdown_for(self, backend: str) -> float:
        """The extra busy fraction for `backend`'s training (0.0 when it is not slowed)."""
        return self.slowdown_fraction if backend == self.slowdown_backend else 0.0

    def describe(self) -> str:
        """One line for logs, e.g. "torch training +30% (busy CPU), 100 MB held"."""
        return describe_injection(self.as_record())

    def as_record(self) -> dict[str, Any]:
        """The record's ``test_injection`` field."""
        return asdict(self)


def _parse_slowdown(value: str) -> tuple[str, float]:
    backend, _, fraction = value.partition(":")
    try:
        number = float(fraction)
    except ValueError:
        number = float("nan")
    if backend not in BACKEND_NAMES or not 0.0 < number <= 1.0:
        raise ValueError(f"{SLOWDOWN_VARIABLE} must be BACKEND:FRACTION with BACKEND one of "
                         f"{', '.join(BACKEND_NAMES)} and 0 < FRACTION ≤ 1, e.g. torch:0.30. "
                         f"Received: {value!r}")
    return backend, number


def _parse_alloc(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ALLOC_VARIABLE} must be a whole number of MB ≥ 1, e.g. 100. "
                         f"Received: {value!r}")
    return int(value)


def injected_faults(environ: Mapping[str, str] | None = None) -> InjectedFaults | None:
    """The armed faults in `environ` (default: this process's environment).

    Returns:
        None when no switch is set, else the faults to inject.

    Raises:
        ValueError: a switch is set but not armed, or its value is malformed.
    """
    environ = os.environ if environ is None else environ
    slowdown, alloc = environ.get(SLOWDOWN_VARIABLE), environ.get(ALLOC_VARIABLE)
    if slowdown is None and alloc is None:
        return None
    if environ.get(ARM_VARIABLE) != ARM_PHRASE:
        names = [n for n, v in ((SLOWDOWN_VARIABLE, slowdown), (ALLOC_VARIABLE, alloc)) if v]
        raise ValueError(f"{' and '.join(names)} set, but test fault injection is not armed: "
                         f"unset it, or (tests only) set {ARM_VARIABLE}={ARM_PHRASE}")
    backend, fraction = _parse_slowdown(slowdown) if slowdown is not None else (None, 0.0)
    return InjectedFaults(backend, fraction, _parse_alloc(alloc) if alloc is not None else 0)


def hold_resident_memory(megabytes: int) -> np.ndarray:
    """Allocates `megabytes` MB and writes every byte, so all of it is resident.

    Keep the returned buffer referenced for as long as the memory must stay held.
    """
    return np.ones(megabytes * _MB, np.uint8)


def busy_wait(seconds: float) -> None:
    """Keeps this thread computing for `seconds` of wall time, as extra work would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def slow_down(backend: Any, faults: InjectedFaults | None) -> None:
    """Makes `backend`'s training `faults`' fraction slower, if they slow its framework.

    Wraps the instance's `_train_epoch`, which every epoch of `fit` and every
    `train_step` runs, so the extra busy time falls inside whatever times the training.
    """
    fraction = faults.slowdown_for(backend.name) if faults else 0.0
    if not fraction:
        return
    train_epoch = backend._train_epoch

    def slowed(batches: list[np.ndarray], learning_rates: np.ndarray) -> float:
        start = time.perf_counter()
        loss = train_epoch(batches, learning_rates)
        busy_wait(fraction * (time.perf_counter() - start))
        return loss

    backend._train_epoch = slowed
