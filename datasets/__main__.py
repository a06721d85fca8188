"""Inspect a dataset as FER-Bench reads it.

    python -m datasets describe --dataset kdef --data-dir ~/data/KDEF_and_AKDEF
    python -m datasets describe --dataset ck+ --folds 10
    python -m datasets describe --dataset fer2013 --classes angry,happy,sad,neutral \
        --train-per-class 400 --test-per-class 100 --test-part val

Prints the layout found, counts per class and split, subjects, skipped files (with the
reason) and duplicates. Exits with status 2 and a one-line error when the data is missing
or malformed, or when the folder holds another dataset than the one named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from datasets import (
    DATASET_ALIASES,
    DATASET_NAMES,
    FaceDataset,
    Split,
    check_dataset_name,
    load_dataset,
)
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import (
    add_selection_arguments,
    select_classes,
    selected_split,
    selection_of,
)

MAX_LISTED_SKIPPED = 50


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets",
                                     description="Inspect FER-Bench's datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="counts per class and split, subjects, "
                                                    "skipped files, duplicates")
    # An alias (natural-faces) is taken too: main resolves it (check_dataset_name).
    describe.add_argument("--dataset", required=True, choices=(*DATASET_NAMES, *DATASET_ALIASES))
    describe.add_argument("--data-dir", type=Path, default=None,
                          help="the dataset folder (default: $FERBENCH_DATA/<dataset> or "
                               "data/<dataset>)")
    describe.add_argument("--image-size", type=int, default=48)
    describe.add_argument("--kdef-angles", default="frontal", choices=KDEF_ANGLES)
    describe.add_argument("--folds", type=int, default=None,
                          help="show the k folds instead of the default split")
    describe.add_argument("--split-seed", type=int, default=0)
    add_selection_arguments(describe)
    describe.add_argument("--cache-dir", type=Path, default=None,
                          help="decoded-dataset cache (default: $FERBENCH_CACHE or "
                               "~/.cache/fer-bench)")
    return parser


def _table(dataset: FaceDataset, columns: dict[str, np.ndarray]) -> list[str]:
    """Rows: classes and a total; columns: image counts of each index set."""
    width = max(8, *(len(name) + 2 for name in columns))
    lines = [f"{'class':<12}" + "".join(f"{name:>{width}}" for name in columns)]
    for label, name in [*enumerate(dataset.class_names), (None, "total")]:
        counts = [len(idx) if label is None else int((dataset.labels[idx] == label).sum())
                  for idx in columns.values()]
        lines.append(f"{name:<12}" + "".join(f"{count:>{width}}" for count in counts))
    return lines


def _subjects(dataset: FaceDataset, indices: np.ndarray) -> int:
    return len(set(dataset.subjects[indices].tolist())) if dataset.subjects is not None else 0


def describe(dataset: FaceDataset, splits: list[Split]) -> str:
    """A readable account of `dataset` and its `splits` (one split, or the k folds)."""
    source = dataset.source
    n_subjects = _subjects(dataset, np.arange(len(dataset)))
    lines = [
        f"{dataset.name}: {len(dataset)} images of {dataset.images.shape[1]}×"
        f"{dataset.images.shape[2]}, {len(dataset.class_names)} classes, "
        + (f"{n_subjects} subjects" if dataset.subjects is not None else "no subject ids"),
        f"folder: {source.get('folder', '-')}   layout: {source.get('layout', '-')}",
        f"duplicates: {dataset.duplicates} images repeat another's pixels "
        f"({source.get('duplicate_groups_with_conflicting_labels', 0)} groups with "
        "conflicting labels)",
        "",
    ]
    if len(splits) == 1:
        split = splits[0]
        lines.append(f"split: {split.protocol}" + (
            f"; {len(split.dropped)} duplicate copies straddling it dropped"
            if len(split.dropped) else ""))
        lines += _table(dataset, {"train": split.train, "val": split.val, "test": split.test,
                                  "total": np.arange(len(dataset))})
        if dataset.subjects is not None:
            lines.append("subjects" + " " * 4 + "  ".join(
                f"{part} {_subjects(dataset, getattr(split, part))}"
                for part in ("train", "val", "test")))
    else:
        lines.append(f"split: {splits[0].protocol.rsplit(',', 1)[0]}; test images per fold")
        lines += _table(dataset, {f"fold {i}": s.test for i, s in enumerate(splits)})
        for i, split in enumerate(splits):
            lines.append(f"fold {i}: {len(split.train)} train / {len(split.val)} val / "
                         f"{len(split.test)} test images, "
                         f"{_subjects(dataset, split.test)} test subjects")
    lines += ["", f"skipped files: {len(dataset.skipped)}"]
    lines += [f"  {s['path']}: {s['reason']}" for s in dataset.skipped[:MAX_LISTED_SKIPPED]]
    if len(dataset.skipped) > MAX_LISTED_SKIPPED:
        lines.append(f"  … and {len(dataset.skipped) - MAX_LISTED_SKIPPED} more")
    facts = {k: v for k, v in source.items() if k not in ("folder", "layout")}
    lines += ["", "source: " + ", ".join(f"{k}={v}" for k, v in facts.items()),
              "preprocessing: " + ", ".join(f"{k}={v}" for k, v in
                                            dataset.preprocessing.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        selection = selection_of(args)
        dataset = load_dataset(check_dataset_name(args.dataset), args.data_dir, args.image_size,
                               kdef_angles=args.kdef_angles, cache_dir=args.cache_dir)
        dataset = select_classes(dataset, selection.classes)
        if args.folds is None:
            splits = [selected_split(dataset, selection, seed=args.split_seed)]
        else:
            splits = [selected_split(dataset, selection, args.folds, fold, args.split_seed)
                      for fold in range(max(args.folds, 1))]
    except (FileNotFoundError, ValueError) as error:  # DatasetFormatError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(dataset, splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
