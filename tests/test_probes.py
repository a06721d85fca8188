"""The measurement probes measure what they claim (docs/measurement.md).

Functional checks in fresh processes, as the worker measures: a known allocation must
show in the memory peaks, a step of known duration must give the known throughput, and a
real (tiny) worker run must fill every CPU figure and leave every GPU-only figure null on
a machine without a GPU. NVML is exercised through a stand-in for `pynvml`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backends.train_config import TrainConfig
from benchmarks.runner.command_line import build_parser
from benchmarks.runner.config import MeasureConfig, RunSpec
from benchmarks.runner.data import prepare_data
from benchmarks.runner.env import available_cores, cpu_model
from benchmarks.runner.harness import run_in_worker
from benchmarks.trackers import energy, memory, nvml, timing
from datasets import generate_synthetic

ROOT = Path(__file__).resolve().parent.parent
# Linux keeps RSS in per-CPU counters and reads them approximately (the error is bounded
# by a few dozen pages per CPU), so RSS and VmHWM can each be off by a fraction of a MB.
RSS_SLACK_MB = 1.0


def _job(*args: str) -> dict:
    """Runs one tests.measurement_jobs job in a fresh interpreter; returns its JSON."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.measurement_jobs", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


# --- host memory ---------------------------------------------------------------------
def test_a_300mb_buffer_raises_every_host_peak_by_300mb() -> None:
    result = _job("allocate", "300")
    # Against the RSS just before, not the earlier peak: an import's transient may have
    # left that a little above the RSS the buffer adds to.
    assert result["tracker_peak_mb"] - result["rss_before_mb"] >= 300 - RSS_SLACK_MB
    assert result["os_peak_after_mb"] - result["rss_before_mb"] >= 300 - RSS_SLACK_MB
    # A heap buffer is anonymous memory: all of it shows there too.
    assert result["tracker_peak_anon_mb"] - result["anon_before_mb"] >= 300 - RSS_SLACK_MB
    # Freed again: a peak, not a leak.
    assert result["rss_after_mb"] - result["rss_before_mb"] < 50


def test_a_worker_peak_excludes_its_parents_peak() -> None:
    # Linux hands a child the parent's ru_maxrss across exec; VmHWM starts afresh.
    ballast = np.ones(400 * 1024 * 1024, np.uint8)
    result = _job("allocate", "1")
    del ballast
    assert result["os_peak_before_mb"] < 400


# --- time ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_step_of_known_duration_gives_the_expected_throughput(mode: str) -> None:
    # "async" queues the step's work on a fake device: only synchronising before the
    # clock is read makes it count.
    timing = _job("fake_fit", "0.04", mode)
    assert timing["train_throughput_img_s"] == pytest.approx(timing["expected_img_s"], rel=0.1)
    # The first epoch carries the simulated tracing; steady epochs do not. An absolute
    # tolerance: this is a difference of two wall-clock epochs, and a loaded machine adds
    # tens of milliseconds to a first epoch (thread start-up) without any bug.
    tracing_s = timing["first_epoch_s"] - timing["steady_epoch_s_mean"]
    assert tracing_s == pytest.approx(timing["tracing_s"], abs=0.08)


def test_latency_counts_queued_device_work_and_keeps_warmup_apart() -> None:
    queued_s = []  # work a fake device has yet to do

    def call() -> None:  # queues 10 ms of work, 100 ms on the first (tracing) call
        queued_s.append(0.01 if calls else 0.1)
        calls.append(1)

    def sync() -> None:
        time.sleep(sum(queued_s))
        queued_s.clear()

    calls: list[int] = []
    stats = timing.measure_latency(call, sync, warmup=2, repeats=10, budget_s=10.0)
    assert stats["calls"] == 10 and len(calls) == 12
    # Sleeps overshoot on a loaded machine, hence 30%: still far from the 100 ms warm-up.
    assert stats["first_ms"] == pytest.approx(100, rel=0.3)
    assert stats["p50_ms"] == pytest.approx(10, rel=0.3)
    assert 10 <= stats["p95_ms"] < 20


def test_latency_stops_at_its_budget_after_five_calls() -> None:
    stats = timing.measure_latency(lambda: time.sleep(0.01), warmup=1, repeats=100,
                                   budget_s=0.001)
    assert stats["calls"] == 5


