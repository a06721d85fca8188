"""Dataset loaders, splits and the embedded synthetic set.

The name shadows the PyPI package `datasets` (Hugging Face): run FER-Bench from the
checkout root or an editable install, where this package comes first on sys.path.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import cache, ckplus, fer2013, kdef, natural_faces
from datasets.cache import default_cache_dir
from datasets.core import (
    EMOTIONS,
    DatasetFormatError,
    DatasetNotFoundError,
    FaceDataset,
    WrongDatasetError,
)
from datasets.folders import SourceFile, scan
from datasets.preprocess import FaceFinder, LoadOptions
from datasets.splits import Split, dataset_split, holdout_split, kfold_split
from datasets.synthetic import DEFAULT_SUBJECTS
from datasets.synthetic import generate as generate_synthetic

# name → module with TITLE, EXPECTED (what its folder holds), GET_IT (where users get it),
# recognise(root, files) -> (how many files its layouts would read, what they look like)
# and read(root, files, options) -> FaceDataset, where `files` is folders.scan(root)'s and
# `options` the LoadOptions; read raises DatasetNotFoundError when no layout is found.
READERS = {"ck+": ckplus, "fer2013": fer2013, "kdef": kdef, "natural_faces": natural_faces}
# Generated, not read: name → its generator, which draws a dataset of `num_subjects` people at
# `image_size` pixels a side and has no folder.
GENERATORS = {"synthetic": generate_synthetic}
DATASET_NAMES: tuple[str, ...] = (*GENERATORS, *READERS)
# Other spellings users type → the canonical name, which is what gets recorded.
DATASET_ALIASES = {"natural-faces": "natural_faces"}
_CHECKOUT = Path(__file__).resolve().parent.parent


def check_dataset_name(name: str) -> str:
    """The canonical name of dataset `name`, an alias (DATASET_ALIASES) resolved.

    The one check of a dataset name, made where a user's text enters (the command lines,
    grid and study specs); every other function here takes the canonical name it returns.

    Args:
        name: a dataset name or alias.

    Returns:
        The name in DATASET_NAMES.

    Raises:
        ValueError: `name` is unknown (the message lists the valid names).
    """
    canonical = DATASET_ALIASES.get(name, name)
    if canonical not in DATASET_NAMES:
        aliases = ", ".join(f"{alias} for {to}" for alias, to in DATASET_ALIASES.items())
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASET_NAMES)} "
                         f"(also {aliases})")
    return canonical


def default_data_dir(name: str) -> Path:
    """Where dataset `name` is looked for without --data-dir.

    Args:
        name: a canonical dataset name (check_dataset_name).

    Returns:
        $FERBENCH_DATA/<name> when FERBENCH_DATA is set, else data/<name> in the checkout.
    """
    base = os.environ.get("FERBENCH_DATA")
    return (Path(base) if base else _CHECKOUT / "data") / name


def dataset_folder(name: str, data_dir: Path | None = None) -> Path | None:
    """The folder dataset `name` is read from.

    Args:
        name: a canonical dataset name (check_dataset_name).
        data_dir: the folder given (--data-dir), or None for default_data_dir(name).

    Returns:
        `data_dir` or default_data_dir(name); None for a generated dataset (GENERATORS),
        which has no folder.
    """
    if name in GENERATORS:
        return None
    return Path(data_dir) if data_dir is not None else default_data_dir(name)


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    image_size: int = 48,
    *,
    kdef_angles: str = "frontal",
    cache_dir: Path | None = None,
    synthetic_subjects: int = DEFAULT_SUBJECTS,
) -> FaceDataset:
    """Loads dataset `name` preprocessed to `image_size`² grayscale uint8.

    A real dataset is decoded once; later calls with the same files and settings read the
    cache in `cache_dir`. Nothing is ever written inside the dataset folder. A generated
    one (GENERATORS) is drawn afresh, the same for the same arguments.

    Args:
        name: a canonical dataset name (check_dataset_name).
        data_dir: the dataset folder (any depth above its files); None for
            default_data_dir(name). Ignored by a generated dataset.
        image_size: output side length in pixels.
        kdef_angles: "frontal" (default) or "all" (KDEF only).
        cache_dir: where decoded datasets are kept; None for default_cache_dir().
        synthetic_subjects: people in a generated dataset (21 images each); ignored by
            a read one.

    Returns:
        The FaceDataset, named canonically. Files that cannot be read safely (not regular
        files, dangling links, names that are not UTF-8) head its skipped list.

    Raises:
        DatasetNotFoundError: the folder is missing or holds no known layout.
        WrongDatasetError: the folder holds another dataset (the message names it).
        DatasetFormatError: a file breaks its format (wrong CSV columns, a bad row).
    """
    root = dataset_folder(name, data_dir)
    if root is None:
        return GENERATORS[name](num_subjects=synthetic_subjects, image_size=image_size)
    options = LoadOptions(image_size=image_size, kdef_angles=kdef_angles)
    reader = READERS[name]
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"{reader.TITLE} not found: {root} is not a folder; expected {reader.EXPECTED} "
            f"there; get it from {reader.GET_IT}, then pass --data-dir or put it at "
            f"{default_data_dir(name)}"
        )
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    cache.check_outside(cache_dir, root)
    files, unreadable = scan(root)
    _check_layout(name, root, files)
    settings = {**options.to_dict(), "face_finder": FaceFinder().name}
    path = cache.cache_path(cache_dir, name, cache.cache_key(name, files, settings, unreadable))
    dataset = cache.load(path)
    if dataset is None:
        dataset = reader.read(root, files, options)
        dataset.skipped = unreadable + dataset.skipped
        cache.save(path, dataset)
    dataset.source.update(folder=str(root.resolve()), cache_file=str(path))
    return dataset


def _check_layout(name: str, root: Path, files: list[SourceFile]) -> None:
    """Refuses a folder whose files another dataset's layout accounts for better.

    Folder vocabularies overlap (CK+48's and FER2013's class folders share four names),
    so each reader would happily read part of another dataset; counting what every
    reader would read tells which dataset the folder holds. A tie keeps `name`.

    Args:
        name: the canonical name asked for (a key of READERS).
        root: the dataset folder.
        files: scan(root)'s files.

    Raises:
        WrongDatasetError: another dataset's layout reads more of `files` (one line: what
            was expected, what was found, which --dataset reads it).
    """
    found = {other: module.recognise(root, files) for other, module in READERS.items()}
    best = max(found, key=lambda other: found[other][0])
    if found[best][0] > found[name][0]:
        reader = READERS[name]
        raise WrongDatasetError(
            f"{root} does not hold {reader.TITLE}: expected {reader.EXPECTED}; it looks like "
            f"{found[best][1]} instead: pass --dataset {best}"
        )


__all__ = [
    "DATASET_ALIASES",
    "DATASET_NAMES",
    "EMOTIONS",
    "GENERATORS",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "FaceDataset",
    "Split",
    "WrongDatasetError",
    "check_dataset_name",
    "dataset_folder",
    "dataset_split",
    "default_cache_dir",
    "default_data_dir",
    "holdout_split",
    "kfold_split",
    "load_dataset",
]
