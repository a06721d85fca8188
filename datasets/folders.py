"""What every loader shares: walking a dataset folder, decoding, de-duplicating, assembling.

A loader only decides which files are images of which emotion (and subject, and official
part); `read_image_files` does the rest the same way for every dataset, and `assemble`
turns decoded faces from any source (files or CSV rows) into a FaceDataset.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from datasets.core import FaceDataset
from datasets.preprocess import (
    FaceFinder,
    LoadOptions,
    blank_reason,
    decode_gray,
    pixel_digest,
    square_resize,
)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"})
# Operating-system clutter that is never data: macOS resource forks and Finder files,
# Windows thumbnail caches. Hidden files and folders (".name") are skipped too.
_CLUTTER_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


@dataclass(frozen=True)
class SourceFile:
    """One file under a dataset folder.

    Attributes:
        path: path relative to the dataset folder, with "/" separators; doubles as the id.
        size: size in bytes.
        mtime_ns: modification time in nanoseconds.
    """

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders from the dataset folder down to the file's parent."""
        return PurePosixPath(self.path).parts[:-1]

    @property
    def is_image(self) -> bool:
        return PurePosixPath(self.path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageFile:
    """An image a loader keeps, with what the dataset says about it.

    Attributes:
        path: SourceFile.path.
        emotion: canonical emotion name.
        subject: subject id, or None where the dataset has none.
        part: "train"/"val"/"test" from the dataset's official split, or None.
    """

    path: str
    emotion: str
    subject: str | None = None
    part: str | None = None


def _is_clutter(name: str) -> bool:
    return name.startswith(".") or name.lower() in _CLUTTER_NAMES


def scan(root: Path) -> tuple[list[SourceFile], list[dict[str, str]]]:
    """Lists every file under `root`, sorted, without operating-system clutter.

    Only regular files with UTF-8 names are handed to the loaders: reading a FIFO blocks
    forever, a dangling link cannot be opened, and a name that is not UTF-8 cannot be
    recorded, printed or written to a report. Those entries, whatever their suffix, are
    returned apart as skipped-file entries instead.

    Args:
        root: the dataset folder.

    Returns:
        (files, unreadable): SourceFiles in path order, whose sizes and mtimes key the
        cache; and {"path", "reason"} entries, in path order, for what cannot be read.
    """
    found, unreadable = [], []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not _is_clutter(d))
        relative = Path(folder).relative_to(root)
        for name in names:
            if _is_clutter(name):
                continue
            path = (relative / name).as_posix()
            status = _regular_file_status(Path(folder) / name, path)
            if isinstance(status, str):
                unreadable.append({"path": printable_path(path), "reason": status})
            else:
                found.append(SourceFile(path, status.st_size, status.st_mtime_ns))
    return sorted(found, key=lambda f: f.path), sorted(unreadable, key=lambda e: e["path"])


def printable_path(path: str) -> str:
    """`path` with the bytes of a non-UTF-8 name shown as \\xNN escapes (else unchanged)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _regular_file_status(full: Path, path: str) -> os.stat_result | str:
    """The stat of a regular file with a UTF-8 name (links followed), else why it is not read.

    Args:
        full: the file's path on disk.
        path: its path relative to the dataset folder.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # os.walk keeps undecodable bytes as lone surrogates
        return "file name is not valid UTF-8 (rename it)"
    try:
        status = os.stat(full)
    except OSError as error:
        if isinstance(error, FileNotFoundError) and full.is_symlink():
            return f"dangling symbolic link (to {printable_path(os.readlink(full))})"
        return f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file (a FIFO, socket or device is never read)"
    return status


def in_class_folders(
    files: Iterable[SourceFile], folder_emotions: dict[str, str]
) -> tuple[list[tuple[SourceFile, str]], list[SourceFile]]:
    """Sorts image files by whether their parent folder names an emotion.

    Args:
        files: the scanned files (non-images are passed over).
        folder_emotions: lower-case folder name → canonical emotion.

    Returns:
        ([(file, emotion)] for images in an emotion folder, [images elsewhere]).
    """
    inside, outside = [], []
    for file in files:
        if not file.is_image:
            continue
        emotion = folder_emotions.get(file.folders[-1].lower()) if file.folders else None
        if emotion is None:
            outside.append(file)
        else:
            inside.append((file, emotion))
    return inside, outside


def folder_summary(files: Sequence[SourceFile]) -> str:
    """What a class-folder layout holds: "63 images in 7 emotion folders: anger, …".

    Args:
        files: the images found in class folders.
    """
    folders = sorted({file.folders[-1] for file in files})
    return (f"{len(files)} image{'s' * (len(files) != 1)} in {len(folders)} emotion "
            f"folder{'s' * (len(folders) != 1)}: {', '.join(folders)}")


def skip(files: Iterable[SourceFile], reason: str) -> list[dict[str, str]]:
    """Skipped-file entries, one per file, all with `reason`."""
    return [{"path": file.path, "reason": reason} for file in files]