def test_peak_flops_is_the_best_call() -> None:
    durations = [0.05, 0.02, 0.04, 0.03]  # the first is the untimed warm-up

    def matmul() -> None:
        time.sleep(durations.pop(0))

    flops = timing.peak_matmul_flops(matmul, size=100, max_calls=3)
    assert flops == pytest.approx(2 * 100**3 / 0.02, rel=0.1)


# --- NVML, through a stand-in -----------------------------------------------------------
class _FakeNvml:
    """The pynvml calls the suite makes, answering for one GPU or raising NVMLError."""

    class NVMLError(Exception):
        pass

    def __init__(self, used_bytes: int | None, energy_mj: list[int] | None) -> None:
        self.used_bytes = used_bytes
        self.energy = energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=1, usedGpuMemory=10 * 2**20),
                SimpleNamespace(pid=os.getpid(), usedGpuMemory=self.used_bytes)]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy is None:
            raise self.NVMLError("Not Supported")
        return self.energy.pop(0)


@pytest.fixture
def fake_nvml(monkeypatch):
    def install(used_bytes: int | None, energy_mj: list[int] | None = None) -> None:
        monkeypatch.setattr(nvml, "pynvml", _FakeNvml(used_bytes, energy_mj))
        monkeypatch.setattr(nvml, "device_handles", lambda: ("gpu0",))

    return install


def test_gpu_memory_is_this_process_alone(fake_nvml) -> None:
    fake_nvml(used_bytes=300 * 2**20)
    with memory.GpuMemoryTracker() as tracker:
        pass
    assert tracker.peak_mb == 300


def test_unreported_gpu_memory_is_null_not_zero(fake_nvml) -> None:
    fake_nvml(used_bytes=None)  # what pynvml returns where the driver hides the figure
    with memory.GpuMemoryTracker() as tracker:
        pass
    assert tracker.peak_mb is None


def test_energy_is_the_counter_difference_in_joules(fake_nvml) -> None:
    fake_nvml(used_bytes=1, energy_mj=[5_000, 12_500])
    with energy.EnergyTracker() as tracker:
        pass
    assert tracker.energy_j == 7.5


def test_unsupported_energy_is_null_not_zero(fake_nvml) -> None:
    fake_nvml(used_bytes=1, energy_mj=None)
    with energy.EnergyTracker() as tracker:
        pass
    assert tracker.energy_j is None


def test_without_nvml_every_gpu_figure_is_null(monkeypatch) -> None:
    monkeypatch.setattr(nvml, "device_handles", lambda: ())
    with memory.GpuMemoryTracker() as gpu_memory, energy.EnergyTracker() as gpu_energy:
        pass
    assert gpu_memory.peak_mb is None and gpu_energy.energy_j is None
    assert nvml.gpu_facts() == {"nvml_driver_version": None, "nvml_gpus": []}


# --- equal settings ----------------------------------------------------------------------
def test_threads_default_to_every_available_core() -> None:
    assert build_parser().parse_args([]).threads == available_cores()
    assert RunSpec("tf", "proposed_cnn", "synthetic", "x.npz").threads == available_cores()


_CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: {family}
model\t\t: {model}
model name\t: {name}
flags\t\t: fpu sse2 avx {flags}

