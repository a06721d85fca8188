"""pytest-benchmark suite: one training step and one inference batch per card model.

    make perf            # time them all and save the run (.benchmarks/, --benchmark-autosave)
    make perf-compare    # time them again, side by side with the last saved run

Each card model in each backend, at a fixed small batch of synthetic tensors, one thread
per framework (as the CI preset: docs/ci.md). The step is `Backend.train_step`, the same
code path as every step of `Backend.fit`; the inference batch is `predict_proba` on one
batch. Warm-up rounds (tracing, kernel selection, first touch of the optimizer's state)
are excluded. Each benchmark's `extra_info` records memory: the process's peak RSS while
it ran and the growth over the RSS before the model was built (this pytest process holds
both frameworks, so the growth is the figure that belongs to the model), the peak of its
anonymous part (comparable across installations), the framework's
GPU allocator peak (null on the CPU), and how long the process waited for a CPU while it
ran (other processes' load: raw times are only comparable between quiet runs).

Not part of `make test` (pyproject's norecursedirs skips this folder unless it is named).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from backends import BACKEND_NAMES, create_backend
from backends.base import Backend
from backends.catalog import CARD_MODELS
from backends.init import shared_initial_weights
from backends.train_config import TrainConfig
from benchmarks.trackers.memory import HostMemoryTracker, current_rss_mb
from benchmarks.trackers.timing import CpuWaitClock

pytestmark = pytest.mark.perf

BATCH = 16
INPUT_SHAPE = (32, 32, 1)  # (height, width, channels), as the CI preset
NUM_CLASSES = 7
THREADS = 1
ROUNDS = 5
WARMUP_ROUNDS = 2
SEED = 0


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def backend(request) -> Backend:
    pytest.importorskip({"tf": "tensorflow", "torch": "torch"}[request.param])
    return create_backend(request.param, threads=THREADS)


def _images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, (BATCH, *INPUT_SHAPE), dtype=np.uint8)
    return x, np.arange(BATCH) % NUM_CLASSES


def _build(backend: Backend, model: str) -> float:
    """Builds `model` from the shared initial weights; returns the RSS before, in MB."""
    rss_before_mb = current_rss_mb()
    backend.seed(SEED)
    backend.build(model, INPUT_SHAPE, NUM_CLASSES)
    backend.set_weights(shared_initial_weights(backend.get_weights(), SEED))
    return rss_before_mb


def _measure(benchmark, backend: Backend, call: Callable[[], Any], rss_before_mb: float) -> None:
    """Times `call` with pytest-benchmark and records memory and CPU wait in extra_info."""
    clock = CpuWaitClock()
    waited_from = clock()
    with HostMemoryTracker() as memory:
        benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    waited_to = clock()
    benchmark.extra_info.update({
        "batch_size": BATCH,
        "threads": THREADS,
        "peak_host_rss_mb": round(memory.peak_mb, 1),
        "host_rss_growth_mb": round(memory.peak_mb - rss_before_mb, 1),
        # Without mapped library pages, which depend on the page cache (docs/measurement.md).
        "peak_anon_rss_mb": None if memory.peak_anon_mb is None else round(memory.peak_anon_mb, 1),
        "gpu_allocator_peak_mb": backend.gpu_allocator_peak_mb(),
        "cpu_wait_s": None if waited_from is None else round(waited_to - waited_from, 3),
    })


@pytest.mark.parametrize("model", CARD_MODELS)
def test_train_step(benchmark, backend: Backend, model: str) -> None:
    rss_before_mb = _build(backend, model)
    x, y = _images()
    backend.start_training(x, y, TrainConfig(batch_size=BATCH, seed=SEED))
    batch = np.arange(BATCH)
    _measure(benchmark, backend, lambda: backend.train_step(batch), rss_before_mb)
    assert np.isfinite(backend.train_step(batch))


@pytest.mark.parametrize("model", CARD_MODELS)
def test_inference_batch(benchmark, backend: Backend, model: str) -> None:
    rss_before_mb = _build(backend, model)
    x, _ = _images()
    _measure(benchmark, backend, lambda: backend.predict_proba(x, BATCH), rss_before_mb)
    probabilities = backend.predict_proba(x, BATCH)
    assert probabilities.shape == (BATCH, NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
