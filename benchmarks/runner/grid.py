"""`run_grid`: every (fold, model, seed, backend) run of one invocation, each in its own worker.

The library behind `python -m benchmarks.run`: a `Grid` says what to run, validated when it
is made (names, and bounds on every number that could exhaust the machine); `run_grid`
checks the output and cache folders, loads the data once, checks the batch size against
the training split, then runs each job in a fresh worker process, appends every record
(failed, timed-out and interrupted runs included) to a new report folder's results.jsonl,
made at the first record, and writes the report next to it. Ctrl-C (or SIGTERM, within
`interrupts.stoppable`) stops the grid: the run it interrupted is recorded as such, and
what finished is reported.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from backends import BACKEND_NAMES, check_available
from backends.base import FLOAT16_NEEDS_GPU, MAX_SEED, TrainConfig
from backends.catalog import DEFAULT_NUM_CLASSES, check_model_name, model_options
from backends.flops import model_cost
from backends.init import INIT_MODES
from backends.pretrained import Checkpoint, read_checkpoint
from backends.registry import bfloat16_refusal, visible_gpu
from benchmarks.analysis.stats import DEFAULT_EQUIVALENCE_MARGIN, check_equivalence_margin
from benchmarks.ci.faults import InjectedFaults, injected_faults
from benchmarks.messages import quoted
from benchmarks.record.schema import ERROR, INTERRUPTED, OK, RUN_ID, STATUS, failed_record
from benchmarks.record.store import (
    RESULTS_FILE,
    WEIGHTS_DIR,
    append_record,
    new_report_dir,
    test_split_file_name,
    weights_file_name,
)
from benchmarks.report import write_report
from benchmarks.runner.config import MeasureConfig, RunSpec
from benchmarks.runner.env import SUITE_ROOT, available_cores
from benchmarks.runner.harness import RunInterrupted, prepare_data, run_in_worker
from benchmarks.runner.interrupts import deferred, stop_name
from benchmarks.runner.recipe import NO_RECIPE, Recipe
from benchmarks.runner.worker import TRAIN_FLOPS_MULTIPLIER
from datasets import check_dataset_name, default_data_dir, load_dataset
from datasets.cache import default_cache_dir
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import NO_SELECTION, DataSelection, select_classes
from datasets.synthetic import DEFAULT_SUBJECTS
from datasets.synthetic import generate as generate_synthetic

# --- bounds: what one invocation may ask of the machine ----------------------------------
# Each is generous for its purpose and far below what exhausts a 24 GB machine; README.md
# states them with the options.
MAX_EPOCHS = 1000
MAX_SEEDS = 100
# Leave-one-subject-out on the largest subject set here (CK+, 123 people) is 123 folds; the
# list of folds is made when the grid is, so a billion would exhaust memory first.
MAX_FOLDS = 1000
# 16 is the synthetic faces' smallest; at 256 the card models train on a GPU in minutes,
# while at 5000 one synthetic subject took 396 s and 13 GB to draw.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 256
# vgg16 and alexnet size their classifier from the input: alexnet at 256 × 256 has 1.03
# billion parameters, about 16 GB to train with Adam (weights, gradients, two moments).
MAX_TRAINABLE_PARAMS = 200_000_000
# Pixels in one batch: its activations are what a large batch runs out of memory with
# (vgg16 at 256 × 256 keeps about 160 MB of them per image). 1820 images at 48 × 48, 64 at
# 256 × 256. The latency probe predicts one batch of this size too.
MAX_BATCH_PIXELS = 2**22
MAX_SYNTHETIC_SUBJECTS = 500  # 10,500 images; about 3 minutes to draw at 256 × 256
# The default per-run time limit: a fixed allowance (framework import, tracing, latency
# probe, matmul calibration) plus the run's FLOPs at a rate 15 times below the slowest
# seen (proposed_cnn, 2 oversubscribed cores: 26 img/s, 15 GFLOP/s): only a worker that
# is hung or stopped reaches it.
RUN_TIMEOUT_BASE_S = 600.0
RUN_TIMEOUT_FLOPS_PER_S = 1e9
# threading.Timer's limit is far above; this keeps any timeout printable and meaningful.
MAX_RUN_TIMEOUT_S = 1e7
# `--save-weights`: "best" keeps each ok run's selected (best-epoch) weights beside its
# record (backends/weights.py); "none" keeps none (vgg16's take 134 MB a run).
SAVE_WEIGHTS = ("best", "none")


def check_int(name: str, value: Any, low: int, high: int, why: str) -> None:
    """Raises ValueError ("name must be an integer ≥ low. Received: name=…") unless
    `value` is an integer in [low, high]; `why` says what bounds it above."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}. Received: {name}={quoted(value)}")
    if value > high:
        raise ValueError(f"{name} must be ≤ {high} ({why}). Received: {name}={quoted(value)}")


