"""The report writer on synthetic records: contents, escaping, rebuilds, bad input."""

from __future__ import annotations

import base64
import html
import io
import re
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from benchmarks.analysis.stats import replicate_values
from benchmarks.record import layout
from benchmarks.record.layout import RESULTS_FILE
from benchmarks.report import __main__ as report_cli
from benchmarks.report import data as report
from benchmarks.report import plots
from tests.report_fixtures import (
    FAILED_ERROR,
    INJECTION,
    failed_record,
    grid,
    make_record,
    twin_of,
    write_results,
)

_DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
_CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A report folder with 2 backends × 2 models × 3 seeds and one failed run, built."""
    records = grid(seeds=3) + [failed_record("tf", "proposed_cnn", seed=3)]
    folder = write_results(tmp_path_factory.mktemp("reports"), records)
    (folder / "notes.txt").write_text("mine")
    results_before = (folder / RESULTS_FILE).read_bytes()
    assert report_cli.main([str(folder)]) == 0
    return folder, records, results_before


def test_html_embeds_every_figure_as_a_decodable_png(built):
    folder, _, _ = built
    page = (folder / layout.REPORT_HTML).read_text()
    encoded = _DATA_URI.findall(page)
    # Metrics, time, latency, memory, energy, work, the tf ÷ torch ratios, confusion
    # matrices, per-class F1, training curves (model_info holds no measured figure).
    assert len(encoded) == 10
    for data in encoded:
        png = base64.b64decode(data, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as image:
            image.verify()
    for anchor in ("chart-classification-metrics", "chart-time", "chart-latency",
                   "chart-memory", "chart-energy", "chart-work", "chart-ratio",
                   "chart-confusion", "chart-per-class", "chart-curves"):
        assert f'id="{anchor}"' in page


def test_html_is_self_contained(built):
    folder, _, _ = built
    page = (folder / layout.REPORT_HTML).read_text()
    assert "<script" not in page
    assert "<link" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_every_run_appears_in_html_and_markdown(built):
    folder, records, _ = built
    page = (folder / layout.REPORT_HTML).read_text()
    markdown = (folder / layout.REPORT_MD).read_text()
    for record in records:
        assert html.escape(record["run_id"]) in page
        assert record["run_id"] in markdown
    runs = pd.read_csv(folder / layout.RUNS_CSV)
    assert sorted(runs["run_id"]) == sorted(r["run_id"] for r in records)
    summary = pd.read_csv(folder / layout.SUMMARY_CSV)
    assert len(summary) == 4
    tf_cnn = summary[(summary.model == "proposed_cnn") & (summary.backend == "tf")].iloc[0]
    assert (tf_cnn["runs"], tf_cnn["runs_ok"], tf_cnn["metrics.accuracy.n"]) == (4, 3, 3)
    assert tf_cnn["metrics.accuracy.ci95_low"] < tf_cnn["metrics.accuracy.mean"]


def test_data_text_is_escaped(built):
    folder, _, _ = built
    page = (folder / layout.REPORT_HTML).read_text()
    markdown = (folder / layout.REPORT_MD).read_text()
    for text in (page, markdown):
        assert INJECTION not in text
        assert "<img src=x" not in text
    assert html.escape(INJECTION) in page and html.escape(FAILED_ERROR) in page
    # Markdown: only what makes markup is escaped, each format for itself.
    assert html.escape(INJECTION, quote=False) in markdown
    assert html.escape(FAILED_ERROR, quote=False) in markdown


def test_markdown_holds_no_html_quote_escapes(built):
    folder, _, _ = built
    markdown = (folder / layout.REPORT_MD).read_text()
    assert "&#x27;" not in markdown and "&quot;" not in markdown
    assert "the kernel's OOM killer" in markdown and 'alert("x")' in markdown


def test_settings_and_counts_are_tabled_not_plotted(built):
    folder, records, _ = built
    data = report.analyse(records, folder / RESULTS_FILE)
    charted = {key for _, keys in report.chart_sections(data) for key in keys}
    settings = {"work.calibration_matmul_size", "work.train_flops_multiplier",
                "work.forward_flops_per_img", "latency.latency_b1_calls",
                "latency.latency_train_batch_size", "model_info.trainable_params"}
    assert settings <= set(data.keys) and not settings & charted
    assert "work.peak_matmul_tflops" in charted and "latency.latency_b1_p50_ms" in charted
    headers, rows = report.setting_rows(data)
    assert {row[0] for row in rows} >= {"calibration matmul size", "latency b1 calls",
                                        "train FLOPs multiplier", "forward FLOPs per image"}
    assert headers[1:] == ["proposed_cnn · tf", "proposed_cnn · torch", "sanet · tf",
                           "sanet · torch"]
    for text in ((folder / layout.REPORT_HTML).read_text(),
                 (folder / layout.REPORT_MD).read_text()):
        assert "Settings and counts (not plotted)" in text and "2,048" in text
    # Nor are they in the per-model figure tables.
    for label in data.groups:
        titles = {row[0] for row in report.figure_rows(data, label)[1]}
        assert "calibration matmul size" not in titles and "latency b1 p50 (ms)" in titles


def test_no_plotted_interval_reaches_below_zero_for_a_positive_figure(built):
    folder, records, _ = built
    data = report.analyse(records, folder / RESULTS_FILE)
    skewed = data.groups["proposed_cnn"]["tf"]
    # The t-interval of the skewed latency (2, 2, 60 ms) runs below zero; the plotted one
    # does not, and holds the mean.
    assert data.summary("proposed_cnn", "tf", "latency.latency_b1_p50_ms").ci_low < 0
    mean, low, high = plots.bar_interval(skewed, "latency.latency_b1_p50_ms")
    assert 2.0 <= low <= mean <= high <= 60.0
    for _, keys in report.chart_sections(data):
        for key in keys:
            for by_backend in data.groups.values():
                for runs in by_backend.values():
                    values = replicate_values(runs, key)
                    interval = plots.bar_interval(runs, key)
                    if values and min(values) >= 0:
                        assert interval[1] >= 0, key


def test_one_chart_shows_every_figures_tf_to_torch_ratio(built):
    folder, records, _ = built
    data = report.analyse(records, folder / RESULTS_FILE)
    ratios = plots.figure_ratios(data.groups, report.measured_keys(data), "tf", "torch")
    assert set(ratios) == {"proposed_cnn", "sanet"}
    tf_mean = data.summary("sanet", "tf", "work.peak_matmul_tflops").mean
    torch_mean = data.summary("sanet", "torch", "work.peak_matmul_tflops").mean
    assert ratios["sanet"]["work.peak_matmul_tflops"] == pytest.approx(tf_mean / torch_mean)
    assert "model_info.trainable_params" not in ratios["sanet"]
    assert 'id="chart-ratio"' in (folder / layout.REPORT_HTML).read_text()


def test_report_states_paired_tests_and_new_probes(built):
    folder, _, _ = built
    page = (folder / layout.REPORT_HTML).read_text()
    assert page.count("paired by seed over 3 seeds") == 2
    # A probe only one backend reports is shown, the other side as "—".
    assert "latency b1 p50 (ms)" in page
    assert "train (J)" in page


def _framework_section(markdown: str) -> str:
    return markdown.split("## Do the frameworks differ?")[1].split("\n## ")[0]


def test_one_seed_report_states_no_framework_verdict(tmp_path):
    # tf right on 90% of the images, torch on 30%: the two models plainly differ.
    records = [make_record("tf", "proposed_cnn", 0, accuracy=0.9),
               make_record("torch", "proposed_cnn", 0, accuracy=0.3)]
    folder = write_results(tmp_path, records)
    assert report_cli.main([str(folder)]) == 0
    section = _framework_section((folder / layout.REPORT_MD).read_text())
    assert "- **proposed_cnn**: these two trained models differ (McNemar exact on the 120 " \
           "test images of seed 0" in section
    assert "no framework verdict; to answer the framework question, run with " \
           "`--seeds 5 --twins`." in section
    assert "more accurate" not in section and "equivalent" not in section.split("\n- ")[1]
    page = (folder / layout.REPORT_HTML).read_text()
    assert '<li class="no-verdict"><b>proposed_cnn</b>: these two trained models differ' in page


def test_twins_give_the_chaos_floor_and_stay_out_of_the_figures(tmp_path):
    runs = grid(seeds=3)
    twins = [twin_of(r, changed=2) for r in runs]
    folder = write_results(tmp_path, runs + twins)
    assert report_cli.main([str(folder)]) == 0
    markdown = (folder / layout.REPORT_MD).read_text()
    section = _framework_section(markdown)
    assert section.count("Chaos floor (each run repeated from initial weights one ulp away): "
                         "tf and its twin: ") == 2
    assert "(3 pairs)" in section and "Chaos floor not measured" not in section
    # The headline counts the runs, not their twins, and its accuracy is theirs alone.
    assert "| proposed_cnn | tf | 3/3 |" in markdown
    data = report.analyse(runs + twins, folder / RESULTS_FILE)
    alone = report.analyse(runs, folder / RESULTS_FILE)
    assert data.summary("sanet", "tf", "metrics.accuracy") == \
        alone.summary("sanet", "tf", "metrics.accuracy")
    summary = pd.read_csv(folder / layout.SUMMARY_CSV)
    assert set(summary["runs"]) == {3}
    assert len(pd.read_csv(folder / layout.RUNS_CSV)) == 24  # twins listed with the runs


def test_rebuild_keeps_results_and_other_files(built):
    folder, _, results_before = built
    assert report_cli.main([str(folder / RESULTS_FILE)]) == 0
    assert (folder / RESULTS_FILE).read_bytes() == results_before
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [RESULTS_FILE, "notes.txt", layout.REPORT_HTML, layout.REPORT_MD,
         layout.SUMMARY_CSV, layout.RUNS_CSV])


def test_report_of_only_failed_runs(tmp_path):
    folder = write_results(tmp_path, [failed_record("tf", "vgg16", 0)])
    assert report_cli.main([str(folder)]) == 0
    page = (folder / layout.REPORT_HTML).read_text()
    assert "No successful runs to draw" in page
    assert html.escape(FAILED_ERROR) in page


@pytest.mark.parametrize("content, expected", [
    (None, "no results file"),
    ("", "holds no result records"),
    ('{"run_id": "x", "status": "ok"\n', "line 1: not valid JSON"),
    ('{"hello": 1}\n', "line 1: not a FER-Bench result record"),
])
def test_bad_results_file_is_one_line_error(tmp_path, capsys, content, expected):
    if content is not None:
        (tmp_path / RESULTS_FILE).write_text(content)
    assert report_cli.main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert expected in error and str(tmp_path / RESULTS_FILE) in error


@pytest.mark.skipif(not Path(_CHROMIUM).exists(), reason="needs /usr/bin/chromium")
def test_html_renders_in_headless_chromium_without_console_errors(built, tmp_path):
    folder, _, _ = built
    # The report has no script of its own; this probe, appended to a copy, reports every
    # image the browser failed to decode on the console, where the check below sees it.
    probe = ("<script>window.addEventListener('load', () => { for (const img of "
             "document.images) { if (!img.complete || img.naturalWidth === 0) "
             "console.error('broken image: ' + img.alt); } "
             "console.log('images decoded: ' + document.images.length); });</script>")
    page = (folder / layout.REPORT_HTML).read_text().replace("</body>", probe + "</body>")
    probed = tmp_path / "probed.html"
    probed.write_text(page)
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FER-Bench report" in result.stdout
    assert len(console) == 1 and '"images decoded: 10"' in console[0], console

