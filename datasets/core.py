"""The in-memory dataset every loader returns, and the canonical emotion names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# docs/datasets.md: every dataset maps its own label names onto these.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)
# The words studies and dataset folders use for the canonical names (FER2013's "angry",
# "happy", "sad"), which `--classes` accepts as well.
EMOTION_ALIASES = {"angry": "anger", "contemptuous": "contempt", "disgusted": "disgust",
                   "fearful": "fear", "afraid": "fear", "happy": "happiness",
                   "sad": "sadness", "surprised": "surprise", "neutrality": "neutral"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's folder is missing, or holds none of the layouts its loader reads."""


class DatasetFormatError(ValueError):
    """A dataset file breaks its format: wrong CSV columns, a bad row, an unreadable label."""


class WrongDatasetError(ValueError):
    """A dataset folder holds another dataset than the one named (say, CK+48 as fer2013)."""


@dataclass
class FaceDataset:
    """Preprocessed face images with labels and, where known, subjects.

    Attributes:
        name: dataset name ("synthetic", "ck+", …).
        images: uint8 (N, H, W, C) array.
        labels: int64 (N,) indices into `class_names`.
        class_names: canonical emotion names present, in label order.
        subjects: (N,) subject ids as strings, or None where the dataset has none.
        official_split: (N,) "train"/"val"/"test" where the dataset defines one, else None.
        skipped: files passed over while loading, as {"path": …, "reason": …}.
        duplicates: number of images that repeat an earlier image's exact pixels.
        source: facts about where the data came from (folder, layout, counts), JSON-ready.
        ids: (N,) where each image came from (a path relative to the dataset folder, or
            `file.csv:row`), or None for generated data.
        duplicate_groups: (N,) int64, the index of the first image with the same decoded
            pixels (an image's own index when it is unique), or None when not computed.
            Splits keep each group on one side.
        preprocessing: the settings and per-step counts of the preprocessing, JSON-ready.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    subjects: np.ndarray | None = None
    official_split: np.ndarray | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    ids: np.ndarray | None = None
    duplicate_groups: np.ndarray | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                "images must be uint8 (N, H, W, C). "
                f"Received: dtype={self.images.dtype}, shape={self.images.shape}"
            )
        for name in ("labels", "subjects", "official_split", "ids", "duplicate_groups"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} images")
        unknown = sorted(set(self.class_names) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"class names {unknown} are not canonical emotions {EMOTIONS}")

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """A short hash of pixels, labels, subjects and official split: equal data ⇔ equal hash."""
        digest = hashlib.sha256()
        digest.update(str(self.images.shape).encode())
        digest.update(self.images.tobytes())
        digest.update(self.labels.astype(np.int64).tobytes())
        digest.update(",".join(self.class_names).encode())
        if self.subjects is not None:
            digest.update("\0".join(map(str, self.subjects)).encode())
        if self.official_split is not None:
            digest.update(("official\0" + "\0".join(map(str, self.official_split))).encode())
        return digest.hexdigest()[:16]
