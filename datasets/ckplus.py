"""CK+ (extended Cohn-Kanade), in either layout users have (docs/datasets.md).

- Kaggle "CK+48": `{anger,contempt,…,surprise}/S010_004_00000017.png`, 48×48 face crops.
- Original: `cohn-kanade-images/S005/001/S005_001_00000011.png` frames and
  `Emotion/S005/001/S005_001_00000011_emotion.txt` labels (one float code). Copies nest
  these folders differently, so frames and labels are found by file name at any depth.
  Only labelled sequences are used: their last FRAMES_PER_SEQUENCE frames up to the
  labelled (apex) frame, which is what CK+48 holds, so both layouts give the same classes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from datasets.core import EMOTIONS, DatasetFormatError, DatasetNotFoundError, FaceDataset
from datasets.folders import (
    ImageFile,
    SourceFile,
    folder_summary,
    in_class_folders,
    non_images,
    read_image_files,
    skip,
)
from datasets.preprocess import LoadOptions

TITLE = "CK+"
EXPECTED = ("the Kaggle CK+48 folders (anger/, contempt/, … with S010_004_00000017.png) or "
            "the original cohn-kanade-images/ and Emotion/ trees")
GET_IT = ("https://www.jeffcohn.net/Resources/ (original, by agreement) or "
          "https://www.kaggle.com/datasets/shawon10/ckplus (CK+48)")
CK48_FOLDERS = {"anger": "anger", "contempt": "contempt", "disgust": "disgust", "fear": "fear",
                "happy": "happiness", "sadness": "sadness", "surprise": "surprise"}
# The Emotion files' codes 0–7 map onto the canonical names in the same order.
CODES = dict(enumerate(EMOTIONS))
CLASS_ORDER = EMOTIONS
FRAMES_PER_SEQUENCE = 3

_SUBJECT = re.compile(r"^(S\d+)_", re.IGNORECASE)
_FRAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)
_LABEL = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)


def read(root: Path, files: list[SourceFile], options: LoadOptions) -> FaceDataset:
    """Reads CK+ from `root`, whichever layout it holds; subjects are ids like "S005".

    The reader interface of datasets.READERS: `files` is scan(root).
    """
    label_files = [f for f in files if _LABEL.match(f.name)]
    ck48, outside = in_class_folders(files, CK48_FOLDERS)
    if label_files and ck48:
        raise DatasetFormatError(
            f"{root} holds both CK+48 class folders and original Emotion labels; "
            "pass --data-dir pointing at one of them"
        )
    if label_files:
        return _read_original(root, files, label_files, options)
    if ck48:
        return _read_ck48(root, ck48, outside, files, options)
    raise DatasetNotFoundError(
        f"no CK+ images under {root}: expected {EXPECTED}; get it from {GET_IT}"
    )


def recognise(root: Path, files: list[SourceFile]) -> tuple[int, str]:
    """How many of `files` CK+ would read, and what they look like.

    The layout check of datasets.READERS: `files` is scan(root)'s; CK+48 counts only
    images named with a subject id (S010_…), which no other dataset uses.
    """
    labels = sum(1 for file in files if _LABEL.match(file.name))
    if labels:
        frames = sum(1 for file in files if file.is_image and _FRAME.match(file.name))
        return frames, f"the original CK+ trees ({frames} frames, {labels} Emotion label files)"
    ck48, _ = in_class_folders(files, CK48_FOLDERS)
    named = [file for file, _ in ck48 if _SUBJECT.match(file.name)]
    return len(named), f"CK+48 ({folder_summary(named)})"


def _read_ck48(root, ck48, outside, files, options) -> FaceDataset:
    skipped = skip(outside, "not inside a CK+48 class folder (" + ", ".join(CK48_FOLDERS) + ")")
    images = []
    for file, emotion in ck48:
        match = _SUBJECT.match(file.name)
        if match is None:
            skipped.append({"path": file.path,
                            "reason": "name does not start with a subject id (S010_…)"})
        else:
            images.append(ImageFile(file.path, emotion, subject=match.group(1).upper()))
    source = {"layout": "CK+48 class folders", "ignored_non_image_files": non_images(files)}
    return read_image_files("ck+", root, images, CLASS_ORDER, options, crop_faces=False,
                            skipped=skipped, source=source)


def _read_original(root, files, label_files, options) -> FaceDataset:
    skipped: list[dict[str, str]] = []
    frames: dict[tuple[str, int], dict[int, SourceFile]] = defaultdict(dict)
    for file in files:
        match = _FRAME.match(file.name) if file.is_image else None
        if file.is_image and match is None:
            skipped.append({"path": file.path, "reason": "not a CK+ frame name (S005_001_…png)"})
            continue
        if match is None:
            continue
        subject, sequence, frame = match.group(1).upper(), int(match.group(2)), int(match.group(3))
        earlier = frames[subject, sequence].setdefault(frame, file)
        if earlier is not file:  # a second copy of the tree under the same folder
            skipped.append({"path": file.path, "reason": f"another copy of {earlier.path}"})
    labels: dict[tuple[str, int], tuple[int, SourceFile]] = {}
    for file in label_files:
        match = _LABEL.match(file.name)
        key = (match.group(1).upper(), int(match.group(2)))
        code = _read_code(root / file.path)
        if code is None:
            skipped.append({"path": file.path, "reason": "label file holds no emotion code 0–7"})
        elif key not in labels:  # copies of the Emotion tree repeat the same labels
            labels[key] = (code, file)
    images = []
    for key, (code, label_file) in sorted(labels.items()):
        apex = int(_LABEL.match(label_file.name).group(3))
        numbers = sorted(n for n in frames.get(key, {}) if n <= apex)[-FRAMES_PER_SEQUENCE:]
        if not numbers:
            skipped.append({"path": label_file.path, "reason": "no frames for this label"})
        for number in numbers:
            images.append(ImageFile(frames[key][number].path, CODES[code], subject=key[0]))
    source = {
        "layout": "original cohn-kanade-images + Emotion",
        "sequences": len(frames),
        "labelled_sequences": len(labels),
        "unlabelled_sequences": len(set(frames) - set(labels)),
        "frames_per_sequence": FRAMES_PER_SEQUENCE,
        "ignored_non_image_files": non_images(files) - len(label_files),
    }
    return read_image_files("ck+", root, images, CLASS_ORDER, options, crop_faces=True,
                            skipped=skipped, source=source)


def _read_code(path: Path) -> int | None:
    """The emotion code in an Emotion file ("   3.0000000e+00"), or None if unreadable."""
    try:
        value = float(path.read_text(errors="replace").strip())
    except ValueError:
        return None
    return int(value) if value.is_integer() and int(value) in CODES else None
