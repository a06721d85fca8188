"""Which images of a dataset a run uses: a class subset, balanced per-class subsamples, and
the official part it is tested on (docs/datasets.md, "Selecting images").

    --classes angry,happy,sad,neutral   a subset of the classes, relabelled 0…k-1 in this order
    --train-per-class 400               a seeded draw of 400 training images of each class
    --test-per-class 100                and of 100 test images of each class
    --test-part val                     test on the official validation part (FER2013's
                                        PublicTest), validation carved from training

The class subset applies to the dataset before it is split (`select_classes`); the
subsamples to the split's training and test parts after it (`selected_split`), so the
validation part is never drawn from and never shrinks. Every choice is recorded with each
run: the selection in the data facts' `selection`, and the relabelling in the dataset's
`source.class_subset`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from datasets.core import EMOTION_ALIASES, EMOTIONS, FaceDataset
from datasets.splits import TEST_PARTS, Split, dataset_split

# A per-class count far above any FER dataset's largest class (FER2013's happy: 8,989),
# which keeps a typo from reading as "every image".
MAX_PER_CLASS = 1_000_000
MAX_SUBSAMPLE_SEED = 2**32 - 1
# Each part's draw has a generator of its own: changing the test count never moves the
# training draw.
_PART_STREAMS = {"train": 0, "test": 1}


def canonical_class(name: str) -> str:
    """The canonical emotion `name` means (`EMOTIONS`), an alias resolved (`EMOTION_ALIASES`).

    Raises:
        ValueError: no emotion is called so (the message lists the valid names).
    """
    word = str(name).strip().lower()
    canonical = EMOTION_ALIASES.get(word, word)
    if canonical not in EMOTIONS:
        aliases = ", ".join(f"{alias} for {to}" for alias, to in EMOTION_ALIASES.items())
        raise ValueError(f"unknown class {name!r}; valid classes: {', '.join(EMOTIONS)} "
                         f"(also {aliases})")
    return canonical


def canonical_classes(names: Any) -> tuple[str, ...]:
    """The canonical names of `names` (a sequence, or one comma-separated text), in order.

    Raises:
        ValueError: an unknown class, a class named twice (an alias counts as its
            canonical name), or fewer than two classes.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    classes = tuple(canonical_class(item) for item in items if str(item).strip())
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"classes must name each class once ({', '.join(repeated)} named "
                         f"more than once, aliases included). Received: classes={names!r}")
    if len(classes) < 2:
        raise ValueError(f"classes must name at least two classes to tell apart. "
                         f"Received: classes={names!r}")
    return classes


