"""Jobs that tests/test_probes.py runs in fresh processes, as the worker runs a benchmark.

    python -m tests.measurement_jobs allocate MB
    python -m tests.measurement_jobs fake_fit STEP_S {sync,async}

Each prints one JSON object. A fresh process matters: the OS high-water mark of the
pytest process (frameworks and models already loaded) would hide a new peak.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from backends.base import Backend
from backends.train_config import TrainConfig
from benchmarks.runner.worker import timing_summary
from benchmarks.trackers.memory import (
    HostMemoryTracker,
    current_anon_rss_mb,
    current_rss_mb,
    os_peak_rss_mb,
)

_MB = 1024 * 1024
FAKE_IMAGES = 320
FAKE_BATCH = 32
FAKE_TRACING_S = 0.2  # what the fake's first epoch adds, as tracing/compilation would


def allocate(megabytes: int) -> dict[str, float]:
    """Holds a touched buffer of `megabytes` MB for 0.2 s inside a HostMemoryTracker."""
    before = {"rss_mb": current_rss_mb(), "anon_mb": current_anon_rss_mb(),
              "os_peak_mb": os_peak_rss_mb()}
    with HostMemoryTracker() as tracker:
        buffer = np.ones(megabytes * _MB, np.uint8)  # np.ones writes, so every page is resident
        time.sleep(0.2)
        del buffer
    return {
        "rss_before_mb": before["rss_mb"],
        "anon_before_mb": before["anon_mb"],
        "tracker_peak_anon_mb": tracker.peak_anon_mb,
        "os_peak_before_mb": before["os_peak_mb"],
        "tracker_peak_mb": tracker.peak_mb,
        "os_peak_after_mb": os_peak_rss_mb(),
        "rss_after_mb": current_rss_mb(),
    }


class SleepingBackend(Backend):
    """A Backend whose training step costs a known time and computes nothing.

    "sync": each step sleeps `step_s` before returning, like a CPU backend. "async": a
    step only queues `step_s` of work and `synchronize()` sleeps it off, like a GPU
    backend whose epoch returns before the device is idle; its time shows only if the
    clock is read after synchronising.
    """

    name = "sleeping"
    framework = "none"

    def __init__(self, step_s: float, mode: str) -> None:
        super().__init__()
        self.step_s, self.mode = step_s, mode
        self.queued_s = 0.0
        self.epochs_run = 0

    def _wait(self, seconds: float) -> None:
        if self.mode == "sync":
            time.sleep(seconds)
        else:
            self.queued_s += seconds

    def synchronize(self) -> None:
        time.sleep(self.queued_s)
        self.queued_s = 0.0

    def _build(self, model_name, input_shape, num_classes, precision, overrides) -> None:
        pass  # nothing to build: `Backend.build` records the name and classes

    def _prepare_training(self, config, class_weights, layers=None) -> None:
        self.epochs_run = 0

    def _train_epoch(self, batches, learning_rates: np.ndarray) -> float:
        self.epochs_run += 1
        if self.epochs_run == 1:
            self._wait(FAKE_TRACING_S)
        for _ in batches:
            self._wait(self.step_s)
        return 0.0

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.full((len(x), self.num_classes), 1.0 / self.num_classes)

    def _unused(self, *args, **kwargs):
        raise NotImplementedError("not needed to time fit()")

    versions = device_name = flags = seed = num_trainable_params = _unused
    get_weights = set_weights = logits = gpu_allocator_peak_mb = matmul_op = _unused
    _stage_outputs = _stage_gradients = _unused


def fake_fit(step_s: float, mode: str) -> dict[str, Any]:
    """Trains SleepingBackend for 3 epochs and returns the worker's timing summary."""
    backend = SleepingBackend(step_s, mode)
    backend.build("fake", (8, 8, 1), 2)
    x = np.zeros((FAKE_IMAGES, 8, 8, 1), np.uint8)
    y = np.arange(FAKE_IMAGES) % 2
    config = TrainConfig(epochs=3, batch_size=FAKE_BATCH)
    history = backend.fit(x, y, config)
    timing = timing_summary(history, build_s=0.0, fit_s=sum(e.train_s for e in history),
                     eval_s=1.0, num_eval=1)
    return {**timing, "expected_img_s": FAKE_BATCH / step_s, "tracing_s": FAKE_TRACING_S}


JOBS = {"allocate": lambda mb: allocate(int(mb)), "fake_fit": lambda s, m: fake_fit(float(s), m)}

if __name__ == "__main__":
    print(json.dumps(JOBS[sys.argv[1]](*sys.argv[2:])))
