"""Loaders against hostile folders: files that crash, hang or mislead a naive loader.

Each test writes a small fixture with datasets.fixtures, adds one trap (an oversized
picture, a FIFO, a dangling link, a name that is not UTF-8, another dataset's folder, a
damaged cache file) and checks that the file is skipped and listed with its reason, the
folder refused with a one-line message naming the fix, or the damaged file rebuilt.
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import datasets.folders
import datasets.preprocess
from benchmarks import run as run_cli
from benchmarks.runner.data import prepare_data
from datasets import (
    DATASET_NAMES,
    WrongDatasetError,
    cache,
    check_dataset_name,
    fixtures,
    load_dataset,
)
from datasets import __main__ as describe_cli
from datasets.folders import SourceFile
from datasets.preprocess import MAX_IMAGE_PIXELS

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


@pytest.fixture(scope="module")
def ck48(tmp_path_factory) -> fixtures.Truth:
    """A small clean CK+48 folder, shared read-only by the tests that do not alter it."""
    return fixtures.write_ckplus48(tmp_path_factory.mktemp("ck48") / "data", num_subjects=3,
                                   traps=False)


def _skipped(dataset) -> dict[str, str]:
    return {entry["path"]: entry["reason"] for entry in dataset.skipped}


def _counting_decodes(monkeypatch) -> list[Path]:
    """Records every file decode_gray is asked to decode from now on."""
    decoded: list[Path] = []
    real = datasets.folders.decode_gray
    monkeypatch.setattr(datasets.folders, "decode_gray",
                        lambda path: decoded.append(path) or real(path))
    return decoded


# Item 1: a picture whose header states more pixels than the budget.

@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_oversized_image_is_skipped_naming_the_pixel_budget(tmp_path, capsys):
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3, traps=False)
    gigapixel = "CK+48/anger/S100_001_00000099.png"
    just_over = "CK+48/fear/S100_004_00000099.png"
    fixtures.write_oversized_png(truth.root / gigapixel, 40_000, 40_000)
    fixtures.write_oversized_png(truth.root / just_over, 10_000, 9_000)
    assert (truth.root / gigapixel).stat().st_size < 1_000  # 1.6 gigapixels in a few bytes
    dataset = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    assert len(dataset) == len(truth.labels)
    skipped = _skipped(dataset)
    assert skipped.keys() == {gigapixel, just_over}
    budget = f"the pixel budget is {MAX_IMAGE_PIXELS:,}"
    assert skipped[gigapixel].startswith("image too large") and budget in skipped[gigapixel]
    assert skipped[just_over] == (f"image too large: 10000×9000 = 90,000,000 pixels; {budget} "
                                  "(MAX_IMAGE_PIXELS)")
    assert describe_cli.main(["describe", "--dataset", "ck+", "--data-dir", str(truth.root),
                              "--cache-dir", str(tmp_path / "cache")]) == 0
    assert f"{gigapixel}: image too large" in capsys.readouterr().out


def test_an_opencv_decode_error_is_a_skip_not_a_crash(tmp_path, monkeypatch):
    """Past the header check (a header Pillow cannot read), OpenCV's own refusal is a skip."""
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3, traps=False)
    huge = "CK+48/anger/S100_001_00000099.png"
    fixtures.write_oversized_png(truth.root / huge, 40_000, 40_000)
    monkeypatch.setattr(datasets.preprocess, "_check_pixel_budget", lambda data: None)
    dataset = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    assert _skipped(dataset)[huge].startswith("not a decodable image (OpenCV: ")
    assert len(dataset) == len(truth.labels)


# Item 2: a FIFO, which blocks whoever opens it for reading.

@pytest.fixture
def fifo_guard():
    """Makes FIFOs harmless to a test: a reader blocked on one is fed end-of-file.

    Without the fix a load blocks forever on the FIFO; with this guard it gets an empty
    read instead and the test fails on its assertions rather than hanging.
    """
    fifos: list[Path] = []
    done = threading.Event()

    def unblock() -> None:
        while not done.wait(0.2):
            for fifo in fifos:
                try:  # opening the write end succeeds only while a reader waits
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    continue  # no reader waiting (ENXIO): nothing to unblock
    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    yield fifos
    done.set()
    thread.join()