def _check_count(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1. Received: {name}={value!r}")
    if value > MAX_PER_CLASS:
        raise ValueError(f"{name} must be ≤ {MAX_PER_CLASS:,} images (more than any "
                         f"dataset's class holds). Received: {name}={value!r}")


@dataclass(frozen=True)
class DataSelection:
    """The images a run uses beyond the dataset and its split.

    Attributes:
        classes: the classes kept, canonical names in their new label order (label k is
            classes[k]); None keeps every class in the dataset's order. Aliases given are
            resolved when the selection is made.
        train_per_class: images of each class drawn from the training part; None keeps
            them all.
        test_per_class: images of each class drawn from the test part; None keeps them all.
        test_part: one of TEST_PARTS: "test", the dataset's test part; "val", its
            official validation part (FER2013's PublicTest), validation then carved from
            training and the official test part left out.
        subsample_seed: seed of the per-class draws, 0 to 2³² − 1.
    """

    classes: tuple[str, ...] | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None
    test_part: str = "test"
    subsample_seed: int = 0

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", canonical_classes(self.classes))
        _check_count("train_per_class", self.train_per_class)
        _check_count("test_per_class", self.test_per_class)
        if self.test_part not in TEST_PARTS:
            raise ValueError(f"test_part must be one of {', '.join(TEST_PARTS)}. "
                             f"Received: test_part={self.test_part!r}")
        seed = self.subsample_seed
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= \
                MAX_SUBSAMPLE_SEED:
            raise ValueError(f"subsample_seed must be an integer in [0, {MAX_SUBSAMPLE_SEED}]. "
                             f"Received: subsample_seed={seed!r}")

    def as_record(self) -> dict[str, Any]:
        """The selection as the data facts record it (JSON types)."""
        record = asdict(self)
        record["classes"] = None if self.classes is None else list(self.classes)
        return record

    def tag(self) -> str:
        """What the per-class draws add to a split's file-name-safe tag; "" for none."""
        parts = [f"{part}{count}pc" for part, count in (("train", self.train_per_class),
                                                         ("test", self.test_per_class)) if count]
        return f"-{'-'.join(parts)}-ss{self.subsample_seed}" if parts else ""

    def describe(self) -> str:
        """The draws in words, for the split's protocol; "" for none."""
        draws = [f"{count} {part} images a class" for part, count in
                 (("training", self.train_per_class), ("test", self.test_per_class)) if count]
        return f"{' and '.join(draws)} (seed {self.subsample_seed})" if draws else ""


NO_SELECTION = DataSelection()


def select_classes(dataset: FaceDataset, classes: tuple[str, ...] | None) -> FaceDataset:
    """`dataset` restricted to `classes`, relabelled 0…k-1 in their order.

    Subjects, the official split, ids and duplicate groups follow the kept images; the
    dataset's `source["class_subset"]` records the classes it had and each kept class's
    label before and after.

    Args:
        dataset: the loaded dataset.
        classes: canonical class names (`canonical_classes`); None returns `dataset`.

    Raises:
        ValueError: a class the dataset does not have, or one without images.
    """
    if classes is None:
        return dataset
    missing = [name for name in classes if name not in dataset.class_names]
    if missing:
        raise ValueError(f"--classes: {dataset.name} has no class {missing[0]!r}; its classes: "
                         f"{', '.join(dataset.class_names)}: drop it from --classes")
    old_labels = [dataset.class_names.index(name) for name in classes]
    empty = [name for name, label in zip(classes, old_labels, strict=True)
             if not (dataset.labels == label).any()]
    if empty:
        raise ValueError(f"--classes: {dataset.name} holds no image of class {empty[0]!r}: "
                         "drop it from --classes")
    keep = np.flatnonzero(np.isin(dataset.labels, old_labels))
    relabel = np.full(len(dataset.class_names), -1, np.int64)
    relabel[old_labels] = np.arange(len(classes))

    def kept(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[keep]

    groups = None
    if dataset.duplicate_groups is not None:
        # Each kept image's group becomes the index of its group's first kept image.
        _, first, inverse = np.unique(dataset.duplicate_groups[keep], return_index=True,
                                      return_inverse=True)
        groups = first[inverse.ravel()].astype(np.int64)
    duplicates = 0 if groups is None else int((groups != np.arange(len(keep))).sum())
    subset = {"from": list(dataset.class_names), "kept": list(classes),
              "labels": {name: {"before": int(old), "after": new}
                         for new, (name, old) in enumerate(zip(classes, old_labels,
                                                               strict=True))}}
    return replace(dataset, images=dataset.images[keep], labels=relabel[dataset.labels[keep]],
                   class_names=list(classes), subjects=kept(dataset.subjects),
                   official_split=kept(dataset.official_split), ids=kept(dataset.ids),
                   duplicate_groups=groups, duplicates=duplicates,
                   source={**dataset.source, "class_subset": subset})


def subsample_per_class(indices: np.ndarray, labels: np.ndarray, class_names: list[str],
                        per_class: int, seed: int, part: str) -> np.ndarray:
    """`per_class` images of every class among `indices`, drawn without replacement.

    Args:
        indices: the part's image indices.
        labels: every image's label.
        class_names: the dataset's classes (each must have `per_class` images here).
        per_class: images kept of each class.
        seed: the draw's seed.
        part: "train" or "test": which part, for the generator and the message.

    Returns:
        The kept indices, sorted.

    Raises:
        ValueError: a class has fewer than `per_class` images in the part (the message
            names it and the largest count every class can give).
    """
    rng = np.random.default_rng([seed, _PART_STREAMS[part]])
    members = [indices[labels[indices] == label] for label in range(len(class_names))]
    counts = [len(m) for m in members]
    short = min(range(len(class_names)), key=counts.__getitem__)
    if counts[short] < per_class:
        raise ValueError(f"--{part}-per-class {per_class}: the {part} part holds "
                         f"{counts[short]} images of class {class_names[short]!r}; ask for at "
                         f"most {counts[short]} a class (or drop the class with --classes)")
    drawn = [rng.choice(m, per_class, replace=False) for m in members]
    return np.sort(np.concatenate(drawn)) if drawn else indices[:0]


def selected_split(dataset: FaceDataset, selection: DataSelection, folds: int | None = None,
                   fold: int | None = None, seed: int = 0) -> Split:
    """`datasets.dataset_split` with `selection`'s test part and per-class draws.

    Args:
        dataset: the dataset, its classes already selected (`select_classes`).
        selection: the selection.
        folds: number of folds for k-fold cross-validation, or None.
        fold: with `folds`, which fold is the test part.
        seed: split seed.

    Returns:
        The Split; its protocol and tag name the draws.

    Raises:
        ValueError: as dataset_split, or a part too small for its draw.
    """
    split = dataset_split(dataset, folds, fold, seed, test_part=selection.test_part)
    train, test = split.train, split.test
    if selection.train_per_class:
        train = subsample_per_class(train, dataset.labels, dataset.class_names,
                                    selection.train_per_class, selection.subsample_seed, "train")
    if selection.test_per_class:
        test = subsample_per_class(test, dataset.labels, dataset.class_names,
                                   selection.test_per_class, selection.subsample_seed, "test")
    draws = selection.describe()
    return replace(split, train=train, test=test, tag=split.tag + selection.tag(),
                   protocol=f"{split.protocol}; {draws}" if draws else split.protocol)


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection's command-line options (`selection_of` reads them back)."""
    parser.add_argument("--classes", default=None, metavar="NAME,NAME,…",
                        help="keep only these classes, relabelled 0…k-1 in this order; "
                             "canonical names or the usual words (angry, happy, sad) "
                             "(default: every class)")
    parser.add_argument("--train-per-class", type=int, default=None, metavar="N",
                        help="train on a seeded draw of N training images of each class "
                             "(default: every training image)")
    parser.add_argument("--test-per-class", type=int, default=None, metavar="N",
                        help="test on a seeded draw of N test images of each class "
                             "(default: every test image)")
    parser.add_argument("--test-part", choices=TEST_PARTS, default="test",
                        help="the official part tested on: test (default), or val, the "
                             "official validation part (FER2013's PublicTest), validation "
                             "then carved from training")
    parser.add_argument("--subsample-seed", type=int, default=0, metavar="SEED",
                        help="seed of the per-class draws (default: 0)")


def selection_of(args: argparse.Namespace) -> DataSelection:
    """The DataSelection the options of `add_selection_arguments` ask for.

    Raises:
        ValueError: an unknown or repeated class, a count or seed out of range.
    """
    return DataSelection(classes=args.classes, train_per_class=args.train_per_class,
                         test_per_class=args.test_per_class, test_part=args.test_part,
                         subsample_seed=args.subsample_seed)
