"""Grid specs: the TOML file `python -m benchmarks.grid` runs (docs/grids.md).

    [grid]                    # what to run; every key but dataset(s) and models is optional
    dataset = "synthetic"      # or datasets = ["ck+", "kdef"]: every point on each, chosen
                               # per dataset (each from $FERBENCH_DATA/<name> or data/<name>)
    models = ["proposed_cnn"]
    backends = ["tf", "torch"] # every point runs in every backend: the same configurations
    seeds = 2                  # seed, seed + 1, … for every point
    folds = 3                  # subject-independent k-fold; `fold = i` for one fold
    recipe = "none"            # as --recipe: "auto", "none" or a recipe file
    select_by = "val_accuracy" # or "val_loss": what the chosen configuration optimises
    reference_backend = "tf"   # the report's verdicts against tf (default: torch)

    [fixed]                   # TrainConfig fields every run takes, above the recipe
    epochs = 3

    [axes]                    # TrainConfig fields → the values to try, crossed
    learning_rate = [1e-3, 3e-3]
    augment = ["none", "light"]  # "augment" takes augmentation levels

    [measure]                 # MeasureConfig fields, for lighter measurements
    latency_repeats = 5

With a [search] table the spec is an Optuna search instead (`benchmarks.grid.search`): its
axes are ranges or choices, and the sampler draws each trial's point:

    [search]
    trials = 20                # trials to finish, in all (a resumed search counts its own)
    sampler = "tpe"            # or "random"
    pruning = true             # median pruning on a trial's first run's per-epoch figure

    [axes]
    learning_rate = { low = 1e-4, high = 1e-2, log = true }   # a range
    batch_size = { low = 16, high = 64, step = 16 }
    augment = ["none", "light"]                                # choices

Every field, type and value is checked by the owner of its concept: TrainConfig fields by
the recipe's settings and TrainConfig itself (`benchmarks.runner.recipe`), the rest by
`Invocation` and `MeasureConfig`. A bad spec raises one ValueError line naming the file, the
problem and the line it is on.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import BACKEND_NAMES
from backends.augment import augment_config
from backends.catalog import check_model_name
from backends.init import INIT_MODES
from backends.train_config import MAX_SEED, TrainConfig
from benchmarks.analysis.grid_selection import describe_point
from benchmarks.backend_choice import PAIR, reference_backend
from benchmarks.messages import quoted
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.invocation import Invocation
from benchmarks.runner.recipe import (
    AUGMENT,
    AUGMENT_SETTINGS,
    AUTO,
    LEVEL,
    TRAIN_SETTINGS,
    Recipe,
    Setting,
    check_int,
    checked_table,
    resolve_recipe,
    settings,
)
from benchmarks.runner.toml_files import line_of, parse_toml, read_toml_text
from datasets import check_dataset_name
from datasets.preprocess import KDEF_ANGLES

# The tables of a spec.
GRID, FIXED, AXES, MEASURE, SEARCH = "grid", "fixed", "axes", "measure", "search"
TABLES = (GRID, FIXED, AXES, MEASURE, SEARCH)
# The validation figure a configuration is chosen by → whether larger is better. Each is
# read from the record's `selection` section, the kept epoch's score (`best_<name>`).
SELECT_BY = {"val_accuracy": True, "val_loss": False}
# One worker thread per run unless the spec says otherwise: a run's id (and its figures)
# must not depend on the cores of the machine or Ray node that happens to run it.
DEFAULT_THREADS = 1
# Seeds have their own key: as an axis they would be chosen on, not averaged over.
NOT_AXES = ("seed",)

# The [grid] table's keys: `Invocation`'s fields as a spec writes them, and the spec's own.
GRID_SETTINGS = {s.name: s for s in (
    Setting("dataset", str, help="the dataset (datasets.DATASET_NAMES)"),
    Setting("datasets", str, sequence=True,
            help="several datasets, each once: every point runs on each"),
    Setting("models", str, sequence=True, help="catalog models, each once"),
    Setting("backends", str, sequence=True, choices=BACKEND_NAMES,
            help="backends, each once (default: tf and torch; every registered "
                 "backend may be listed)"),
    Setting("seeds", int, help="seeds per point, fold and backend"),
    Setting("folds", int, nullable=True, help="k-fold cross-validation"),
    Setting("fold", int, nullable=True, help="with folds, run only this fold"),
    Setting("data_dir", str, nullable=True, help="the dataset's folder"),
    Setting("kdef_angles", str, choices=KDEF_ANGLES, help="KDEF pictures to use"),
    Setting("image_size", int, help="side of the square grayscale input"),
    Setting("synthetic_subjects", int, help="people in the synthetic set"),
    Setting("init", str, choices=INIT_MODES, help="initial weights"),
    Setting("threads", int, help="intra- and inter-op threads of every run"),
    Setting("deterministic", bool, help="both frameworks' determinism switches"),
    Setting("run_timeout_s", float, nullable=True, help="a run's time limit"),
    Setting("recipe", str, help="auto, none or a recipe file"),
    Setting("select_by", str, choices=tuple(SELECT_BY),
            help="the validation figure the chosen configuration optimises"),
    Setting("reference_backend", str, nullable=True,
            help="the backend the report's framework verdicts are against, one of backends "
                 "(default: torch where it is among them, else the first in the registry's "
                 "order)"),
)}
DATASET_KEYS = ("dataset", "datasets")  # one of them, not both
# [fixed] and [axes] keys: TrainConfig fields, and "augment" for a level.
AUGMENT_LEVEL_SETTING = Setting(AUGMENT, str, choices=AUGMENT_SETTINGS[LEVEL].choices,
                                help="the augmentation level")
TRAIN_KEYS = {**TRAIN_SETTINGS, AUGMENT: AUGMENT_LEVEL_SETTING}
MEASURE_SETTINGS = settings(MeasureConfig, {})

# What a resumed folder's spec may change without --extend, as none is part of any run's
# id: select_by chooses again among the same runs; reference_backend judges the same runs
# against another backend; a search's trials says how many trials to finish, so raising it
# searches on.
RESUMABLE_CHANGES = ((GRID, "select_by"), (GRID, "reference_backend"), (SEARCH, "trials"))

# The runs one spec may plan (points × datasets × models × backends × folds × seeds; a
# search: trials × the rest). A run is a worker process, seconds at the very least, and
# leaves a record of up to about 30 kB (per-image test predictions: FER2013 tests 3,589
# images), which every summary and report reads into memory whole: 10,000 runs are
# hundreds of MB of records and more than a day of one machine. A larger study is several
# specs, or a search.
MAX_RUNS = 10_000

SAMPLERS = ("tpe", "random")  # Optuna's TPESampler and RandomSampler
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class SearchConfig:
    """A spec's [search] table: an Optuna search over its axes (docs/grids.md).

    Attributes:
        trials: trials to finish (complete or pruned), in all: a resumed search counts
            those its folder records; 1 to MAX_TRIALS.
        sampler: one of SAMPLERS: "tpe" (Optuna's TPESampler) or "random".
        seed: the sampler's seed, 0 to MAX_SEED.
        startup_trials: tpe: the random trials before its model proposes points.
        pruning: stop a trial after its first run when that run's best validation figure
            so far, epoch by epoch, is worse than the median of the complete trials' first
            runs at the same epoch (Optuna's MedianPruner; `benchmarks.grid.search`).
        pruning_startup_trials: trials complete before any trial is pruned.
        pruning_warmup_epochs: epochs of a first run the pruner does not judge.
    """

    trials: int
    sampler: str = "tpe"
    seed: int = 0
    startup_trials: int = 10
    pruning: bool = False
    pruning_startup_trials: int = 5
    pruning_warmup_epochs: int = 0

    def __post_init__(self) -> None:
        check_int("trials", self.trials, 1, MAX_TRIALS, "trials in one search")
        check_int("seed", self.seed, 0, MAX_SEED, "the sampler's seeds")
        for name in ("startup_trials", "pruning_startup_trials", "pruning_warmup_epochs"):
            check_int(name, getattr(self, name), 0, MAX_TRIALS, "trials in one search")


SEARCH_SETTINGS = settings(SearchConfig, {"sampler": SAMPLERS})
RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Range:
    """A search axis' range of numbers, from `low` to `high` (both included).

    Attributes:
        low, high: the ends, of the field's type (int or float), low < high.
        log: drawn on a log scale (low > 0); not with `step`.
        step: drawn on the grid low, low + step, …; None for any value.
    """

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The range as grid.json describes an axis
        (`benchmarks.analysis.grid_study.axis_scale`)."""
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


Axis = tuple[Any, ...] | Range  # listed values (a grid's, or a search's choices), or a range


@dataclass(frozen=True)
class GridSpec:
    """A checked grid spec: its points, and the `Invocation` of each, made as they are needed.

    Attributes:
        source: the file's path as given.
        text: the file's text, verbatim (kept in the report folder).
        select_by: a key of SELECT_BY.
        datasets: the datasets every point runs on (canonical names, each once); a choice
            is made per dataset.
        axes: axis → its values, in the file's order; or, in a search, its Range.
        fixed: [fixed]'s settings, as `Invocation.explicit` takes them.
        options: dataset → what its `Invocation`s take besides `explicit`, for `invocation_at`.
        grid_table: the [grid] table as written, for naming an Invocation error's line.
        runs: how many runs the spec plans (a search: its trials' runs), at most MAX_RUNS.
        search: the [search] table; None for a grid.
        reference_backend: the backend the report's framework verdicts are against, one
            of the spec's backends; None for the default rule
            (`benchmarks.backend_choice.reference_backend`).
    """

    source: str
    text: str
    select_by: str
    datasets: tuple[str, ...]
    axes: dict[str, Axis]
    fixed: dict[str, Any]
    options: dict[str, dict[str, Any]]
    grid_table: dict[str, Any]
    runs: int
    search: SearchConfig | None = None
    reference_backend: str | None = None

    def points(self) -> Iterator[dict[str, Any]]:
        """Every combination of the axes' values (axis → value), first axis slowest, made
        one at a time; in a search, the two corners of its space (`corners`), checked
        before any run: the trials' points come from the sampler."""
        if self.search is not None:
            yield from corners(self.axes)
            return
        for values in itertools.product(*self.axes.values()):
            yield dict(zip(self.axes, values, strict=True))

    def cells(self) -> Iterator[tuple[dict[str, Any], Invocation]]:
        """(point, Invocation) of every (dataset, point), dataset by dataset and within each in
        `points`' order: [fixed] and the point on top of the dataset's recipe."""
        for dataset in self.datasets:
            for point in self.points():
                yield point, self.invocation_at(point, dataset)

    def recipe(self, dataset: str) -> Recipe:
        """The recipe the runs on `dataset` resolve from."""
        return self.options[dataset]["recipe"]

    def line_of(self, key: str) -> str:
        """" (line N)" where `key` is set: in [axes], else [fixed], else [grid]; or ""."""
        for table, content in ((AXES, self.axes), (FIXED, self.fixed)):
            if key in content:
                return _line(self.text, table, key)
        return line_of(self.text, GRID, key)

    def invocation_at(self, point: Mapping[str, Any], dataset: str | None = None) -> Invocation:
        """The Invocation of `point` on `dataset` (default: the first, a search's only one):
        [fixed] and the point on top of the dataset's recipe.

        Raises:
            ValueError: one line naming the file, the setting at fault and its line.
        """
        options = self.options[dataset or self.datasets[0]]
        return _invocation_at(self.text, f"grid spec {self.source}", options, self.fixed,
                              point, self.grid_table)

    def axes_json(self) -> dict[str, Any]:
        """The axes as grid.json writes them: listed values, or a range's ends."""
        return {axis: values.as_json() if isinstance(values, Range) else list(values)
                for axis, values in self.axes.items()}

    def default_value(self, model: str, axis: str, dataset: str) -> Any:
        """What `model` takes for `axis` on `dataset` without the axis: the dataset's
        recipe under [fixed]."""
        train = self.recipe(dataset).train_config(model, explicit_settings(self.fixed))
        return level_name(train) if axis == AUGMENT else getattr(train, axis)


def explicit_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """[fixed] or point settings as `Recipe.train_config`'s `explicit` takes them."""
    explicit = {k: v for k, v in settings.items() if k != AUGMENT}
    if AUGMENT in settings:
        explicit[AUGMENT] = {LEVEL: settings[AUGMENT]}
    return explicit


def level_name(train: TrainConfig) -> str:
    """The augmentation level `train` uses, or "custom" for per-op settings of no level."""
    levels = AUGMENT_LEVEL_SETTING.choices
    return next((level for level in levels if augment_config(level) == train.augment),
                "custom")


def _line(text: str, table: str, key: str | None = None) -> str:
    """`line_of`, or the table's header line where the key is not plainly written."""
    return line_of(text, table, key) or line_of(text, table)


def _table(raw: dict[str, Any], name: str, where: str, text: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be a table ([{name}])"
                         f"{line_of(text, '', name)}. Received: {name}={quoted(value)}")
    return value


def _check_axes(raw: dict[str, Any], fixed: dict[str, Any], where: str, text: str,
                search: bool) -> dict[str, Axis]:
    """[axes]: each a known TrainConfig field (or augment), not also in [fixed]: a non-empty
    array of values of the field's type, each value once; or, in a search, a range."""
    axes: dict[str, Axis] = {}
    for axis, values in raw.items():
        line = _line(text, AXES, axis)
        if axis in NOT_AXES:
            raise ValueError(f"{where}: [{AXES}] {axis}{line} cannot be an axis: set the "
                             f"number of seeds with `seeds = N` in [{GRID}] (seeds are "
                             "averaged over, never chosen)")
        if axis not in TRAIN_KEYS:
            valid = ", ".join(k for k in TRAIN_KEYS if k not in NOT_AXES)
            raise ValueError(f"{where}: unknown axis {quoted(axis)} in [{AXES}]{line}; valid "
                             f"axes: {valid}")
        if axis in fixed:
            raise ValueError(f"{where}: {axis} is both in [{FIXED}]{_line(text, FIXED, axis)}"
                             f" and an axis{line}: keep one")
        if isinstance(values, dict):
            axes[axis] = _check_range(axis, values, f"{where}: [{AXES}]{line}", search)
            continue
        if not isinstance(values, list):
            kind = "an array of values to try" + (" or a range ({ low = …, high = … })"
                                                   if search else "")
            raise ValueError(f"{where}: [{AXES}]{line}: {axis} must be {kind}. "
                             f"Received: {axis}={quoted(values)}")
        if not values:
            raise ValueError(f"{where}: [{AXES}]{line}: axis {axis} is empty: give it at "
                             "least one value")
        try:
            checked = tuple(TRAIN_KEYS[axis].check(value) for value in values)
        except ValueError as error:
            raise ValueError(f"{where}: [{AXES}]{line}: {error}") from None
        repeated = sorted({repr(v) for v in checked if checked.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: [{AXES}]{line}: axis {axis} names "
                             f"{', '.join(repeated)} more than once")
        axes[axis] = checked
    if search and not axes:
        raise ValueError(f"{where}: [{SEARCH}]{_line(text, SEARCH)} searches no axis: give "
                         f"[{AXES}] at least one range or array of choices")
    return axes


def _check_range(axis: str, raw: dict[str, Any], where: str, search: bool) -> Range:
    """A search axis' { low = …, high = …, log = …, step = … }, checked against its field.

    Args:
        axis: the field.
        raw: the inline table.
        where: "grid spec FILE: [axes] (line N)", the messages' start.
        search: whether the spec has a [search] table (a grid tries listed values only).
    """
    if not search:
        raise ValueError(f"{where}: {axis} is a range, which only a search draws from: add "
                         f"a [{SEARCH}] table (docs/grids.md), or list the values to try")
    setting = TRAIN_KEYS[axis]
    if setting.kind not in (int, float) or setting.sequence:
        raise ValueError(f"{where}: {axis} takes {setting.expected}, not a range of numbers: "
                         "list its choices instead")
    unknown = [key for key in raw if key not in RANGE_KEYS]
    missing = [key for key in ("low", "high") if key not in raw]
    if unknown or missing:
        problem = (f"has an unknown key {quoted(unknown[0])}" if unknown
                   else f"lacks {' and '.join(missing)}")
        raise ValueError(f"{where}: the range of {axis} {problem}; a range takes "
                         f"{', '.join(RANGE_KEYS)} (low and high required)")
    try:
        low, high = (setting.check(raw[key]) for key in ("low", "high"))
        step = None if raw.get("step") is None else setting.check(raw["step"])
    except ValueError as error:
        raise ValueError(f"{where}: the range of {axis}: {error}") from None
    log = raw.get("log", False)
    problem = None
    if None in (low, high):
        problem = "low and high must be numbers"
    elif not isinstance(log, bool):
        problem = f"log must be true or false. Received: log={log!r}"
    elif not low < high:
        problem = f"low must be below high. Received: low={low!r}, high={high!r}"
    elif log and low <= 0:
        problem = f"a log range needs low > 0. Received: low={low!r}"
    elif step is not None and (step <= 0 or log):
        problem = ("step cannot go with log = true" if log
                   else f"step must be > 0. Received: step={step!r}")
    if problem:
        raise ValueError(f"{where}: the range of {axis}: {problem}")
    return Range(low, high, log, step)


def corners(axes: Mapping[str, Axis]) -> tuple[dict[str, Any], ...]:
    """A search's two extreme points: every range at its low end and every choice at its
    first, then every range at its high end and every choice at its last."""
    def end(values: Axis, high: bool) -> Any:
        if isinstance(values, Range):
            return values.high if high else values.low
        return values[-1] if high else values[0]
    return tuple({axis: end(values, high) for axis, values in axes.items()}
                 for high in (False, True))


def _culprit(error: ValueError, tables: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """(table, key) of the setting an Invocation or MeasureConfig error is about: the field its
    message names ("Received: name=…" or its first word), in the first table holding it."""
    message = str(error)
    named = re.findall(r"Received: (\w+)=", message) + re.findall(r"^(\w+)", message)
    for name in named:
        for table, content in tables:
            if name in content:
                return table, name
    return tables[0][0], ""


def parse_spec(text: str, source: str, deterministic: bool = False) -> GridSpec:
    """The GridSpec written in `text`, checked.

    Args:
        text: TOML.
        source: where it came from, for the messages.
        deterministic: the command line's --deterministic, on top of the spec's.

    Raises:
        ValueError: one line naming the file, the problem and its line.
    """
    where = f"grid spec {source}"
    raw = parse_toml(text, where)
    for name in raw:
        if name not in TABLES:
            line = line_of(text, name) or line_of(text, "", name)
            raise ValueError(f"{where}: unknown table [{name}]{line}; valid tables: "
                             + ", ".join(f"[{t}]" for t in TABLES))
    grid_raw = _table(raw, GRID, where, text)
    given = [key for key in DATASET_KEYS if key in grid_raw]
    missing = (["dataset"] if not given else []) + (["models"] if "models" not in grid_raw
                                                    else [])
    if missing:
        raise ValueError(f"{where}: [{GRID}]{line_of(text, GRID)} lacks "
                         f"{' and '.join(missing)}: name the dataset (or datasets) and the "
                         "models")
    if len(given) > 1:
        raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'datasets')} sets both dataset "
                         "and datasets: keep one (datasets = [...] for several)")
    grid_settings = checked_table(grid_raw, GRID, GRID_SETTINGS, where, text)
    fixed = checked_table(_table(raw, FIXED, where, text), FIXED, TRAIN_KEYS, where, text)
    measure_raw = checked_table(_table(raw, MEASURE, where, text), MEASURE, MEASURE_SETTINGS,
                                where, text)
    search = _check_search(_table(raw, SEARCH, where, text), where, text) \
        if SEARCH in raw else None
    axes = _check_axes(_table(raw, AXES, where, text), fixed, where, text, search is not None)
    select_by = grid_settings.pop("select_by", "val_accuracy")
    recipe_choice = grid_settings.pop("recipe", AUTO)
    dataset_key = given[0]
    names = grid_settings.pop(dataset_key)
    datasets = _check_datasets([names] if isinstance(names, str) else list(names),
                               f"{where}: [{GRID}]{_line(text, GRID, dataset_key)}")
    if len(datasets) > 1 and grid_settings.get("data_dir") is not None:
        raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'data_dir')}: data_dir names "
                         f"one folder but the grid has {len(datasets)} datasets: drop it, and "
                         "keep each in $FERBENCH_DATA/<dataset> or data/<dataset>")
    if len(datasets) > 1 and search is not None:
        raise ValueError(f"{where}: [{SEARCH}]{_line(text, SEARCH)} with {len(datasets)} "
                         "datasets: a search optimises one dataset's validation figure; "
                         "write one search spec per dataset")
    try:
        measure = MeasureConfig(**measure_raw)
    except ValueError as error:
        key = _culprit(error, [(MEASURE, measure_raw)])[1]
        raise ValueError(f"{where}: [{MEASURE}]{_line(text, MEASURE, key)}: {error}") from None
    recipes = {}
    for dataset in datasets:
        try:
            recipes[dataset] = resolve_recipe(recipe_choice, dataset)
        except ValueError as error:
            raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'recipe')}: {error}") from None
    for model in grid_settings["models"]:
        try:
            check_model_name(model)
        except ValueError as error:
            raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'models')}: {error}") from None
    common = {"threads": DEFAULT_THREADS, **grid_settings, "measure": measure,
              "save_weights": "none"}
    common["backends"] = tuple(common.get("backends", PAIR))
    try:
        reference_backend(common["backends"], common.get("reference_backend"),
                          setting="reference_backend")
    except ValueError as error:
        raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'reference_backend')}: "
                         f"{error}, or add it to backends") from None
    common["models"] = tuple(common["models"])
    common["deterministic"] = common.get("deterministic", False) or deterministic
    if common.get("data_dir") is not None:
        common["data_dir"] = Path(common["data_dir"])
    options = {dataset: {**common, "dataset": dataset, "recipe": recipes[dataset]}
               for dataset in datasets}
    # The first point's Invocation checks the settings every point shares, and counts a point's
    # runs; the size is known before any other point is made.
    first = _invocation_at(text, where, options[datasets[0]], fixed,
                           next(iter(corners(axes))), grid_raw)
    points = search.trials if search is not None else math.prod(map(len, axes.values()))
    runs = points * len(datasets) * len(first.jobs())
    if runs > MAX_RUNS:
        what = (f"{search.trials} trials" if search is not None else
                " × ".join(f"{len(values)} {axis}" for axis, values in axes.items())
                + f" = {points:,} points")
        raise ValueError(
            f"{where}: {runs:,} runs ({what} × {len(datasets)} dataset(s) × "
            f"{len(first.jobs())} runs a point: models × backends × folds × seeds), more "
            f"than the {MAX_RUNS:,} one spec may plan: split it (by dataset, model or axis), "
            f"or search the space ([{SEARCH}] with fewer trials)")
    spec = GridSpec(source=source, text=text, select_by=select_by, datasets=datasets,
                    axes=axes, fixed=fixed, options=options, grid_table=grid_raw, runs=runs,
                    search=search, reference_backend=common.get("reference_backend"))
    for _ in spec.cells():  # every point's settings checked before any run, none kept
        pass
    return spec


