"""The report with four backends, named as the registry will name them (tf, torch,
keras-jax, jax): verdicts against a reference backend, ratio columns, charts, colours,
the deployment table and the commands' `--reference-backend`; and two backends, as today."""

from __future__ import annotations

import json

import pytest

from benchmarks.backend_choice import registry_order
from benchmarks.explain import explaining_backends
from benchmarks.record import layout
from benchmarks.record.layout import RESULTS_FILE
from benchmarks.report import __main__ as report_cli
from benchmarks.report import data as report
from benchmarks.report import plots
from benchmarks.report.deployment import deployment
from tests.report_fixtures import FOUR_BACKENDS, PAIR, grid, write_results

OTHERS_OF_TORCH = [b for b in registry_order(FOUR_BACKENDS) if b != "torch"]


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A report folder of 4 backends × 2 models × 3 seeds, built with the default reference."""
    records = grid(seeds=3, backends=FOUR_BACKENDS)
    folder = write_results(tmp_path_factory.mktemp("reports"), records)
    assert report_cli.main([str(folder)]) == 0
    return folder, records


def _framework_section(markdown: str) -> str:
    return markdown.split("## Do the frameworks differ?")[1].split("\n## ")[0]


def test_every_backend_is_tested_against_torch_by_default(four):
    folder, records = four
    data = report.analyse(records, folder / RESULTS_FILE)
    assert data.reference == "torch"
    for label in ("proposed_cnn", "sanet"):
        assert list(data.tests[label]) == OTHERS_OF_TORCH  # no pair without torch
    headings = [heading for heading, _ in report.test_lines(data)]
    assert "proposed_cnn: keras-jax vs torch" in headings and len(headings) == 6
    section = _framework_section((folder / layout.REPORT_MD).read_text())
    assert "**sanet: jax vs torch**" in section and "jax − torch" in section
    assert "the reference backend, torch (--reference-backend)" in section
    assert "tf vs jax" not in section and "keras-jax − jax" not in section


def test_a_chosen_reference_turns_every_verdict_and_ratio_towards_it(four, tmp_path):
    # One model: the command draws every chart, which takes most of the time.
    records = [r for r in four[1] if r["model"] == "sanet"]
    folder = write_results(tmp_path, records)
    assert report_cli.main([str(folder), "--reference-backend", "jax"]) == 0
    data = report.analyse(records, folder / RESULTS_FILE, reference="jax")
    assert list(data.tests["sanet"]) == [b for b in registry_order(FOUR_BACKENDS) if b != "jax"]
    section = _framework_section((folder / layout.REPORT_MD).read_text())
    assert "tf − jax" in section and "tf − torch" not in section
    headers, rows = report.figure_rows(data, "sanet")
    assert headers[-3:] == [f"jax / {b}" for b in registry_order(FOUR_BACKENDS) if b != "jax"]
    wall = next(row for row in rows if row[0] == "train time (s)")
    # jax trains 30 s, tf 20 s: the ratio column says so.
    assert wall[headers.index("jax / tf")] == "1.50×"


def test_a_reference_not_among_the_records_is_one_line_and_writes_nothing(four, tmp_path,
                                                                          capsys):
    _, records = four
    folder = write_results(tmp_path, [r for r in records if r["backend"] in PAIR])
    assert report_cli.main([str(folder), "--reference-backend", "jax"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--reference-backend 'jax' is not among the backends compared (tf, torch)" in err
    assert "\n" not in err
    assert not (folder / layout.REPORT_HTML).exists()


def test_each_label_has_a_column_per_backend_and_a_ratio_per_other_backend(four):
    folder, records = four
    data = report.analyse(records, folder / RESULTS_FILE)
    headers, rows = report.figure_rows(data, "proposed_cnn")
    ordered = registry_order(FOUR_BACKENDS)
    assert headers == ["figure", *ordered, *(f"torch / {b}" for b in OTHERS_OF_TORCH)]
    wall = next(row for row in rows if row[0] == "train time (s)")
    # torch 20 s against keras-jax 25 s and jax 30 s; tf 20 s.
    assert [wall[headers.index(f"torch / {b}")] for b in ("tf", "keras-jax", "jax")] == [
        "1.00×", "0.80×", "0.67×"]
    headline_backends = [row[1] for row in report.headline_rows(data)[1]]
    assert headline_backends == ordered * 2


def test_the_ratio_chart_has_a_panel_per_model_and_other_backend(four):
    folder, records = four
    data = report.analyse(records, folder / RESULTS_FILE)
    keys = report.measured_keys(data)
    four_png = plots.ratio_chart(data.groups, keys, OTHERS_OF_TORCH, "torch")
    pair_png = plots.ratio_chart(data.groups, keys, ["tf"], "torch")
    # A row per model and a column per other backend (2 × 3 panels), where the pair's
    # two models share one row.
    (four_width, four_height), (pair_width, pair_height) = map(_png_size, (four_png, pair_png))
    assert four_height > 1.8 * pair_height and four_width > pair_width
    page = (folder / layout.REPORT_HTML).read_text()
    assert page.count('id="chart-ratio"') == 1
    assert f"{', '.join(OTHERS_OF_TORCH)} ÷ torch ratio of means" in page


def test_four_backends_have_four_colours_and_tf_torch_keep_theirs():
    colours = [plots.backend_color(b, list(FOUR_BACKENDS)) for b in FOUR_BACKENDS]
    assert len(set(colours)) == 4
    assert colours[:2] == [plots.backend_color("tf", list(PAIR)),
                           plots.backend_color("torch", list(PAIR))]


def test_the_deployment_table_has_a_column_per_backend(four, tmp_path):
    _, records = four
    folder = write_results(tmp_path, records)
    chosen = [r for r in records if r["model"] == "sanet" and r["seed"] == 0]
    exports = [{"name": r["run_id"], "exported_by": r["backend"], "model": "sanet",
                "file": f"{r['run_id']}.{r['backend']}.onnx", "parity_max_abs_logit_diff": 0.0,
                "latency": {"latency_b1_p50_ms": 1.0 + i}} for i, r in enumerate(chosen)]
    (folder / layout.ONNX_DIR).mkdir()
    (folder / layout.ONNX_DIR / layout.ONNX_SUMMARY_FILE).write_text(
        json.dumps({"tolerance": 1e-4, "exports": exports}))
    section = deployment(report.analyse(records, folder / RESULTS_FILE))
    headers, rows = section.latency
    ordered = registry_order(FOUR_BACKENDS)
    assert headers == ["model", "figure", *(f"{b} native" for b in ordered),
                       *(f"onnxruntime ({b} export)" for b in ordered)]
    b1 = next(row for row in rows if row[1] == "latency b1 p50 (ms)")
    by_backend = {r["backend"]: 1.0 + i for i, r in enumerate(chosen)}
    assert [b1[headers.index(f"onnxruntime ({b} export)")] for b in ordered] == [
        f"{by_backend[b]:.2f}" for b in ordered]


def test_two_backends_read_as_before(tmp_path):
    records = grid(seeds=3)
    data = report.analyse(records, tmp_path / RESULTS_FILE)
    assert data.reference == "torch" and list(data.tests["sanet"]) == ["tf"]
    assert [heading for heading, _ in report.test_lines(data)] == ["proposed_cnn", "sanet"]
    assert report.figure_rows(data, "sanet")[0] == ["figure", "tf", "torch", "torch / tf"]
    # Without torch, the first backend in the registry's order is the reference.
    alone = report.analyse(grid(seeds=2, backends=("tf", "jax")), tmp_path / RESULTS_FILE)
    assert alone.reference == "tf" and list(alone.tests["sanet"]) == ["jax"]


def test_explain_rebuilds_in_the_records_backends_and_the_installed_pair(four):
    _, records = four
    names = explaining_backends(records)
    assert set(names) >= set(FOUR_BACKENDS) and names[:2] == list(PAIR)
    # A one-backend folder is still explained in tf and torch too (both installed here).
    assert explaining_backends([r for r in records if r["backend"] == "jax"]) == \
        registry_order(["jax", *PAIR])


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