def non_images(files: Iterable[SourceFile]) -> int:
    """How many files are not images (CSV, text, …): ignored, but counted in the source."""
    return sum(not file.is_image for file in files)


def _decode(path: Path, crop: FaceFinder | None, size: int):
    """One file → (face, digest, face_found) or the reason it is skipped."""
    try:
        gray = decode_gray(path)
    except (OSError, ValueError) as error:
        return str(error)
    reason = blank_reason(gray)
    if reason is not None:
        return reason
    box, found = crop.box(gray) if crop is not None else (None, False)
    return square_resize(gray, box, size), pixel_digest(gray), found


def read_image_files(
    name: str,
    root: Path,
    files: Sequence[ImageFile],
    class_order: Sequence[str],
    options: LoadOptions,
    *,
    crop_faces: bool,
    skipped: list[dict[str, str]],
    source: dict[str, Any],
) -> FaceDataset:
    """Decodes, checks, crops and resizes `files`, then assembles the dataset.

    Files that do not decode, and blank placeholders, are added to `skipped`.

    Args:
        name: dataset name.
        root: the dataset folder.
        files: the images to read.
        class_order: the dataset's classes in label order (canonical names).
        options: preprocessing settings.
        crop_faces: find the face (full-frame portraits); otherwise the images are face
            crops already and only their centred square is kept.
        skipped: files passed over so far; extended here.
        source: facts about the source, recorded with the dataset.

    Returns:
        The FaceDataset.
    """
    finder = FaceFinder() if crop_faces else None
    workers = min(8, os.cpu_count() or 1)  # decoding and detection release the GIL
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda f: _decode(root / f.path, finder, options.image_size),
                                files))
    kept, faces, digests, found = [], [], [], 0
    for file, result in zip(files, results, strict=True):
        if isinstance(result, str):
            skipped.append({"path": file.path, "reason": result})
            continue
        kept.append(file)
        faces.append(result[0])
        digests.append(result[1])
        found += result[2]
    preprocessing = {**options.to_dict(), "face_crop": finder.name if finder else "none"}
    if finder is not None:
        preprocessing.update(faces_found=found, centre_crop_fallbacks=len(kept) - found)
    return assemble(
        name, faces, digests, kept, class_order,
        skipped=skipped, source=source, preprocessing=preprocessing,
    )


def assemble(
    name: str,
    faces: Sequence[np.ndarray] | np.ndarray,
    digests: Sequence[bytes],
    files: Sequence[ImageFile],
    class_order: Sequence[str],
    *,
    skipped: list[dict[str, str]],
    source: dict[str, Any],
    preprocessing: dict[str, Any],
) -> FaceDataset:
    """Builds a FaceDataset from preprocessed faces, grouping exact duplicates.

    Args:
        name: dataset name.
        faces: (size, size) uint8 faces, one per entry of `files`.
        digests: pixel digests of the decoded originals, one per face.
        files: what the dataset says about each face.
        class_order: the dataset's classes in label order; absent ones are dropped.
        skipped: files passed over, as {"path", "reason"}.
        source: facts about the source.
        preprocessing: settings and counts of the preprocessing.

    Returns:
        The FaceDataset; `duplicate_groups` maps each image to the first with its pixels.
    """
    if not len(files):
        raise ValueError(f"{name}: no usable images were found ({len(skipped)} skipped)")
    present = {file.emotion for file in files}
    class_names = [emotion for emotion in class_order if emotion in present]
    index = {emotion: i for i, emotion in enumerate(class_names)}
    first: dict[bytes, int] = {}
    groups = np.asarray([first.setdefault(d, i) for i, d in enumerate(digests)], np.int64)
    labels = np.asarray([index[file.emotion] for file in files], np.int64)
    conflicting = _conflicting_groups(groups, labels)
    has_subjects = any(file.subject is not None for file in files)
    has_parts = all(file.part is not None for file in files)
    return FaceDataset(
        name=name,
        images=np.ascontiguousarray(np.asarray(faces, np.uint8)[..., None]),
        labels=labels,
        class_names=class_names,
        subjects=np.asarray([file.subject or "" for file in files]) if has_subjects else None,
        official_split=np.asarray([file.part for file in files]) if has_parts else None,
        skipped=skipped,
        duplicates=len(files) - len(first),
        source={**source, "duplicate_groups_with_conflicting_labels": conflicting},
        ids=np.asarray([file.path for file in files]),
        duplicate_groups=groups,
        preprocessing=preprocessing,
    )


def _conflicting_groups(groups: np.ndarray, labels: np.ndarray) -> int:
    """How many duplicate groups carry more than one label."""
    pairs = np.unique(np.stack([groups, labels]), axis=1)
    _, per_group = np.unique(pairs[0], return_counts=True)
    return int((per_group > 1).sum())
