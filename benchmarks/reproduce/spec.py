"""Study specs: a published study's protocol, recipe, figures and caveats, in TOML.

    [study]
    title = "FER2013: a 4-conv CNN, Adam 1e-3, 15 epochs"
    write_up = "FER-2013 CNN course project (README, 'Model Evaluation/Results')"
    caveats = ["The CNN is the suite's proposed_cnn, not the write-up's 4-conv net", …]

    [protocol]                 # what the suite runs at --scale full
    dataset = "fer2013"
    split = "PrivateTest"      # the label published figures' splits are matched against
    models = ["proposed_cnn"]
    classes = ["anger", …]     # optional: datasets.selection, as --classes
    test_part = "val"          # optional: and --train-per-class, --test-per-class, …
    folds = 10                 # optional
    [protocol.inputs.resnet18] # optional, per model: another input size, a checkpoint
    image_size = 112
    pretrained = "resnet18-f37072fd.pth"

    [recipe.train]             # optional: a recipe's tables under [recipe.…]; without
    epochs = 15                # them, the dataset's shipped recipe

    [smoke]                    # what --scale smoke changes: fewer epochs, images, folds
    epochs = 1

    [[published]]              # one figure the study reports
    model = "proposed_cnn"     # the catalog model measured against it
    as_named = "4-conv CNN"    # what the study calls it
    metric = "accuracy"        # PUBLISHED_METRICS
    value = 0.518
    split = "unstated"         # the split the study reports it on ("unstated": not said)
    source = "README, Results: 'Overall Test Accuracy: 51.80%'"

A bad spec raises one ValueError line naming the file, the table, the key and its line,
and the fix; every shipped spec is checked by the test suite, at both scales.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from backends import BACKEND_NAMES
from backends.catalog import check_model_name
from benchmarks.analysis.published_metrics import FRAMEWORKS, PUBLISHED_METRICS, UNSTATED
from benchmarks.backend_choice import PAIR
from benchmarks.messages import quoted
from benchmarks.runner.invocation import Invocation
from benchmarks.runner.recipe import (
    AUTO,
    Recipe,
    Setting,
    checked_table,
    recipe_of_tables,
    resolve_recipe,
)
from benchmarks.runner.toml_files import line_of, parse_toml, read_toml_text
from datasets import check_dataset_name
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import DataSelection, canonical_class
from datasets.splits import TEST_PARTS

SPECS_DIR = Path(__file__).resolve().parent / "specs"
SCALES = ("smoke", "full")
# The tables of a spec.
STUDY, PROTOCOL, RECIPE, SMOKE, PUBLISHED = "study", "protocol", "recipe", "smoke", "published"
TABLES = (STUDY, PROTOCOL, RECIPE, SMOKE, PUBLISHED)
INPUTS = "inputs"  # [protocol.inputs.<model>], [smoke.inputs.<model>]
# Text a spec writes into a report: one line, short enough to read in a table.
MAX_TEXT_CHARS = 300


_STUDY_SETTINGS = {s.name: s for s in (
    Setting("title", str, help="the study in one line"),
    Setting("write_up", str, help="the write-up the figures come from, in one line"),
    Setting("caveats", str, sequence=True,
            help="what the study left unstated, and where it selected on its test set"),
)}
_SELECTION_SETTINGS = (
    Setting("classes", str, sequence=True, help="the classes kept, in label order"),
    Setting("train_per_class", int, help="training images drawn per class"),
    Setting("test_per_class", int, help="test images drawn per class"),
    Setting("test_part", str, choices=TEST_PARTS, help="the official part tested on"),
    Setting("subsample_seed", int, help="seed of the per-class draws"),
)
_PROTOCOL_SETTINGS = {s.name: s for s in (
    Setting("dataset", str, help="the dataset (datasets.DATASET_NAMES)"),
    Setting("split", str, help="what the protocol tests on, as published figures name it"),
    Setting("models", str, sequence=True, help="catalog models, each once"),
    Setting("backends", str, sequence=True, choices=BACKEND_NAMES,
            help="backends, each once (default: tf and torch; every registered "
                 "backend may be listed)"),
    Setting("seeds", int, help="seeds per model, backend and fold"),
    Setting("folds", int, nullable=True, help="k-fold cross-validation"),
    Setting("fold", int, nullable=True, help="with folds, run only this fold"),
    Setting("image_size", int, help="side of the square grayscale input"),
    Setting("kdef_angles", str, choices=KDEF_ANGLES, help="KDEF pictures to use"),
    *_SELECTION_SETTINGS,
)}
_INPUT_SETTINGS = {s.name: s for s in (
    Setting("image_size", int, help="this model's input side"),
    Setting("pretrained", str, help="the checkpoint file it starts from, by name"),
)}
# What --scale smoke may change: the sizes, never what is compared.
_SMOKE_SETTINGS = {s.name: s for s in (
    Setting("epochs", int, help="passes over the training set"),
    Setting("batch_size", int, help="training batch"),
    *(_PROTOCOL_SETTINGS[name] for name in ("models", "seeds", "folds", "fold", "image_size",
                                            "train_per_class", "test_per_class")),
)}
_PUBLISHED_SETTINGS = {s.name: s for s in (
    Setting("model", str, help="the catalog model measured against the figure"),
    Setting("as_named", str, help="what the study calls the model"),
    Setting("metric", str, choices=tuple(PUBLISHED_METRICS), help="the figure's metric"),
    Setting("value", float, help="the published value (a fraction for accuracies)"),
    Setting("split", str, help="what the study tested on, or 'unstated'"),
    Setting("source", str, help="where in the write-up, in one line"),
    Setting("framework", str, choices=FRAMEWORKS, help="the figure's framework"),
    Setting("class", str, help="with class_accuracy: the class"),
    Setting("anchor", bool, help="a field anchor beside the study, not the study's own"),
)}
_REQUIRED = {STUDY: ("title", "write_up", "caveats"),
             PROTOCOL: ("dataset", "split", "models"),
             PUBLISHED: ("model", "metric", "value", "split", "source")}


@dataclass(frozen=True)
class ModelInput:
    """A model's input where it differs from the protocol's.

    Attributes:
        image_size: its input side; None: the protocol's.
        pretrained: the checkpoint file (a name, looked for in the checkpoint folder) it
            starts from; None: the shared initial weights.
    """

    image_size: int | None = None
    pretrained: str | None = None


@dataclass(frozen=True)
class Protocol:
    """What the suite runs for a study at one scale.

    Attributes:
        dataset: canonical dataset name.
        split: what it tests on, as published figures name their split.
        models: catalog models, each once.
        backends: backends, each once.
        seeds: seeds per model, backend and fold.
        folds: k-fold cross-validation, or None for the dataset's split.
        fold: with `folds`, run only this fold; None: all.
        image_size: the input side of every model without one in `inputs`.
        kdef_angles: KDEF pictures to use.
        selection: classes, per-class draws and the official part tested on.
        inputs: model → its ModelInput, where it differs.
        explicit: TrainConfig settings above the recipe (smoke's epochs).
    """

    dataset: str
    split: str
    models: tuple[str, ...]
    backends: tuple[str, ...] = PAIR
    seeds: int = 1
    folds: int | None = None
    fold: int | None = None
    image_size: int = 48
    kdef_angles: str = "frontal"
    selection: DataSelection = field(default_factory=DataSelection)
    inputs: Mapping[str, ModelInput] = field(default_factory=dict)
    explicit: Mapping[str, Any] = field(default_factory=dict)

    def input_of(self, model: str) -> tuple[int, str | None]:
        """(image size, checkpoint name or None) of `model`."""
        given = self.inputs.get(model, ModelInput())
        return given.image_size or self.image_size, given.pretrained

    def groups(self) -> dict[tuple[int, str | None], tuple[str, ...]]:
        """(image size, checkpoint) → the models that share them, in the protocol's order:
        each group is one invocation (an Invocation takes one input size and one checkpoint)."""
        groups: dict[tuple[int, str | None], tuple[str, ...]] = {}
        for model in self.models:
            key = self.input_of(model)
            groups[key] = (*groups.get(key, ()), model)
        return groups


@dataclass(frozen=True)
class PublishedFigure:
    """One figure a study reports.

    Attributes:
        model: the catalog model measured against it.
        as_named: what the study calls the model.
        metric: a key of PUBLISHED_METRICS.
        value: the published value (a fraction for accuracies and F1).
        split: what the study tested on, as the write-up says; UNSTATED if it does not.
        source: where in the write-up it is, in one line.
        framework: "any", or the backend the study measured it in.
        class_name: the class, for "class_accuracy"; None otherwise.
        anchor: a field anchor set beside the study (another paper's figure), not the
            study's own.
    """

    model: str
    as_named: str
    metric: str
    value: float
    split: str
    source: str
    framework: str = "any"
    class_name: str | None = None
    anchor: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StudySpec:
    """A checked study spec.

    Attributes:
        name: the study's name: its file's stem.
        source: the file as given.
        text: the file's text, verbatim (recorded with every run as its recipe's text).
        title: the study in one line.
        write_up: the write-up the figures come from, in one line.
        caveats: what the study left unstated, where it selected on its test set, and
            where the suite's protocol departs from it.
        full: the protocol of --scale full: the study as written.
        smoke: the protocol of --scale smoke: the same, smaller.
        recipe: the training recipe (the spec's [recipe] tables, else the dataset's).
        published: the study's figures.
    """

    name: str
    source: str
    text: str
    title: str
    write_up: str
    caveats: tuple[str, ...]
    full: Protocol
    smoke: Protocol
    recipe: Recipe
    published: tuple[PublishedFigure, ...]

    def protocol(self, scale: str) -> Protocol:
        """The protocol at `scale` (one of SCALES)."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}. Received: {scale!r}")
        return self.full if scale == "full" else self.smoke

    def as_json(self, scale: str) -> dict[str, Any]:
        """What a report folder keeps of the study (`benchmarks.analysis.published`)."""
        protocol = self.protocol(scale)
        return {"study": self.name, "title": self.title, "write_up": self.write_up,
                "scale": scale, "split": protocol.split, "dataset": protocol.dataset,
                "selection": protocol.selection.as_record(), "folds": protocol.folds,
                "caveats": list(self.caveats),
                "published": [figure.as_json() for figure in self.published]}


