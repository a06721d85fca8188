"""FER2013, as the CSV or as Kaggle's image folders (docs/datasets.md).

- `fer2013.csv`: columns emotion, pixels (2304 space-separated ints), Usage; some copies
  pad the names (" pixels", " Usage") or reorder them (icml_face_data.csv). A CSV without
  Usage loads without an official split.
- Folders `train/` and `test/` of class folders holding `Training_<id>.jpg`,
  `PublicTest_<id>.jpg`, `PrivateTest_<id>.jpg`: the official split comes from the prefix
  (test/ mixes PublicTest and PrivateTest), else from the train/ or test/ folder.

Labels keep FER2013's ids (0 anger … 6 neutral) so label k means what it means in the CSV.
Uniform ("blank") images carry no face and are skipped like elsewhere.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np

from datasets.core import DatasetFormatError, DatasetNotFoundError, FaceDataset
from datasets.folders import (
    ImageFile,
    SourceFile,
    assemble,
    folder_summary,
    in_class_folders,
    non_images,
    read_image_files,
    skip,
)
from datasets.preprocess import BLANK_RANGE, LoadOptions, pixel_digest

TITLE = "FER2013"
EXPECTED = ("fer2013.csv (columns emotion, pixels, Usage) or Kaggle's train/ and test/ "
            "folders of angry/, disgust/, … holding Training_<id>.jpg")
GET_IT = ("https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-"
          "recognition-challenge (CSV) or https://www.kaggle.com/datasets/msambare/fer2013 "
          "(folders)")
CLASS_ORDER = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FOLDERS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
           "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE_PX = 48
COLUMNS = ("emotion", "pixels", "Usage")

_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
_USAGE_LOWER = {usage.lower(): part for usage, part in USAGE.items()}


def read(root: Path, files: list[SourceFile], options: LoadOptions) -> FaceDataset:
    """Reads FER2013 from `root`, whichever layout it holds, with its official split.

    The reader interface of datasets.READERS: `files` is scan(root).
    """
    csv = _find_csv(root, files)
    images, outside = in_class_folders(files, FOLDERS)
    if csv is not None and images:
        raise DatasetFormatError(
            f"{root} holds both {csv.path} and FER2013 image folders; pass --data-dir "
            "pointing at one of them"
        )
    if csv is not None:
        return read_csv(root, csv, options)
    if images:
        return _read_folders(root, images, outside, files, options)
    raise DatasetNotFoundError(
        f"no FER2013 data under {root}: expected {EXPECTED}; get it from {GET_IT}"
    )


def recognise(root: Path, files: list[SourceFile]) -> tuple[int, str]:
    """How many of `files` FER2013 would read (its CSV counts as one), and what they look like.

    The layout check of datasets.READERS: `files` is scan(root)'s.
    """
    csv = _find_csv(root, files)
    if csv is not None:
        return 1, f"FER2013's CSV ({csv.path})"
    images = [file for file, _ in in_class_folders(files, FOLDERS)[0]]
    return len(images), f"FER2013's class folders ({folder_summary(images)})"


def _header(path: Path) -> list[str]:
    """The CSV's column names, lower-case, without padding or quotes."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return [name.strip().strip('"').lower() for name in handle.readline().split(",")]