def _check_datasets(names: list[str], where: str) -> tuple[str, ...]:
    """The datasets' canonical names, each once, at least one."""
    if not names:
        raise ValueError(f"{where}: datasets is empty: name at least one dataset")
    try:
        datasets = tuple(check_dataset_name(name) for name in names)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    repeated = sorted({d for d in datasets if datasets.count(d) > 1})
    if repeated:
        raise ValueError(f"{where}: datasets must name each one once ({', '.join(repeated)} "
                         f"repeated). Received: datasets={quoted(names)}")
    return datasets


def _check_search(raw: dict[str, Any], where: str, text: str) -> SearchConfig:
    """The [search] table: SearchConfig's fields, `trials` required."""
    checked = checked_table(raw, SEARCH, SEARCH_SETTINGS, where, text)
    if "trials" not in checked:
        raise ValueError(f"{where}: [{SEARCH}]{_line(text, SEARCH)} lacks trials: say how "
                         "many trials to run (`trials = 20`)")
    try:
        return SearchConfig(**checked)
    except ValueError as error:
        key = _culprit(error, [(SEARCH, checked)])[1]
        raise ValueError(f"{where}: [{SEARCH}]{_line(text, SEARCH, key)}: {error}") from None


def _invocation_at(text: str, where: str, options: Mapping[str, Any],
                   fixed: Mapping[str, Any], point: Mapping[str, Any],
                   grid_raw: Mapping[str, Any]) -> Invocation:
    """The Invocation of `point`; an Invocation error names the setting at fault and its line."""
    try:
        return Invocation(**options, explicit=explicit_settings({**fixed, **point}))
    except ValueError as error:
        table, key = _culprit(error, [(GRID, dict(grid_raw)), (AXES, dict(point)),
                                      (FIXED, dict(fixed))])
        at = f" at {describe_point(point)}" if table == AXES else ""
        raise ValueError(f"{where}: [{table}]{_line(text, table, key)}{at}: "
                         f"{error}") from None