def _one_line(value: str, name: str, where: str) -> str:
    text = value.strip()
    if not text or "\n" in text or len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{where}: {name} must be one line of 1 to {MAX_TEXT_CHARS} "
                         f"characters. Received: {name}={quoted(value)}")
    return text


def _table(raw: Mapping[str, Any], name: str, where: str, text: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be a table ([{name}]){line_of(text, '', name)}"
                         f". Received: {name}={quoted(value)}")
    return value


def _require(checked: Mapping[str, Any], table: str, where: str, text: str) -> None:
    missing = [key for key in _REQUIRED[table] if key not in checked]
    if missing:
        raise ValueError(f"{where}: [{table}]{line_of(text, table)} lacks "
                         f"{', '.join(missing)}: add it (docs/reproduce.md lists the keys)")


def _inputs(raw: Mapping[str, Any], table: str, where: str, text: str,
            models: tuple[str, ...], allowed: Mapping[str, Setting]) -> dict[str, ModelInput]:
    """[<table>.inputs.<model>]: each a model the protocol runs."""
    found = _table(raw, INPUTS, where, text)
    inputs = {}
    for model, values in found.items():
        name = f"{table}.{INPUTS}.{model}"
        if model not in models:
            raise ValueError(f"{where}: [{name}]{line_of(text, name)} names a model the "
                             f"protocol does not run; its models: {', '.join(models)}")
        inputs[model] = ModelInput(**checked_table(values, name, allowed, where, text))
    return inputs


