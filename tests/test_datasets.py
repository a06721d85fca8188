"""Dataset loaders on fixtures written in each real layout, traps included (docs/datasets.md).

Every fixture comes from datasets.fixtures, which draws synthetic faces and returns the
ground truth; the loaders must recover it exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import datasets.preprocess
from benchmarks import run as run_cli
from benchmarks.record.store import read_records
from benchmarks.runner import launch
from benchmarks.runner.config import record_header
from benchmarks.runner.data import prepare_data
from datasets import (
    DatasetFormatError,
    DatasetNotFoundError,
    dataset_split,
    fixtures,
    load_dataset,
)
from datasets import __main__ as describe_cli
from datasets.preprocess import FaceFinder, centre_square
from datasets.splits import holdout_split, kfold_split, merge_groups, official_split

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


_HAAR_CASCADE = datasets.preprocess._cascade_path()


@pytest.fixture(scope="module", autouse=True)
def centre_crops_only():
    """Ground-truth checks need the crop the fixtures planned: the centred square.

    With a Haar cascade available, the detector finds the drawn faces and crops them
    tighter than that square (test_haar_finds_the_drawn_faces checks the detector).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.preprocess, "_cascade_path", lambda: None)
        yield


@pytest.mark.skipif(_HAAR_CASCADE is None, reason="this OpenCV has no Haar cascade")
def test_haar_finds_the_drawn_faces(monkeypatch):
    from datasets.fixtures import _portrait
    from datasets.synthetic import generate

    monkeypatch.setattr(datasets.preprocess, "_cascade_path", lambda: _HAAR_CASCADE)
    finder = FaceFinder()
    faces = generate(num_subjects=4, per_expression=1, seed=0, image_size=96).images[..., 0]
    rng = np.random.default_rng(0)
    fx, fy, fside = centre_square(490, 640)  # where _portrait puts the face
    for face in faces[:8]:
        (x, y, side), found = finder.box(_portrait(face, 640, 490, rng, colour=False))
        assert found
        overlap_w = max(0, min(x + side, fx + fside) - max(x, fx))
        overlap_h = max(0, min(y + side, fy + fside) - max(y, fy))
        assert overlap_w * overlap_h > 0.5 * side * side  # the box lies on the drawn face


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Writes each layout once for the module: name → (dataset name, Truth)."""
    def folder(name):
        return tmp_path_factory.mktemp(name) / "data"
    return {
        "ck48": ("ck+", fixtures.write_ckplus48(folder("ck48"))),
        "ck_flat": ("ck+", fixtures.write_ckplus_original(folder("ck_flat"))),
        "ck_nested": ("ck+", fixtures.write_ckplus_original(folder("ck_nested"), nested=True)),
        "fer_csv": ("fer2013", fixtures.write_fer2013_csv(folder("fer_csv"))),
        "fer_csv_spaces": ("fer2013", fixtures.write_fer2013_csv(
            folder("fer_spaces"), columns=("emotion", " pixels", " Usage"))),
        "fer_csv_icml": ("fer2013", fixtures.write_fer2013_csv(
            folder("fer_icml"), columns=("emotion", " Usage", " pixels"),
            file_name="icml_face_data.csv")),
        "fer_folders": ("fer2013", fixtures.write_fer2013_folders(folder("fer_folders"))),
        "kdef": ("kdef", fixtures.write_kdef(folder("kdef"), angles=("S", "HL"))),
        "natural": ("natural_faces", fixtures.write_natural_faces(folder("nat"), per_class=6)),
        "natural_split": ("natural_faces", fixtures.write_natural_faces(
            folder("nat_split"), per_class=12, split_folders=True)),
    }


def _assert_recovers(dataset, truth: fixtures.Truth, max_mean_abs_diff: float) -> None:
    ids = dataset.ids.tolist()
    assert sorted(ids) == sorted(truth.labels)
    assert dataset.class_names == truth.class_names
    assert [dataset.class_names[k] for k in dataset.labels] == [truth.labels[i] for i in ids]
    if truth.subjects is None:
        assert dataset.subjects is None
    else:
        assert dataset.subjects.tolist() == [truth.subjects[i] for i in ids]
    if truth.parts is None:
        assert dataset.official_split is None
    else:
        assert dataset.official_split.tolist() == [truth.parts[i] for i in ids]
    assert {s["path"]: s["reason"] for s in dataset.skipped}.keys() == truth.skipped.keys()
    for entry in dataset.skipped:
        assert truth.skipped[entry["path"]] in entry["reason"]
    assert dataset.duplicates == truth.duplicates
    assert dataset.images.shape[1:] == (48, 48, 1)
    drawn = np.stack([truth.faces[i] for i in ids]).astype(np.int16)
    mean_abs_diff = np.abs(dataset.images[..., 0] - drawn).mean(axis=(1, 2))
    assert mean_abs_diff.max() <= max_mean_abs_diff


# Lossless 48×48 sources come back exactly; JPEG, and crops of enlarged faces, nearly.
@pytest.mark.parametrize("layout, max_mean_abs_diff", [
    ("ck48", 0), ("ck_flat", 3), ("ck_nested", 3), ("fer_csv", 0), ("fer_csv_spaces", 0),
    ("fer_csv_icml", 0), ("fer_folders", 3), ("natural", 4), ("natural_split", 4),
])
def test_loader_recovers_the_ground_truth(written, cache_dir, layout, max_mean_abs_diff):
    name, truth = written[layout]
    dataset = load_dataset(name, truth.root, cache_dir=cache_dir)
    _assert_recovers(dataset, truth, max_mean_abs_diff)


def test_kdef_frontal_by_default_all_angles_on_request(written, cache_dir):
    _, truth = written["kdef"]
    frontal = load_dataset("kdef", truth.root, cache_dir=cache_dir)
    _assert_recovers(frontal, truth.only(i for i, a in truth.angles.items() if a == "S"), 3)
    assert frontal.source["other_angles_left_out"] > 0
    every = load_dataset("kdef", truth.root, cache_dir=cache_dir, kdef_angles="all")
    _assert_recovers(every, truth, 3)
    assert set(every.subjects.tolist()) == {"F01", "M01", "F02", "M02"}  # A and B sessions


def test_ckplus_original_uses_labelled_sequences_and_counts_crops(written, cache_dir):
    _, truth = written["ck_nested"]
    dataset = load_dataset("ck+", truth.root, cache_dir=cache_dir)
    assert dataset.source["unlabelled_sequences"] == 2 * len(set(truth.subjects.values()))
    crops = dataset.preprocessing
    assert crops["faces_found"] + crops["centre_crop_fallbacks"] == len(dataset)


def test_official_split_drops_the_training_copy_of_a_straddling_duplicate(written, cache_dir):
    for layout in ("fer_csv", "fer_folders"):
        _, truth = written[layout]
        dataset = load_dataset("fer2013", truth.root, cache_dir=cache_dir)
        split = dataset_split(dataset)
        assert set(dataset.ids[split.dropped].tolist()) == truth.dropped
        expected_test = {i for i, part in truth.parts.items() if part == "test"}
        assert set(dataset.ids[split.test].tolist()) == expected_test


def _assert_no_group_straddles(split, *labelings) -> None:
    part_of = {}
    for part in ("train", "val", "test"):
        for index in getattr(split, part):
            assert index not in part_of, "an image is in two parts"
            part_of[index] = part
    for labels in labelings:
        if labels is None:
            continue
        sides: dict = {}
        for index, part in part_of.items():
            sides.setdefault(labels[index], set()).add(part)
        assert all(len(parts) == 1 for parts in sides.values())


def test_no_subject_or_duplicate_group_straddles_any_split():
    """Property test over seeds, fold counts, and data with and without subjects."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(150, 300))
        labels = rng.integers(0, 4, n)
        subjects = rng.integers(0, 25, n).astype(str)
        duplicates = np.arange(n)
        copies = rng.choice(n, 30, replace=False)
        duplicates[copies[:15]] = copies[15:]  # 15 images duplicate another …
        subjects[copies[2:15]] = subjects[copies[17:]]  # … mostly of the same subject
        for subject_ids in (subjects, None):
            groups = merge_groups(subject_ids, duplicates)
            stratify = subject_ids is None
            split = holdout_split(labels, groups, seed=seed, stratify=stratify)
            _assert_no_group_straddles(split, subject_ids, duplicates)
            assert len(split.train) + len(split.val) + len(split.test) == n
            for folds in (2, 3, 5, 10):
                tests = []
                for fold in range(folds):
                    split = kfold_split(labels, groups, folds, fold, seed=seed,
                                        stratify=stratify)
                    _assert_no_group_straddles(split, subject_ids, duplicates)
                    tests.append(split.test)
                assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(n))
        parts = rng.choice(["train", "val", "test"], n)
        split = official_split(parts, labels, merge_groups(duplicates))
        _assert_no_group_straddles(split, duplicates)
        kept = np.concatenate([split.train, split.val, split.test, split.dropped])
        assert np.array_equal(np.sort(kept), np.arange(n))


