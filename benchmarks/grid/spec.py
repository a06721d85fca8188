"""Grid specs: the TOML file `python -m benchmarks.grid` runs (docs/grids.md).

    [grid]                    # what to run; every key but dataset and models is optional
    dataset = "synthetic"
    models = ["proposed_cnn"]
    backends = ["tf", "torch"] # every point runs in every backend: the same configurations
    seeds = 2                  # seed, seed + 1, … for every point
    folds = 3                  # subject-independent k-fold; `fold = i` for one fold
    recipe = "none"            # as --recipe: "auto", "none" or a recipe file
    select_by = "val_accuracy" # or "val_loss": what the chosen configuration optimises

    [fixed]                   # TrainConfig fields every run takes, above the recipe
    epochs = 3

    [axes]                    # TrainConfig fields → the values to try, crossed
    learning_rate = [1e-3, 3e-3]
    augment = ["none", "light"]  # "augment" takes augmentation levels

    [measure]                 # MeasureConfig fields, for lighter measurements
    latency_repeats = 5

Every field, type and value is checked by the owner of its concept: TrainConfig fields by
the recipe's settings and TrainConfig itself (`benchmarks.runner.recipe`), the rest by
`Grid` and `MeasureConfig`. A bad spec raises one ValueError line naming the file, the
problem and the line it is on.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import BACKEND_NAMES
from backends.augment import augment_config
from backends.base import TrainConfig
from backends.catalog import check_model_name
from backends.init import INIT_MODES
from benchmarks.grid.selection import describe_point
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.grid import Grid
from benchmarks.runner.recipe import (
    AUGMENT,
    AUGMENT_SETTINGS,
    AUTO,
    LEVEL,
    TRAIN_SETTINGS,
    Recipe,
    Setting,
    checked_table,
    line_of,
    parse_toml,
    read_toml_text,
    resolve_recipe,
    settings,
)
from datasets import check_dataset_name
from datasets.preprocess import KDEF_ANGLES

GRID, FIXED, AXES, MEASURE = "grid", "fixed", "axes", "measure"  # the tables of a spec
TABLES = (GRID, FIXED, AXES, MEASURE)
# The validation figure a configuration is chosen by → whether larger is better. Each is
# read from the record's `selection` section, the kept epoch's score (`best_<name>`).
SELECT_BY = {"val_accuracy": True, "val_loss": False}
# One worker thread per run unless the spec says otherwise: a run's id (and its figures)
# must not depend on the cores of the machine or Ray node that happens to run it.
DEFAULT_THREADS = 1
# Seeds have their own key: as an axis they would be chosen on, not averaged over.
NOT_AXES = ("seed",)

# The [grid] table's keys: `Grid`'s fields as a spec writes them, and the spec's own.
GRID_SETTINGS = {s.name: s for s in (
    Setting("dataset", str, help="the dataset (datasets.DATASET_NAMES)"),
    Setting("models", str, sequence=True, help="catalog models, each once"),
    Setting("backends", str, sequence=True, choices=BACKEND_NAMES,
            help="backends, each once (default: all)"),
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
)}
REQUIRED = ("dataset", "models")
# The [grid] keys that are not Grid fields.
SPEC_ONLY = ("recipe", "select_by")
# [fixed] and [axes] keys: TrainConfig fields, and "augment" for a level.
AUGMENT_LEVEL_SETTING = Setting(AUGMENT, str, choices=AUGMENT_SETTINGS[LEVEL].choices,
                                help="the augmentation level")
TRAIN_KEYS = {**TRAIN_SETTINGS, AUGMENT: AUGMENT_LEVEL_SETTING}
MEASURE_SETTINGS = settings(MeasureConfig, {})


@dataclass(frozen=True)
class GridSpec:
    """A checked grid spec: its points, and the `Grid` of each.

    Attributes:
        source: the file's path as given.
        text: the file's text, verbatim (kept in the report folder).
        select_by: a key of SELECT_BY.
        axes: axis → its values, in the file's order.
        fixed: [fixed]'s settings, as `Grid.explicit` takes them.
        points: every combination of the axes' values (axis → value), first axis slowest.
        grids: the `Grid` of each point, in `points`' order: [fixed] and the point on top
            of the recipe.
    """

    source: str
    text: str
    select_by: str
    axes: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    points: tuple[dict[str, Any], ...]
    grids: tuple[Grid, ...]

    @property
    def recipe(self) -> Recipe:
        return self.grids[0].recipe

    def line_of(self, key: str) -> str:
        """" (line N)" where `key` is set: in [axes], else [fixed], else [grid]; or ""."""
        for table, content in ((AXES, self.axes), (FIXED, self.fixed)):
            if key in content:
                return _line(self.text, table, key)
        return line_of(self.text, GRID, key)

    def default_value(self, model: str, axis: str) -> Any:
        """What `model` takes for `axis` without the axis: the recipe under [fixed]."""
        train = self.recipe.train_config(model, explicit_settings(self.fixed))
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
                         f"{line_of(text, '', name)}. Received: {name}={value!r}")
    return value


def _check_axes(raw: dict[str, Any], fixed: dict[str, Any], where: str,
                text: str) -> dict[str, tuple[Any, ...]]:
    """[axes]: each a known TrainConfig field (or augment), a non-empty array of values
    of the field's type, each value once, not also in [fixed]."""
    axes = {}
    for axis, values in raw.items():
        line = _line(text, AXES, axis)
        if axis in NOT_AXES:
            raise ValueError(f"{where}: [{AXES}] {axis}{line} cannot be an axis: set the "
                             f"number of seeds with `seeds = N` in [{GRID}] (seeds are "
                             "averaged over, never chosen)")
        if axis not in TRAIN_KEYS:
            valid = ", ".join(k for k in TRAIN_KEYS if k not in NOT_AXES)
            raise ValueError(f"{where}: unknown axis {axis!r} in [{AXES}]{line}; valid "
                             f"axes: {valid}")
        if axis in fixed:
            raise ValueError(f"{where}: {axis} is both in [{FIXED}]{_line(text, FIXED, axis)}"
                             f" and an axis{line}: keep one")
        if not isinstance(values, list):
            raise ValueError(f"{where}: [{AXES}]{line}: {axis} must be an array of values "
                             f"to try. Received: {axis}={values!r}")
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
    return axes