def test_a_fifo_is_skipped_as_not_a_regular_file(tmp_path, fifo_guard):
    natural = fixtures.write_natural_faces(tmp_path / "nat", per_class=6, traps=False)
    fer = fixtures.write_fer2013_csv(tmp_path / "fer", traps=False)
    for root, name in ((natural.root, "anger/x.png"), (fer.root, "extra.csv")):
        os.mkfifo(root / name)
        fifo_guard.append(root / name)
    dataset = load_dataset("natural_faces", natural.root, cache_dir=tmp_path / "cache")
    assert _skipped(dataset) == {
        "anger/x.png": "not a regular file (a FIFO, socket or device is never read)"}
    assert len(dataset) == len(natural.labels)
    dataset = load_dataset("fer2013", fer.root, cache_dir=tmp_path / "cache")  # reads CSVs
    assert "not a regular file" in _skipped(dataset)["extra.csv"]
    assert len(dataset) == len(fer.labels)


# Item 5: names that are not UTF-8 and dangling links.

def _bytes_name(folder: Path, name: bytes, content: bytes) -> None:
    """Writes `content` under a raw bytes name, or skips where the file system refuses it."""
    try:
        with open(os.fsencode(folder) + b"/" + name, "wb") as handle:
            handle.write(content)
    except OSError as error:  # e.g. EILSEQ on file systems that enforce UTF-8 names
        pytest.skip(f"this file system refuses non-UTF-8 names: {error}")


