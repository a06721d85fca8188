"""`python -m benchmarks.gpu_check`: its table and invariants from records, and its exit
without a GPU. The check itself runs under `pytest -m gpu` (tests/test_gpu.py)."""

import copy
import subprocess
import sys

import pytest

from benchmarks import gpu_check
from benchmarks.record import schema


def _record(backend: str = "tf", precision: str = "float32") -> dict:
    """A successful GPU run's record, reduced to what the check reads."""
    return {
        schema.RUN_ID: f"{backend}-resnet50", schema.BACKEND: backend,
        schema.MODEL: "resnet50", schema.STATUS: schema.OK, schema.ERROR: None,
        schema.CONFIG: {"precision": precision},
        schema.DATA: {"image_shape": [48, 48, 1]},
        schema.TIMING: {"train_throughput_img_s": 2000.0},
        schema.MEMORY: {"nvml_peak_mb": 1500.0, "gpu_allocator_peak_mb": 900.0},
        schema.ENERGY: {"train_energy_j": 300.0},
        schema.WORK: {"train_achieved_tflops": 12.5, "train_utilization": 0.25},
        schema.HISTORY: [{"images": 512, "train_s": 2.0, "input_wait_s": 0.1},
                         {"images": 512, "train_s": 1.0, "input_wait_s": 0.2}],
        schema.FLAGS: {"device": "gpu" if backend == "tf" else "cuda", "tf32": False,
                       "memory_growth": True, "precision": precision},
        schema.ENV: {"device": "NVIDIA H200"},
    }


def test_a_row_carries_the_records_figures():
    row = gpu_check.row_of(_record())
    assert row["img/s"] == 2000.0 and row["NVML MB"] == 1500.0 and row["alloc MB"] == 900.0
    assert row["J/epoch"] == 150.0  # 300 J over 2 epochs
    assert row["img/J"] == pytest.approx(1024 / 300)
    assert row["input wait"] == pytest.approx(0.3 / 3.0)
    assert row["px"] == 48 and row["precision"] == "float32"
    text = gpu_check.table([row, gpu_check.row_of({**_record(), schema.ENERGY: {}})])
    assert "| resnet50 | tf | float32 | 48 | 2,000 | 1,500 | 900 | 150.0 | 3.4 | 12.50 | 25.0% " \
           "| 10.0% |" in text
    assert text.splitlines()[-1].count("—") == 2  # no energy: neither energy figure


def test_the_invariants_hold_for_good_records_and_name_each_broken_one():
    good = [_record("tf"), _record("torch"), _record("torch", "bfloat16")]
    assert gpu_check.invariant_failures(good) == []
    broken = {
        "computed on the CPU": (schema.ENV, "device", "cpu"),
        "TF32 not off": (schema.FLAGS, "tf32", True),
        "memory growth off": (schema.FLAGS, "memory_growth", False),
        "in effect": (schema.FLAGS, "precision", "bfloat16"),
        "NVML did not see": (schema.MEMORY, "nvml_peak_mb", None),
        "not the run's own process": (schema.MEMORY, "nvml_peak_mb", 100.0),
    }
    for message, (section, key, value) in broken.items():
        record = copy.deepcopy(_record("tf"))
        record[section][key] = value
        (failure,) = gpu_check.invariant_failures([record])
        assert message in failure and "tf resnet50" in failure
    failed = {**_record(), schema.STATUS: schema.FAILED, schema.ERROR: "out of memory?"}
    assert gpu_check.invariant_failures([failed]) == \
        ["tf resnet50 (tf-resnet50): run failed: out of memory?"]


def test_the_plan_covers_the_card_models_both_precisions_and_one_large_input():
    from backends.catalog import CARD_MODELS

    plan = {(c.image_size, c.precision): c.models for c in gpu_check.PLAN}
    assert plan[48, "float32"] == plan[48, "bfloat16"] == CARD_MODELS
    assert plan[224, "float32"] == plan[224, "bfloat16"] == ("resnet50",)
    assert all(c.epochs >= 2 for c in gpu_check.PLAN)  # a steady epoch after the first


def _has_gpu() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


@pytest.mark.slow  # 11 s of two framework imports (CI's time, docs/ci.md)
def test_without_a_gpu_the_check_measures_nothing_and_exits_0(tmp_path):
    if _has_gpu():
        pytest.skip("a GPU is present: the check would measure (pytest -m gpu runs it)")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("no GPU found (") and line.endswith("): nothing measured")
    assert "torch: cpu" in line or "tf: cpu" in line
    assert not any(tmp_path.iterdir())


def test_require_gpu_turns_no_gpu_into_exit_1(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu_check, "gpu_status", lambda: (False, "tf: cpu (tensorflow x)"))
    assert gpu_check.main(["--require-gpu", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().out == "no GPU found (tf: cpu (tensorflow x)): nothing measured\n"