def test_loaded_duplicates_and_subjects_never_straddle(written, cache_dir):
    for layout in ("natural_split", "fer_csv", "ck_flat"):
        name, truth = written[layout]
        dataset = load_dataset(name, truth.root, cache_dir=cache_dir)
        splits = [dataset_split(dataset, seed=1)]
        splits += [dataset_split(dataset, 3, fold, seed=2) for fold in range(3)]
        for split in splits:
            _assert_no_group_straddles(split, dataset.subjects, dataset.duplicate_groups)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def test_nothing_is_written_inside_the_dataset_folder(written, tmp_path, capsys):
    for layout in ("ck_nested", "fer_csv", "kdef", "natural_split"):
        name, truth = written[layout]
        before = _tree(truth.root)
        dataset = load_dataset(name, truth.root, cache_dir=tmp_path / "cache")
        load_dataset(name, truth.root, cache_dir=tmp_path / "cache")
        prepare_data(dataset, split_seed=0, cache_dir=tmp_path / "cache")
        assert describe_cli.main(["describe", "--dataset", name, "--data-dir", str(truth.root),
                                  "--cache-dir", str(tmp_path / "cache")]) == 0
        assert _tree(truth.root) == before
    with pytest.raises(ValueError, match="inside the dataset folder"):
        load_dataset(name, truth.root, cache_dir=truth.root / "cache")


