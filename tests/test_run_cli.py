"""benchmarks.run end to end: bad input, isolation, results that are never overwritten."""

import json

import pytest

import backends.registry
from backends.base import TrainConfig
from benchmarks import run
from benchmarks.record.store import new_report_dir, read_records
from benchmarks.runner.config import RunSpec
from benchmarks.runner.harness import run_in_worker

TINY = ["--epochs", "1", "--synthetic-subjects", "8", "--image-size", "32"]


@pytest.mark.parametrize(
    "argv, listed",
    [
        (["--backend", "jax"], "valid backends: tf, torch, both"),
        (["--models", "proposed_cnn,lenet"], "valid models: proposed_cnn, vgg16"),
        (["--dataset", "mnist"], "valid datasets: synthetic"),
        (["--epochs", "0"], "epochs must be an integer ≥ 1"),
        (["--recipe", "missing.toml"], "shipped recipes: benchmarks/recipes/synthetic.toml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, listed, capsys, tmp_path):
    assert run.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert listed in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_recipe_options_parse_to_what_the_grid_resolves():
    args = run.parse_args(["--lr", "0.02", "--selection-metric", "last", "--compile"])
    assert args.recipe == "auto" and not hasattr(args, "epochs")  # not given: the recipe's
    train = run.grid_of(args).train["proposed_cnn"]
    assert (train.learning_rate, train.selection_metric, train.compile) == (0.02, "last", True)
    assert run.parse_args(["--learning-rate", "0.02"]).learning_rate == 0.02


def test_missing_framework_names_the_extra(monkeypatch, capsys, tmp_path):
    real_find_spec = backends.registry.importlib.util.find_spec
    monkeypatch.setattr(
        backends.registry.importlib.util, "find_spec",
        lambda name, *a: None if name == "torch" else real_find_spec(name, *a),
    )
    assert run.main(["--backend", "both", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[torch]'" in err and "\n" not in err


def test_report_folders_are_never_reused(tmp_path):
    first = new_report_dir(tmp_path, "ck+")
    (first / "results.jsonl").write_text("{}\n")
    second = new_report_dir(tmp_path, "ck+")
    assert first != second and (first / "results.jsonl").read_text() == "{}\n"
    assert first.name.endswith("ckplus") and second.parent == tmp_path


def test_a_crashing_worker_becomes_a_failed_record(tmp_path):
    spec = RunSpec(backend="torch", model="proposed_cnn", dataset="synthetic",
                   prepared_data=str(tmp_path / "missing.npz"), train=TrainConfig())
    record = run_in_worker(spec, on_line=lambda line: None)
    assert record["status"] == "failed"
    assert "missing.npz" in record["error"] and record["run_id"] == spec.run_id


def test_both_backends_run_in_their_own_workers(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    argv = ["--backend", "both", "--models", "proposed_cnn", *TINY, "--out", str(tmp_path)]
    assert run.main(argv) == 0
    (folder,) = tmp_path.iterdir()
    records = read_records(folder)
    assert sorted(r["backend"] for r in records) == ["tf", "torch"]
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert record["model_info"]["trainable_params"] == 584_807
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
        assert len(record["test_predictions"]) == record["data"]["num_test"]
    assert records[0]["data"]["fingerprint"] == records[1]["data"]["fingerprint"]
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "proposed_cnn" in out
    # --save-weights best (the default): each run's weights, and the split's test images.
    split = records[0]["data"]["split"]
    assert sorted(p.name for p in (folder / "weights").iterdir()) == sorted(
        [r["artifacts"]["weights_file"] for r in records] + [f"test-{split}.npz"])
    assert "MB on disk for 2 runs (with the test images)" in out
    saved = (folder / "results.jsonl").read_text()
    # A second invocation gets its own folder; --no-report writes the records only.
    assert run.main([*argv, "--backend", "torch", "--no-report"]) == 0
    (second,) = set(tmp_path.iterdir()) - {folder}
    assert (folder / "results.jsonl").read_text() == saved
    assert [r["backend"] for r in read_records(second)] == ["torch"]
    assert not (second / "report.html").exists() and not (second / "explain").exists()
    assert "report: not written (--no-report)" in capsys.readouterr().out
    json.loads(saved.splitlines()[0])


@pytest.mark.slow
def test_every_model_trains_through_benchmarks_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    argv = ["--backend", "both", "--models", "all", *TINY, "--out", str(tmp_path)]
    assert run.main(argv) == 0
    (folder,) = tmp_path.iterdir()
    records = read_records(folder)
    assert len(records) == 12
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert all(log["train_loss"] == log["train_loss"] for log in record["history"])  # no NaN