def spec_differences(kept: str, given: str, where: str) -> list[str]:
    """What spec text `given` sets otherwise than spec text `kept`, one phrase per setting
    ("[axes] learning_rate: [0.001, 0.003] there, [0.01] here"), RESUMABLE_CHANGES left
    out; [] when they describe the same runs.

    Args:
        kept: the spec a grid folder ran (its grid-spec.toml).
        given: the spec given now.
        where: names `kept` in a message when it is no TOML.
    """
    before, after = _settings(parse_toml(kept, where)), _settings(parse_toml(given, where))
    differences = []
    for key in dict.fromkeys([*before, *after]):
        if key in RESUMABLE_CHANGES or before.get(key, _ABSENT) == after.get(key, _ABSENT):
            continue
        table, name = key
        shown = [quoted(side[key]) if key in side else "not set" for side in (before, after)]
        differences.append(f"[{table}] {name}: {shown[0]} there, {shown[1]} here")
    return differences


_ABSENT = object()


def _settings(raw: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(table, key) → value of every setting of a parsed spec."""
    return {(table, key): value for table, content in raw.items()
            for key, value in (content.items() if isinstance(content, dict)
                               else [("", content)])}


def load_spec(path: str | Path, deterministic: bool = False) -> GridSpec:
    """Reads and checks the grid spec at `path` (`parse_spec`).

    Raises:
        ValueError: the file is missing or unreadable, or not a valid spec (one line).
    """
    text = read_toml_text(path, "grid spec", "pass a TOML file (docs/grids.md)")
    return parse_spec(text, str(path), deterministic)