def test_names_that_are_not_utf8_are_skipped_and_listed(tmp_path, capsys):
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3, traps=False)
    png = (truth.root / next(iter(truth.labels))).read_bytes()
    _bytes_name(truth.root / "CK+48", b"notes\xff.txt", b"a note")
    _bytes_name(truth.root / "CK+48/anger", b"S100_001_0000009\xe9.png", png)
    dataset = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    reason = "file name is not valid UTF-8 (rename it)"
    assert _skipped(dataset) == {"CK+48/notes\\xff.txt": reason,
                                 "CK+48/anger/S100_001_0000009\\xe9.png": reason}
    assert len(dataset) == len(truth.labels)
    assert describe_cli.main(["describe", "--dataset", "ck+", "--data-dir", str(truth.root),
                              "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "CK+48/notes\\xff.txt: file name is not valid UTF-8" in capsys.readouterr().out


def test_the_cache_key_takes_any_file_name():
    odd = SourceFile("CK+48/notes\udcff.txt", 6, 1)  # how os.walk returns byte 0xff
    plain = SourceFile("CK+48/notes.txt", 6, 1)
    keys = {cache.cache_key("ck+", [file], {}) for file in (odd, plain)}
    assert len(keys) == 2 and all(len(key) == 24 for key in keys)


def test_a_dangling_link_is_skipped_and_a_live_link_is_read(tmp_path):
    truth = fixtures.write_ckplus48(tmp_path / "ck", num_subjects=3, traps=False)
    dangling = "CK+48/anger/S100_001_00000095.png"
    os.symlink(tmp_path / "gone.png", truth.root / dangling)
    live = "CK+48/anger/S100_001_00000094.png"  # a second name for an image: a duplicate
    os.symlink(truth.root / next(p for p in truth.labels if "/anger/" in p), truth.root / live)
    dataset = load_dataset("ck+", truth.root, cache_dir=tmp_path / "cache")
    assert _skipped(dataset) == {dangling: f"dangling symbolic link (to {tmp_path / 'gone.png'})"}
    assert len(dataset) == len(truth.labels) + 1 and live in dataset.ids.tolist()
    assert dataset.duplicates == 1


# Item 6: another dataset's folder under the wrong name.

def _kdef(root: Path) -> fixtures.Truth:
    return fixtures.write_kdef(root, num_people=2, angles=("S",), traps=False)


@pytest.mark.parametrize("write, given, looks_like, fix", [
    (fixtures.write_ckplus48, "fer2013", "CK+48 (", "ck+"),
    (fixtures.write_ckplus48, "natural_faces", "CK+48 (", "ck+"),
    (fixtures.write_fer2013_folders, "natural_faces", "FER2013's class folders (", "fer2013"),
    (fixtures.write_fer2013_folders, "ck+", "FER2013's class folders (", "fer2013"),
    (fixtures.write_natural_faces, "ck+", "Natural Human Face Images (", "natural_faces"),
    (fixtures.write_natural_faces, "fer2013", "Natural Human Face Images (", "natural_faces"),
    (fixtures.write_fer2013_csv, "kdef", "FER2013's CSV (fer2013.csv)", "fer2013"),
    (_kdef, "natural_faces", "KDEF (28 pictures named like AF01ANS.JPG)", "kdef"),
    (fixtures.write_ckplus_original, "kdef", "the original CK+ trees (", "ck+"),
])
def test_another_datasets_folder_is_refused_naming_it_and_the_fix(tmp_path, write, given,
                                                                   looks_like, fix):
    root = write(tmp_path / "data").root
    with pytest.raises(WrongDatasetError) as error:
        load_dataset(given, root, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{root} does not hold ")
    assert "expected" in message and f"it looks like {looks_like}" in message
    assert message.endswith(f"instead: pass --dataset {fix}")
    assert not (tmp_path / "cache").exists()  # refused before the cache is written


def test_the_clis_refuse_a_wrong_folder_with_status_2_writing_nothing(ck48, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    assert describe_cli.main(["describe", "--dataset", "fer2013",
                              "--data-dir", str(ck48.root)]) == 2
    assert run_cli.main(["--dataset", "natural_faces", "--data-dir", str(ck48.root),
                         "--backend", "torch", "--models", "proposed_cnn",
                         "--out", str(tmp_path / "reports")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert all(line.startswith(f"error: {ck48.root} does not hold ") for line in errors)
    assert all("looks like CK+48 (63 images in 7 emotion folders: anger, contempt, disgust, "
               "fear, happy, sadness, surprise) instead: pass --dataset ck+" in line
               for line in errors)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "cache").exists()


# Item 9: damaged cache files are rebuilt, never trusted.

def test_a_damaged_prepared_file_is_rebuilt_and_a_sound_one_reused(ck48, tmp_path):
    dataset = load_dataset("ck+", ck48.root, cache_dir=tmp_path / "cache")
    path, _ = prepare_data(dataset, 0, tmp_path / "cache")
    with np.load(path) as data:
        sound = {key: data[key] for key in data.files}
    written = path.stat()
    assert prepare_data(dataset, 0, tmp_path / "cache")[0] == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino,
                                                            written.st_mtime_ns)
    raw = path.read_bytes()
    middle = bytearray(raw)
    middle[len(raw) // 2] ^= 0xFF  # one byte inside the arrays altered
    for damaged in (raw[: len(raw) // 2], bytes(middle), b""):
        path.write_bytes(damaged)
        assert prepare_data(dataset, 0, tmp_path / "cache")[0] == path
        with np.load(path) as data:
            assert data.files == list(sound)
            assert all(np.array_equal(data[key], value) for key, value in sound.items())


def _rewrite_zip(path: Path, change) -> None:
    """Rewrites the zip at `path` with `change(name, data) -> data` applied to each member."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, change(name, data))


def test_a_damaged_dataset_cache_is_rebuilt(ck48, tmp_path, monkeypatch):
    first = load_dataset("ck+", ck48.root, cache_dir=tmp_path / "cache")
    cached = Path(first.source["cache_file"])
    sound = cached.read_bytes()
    decoded = _counting_decodes(monkeypatch)

    def short_images(name: str, data: bytes) -> bytes:  # CRCs stay valid, bytes go missing
        return zlib.compress(zlib.decompress(data)[:-48]) if name == "images.0.zz" else data

    damages = {
        "truncated": lambda: cached.write_bytes(sound[: len(sound) // 2]),
        "a chunk short of its array": lambda: _rewrite_zip(cached, short_images),
    }
    for what, damage in damages.items():
        cached.write_bytes(sound)
        damage()
        decoded.clear()
        again = load_dataset("ck+", ck48.root, cache_dir=tmp_path / "cache")
        assert len(decoded) == len(ck48.labels), what  # decoded again, not trusted
        assert again.fingerprint() == first.fingerprint(), what


# Item 12 (part): the spelling users type.

def test_natural_faces_is_also_taken_spelt_with_a_hyphen(tmp_path, capsys):
    assert check_dataset_name("natural-faces") == "natural_faces"
    truth = fixtures.write_natural_faces(tmp_path / "nat", per_class=6, traps=False)
    dataset = load_dataset(check_dataset_name("natural-faces"), truth.root,
                           cache_dir=tmp_path / "cache")
    assert dataset.name == "natural_faces" and len(dataset) == len(truth.labels)
    assert Path(dataset.source["cache_file"]).name.startswith("natural_faces-")
    assert describe_cli.main(["describe", "--dataset", "natural-faces", "--data-dir",
                              str(truth.root), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.startswith("natural_faces: 48 images")
    with pytest.raises(ValueError, match="natural-faces for natural_faces") as error:
        check_dataset_name("natural faces")
    assert all(name in str(error.value) for name in DATASET_NAMES)