def _model_fits(model: str, image_size: int) -> bool:
    try:
        cost = model_cost(model, (image_size, image_size, 1), DEFAULT_NUM_CLASSES)
    except ValueError:  # the input does not survive the model's down-sampling
        return False
    return cost.params <= MAX_TRAINABLE_PARAMS


@functools.cache
def image_size_range(model: str) -> tuple[int, int]:
    """The smallest and largest image size `model` trains at here.

    Within [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE], at least as large as its down-sampling needs
    and at most MAX_TRAINABLE_PARAMS trainable parameters (with DEFAULT_NUM_CLASSES).
    """
    sizes = [s for s in range(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE + 1) if _model_fits(model, s)]
    return sizes[0], sizes[-1]


def _check_image_size(model: str, image_size: int) -> None:
    low, high = image_size_range(model)
    if image_size < low:
        raise ValueError(f"image_size must be ≥ {low} for {model}: its down-sampling leaves "
                         f"nothing of a smaller input. Received: image_size={image_size}")
    if image_size > high:
        raise ValueError(f"image_size must be ≤ {high} for {model}: its classifier grows with "
                         f"the input, past {MAX_TRAINABLE_PARAMS:,} trainable parameters "
                         f"(16 bytes each to train with Adam). Received: image_size={image_size}")


class Job(NamedTuple):
    """One run of a grid, as `Grid.jobs` plans it.

    Attributes:
        fold: the fold, or None for a holdout.
        model: catalog model name.
        seed: the train seed.
        backend: backend name.
        position: the run's place among the runs of its (fold, model, seed), 0 first.
        twin: whether the run is the twin of the same (fold, model, seed, backend)
            (`Grid.twins`).
    """

    fold: int | None
    model: str
    seed: int
    backend: str
    position: int
    twin: bool = False


def balanced_order(backends: tuple[str, ...], replicate: int) -> tuple[str, ...]:
    """The backends in the order replicate number `replicate` runs them: ABBA.

    Replicates 0, 1, 2, 3 run A B, B A, B A, A B, and so on. Over every four replicates
    each backend runs first twice, so a first-position effect cancels, and each
    backend's slots in time have the same sum and the same sum of squares, so that a
    linear or quadratic drift over the invocation (page cache, heat, a load trend)
    falls on both frameworks alike; plain alternation (A B, B A, A B, …) balances the
    first two only.

    Args:
        backends: the backends in their listed order.
        replicate: the replicate's number, 0-based, over (fold, seed) within a model.

    Returns:
        `backends`, reversed for the replicates where B goes first.
    """
    return tuple(reversed(backends)) if replicate % 4 in (1, 2) else tuple(backends)


def max_batch_size(image_size: int) -> int:
    """The largest batch of `image_size`² images within MAX_BATCH_PIXELS."""
    return MAX_BATCH_PIXELS // image_size**2


