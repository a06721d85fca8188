"""Dataset loaders, splits and the embedded synthetic set.

The name shadows the PyPI package `datasets` (Hugging Face): run FER-Bench from the
checkout root or an editable install, where this package comes first on sys.path.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import cache, ckplus, fer2013, kdef, natural_faces
from datasets.cache import default_cache_dir
from datasets.core import EMOTIONS, DatasetFormatError, DatasetNotFoundError, FaceDataset
from datasets.folders import scan
from datasets.preprocess import FaceFinder, LoadOptions
from datasets.splits import Split, dataset_split, holdout_split, kfold_split
from datasets.synthetic import generate as generate_synthetic

# name → module with TITLE, EXPECTED (what its folder holds), GET_IT (where users get it)
# and read(root, files, options) -> FaceDataset, where `files` is folders.scan(root) and
# `options` the LoadOptions; it raises DatasetNotFoundError when no layout is found.
# "synthetic" is generated, not read.
READERS = {"ck+": ckplus, "fer2013": fer2013, "kdef": kdef, "natural_faces": natural_faces}
DATASET_NAMES: tuple[str, ...] = ("synthetic", *READERS)
_CHECKOUT = Path(__file__).resolve().parent.parent


def check_dataset_name(name: str) -> None:
    """Raises ValueError naming the valid datasets if `name` is unknown."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASET_NAMES)}")


def default_data_dir(name: str) -> Path:
    """Where dataset `name` is looked for without --data-dir.

    Args:
        name: a dataset name.

    Returns:
        $FERBENCH_DATA/<name> when FERBENCH_DATA is set, else data/<name> in the checkout.
    """
    check_dataset_name(name)
    base = os.environ.get("FERBENCH_DATA")
    return (Path(base) if base else _CHECKOUT / "data") / name


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    image_size: int = 48,
    *,
    kdef_angles: str = "frontal",
    cache_dir: Path | None = None,
) -> FaceDataset:
    """Loads dataset `name` preprocessed to `image_size`² grayscale uint8.

    A real dataset is decoded once; later calls with the same files and settings read the
    cache in `cache_dir`. Nothing is ever written inside the dataset folder.

    Args:
        name: one of DATASET_NAMES.
        data_dir: the dataset folder (any depth above its files); None for
            default_data_dir(name). Ignored by "synthetic".
        image_size: output side length in pixels.
        kdef_angles: "frontal" (default) or "all" (KDEF only).
        cache_dir: where decoded datasets are kept; None for default_cache_dir().

    Returns:
        The FaceDataset.

    Raises:
        DatasetNotFoundError: the folder is missing or holds no known layout.
        DatasetFormatError: a file breaks its format (wrong CSV columns, a bad row).
    """
    check_dataset_name(name)
    options = LoadOptions(image_size=image_size, kdef_angles=kdef_angles)
    if name == "synthetic":
        return generate_synthetic(image_size=image_size)
    reader = READERS[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir(name)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"{reader.TITLE} not found: {root} is not a folder; expected {reader.EXPECTED} "
            f"there; get it from {reader.GET_IT}, then pass --data-dir or put it at "
            f"{default_data_dir(name)}"
        )
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    cache.check_outside(cache_dir, root)
    files = scan(root)
    settings = {**options.to_dict(), "face_finder": FaceFinder().name}
    path = cache.cache_path(cache_dir, name, cache.cache_key(name, files, settings))
    dataset = cache.load(path)
    if dataset is None:
        dataset = reader.read(root, files, options)
        cache.save(path, dataset)
    dataset.source.update(folder=str(root.resolve()), cache_file=str(path))
    return dataset


__all__ = [
    "DATASET_NAMES",
    "EMOTIONS",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "FaceDataset",
    "Split",
    "check_dataset_name",
    "dataset_split",
    "default_cache_dir",
    "default_data_dir",
    "holdout_split",
    "kfold_split",
    "load_dataset",
]
