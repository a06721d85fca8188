"""Natural Human Face Images for Emotion Recognition (Kaggle, sudarshanvaidya).

Eight class folders (anger, contempt, disgust, fear, happiness, neutrality, sadness,
surprise) of 224×224 face crops whose names hold spaces and parentheses; some copies add
`train/` and `test/` above them. Those copies split the files their own way, so the parts
are pooled (and recorded) and FER-Bench makes its own stratified split. No subject ids.
"""

from __future__ import annotations

from pathlib import Path

from datasets.core import EMOTIONS, DatasetNotFoundError, FaceDataset
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

TITLE = "Natural Human Face Images"
EXPECTED = ("the class folders anger/, contempt/, disgust/, fear/, happiness/, neutrality/, "
            "sadness/, surprise/ (optionally under train/ and test/)")
GET_IT = ("Kaggle, \"Natural Human Face Images for Emotion Recognition\" by sudarshanvaidya: "
          "https://www.kaggle.com/datasets/sudarshanvaidya/random-images-for-face-emotion-"
          "recognition")
FOLDERS = {name: name for name in EMOTIONS if name != "neutral"} | {"neutrality": "neutral"}
CLASS_ORDER = EMOTIONS


def recognise(root: Path, files: list[SourceFile]) -> tuple[int, str]:
    """How many of `files` this set would read, and what they look like.

    The layout check of datasets.READERS: `files` is scan(root)'s.
    """
    images = [file for file, _ in in_class_folders(files, FOLDERS)[0]]
    return len(images), f"Natural Human Face Images ({folder_summary(images)})"


def read(root: Path, files: list[SourceFile], options: LoadOptions) -> FaceDataset:
    """Reads the Natural Human Face Images set from `root` (no subjects or split).

    The reader interface of datasets.READERS: `files` is scan(root).
    """
    inside, outside = in_class_folders(files, FOLDERS)
    if not inside:
        raise DatasetNotFoundError(
            f"no Natural Human Face Images under {root}: expected {EXPECTED}; "
            f"get it from {GET_IT}"
        )
    parts = sorted({f.lower() for file, _ in inside for f in file.folders[:-1]} &
                   {"train", "test"})
    source = {"layout": "class folders", "ignored_non_image_files": non_images(files),
              "pooled_parts": parts}
    images = [ImageFile(file.path, emotion) for file, emotion in inside]
    skipped = skip(outside, "not inside an emotion folder (" + ", ".join(FOLDERS) + ")")
    return read_image_files("natural_faces", root, images, CLASS_ORDER, options,
                            crop_faces=False, skipped=skipped, source=source)