def _culprit(error: ValueError, tables: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """(table, key) of the setting a Grid or MeasureConfig error is about: the field its
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
    missing = [key for key in REQUIRED if key not in grid_raw]
    if missing:
        raise ValueError(f"{where}: [{GRID}]{line_of(text, GRID)} lacks "
                         f"{', '.join(missing)}: name the dataset and the models")
    grid_settings = checked_table(grid_raw, GRID, GRID_SETTINGS, where, text)
    fixed = checked_table(_table(raw, FIXED, where, text), FIXED, TRAIN_KEYS, where, text)
    measure_raw = checked_table(_table(raw, MEASURE, where, text), MEASURE, MEASURE_SETTINGS,
                                where, text)
    axes = _check_axes(_table(raw, AXES, where, text), fixed, where, text)
    select_by = grid_settings.pop("select_by", "val_accuracy")
    recipe_choice = grid_settings.pop("recipe", AUTO)
    try:
        measure = MeasureConfig(**measure_raw)
    except ValueError as error:
        key = _culprit(error, [(MEASURE, measure_raw)])[1]
        raise ValueError(f"{where}: [{MEASURE}]{_line(text, MEASURE, key)}: {error}") from None
    try:
        grid_settings["dataset"] = check_dataset_name(grid_settings["dataset"])
        recipe = resolve_recipe(recipe_choice, grid_settings["dataset"])
    except ValueError as error:
        key = "recipe" if str(error).startswith("recipe") else "dataset"
        raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, key)}: {error}") from None
    for model in grid_settings["models"]:
        try:
            check_model_name(model)
        except ValueError as error:
            raise ValueError(f"{where}: [{GRID}]{_line(text, GRID, 'models')}: {error}") from None
    options = {"threads": DEFAULT_THREADS, **grid_settings, "measure": measure, "recipe": recipe,
               "save_weights": "none"}
    options["backends"] = tuple(options.get("backends", BACKEND_NAMES))
    options["models"] = tuple(options["models"])
    options["deterministic"] = options.get("deterministic", False) or deterministic
    if options.get("data_dir") is not None:
        options["data_dir"] = Path(options["data_dir"])
    points = tuple(dict(zip(axes, values, strict=True))
                   for values in itertools.product(*axes.values()))
    grids = []
    for point in points:
        try:
            grids.append(Grid(**options, explicit=explicit_settings({**fixed, **point})))
        except ValueError as error:
            table, key = _culprit(error, [(GRID, grid_raw), (AXES, point), (FIXED, fixed)])
            at = f" at {describe_point(point)}" if table == AXES else ""
            raise ValueError(f"{where}: [{table}]{_line(text, table, key)}{at}: "
                             f"{error}") from None
    return GridSpec(source=source, text=text, select_by=select_by, axes=axes, fixed=fixed,
                    points=points, grids=tuple(grids))


def load_spec(path: str | Path, deterministic: bool = False) -> GridSpec:
    """Reads and checks the grid spec at `path` (`parse_spec`).

    Raises:
        ValueError: the file is missing or unreadable, or not a valid spec (one line).
    """
    text = read_toml_text(path, "grid spec", "pass a TOML file (docs/grids.md)")
    return parse_spec(text, str(path), deterministic)
