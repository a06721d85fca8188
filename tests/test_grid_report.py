"""The hyper-parameter study inside a grid folder's report (read from grid.json); a plain
run's report has none. No training: the records are the report fixtures'."""

import json
from types import SimpleNamespace

from benchmarks.analysis.grid_study import read_grid_summary
from benchmarks.grid.driver import build_summary, summarise
from benchmarks.grid.spec import parse_spec
from benchmarks.record.layout import GRID_SUMMARY_FILE, REPORT_HTML, REPORT_MD
from benchmarks.record.store import read_records
from benchmarks.report import write_report
from benchmarks.report.data import analyse, grid_study
from benchmarks.report.html import render_html
from benchmarks.report.markdown import render_markdown
from tests.grid_specs import TINY_SPEC
from tests.report_fixtures import make_record, write_results

SPEC = TINY_SPEC.replace('backends = ["torch"]', 'backends = ["tf", "torch"]').replace(
    "seeds = 1", "seeds = 2").replace('learning_rate = [1e-3, 3e-3]',
                                      'learning_rate = [1e-3, 3e-3]\naugment = ["none", "light"]')
# Validation accuracy per (backend, learning rate, augmentation), before the seed's noise:
# tf does best at (3e-3, light), torch at (1e-3, light): the backends choose differently.
VAL = {("tf", 1e-3, "none"): 0.50, ("tf", 1e-3, "light"): 0.55, ("tf", 3e-3, "none"): 0.60,
       ("tf", 3e-3, "light"): 0.70, ("torch", 1e-3, "none"): 0.52,
       ("torch", 1e-3, "light"): 0.72, ("torch", 3e-3, "none"): 0.40,
       ("torch", 3e-3, "light"): 0.45}


def _grid_records(spec):
    records = []
    for point in spec.points():
        for seed in range(2):
            for backend in ("tf", "torch"):
                record = make_record(backend, "proposed_cnn", seed)
                value = VAL[(backend, point["learning_rate"], point["augment"])] + 0.01 * seed
                record.update(run_id=f"{record['run_id']}-{point['learning_rate']}-"
                                     f"{point['augment']}",
                              grid_point=point,
                              selection={"best_val_accuracy": value, "best_val_loss": 1 - value})
                records.append(record)
    return records


def test_a_grid_folders_report_holds_the_study_and_a_plain_runs_does_not(tmp_path):
    spec = parse_spec(SPEC, "study.toml")
    records = _grid_records(spec)
    folder = write_results(tmp_path, records)
    summary = build_summary(spec, records, len(records))
    (folder / GRID_SUMMARY_FILE).write_text(json.dumps(summary))
    write_report(folder)  # as `python -m benchmarks.report FOLDER` rebuilds it
    page, markdown = (folder / REPORT_HTML).read_text(), (folder / REPORT_MD).read_text()
    for text in (page, markdown):
        assert "Hyper-parameter study" in text and "Chosen on validation only" in text
        assert "proposed_cnn on synthetic: the backends chose DIFFERENT configurations" in text
        # tf's choice beside the defaults (the recipe "none": 1e-3, no augmentation).
        assert "learning_rate=0.003, augment=&#x27;light&#x27;" in page
        assert "learning_rate=0.001, augment=&#x27;none&#x27;" in page
    assert "| proposed_cnn | tf | learning_rate=0.003, augment='light' | " \
           "learning_rate=0.001, augment='none' | 0.7050 ± 0.0635 | 2 |" in markdown
    # The axis table: at lr 0.001, tf averages augment within each seed (0.525, 0.535),
    # torch (0.62, 0.63); the interval is over those two seeds, not the augment values.
    assert "| 0.001 | 0.5300 ± 0.0635 (n 2) | 0.6250 ± 0.0635 (n 2) |" in markdown
    assert 'id="chart-study"' in page and page.count("data:image/png;base64,") >= 2
    # The rest of the report is of the chosen configurations' runs only: 2 seeds × 2.
    assert "4 runs (0 not ok)" in page
    assert len(read_records(folder)) == 16  # the records are untouched
    plain = analyse([make_record("tf", "proposed_cnn", 0)], tmp_path / "results.jsonl")
    assert grid_study(plain) is None
    assert "Hyper-parameter study" not in render_markdown(plain) + render_html(plain, [])


def _framework_section(folder) -> str:
    return (folder / REPORT_MD).read_text().split("## Do the frameworks differ?")[1].split(
        "\n## ")[0]


def _with_reference(reference: str, backends: str = '"tf", "torch"') -> str:
    return SPEC.replace('backends = ["tf", "torch"]',
                        f'backends = [{backends}]\nreference_backend = "{reference}"')


def test_the_specs_reference_backend_sets_the_grid_reports_verdicts(tmp_path):
    spec = parse_spec(_with_reference("tf"), "study.toml")
    records = _grid_records(spec)
    folder = write_results(tmp_path, records)
    planned = [(r["grid_point"], SimpleNamespace(run_id=r["run_id"])) for r in records]
    lines = []
    summary = summarise(spec, folder, planned, lines.append)  # as the driver ends
    assert lines == [] and summary["reference_backend"] == "tf"
    section = _framework_section(folder)
    assert "torch − tf" in section and "tf − torch" not in section, section
    assert "the reference backend, tf" in section
    # `python -m benchmarks.report FOLDER` rebuilds it from grid.json, against tf again;
    # an explicit --reference-backend still wins.
    kept = read_grid_summary(folder)
    assert kept["reference_backend"] == "tf"
    assert analyse(records, folder / "results.jsonl", kept).reference == "tf"
    assert analyse(records, folder / "results.jsonl", kept, "torch").reference == "torch"
    # A spec naming none: grid.json holds null, and the default rule (torch) judges.
    default = build_summary(parse_spec(SPEC, "study.toml"), records, len(records))
    assert default["reference_backend"] is None
    assert analyse(records, folder / "results.jsonl", default).reference == "torch"


def test_a_reference_without_chosen_runs_is_warned_of_and_the_default_judges(tmp_path):
    spec = parse_spec(_with_reference("jax", '"tf", "torch", "jax"'), "study.toml")
    records = _grid_records(spec)  # tf and torch only: jax's runs have not run yet
    folder = write_results(tmp_path, records)
    lines = []
    planned = [(r["grid_point"], SimpleNamespace(run_id=r["run_id"])) for r in records]
    summarise(spec, folder, planned, lines.append)
    assert [line for line in lines if "reference backend jax" in line] == [
        f"warning: the reference backend jax (study.toml) has no chosen configuration in "
        f"{folder} yet; the report's verdicts use the default reference until it has"]
    assert "tf − torch" in _framework_section(folder)
    assert read_grid_summary(folder)["reference_backend"] == "jax"  # kept for a later report
