"""The figure catalog: every numeric field is a figure, described even when unlisted."""

from __future__ import annotations

from benchmarks.measures import ENERGY, HIGHER, LOWER, MEMORY, TIME, figures_of, measure_for


def test_unlisted_probes_are_described_from_their_unit_suffix():
    cases = {
        "timing.latency.b32.p95_ms": ("latency b32 p95 (ms)", LOWER, TIME),
        "timing.eval_throughput_img_s": ("eval throughput (img/s)", HIGHER, TIME),
        "work.achieved_tflops": ("achieved (TFLOP/s)", HIGHER, TIME),
        "memory.torch_max_allocated_mb": ("torch max allocated (MB)", LOWER, MEMORY),
        "energy.train_j": ("train (J)", LOWER, ENERGY),
        "work.flops_per_image": ("flops per image", None, None),
    }
    for key, expected in cases.items():
        measure = measure_for(key)
        assert (measure.title, measure.better, measure.kind) == expected, key


def test_figures_are_the_numeric_leaves_of_measurement_sections():
    record = {
        "seed": 3,
        "config": {"learning_rate": 0.001},
        "env": {"cpu_count": 2},
        "metrics": {"accuracy": 0.5, "per_class": {"a": {"f1": 0.4}},
                    "confusion_matrix": [[1]], "auc_macro_ovr": None},
        "timing": {"latency": {"b1": {"p50_ms": 2.5}}, "flag": True},
        "energy": {"train_j": 12},
        "history": [{"epoch": 1}],
    }
    assert figures_of(record) == {"metrics.accuracy": 0.5, "timing.latency.b1.p50_ms": 2.5,
                                  "energy.train_j": 12.0}
    assert measure_for("metrics.accuracy").format(None) == "—"
