"""ONNX export from both frameworks and the onnxruntime runtime (the `onnx` extra).

Each model is built in both frameworks with the same weights (`calibrated_weights`,
tests/conftest.py), exported by each, and run in onnxruntime: its logits must be its
framework's (≤ 1e-4, `backends.onnx_export.PARITY_TOLERANCE`). Skipped where the extra is not
installed (CI's environment): `pip install -e '.[onnx]'`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

for _module in ("onnx", "onnxruntime", "tf2onnx", "onnxscript", "tensorflow", "torch"):
    pytest.importorskip(_module, reason=f"the onnx extra ({_module}) is not installed: "
                                        "pip install -e '.[onnx]'")

from backends.catalog import MODEL_NAMES  # noqa: E402
from backends.onnx_export import (  # noqa: E402
    CPU_PROVIDER,
    PARITY_TOLERANCE,
    OnnxSession,
    export_onnx,
    parity,
)
from backends.weights import WeightsMeta, save_weights  # noqa: E402
from benchmarks import export  # noqa: E402
from benchmarks.record import layout  # noqa: E402
from benchmarks.record.layout import ONNX_DIR, ONNX_SUMMARY_FILE  # noqa: E402
from benchmarks.runner.config import MeasureConfig  # noqa: E402
from tests.conftest import same_weights_pair  # noqa: E402
from tests.report_fixtures import CLASS_NAMES, NUM_TEST, make_record, write_results  # noqa: E402

NUM_CLASSES = 7
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


def _report_folder(tmp_path):
    """A report folder of one proposed_cnn run per framework, weights and test images saved."""
    shape = (16, 16, 1)
    weights = same_weights_pair("proposed_cnn", shape, len(CLASS_NAMES))["torch"].get_weights()
    records = [make_record(framework, "proposed_cnn", 0) for framework in ("tf", "torch")]
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


@pytest.mark.slow  # about 30 s: both exports, both timed in their own processes
def test_export_of_a_report_folder_checks_times_and_reports(tmp_path, capsys):
    folder = _report_folder(tmp_path)
    assert export.main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "max |Δ logits| vs tf" in out and "max |Δ logits| vs torch" in out
    summary = json.loads((folder / ONNX_DIR / ONNX_SUMMARY_FILE).read_text())
    entries = {e["exported_by"]: e for e in summary["exports"]}
    assert set(entries) == {"tf", "torch"}
    for framework, entry in entries.items():
        assert (folder / ONNX_DIR / entry["file"]).is_file()
        assert entry["file"].endswith(f".{framework}.onnx")
        assert entry["parity_max_abs_logit_diff"] <= PARITY_TOLERANCE
        assert entry["parity_images"] == NUM_TEST
        assert entry["latency"]["latency_train_batch_size"] == 8
        assert entry["latency"]["latency_b1_p50_ms"] > 0
    markdown = (folder / "report.md").read_text()
    assert "onnxruntime (tf export)" in markdown and "ONNX: not measured" not in markdown