processor\t: 1
model name\t: another block, not read
"""


@pytest.mark.parametrize("vendor, family, model, name, flags, expected", [
    # Two hosts a virtual machine names alike, whose TF convolutions differ 2.7×.
    ("AuthenticAMD", 25, 1, "AMD EPYC", "avx2 fma", "AMD EPYC (family 25, model 1; AVX2)"),
    ("AuthenticAMD", 25, 17, "AMD EPYC", "avx2 avx512f avx512bw",
     "AMD EPYC (family 25, model 17; AVX-512)"),
    ("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", "avx2 avx512f amx_tile amx_bf16",
     "Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143; AVX-512, AMX)"),
])
def test_the_cpu_is_named_by_model_number_and_widest_instruction_set(
        tmp_path, vendor, family, model, name, flags, expected) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(_CPUINFO.format(vendor=vendor, family=family, model=model, name=name,
                                       flags=flags))
    assert cpu_model(cpuinfo) == expected


def test_run_spec_round_trips_its_measurement_settings() -> None:
    spec = RunSpec("torch", "proposed_cnn", "synthetic", "x.npz", threads=1, deterministic=True,
                   measure=MeasureConfig(latency_repeats=7, calibration_size=64))
    assert RunSpec.from_json(spec.to_json()) == spec


def test_threads_are_validated() -> None:
    with pytest.raises(ValueError, match="threads"):
        RunSpec("tf", "proposed_cnn", "synthetic", "x.npz", threads=0)


@pytest.mark.parametrize(
    "kwargs",
    [{"latency_warmup": 0}, {"latency_repeats": 0}, {"latency_budget_s": 0.0},
     {"calibration_size": 0}],
)
def test_measure_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MeasureConfig(**kwargs)


# --- a real worker run ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, dict]:
    dataset = generate_synthetic(num_subjects=10, per_expression=2, image_size=24)
    return prepare_data(dataset, split_seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


GPU_FIELDS = [("memory", "gpu_allocator_peak_mb"), ("memory", "nvml_peak_mb"),
              ("energy", "train_energy_j"), ("energy", "eval_energy_j")]
CPU_FIELDS = [
    *[("timing", k) for k in ("build_s", "first_epoch_s", "steady_epoch_s_mean",
                              "train_wall_s", "train_throughput_img_s", "eval_wall_s",
                              "eval_throughput_img_s")],
    *[("latency", f"latency_{b}_{s}") for b in ("b1", "train_batch")
      for s in ("first_ms", "p50_ms", "p95_ms")],
    *[("memory", k) for k in ("rss_after_import_mb", "peak_host_rss_mb",
                              "train_peak_host_rss_mb", "eval_peak_host_rss_mb",
                              "anon_rss_after_import_mb", "peak_anon_rss_mb",
                              "train_peak_anon_rss_mb", "eval_peak_anon_rss_mb")],
    *[("work", k) for k in ("forward_flops_per_img", "train_achieved_tflops",
                            "eval_achieved_tflops", "peak_matmul_tflops",
                            "train_utilization", "eval_utilization")],
]


# tf: 14–18 s, in the slow run (CI's time, docs/ci.md); torch proves the same record fields.
@pytest.mark.parametrize("backend", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_a_worker_run_records_every_figure(backend: str, tiny_data) -> None:
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[backend])
    prepared, info = tiny_data
    spec = RunSpec(
        backend=backend, model="proposed_cnn", dataset="synthetic", prepared_data=str(prepared),
        train=TrainConfig(epochs=2, batch_size=16), threads=1, deterministic=True,
        data_info=info,
        measure=MeasureConfig(latency_warmup=1, latency_repeats=5, calibration_size=128),
    )
    record = run_in_worker(spec, on_line=lambda line: None)
    assert record["status"] == "ok", record.get("stderr_tail")
    on_gpu = record["env"]["device"] != "cpu"
    for section, name in CPU_FIELDS:
        assert record[section][name] > 0, (section, name)
    for section, name in GPU_FIELDS:
        value = record[section][name]
        if on_gpu:  # NVML may still be unable to say (containers hide host PIDs)
            assert value is None or value > 0, (section, name)
        else:
            assert value is None, (section, name)
    memory = record["memory"]
    assert memory["peak_host_rss_mb"] >= memory["train_peak_host_rss_mb"] > 0
    # The anonymous part is part of the whole (library pages make up the rest).
    assert memory["peak_anon_rss_mb"] == max(memory["train_peak_anon_rss_mb"],
                                             memory["eval_peak_anon_rss_mb"])
    assert memory["anon_rss_after_import_mb"] < memory["rss_after_import_mb"]
    assert memory["train_peak_anon_rss_mb"] < memory["train_peak_host_rss_mb"]
    assert record["latency"]["latency_train_batch_size"] == 16
    assert record["flags"]["intra_op_threads"] == record["flags"]["inter_op_threads"] == 1
    assert record["flags"]["deterministic"] is record["deterministic"] is True
    assert record["flags"]["tf32"] is False
    assert record["env"]["suite_commit"] and record["data"]["fingerprint"]