@dataclass(frozen=True)
class Grid:
    """What one invocation runs: backends × models × seeds (× folds) on one dataset.

    Attributes:
        dataset: dataset name (`datasets.DATASET_NAMES`).
        backends: backend names, each once; the first (fold, model, seed) runs them in
            this order, the others in `balanced_order`.
        models: catalog model names, each once (replicates are seeds).
        recipe: the training recipe the models' TrainConfigs resolve from.
        explicit: TrainConfig settings given explicitly (command line, preset), above the
            recipe (`Recipe.train_config`).
        seeds: number of seeds (1 to MAX_SEEDS): a model's train seed, that seed + 1, …
        folds: k-fold cross-validation (subject-independent where subjects exist), or None
            for the dataset's holdout.
        fold: with `folds`, run only this fold (0-based); None runs every fold.
        data_dir: the dataset's folder (None: $FERBENCH_DATA/<dataset> or data/<dataset>).
        kdef_angles: KDEF pictures to use.
        image_size: side of the square grayscale input, MIN_IMAGE_SIZE to MAX_IMAGE_SIZE
            and within every model's `image_size_range`.
        synthetic_subjects: people in the synthetic set (1 to MAX_SYNTHETIC_SUBJECTS).
        init: "shared" (the same initial weights in both frameworks) or "native".
        threads: intra- and inter-op threads in either framework, at most the machine's
            logical cores.
        deterministic: both frameworks' deterministic-algorithm switches.
        measure: how the workers measure beyond training and evaluation.
        run_timeout_s: seconds each run may take before its worker is killed and the run
            recorded as timed out (1 to MAX_RUN_TIMEOUT_S); None: `default_run_timeout`.
        save_weights: one of SAVE_WEIGHTS: "best" keeps each ok run's kept-epoch weights
            and test probabilities in the report folder's `weights/`, with the test
            images of each split; "none" keeps nothing.
        pretrained: a checkpoint every run starts from (`backends.pretrained`): every
            model must be its architecture (checked by `read_pretrained`, before
            anything is written); needs init "shared", whose weights the layers it does
            not provide take. None: start from `init`'s weights.
        twins: also run every (fold, model, seed, backend) a second time from initial
            weights one ulp away (`backends.init.one_ulp_away`), for the chaos floor the
            report sets the framework difference against; needs init "shared".
        equivalence_margin: the accuracy margin (a fraction, in (0, 1)) within which the
            report calls the frameworks equivalent; recorded in every record.
        data_selection: the classes kept, the per-class draws and the official part
            tested on (`datasets.selection`), recorded in every record's data facts.
        train: model → its TrainConfig, resolved from `recipe` and `explicit` when the
            grid is made; its seed is the model's first seed. Each has at most MAX_EPOCHS
            epochs and a batch of at most `max_batch_size(image_size)` images (and,
            checked once the data is split, at most the training split).
    """

    dataset: str
    backends: tuple[str, ...]
    models: tuple[str, ...]
    recipe: Recipe = NO_RECIPE
    explicit: Mapping[str, Any] = field(default_factory=dict)
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
    run_timeout_s: float | None = None
    save_weights: str = "best"
    pretrained: Path | None = None
    twins: bool = False
    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN
    data_selection: DataSelection = NO_SELECTION
    train: Mapping[str, TrainConfig] = field(init=False)

    def __post_init__(self) -> None:
        # Aliases (natural-faces) are recorded under the dataset's canonical name.
        object.__setattr__(self, "dataset", check_dataset_name(self.dataset))
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
        for name, names in (("backends", self.backends), ("models", self.models)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                # Two runs of one model and seed are no replicates: they share every
                # random draw, so they would only narrow the intervals falsely.
                raise ValueError(f"{name} must name each one once ({', '.join(repeated)} "
                                 "repeated); for replicates use seeds (--seeds N). "
                                 f"Received: {name}={','.join(names)}")
        check_int("seeds", self.seeds, 1, MAX_SEEDS, "runs per (backend, model, fold)")
        check_int("threads", self.threads, 1, os.cpu_count() or 1,
                   "this machine's logical cores")
        check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
                   "pixels a side")
        check_int("synthetic_subjects", self.synthetic_subjects, 1, MAX_SYNTHETIC_SUBJECTS,
                   "21 images each")
        object.__setattr__(self, "train", {model: self.recipe.train_config(model, self.explicit)
                                           for model in self.models})
        for model, train in self.train.items():
            # Only a model's own table can set it apart: then say which model it is.
            whose = f" of {model}" if model in self.recipe.models else ""
            check_int("epochs", train.epochs, 1, MAX_EPOCHS,
                       f"passes over the training set{whose}")
            check_int("batch_size", train.batch_size, 1, max_batch_size(self.image_size),
                       f"at image_size {self.image_size}: at most {MAX_BATCH_PIXELS:,} pixels "
                       f"a batch, whose activations must fit in memory{whose}")
            if train.seed + self.seeds - 1 > MAX_SEED:
                raise ValueError(f"seed + seeds - 1 must be ≤ {MAX_SEED}, the largest seed the "
                                 f"frameworks take{whose}. Received: seed={train.seed}, "
                                 f"seeds={self.seeds}")
            _check_image_size(model, self.image_size)
            model_options(model, train.dropout)  # a rate for a model without dropout layers
        timeout = self.run_timeout_s
        # `not low <= timeout` also rejects NaN.
        if timeout is not None and not 1 <= timeout <= MAX_RUN_TIMEOUT_S:
            raise ValueError(f"run_timeout_s must be in [1, {MAX_RUN_TIMEOUT_S:g}] seconds. "
                             f"Received: run_timeout_s={timeout!r}")
        if self.init not in INIT_MODES:
            raise ValueError(f"init must be one of {', '.join(INIT_MODES)}. "
                             f"Received: init={self.init!r}")
        if self.pretrained is not None and self.init != "shared":
            raise ValueError("pretrained weights replace the shared initial weights, which the "
                             "layers a checkpoint cannot provide take in both frameworks: "
                             f"drop --init {self.init} (or --pretrained)")
        for model, train in self.train.items():
            if train.freeze_epochs and self.pretrained is None:
                raise ValueError(f"freeze_epochs {train.freeze_epochs} (of {model}) needs "
                                 "--pretrained: it trains a checkpoint's re-initialised layers "
                                 "alone; without one, use --freeze-epochs 0")
        if self.twins and self.init != "shared":
            raise ValueError("twins need init 'shared': a twin starts from the shared initial "
                             "weights moved by one ulp, which native initialisers do not "
                             f"draw. Received: init={self.init!r}; drop --init {self.init} "
                             "(or --twins)")
        check_equivalence_margin(self.equivalence_margin)
        if self.save_weights not in SAVE_WEIGHTS:
            raise ValueError(f"save_weights must be one of {', '.join(SAVE_WEIGHTS)}. "
                             f"Received: save_weights={self.save_weights!r}")
        if not isinstance(self.data_selection, DataSelection):
            raise ValueError("data_selection must be a datasets.selection.DataSelection. "
                             f"Received: data_selection={quoted(self.data_selection)}")
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
        check_int("folds", self.folds, 2, MAX_FOLDS, "more than any dataset here has people")
        if self.fold is None:
            return list(range(self.folds))
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must be in [0, {self.folds - 1}]. Received: fold={self.fold}")
        return [self.fold]

    def jobs(self) -> list[Job]:
        """Every run, in run order.

        The runs of one (fold, model, seed) run back to back, so that the runs a paired
        test compares see the same machine conditions: its backends in `balanced_order`
        (which goes first alternates ABBA over the model's (fold, seed) replicates), then,
        with `twins`, their twins in the same order.
        """
        jobs = []
        for fold_number, fold in enumerate(self.fold_indices()):
            for model in self.models:
                first = self.train[model].seed
                for seed in range(first, first + self.seeds):
                    replicate = fold_number * self.seeds + seed - first
                    order = balanced_order(self.backends, replicate)
                    runs = [(backend, False) for backend in order]
                    runs += [(backend, True) for backend in order] if self.twins else []
                    jobs += [Job(fold, model, seed, backend, position, twin)
                             for position, (backend, twin) in enumerate(runs)]
        return jobs

    def dataset_folder(self) -> Path | None:
        """The folder the dataset is read from; None for the generated synthetic set."""
        if self.dataset == "synthetic":
            return None
        return self.data_dir if self.data_dir is not None else default_data_dir(self.dataset)


