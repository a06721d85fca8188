"""The invocation: what one `python -m benchmarks.run` runs, checked when it is made.

An `Invocation` is backends × models × seeds (× folds) on one dataset, each model's
TrainConfig resolved from the recipe, every number within the machine's bounds
(`benchmarks.runner.recipe`); `Invocation.jobs` plans its runs in the order they run.
`benchmarks.runner.launch.run_invocation` runs them. (A hyper-parameter grid,
`benchmarks.grid`, is another thing: many points, each run through the same worker.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from backends import BACKEND_NAMES
from backends.catalog import check_model_name, model_cost, model_options
from backends.init import INIT_MODES
from backends.train_config import MAX_SEED, TrainConfig
from benchmarks.analysis.stats import DEFAULT_EQUIVALENCE_MARGIN, check_equivalence_margin
from benchmarks.backend_choice import reference_backend
from benchmarks.runner.config import MeasureConfig, RunSpec
from benchmarks.runner.env import available_cores
from benchmarks.runner.recipe import (
    MAX_BATCH_PIXELS,
    MAX_EPOCHS,
    MAX_FOLDS,
    MAX_IMAGE_SIZE,
    MAX_RUN_TIMEOUT_S,
    MAX_SEEDS,
    MAX_SYNTHETIC_SUBJECTS,
    MIN_IMAGE_SIZE,
    NO_RECIPE,
    RUN_TIMEOUT_BASE_S,
    RUN_TIMEOUT_FLOPS_PER_S,
    Recipe,
    check_image_size,
    check_int,
    max_batch_size,
)
from benchmarks.runner.worker import TRAIN_FLOPS_MULTIPLIER
from datasets import DATASET_NAMES, dataset_folder
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import NO_SELECTION, DataSelection
from datasets.synthetic import DEFAULT_SUBJECTS

# `--save-weights`: "best" keeps each ok run's selected (best-epoch) weights beside its
# record (backends/weights.py); "none" keeps none (vgg16's take 134 MB a run).
SAVE_WEIGHTS = ("best", "none")


class Job(NamedTuple):
    """One run of an invocation, as `Invocation.jobs` plans it.

    Attributes:
        fold: the fold, or None for a holdout.
        model: catalog model name.
        seed: the train seed.
        backend: backend name.
        position: the run's place among the runs of its (fold, model, seed), 0 first.
        twin: whether the run is the twin of the same (fold, model, seed, backend)
            (`Invocation.twins`).
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
    first two only. With more than two backends (A B C D, D C B A, …) every backend's
    slots over two replicates still sum alike, so a linear drift falls on all alike;
    the first slot goes to the first and the last listed only.

    Args:
        backends: the backends in their listed order.
        replicate: the replicate's number, 0-based, over (fold, seed) within a model.

    Returns:
        `backends`, reversed for the replicates where B goes first.
    """
    return tuple(reversed(backends)) if replicate % 4 in (1, 2) else tuple(backends)


@dataclass(frozen=True)
class Invocation:
    """What one invocation runs: backends × models × seeds (× folds) on one dataset.

    Attributes:
        dataset: canonical dataset name (`datasets.DATASET_NAMES`), as
            `datasets.check_dataset_name` returns it where the user's text came in.
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
        reference_backend: the backend the report's framework verdicts set every other
            against (`--reference-backend`), one of `backends`; None: the default rule
            (`benchmarks.backend_choice.reference_backend`). The report's choice, not
            the runs': no record holds it.
        data_selection: the classes kept, the per-class draws and the official part
            tested on (`datasets.selection`), recorded in every record's data facts.
        train: model → its TrainConfig, resolved from `recipe` and `explicit` when the
            invocation is made; its seed is the model's first seed. Each has at most MAX_EPOCHS
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
    reference_backend: str | None = None
    data_selection: DataSelection = NO_SELECTION
    train: Mapping[str, TrainConfig] = field(init=False)

    def __post_init__(self) -> None:
        # Its makers resolve aliases at their doors (datasets.check_dataset_name): records
        # carry the canonical name, so an alias here is a caller's mistake, not input.
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"dataset must be a canonical name, one of "
                             f"{', '.join(DATASET_NAMES)} (datasets.check_dataset_name "
                             f"resolves aliases). Received: dataset={self.dataset!r}")
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
        reference_backend(self.backends, self.reference_backend)
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
            check_image_size(model, self.image_size)
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
                             f"Received: data_selection={self.data_selection!r}")
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

    def run_spec(self, job: Job, prepared_data: Path, data_info: dict[str, Any],
                 **extra: Any) -> RunSpec:
        """The RunSpec of `job`, one of `jobs()`, on its fold's prepared data.

        Args:
            job: the run.
            prepared_data: its fold's .npz (`benchmarks.runner.data.prepare_data`).
            data_info: that file's data facts.
            **extra: RunSpec fields the invocation does not decide (`faults`,
                `pretrained`, `id_from_spec`, …).
        """
        spec = RunSpec(backend=job.backend, model=job.model, dataset=self.dataset,
                       prepared_data=str(prepared_data),
                       train=replace(self.train[job.model], seed=job.seed), init=self.init,
                       threads=self.threads, deterministic=self.deterministic, fold=job.fold,
                       data_info=data_info, measure=self.measure,
                       timeout_s=(self.run_timeout_s
                                  or default_run_timeout(self, job.model, data_info)),
                       recipe=self.recipe.as_record(self.explicit), run_position=job.position,
                       equivalence_margin=self.equivalence_margin, **extra)
        return replace(spec, twin_of=spec.run_id) if job.twin else spec

    def dataset_folder(self) -> Path | None:
        """The folder the dataset is read from; None for a generated one (synthetic)."""
        return dataset_folder(self.dataset, self.data_dir)


def default_run_timeout(invocation: Invocation, model: str, data_info: dict[str, Any]) -> float:
    """The time limit of one run of `model` when `invocation.run_timeout_s` is None.

    RUN_TIMEOUT_BASE_S plus the run's floating-point work (training at
    TRAIN_FLOPS_MULTIPLIER forward passes per image, validation every epoch, the test set)
    at RUN_TIMEOUT_FLOPS_PER_S, at most MAX_RUN_TIMEOUT_S.

    Args:
        invocation: the invocation the run belongs to.
        model: the run's model.
        data_info: the prepared data's facts (`data.prepare_data`).
    """
    flops = model_cost(model, tuple(data_info["image_shape"]),
                       len(data_info["class_names"])).flops
    images = ((TRAIN_FLOPS_MULTIPLIER * data_info["num_train"] + data_info["num_val"])
              * invocation.train[model].epochs + data_info["num_test"])
    return min(RUN_TIMEOUT_BASE_S + flops * images / RUN_TIMEOUT_FLOPS_PER_S, MAX_RUN_TIMEOUT_S)
