"""`TrainConfig.compile` (`--compile`): XLA for TF, torch.compile for torch, compiled once;
and no timed region but the first epoch traces.

Compilation belongs to the first epoch, which the record's timing reports apart
(`timing.first_epoch_s`; throughput and `steady_epoch_s_mean` come from the later epochs
only, benchmarks/runner/worker.py). So no later epoch may compile again, though the
learning rate changes every step of a warm-up and every epoch of a cosine schedule. The
evaluation stopwatch holds prediction alone: the test set's batch shapes are traced
before it starts.
"""

import statistics

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from torch._dynamo.utils import counters  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402
from backends.tf import backend as tf_backend  # noqa: E402
from backends.tf.backend import _predict_step  # noqa: E402
from backends.train_config import TrainConfig  # noqa: E402
from benchmarks.runner import worker  # noqa: E402
from benchmarks.runner.config import MeasureConfig, RunSpec  # noqa: E402

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


# The tiny untrained model's float32 softmax, summed in float64, misses 1 by more than
# scikit-learn's check allows; the metrics are not what this test is about.
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
def test_tf_traces_no_prediction_inside_the_evaluation_stopwatch(monkeypatch, tmp_path):
    """A test set of another size than validation's (CK+, KDEF) gives TF's predict step a
    batch shape it has not traced; the worker traces it before the stopwatch starts."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    # Validation's one batch has 5 images, the test set's 9: a shape fit never traced.
    np.savez(path, class_names=np.array(["a", "b", "c"]),
             x_train=rng.integers(0, 256, (16, SIDE, SIDE, 1), dtype=np.uint8),
             y_train=np.arange(16) % 3,
             x_val=rng.integers(0, 256, (5, SIDE, SIDE, 1), dtype=np.uint8),
             y_val=np.arange(5) % 3,
             x_test=rng.integers(0, 256, (9, SIDE, SIDE, 1), dtype=np.uint8),
             y_test=np.arange(9) % 3)
    traced_inside = []  # per stopwatch of the worker, in order: traces while it ran

    class TracingStopwatch(worker.Stopwatch):
        def __enter__(self):
            self._traces_from = _predict_step.experimental_get_tracing_count()
            return super().__enter__()

        def __exit__(self, *exc):
            super().__exit__(*exc)
            traced_inside.append(_predict_step.experimental_get_tracing_count()
                                 - self._traces_from)

    monkeypatch.setattr(worker, "Stopwatch", TracingStopwatch)
    # The worker sets TF's thread pools, which only a fresh process can: this test process's
    # TF may have started already (an earlier test, or pytest-xdist's order). The threads
    # play no part in tracing.
    configure = tf_backend.configure_runtime
    monkeypatch.setattr(tf_backend, "configure_runtime",
                        lambda threads, deterministic: configure(None, deterministic))
    spec = RunSpec(backend="tf", model="proposed_cnn", dataset="synthetic",
                   prepared_data=str(path), train=TrainConfig(epochs=1, batch_size=8),
                   threads=1, measure=MeasureConfig(latency_warmup=1, latency_repeats=1,
                                                    latency_budget_s=0.01,
                                                    calibration_size=8))
    traces_from = _predict_step.experimental_get_tracing_count()
    record = worker.execute(spec)
    build, fit, evaluation = traced_inside
    assert fit >= 1  # validation's shape: traced in the first epoch, which is reported apart
    assert _predict_step.experimental_get_tracing_count() - traces_from > fit  # the test's
    assert evaluation == 0, "TF traced its predict step inside the evaluation stopwatch"
    assert record["timing"]["eval_wall_s"] > 0