def default_run_timeout(grid: Grid, model: str, data_info: dict[str, Any]) -> float:
    """The time limit of one run of `model` when `grid.run_timeout_s` is None.

    RUN_TIMEOUT_BASE_S plus the run's floating-point work (training at
    TRAIN_FLOPS_MULTIPLIER forward passes per image, validation every epoch, the test set)
    at RUN_TIMEOUT_FLOPS_PER_S, at most MAX_RUN_TIMEOUT_S.

    Args:
        grid: the grid the run belongs to.
        model: the run's model.
        data_info: the prepared data's facts (`harness.prepare_data`).
    """
    flops = model_cost(model, tuple(data_info["image_shape"]),
                       len(data_info["class_names"])).flops
    images = ((TRAIN_FLOPS_MULTIPLIER * data_info["num_train"] + data_info["num_val"])
              * grid.train[model].epochs + data_info["num_test"])
    return min(RUN_TIMEOUT_BASE_S + flops * images / RUN_TIMEOUT_FLOPS_PER_S, MAX_RUN_TIMEOUT_S)


def _check_folder(path: Path, name: str, fix: str) -> None:
    """Raises ValueError unless `path` is a folder this process can write in, or can make."""
    existing = path
    # mkdir(parents=True) makes what is missing; what exists must be a writable folder.
    while not (existing.exists() or existing.is_symlink()):
        existing = existing.parent
    if not existing.is_dir():
        what = ("is not a folder" if existing == path
                else f"cannot be made: {existing} is not a folder")
        raise ValueError(f"{name} {path} {what}: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path} is not writable (no write permission in {existing}): "
                         f"{fix}")


