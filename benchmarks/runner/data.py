"""An invocation's data: the dataset loaded once, and each fold's split written to one
.npz that the workers of both backends read (docs/design.md §3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner.invocation import Invocation
from datasets import FaceDataset, load_dataset
from datasets.cache import default_cache_dir
from datasets.selection import NO_SELECTION, DataSelection, select_classes, selected_split

# Skipped files listed in each run's record (all of them are counted).
MAX_LISTED_SKIPPED = 100


def prepare_data(
    dataset: FaceDataset,
    split_seed: int,
    cache_dir: Path,
    folds: int | None = None,
    fold: int | None = None,
    selection: DataSelection = NO_SELECTION,
) -> tuple[Path, dict[str, Any]]:
    """Splits `dataset` and writes the arrays every worker of this invocation reads.

    The split is datasets.dataset_split's: k-fold with `folds`, else the dataset's
    official split (FER2013), else a holdout; subject-independent where subjects exist;
    then `selection`'s test part and per-class draws (`datasets.selection.selected_split`).

    Args:
        dataset: the loaded dataset, its classes already selected.
        split_seed: seed of the split.
        cache_dir: folder for the prepared file.
        folds: number of folds for k-fold cross-validation, or None.
        fold: with `folds`, the fold whose part is the test set.
        selection: the test part and per-class draws, recorded in the data facts.

    Returns:
        The .npz path and the data facts recorded with each run. A file already there is
        reused only when it reads back in full as exactly these arrays; a damaged one
        (truncated, altered) is rebuilt in its place.
    """
    import zipfile  # np.load's error for a damaged file; only this function needs it

    split = selected_split(dataset, selection, folds=folds, fold=fold, seed=split_seed)
    fingerprint = dataset.fingerprint()
    path = cache_dir / "prepared" / f"{dataset.name}-{fingerprint}-{split.tag}.npz"
    arrays = {"class_names": np.asarray(dataset.class_names)}
    for part in ("train", "val", "test"):
        indices = getattr(split, part)
        arrays[f"x_{part}"] = dataset.images[indices]
        arrays[f"y_{part}"] = dataset.labels[indices]
    # A file left truncated or altered (full disk, a copy cut short) would fail every run
    # that reuses it; zip checks each array's CRC as it is read in full here.
    try:
        with np.load(path) as stored:
            reusable = set(stored.files) == set(arrays) and all(
                np.array_equal(stored[key], value) for key, value in arrays.items())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or damaged
        reusable = False
    if not reusable:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name so a crash never leaves a truncated file behind.
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, **arrays)
        os.replace(partial, path)
    info = {
        "fingerprint": fingerprint,
        "protocol": split.protocol,
        "split": split.tag,
        "split_seed": split_seed,
        "folds": folds,
        "fold": fold,
        "num_train": len(split.train),
        "num_val": len(split.val),
        "num_test": len(split.test),
        "class_names": dataset.class_names,
        "image_shape": list(dataset.images.shape[1:]),
        "subjects": None if dataset.subjects is None else len(set(dataset.subjects.tolist())),
        "skipped_files": len(dataset.skipped),
        "skipped": dataset.skipped[:MAX_LISTED_SKIPPED],
        "duplicates": dataset.duplicates,
        "duplicates_dropped": len(split.dropped),
        "source": dataset.source,
        "preprocessing": dataset.preprocessing,
        "selection": selection.as_record(),
    }
    return path, info


def load_invocation_data(invocation: Invocation):
    """Loads the dataset, keeps the selected classes, and writes each fold's prepared
    arrays (split, then drawn per class: `invocation.data_selection`).

    Returns:
        The dataset (its classes selected) and, per fold, (prepared .npz path, data facts
        for the records).

    Raises:
        ValueError, FileNotFoundError: the dataset cannot be read (the message says why).
    """
    cache = default_cache_dir()
    dataset = load_dataset(invocation.dataset, invocation.data_dir, invocation.image_size,
                           kdef_angles=invocation.kdef_angles, cache_dir=cache,
                           synthetic_subjects=invocation.synthetic_subjects)
    dataset = select_classes(dataset, invocation.data_selection.classes)
    prepared = {fold: prepare_data(dataset, split_seed=0, cache_dir=cache,
                                   folds=invocation.folds, fold=fold,
                                   selection=invocation.data_selection)
                for fold in invocation.fold_indices()}
    return dataset, prepared


def check_batch_size(invocation: Invocation,
                     prepared: dict[int | None, tuple[Path, dict[str, Any]]]) -> None:
    """Raises ValueError if a model's batch holds more images than a fold's training split.

    Such a run would train on one smaller batch per epoch while recording the batch size
    asked for.
    """
    model, batch_size = max(((m, t.batch_size) for m, t in invocation.train.items()),
                            key=lambda pair: pair[1])
    whose = f" ({model})" if model in invocation.recipe.models else ""
    for fold, (_, info) in prepared.items():
        if batch_size > info["num_train"]:
            where = "" if fold is None else f" of fold {fold}"
            raise ValueError(f"batch_size must be ≤ {info['num_train']}, the size of the "
                             f"training split{where}. Received: batch_size={batch_size}{whose}")