def _selection(checked: Mapping[str, Any], where: str, line: str) -> DataSelection:
    values = {s.name: checked[s.name] for s in _SELECTION_SETTINGS if s.name in checked}
    try:
        return DataSelection(**values)
    except ValueError as error:
        raise ValueError(f"{where}: [{PROTOCOL}]{line}: {error}") from None


def _protocol(raw: Mapping[str, Any], where: str, text: str) -> Protocol:
    checked = checked_table(_table(raw, PROTOCOL, where, text), PROTOCOL, _PROTOCOL_SETTINGS,
                            where, text, (INPUTS,))
    _require(checked, PROTOCOL, where, text)
    at = {key: line_of(text, PROTOCOL, key) for key in checked}
    try:
        dataset = check_dataset_name(checked["dataset"])
        for model in checked["models"]:
            check_model_name(model)
    except ValueError as error:
        key = "dataset" if "dataset" in str(error) else "models"
        raise ValueError(f"{where}: [{PROTOCOL}]{at[key]}: {error}") from None
    models = tuple(checked["models"])
    for key in ("models", "backends"):
        if key not in checked:
            continue
        names = checked[key]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if not names or repeated:
            problem = f"names {', '.join(repeated)} twice" if repeated else "is empty"
            raise ValueError(f"{where}: [{PROTOCOL}]{at[key]}: {key} {problem}: name each "
                             "one once")
    split = _one_line(checked["split"], "split", f"{where}: [{PROTOCOL}]{at['split']}")
    if split == UNSTATED:
        raise ValueError(f"{where}: [{PROTOCOL}]{at['split']}: split names what the suite "
                         f"tests on, which is never {UNSTATED!r}: say it (\"PrivateTest\", "
                         "\"10-fold subject-independent\")")
    others = {k: checked[k] for k in ("seeds", "folds", "fold", "image_size", "kdef_angles")
              if k in checked}
    return Protocol(dataset=dataset, split=split, models=models,
                    backends=tuple(checked.get("backends", PAIR)),
                    selection=_selection(checked, where, line_of(text, PROTOCOL)),
                    inputs=_inputs(_table(raw, PROTOCOL, where, text), PROTOCOL, where, text,
                                   models, _INPUT_SETTINGS), **others)


