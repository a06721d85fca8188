"""Dataset loaders, splits and the embedded synthetic set.

The name shadows the PyPI package `datasets` (Hugging Face): run FER-Bench from the
checkout root or an editable install, where this package comes first on sys.path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets.core import EMOTIONS, FaceDataset
from datasets.splits import Split, holdout_split
from datasets.synthetic import generate as generate_synthetic


def _load_synthetic(data_dir: Path | None, image_size: int) -> FaceDataset:
    return generate_synthetic(image_size=image_size)


# name → loader(data_dir, image_size)
LOADERS: dict[str, Callable[[Path | None, int], FaceDataset]] = {
    "synthetic": _load_synthetic,
}
DATASET_NAMES: tuple[str, ...] = tuple(LOADERS)


def check_dataset_name(name: str) -> None:
    """Raises ValueError naming the valid datasets if `name` is unknown."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASET_NAMES)}")


def load_dataset(name: str, data_dir: Path | None = None, image_size: int = 48) -> FaceDataset:
    """Loads dataset `name` preprocessed to `image_size`² grayscale uint8.

    Args:
        name: one of DATASET_NAMES.
        data_dir: where the dataset lies on disk (ignored by "synthetic").
        image_size: output side length.

    Returns:
        The FaceDataset.
    """
    check_dataset_name(name)
    return LOADERS[name](data_dir, image_size)


__all__ = [
    "DATASET_NAMES",
    "EMOTIONS",
    "FaceDataset",
    "Split",
    "check_dataset_name",
    "holdout_split",
    "load_dataset",
]
