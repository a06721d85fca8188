"""Train/validation/test splits that never put one subject, or one duplicate, on two sides.

Images are split as whole groups. A group is everything that must stay together: the
images of one subject, merged with every set of exact duplicates (`merge_groups`).

- Datasets with subjects (CK+, KDEF, synthetic): subject-independent splits, grouped.
- Datasets without (FER2013, Natural Faces): stratified by label over the duplicate groups
  (nearly all singletons), so class shares match across parts.
- An official split (FER2013) is kept as published, except that a duplicate straddling two
  parts keeps only its copies in the later part (test over val over train): the test set
  stays intact, and the dropped copies are reported.

Validation is always carved from training, grouped or stratified the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import (
    GroupShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from datasets.core import FaceDataset

PARTS = ("train", "val", "test")
# The published parts a dataset with an official split may be tested on: its test part,
# or its validation part (FER2013's PublicTest, which many FER2013 studies report on).
TEST_PARTS = ("test", "val")
DEFAULT_TEST_FRACTION = 0.15
DEFAULT_VAL_FRACTION = 0.15


@dataclass(frozen=True)
class Split:
    """Index arrays into a FaceDataset, plus how they were made.

    Attributes:
        train: training indices.
        val: validation indices (carved from training).
        test: test indices.
        protocol: short description, recorded with the results.
        tag: the same as a file-name-safe word ("holdout-seed0", "kfold10-fold3-seed0").
        dropped: indices left out of every part (duplicate copies straddling an official
            split).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str
    tag: str = "holdout"
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def merge_groups(*labelings: np.ndarray | None) -> np.ndarray | None:
    """Group ids such that images sharing an id in any labeling share a group.

    Args:
        *labelings: (N,) arrays of ids (subjects, duplicate groups); None ones are ignored.

    Returns:
        (N,) int64 group ids (connected components), or None when every labeling is None.
    """
    given = [np.asarray(labels) for labels in labelings if labels is not None]
    if not given:
        return None
    n = len(given[0])
    rows, cols = [], []
    for labels in given:
        _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
        rows.append(np.arange(n))
        cols.append(first[inverse.ravel()])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _group_rows(labels: np.ndarray, groups: np.ndarray | None, indices: np.ndarray):
    """One row per group among `indices`: (group index of each image, label of each group)."""
    if groups is None:
        return np.arange(len(indices)), labels[indices]
    _, first, inverse = np.unique(groups[indices], return_index=True, return_inverse=True)
    return inverse.ravel(), labels[indices][first]


def _two_way(labels, groups, fraction, seed, indices, stratify):
    """Splits `indices` in two (keep, out), `fraction` of the groups going out."""
    if groups is not None and len(np.unique(groups[indices])) < 2:
        raise ValueError(f"cannot split {len(indices)} images in two: they form a single "
                         "group (one subject, or subjects joined by duplicate images); "
                         "use fewer folds or more data")
    if stratify:
        member_of, group_labels = _group_rows(labels, groups, indices)
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, out_groups = next(splitter.split(group_labels, group_labels))
        out = np.isin(member_of, out_groups)
        return indices[~out], indices[out]
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    keep, out = next(splitter.split(indices, labels[indices], groups[indices]))
    return indices[keep], indices[out]


def _kind(stratify: bool) -> str:
    return "stratified" if stratify else "subject-independent"


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1). Received: {name}={value}")


