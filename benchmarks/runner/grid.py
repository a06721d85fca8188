"""`run_grid`: every (fold, model, seed, backend) run of one invocation, each in its own worker.

The library behind `python -m benchmarks.run`: a `Grid` says what to run, validated when it
is made; `run_grid` loads the data once, runs each job in a fresh worker process, appends
every record (failed runs included) to a new report folder's results.jsonl and writes the
report next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backends import BACKEND_NAMES, check_available
from backends.base import TrainConfig
from backends.catalog import check_model_name
from backends.init import INIT_MODES
from benchmarks.ci.faults import InjectedFaults, injected_faults
from benchmarks.record.store import append_record, new_report_dir
from benchmarks.report import write_report
from benchmarks.runner.config import MeasureConfig, RunSpec
from benchmarks.runner.env import available_cores
from benchmarks.runner.harness import prepare_data, run_in_worker
from datasets import check_dataset_name, load_dataset
from datasets.cache import default_cache_dir
from datasets.preprocess import KDEF_ANGLES
from datasets.synthetic import DEFAULT_SUBJECTS
from datasets.synthetic import generate as generate_synthetic


@dataclass(frozen=True)
class Grid:
    """What one invocation runs: backends × models × seeds (× folds) on one dataset.

    Attributes:
        dataset: dataset name (`datasets.DATASET_NAMES`).
        backends: backend names, in run order within each (fold, model, seed).
        models: catalog model names.
        train: the shared training recipe; its seed is the first seed.
        seeds: number of seeds: train.seed, train.seed + 1, …
        folds: k-fold cross-validation (subject-independent where subjects exist), or None
            for the dataset's holdout.
        fold: with `folds`, run only this fold (0-based); None runs every fold.
        data_dir: the dataset's folder (None: $FERBENCH_DATA/<dataset> or data/<dataset>).
        kdef_angles: KDEF pictures to use.
        image_size: side of the square grayscale input.
        synthetic_subjects: people in the synthetic set.
        init: "shared" (the same initial weights in both frameworks) or "native".
        threads: intra- and inter-op threads in either framework.
        deterministic: both frameworks' deterministic-algorithm switches.
        measure: how the workers measure beyond training and evaluation.
    """

    dataset: str
    backends: tuple[str, ...]
    models: tuple[str, ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: int = 1
    folds: int | None = None
    fold: int | None = None
    data_dir: Path | None = None
    kdef_angles: str = "frontal"
    image_size: int = 48
    synthetic_subjects: int = DEFAULT_SUBJECTS
    init: str = "shared"
    threads: int = field(default_factory=available_cores)
    deterministic: bool = False
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        check_dataset_name(self.dataset)
        if not self.backends:
            raise ValueError(f"backends is empty; valid backends: {', '.join(BACKEND_NAMES)}")
        for backend in self.backends:
            if backend not in BACKEND_NAMES:
                raise ValueError(f"unknown backend {backend!r}; valid backends: "
                                 f"{', '.join(BACKEND_NAMES)}")
        if not self.models:
            raise ValueError("models is empty: name at least one model")
        for model in self.models:
            check_model_name(model)
        for name in ("seeds", "threads", "image_size", "synthetic_subjects"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1. Received: {name}={value!r}")
        if self.init not in INIT_MODES:
            raise ValueError(f"init must be one of {', '.join(INIT_MODES)}. "
                             f"Received: init={self.init!r}")
        if self.kdef_angles not in KDEF_ANGLES:
            raise ValueError(f"kdef_angles must be one of {', '.join(KDEF_ANGLES)}. "
                             f"Received: kdef_angles={self.kdef_angles!r}")
        self.fold_indices()  # validates folds and fold

    def fold_indices(self) -> list[int | None]:
        """The folds to run: [None] without k-fold, [fold] for one, else all of them."""
        if self.folds is None:
            if self.fold is not None:
                raise ValueError(f"fold needs folds. Received: fold={self.fold}")
            return [None]
        if self.folds < 2:
            raise ValueError(f"folds must be ≥ 2. Received: folds={self.folds}")
        if self.fold is None:
            return list(range(self.folds))
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must be in [0, {self.folds - 1}]. Received: fold={self.fold}")
        return [self.fold]

    def jobs(self) -> list[tuple[int | None, str, int, str]]:
        """(fold, model, seed, backend) of every run, in run order.

        The backends of one (fold, model, seed) run back to back: the runs a paired test
        compares then see the same machine conditions.
        """
        seeds = range(self.train.seed, self.train.seed + self.seeds)
        return [(fold, model, seed, backend) for fold in self.fold_indices()
                for model in self.models for seed in seeds for backend in self.backends]


def check_ready(grid: Grid) -> InjectedFaults | None:
    """Raises before anything runs if a framework is missing or a test switch is stray.

    Returns:
        The test-only faults the environment arms (benchmarks.ci.faults), read here once
        for every run of the grid; None for real measurements.

    Raises:
        MissingFrameworkError: a backend's framework is not installed.
        ValueError: a test-only fault-injection switch is set but not armed, or malformed.
    """
    for backend in grid.backends:
        check_available(backend)
    return injected_faults()


def load_grid_data(grid: Grid):
    """Loads the dataset and writes each fold's prepared arrays.

    Returns:
        The dataset and, per fold, (prepared .npz path, data facts for the records).

    Raises:
        ValueError, FileNotFoundError: the dataset cannot be read (the message says why).
    """
    cache = default_cache_dir()
    if grid.dataset == "synthetic":
        dataset = generate_synthetic(num_subjects=grid.synthetic_subjects,
                                     image_size=grid.image_size)
    else:
        dataset = load_dataset(grid.dataset, grid.data_dir, grid.image_size,
                               kdef_angles=grid.kdef_angles, cache_dir=cache)
    prepared = {fold: prepare_data(dataset, split_seed=0, cache_dir=cache, folds=grid.folds,
                                   fold=fold) for fold in grid.fold_indices()}
    return dataset, prepared


def _say(line: str) -> None:
    print(line, flush=True)


def run_grid(grid: Grid, out_root: Path,
             on_line: Callable[[str], None] = _say) -> tuple[Path, list[dict[str, Any]]]:
    """Runs every job of `grid`, each in a fresh worker, into a new report folder.

    Args:
        grid: what to run.
        out_root: parent of the new report folder.
        on_line: receives every progress line (default: printed at once).

    Returns:
        The report folder and the records, in run order (failed runs included).

    Raises:
        MissingFrameworkError, ValueError, FileNotFoundError: before any folder is made.
    """
    faults = check_ready(grid)
    dataset, prepared = load_grid_data(grid)
    report_dir = new_report_dir(out_root, grid.dataset)
    on_line(f"{dataset.name}: {len(dataset)} images, {len(dataset.class_names)} classes, "
            f"{len(dataset.skipped)} files skipped, {dataset.duplicates} duplicates; "
            f"results → {report_dir}")
    records = []
    jobs = grid.jobs()
    for number, (fold, model, seed, backend) in enumerate(jobs, 1):
        path, data_info = prepared[fold]
        if number == 1 or fold != jobs[number - 2][0]:
            on_line(f"{data_info['protocol']}: {data_info['num_train']} train / "
                    f"{data_info['num_val']} val / {data_info['num_test']} test images")
        on_line(f"== run {number}/{len(jobs)}: {backend} {model} seed {seed}")
        spec = RunSpec(backend=backend, model=model, dataset=grid.dataset,
                       prepared_data=str(path), train=replace(grid.train, seed=seed),
                       init=grid.init, threads=grid.threads, deterministic=grid.deterministic,
                       fold=fold, data_info=data_info, measure=grid.measure,
                       faults=faults)
        record = run_in_worker(spec, on_line)
        if record["status"] != "ok":
            on_line(f"   run failed: {record['error']}")
        append_record(report_dir, record)
        records.append(record)
    write_report(report_dir, records)
    return report_dir, records