def check_folders(grid: Grid, out_root: Path) -> None:
    """Raises before anything is read or written if the output or cache folder is unusable.

    Raises:
        ValueError: `out_root` or the cache folder (`datasets.cache.default_cache_dir`) is,
            or lies under, something other than a writable folder, or `out_root` lies
            inside the dataset folder, which is never written to.
    """
    _check_folder(out_root, "--out", "pass a folder for the report folders (made if missing)")
    cache = default_cache_dir()
    if "FERBENCH_CACHE" in os.environ:
        _check_folder(cache, "FERBENCH_CACHE", "set FERBENCH_CACHE to a folder (made if "
                                               "missing), or unset it for ~/.cache/fer-bench")
    else:
        _check_folder(cache, "the cache folder", "remove what is there, or set FERBENCH_CACHE "
                                                 "to a folder elsewhere")
    data = grid.dataset_folder()
    if data is not None:
        out, data_resolved = out_root.resolve(), data.resolve()
        if out == data_resolved or data_resolved in out.parents:
            raise ValueError(f"--out {out_root} lies inside the dataset folder {data}; "
                             "FER-Bench never writes into dataset folders: pass an --out "
                             "outside it")


def check_ready(grid: Grid) -> InjectedFaults | None:
    """Raises before anything runs if a framework is missing or a test switch is stray.

    Returns:
        The test-only faults the environment arms (benchmarks.ci.faults), read here once
        for every run of the grid; None for real measurements.

    Raises:
        MissingFrameworkError: a backend's framework is not installed.
        ValueError: a test-only fault-injection switch is set but not armed, or malformed;
            or float16 is asked for where a backend would compute on the CPU, or bfloat16
            where a backend has no bfloat16 convolution.
    """
    for backend in grid.backends:
        check_available(backend)
    # The workers would refuse these too, one failed record each; here they are bad input.
    precisions = {train.precision for train in grid.train.values()}
    for backend in grid.backends:
        if "float16" in precisions and visible_gpu(backend)[0] is None:
            raise ValueError(f"{backend}: {FLOAT16_NEEDS_GPU}")
        if "bfloat16" in precisions and (refusal := bfloat16_refusal(backend)):
            raise ValueError(f"{backend}: {refusal}")
    return injected_faults()


