"""ONNX export from every backend and the onnxruntime runtime (the `onnx` extra).

Each model is built in both frameworks with the same weights (`calibrated_weights`,
tests/conftest.py), exported by each, and run in onnxruntime: its logits must be its
framework's (≤ 1e-4, `backends.onnx_export.PARITY_TOLERANCE`). Skipped where the extra is not
installed (CI's environment): `pip install -e '.[onnx]'`. The JAX backends' exports
(jax2onnx) pass the same test where the `jax` and `jax-onnx` extras are installed
(`make setup-jax-onnx`), and skip with that line where they are not.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

for _module in ("onnx", "onnxruntime", "tf2onnx", "onnxscript", "tensorflow", "torch"):
    pytest.importorskip(_module, reason=f"the onnx extra ({_module}) is not installed: "
                                        "pip install -e '.[onnx]'")

from backends import create_backend  # noqa: E402
from backends.base import MissingFrameworkError  # noqa: E402
from backends.catalog import MODEL_NAMES  # noqa: E402
from backends.onnx_export import (  # noqa: E402
    CPU_PROVIDER,
    PARITY_TOLERANCE,
    OnnxSession,
    check_onnx_available,
    export_onnx,
    parity,
    pool_height_and_width,
    scaled,
)
from backends.weights import WeightsMeta, save_weights  # noqa: E402
from benchmarks import export  # noqa: E402
from benchmarks.record import layout  # noqa: E402
from benchmarks.record.layout import ONNX_DIR, ONNX_SUMMARY_FILE  # noqa: E402
from benchmarks.runner.config import MeasureConfig  # noqa: E402
from tests.conftest import (  # noqa: E402
    REFERENCE_BACKEND,
    SEPARATE_PROCESS_BACKENDS,
    calibrated_weights,
    missing_framework,
    same_weights_pair,
)
from tests.in_backend_process import exported_beside_native  # noqa: E402
from tests.remote_backend import run_in_backend_process  # noqa: E402
from tests.report_fixtures import CLASS_NAMES, NUM_TEST, make_record, write_results  # noqa: E402

NUM_CLASSES = 7
# Both export through jax2onnx (the `jax-onnx` extra); each skips with its install line.
JAX_BACKENDS = ("keras-jax", "jax")
# The smallest square grey input each model takes (vgg16 needs 32).
SIDES = {"proposed_cnn": 16, "sanet": 16, "vgg16": 32, "alexnet": 32, "resnet18": 32,
         "resnet50": 32}
FAST = ("proposed_cnn",)  # the others take several seconds each to export from TF
QUICK = MeasureConfig(latency_warmup=1, latency_repeats=5, latency_budget_s=0.05)


def _params(names):
    return [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in names]


@pytest.mark.parametrize("name", _params(MODEL_NAMES))
def test_each_frameworks_export_gives_its_logits(name, tmp_path):
    shape = (SIDES[name], SIDES[name], 1)
    backends = same_weights_pair(name, shape, NUM_CLASSES)
    images = np.random.default_rng(3).integers(0, 256, (5, *shape), dtype=np.uint8)
    logits = {}
    for framework, backend in backends.items():
        path = tmp_path / f"{name}.{framework}.onnx"
        assert export_onnx(backend, path, shape) == path.stat().st_size > 0
        session = OnnxSession(path, threads=1)
        assert parity(backend, session, images) <= PARITY_TOLERANCE
        # The batch axis is dynamic: one image, then five, from the same graph.
        assert session.logits(images[:1]).shape == (1, NUM_CLASSES)
        logits[framework] = session.logits(images)
        probabilities = session.predict_proba(images)
        assert probabilities.dtype == np.float64
        np.testing.assert_allclose(probabilities, backend.predict_proba(images), atol=1e-5)
    # Both exports of the same weights agree with each other too.
    assert np.abs(logits["tf"] - logits["torch"]).max() <= PARITY_TOLERANCE


def _jax_params():
    """(model, JAX backend) params, each skipped with the install line of what is missing."""
    params = []
    for name in MODEL_NAMES:
        for backend_name in JAX_BACKENDS:
            # jax2onnx's first conversion in a process imports every plugin it has (about
            # 20 s on 2 busy cores), and keras-jax's runs in a process of its own: the fast
            # run pays it once, for jax; keras-jax's pools are covered there by the
            # rewrite's own test below.
            fast = name in FAST and backend_name == "jax"
            marks = [] if fast else [pytest.mark.slow]
            if reason := missing_framework(backend_name) or _missing_exporter(backend_name):
                marks.append(pytest.mark.skip(reason=reason))
            params.append(pytest.param(name, backend_name, marks=marks,
                                       id=f"{name}-{backend_name}"))
    return params


def _missing_exporter(backend_name: str) -> str | None:
    try:
        check_onnx_available((backend_name,))
    except MissingFrameworkError as error:
        return str(error)
    return None


@pytest.mark.parametrize(("name", "backend_name"), _jax_params())
def test_each_jax_backends_export_gives_its_logits(name, backend_name, tmp_path):
    """jax2onnx's graph of each model gives the backend's eval-mode logits and probabilities.

    The weights are torch's calibrated ones (BatchNorm statistics of a batch), and the
    model keeps its catalogue dropout, so an export that normalised with the batch's
    statistics or kept dropout would miss by far more than the tolerance.
    """
    shape = (SIDES[name], SIDES[name], 1)
    reference = create_backend(REFERENCE_BACKEND)
    reference.build(name, shape, NUM_CLASSES)
    weights = calibrated_weights(reference, shape, seed=1)
    images = np.random.default_rng(3).integers(0, 256, (5, *shape), dtype=np.uint8)
    path = tmp_path / f"{name}.{backend_name}.onnx"
    run = (run_in_backend_process if backend_name in SEPARATE_PROCESS_BACKENDS
           else _in_this_process)
    size, native_logits, native_probabilities = run(
        backend_name, exported_beside_native, backend_name, name, shape, NUM_CLASSES,
        weights, images, path)
    assert size == path.stat().st_size > 0
    session = OnnxSession(path, threads=1)
    logits = session.logits(images)
    assert np.abs(logits - native_logits).max() <= PARITY_TOLERANCE
    np.testing.assert_allclose(session.predict_proba(images), native_probabilities, atol=1e-5)
    # The batch axis is dynamic: one image, then five, from the same graph.
    assert session.logits(images[:1]).shape == (1, NUM_CLASSES)
    # The export holds the weights given: it agrees with torch's own logits too.
    assert np.abs(logits - reference.logits(scaled(images))).max() <= PARITY_TOLERANCE


def _in_this_process(backend_name, function, *args):
    return function(*args)


def _nhwc_pool_graph(kernel: list[int], pads: list[int]):
    """jax2onnx's lowering of an NHWC max pool: Unsqueeze(0) → Unsqueeze(1) → MaxPool over
    (N, H, W, C) with `kernel`, strides (1, 2, 2, 1) and `pads` → Squeeze(0, 1)."""
    from onnx import TensorProto, helper

    def axes(name, values):
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)

    nodes = [helper.make_node("Unsqueeze", ["x", "axes0"], ["u0"]),
             helper.make_node("Unsqueeze", ["u0", "axes1"], ["u1"]),
             helper.make_node("MaxPool", ["u1"], ["pooled"], kernel_shape=kernel,
                              strides=[1, 2, 2, 1], pads=pads),
             helper.make_node("Squeeze", ["pooled", "axes01"], ["y"])]
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 7, 7, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [axes("axes0", [0]), axes("axes1", [1]), axes("axes01", [0, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run_graph(model, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=[CPU_PROVIDER])
    return session.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("pad", [0, 1])
def test_jax2onnx_nhwc_max_pools_become_pools_over_height_and_width(pad):
    """onnxruntime refuses jax2onnx's MaxPool over four axes; the rewrite gives the same
    windows over two, padding counting as −inf (ResNet's stem pool)."""
    model = _nhwc_pool_graph([1, 3, 3, 1], [0, pad, pad, 0, 0, pad, pad, 0])
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)
    with pytest.raises(Exception, match="Unsupported pooling size"):
        _run_graph(model, x)
    assert pool_height_and_width(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MaxPool", "Transpose"]
    assert not model.graph.initializer  # the axes, read by nothing now
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    np.testing.assert_array_equal(_run_graph(model, x), windows[:, ::2, ::2].max(axis=(-2, -1)))


def test_a_max_pool_over_batch_or_channels_is_refused_in_one_line():
    model = _nhwc_pool_graph([1, 3, 3, 2], [0] * 8)
    with pytest.raises(NotImplementedError) as refused:
        pool_height_and_width(model)
    message = str(refused.value)
    assert "\n" not in message and "not supported" in message
    assert "--backend tf or torch" in message


def _exported(tmp_path, framework: str = "torch"):
    shape = (16, 16, 1)
    backends = same_weights_pair("proposed_cnn", shape, NUM_CLASSES)
    path = tmp_path / f"model.{framework}.onnx"
    export_onnx(backends[framework], path, shape)
    return path, shape


def test_the_onnxruntime_worker_records_positive_latencies(tmp_path):
    path, shape = _exported(tmp_path)
    images = tmp_path / "images.npz"
    np.savez(images, images=np.zeros((3, *shape), np.uint8))
    job = export.Job(name="model", weights_path=tmp_path / "unused.npz", framework="torch",
                     out_path=path, images_path=images, images_key="images",
                     train_batch_size=8, threads=1, measure=QUICK)
    result = export.time_job(job, on_line=lambda line: None)
    assert result["provider"] == CPU_PROVIDER and result["threads"] == 1
    latency = result["latency"]
    assert latency["latency_train_batch_size"] == 8
    for prefix in ("latency_b1", "latency_train_batch"):
        assert latency[f"{prefix}_first_ms"] > 0
        assert 0 < latency[f"{prefix}_p50_ms"] <= latency[f"{prefix}_p95_ms"]
        assert latency[f"{prefix}_calls"] >= 5
    assert result["session_s"] > 0 and result["peak_host_rss_mb"] > 0
    assert len(result["load_average"]) == 2


def test_a_crashing_onnxruntime_worker_is_an_error_not_a_figure(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    job = export.Job(name="model", weights_path=tmp_path / "unused.npz", framework="torch",
                     out_path=tmp_path / "broken.onnx", images_path=tmp_path / "none.npz",
                     images_key="images", train_batch_size=8, threads=1, measure=QUICK)
    result = export.time_job(job, on_line=lambda line: None)
    assert set(result) == {"error"} and result["error"]


def _report_folder(tmp_path, frameworks: tuple[str, ...]):
    """A report folder of one proposed_cnn run per framework, weights and test images saved."""
    shape = (16, 16, 1)
    weights = same_weights_pair("proposed_cnn", shape, len(CLASS_NAMES))["torch"].get_weights()
    records = [make_record(framework, "proposed_cnn", 0) for framework in frameworks]
    for record in records:
        record["data"].update(split="holdout-seed0", image_shape=list(shape))
        record["measure_config"] = asdict(QUICK)
        record["config"]["batch_size"] = 8
        record["threads"] = 1
        record["artifacts"] = {"weights_file": f"{record['run_id']}.npz", "weights_bytes": 1}
    folder = write_results(tmp_path, records)
    (folder / layout.WEIGHTS_DIR).mkdir()
    labels = np.asarray(records[0]["test_labels"])
    np.savez(folder / layout.WEIGHTS_DIR / layout.test_split_file_name("holdout-seed0"),
             x_test=np.random.default_rng(0).integers(0, 256, (NUM_TEST, *shape), np.uint8),
             y_test=labels)
    for record in records:
        meta = WeightsMeta(model="proposed_cnn", input_shape=shape,
                           num_classes=len(CLASS_NAMES), class_names=tuple(CLASS_NAMES),
                           backend=record["backend"], run_id=record["run_id"])
        path = folder / layout.WEIGHTS_DIR / record["artifacts"]["weights_file"]
        save_weights(path, weights, meta)
    return folder


def _folder_params():
    """The frameworks of a report folder: tf and torch; then tf with both JAX backends,
    whose keras-jax runs export in a process of their own (Keras runs one backend per
    process), skipped with the install line of what is missing."""
    jax_reason = missing_framework("jax") or _missing_exporter("jax")
    return [pytest.param(("tf", "torch"), id="tf-torch"),
            pytest.param(("tf", "keras-jax", "jax"), id="tf-keras-jax-jax",
                         marks=[pytest.mark.skip(reason=jax_reason)] if jax_reason else [])]


@pytest.mark.slow  # about 30 s for tf and torch: each export timed in its own process
@pytest.mark.parametrize("frameworks", _folder_params())
def test_export_of_a_report_folder_checks_times_and_reports(tmp_path, capsys, frameworks):
    folder = _report_folder(tmp_path, frameworks)
    assert export.main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert all(f"max |Δ logits| vs {framework}" in out for framework in frameworks)
    summary = json.loads((folder / ONNX_DIR / ONNX_SUMMARY_FILE).read_text())
    entries = {e["exported_by"]: e for e in summary["exports"]}
    assert set(entries) == set(frameworks)
    for framework, entry in entries.items():
        assert (folder / ONNX_DIR / entry["file"]).is_file()
        assert entry["file"].endswith(f".{framework}.onnx")
        assert entry["parity_max_abs_logit_diff"] <= PARITY_TOLERANCE
        assert entry["parity_images"] == NUM_TEST
        assert entry["latency"]["latency_train_batch_size"] == 8
        assert entry["latency"]["latency_b1_p50_ms"] > 0
    markdown = (folder / "report.md").read_text()
    assert "onnxruntime (tf export)" in markdown and "ONNX: not measured" not in markdown
