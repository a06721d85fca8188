"""Saved weights (backends/weights.py): the file format, bad files, and rebuilding a model
in every framework from one file."""

from __future__ import annotations

import numpy as np
import pytest

from backends.train_config import TrainConfig
from backends.weights import (
    META_KEY,
    WeightsError,
    WeightsMeta,
    check_matches,
    load_backend,
    read_weights,
    save_weights,
)
from benchmarks.runner import worker
from benchmarks.runner.config import MeasureConfig, RunSpec
from tests.conftest import (
    COMPARED_BACKENDS,
    REFERENCE_BACKEND,
    SEPARATE_PROCESS_BACKENDS,
    WORKER_SCRIPT,
    ScriptedBackend,
    backend_params,
    prepared_file,
)
from tests.in_backend_process import rebuilt_from_file
from tests.remote_backend import run_in_backend_process

SHAPE = (16, 16, 1)
CLASSES = ("angry", "happy", "sad")


def _meta(model: str = "proposed_cnn", backend: str = "torch") -> WeightsMeta:
    return WeightsMeta(model=model, input_shape=SHAPE, num_classes=len(CLASSES),
                       class_names=CLASSES, backend=backend, run_id="run", best_epoch=2)


def test_a_weights_file_round_trips_without_pickle(tmp_path):
    weights = {"block1.conv1.weight": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
               "classifier.bias": np.ones(3, np.float32)}
    probabilities = np.full((4, 3), 1 / 3, np.float32)
    size = save_weights(tmp_path / "w.npz", weights, _meta(), probabilities)
    assert size == (tmp_path / "w.npz").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary file left
    with np.load(tmp_path / "w.npz", allow_pickle=False) as raw:
        assert raw[META_KEY].dtype.kind == "U"  # JSON text, not a pickled object
    saved = read_weights(tmp_path / "w.npz")
    assert saved.meta == _meta()
    assert saved.meta.normalisation == {"pixel_center": 127.5, "pixel_scale": 127.5}
    for name, value in weights.items():
        np.testing.assert_array_equal(saved.weights[name], value)
    np.testing.assert_array_equal(saved.test_probabilities, probabilities)


def _write(tmp_path, **meta_changes):
    path = tmp_path / "w.npz"
    meta = WeightsMeta(**{**_meta().__dict__, **meta_changes})
    save_weights(path, {"classifier.bias": np.ones(3, np.float32)}, meta)
    return path


@pytest.mark.parametrize("damage, expected", [
    ("missing", "no weights file"),
    ("truncated", "truncated or damaged"),
    ("not a zip", "truncated or damaged"),
    ("no meta", "not a FER-Bench weights file"),
])
def test_a_bad_file_is_a_weights_error_naming_it(tmp_path, damage, expected):
    path = _write(tmp_path)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "not a zip":
        path.write_text("hello")
    else:
        np.savez(path, **{"param/x": np.ones(2, np.float32)})
    with pytest.raises(WeightsError, match=expected) as error:
        read_weights(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_of_a_newer_layout_or_unknown_model_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="layout version 2 is newer"):
        read_weights(_write(tmp_path, layout_version=2))
    with pytest.raises(WeightsError, match="unknown model 'lenet'"):
        read_weights(_write(tmp_path, model="lenet"))


def test_weights_for_another_model_or_shape_are_refused(tmp_path):
    saved = read_weights(_write(tmp_path))
    with pytest.raises(WeightsError, match="weights for model 'proposed_cnn', expected 'sanet'"):
        check_matches(saved, model="sanet")
    with pytest.raises(WeightsError, match=r"input shape \(16, 16, 1\), expected \(48, 48, 1\)"):
        check_matches(saved, input_shape=(48, 48, 1))
    check_matches(saved, model="proposed_cnn", input_shape=SHAPE, num_classes=3)


def test_arrays_that_do_not_fit_the_named_model_are_refused(tmp_path):
    pytest.importorskip("torch")
    # The metadata says proposed_cnn; the arrays are one bias: another model's weights.
    with pytest.raises(WeightsError, match="do not fit proposed_cnn at") as error:
        load_backend(_write(tmp_path), "torch")
    assert str(tmp_path / "w.npz") in str(error.value)