def read_pretrained(grid: Grid) -> Checkpoint | None:
    """Reads `grid.pretrained` and checks that it holds every model's layers.

    Returns:
        The checkpoint; None when the grid has none.

    Raises:
        ValueError (a CheckpointError): the file is missing, is no checkpoint, is refused
            by `weights_only`, or is another architecture's; one line naming the file.
    """
    if grid.pretrained is None:
        return None
    checkpoint = read_checkpoint(grid.pretrained)
    for model in grid.models:
        checkpoint.check_model(model)
    return checkpoint


def load_grid_data(grid: Grid):
    """Loads the dataset, keeps the selected classes, and writes each fold's prepared
    arrays (split, then drawn per class: `grid.data_selection`).

    Returns:
        The dataset (its classes selected) and, per fold, (prepared .npz path, data facts
        for the records).

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
    dataset = select_classes(dataset, grid.data_selection.classes)
    prepared = {fold: prepare_data(dataset, split_seed=0, cache_dir=cache, folds=grid.folds,
                                   fold=fold, selection=grid.data_selection)
                for fold in grid.fold_indices()}
    return dataset, prepared


def check_batch_size(grid: Grid, prepared: dict[int | None, tuple[Path, dict[str, Any]]]) -> None:
    """Raises ValueError if a model's batch holds more images than a fold's training split.

    Such a run would train on one smaller batch per epoch while recording the batch size
    asked for.
    """
    model, batch_size = max(((m, t.batch_size) for m, t in grid.train.items()),
                            key=lambda pair: pair[1])
    whose = f" ({model})" if model in grid.recipe.models else ""
    for fold, (_, info) in prepared.items():
        if batch_size > info["num_train"]:
            where = "" if fold is None else f" of fold {fold}"
            raise ValueError(f"batch_size must be ≤ {info['num_train']}, the size of the "
                             f"training split{where}. Received: batch_size={batch_size}{whose}")


class ResultsNotWritten(RuntimeError):
    """The report folder could not take a record or the report (a full disk, …).

    The message says what was kept and how to rebuild the rest.
    """


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the grid; what finished, and the run it interrupted, are
    recorded.

    Attributes:
        report_dir: the report folder; None when no record was kept.
        records: the records kept, in run order.
        planned: the number of runs the grid had.
        reported: whether the report of `records` was written.
    """

    def __init__(self, report_dir: Path | None, records: list[dict[str, Any]], planned: int,
                 reported: bool) -> None:
        super().__init__(f"interrupted after {len(records)} of {planned} runs")
        self.report_dir, self.records = report_dir, records
        self.planned, self.reported = planned, reported


class _Results:
    """One grid's report folder, made at its first record, and the records kept in it.

    Made lazily, so that an invocation that records nothing leaves no empty folder.
    """

    def __init__(self, out_root: Path, dataset: str, on_line: Callable[[str], None]) -> None:
        self.out_root, self.dataset, self.on_line = out_root, dataset, on_line
        self.folder: Path | None = None
        self.records: list[dict[str, Any]] = []

    def keep(self, record: dict[str, Any], label: str, weights: Path | None = None,
             test_split: tuple[Path, str] | None = None) -> None:
        """Appends `record` to the results file (making the folder first) and to `records`.

        Args:
            record: the run's record.
            label: how error messages name the run.
            weights: the weights file the worker wrote, moved into WEIGHTS_DIR before the
                record is appended (so a record never names a file that is not there).
            test_split: (the prepared data, its split tag): with `weights`, the split's
                test images are copied into WEIGHTS_DIR once, for `benchmarks.explain`.

        Raises:
            ResultsNotWritten: the folder or the record could not be written; the records
                kept before are intact, and a folder made for this record is removed.
        """
        with deferred():
            first = self.folder is None
            try:
                if first:
                    self.folder = new_report_dir(self.out_root, self.dataset)
                if weights is not None:
                    self._keep_weights(weights, test_split)
                append_record(self.folder, record)
            except OSError as error:
                where = self.out_root if self.folder is None else self.folder / RESULTS_FILE
                reason = f"could not write {label}'s record to {where}: {error.strerror or error}"
                kept = len(self.records)
                if kept:
                    intact = (f"{kept} record before it is" if kept == 1
                              else f"{kept} records before it are")
                    raise ResultsNotWritten(
                        f"{reason}; the {intact} intact: free space, then rebuild the report "
                        f"with `python -m benchmarks.report {self.folder}`") from error
                self._discard_folder()
                raise ResultsNotWritten(f"{reason}; nothing was recorded: free space, then "
                                        "rerun") from error
            self.records.append(record)
        # Said once the record is written: output that fails can no longer cost it.
        if first:
            self.on_line(f"results → {self.folder / RESULTS_FILE}")

    def _keep_weights(self, weights: Path, test_split: tuple[Path, str] | None) -> None:
        """Moves a run's weights file into WEIGHTS_DIR, with its split's test images."""
        target = self.folder / WEIGHTS_DIR
        target.mkdir(exist_ok=True)
        if test_split is not None:
            prepared, split = test_split
            images = target / test_split_file_name(split)
            if not images.exists():
                with np.load(prepared, allow_pickle=False) as data:
                    arrays = {"x_test": data["x_test"], "y_test": data["y_test"],
                              "class_names": data["class_names"]}
                partial = images.with_name(f".{images.name}.tmp.npz")
                np.savez_compressed(partial, **arrays)
                os.replace(partial, images)
        shutil.move(weights, target / weights.name)

    def _discard_folder(self) -> None:
        """Removes the folder made for a first record that could not be written."""
        if self.folder is None:
            return
        results = self.folder / RESULTS_FILE
        if results.exists() and results.stat().st_size == 0:
            results.unlink()
        if not any(self.folder.iterdir()):
            self.folder.rmdir()
            self.folder = None


