"""Study specs, "Published vs measured", and `python -m benchmarks.reproduce`
(benchmarks/reproduce/)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import datasets.preprocess
from benchmarks.analysis.metrics import classification_metrics
from benchmarks.analysis.published import (
    ABOVE,
    BELOW,
    NOT_MEASURED,
    ONE_REPLICATE,
    OTHER_SPLIT,
    PUBLISHED_FILE,
    WITHIN,
    compare,
    published_view,
)
from benchmarks.grid import executors
from benchmarks.record.store import read_records
from benchmarks.report import write_report
from benchmarks.reproduce import __main__ as reproduce_cli
from benchmarks.reproduce.plan import plan_study
from benchmarks.reproduce.spec import SCALES, load_study, parse_study, shipped_studies
from benchmarks.runner.config import record_header
from tests.report_fixtures import INJECTION, make_record, write_results

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")

STUDIES = ("ckplus-five-models", "fer2013-4conv-cnn", "fer2013-cnn-vs-resnet18",
           "fer2013-field-anchors", "fer2013-four-class", "fer2013-four-models")

MINIMAL = '''
[study]
title = "a study"
write_up = "a write-up"
caveats = ["the split is not stated"]

[protocol]
dataset = "fer2013"
split = "PrivateTest"
models = ["proposed_cnn"]

[smoke]
epochs = 1

[[published]]
model = "proposed_cnn"
as_named = "CNN"
metric = "accuracy"
value = 0.5
split = "unstated"
source = "the README"
'''


@pytest.fixture(scope="module", autouse=True)
def centre_crops_only():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.preprocess, "_cascade_path", lambda: None)
        yield


def test_every_shipped_spec_is_valid_and_plans_both_scales(tmp_path):
    assert tuple(shipped_studies()) == STUDIES
    for name, path in shipped_studies().items():
        spec = load_study(path)
        assert spec.name == name and spec.caveats and spec.published
        for scale in SCALES:
            groups = plan_study(spec, scale, tmp_path, tmp_path, threads=1)
            planned = [model for group in groups for model in group.models]
            assert planned == list(spec.protocol(scale).models)
            for group in groups:
                invocation = group.invocation()
                assert invocation.models == group.models
                assert group.grid_spec.runs == len(invocation.jobs())
                assert invocation.recipe == spec.recipe  # recorded verbatim with every run
        if "[recipe." in spec.text:
            assert spec.recipe.text == spec.text
        else:  # the dataset's shipped recipe
            assert spec.recipe.source.endswith(f"recipes/{spec.full.dataset}.toml")
        smoke, full = spec.smoke, spec.full
        # Smoke changes the sizes, never what is compared.
        assert (smoke.dataset, smoke.split, smoke.selection.classes,
                smoke.selection.test_part) == (full.dataset, full.split,
                                               full.selection.classes, full.selection.test_part)
        assert smoke.explicit.get("epochs", 99) <= 3


def test_the_list_names_each_study_first_one_a_line(capsys):
    assert reproduce_cli.main(["--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(STUDIES)


def test_the_transfer_study_runs_resnet18_apart_at_its_size_from_its_checkpoint(tmp_path):
    spec = load_study(shipped_studies()["fer2013-cnn-vs-resnet18"])
    cnn, resnet = plan_study(spec, "full", None, tmp_path, threads=1)
    assert (cnn.models, cnn.image_size, cnn.checkpoint) == (("proposed_cnn",), 48, None)
    assert (resnet.models, resnet.image_size) == (("resnet18",), 112)
    assert resnet.checkpoint == tmp_path / "resnet18-f37072fd.pth"
    grid = resnet.invocation()
    assert grid.train["resnet18"].freeze_epochs == 2 and grid.data_selection.test_part == "val"
    assert grid.train["resnet18"].optimizer == "adamw"


@pytest.mark.parametrize("change, message", [
    (('[smoke]', '[smoke]\nepoch = 1'), "unknown field 'epoch' in [smoke] (line 13); valid "
                                        "fields: epochs"),
    (('[smoke]', '[extra]\nx = 1\n[smoke]'), "unknown table [extra] (line 12); valid tables"),
    (('metric = "accuracy"', 'metric = "acc"'), "metric must be one of accuracy"),
    (('value = 0.5', 'value = 51.8'), "accuracy is a fraction in [0, 1]: write 0.518 for 51.8 %"),
    (('metric = "accuracy"', 'metric = "class_accuracy"'),
     "class goes with metric class_accuracy, and only with it: add class"),
    (('model = "proposed_cnn"\nas_named', 'model = "sanet"\nas_named'),
     "model 'sanet' is not among the protocol's models (proposed_cnn): add it there"),
    (('caveats = ["the split is not stated"]', 'caveats = []'), "caveats is empty"),
    (('split = "PrivateTest"', 'split = "unstated"'), "split names what the suite tests on"),
    (('models = ["proposed_cnn"]', 'models = ["proposed_cnn", "proposed_cnn"]'),
     "models names proposed_cnn twice"),
    (('models = ["proposed_cnn"]', 'models = ["lenet"]'), "unknown model 'lenet'"),
    (('[smoke]\nepochs = 1', '[smoke]\nmodels = ["vgg16"]'),
     "models may only leave some of the protocol's out; 'vgg16' is not among proposed_cnn"),
    (('models = ["proposed_cnn"]', 'models = ["proposed_cnn", "vgg16"]\nimage_size = 24'),
     "[protocol] at --scale full (proposed_cnn, vgg16): image_size must be ≥ 32 for vgg16"),
    (('split = "PrivateTest"', 'split = "PrivateTest"\nclasses = ["angry", "joy"]'),
     "unknown class 'joy'"),
    (('[smoke]\nepochs = 1', '[smoke]\nepochs = 1\ntest_per_class = 0'),
     "test_per_class must be an integer ≥ 1"),
    (('source = "the README"', 'source = "line one\\nline two"'),
     "source must be one line of 1 to 300 characters"),
])
def test_a_bad_spec_is_one_line_naming_the_fix(change, message):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(ValueError) as error:
        parse_study(MINIMAL.replace(old, new, 1), "bad.toml", "bad")
    text = str(error.value)
    assert message in text and "\n" not in text and text.startswith("study spec bad.toml")


def _records(accuracies: dict[tuple[str, int], float]) -> list[dict]:
    return [make_record(backend, "proposed_cnn", seed, accuracy)
            for (backend, seed), accuracy in accuracies.items()]


def _study(*figures: dict) -> dict:
    base = {"model": "proposed_cnn", "as_named": "CNN", "metric": "accuracy",
            "split": "PrivateTest", "source": "README", "framework": "any",
            "class_name": None, "anchor": False}
    return {"study": "s", "title": "t", "split": "PrivateTest", "caveats": [],
            "published": [{**base, **figure} for figure in figures]}


def test_the_verdict_sets_the_published_value_against_the_measured_interval():
    records = _records({("tf", s): 0.7 for s in range(3)} | {("torch", s): 0.5 for s in
                                                              range(3)})
    measured = {r["backend"]: [] for r in records}
    for record in records:
        measured[record["backend"]].append(record["metrics"]["accuracy"])
    tf_mean = float(np.mean(measured["tf"]))
    figures = _study({"value": tf_mean, "framework": "tf"}, {"value": 0.99},
                     {"value": 0.01, "framework": "torch"},
                     {"value": 0.5, "split": "PublicTest"},
                     {"value": 0.5, "split": "unstated", "framework": "tf"},
                     {"value": 0.5, "model": "sanet"})
    verdicts = [(c.backend, c.verdict, c.split_unstated) for c in compare(figures, records)]
    assert verdicts == [("tf", WITHIN, False), ("tf", BELOW, False), ("torch", BELOW, False),
                        ("torch", ABOVE, False), ("tf", OTHER_SPLIT, False),
                        ("torch", OTHER_SPLIT, False), ("tf", ABOVE, True),
                        (None, NOT_MEASURED, False)]
    one = compare(figures, _records({("tf", 0): 0.7}))
    assert one[0].verdict == ONE_REPLICATE and one[0].measured.n == 1


def test_a_class_accuracy_is_compared_with_that_class_recall():
    records = _records({("tf", s): 0.8 for s in range(2)})
    name = records[0]["data"]["class_names"][1]
    recalls = [r["metrics"]["per_class"][name]["recall"] for r in records]
    (comparison,) = compare(_study({"metric": "class_accuracy", "class_name": name,
                                    "value": 0.5}), records)
    assert comparison.measured.mean == pytest.approx(np.mean(recalls))


def test_the_report_shows_published_vs_measured_escaped_with_the_caveats(tmp_path):
    folder = write_results(tmp_path, _records({(b, s): 0.7 for b in ("tf", "torch")
                                               for s in range(3)}))
    study = _study({"value": 0.6, "as_named": f"CNN {INJECTION}"})
    study["caveats"] = [f"unstated split {INJECTION}"]
    (folder / PUBLISHED_FILE).write_text(json.dumps(study))
    write_report(folder)
    page = (folder / "report.html").read_text()
    assert 'id="published"' in page and "Published vs measured" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "measured above" in page and "Caveats" in page
    markdown = (folder / "report.md").read_text()
    assert "## Published vs measured" in markdown and "### Caveats" in markdown
    view = published_view(folder, read_records(folder))
    assert [row[4] for row in view.rows] == ["tf", "torch"]


@pytest.mark.parametrize("damage, reason", [
    ("not json", "unreadable"),
    ('{"study": "s", "title": "t", "split": "x", "caveats": [], "published": '
     '[{"model": "m", "as_named": "a", "split": "s", "source": "s", "metric": "speed", '
     '"value": 1}]}', "is none of accuracy"),
    ("link", "is not a plain file"),
])
def test_a_damaged_study_file_costs_only_its_section(tmp_path, damage, reason):
    folder = write_results(tmp_path, _records({("tf", 0): 0.7}))
    if damage == "link":
        outside = tmp_path / "outside.json"
        outside.write_text(json.dumps(_study({"value": 0.5})))
        (folder / PUBLISHED_FILE).symlink_to(outside)
    else:
        (folder / PUBLISHED_FILE).write_text(damage)
    write_report(folder)
    page = (folder / "report.html").read_text()
    assert reason in page and 'id="headline"' in page


def test_unknown_study_is_one_line_and_exit_2(tmp_path, capsys):
    assert reproduce_cli.main(["no-such-study", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown study 'no-such-study'; shipped studies: ckplus-five-models" in err
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_a_missing_dataset_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERBENCH_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    assert reproduce_cli.main(["fer2013-4conv-cnn", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "FER2013 not found" in err and "--scale smoke" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["fer2013-cnn-vs-resnet18", "--data-dir", str(tmp_path / "data"),
            "--checkpoint-dir", str(tmp_path / "checkpoints"), "--out", str(tmp_path / "out")]
    assert reproduce_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "starts resnet18 from the checkpoint resnet18-f37072fd.pth, which is not in" in err
    assert "\n" not in err and not (tmp_path / "out").exists()


def _fake_worker(spec, on_line):
    """An ok record the way the worker writes one, without training: predictions drawn
    from the prepared test labels, right about half the time."""
    with np.load(spec.prepared_data) as data:
        labels = data["y_test"]
    names = spec.data_info["class_names"]
    rng = np.random.default_rng(spec.train.seed)
    predicted = np.where(rng.random(len(labels)) < 0.5, labels,
                         rng.integers(0, len(names), len(labels)))
    probabilities = np.full((len(labels), len(names)), 0.1)
    probabilities[np.arange(len(labels)), predicted] = 0.9
    probabilities /= probabilities.sum(1, keepdims=True)
    return {**record_header(spec), "status": "ok", "error": None,
            "metrics": classification_metrics(labels, probabilities, names),
            "selection": {"best_val_accuracy": 0.5, "best_val_loss": 1.0},
            "timing": {"train_wall_s": 1.0, "eval_wall_s": 0.1},
            "env": {"device": "cpu", "cpu": "test CPU"}}


def test_smoke_runs_the_spec_through_the_grid_driver_and_resumes(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setattr(executors, "run_in_worker", _fake_worker)
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["fer2013-four-class", "--scale", "smoke", "--out", str(out), "--threads", "1"]
    assert reproduce_cli.main(argv) == 0
    (study_folder,) = out.iterdir()
    assert study_folder.name.endswith("reproduce-fer2013-four-class-smoke")
    (group,) = study_folder.iterdir()
    records = read_records(group)
    assert sorted(r["backend"] for r in records) == ["tf", "torch"]
    for record in records:
        assert record["data"]["class_names"] == ["anger", "happiness", "sadness", "neutral"]
        assert record["data"]["selection"]["test_per_class"] == 4
        assert record["config"]["epochs"] == 1 and record["recipe"]["text"].startswith("#")
    kept = json.loads((group / PUBLISHED_FILE).read_text())
    assert kept["study"] == "fer2013-four-class" and kept["scale"] == "smoke"
    page = (group / "report.html").read_text()
    assert "Published vs measured" in page and "machinery check" in page
    assert 'id="study"' not in page  # no hyper-parameter study: nothing was chosen
    out_text = capsys.readouterr().out
    assert "Published vs measured" in out_text and "within the interval" not in out_text
    # Resumed: nothing left to run, nothing run again, exit 0.
    before = (group / "results.jsonl").read_bytes()
    assert reproduce_cli.main([*argv, "--resume", str(study_folder)]) == 0
    assert (group / "results.jsonl").read_bytes() == before
    # At the other scale the folder is refused.
    assert reproduce_cli.main(["fer2013-four-class", "--scale", "full",
                               "--resume", str(study_folder)]) == 2
    assert "not fer2013-four-class at --scale full" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_of_a_study_trains_in_real_workers(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert reproduce_cli.main(["fer2013-4conv-cnn", "--scale", "smoke", "--out", str(out),
                               "--threads", "1"]) == 0
    (study_folder,) = out.iterdir()
    (group,) = study_folder.iterdir()
    records = read_records(group)
    assert {r["status"] for r in records} == {"ok"} and len(records) == 2
    assert "Published vs measured" in (group / "report.html").read_text()
