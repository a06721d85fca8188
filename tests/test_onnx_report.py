"""The ONNX side that needs no ONNX package: the report's deployment section with and
without onnxruntime figures, the export command's bad input, the extra's message.

These run in every environment (CI's has no onnx extra); the exports themselves are
tested in tests/test_onnx_export.py, where the extra is installed.
"""

from __future__ import annotations

import html
import importlib.machinery
import importlib.util
import json

import numpy as np
import pytest

from backends import onnx_export
from backends.base import MissingFrameworkError
from backends.weights import WeightsMeta, save_weights
from benchmarks import export
from benchmarks.record.layout import ONNX_DIR, ONNX_SUMMARY_FILE, RESULTS_FILE
from benchmarks.record.store import read_records
from benchmarks.report.data import analyse
from benchmarks.report.deployment import NOT_MEASURED
from benchmarks.report.html import render_html
from benchmarks.report.markdown import render_markdown
from benchmarks.report.tables import markdown_escape
from tests.report_fixtures import make_record, write_results


def _rendered(folder):
    records = read_records(folder)
    data = analyse(records, folder / RESULTS_FILE)
    return render_markdown(data), render_html(data, [])


def _records():
    records = [make_record(backend, "proposed_cnn", 0) for backend in ("tf", "torch")]
    for record, b1, batch in zip(records, (4.0, 3.0), (40.0, 30.0), strict=True):
        record["latency"] = {"latency_b1_p50_ms": b1, "latency_b1_p95_ms": b1 * 1.5,
                             "latency_train_batch_size": 32,
                             "latency_train_batch_p50_ms": batch,
                             "latency_train_batch_p95_ms": batch * 1.2}
    return records


def _export_entry(framework: str, b1: float, difference: float) -> dict:
    return {"name": f"{framework}-proposed_cnn-synthetic-seed0", "model": "proposed_cnn",
            "trained_by": framework, "exported_by": framework,
            "file": f"{framework}-proposed_cnn-synthetic-seed0.{framework}.onnx",
            "onnx_bytes": 2_300_000, "parity_max_abs_logit_diff": difference,
            "parity_images": 120, "parity_on": "test set", "provider": "CPUExecutionProvider",
            "onnxruntime": "1.31.1", "load_average": [0.5, 0.7],
            "latency": {"latency_b1_p50_ms": b1, "latency_b1_p95_ms": b1 * 2,
                        "latency_train_batch_size": 32, "latency_train_batch_p50_ms": 16.0,
                        "latency_train_batch_p95_ms": 20.0}}


def test_the_report_says_onnx_was_not_measured_without_an_export(tmp_path):
    markdown, page = _rendered(write_results(tmp_path, _records()))
    assert "## Deployment (ONNX)" in markdown
    # Brackets escaped, as in every Markdown text: no link can form.
    assert markdown_escape(NOT_MEASURED) in markdown and "'.[onnx]'" in NOT_MEASURED
    assert html.escape(NOT_MEASURED) in page


def test_the_report_sets_onnxruntime_beside_native_latency(tmp_path):
    folder = write_results(tmp_path, _records())
    (folder / ONNX_DIR).mkdir()
    (folder / ONNX_DIR / ONNX_SUMMARY_FILE).write_text(json.dumps({
        "tolerance": 1e-4, "exports": [_export_entry("tf", 1.25, 3e-6),
                                       _export_entry("torch", 1.5, 2e-3)]}))
    markdown, page = _rendered(folder)
    assert markdown_escape(NOT_MEASURED) not in markdown
    rows = {line.split(" | ")[1]: line for line in markdown.splitlines()
            if line.startswith("| proposed_cnn | ")}
    # tf native, torch native, onnxruntime from the tf export, from the torch export.
    assert rows["latency b1 p50 (ms)"].endswith("| 4.00 | 3.00 | 1.25 | 1.50 |")
    assert rows["latency train batch p95 (ms)"].endswith("| 48.00 | 36.00 | 20.00 | 20.00 |")
    # 32 images in 40 ms, 30 ms and 16 ms.
    assert rows["throughput at the train batch (img/s)"].endswith("| 800 | 1,067 | 2,000 | "
                                                                 "2,000 |")
    # The torch export lies beyond the tolerance: flagged in both formats.
    parity = [line for line in markdown.splitlines() if ".onnx |" in line]
    assert [" | NO | " in line for line in parity] == [False, True]
    assert "<td>NO</td>" in page and "onnxruntime (torch export)" in page
    assert "0.50–0.70" in markdown  # the load average while onnxruntime was timed