def _say(line: str) -> None:
    print(line, flush=True)


def _run_jobs(grid: Grid, prepared: dict, faults: InjectedFaults | None, results: _Results,
              on_line: Callable[[str], None], staging: Path,
              checkpoint: Checkpoint | None = None) -> bool:
    """Runs the grid's jobs in order, keeping each record; True when Ctrl-C stopped them.

    Workers write their weights into `staging`, from where each ok run's file moves into
    the report folder with its record; a pretrained checkpoint is staged there for them.
    """
    pretrained = {}
    if checkpoint is not None:
        staged = checkpoint.stage(staging / "pretrained.npz")
        pretrained = {"pretrained": checkpoint.describe(), "pretrained_file": str(staged)}
    jobs = grid.jobs()
    try:
        for number, (fold, model, seed, backend, position, twin) in enumerate(jobs, 1):
            path, data_info = prepared[fold]
            if number == 1 or fold != jobs[number - 2].fold:
                on_line(f"{data_info['protocol']}: {data_info['num_train']} train / "
                        f"{data_info['num_val']} val / {data_info['num_test']} test images")
            timeout = grid.run_timeout_s or default_run_timeout(grid, model, data_info)
            spec = RunSpec(backend=backend, model=model, dataset=grid.dataset,
                           prepared_data=str(path),
                           train=replace(grid.train[model], seed=seed), init=grid.init,
                           threads=grid.threads, deterministic=grid.deterministic, fold=fold,
                           data_info=data_info, measure=grid.measure, faults=faults,
                           timeout_s=timeout,
                           recipe=grid.recipe.as_record(grid.explicit), run_position=position,
                           equivalence_margin=grid.equivalence_margin, **pretrained)
            if twin:
                spec = replace(spec, twin_of=spec.run_id)
            weights = None
            if grid.save_weights == "best":
                weights = staging / weights_file_name(spec.run_id)
                spec = replace(spec, weights_path=str(weights))
            try:
                on_line(f"== run {number}/{len(jobs)}: {backend} {model} seed {seed}"
                        + (" (twin: initial weights one ulp away)" if twin else ""))
                record = run_in_worker(spec, on_line)
                interrupted = record[STATUS] == INTERRUPTED
            except RunInterrupted as stop:
                record, interrupted = stop.record, True
            except KeyboardInterrupt:
                # The run was announced, but its worker was not running yet.
                record = failed_record(spec, f"interrupted ({stop_name()})", "", INTERRUPTED)
                interrupted = True
            if record[STATUS] != OK:
                on_line(f"   run {record[STATUS]}: {record[ERROR]}")
            kept = weights if record[STATUS] == OK and weights and weights.exists() else None
            results.keep(record, f"run {number}/{len(jobs)} ({record[RUN_ID]})", kept,
                         (path, data_info["split"]))
            if interrupted:
                on_line(f"interrupted: stopped after run {number}/{len(jobs)}")
                return True
    except KeyboardInterrupt:
        # Between two runs: none was in progress, so there is nothing more to record.
        on_line(f"interrupted: stopped after {len(results.records)}/{len(jobs)} runs")
        return True
    return False