def _smoke(raw: Mapping[str, Any], full: Protocol, where: str, text: str) -> Protocol:
    """The full protocol with [smoke]'s sizes; models keep their checkpoints."""
    table = _table(raw, SMOKE, where, text)
    checked = checked_table(table, SMOKE, _SMOKE_SETTINGS, where, text, (INPUTS,))
    models = tuple(checked.pop("models", full.models))
    unknown = [m for m in models if m not in full.models]
    if unknown:
        raise ValueError(f"{where}: [{SMOKE}]{line_of(text, SMOKE, 'models')}: models may "
                         f"only leave some of the protocol's out; {unknown[0]!r} is not "
                         f"among {', '.join(full.models)}")
    smaller = _inputs(table, SMOKE, where, text, models,
                      {"image_size": _INPUT_SETTINGS["image_size"]})
    inputs = {}
    for model in models:
        if model in full.inputs or model in smaller:
            given = full.inputs.get(model, ModelInput())
            size = smaller[model].image_size if model in smaller else None
            inputs[model] = replace(given, image_size=size or given.image_size)
    explicit = {k: checked.pop(k) for k in ("epochs", "batch_size") if k in checked}
    draws = {k: checked.pop(k) for k in ("train_per_class", "test_per_class") if k in checked}
    try:
        selection = replace(full.selection, **draws)
    except ValueError as error:
        raise ValueError(f"{where}: [{SMOKE}]{line_of(text, SMOKE)}: {error}") from None
    return replace(full, models=models, inputs=inputs, explicit=explicit, selection=selection,
                   **checked)


def _published(raw: Mapping[str, Any], protocol: Protocol, where: str,
               text: str) -> tuple[PublishedFigure, ...]:
    entries = raw.get(PUBLISHED, [])
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: [[{PUBLISHED}]] must list the study's figures, at least "
                         f"one. Received: {PUBLISHED}={quoted(entries)}")
    headers = [n + 1 for n, line in enumerate(text.splitlines())
               if re.match(rf"^\s*\[\[\s*{PUBLISHED}\s*\]\]", line)]
    figures = []
    for number, entry in enumerate(entries):
        line = f" (line {headers[number]})" if number < len(headers) else ""
        at = f"{where}: [[{PUBLISHED}]] #{number + 1}{line}"
        checked = checked_table(entry if isinstance(entry, dict) else None,
                                f"{PUBLISHED} #{number + 1}", _PUBLISHED_SETTINGS,
                                f"{where}{line}", text)
        _require(checked, PUBLISHED, at, text)
        figures.append(_figure(checked, protocol, at))
    return tuple(figures)


def _figure(checked: dict[str, Any], protocol: Protocol, at: str) -> PublishedFigure:
    model, metric, value = checked["model"], checked["metric"], checked["value"]
    if model not in protocol.models:
        raise ValueError(f"{at}: model {model!r} is not among the protocol's models "
                         f"({', '.join(protocol.models)}): add it there, or name one of them")
    class_name = checked.pop("class", None)
    if (metric == "class_accuracy") != (class_name is not None):
        raise ValueError(f"{at}: class goes with metric class_accuracy, and only with it: "
                         + ("add class = \"<emotion>\"" if class_name is None
                            else "drop class, or use metric = \"class_accuracy\""))
    if class_name is not None:
        class_name = canonical_class(class_name)
        kept = protocol.selection.classes
        if kept is not None and class_name not in kept:
            raise ValueError(f"{at}: class {class_name!r} is not among the protocol's classes "
                             f"({', '.join(kept)})")
    if PUBLISHED_METRICS[metric].fraction and not 0 <= value <= 1:
        raise ValueError(f"{at}: {metric} is a fraction in [0, 1]: write {value / 100:g} "
                         f"for {value:g} %. Received: value={value!r}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{at}: value must be a finite number ≥ 0. Received: value={value!r}")
    texts = {key: _one_line(checked.get(key, model), key, at)
             for key in ("as_named", "split", "source")}
    return PublishedFigure(model=model, metric=metric, value=float(value),
                           framework=checked.get("framework", "any"), class_name=class_name,
                           anchor=checked.get("anchor", False), **texts)