def test_an_unreadable_onnx_summary_is_named_not_fatal(tmp_path):
    folder = write_results(tmp_path, _records())
    (folder / ONNX_DIR).mkdir()
    (folder / ONNX_DIR / ONNX_SUMMARY_FILE).write_text("{not json")
    markdown, _ = _rendered(folder)
    assert f"{ONNX_SUMMARY_FILE} is unreadable" in markdown


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "text file", "folder without results"])
def test_export_refuses_what_is_neither_a_report_nor_weights(tmp_path, capsys, kind):
    target = tmp_path / "thing"
    if kind == "text file":
        target.write_text("hello")
    elif kind == "folder without results":
        target.mkdir()
    assert export.main([str(target)]) == 2
    line = _one_error_line(capsys)
    assert str(target) in line
    assert ("no results file" in line) if kind == "folder without results" else \
        ("neither a report folder" in line)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ([] if kind == "missing"
                                                           else ["thing"])


def test_export_refuses_a_damaged_weights_file(tmp_path, capsys):
    target = tmp_path / "run.npz"
    target.write_bytes(b"PK\x03\x04 not really a zip")
    assert export.main([str(target)]) == 2
    assert "truncated or damaged" in _one_error_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_export_refuses_a_report_without_saved_weights(tmp_path, capsys):
    records = _records()
    for record in records:
        record["artifacts"] = {"weights_file": None, "weights_bytes": None}
    folder = write_results(tmp_path, records)
    before = sorted(p.name for p in folder.iterdir())
    assert export.main([str(folder)]) == 2
    assert "no run saved its weights" in _one_error_line(capsys)
    assert sorted(p.name for p in folder.iterdir()) == before  # no onnx/, no report


def test_export_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    assert export.main([str(tmp_path / "w.npz"), "--out", str(tmp_path / "out")]) == 2
    assert "--out" in _one_error_line(capsys)


def test_a_missing_onnx_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name in ("tf2onnx", "onnxruntime") else real(name))
    with pytest.raises(MissingFrameworkError) as error:
        onnx_export.check_onnx_available(("tf",))
    message = str(error.value)
    assert "tf2onnx, onnxruntime" in message and "pip install -e '.[onnx]'" in message


def test_a_missing_jax2onnx_names_its_extra_and_make_target(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name in ("tf2onnx", "jax2onnx") else real(name))
    with pytest.raises(MissingFrameworkError) as error:
        onnx_export.check_onnx_available(("tf", "jax", "keras-jax"))
    message = str(error.value)
    assert "\n" not in message and "tf2onnx" in message and "jax2onnx" in message
    # Each extra named once, the JAX backends' with the target that installs both.
    assert message.count("pip install -e '.[onnx]'") == 1
    assert message.count("pip install -e '.[jax-onnx]' (or run `make setup-jax-onnx`)") == 1


@pytest.mark.parametrize("backend_name", ["jax", "keras-jax"])
def test_export_from_jax_without_jax2onnx_refuses_in_one_line(tmp_path, capsys, monkeypatch,
                                                               backend_name):
    """The command's own refusal: exit 2, the install line, nothing written.

    JAX itself counts as installed here (CI's environment has none), jax2onnx not; the
    refusal comes before anything is imported.
    """
    weights = tmp_path / "run.npz"
    save_weights(weights, {"classifier.bias": np.zeros(3, np.float32)},
                 WeightsMeta(model="proposed_cnn", input_shape=(16, 16, 1), num_classes=3,
                             class_names=("a", "b", "c"), backend=backend_name))
    real = importlib.util.find_spec
    installed = importlib.machinery.ModuleSpec("installed", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: (
        None if name == "jax2onnx" else installed if name in ("jax", "flax") else real(name)))
    assert export.main([str(weights), "--backend", backend_name]) == 2
    line = _one_error_line(capsys)
    assert "jax2onnx" in line and "`make setup-jax-onnx`" in line
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]
