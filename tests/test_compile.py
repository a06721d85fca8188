"""`TrainConfig.compile` (`--compile`): XLA for TF, torch.compile for torch, compiled once.

Compilation belongs to the first epoch, which the record's timing reports apart
(`timing.first_epoch_s`; throughput and `steady_epoch_s_mean` come from the later epochs
only, benchmarks/runner/worker.py). So no later epoch may compile again, though the
learning rate changes every step of a warm-up and every epoch of a cosine schedule.
"""

import statistics

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from torch._dynamo.utils import counters  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.base import TrainConfig  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402

SIDE = 16
# Compiled against eager, relative, per epoch's mean loss. Noise floor (tests/noise_floor.py,
# AMD EPYC with AVX-512, 2026-12-05): one framework against itself under another CPU path
# parts by up to 9.7e-4 (TF, oneDNN held to AVX2; torch 8.0e-4 at 1 thread), compiled and
# eager by 5.9e-4: 3e-3 is 3.1× the floor. A compiled step that kept a stale learning rate
# would train another trajectory: the rate changes at every step of the warm-up epoch.
COMPILED_TRAIN_LOSS_TOLERANCE = 3e-3


def fit_four_epochs(name: str, compile: bool, count=None):
    """Fits 4 epochs of proposed_cnn from the shared start.

    Args:
        name: the backend.
        compile: TrainConfig.compile.
        count: if given, `count(backend)` is recorded after each epoch.

    Returns:
        (backend, epoch logs, the counts).
    """
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, SIDE, SIDE, 1), dtype=np.uint8)
    y = rng.integers(0, 7, len(x))
    backend = create_backend(name)
    backend.build("proposed_cnn", (SIDE, SIDE, 1), 7, dropout=0.0)
    backend.set_weights(shared_initial_weights(backend.get_weights(), 0))
    config = TrainConfig(epochs=4, batch_size=16, warmup_epochs=1, compile=compile)
    counts = []
    logs = backend.fit(x, y, config, (x[:16], y[:16]),
                       None if count is None else lambda log: counts.append(count(backend)))
    return backend, logs, counts


@pytest.mark.slow  # torch.compile takes about a minute on a 2-core CPU
def test_compiled_training_compiles_in_the_first_epoch_only():
    torch_backend, torch_logs, graphs = fit_four_epochs(
        "torch", True, lambda backend: counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1 and graphs == graphs[:1] * len(graphs), graphs
    tf_backend, tf_logs, traces = fit_four_epochs(
        "tf", True, lambda backend: backend._step.experimental_get_tracing_count())
    # The first call traces twice (once more after creating the optimizer's variables).
    assert traces[0] >= 1 and traces == traces[:1] * len(traces), traces
    assert tf_backend.flags()["jit_compile"] and torch_backend.flags()["torch_compile"]
    for logs in (tf_logs, torch_logs):
        # Compiling costs seconds, a steady epoch here a fraction of one (the median, as
        # another process's load may stretch any single epoch).
        assert logs[0].train_s > 3 * statistics.median(log.train_s for log in logs[1:])
    # Compiled, each framework still trains as it does uncompiled.
    for name, logs in (("tf", tf_logs), ("torch", torch_logs)):
        _, eager, _ = fit_four_epochs(name, False)
        np.testing.assert_allclose([e.train_loss for e in logs],
                                   [e.train_loss for e in eager],
                                   rtol=COMPILED_TRAIN_LOSS_TOLERANCE)
