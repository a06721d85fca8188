"""benchmarks.run end to end: bad input, isolation, results that are never overwritten."""

import dataclasses
import json

import pytest

import backends.registry
from backends.train_config import TrainConfig
from benchmarks import run
from benchmarks.record.store import new_report_dir, read_records
from benchmarks.runner import command_line
from benchmarks.runner.config import RunSpec, record_header
from benchmarks.runner.harness import run_in_worker

TINY = ["--epochs", "1", "--synthetic-subjects", "8", "--image-size", "32"]


@pytest.mark.parametrize(
    "argv, listed",
    [
        (["--backend", "mxnet"],
         f"valid backends: {', '.join(backends.registry.BACKEND_NAMES)}, both"),
        (["--models", "proposed_cnn,lenet"], "valid models: proposed_cnn, vgg16"),
        (["--dataset", "mnist"], "valid datasets: synthetic"),
        (["--epochs", "0"], "epochs must be an integer ≥ 1"),
        (["--recipe", "missing.toml"], "shipped recipes: benchmarks/recipes/synthetic.toml"),
        (["--equivalence-margin", "-1"],
         "equivalence_margin must be a number in (0, 1), in accuracy (0.02 is ±2 points). "
         "Received: equivalence_margin=-1.0"),
        (["--twins", "--init", "native"], "twins need init 'shared'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, listed, capsys, tmp_path):
    assert run.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert listed in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_recipe_options_parse_to_what_the_invocation_resolves():
    args = command_line.parse_args(["--lr", "0.02", "--selection-metric", "last", "--compile"])
    assert args.recipe == "auto" and not hasattr(args, "epochs")  # not given: the recipe's
    train = command_line.invocation_of(args).train["proposed_cnn"]
    assert (train.learning_rate, train.selection_metric, train.compile) == (0.02, "last", True)
    assert command_line.parse_args(["--learning-rate", "0.02"]).learning_rate == 0.02


def test_backends_take_turns_going_first_abba_over_seeds_and_folds():
    args = command_line.parse_args(["--models", "proposed_cnn,sanet", "--seeds", "2",
                                    "--folds", "2", "--twins"])
    jobs = command_line.invocation_of(args).jobs()
    units = {}
    for job in jobs:
        units.setdefault((job.fold, job.model, job.seed), []).append(job)
    first = {unit: runs[0].backend for unit, runs in units.items()}
    # Per model, replicates (fold 0 seed 0, fold 0 seed 1, fold 1 seed 0, fold 1 seed 1):
    # A B, B A, B A, A B.
    for model in ("proposed_cnn", "sanet"):
        assert [first[(fold, model, seed)] for fold in (0, 1) for seed in (0, 1)] == [
            "tf", "torch", "torch", "tf"]
    for runs in units.values():
        # The runs, then their twins in the same order, positions counted from 0.
        assert [job.position for job in runs] == [0, 1, 2, 3]
        assert [job.twin for job in runs] == [False, False, True, True]
        assert [job.backend for job in runs[2:]] == [job.backend for job in runs[:2]]


def test_twins_and_positions_reach_the_records_run_ids_and_digests(tmp_path):
    args = command_line.parse_args(["--models", "proposed_cnn", "--twins", "--equivalence-margin",
                                    "0.03"])
    invocation = command_line.invocation_of(args)
    assert invocation.twins and invocation.equivalence_margin == 0.03
    spec = RunSpec(backend="tf", model="proposed_cnn", dataset="synthetic",
                   prepared_data="x.npz", run_position=1, equivalence_margin=0.03)
    twin = dataclasses.replace(spec, twin_of=spec.run_id, run_position=3)
    assert twin.run_id == f"{spec.run_id}-twin"
    header = record_header(twin)
    assert (header["twin_of"], header["run_position"], header["equivalence_margin"]) == (
        spec.run_id, 3, 0.03)
    # A twin is another run to a grid's resume; the order is no part of a run.
    assert twin.spec_digest != spec.spec_digest
    assert dataclasses.replace(spec, run_position=0).spec_digest == spec.spec_digest


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
    """Records, saved weights and the test images of a two-backend run; --no-report, so
    the report and its explain step (a 55 s subprocess of its own, the slow test below)
    stay out of the fast suite."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    argv = ["--backend", "both", "--models", "proposed_cnn", *TINY, "--no-report",
            "--out", str(tmp_path)]
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
    assert not (folder / "report.html").exists() and not (folder / "explain").exists()
    assert "report: not written (--no-report)" in out
    saved = (folder / "results.jsonl").read_text()
    # A second invocation gets its own folder.
    assert run.main([*argv, "--backend", "torch"]) == 0
    (second,) = set(tmp_path.iterdir()) - {folder}
    assert (folder / "results.jsonl").read_text() == saved
    assert [r["backend"] for r in read_records(second)] == ["torch"]
    json.loads(saved.splitlines()[0])


@pytest.mark.slow
def test_a_run_writes_its_report_and_explains_its_saved_models(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    assert run.main(["--backend", "both", "--models", "proposed_cnn", *TINY,
                     "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    explained = json.loads((folder / "explain" / "explain.json").read_text())
    assert sorted(entry["trained_by"] for entry in explained["runs"]) == ["tf", "torch"]
    assert all(entry["gradcam_max_relative_difference"] < 1e-3 for entry in explained["runs"])
    assert "Grad-CAM" in (folder / "report.html").read_text()
    assert "report: " + str(folder / "report.html") in capsys.readouterr().out


@pytest.mark.slow
def test_twins_run_end_to_end_and_the_report_sets_them_against_the_frameworks(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    # 3 epochs: the ulp apart start must have grown into the losses' printed digits.
    argv = ["--backend", "both", "--models", "proposed_cnn", *TINY, "--epochs", "3", "--twins",
            "--save-weights", "none", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    (folder,) = tmp_path.iterdir()
    records = read_records(folder)
    assert [(r["backend"], r["run_position"], r["twin_of"]) for r in records] == [
        ("tf", 0, None), ("torch", 1, None),
        ("tf", 2, records[0]["run_id"]), ("torch", 3, records[1]["run_id"])]
    assert all(r["status"] == "ok" and r["equivalence_margin"] == 0.02 for r in records)
    # torch on a CPU repeats a run bit for bit: only the twin's start can move its losses
    # (an epoch's mean loss can round alike in float32 while the weights already differ).
    torch_run, torch_twin = records[1], records[3]
    assert [e["train_loss"] for e in torch_twin["history"]] != \
        [e["train_loss"] for e in torch_run["history"]]
    section = (folder / "report.md").read_text().split("## Do the frameworks differ?")[1]
    assert "Chaos floor (each run repeated from initial weights one ulp away): tf and its " \
           "twin: " in section
    assert "no framework verdict; to answer the framework question" in section


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
