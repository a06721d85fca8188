"""The run record has one owner: what the worker and the harness write is what the schema
and the figure catalog name, and what the results store reads back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from backends.train_config import TrainConfig
from benchmarks.record import schema
from benchmarks.record.figures import CATALOG, HEADLINE
from benchmarks.record.store import append_record, read_records
from benchmarks.runner import data, harness, worker
from benchmarks.runner.config import MeasureConfig, RunSpec, failed_record, record_header
from datasets import synthetic

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "reports" / "baselines" / "ci-cpu"
# Figures only an NVIDIA GPU gives (through NVML or the framework's GPU allocator).
GPU_FIGURES = (f"{schema.MEMORY}.nvml_peak_mb", f"{schema.MEMORY}.gpu_allocator_peak_mb",
               f"{schema.ENERGY}.train_energy_j", f"{schema.ENERGY}.eval_energy_j")


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> RunSpec:
    """A torch run of one short epoch on a small synthetic dataset, prepared on disk."""
    dataset = synthetic.generate(num_subjects=4, image_size=32)
    prepared, info = data.prepare_data(dataset, split_seed=0,
                                          cache_dir=tmp_path_factory.mktemp("cache"))
    return RunSpec(
        backend="torch", model="proposed_cnn", dataset=dataset.name,
        prepared_data=str(prepared), train=TrainConfig(epochs=1, batch_size=16), threads=1,
        data_info=info,
        measure=MeasureConfig(latency_warmup=1, latency_repeats=5, latency_budget_s=0.5,
                              calibration_size=64),
    )


_MISSING = object()


def _leaf(record: dict[str, Any], key: str) -> Any:
    """The value at dotted path `key` in `record`; _MISSING where it has none (null is one)."""
    section, name = key.split(".", 1)
    return (record.get(section) or {}).get(name, _MISSING)


def _header(record: dict[str, Any]) -> dict[str, Any]:
    """The header fields, as they read back from JSON (tuples become lists)."""
    return json.loads(json.dumps({name: record[name] for name in schema.HEADER_FIELDS}))


def test_a_worker_record_carries_every_catalog_figure(tiny_spec):
    pytest.importorskip("torch")
    record = harness.run_in_worker(tiny_spec, on_line=lambda line: None)
    assert record[schema.STATUS] == schema.OK, record.get(schema.STDERR_TAIL)
    schema.check_record(record, complete=True)
    assert [key for key in (*CATALOG, *HEADLINE) if _leaf(record, key) is _MISSING] == []
    latency = next(key for key in HEADLINE if key.startswith(f"{schema.LATENCY}."))
    assert _leaf(record, latency) > 0  # what every report's headline showed as "—"
    if record[schema.ENV]["device"] == "cpu":
        # Null, not left out: a figure the hardware cannot give (docs/measurement.md).
        assert {key: _leaf(record, key) for key in GPU_FIGURES} == dict.fromkeys(GPU_FIGURES)
    assert _header(record) == _header(failed_record(tiny_spec, "", ""))


def test_ok_and_failed_records_share_exactly_the_header_and_both_are_read(
        tiny_spec, tmp_path, monkeypatch):
    # The worker's own record-making around a stubbed run: no framework, no training.
    monkeypatch.setattr(worker, "execute", lambda spec: dict.fromkeys(schema.OK_FIELDS))
    spec_path, result_path = tmp_path / "spec.json", tmp_path / "result.json"
    spec_path.write_text(tiny_spec.to_json())
    assert worker.main([str(spec_path), str(result_path)]) == 0
    ok = json.loads(result_path.read_text())
    failed = failed_record(tiny_spec, "worker killed by SIGKILL", "Traceback …")

    assert tuple(record_header(tiny_spec)) == schema.HEADER_FIELDS
    assert set(ok) & set(failed) == {*schema.HEADER_FIELDS, *schema.OUTCOME_FIELDS}
    assert _header(ok) == _header(failed)
    schema.check_record(failed, complete=True)
    folder = tmp_path / "report"
    folder.mkdir()
    append_record(folder, ok)
    append_record(folder, failed)
    assert [r[schema.STATUS] for r in read_records(folder)] == [schema.OK, schema.FAILED]


def test_a_complete_record_lacks_no_field_and_has_a_known_status(tiny_spec):
    failed = failed_record(tiny_spec, "boom", "")
    schema.check_record({**failed, schema.STATUS: "skipped"})  # readers stay lenient
    with pytest.raises(schema.RecordError, match="status 'skipped'"):
        schema.check_record({**failed, schema.STATUS: "skipped"}, complete=True)
    without_faults = {name: value for name, value in failed.items()
                      if name != schema.TEST_INJECTION}
    schema.check_record(without_faults)
    with pytest.raises(schema.RecordError, match=f"lacks {schema.TEST_INJECTION}"):
        schema.check_record(without_faults, complete=True)


def test_the_committed_baseline_is_still_read():
    records = read_records(BASELINE)
    assert records and all(schema.succeeded(r) for r in records)


def test_every_headline_figure_is_in_the_catalog():
    assert [key for key in HEADLINE if key not in CATALOG] == []


def test_every_catalog_figure_lies_in_a_measurement_section():
    sections = {key.split(".", 1)[0] for key in CATALOG}
    assert sections <= set(schema.MEASUREMENT_SECTIONS)


def test_the_worker_builds_the_model_with_the_recipes_dropout(tiny_spec):
    """A rate for a model without dropout layers reaches the build, which refuses it."""
    pytest.importorskip("torch")
    spec = dataclasses.replace(tiny_spec, model="resnet18",
                               train=TrainConfig(epochs=1, batch_size=16, dropout=0.3))
    with pytest.raises(ValueError, match="resnet18 has no dropout layers"):
        worker.execute(spec)