def run_grid(grid: Grid, out_root: Path, on_line: Callable[[str], None] = _say,
             on_start: Callable[[], None] | None = None,
             report: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Runs every job of `grid`, each in a fresh worker, into a new report folder.

    Args:
        grid: what to run.
        out_root: parent of the new report folder, made at the first record.
        on_line: receives every progress line (default: printed at once).
        on_start: called once every check has passed, right before the first run (where
            the command warns of a busy machine: bad input still gets its one line alone).
        report: write the report (and the saved runs' explanations) after the runs;
            False leaves results.jsonl and the weights only.

    Returns:
        The report folder and the records, in run order (failed and timed-out runs
        included).

    Raises:
        MissingFrameworkError, ValueError, FileNotFoundError: before any folder is made
            (a bad `pretrained` checkpoint is a ValueError).
        ResultsNotWritten: a record or the report could not be written (the message says
            what was kept).
        GridInterrupted: Ctrl-C stopped the grid; the runs before, and the one it
            interrupted, are recorded and reported.
        KeyboardInterrupt: Ctrl-C while the data was loading: nothing was written.
    """
    check_folders(grid, out_root)
    faults = check_ready(grid)
    checkpoint = read_pretrained(grid)
    dataset, prepared = load_grid_data(grid)
    check_batch_size(grid, prepared)
    if on_start is not None:
        on_start()
    on_line(f"{dataset.name}: {len(dataset)} images, {len(dataset.class_names)} classes, "
            f"{len(dataset.skipped)} files skipped, {dataset.duplicates} duplicates")
    results = _Results(out_root, grid.dataset, on_line)
    with tempfile.TemporaryDirectory(prefix="ferbench-weights-") as staging:
        interrupted = _run_jobs(grid, prepared, faults, results, on_line, Path(staging),
                                checkpoint)
    planned = len(grid.jobs())
    if results.folder is None:  # interrupted before the first record: nothing to report
        raise GridInterrupted(None, [], planned, reported=False)
    if not report:
        if interrupted:
            raise GridInterrupted(results.folder, results.records, planned, reported=False)
        return results.folder, results.records
    try:
        write_report(results.folder, results.records)
    except KeyboardInterrupt:
        raise GridInterrupted(results.folder, results.records, planned, reported=False) from None
    except OSError as error:
        raise ResultsNotWritten(
            f"could not write the report in {results.folder}: {error.strerror or error}; "
            f"results.jsonl holds all {len(results.records)} records: free space, then "
            f"rebuild it with `python -m benchmarks.report {results.folder}`") from error
    if interrupted:
        raise GridInterrupted(results.folder, results.records, planned, reported=True)
    if grid.save_weights == "best" and any(r[STATUS] == OK for r in results.records):
        _explain(results.folder, on_line)
    return results.folder, results.records


def _explain(folder: Path, on_line: Callable[[str], None]) -> None:
    """Adds the saved runs' Grad-CAM and feature maps to the report (`benchmarks.explain`).

    In a worker process of its own, as every run was: this process imports no framework.
    A failure costs only those figures (the report is already written), so it is one
    line, not an error.
    """
    done = subprocess.run([sys.executable, "-m", "benchmarks.explain", str(folder)],
                          cwd=SUITE_ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        on_line(f"explanations (Grad-CAM, feature maps) → {folder / 'explain'}")
    else:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        on_line(f"no explanations: {reason}; retry with `python -m benchmarks.explain "
                f"{folder}`")