def _find_csv(root: Path, files: list[SourceFile]) -> SourceFile | None:
    """The FER2013 CSV: one with a pixels column, or named fer2013*.csv (then checked).

    Prefers a full copy (with Usage) named fer2013.csv, then the shallowest; other CSVs
    (submissions, notes) are ignored.
    """
    candidates = []
    for file in files:
        if not file.name.lower().endswith(".csv"):
            continue
        columns = _header(root / file.path)
        if "pixels" in columns or file.name.lower().startswith("fer2013"):
            rank = ("pixels" not in columns, "usage" not in columns,
                    file.name.lower() != "fer2013.csv", len(file.folders), file.path)
            candidates.append((rank, file))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def read_csv(root: Path, csv: SourceFile, options: LoadOptions) -> FaceDataset:
    """Reads the FER2013 CSV.

    Args:
        root: the dataset folder.
        csv: the CSV file.
        options: preprocessing settings.

    Returns:
        The FaceDataset; ids are `<csv path>:<row>` with rows counted from 1 after the
        header.

    Raises:
        DatasetFormatError: the columns are wrong, or a row is malformed (named by number).
    """
    path = root / csv.path
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines = raw.split(b"\n")
    columns = [c.strip().strip(b'"').decode(errors="replace") for c in lines[0].split(b",")]
    lower = [column.lower() for column in columns]
    if "emotion" not in lower or "pixels" not in lower:
        raise DatasetFormatError(
            f"{csv.path}: expected columns {', '.join(COLUMNS)} (Usage optional); "
            f"found {', '.join(repr(c) for c in columns)}"
        )
    at = {name: lower.index(name.lower()) for name in COLUMNS if name.lower() in lower}
    rows = []
    for number, line in enumerate(lines[1:], 1):
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) == 1 and not fields[0].strip():
            continue  # blank line (the trailing newline)
        if len(fields) != len(columns):
            raise _row_error(csv, number, f"{len(fields)} fields, expected {len(columns)}")
        rows.append((number, [field.strip().strip(b'"') for field in fields]))
    pixels = _parse_pixels(csv, rows, at["pixels"])
    emotions = _parse_labels(csv, rows, at["emotion"])
    parts = _parse_usage(csv, rows, at["Usage"]) if "Usage" in at else [None] * len(rows)

    blank = np.ptp(pixels, axis=1) <= BLANK_RANGE  # as preprocess.blank_reason, vectorised
    skipped = [{"path": f"{csv.path}:{number}",
                "reason": f"blank image (every pixel ≈ {int(pixels[i].min())})"}
               for i, (number, _) in enumerate(rows) if blank[i]]
    keep = np.flatnonzero(~blank)
    faces = pixels[keep].reshape(-1, SIDE_PX, SIDE_PX)
    digests = [pixel_digest(face) for face in faces]
    if options.image_size != SIDE_PX:
        interpolation = cv2.INTER_AREA if options.image_size < SIDE_PX else cv2.INTER_LINEAR
        size = (options.image_size, options.image_size)
        faces = np.stack([cv2.resize(face, size, interpolation=interpolation) for face in faces])
    images = [ImageFile(f"{csv.path}:{rows[i][0]}", emotions[i], part=parts[i]) for i in keep]
    source = {"layout": "CSV", "file": csv.path, "rows": len(rows)}
    return assemble("fer2013", faces, digests, images, CLASS_ORDER, skipped=skipped,
                    source=source, preprocessing={**options.to_dict(), "face_crop": "none"})


def _row_error(csv: SourceFile, number: int, problem: str) -> DatasetFormatError:
    return DatasetFormatError(f"{csv.path}, row {number} (line {number + 1}): {problem}")


def _parse_pixels(csv: SourceFile, rows, column: int) -> np.ndarray:
    """(rows, 2304) uint8: numpy's C text reader first, a row-by-row check if that fails."""
    text = b"\n".join(fields[column] for _, fields in rows)
    try:
        pixels = np.loadtxt(io.BytesIO(text), dtype=np.uint8, delimiter=None, ndmin=2)
        if pixels.shape == (len(rows), SIDE_PX * SIDE_PX):
            return pixels
    except ValueError:
        pass
    for number, fields in rows:  # slow, but only to name the offending row
        values = fields[column].split()
        if len(values) != SIDE_PX * SIDE_PX:
            raise _row_error(csv, number, f"pixels holds {len(values)} values, expected "
                                          f"{SIDE_PX * SIDE_PX} ({SIDE_PX}×{SIDE_PX})")
        bad = next((v for v in values if not v.isdigit() or int(v) > 255), None)
        if bad is not None:
            raise _row_error(csv, number, f"pixel value {bad.decode(errors='replace')!r} is "
                                          "not an integer in 0–255")
    raise DatasetFormatError(f"{csv.path}: the pixels column could not be read")


def _parse_labels(csv: SourceFile, rows, column: int) -> list[str]:
    emotions = []
    for number, fields in rows:
        value = fields[column].decode(errors="replace")
        if not value.isdigit() or int(value) >= len(CLASS_ORDER):
            raise _row_error(csv, number, f"emotion {value!r} is not a label 0–6")
        emotions.append(CLASS_ORDER[int(value)])
    return emotions


def _parse_usage(csv: SourceFile, rows, column: int) -> list[str]:
    parts = []
    for number, fields in rows:
        value = fields[column].decode(errors="replace")
        if value.lower() not in _USAGE_LOWER:
            raise _row_error(csv, number, f"Usage {value!r} is not one of {', '.join(USAGE)}")
        parts.append(_USAGE_LOWER[value.lower()])
    return parts


def _read_folders(root, images, outside, files, options) -> FaceDataset:
    found = []
    for file, emotion in images:
        prefix = _PREFIX.match(file.name)
        folder = next((f.lower() for f in reversed(file.folders) if f.lower() in
                       ("train", "test")), None)
        if prefix is not None:
            part = _USAGE_LOWER[prefix.group(1).lower()]
        else:
            part = {"train": "train", "test": "test"}.get(folder)
        found.append(ImageFile(file.path, emotion, part=part))
    skipped = skip(outside, "not inside a FER2013 class folder (" + ", ".join(FOLDERS) + ")")
    source = {"layout": "Kaggle train/test class folders",
              "ignored_non_image_files": non_images(files)}
    return read_image_files("fer2013", root, found, CLASS_ORDER, options, crop_faces=False,
                            skipped=skipped, source=source)