@pytest.mark.parametrize("backend_name", backend_params((REFERENCE_BACKEND, *COMPARED_BACKENDS)))
def test_every_framework_rebuilds_the_model_from_one_file(tmp_path, backend_name):
    """Saved from torch, rebuilt in each backend: identical weights, logits within 1e-4."""
    pytest.importorskip("torch")
    from backends import create_backend
    from backends.init import shared_initial_weights

    trained = create_backend("torch")
    trained.build("sanet", SHAPE, len(CLASSES), dropout=0.0)
    trained.set_weights(shared_initial_weights(trained.get_weights(), seed=3))
    save_weights(tmp_path / "w.npz", trained.get_weights(), _meta("sanet"))
    images = np.random.default_rng(0).uniform(-1, 1, (2, *SHAPE)).astype(np.float32)
    expected = trained.logits(images)
    rebuild = (run_in_backend_process if backend_name in SEPARATE_PROCESS_BACKENDS
               else _in_this_process)
    weights, saved, logits = rebuild(backend_name, rebuilt_from_file, tmp_path / "w.npz",
                                     backend_name, "sanet", images)
    for key, value in weights.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=f"{backend_name} {key}")
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def _in_this_process(backend_name, function, *args):
    return function(*args)


def _spec(path, weights_path):
    return RunSpec(backend="torch", model="proposed_cnn", dataset="synthetic",
                   prepared_data=str(path), threads=1, weights_path=weights_path,
                   train=TrainConfig(epochs=len(WORKER_SCRIPT), batch_size=4),
                   measure=MeasureConfig(latency_warmup=1, latency_repeats=1,
                                         latency_budget_s=0.01, calibration_size=8))


def test_the_worker_saves_the_kept_weights_after_every_measurement(monkeypatch, tmp_path):
    """The weights saved are the selected epoch's, written after the last measurement
    (the matmul peak of `_work`), with the test probabilities the record was scored on."""
    import backends

    monkeypatch.setattr(backends, "create_backend",
                        lambda *args, **kwargs: ScriptedBackend(WORKER_SCRIPT))
    order = []
    real_work, real_save = worker._work, worker.save_run_weights
    monkeypatch.setattr(worker, "_work", lambda *a: order.append("work") or real_work(*a))
    monkeypatch.setattr(worker, "save_run_weights",
                        lambda *a: order.append("save") or real_save(*a))
    rng = np.random.default_rng(1)
    data = prepared_file(tmp_path, "data", rng.integers(0, 256, (9, 16, 16, 1), dtype=np.uint8),
                     np.arange(9) % 3)
    record = worker.execute(_spec(data, str(tmp_path / "run.npz")))
    assert order == ["work", "save"]
    assert record["artifacts"] == {"weights_file": "run.npz",
                                   "weights_bytes": (tmp_path / "run.npz").stat().st_size}
    with np.load(tmp_path / "run.npz", allow_pickle=False) as raw:
        # Epoch 2's bias (the kept epoch), not the last epoch's.
        np.testing.assert_array_equal(raw["param/bias"], WORKER_SCRIPT[1])
        probabilities = raw["test_probabilities"]
    assert probabilities.argmax(1).tolist() == record["test_predictions"]
    meta = WeightsMeta.from_json(str(np.load(tmp_path / "run.npz")[META_KEY][0]), tmp_path)
    assert (meta.model, meta.class_names, meta.best_epoch) == ("proposed_cnn", ("a", "b", "c"),
                                                               2)


def test_save_weights_none_writes_nothing(monkeypatch, tmp_path):
    import backends

    monkeypatch.setattr(backends, "create_backend",
                        lambda *args, **kwargs: ScriptedBackend(WORKER_SCRIPT))
    rng = np.random.default_rng(1)
    data = prepared_file(tmp_path, "data", rng.integers(0, 256, (9, 16, 16, 1), dtype=np.uint8),
                     np.arange(9) % 3)
    record = worker.execute(_spec(data, None))
    assert record["artifacts"] == {"weights_file": None, "weights_bytes": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]


def test_the_ci_preset_saves_no_weights():
    from benchmarks.runner.command_line import invocation_of, parse_args

    assert invocation_of(parse_args(["--preset", "ci"])).save_weights == "none"
    assert invocation_of(parse_args([])).save_weights == "best"
