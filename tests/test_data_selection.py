"""Class subsets, balanced per-class draws and FER2013's PublicTest as the test part
(datasets/selection.py), on fixtures written in the real on-disk formats."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import datasets.preprocess
from benchmarks import run as run_cli
from benchmarks.record.store import read_records
from benchmarks.runner import launch
from benchmarks.runner.config import record_header
from benchmarks.runner.data import prepare_data
from datasets import __main__ as describe_cli
from datasets import dataset_split, fixtures, load_dataset
from datasets.selection import (
    DataSelection,
    canonical_classes,
    select_classes,
    selected_split,
)

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")

FOUR = "angry,happy,sad,neutral"
FOUR_CANONICAL = ["anger", "happiness", "sadness", "neutral"]
# 20 training, 10 PublicTest and 10 PrivateTest rows a class, on average.
USAGE_COUNTS = {"Training": 140, "PublicTest": 70, "PrivateTest": 70}


@pytest.fixture(scope="module", autouse=True)
def centre_crops_only():
    """The CK+ fixture's faces are where the centred crop looks (as in test_datasets)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.preprocess, "_cascade_path", lambda: None)
        yield


@pytest.fixture(scope="module")
def fer(tmp_path_factory):
    """layout → (Truth, FaceDataset) of FER2013 as the CSV and as Kaggle's folders."""
    cache = tmp_path_factory.mktemp("cache")
    written = {
        "csv": fixtures.write_fer2013_csv(tmp_path_factory.mktemp("csv") / "data",
                                          usage_counts=USAGE_COUNTS),
        "folders": fixtures.write_fer2013_folders(tmp_path_factory.mktemp("folders") / "data",
                                                  usage_counts=USAGE_COUNTS),
    }
    return {layout: (truth, load_dataset("fer2013", truth.root, cache_dir=cache))
            for layout, truth in written.items()}


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_a_class_subset_keeps_those_images_relabelled_in_the_order_given(fer, layout):
    truth, dataset = fer[layout]
    subset = select_classes(dataset, canonical_classes(FOUR))
    assert subset.class_names == FOUR_CANONICAL
    ids = subset.ids.tolist()
    expected = {i for i, emotion in truth.labels.items() if emotion in FOUR_CANONICAL}
    assert set(ids) == expected and len(ids) == len(expected)
    # Label k is the k-th class named, whatever FER2013's own id for it (angry is 0,
    # neutral 6 there).
    assert [FOUR_CANONICAL[k] for k in subset.labels] == [truth.labels[i] for i in ids]
    assert subset.official_split.tolist() == [truth.parts[i] for i in ids]
    recorded = subset.source["class_subset"]
    assert recorded["kept"] == FOUR_CANONICAL and len(recorded["from"]) == 7
    assert recorded["labels"]["neutral"] == {"before": 6, "after": 3}
    # Duplicate groups point at kept images, and no group straddles the official split.
    assert ((subset.duplicate_groups >= 0) & (subset.duplicate_groups < len(subset))).all()
    split = dataset_split(subset)
    sides: dict = {}
    for part in ("train", "val", "test"):
        for index in getattr(split, part):
            sides.setdefault(subset.duplicate_groups[index], set()).add(part)
    assert all(len(parts) == 1 for parts in sides.values())


def test_classes_take_the_usual_words_and_refuse_unknown_repeated_or_absent_ones(fer):
    assert canonical_classes(" Angry , happiness,SAD") == ("anger", "happiness", "sadness")
    for bad, message in ((["joy", "happy"], "unknown class 'joy'; valid classes: neutral"),
                         (["angry", "anger"], "anger named more than once"),
                         (["happy"], "at least two classes")):
        with pytest.raises(ValueError, match=message):
            canonical_classes(bad)
    _, dataset = fer["csv"]
    with pytest.raises(ValueError, match="fer2013 has no class 'contempt'; its classes: anger"):
        select_classes(dataset, ("anger", "contempt"))


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_per_class_draws_are_balanced_seeded_and_leave_validation_alone(fer, layout):
    _, dataset = fer[layout]
    subset = select_classes(dataset, canonical_classes(FOUR))
    whole = selected_split(subset, DataSelection())
    drawn = selected_split(subset, DataSelection(train_per_class=8, test_per_class=4))
    labels = subset.labels
    assert Counter(labels[drawn.train].tolist()) == {k: 8 for k in range(4)}
    assert Counter(labels[drawn.test].tolist()) == {k: 4 for k in range(4)}
    assert set(drawn.train) <= set(whole.train) and set(drawn.test) <= set(whole.test)
    np.testing.assert_array_equal(drawn.val, whole.val)
    assert drawn.tag == "official-train8pc-test4pc-ss0"
    assert "8 training images a class and 4 test images a class (seed 0)" in drawn.protocol
    again = selected_split(subset, DataSelection(train_per_class=8, test_per_class=4))
    np.testing.assert_array_equal(again.train, drawn.train)
    other = selected_split(subset, DataSelection(train_per_class=8, test_per_class=4,
                                                 subsample_seed=1))
    assert set(other.train) != set(drawn.train)
    # The test count moves no training image: each part draws from its own stream.
    fewer = selected_split(subset, DataSelection(train_per_class=8, test_per_class=2))
    np.testing.assert_array_equal(fewer.train, drawn.train)