def test_second_load_reads_the_cache_and_changes_invalidate_it(tmp_path, monkeypatch):
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3)
    first = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    decoded = []
    import datasets.folders
    real_decode = datasets.folders.decode_gray
    monkeypatch.setattr(datasets.folders, "decode_gray",
                        lambda path: decoded.append(path) or real_decode(path))
    again = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    assert decoded == [] and again.fingerprint() == first.fingerprint()
    assert again.skipped == first.skipped and again.source["layout"] == first.source["layout"]
    touched = truth.root / next(iter(truth.labels))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    assert len(decoded) == len(truth.labels) + len(truth.skipped) - 1  # all but the misnamed
    decoded.clear()
    smaller = load_dataset("ck+", truth.root, image_size=32, cache_dir=tmp_path / "cache")
    assert decoded and smaller.images.shape[1:] == (32, 32, 1)


def test_missing_folder_is_a_one_line_error_saying_what_and_where(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for name, hint in (("ck+", "CK+48"), ("fer2013", "kaggle"), ("kdef", "kdef.se"),
                       ("natural_faces", "sudarshanvaidya")):
        with pytest.raises(DatasetNotFoundError) as error:
            load_dataset(name, missing, cache_dir=tmp_path / "cache")
        assert "\n" not in str(error.value) and hint in str(error.value)
        assert str(missing) in str(error.value)
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(DatasetNotFoundError, match="expected"):
            load_dataset(name, tmp_path / "empty", cache_dir=tmp_path / "cache")
    assert describe_cli.main(["describe", "--dataset", "kdef", "--data-dir", str(missing)]) == 2
    assert run_cli.main(["--dataset", "kdef", "--data-dir", str(missing),
                         "--backend", "torch"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: KDEF not found") for line in errors)


def test_corrupt_images_are_skipped_counted_and_listed(tmp_path):
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3, traps=False)
    broken = truth.root / "CK+48/fear/S100_004_00000099.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (truth.root / "CK+48/fear/S100_004_00000098.png").write_bytes(b"")
    dataset = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    reasons = {Path(s["path"]).name: s["reason"] for s in dataset.skipped}
    assert reasons == {"S100_004_00000099.png": "not a decodable image",
                       "S100_004_00000098.png": "empty file"}
    assert len(dataset) == len(truth.labels)
    _, info = prepare_data(dataset, split_seed=0, cache_dir=tmp_path / "cache")
    assert info["skipped_files"] == 2 and len(info["skipped"]) == 2


def _csv(tmp_path: Path, header: str, rows: list[str]) -> Path:
    root = tmp_path / "fer"
    root.mkdir()
    (root / "fer2013.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def _row(label="3", pixels=None, usage="Training") -> str:
    pixels = " ".join(["7", "8"] * 1152) if pixels is None else pixels
    return f"{label},{pixels},{usage}"


@pytest.mark.parametrize("header, rows, message", [
    ("label,pixels,Usage", [_row()], "expected columns emotion, pixels, Usage"),
    ("emotion,pixels,Usage", [_row(), _row(), _row(pixels="1 2 3")],
     "row 3 (line 4): pixels holds 3 values, expected 2304"),
    ("emotion,pixels,Usage", [_row(), _row(pixels="300" + " 1" * 2303)],
     "row 2 (line 3): pixel value '300'"),
    ("emotion,pixels,Usage", [_row(label="9")], "row 1 (line 2): emotion '9'"),
    ("emotion,pixels,Usage", [_row(), _row(usage="Validation")], "row 2 (line 3): Usage"),
    ("emotion,pixels,Usage", [_row(), "3,1 2"], "row 2 (line 3): 2 fields, expected 3"),
])
def test_malformed_csv_names_the_problem_and_row(tmp_path, header, rows, message):
    root = _csv(tmp_path, header, rows)
    with pytest.raises(DatasetFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset("fer2013", root, cache_dir=tmp_path / "cache")


def test_prepared_file_and_data_info_name_the_protocol(written, tmp_path):
    name, truth = written["ck_flat"]
    dataset = load_dataset(name, truth.root, cache_dir=tmp_path / "cache")
    paths = set()
    for fold in range(3):
        path, info = prepare_data(dataset, 0, tmp_path / "cache", folds=3, fold=fold)
        assert f"kfold3-fold{fold}-seed0" in path.name and info["fold"] == fold
        assert info["protocol"] == f"3-fold subject-independent, fold {fold}"
        paths.add(path)
    assert len(paths) == 3
    holdout, info = prepare_data(dataset, 0, tmp_path / "cache")
    assert "holdout-seed0" in holdout.name and info["subjects"] == 4
    _, truth = written["fer_csv"]
    fer = load_dataset("fer2013", truth.root, cache_dir=tmp_path / "cache")
    official, info = prepare_data(fer, 0, tmp_path / "cache")
    assert official.name.endswith("-official.npz")
    assert info["duplicates"] == 2 and info["duplicates_dropped"] == 1
    assert info["skipped"] == fer.skipped


def test_describe_prints_counts_per_class_split_and_fold(written, tmp_path, capsys):
    name, truth = written["kdef"]
    args = ["describe", "--dataset", name, "--data-dir", str(truth.root),
            "--cache-dir", str(tmp_path / "cache")]
    assert describe_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "4 subjects" in out and "split: holdout (subject-independent)" in out
    assert "KDEF/AM01/AM01NE.JPG: name does not follow" in out
    assert describe_cli.main([*args, "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert "fold 0" in out and "fold 1" in out and "2-fold subject-independent" in out


def test_run_cli_runs_each_fold_in_its_own_worker_and_summarises(written, tmp_path,
                                                                 monkeypatch, capsys):
    _, truth = written["ck_flat"]
    specs = []

    def fake_worker(spec, on_line):
        specs.append(spec)
        accuracy = 0.5 + 0.1 * spec.fold
        return {**record_header(spec), "status": "ok", "error": None,
                "metrics": {"accuracy": accuracy}}

    monkeypatch.setattr(launch, "run_in_worker", fake_worker)
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["--dataset", "ck+", "--data-dir", str(truth.root), "--backend", "both",
            "--models", "proposed_cnn", "--folds", "3", "--batch-size", "8",
            "--out", str(tmp_path / "reports")]
    assert run_cli.main(argv) == 0
    assert sorted((s.fold, s.backend) for s in specs) == [
        (f, b) for f in range(3) for b in ("tf", "torch")]
    assert len({s.prepared_data for s in specs}) == 3
    assert "proposed_cnn  tf           3  0.600 ± 0.100" in capsys.readouterr().out
    specs.clear()
    assert run_cli.main([*argv, "--fold", "1"]) == 0
    assert {s.fold for s in specs} == {1}
    for bad in (["--fold", "1"], ["--folds", "1"], ["--folds", "3", "--fold", "3"]):
        assert run_cli.main(["--dataset", "ck+", "--data-dir", str(truth.root), *bad]) == 2


def test_face_finder_maps_a_detection_back_and_falls_back_to_the_centre():
    finder = FaceFinder()
    gray = np.zeros((490, 640), np.uint8)
    finder.cascade_path = None
    assert finder.box(gray) == (centre_square(490, 640), False)

    class FakeCascade:
        def detectMultiScale(self, image, **options):  # noqa: N802 (OpenCV's name)
            assert min(image.shape) == 240  # detection runs on a reduced copy
            return np.array([[10, 20, 60, 60], [100, 50, 90, 90]])

    finder.cascade_path = Path("fake.xml")
    finder._local.cascade = FakeCascade()
    (x, y, side), found = finder.box(gray)
    scale = 490 / 240
    assert found and (x, y) == (int(100 * scale), int(50 * scale))
    assert side == round(90 * scale)


@pytest.mark.slow
def test_kfold_runs_end_to_end_in_real_workers(written, tmp_path, monkeypatch, capsys):
    _, truth = written["ck_flat"]
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["--dataset", "ck+", "--data-dir", str(truth.root), "--backend", "torch",
            "--models", "proposed_cnn", "--epochs", "1", "--folds", "2", "--batch-size", "8",
            "--out", str(tmp_path / "reports")]
    assert run_cli.main(argv) == 0
    records = read_records(next((tmp_path / "reports").iterdir()))
    assert sorted(r["fold"] for r in records) == [0, 1]
    assert all(r["data"]["protocol"].startswith("2-fold subject-independent") for r in records)
    assert "accuracy (mean ± std over folds)" in capsys.readouterr().out