def _check_grids(spec: StudySpec, where: str) -> None:
    """Makes every Invocation at both scales: a model's input size, the recipe's
    epochs and batch sizes, the seeds and folds are all checked before any run."""
    for scale in reversed(SCALES):  # full first: its error is the spec's own
        protocol = spec.protocol(scale)
        for (image_size, checkpoint), models in protocol.groups().items():
            try:
                Invocation(dataset=protocol.dataset, backends=protocol.backends, models=models,
                     recipe=spec.recipe, explicit=protocol.explicit, seeds=protocol.seeds,
                     folds=protocol.folds, fold=protocol.fold, image_size=image_size,
                     kdef_angles=protocol.kdef_angles, data_selection=protocol.selection,
                     pretrained=None if checkpoint is None else Path(checkpoint), threads=1)
            except ValueError as error:
                table = SMOKE if scale == "smoke" else PROTOCOL
                raise ValueError(f"{where}: [{table}] at --scale {scale} "
                                 f"({', '.join(models)}): {error}") from None


def parse_study(text: str, source: str, name: str) -> StudySpec:
    """The StudySpec written in `text`, checked: every table, key, type and value, and
    every invocation it makes at both scales.

    Args:
        text: TOML.
        source: where it came from, for the messages and the records.
        name: the study's name.

    Raises:
        ValueError: one line naming the file, the table, the key (and its line), and the
            fix.
    """
    where = f"study spec {source}"
    raw = parse_toml(text, where)
    for table in raw:
        if table not in TABLES:
            line = line_of(text, table) or line_of(text, "", table)
            raise ValueError(f"{where}: unknown table [{table}]{line}; valid tables: "
                             + ", ".join(f"[{t}]" for t in TABLES[:-1])
                             + f", [[{PUBLISHED}]]")
    study = checked_table(_table(raw, STUDY, where, text), STUDY, _STUDY_SETTINGS, where,
                          text)
    _require(study, STUDY, where, text)
    texts = {key: _one_line(study[key], key, f"{where}: [{STUDY}]{line_of(text, STUDY, key)}")
             for key in ("title", "write_up")}
    caveats = tuple(_one_line(c, "a caveat", f"{where}: [{STUDY}]"
                              f"{line_of(text, STUDY, 'caveats')}") for c in study["caveats"])
    if not caveats:
        raise ValueError(f"{where}: [{STUDY}]{line_of(text, STUDY, 'caveats')}: caveats is "
                         "empty: say what the study left unstated, even if only that")
    full = _protocol(raw, where, text)
    recipe_raw = _table(raw, RECIPE, where, text)
    recipe = (recipe_of_tables(recipe_raw, text, source, where, f"{RECIPE}.") if recipe_raw
              else resolve_recipe(AUTO, full.dataset))
    spec = StudySpec(name=name, source=source, text=text, caveats=caveats, full=full,
                     smoke=_smoke(raw, full, where, text), recipe=recipe,
                     published=_published(raw, full, where, text), **texts)
    _check_grids(spec, where)
    return spec


def load_study(path: str | Path) -> StudySpec:
    """Reads and checks the study spec at `path` (`parse_study`); its name is the file's stem.

    Raises:
        ValueError: the file is missing or unreadable, or not a valid spec (one line).
    """
    text = read_toml_text(path, "study spec", "pass a study spec (docs/reproduce.md)")
    return parse_study(text, str(path), Path(path).stem)


def shipped_studies() -> dict[str, Path]:
    """Name → file of every shipped study spec, by name."""
    return {path.stem: path for path in sorted(SPECS_DIR.glob("*.toml"))}


def find_study(name: str) -> StudySpec:
    """The shipped study `name`, or the spec file `name` names.

    Raises:
        ValueError: neither a shipped study nor a spec file (the message lists the
            studies); or the spec is invalid.
    """
    shipped = shipped_studies()
    if name in shipped:
        return load_study(shipped[name])
    if name.endswith(".toml") and Path(name).is_file():
        return load_study(name)
    raise ValueError(f"unknown study {name!r}; shipped studies: {', '.join(shipped)} "
                     "(`--list` describes them), or pass a spec file (.toml)")


__all__ = ["PUBLISHED_METRICS", "SCALES", "UNSTATED", "Protocol",
           "PublishedFigure", "StudySpec", "find_study", "load_study", "parse_study",
           "shipped_studies"]
