"""A report folder's layout: the name of every file and folder the suite writes in one.

Only the names live here; what each file holds is its writer's. Every reader and writer
takes the names from this module, so a file is found without importing the code that
writes it.

    <timestamp>-<dataset>/       made by `store.new_report_dir`
        results.jsonl            RESULTS_FILE: one record per run (`store`)
        report.html, report.md   REPORT_HTML, REPORT_MD (`benchmarks.report`)
        summary.csv, runs.csv    SUMMARY_CSV, RUNS_CSV (`benchmarks.report`)
        weights/                 WEIGHTS_DIR: each ok run's kept weights, and per data split
                                 the test images they were scored on
        explain/                 EXPLAIN_DIR: `benchmarks.explain`'s figures
                                 (`explain_figure_name`) and EXPLAIN_SUMMARY_FILE
        onnx/                    ONNX_DIR: `benchmarks.export`'s models
                                 (`onnx_model_name`) and ONNX_SUMMARY_FILE
    and in a grid's folder (`benchmarks.grid`):
        grid.json                GRID_SUMMARY_FILE: the choices on validation and the study
        grid-spec.toml           GRID_SPEC_FILE: the spec the folder's last driver ran
        .lock                    GRID_LOCK_FILE: held by the driver that runs the folder
        trials.jsonl             TRIALS_FILE: an Optuna search's trials
"""

from __future__ import annotations

RESULTS_FILE = "results.jsonl"
REPORT_HTML, REPORT_MD = "report.html", "report.md"
SUMMARY_CSV, RUNS_CSV = "summary.csv", "runs.csv"

# The folder of each ok run's weights (`backends.weights`) and of the test images they were
# scored on, one file per data split.
WEIGHTS_DIR = "weights"
# Run ids begin with a backend's name, so no weights file is named like this.
TEST_SPLIT_PREFIX = "test-"

EXPLAIN_DIR = "explain"
EXPLAIN_SUMMARY_FILE = "explain.json"
ONNX_DIR = "onnx"
ONNX_SUMMARY_FILE = "onnx.json"

GRID_SUMMARY_FILE = "grid.json"
GRID_SPEC_FILE = "grid-spec.toml"
GRID_LOCK_FILE = ".lock"
TRIALS_FILE = "trials.jsonl"


def weights_file_name(run_id: str) -> str:
    """The name, under WEIGHTS_DIR, of run `run_id`'s weights file."""
    return f"{run_id}.npz"


def explain_figure_name(run_id: str, kind: str) -> str:
    """The name, under EXPLAIN_DIR, of run `run_id`'s figure `kind` ("gradcam", "features")."""
    return f"{run_id}-{kind}.png"


def onnx_model_name(stem: str, framework: str) -> str:
    """The name of the ONNX model `framework` exported from weights named `stem` (a run id
    under ONNX_DIR)."""
    return f"{stem}.{framework}.onnx"


def test_split_file_name(split: str) -> str:
    """The name, under WEIGHTS_DIR, of the test images (x, y) of data split `split`."""
    return f"{TEST_SPLIT_PREFIX}{split}.npz"
