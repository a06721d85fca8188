"""The recipe: TrainConfig's settings, their bounds, the presets, and recipe files (TOML) per
dataset and per model (docs/design.md §4). The command line, grid specs and the invocation
all read it here.

A recipe file holds up to three kinds of table:

    [train]            # TrainConfig fields for every model
    epochs = 6
    [augment]          # a named level (backends.augment.AUGMENT_LEVELS), then per-op settings
    level = "light"
    [models.vgg16]     # TrainConfig fields for one catalog model
    learning_rate = 1e-4
    [models.vgg16.augment]
    level = "none"

A run's TrainConfig is, field by field, the first that sets it of: the command line (and
a preset), the model's table, [train], TrainConfig's default. Its augmentation takes the
level of the most specific layer that names one, then every layer's per-op settings on
top, the more specific last. A field that may be None takes the string "none", as TOML has
no null. Every dataset has a shipped recipe (`benchmarks/recipes/<dataset>.toml`), which
`--recipe auto` picks.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from backends.augment import AUGMENT_LEVELS, AugmentConfig, augment_config
from backends.catalog import DEFAULT_NUM_CLASSES, MODEL_NAMES, model_cost
from backends.train_config import FIELD_CHOICES, MAX_SEED, TrainConfig
from benchmarks.messages import quoted
from benchmarks.runner.toml_files import line_of, parse_toml, read_toml_text
from datasets import DATASET_NAMES

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
AUTO, NONE = "auto", "none"  # the --recipe values that name no file
TRAIN, AUGMENT, MODELS = "train", "augment", "models"  # the tables of a recipe file
LEVEL = "level"  # the [augment] key naming a level


@dataclass(frozen=True)
class Setting:
    """One field of TrainConfig or AugmentConfig, as a recipe or the command line writes it.

    Attributes:
        name: the field's name.
        kind: int, float, bool or str; for a sequence, its items'.
        nullable: None is allowed, written "none".
        sequence: a tuple of `kind`, written as a TOML array or a comma-separated list.
        choices: the values a text field may take; None for any.
        help: the first sentence of the field's description in its class's docstring.
    """

    name: str
    kind: type
    nullable: bool = False
    sequence: bool = False
    choices: tuple[str, ...] | None = None
    help: str = ""

    @property
    def expected(self) -> str:
        """What a value must be, in words."""
        one = {int: "an integer", float: "a number", bool: "true or false",
               str: "text"}[self.kind]
        if self.choices:
            one = f"one of {', '.join(self.choices)}"
        if self.sequence:
            one = f"an array of {one.removeprefix('an ').removeprefix('a ')}s"
        return f'{one} or "{NONE}"' if self.nullable else one

    def check(self, value: Any) -> Any:
        """Returns `value` as the field takes it (an int for a float, a list as a tuple).

        Raises:
            ValueError: `value` is not `expected`.
        """
        if self.nullable and value in (None, NONE):
            return None
        if self.sequence and isinstance(value, (list, tuple)):
            return tuple(self._check_one(item, value) for item in value)
        if self.sequence:
            raise self._wrong(value)
        return self._check_one(value, value)

    def _check_one(self, item: Any, value: Any) -> Any:
        # bool is an int in Python, never in a recipe.
        if self.kind is float and isinstance(item, int) and not isinstance(item, bool):
            return float(item)
        if type(item) is not self.kind or (self.choices and item not in self.choices):
            raise self._wrong(value)
        return item

    def _wrong(self, value: Any) -> ValueError:
        return ValueError(f"{self.name} must be {self.expected}. "
                          f"Received: {self.name}={quoted(value)}")

    def parse(self, text: str) -> Any:
        """Reads a command-line value (argparse's `type`; argparse checks the choices):
        "none" for None, a comma-separated list for a sequence.

        Raises:
            ValueError: `text` is not of the field's kind.
        """
        if self.nullable and text == NONE:
            return None
        if self.sequence:
            return tuple(self.kind(item.strip()) for item in text.split(","))
        return self.kind(text)


def _attribute_help(cls: type) -> dict[str, str]:
    """Field name → the first sentence of its entry under the docstring's Attributes."""
    doc = inspect.getdoc(cls) or ""
    _, _, section = doc.partition("Attributes:\n")
    entries: dict[str, str] = {}
    for line in section.splitlines():
        entry = re.match(r" {4}(\w+): (.*)", line)
        if entry:
            entries[entry[1]] = entry[2]
        elif line.startswith(" " * 8) and entries:
            entries[next(reversed(entries))] += " " + line.strip()
        else:
            break
    # A sentence ends at a full stop before a capital: "i.e. shift" goes on.
    return {name: re.split(r"\.\s+(?=[A-Z\"(`])", text)[0].rstrip(".")
            for name, text in entries.items()}


def settings(cls: type, choices: Mapping[str, tuple[str, ...]]) -> dict[str, Setting]:
    """The recipe settings of dataclass `cls`: every field of a plain type, read from its
    annotation (int, float, bool, str, `X | None`, `tuple[X, ...]`); fields holding a
    dataclass (TrainConfig's augmentation) have a table of their own.

    Args:
        cls: TrainConfig or AugmentConfig.
        choices: text field → the values it may take.

    Returns:
        Field name → Setting, in field order.
    """
    hints, docs = get_type_hints(cls), _attribute_help(cls)
    found = {}
    for f in fields(cls):
        kind, nullable, sequence = hints[f.name], False, False
        if type(None) in get_args(kind):
            nullable = True
            (kind,) = (a for a in get_args(kind) if a is not type(None))
        if get_origin(kind) is tuple:
            sequence, kind = True, get_args(kind)[0]
        if is_dataclass(kind):
            continue
        found[f.name] = Setting(f.name, kind, nullable, sequence, choices.get(f.name),
                                docs.get(f.name, ""))
    return found


TRAIN_SETTINGS = settings(TrainConfig, FIELD_CHOICES)
AUGMENT_SETTINGS = {
    LEVEL: Setting(LEVEL, str, choices=AUGMENT_LEVELS,
                   help="the named augmentation level the per-op settings start from"),
    **settings(AugmentConfig, {}),
}


# --- bounds: what one invocation may ask of the machine ----------------------------------
# Each is generous for its purpose and far below what exhausts a 24 GB machine; README.md
# states them with the options, and `benchmarks.run --help` with each option.
MAX_EPOCHS = 1000
MAX_SEEDS = 100
# Leave-one-subject-out on the largest subject set here (CK+, 123 people) is 123 folds; the
# list of folds is made when the invocation is, so a billion would exhaust memory first.
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


def check_int(name: str, value: Any, low: int, high: int, why: str) -> None:
    """Raises ValueError ("name must be an integer ≥ low. Received: name=…") unless
    `value` is an integer in [low, high]; `why` says what bounds it above."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}. Received: {name}={quoted(value)}")
    if value > high:
        raise ValueError(f"{name} must be ≤ {high} ({why}). Received: {name}={quoted(value)}")


def max_batch_size(image_size: int) -> int:
    """The largest batch of `image_size`² images within MAX_BATCH_PIXELS."""
    return MAX_BATCH_PIXELS // image_size**2


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


def check_image_size(model: str, image_size: int) -> None:
    low, high = image_size_range(model)
    if image_size < low:
        raise ValueError(f"image_size must be ≥ {low} for {model}: its down-sampling leaves "
                         f"nothing of a smaller input. Received: image_size={image_size}")
    if image_size > high:
        raise ValueError(f"image_size must be ≤ {high} for {model}: its classifier grows with "
                         f"the input, past {MAX_TRAINABLE_PARAMS:,} trainable parameters "
                         f"(16 bytes each to train with Adam). Received: image_size={image_size}")


# --- the command line and presets -------------------------------------------------------
# Option spellings other than the field's name in kebab case.
OPTION_FLAGS = {"learning_rate": ("--lr", "--learning-rate")}
# What an invocation bounds beyond TrainConfig's own checks, for --help.
FIELD_BOUNDS = {
    "epochs": f"1 to {MAX_EPOCHS}",
    "seed": f"0 to {MAX_SEED}",
    "learning_rate": "a finite number > 0",
    "batch_size": (f"at most the training split's images and {MAX_BATCH_PIXELS:,} pixels "
                   f"({max_batch_size(48)} images at 48×48, {max_batch_size(MAX_IMAGE_SIZE)} "
                   f"at {MAX_IMAGE_SIZE}×{MAX_IMAGE_SIZE})"),
}


@dataclass(frozen=True)
class Preset:
    """Named defaults for `benchmarks.run`; options given explicitly still win.

    Attributes:
        summary: one line for --help.
        options: option defaults, keyed by argparse destination ("synthetic_subjects";
            a TrainConfig field's name for its option). They count as given explicitly, so
            they override the recipe.
        measure: how the workers measure beyond training and evaluation: MeasureConfig's
            fields (`benchmarks.runner.config`), the others at their defaults.
    """

    summary: str
    options: dict[str, Any]
    measure: dict[str, Any]


PRESETS = {
    # Sized to take 3 to 6 minutes on a shared 2-core CPU. One thread per framework: a
    # thread pool stalls whenever another process takes one of its cores, while a single
    # thread only waits, and the time it waited can be taken out (docs/ci.md). No recipe:
    # the check's runs must not change when a shipped recipe does.
    "ci": Preset(
        summary="the CI regression check (docs/ci.md): the card models in both backends on "
                "a tiny synthetic set, 1 thread, seed 0",
        options={"backend": "both", "models": "card", "dataset": "synthetic",
                 "synthetic_subjects": 6, "image_size": 32, "epochs": 5, "batch_size": 16,
                 "learning_rate": TrainConfig.learning_rate, "seed": 0, "seeds": 1,
                 "init": "shared", "threads": 1, "deterministic": False, "recipe": NONE,
                 # The check compares speed and memory only; weights would be disk for
                 # nothing (and no figure changes either way: they are saved after all).
                 "save_weights": "none"},
        measure={"latency_repeats": 10, "latency_budget_s": 1.0, "calibration_size": 1024,
                 "epoch_calibration": True},
    ),
}


def resolve_augment(layers: Mapping[str, Any]) -> AugmentConfig:
    """The AugmentConfig of merged [augment] settings: the level's, then the per-op ones.

    Args:
        layers: [augment] keys, the most specific layer's last merged in; without a level,
            TrainConfig's default augmentation is the start.

    Raises:
        ValueError: an unknown level, or a value AugmentConfig refuses.
    """
    ops = dict(layers)
    level = ops.pop(LEVEL, None)
    start = augment_config(level) if level is not None else TrainConfig().augment
    return replace(start, **ops)


@dataclass(frozen=True)
class Recipe:
    """A training recipe: TrainConfig overrides for every model, and per model.

    Attributes:
        base: TrainConfig field → value, from the file's [train] table.
        models: catalog model → its [models.<model>] table: TrainConfig fields, and
            optionally an "augment" dict of [augment] keys.
        augment: [augment] keys: "level" (AUGMENT_LEVELS) and AugmentConfig fields.
        source: the file's path as given; None for no recipe.
        text: the file's text, verbatim; None for no recipe.
    """

    base: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    text: str | None = None

    def train_config(self, model: str | None,
                     explicit: Mapping[str, Any] | None = None) -> TrainConfig:
        """The TrainConfig of `model`: defaults ← [train] ← [models.<model>] ← `explicit`.

        A recipe's warm-up keeps its share of the recipe's epochs when `explicit` sets the
        epochs but not the warm-up (rounded down): vgg16's 5 of 12 become 2 of 6 and none
        of 1, so a short trial run (`--epochs 1`) takes every shipped recipe.

        Args:
            model: a catalog model; None for [train] alone.
            explicit: TrainConfig field → value given on the command line (or by a
                preset), and "augment": a dict of [augment] keys (`--augment LEVEL`).

        Returns:
            The resolved TrainConfig.

        Raises:
            ValueError: a value TrainConfig or AugmentConfig refuses.
        """
        layers = ({**self.base, AUGMENT: self.augment}, self.models.get(model, {}),
                  explicit or {})
        values: dict[str, Any] = {}
        augment: dict[str, Any] = {}
        for layer in layers:
            values.update((k, v) for k, v in layer.items() if k != AUGMENT)
            augment.update(layer.get(AUGMENT, {}))
        if augment:
            values[AUGMENT] = resolve_augment(augment)
        explicit = explicit or {}
        if "epochs" in explicit and "warmup_epochs" not in explicit:
            recipe_epochs = {**self.base, **self.models.get(model, {})}.get(
                "epochs", TrainConfig.epochs)
            warmup = values.get("warmup_epochs", TrainConfig.warmup_epochs)
            values["warmup_epochs"] = warmup * explicit["epochs"] // recipe_epochs
        return TrainConfig(**values)

    def as_record(self, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The record's `recipe` section: the file as given, and the explicit overrides.

        Args:
            explicit: as `train_config`'s.

        Returns:
            {"source": path or None, "text": the TOML or None, "explicit": {field: value}},
            in JSON's own types (tuples as lists), so that it reads back equal.
        """
        return {"source": self.source, "text": self.text,
                "explicit": json.loads(json.dumps(dict(explicit or {})))}


NO_RECIPE = Recipe()


def shipped_recipe(dataset: str) -> Path:
    """The recipe file shipped for canonical dataset name `dataset`."""
    return RECIPES_DIR / f"{dataset}.toml"




def checked_table(raw: Any, table: str, allowed: Mapping[str, Setting], where: str,
                   text: str, subtables: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of one table, each checked against its Setting.

    Raises:
        ValueError: the table is no table, or holds an unknown key or a wrong value (the
            message names the table, the key and its line).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {table} must be a table ([{table}]){line_of(text, table)}"
                         f". Received: {table}={quoted(raw)}")
    checked = {}
    for key, value in raw.items():
        if key in subtables:
            continue
        line = line_of(text, table, key)
        if key not in allowed:
            raise ValueError(f"{where}: unknown field {quoted(key)} in [{table}]{line}; valid "
                             f"fields: {', '.join(allowed)}")
        try:
            checked[key] = allowed[key].check(value)
        except ValueError as error:
            raise ValueError(f"{where}: [{table}]{line}: {error}") from None
    return checked


@contextmanager
def _naming(where: str, table: str, text: str) -> Iterator[None]:
    """Names the file and `table` in a ValueError the block raises (TrainConfig's own)."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{where}: [{table}]{line_of(text, table)}: {error}") from None




def parse_recipe(text: str, source: str) -> Recipe:
    """The Recipe written in `text`, checked: every table, key, type and value.

    Args:
        text: TOML.
        source: where it came from, for the messages and the record.

    Raises:
        ValueError: one line naming the file, the table, the key and its line, and what is
            valid.
    """
    where = f"recipe {source}"
    return recipe_of_tables(parse_toml(text, where), text, source, where)


def recipe_of_tables(raw: dict[str, Any], text: str, source: str, where: str,
                     prefix: str = "") -> Recipe:
    """The Recipe of parsed recipe tables, checked: every table, key, type and value.

    Args:
        raw: the [train], [augment] and [models.<model>] tables, as parsed.
        text: the TOML they were parsed from (kept verbatim, and read for line numbers).
        source: where it came from, for the record.
        where: names the file in the messages ("recipe FILE").
        prefix: where the tables sit in the file: "" in a recipe file, "recipe." in a
            study spec ([recipe.train]), as the messages name them.

    Raises:
        ValueError: one line naming the file, the table, the key and its line, and what is
            valid.
    """
    train_table, augment_table, models_table = (f"{prefix}{t}" for t in (TRAIN, AUGMENT, MODELS))
    for name in raw:
        if name not in (TRAIN, AUGMENT, MODELS):
            line = line_of(text, prefix + name) or line_of(text, prefix.rstrip("."), name)
            hint = (f" (a [{train_table}] field belongs under [{train_table}])"
                    if name in TRAIN_SETTINGS else "")
            raise ValueError(f"{where}: unknown table [{prefix}{name}]{line}{hint}; valid "
                             f"tables: [{train_table}], [{augment_table}], "
                             f"[{models_table}.<model>]")
    base = checked_table(raw.get(TRAIN, {}), train_table, TRAIN_SETTINGS, where, text)
    augment = checked_table(raw.get(AUGMENT, {}), augment_table, AUGMENT_SETTINGS, where, text)
    models_raw = raw.get(MODELS, {})
    if not isinstance(models_raw, dict):
        raise ValueError(f"{where}: {models_table} must hold tables [{models_table}.<model>]. "
                         f"Received: {models_table}={quoted(models_raw)}")
    models = {}
    for model, table in models_raw.items():
        name = f"{models_table}.{model}"
        if model not in MODEL_NAMES:
            raise ValueError(f"{where}: unknown model in [{name}]{line_of(text, name)}; "
                             f"valid models: {', '.join(MODEL_NAMES)}")
        models[model] = checked_table(table, name, TRAIN_SETTINGS, where, text, (AUGMENT,))
        if AUGMENT in table:
            models[model][AUGMENT] = checked_table(table[AUGMENT], f"{name}.{AUGMENT}",
                                                    AUGMENT_SETTINGS, where, text)
    recipe = Recipe(base=base, models=models, augment=augment, source=source, text=text)
    with _naming(where, augment_table, text):
        resolve_augment(augment)
    with _naming(where, train_table, text):
        recipe.train_config(None)
    for model, table in models.items():
        name = f"{models_table}.{model}"
        with _naming(where, f"{name}.{AUGMENT}" if AUGMENT in table else name, text):
            resolve_augment({**augment, **table.get(AUGMENT, {})})
        with _naming(where, name, text):
            recipe.train_config(model)
    return recipe




def load_recipe(path: str | Path) -> Recipe:
    """Reads and checks the recipe file at `path` (`parse_recipe`).

    Raises:
        ValueError: the file is missing or unreadable, or not a valid recipe (one line).
    """
    shipped = ", ".join(str(shipped_recipe(name).relative_to(RECIPES_DIR.parent.parent))
                        for name in DATASET_NAMES)
    text = read_toml_text(path, "recipe", f"pass a TOML file, {AUTO!r} (the dataset's shipped "
                                          f"recipe) or {NONE!r}; shipped recipes: {shipped}")
    return parse_recipe(text, str(path))


def resolve_recipe(choice: str, dataset: str) -> Recipe:
    """The Recipe `--recipe choice` names for canonical dataset `dataset`.

    Args:
        choice: "auto" (the dataset's shipped recipe), "none" (TrainConfig's defaults)
            or a file's path.
        dataset: a name in DATASET_NAMES.
    """
    if choice == NONE:
        return NO_RECIPE
    return load_recipe(shipped_recipe(dataset) if choice == AUTO else choice)