def test_a_draw_larger_than_a_class_names_the_class_and_the_most_it_can_give(fer):
    _, dataset = fer["csv"]
    smallest = min(Counter(dataset.labels[dataset_split(dataset).test].tolist()).values())
    with pytest.raises(ValueError, match=rf"--test-per-class 500: the test part holds "
                                         rf"\d+ images of class '\w+'; ask for at most "
                                         rf"{smallest} a class"):
        selected_split(dataset, DataSelection(test_per_class=500))


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_public_test_as_the_test_part(fer, layout):
    truth, dataset = fer[layout]
    split = selected_split(dataset, DataSelection(test_part="val"))
    ids = dataset.ids
    public = {i for i, part in truth.parts.items() if part == "val"}
    private = {i for i, part in truth.parts.items() if part == "test"}
    assert set(ids[split.test].tolist()) == public
    used = set(ids[np.concatenate([split.train, split.val, split.test])].tolist())
    assert not used & private  # the official test part takes no role
    assert not set(split.train) & set(split.val)
    assert set(ids[split.val].tolist()) <= {i for i, p in truth.parts.items() if p == "train"}
    assert split.tag == "official-valtest-seed0"
    assert "tested on the official validation part" in split.protocol
    # Every class keeps its share in the carved validation (stratified).
    assert set(dataset.labels[split.val].tolist()) == set(range(len(dataset.class_names)))


def test_the_validation_part_as_test_is_refused_where_it_does_not_exist(tmp_path):
    truth = fixtures.write_ckplus48(tmp_path / "ck")
    ck = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="ck\\+ has no official validation part to test on"):
        selected_split(ck, DataSelection(test_part="val"))
    fer = fixtures.write_fer2013_csv(tmp_path / "fer")
    dataset = load_dataset("fer2013", fer.root, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="k-fold replaces: drop --folds or --test-part"):
        selected_split(dataset, DataSelection(test_part="val"), folds=2, fold=0)


def test_the_prepared_data_records_the_selection(fer, tmp_path):
    _, dataset = fer["csv"]
    selection = DataSelection(classes=FOUR, train_per_class=8, test_per_class=4,
                              test_part="val")
    subset = select_classes(dataset, selection.classes)
    path, info = prepare_data(subset, 0, tmp_path / "cache", selection=selection)
    assert path.name.endswith("-official-valtest-seed0-train8pc-test4pc-ss0.npz")
    assert info["selection"] == {"classes": FOUR_CANONICAL, "train_per_class": 8,
                                 "test_per_class": 4, "test_part": "val",
                                 "subsample_seed": 0}
    assert info["class_names"] == FOUR_CANONICAL
    assert (info["num_train"], info["num_test"]) == (32, 16)
    assert info["source"]["class_subset"]["kept"] == FOUR_CANONICAL
    with np.load(path) as arrays:
        assert sorted(Counter(arrays["y_train"].tolist()).values()) == [8] * 4
        assert arrays["class_names"].tolist() == FOUR_CANONICAL


def test_benchmarks_run_records_the_selection_in_every_run(fer, tmp_path, monkeypatch,
                                                           capsys):
    truth, _ = fer["csv"]
    specs = []

    def fake_worker(spec, on_line):
        specs.append(spec)
        return {**record_header(spec), "status": "ok", "error": None,
                "metrics": {"accuracy": 0.5}}

    monkeypatch.setattr(launch, "run_in_worker", fake_worker)
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["--dataset", "fer2013", "--data-dir", str(truth.root), "--backend", "torch",
            "--models", "proposed_cnn", "--batch-size", "8", "--classes", FOUR,
            "--train-per-class", "8", "--test-per-class", "4", "--test-part", "val",
            "--save-weights", "none", "--no-report", "--out", str(tmp_path / "reports")]
    assert run_cli.main(argv) == 0
    (folder,) = (tmp_path / "reports").iterdir()
    (record,) = read_records(folder)
    assert record["data"]["selection"]["classes"] == FOUR_CANONICAL
    assert record["data"]["class_names"] == FOUR_CANONICAL
    assert record["data"]["split"] == "official-valtest-seed0-train8pc-test4pc-ss0"
    assert "8 training images a class" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--classes", "angry,joy"], "unknown class 'joy'"),
    (["--classes", "angry,contempt"], "fer2013 has no class 'contempt'"),
    (["--train-per-class", "0"], "train_per_class must be an integer ≥ 1"),
    (["--test-per-class", "999"], "--test-per-class 999: the test part holds"),
    (["--test-part", "val", "--folds", "2"], "k-fold replaces"),
])
def test_bad_selections_are_one_line_exit_2_and_write_nothing(fer, tmp_path, monkeypatch,
                                                             capsys, extra, message):
    truth, _ = fer["csv"]
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "reports"
    argv = ["--dataset", "fer2013", "--data-dir", str(truth.root), "--backend", "torch",
            "--models", "proposed_cnn", *extra, "--out", str(out)]
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_describe_shows_the_selected_counts(fer, tmp_path, capsys):
    truth, _ = fer["folders"]
    argv = ["describe", "--dataset", "fer2013", "--data-dir", str(truth.root),
            "--cache-dir", str(tmp_path / "cache"), "--classes", FOUR,
            "--train-per-class", "8", "--test-per-class", "4", "--test-part", "val"]
    assert describe_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 classes" in out and "tested on the official validation part" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["happiness"][0] == "8" and rows["happiness"][2] == "4"
    assert describe_cli.main([*argv, "--classes", "joy,happy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown class 'joy'" in err and "\n" not in err
