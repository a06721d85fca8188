"""The figure catalog: every numeric field is a figure, described even when unlisted."""

from __future__ import annotations

from benchmarks.record import schema
from benchmarks.record.figures import (
    CATALOG,
    ENERGY,
    HEADLINE,
    HIGHER,
    LOWER,
    MEMORY,
    TIME,
    figures_of,
    measure_for,
)

# The headline's latency figure, as the catalog names it.
LATENCY_HEADLINE = next(key for key in HEADLINE if key.startswith(f"{schema.LATENCY}."))


def test_unlisted_probes_are_described_from_their_unit_suffix():
    # Figures the worker writes that the catalog does not list, and one it may add later.
    cases = {
        f"{schema.LATENCY}.latency_train_batch_p95_ms":
            ("latency train batch p95 (ms)", LOWER, TIME),
        f"{schema.TIMING}.eval_throughput_img_s": ("eval throughput (img/s)", HIGHER, TIME),
        f"{schema.WORK}.peak_matmul_tflops": ("peak matmul (TFLOP/s)", HIGHER, TIME),
        f"{schema.MEMORY}.gpu_allocator_peak_mb": ("gpu allocator peak (MB)", LOWER, MEMORY),
        f"{schema.ENERGY}.train_energy_j": ("train energy (J)", LOWER, ENERGY),
        f"{schema.WORK}.layers_counted": ("layers counted", None, None),
        f"{schema.TIMING}.phase.warmup_s": ("phase warmup (s)", LOWER, TIME),
    }
    for key, expected in cases.items():
        assert key not in CATALOG, key
        measure = measure_for(key)
        assert (measure.title, measure.better, measure.kind) == expected, key


def test_the_headline_latency_is_the_catalogs_figure():
    measure = measure_for(LATENCY_HEADLINE)
    assert measure is CATALOG[LATENCY_HEADLINE]
    assert (measure.title, measure.better, measure.kind) == ("latency b1 p50 (ms)", LOWER, TIME)


def test_figures_are_the_numeric_leaves_of_measurement_sections():
    latency_section, latency_name = LATENCY_HEADLINE.split(".")
    record = {
        schema.SEED: 3,
        schema.CONFIG: {"learning_rate": 0.001},
        schema.ENV: {"cpu_count": 2},
        schema.METRICS: {"accuracy": 0.5, "per_class": {"a": {"f1": 0.4}},
                         "confusion_matrix": [[1]], "auc_macro_ovr": None},
        schema.TIMING: {"phase": {"warmup_s": 2.5}, "flag": True},
        latency_section: {latency_name: 3.0},
        schema.ENERGY: {"train_energy_j": 12},
        schema.HISTORY: [{"epoch": 1}],
    }
    assert figures_of(record) == {
        f"{schema.METRICS}.accuracy": 0.5,
        f"{schema.TIMING}.phase.warmup_s": 2.5,
        LATENCY_HEADLINE: 3.0,
        f"{schema.ENERGY}.train_energy_j": 12.0,
    }
    assert measure_for(f"{schema.METRICS}.accuracy").format(None) == "—"
