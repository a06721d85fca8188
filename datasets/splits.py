"""Train/validation/test splits that never put one subject on two sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit


@dataclass(frozen=True)
class Split:
    """Index arrays into a FaceDataset, plus how they were made.

    Attributes:
        train: training indices.
        val: validation indices (carved from training).
        test: test indices.
        protocol: short description, recorded with the results.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str


def _two_way(labels, groups, fraction: float, seed: int, indices: np.ndarray):
    """Splits `indices` in two, grouped by subject when groups exist, else stratified."""
    if groups is None:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, out = next(splitter.split(indices, labels[indices]))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, out = next(splitter.split(indices, labels[indices], groups[indices]))
    return indices[keep], indices[out]


def holdout_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    test_fraction: float = 0.15,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """A holdout split: test first, then validation carved from what is left.

    Args:
        labels: (N,) integer labels.
        groups: (N,) subject ids, or None to stratify by label instead.
        test_fraction: share of the data (or of the subjects) held out for testing.
        val_fraction: share of the data (or subjects) held out for validation.
        seed: split seed (independent of the training seed).

    Returns:
        A Split; with groups, no subject appears in two of its parts.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1). Received: {name}={value}")
    everything = np.arange(len(labels))
    rest, test = _two_way(labels, groups, test_fraction, seed, everything)
    train, val = _two_way(labels, groups, val_fraction / (1 - test_fraction), seed + 1, rest)
    kind = "subject-independent" if groups is not None else "stratified"
    return Split(np.sort(train), np.sort(val), np.sort(test), f"holdout ({kind})")