def holdout_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    stratify: bool = False,
) -> Split:
    """A holdout split: test first, then validation carved from what is left.

    Args:
        labels: (N,) integer labels.
        groups: (N,) ids of what must stay together (subjects, duplicates), or None.
        test_fraction: share of the groups held out for testing.
        val_fraction: share of the groups held out for validation.
        seed: split seed (independent of the training seed).
        stratify: split whole groups so class shares match (for groups that are not
            subjects); always so when `groups` is None.

    Returns:
        A Split; no group appears in two of its parts.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    stratify = groups is None or bool(stratify)
    if not stratify and len(np.unique(groups)) < 3:
        raise ValueError(f"a subject-independent holdout needs ≥ 3 subjects (train, val, "
                         f"test); this data has {len(np.unique(groups))}")
    rest, test = _two_way(labels, groups, test_fraction, seed, np.arange(len(labels)), stratify)
    train, val = _two_way(labels, groups, val_fraction / (1 - test_fraction), seed + 1, rest,
                          stratify)
    return Split(np.sort(train), np.sort(val), np.sort(test),
                 f"holdout ({_kind(stratify)})", f"holdout-seed{seed}")


def kfold_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    folds: int,
    fold: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    stratify: bool = False,
) -> Split:
    """Fold `fold` of a k-fold cross-validation; validation is carved from its training part.

    Args:
        labels: (N,) integer labels.
        groups: (N,) ids of what must stay together (subjects, duplicates), or None.
        folds: number of folds k (≥ 2, ≤ the number of groups).
        fold: which fold is the test part, 0 ≤ fold < folds.
        val_fraction: share of the training groups held out for validation.
        seed: split seed; the same seed gives the same k folds for every `fold`.
        stratify: as in holdout_split. Grouped folds balance labels as far as groups allow
            (StratifiedGroupKFold).

    Returns:
        A Split; over fold = 0 … k−1 the test parts partition the data.
    """
    if folds < 2:
        raise ValueError(f"folds must be ≥ 2. Received: folds={folds}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in [0, {folds - 1}]. Received: fold={fold}")
    _check_fraction("val_fraction", val_fraction)
    stratify = groups is None or bool(stratify)
    everything = np.arange(len(labels))
    member_of, group_labels = _group_rows(labels, groups, everything)
    if len(group_labels) < folds:
        what = "groups" if stratify else "subjects"
        raise ValueError(f"folds must be ≤ the number of {what} ({len(group_labels)}). "
                         f"Received: folds={folds}")
    if stratify:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, test_groups = list(splitter.split(group_labels, group_labels))[fold]
        test = np.flatnonzero(np.isin(member_of, test_groups))
    else:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, test = list(splitter.split(everything, labels, groups))[fold]
    rest = np.setdiff1d(everything, test)
    train, val = _two_way(labels, groups, val_fraction, seed + 1, rest, stratify)
    return Split(np.sort(train), np.sort(val), np.sort(test),
                 f"{folds}-fold {_kind(stratify)}, fold {fold}",
                 f"kfold{folds}-fold{fold}-seed{seed}")


def official_split(
    parts: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    stratify: bool = False,
    test_part: str = "test",
) -> Split:
    """The dataset's own split, with duplicates kept on one side.

    Args:
        parts: (N,) "train"/"val"/"test" as the dataset publishes them.
        labels: (N,) integer labels.
        groups: (N,) ids of what must stay together (duplicates), or None.
        val_fraction: share of training carved out for validation when `parts` has no val.
        seed: seed of that carving.
        stratify: as in holdout_split.
        test_part: one of TEST_PARTS: the published part tested on. "val" tests on the
            official validation part (FER2013's PublicTest), carves validation from
            training, and leaves the official test part out of every part.

    Returns:
        A Split. A group found in several parts keeps its images of the latest part
        (test > val > train, after `test_part` has named the test); the others are
        `dropped`.
    """
    parts = np.asarray(parts)
    unknown = sorted(set(parts.tolist()) - set(PARTS))
    if unknown:
        raise ValueError(f"parts must be among {PARTS}. Received: {unknown}")
    if test_part not in TEST_PARTS:
        raise ValueError(f"test_part must be one of {', '.join(TEST_PARTS)}. "
                         f"Received: test_part={test_part!r}")
    if test_part == "val":
        if "val" not in set(parts.tolist()):
            raise ValueError("test_part 'val' tests on the official validation part, which "
                             "this split has none of: drop --test-part val")
        # The official test part takes no role: rank -1 puts its copies in no part and
        # never beats another copy of the same image.
        parts = np.where(parts == "test", "", np.where(parts == "val", "test", parts))
    names, inverse = np.unique(parts, return_inverse=True)
    rank = np.asarray([PARTS.index(name) if name else -1 for name in names],
                      np.int64)[inverse.ravel()]
    keep = np.ones(len(parts), bool)
    if groups is not None:
        latest = np.full(groups.max() + 1 if len(groups) else 0, -1, np.int64)
        np.maximum.at(latest, groups, rank)
        keep = (rank == latest[groups]) | (rank < 0)
    train, val, test = (np.flatnonzero(keep & (rank == r)) for r in range(3))
    stratify = groups is None or bool(stratify)
    protocol, tag = "official", "official"
    if not len(val):
        _check_fraction("val_fraction", val_fraction)
        train, val = _two_way(labels, groups, val_fraction, seed + 1, train, stratify)
        protocol = f"official train/test, validation {_kind(stratify)} from train"
        tag = f"official-seed{seed}"
    if test_part == "val":
        protocol = (f"official train, tested on the official validation part, validation "
                    f"{_kind(stratify)} from train; the official test part left out")
        tag = f"official-valtest-seed{seed}"
    return Split(np.sort(train), np.sort(val), np.sort(test), protocol, tag,
                 np.flatnonzero(~keep))


def dataset_split(
    dataset: FaceDataset, folds: int | None = None, fold: int | None = None, seed: int = 0,
    test_part: str = "test",
) -> Split:
    """The split FER-Bench uses for `dataset`.

    k-fold when `folds` is given; else the official split where the dataset has one
    (FER2013); else a holdout. Subjects make it subject-independent, and duplicates never
    straddle it.

    Args:
        dataset: the loaded dataset.
        folds: number of folds for k-fold cross-validation, or None.
        fold: with `folds`, which fold is the test part.
        seed: split seed.
        test_part: one of TEST_PARTS (`official_split`); "val" needs an official split
            with a validation part, and no `folds`.

    Returns:
        The Split.

    Raises:
        ValueError: `folds` without `fold` (or the reverse), or a `test_part` the dataset
            or the protocol has no such part for (one line naming the fix).
    """
    if (folds is None) != (fold is None):
        raise ValueError(f"folds and fold go together. Received: folds={folds}, fold={fold}")
    if test_part != "test":
        if folds is not None:
            raise ValueError(f"--test-part {test_part} tests on an official part, which "
                             "k-fold replaces: drop --folds or --test-part")
        if dataset.official_split is None or "val" not in set(dataset.official_split.tolist()):
            raise ValueError(f"--test-part {test_part}: {dataset.name} has no official "
                             "validation part to test on (FER2013 has: its PublicTest): "
                             "drop --test-part")
    groups = merge_groups(dataset.subjects, dataset.duplicate_groups)
    stratify = dataset.subjects is None
    if folds is not None:
        return kfold_split(dataset.labels, groups, folds, fold, seed=seed, stratify=stratify)
    if dataset.official_split is not None:
        return official_split(dataset.official_split, dataset.labels, groups, seed=seed,
                              stratify=stratify, test_part=test_part)
    return holdout_split(dataset.labels, groups, seed=seed, stratify=stratify)
