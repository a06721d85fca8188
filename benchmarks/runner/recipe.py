"""Recipes: TrainConfig settings from a TOML file, per dataset and per model (docs/design.md §4).

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

import inspect
import json
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from backends.augment import AUGMENT_LEVELS, AugmentConfig, augment_config
from backends.base import FIELD_CHOICES, TrainConfig
from backends.catalog import MODEL_NAMES
from benchmarks.messages import quoted, shortened
from datasets import DATASET_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, under its PyPI name
    import tomli as tomllib

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
# A recipe or grid spec is written by hand (a shipped recipe takes under 2 kB), and every
# run's record carries its recipe's text: 64 KiB is room for any, and keeps a file that is
# no recipe from being read whole.
MAX_TOML_BYTES = 64 * 2**10
# Tables in tables and arrays in arrays: a recipe nests 4 deep ([models.vgg16.augment]
# and its values), a spec's range 3. tomllib recurses on each level, into a RecursionError
# near a thousand.
MAX_TOML_DEPTH = 8
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


def line_of(text: str, table: str, key: str | None = None) -> str:
    """" (line N)" where `key` is set in `table` (dotted, as "models.vgg16"; "" for the top
    level), or the table's header line without a key; "" where the text does not show it
    plainly (an inline table, say)."""
    lines = text.splitlines()
    begin = 0
    if table:
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(
            rf'"?{re.escape(part)}"?' for part in table.split(".")) + r"\s*\]")
        start = next((n for n, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            return ""
        if key is None:
            return f" (line {start + 1})"
        begin = start + 1
    assignment = re.compile(rf'^\s*"?{re.escape(key or "")}"?\s*=')
    for n in range(begin, len(lines)):
        if lines[n].lstrip().startswith("["):
            break
        if assignment.match(lines[n]):
            return f" (line {n + 1})"
    return ""


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


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """The tables of the TOML `text`, nested at most MAX_TOML_DEPTH deep.

    Raises:
        ValueError: one line naming `where`: it is not TOML, or nests deeper.
    """
    too_deep = (f"{where} nests tables and arrays more than {MAX_TOML_DEPTH} deep; a recipe "
                "or grid spec needs 4 at most: flatten it")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{where} is not valid TOML: {error}") from None
    except RecursionError:  # tomllib recurses per level: a 2 kB file can exhaust it
        raise ValueError(too_deep) from None
    levels = [(raw, 1)]
    while levels:
        value, depth = levels.pop()
        if depth > MAX_TOML_DEPTH:
            raise ValueError(too_deep)
        inner = value.values() if isinstance(value, dict) else value
        levels += [(item, depth + 1) for item in inner if isinstance(item, (dict, list))]
    return raw


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


def read_toml_text(path: str | Path, what: str, fix: str) -> str:
    """The text of the TOML file at `path`: a regular file of at most MAX_TOML_BYTES.

    Args:
        path: the file.
        what: what the file is, for the message ("recipe", "grid spec").
        fix: what to pass instead, for the message.

    Raises:
        ValueError: one line, when the file is missing, unreadable, not a regular file (a
            FIFO would wait for a writer for ever, /dev/zero give bytes for ever), larger
            than MAX_TOML_BYTES or not UTF-8.
    """
    shown = shortened(str(path), 200)
    try:
        # Without O_NONBLOCK, opening a FIFO waits for a writer; it is refused below.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        reason = ("not found" if isinstance(error, FileNotFoundError)
                  else f"unreadable ({error.strerror or type(error).__name__})")
        raise ValueError(f"{what} {shown} {reason}: {fix}") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise ValueError(f"{what} {shown} is not a regular file (a folder, a FIFO or a "
                         f"device): {fix}")
    with os.fdopen(handle, "rb") as stream:
        data = stream.read(MAX_TOML_BYTES + 1)
    if len(data) > MAX_TOML_BYTES:
        raise ValueError(f"{what} {shown} is larger than {MAX_TOML_BYTES:,} bytes, far more "
                         f"than any {what} holds: {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {shown} is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                         f"offset {error.start}): {fix}") from None


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
