"""Recipes: precedence, the shipped files, one-line errors naming table, field and line, the
command line's options and the record's `recipe` section. Nothing here trains."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from backends.catalog import MODEL_NAMES
from backends.train_config import TrainConfig
from benchmarks import run
from benchmarks.record import schema
from benchmarks.runner import command_line
from benchmarks.runner import recipe as recipes
from benchmarks.runner.config import RunSpec, record_header
from benchmarks.runner.recipe import NO_RECIPE, TRAIN_SETTINGS, load_recipe, parse_recipe
from datasets import DATASET_NAMES

RECIPE = """\
[train]
epochs = 4
learning_rate = 0.01
label_smoothing = 0.1

[augment]
level = "light"

[models.vgg16]
learning_rate = 1e-4
batch_size = 16

[models.vgg16.augment]
level = "standard"
rotate_deg = 5
"""


def _write(tmp_path, text: str, name: str = "r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_defaults_base_model_table_explicit(tmp_path):
    loaded = load_recipe(_write(tmp_path, RECIPE))
    other = loaded.train_config("proposed_cnn")
    assert (other.epochs, other.learning_rate, other.label_smoothing, other.batch_size) == \
        (4, 0.01, 0.1, TrainConfig().batch_size)
    vgg = loaded.train_config("vgg16")
    assert (vgg.epochs, vgg.learning_rate, vgg.batch_size) == (4, 1e-4, 16)
    explicit = loaded.train_config("vgg16", {"learning_rate": 3e-4, "epochs": 2})
    assert (explicit.learning_rate, explicit.epochs, explicit.batch_size) == (3e-4, 2, 16)


def test_augment_takes_the_most_specific_level_then_every_op_override():
    layered = recipes.Recipe(augment={"level": "standard", "flip_prob": 0.25},
                             models={"vgg16": {"augment": {"level": "light"}}})
    merged = {**layered.augment, **layered.models["vgg16"]["augment"]}
    resolved = recipes.resolve_augment(merged)
    assert resolved.pad_crop_frac == recipes.augment_config("light").pad_crop_frac
    assert resolved.flip_prob == 0.25 and resolved.rotate_deg == 0  # light's, flip overridden


def test_no_recipe_gives_trainconfig_defaults():
    assert NO_RECIPE.train_config("vgg16") == TrainConfig()
    args = command_line.parse_args(["--recipe", "none", "--models", "vgg16"])
    assert command_line.invocation_of(args).train["vgg16"] == TrainConfig()


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_every_shipped_recipe_builds_a_config_for_every_model(dataset):
    shipped = recipes.resolve_recipe("auto", dataset)
    assert shipped.text == recipes.shipped_recipe(dataset).read_text()
    for model in MODEL_NAMES:
        assert isinstance(shipped.train_config(model), TrainConfig)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[train]\nepochs = 6\nepoch = 3\n", ["unknown field 'epoch'", "[train]", "line 3",
                                             "valid fields: epochs"]),
        ('[train]\n\nepochs = "six"\n', ["[train]", "line 3", "epochs must be an integer",
                                        "epochs='six'"]),
        ("[train]\nlearning_rate = true\n", ["learning_rate must be a number", "line 2"]),
        ('[train]\noptimizer = "lion"\n',
         ["optimizer must be one of adam, adamw, sgd, rmsprop", "line 2"]),
        ("[train]\npatience = 2.5\n", ['patience must be an integer or "none"', "line 2"]),
        ("[train]\nepochs = 0\n", ["[train]", "line 1", "epochs must be an integer ≥ 1"]),
        ("[optim]\nlr = 1\n", ["unknown table [optim]", "line 1", "valid tables: [train]"]),
        ("epochs = 6\n", ["unknown table [epochs]", "line 1", "belongs under [train]"]),
        ("[models.lenet]\nepochs = 2\n", ["unknown model in [models.lenet]", "line 1",
                                          "valid models: proposed_cnn"]),
        ("[models.vgg16]\nepochs = 2\nlr = 1\n", ["unknown field 'lr' in [models.vgg16]",
                                                 "line 3"]),
        ("[models.vgg16]\nlabel_smoothing = 1.5\n", ["[models.vgg16]", "line 1",
                                                     "label_smoothing must be in [0, 1)"]),
        ('[augment]\nlevel = "heavy"\n', ["[augment]", "line 2",
                                          "level must be one of none, light, standard"]),
        ("[augment]\nspin = 1\n", ["unknown field 'spin' in [augment]", "line 2",
                                   "valid fields: level, pad_crop_frac"]),
        ("[augment]\nflip_prob = 2.0\n", ["[augment]", "flip_prob must be a number in [0, 1]"]),
        ("[models.vgg16.augment]\nrotate_deg = 500\n",
         ["[models.vgg16.augment]", "line 1", "rotate_deg must be a number in [0, 180]"]),
        ("[train\nepochs = 6\n", ["is not valid TOML", "line 1"]),
    ],
)
def test_a_bad_recipe_is_one_line_naming_what_and_where(tmp_path, text, expected):
    with pytest.raises(ValueError) as caught:
        load_recipe(_write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message and f"recipe {tmp_path / 'r.toml'}" in message
    for part in expected:
        assert part in message, message


def test_a_missing_recipe_names_the_file_and_the_shipped_ones(tmp_path):
    with pytest.raises(ValueError, match=r"recipe .*nope\.toml not found.*shipped recipes: "
                                         r"benchmarks/recipes/synthetic\.toml"):
        load_recipe(tmp_path / "nope.toml")


def test_none_is_written_none_for_a_field_that_may_be_none():
    assert parse_recipe('[train]\npatience = "none"\n', "x").base == {"patience": None}
    assert parse_recipe("[train]\nlearning_rate = 1\n", "x").base == {"learning_rate": 1.0}


@pytest.mark.parametrize("text", ['[train]\nepochs = "six"\n', "[models.alexnet2]\n",
                                  "[train\n"])
def test_the_cli_refuses_a_bad_recipe_with_one_line_and_writes_nothing(tmp_path, capsys,
                                                                       text):
    out = tmp_path / "out"
    assert run.main(["--recipe", str(_write(tmp_path, text)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: recipe ") and "\n" not in err
    assert not out.exists()  # nothing written


def test_every_trainconfig_field_of_a_plain_type_has_a_described_option():
    parser = command_line.build_parser()
    dests = {action.dest: action for action in parser._actions}
    plain = [f.name for f in fields(TrainConfig) if f.name in TRAIN_SETTINGS]
    # The nested augmentation has a table, and --augment, of its own.
    assert {f.name for f in fields(TrainConfig)} - set(plain) <= {"augment"}
    assert all(TRAIN_SETTINGS[name].kind in (int, float, bool, str) for name in plain)
    for name in plain:
        assert name in dests, name
        assert "(default: from the recipe)" in dests[name].help
        assert TRAIN_SETTINGS[name].help, f"TrainConfig's docstring does not describe {name}"
    assert "--lr" in dests["learning_rate"].option_strings
    assert "--learning-rate" in dests["learning_rate"].option_strings


def test_options_given_are_explicit_and_typed_by_the_field():
    args = command_line.parse_args(["--lr", "3e-4", "--label-smoothing", "0.1",
                                    "--no-compile", "--patience", "none", "--optimizer", "sgd",
                                    "--augment", "light"])
    assert command_line.explicit_settings(args) == {
        "learning_rate": 3e-4, "label_smoothing": 0.1, "compile": False, "patience": None,
        "optimizer": "sgd", "augment": {"level": "light"}}
    assert command_line.explicit_settings(command_line.parse_args([])) == {}


def test_every_augmentation_op_has_an_option_applied_over_the_level():
    from backends.augment import augment_config

    ops = [f.name for f in fields(type(augment_config("none")))]
    flags = command_line.build_parser().format_help()
    assert all(f"--augment-{op.replace('_', '-')}" in flags for op in ops)
    args = command_line.parse_args(["--recipe", "none", "--augment", "light",
                                    "--augment-rotate-deg", "7", "--models", "proposed_cnn"])
    assert command_line.explicit_settings(args)["augment"] == {"level": "light", "rotate_deg": 7.0}
    resolved = command_line.invocation_of(args).train["proposed_cnn"].augment
    assert resolved.rotate_deg == 7.0 and resolved.flip_prob == augment_config("light").flip_prob


def test_an_explicit_lr_beats_the_model_table(tmp_path):
    path = _write(tmp_path, RECIPE)
    args = command_line.parse_args(["--recipe", str(path), "--models", "vgg16,proposed_cnn",
                                    "--lr", "0.5"])
    train = command_line.invocation_of(args).train
    assert train["vgg16"].learning_rate == 0.5 == train["proposed_cnn"].learning_rate
    assert train["vgg16"].batch_size == 16 and train["proposed_cnn"].epochs == 4


def test_the_invocation_checks_each_models_config(tmp_path):
    path = _write(tmp_path, "[models.vgg16]\nepochs = 2000\n")
    args = command_line.parse_args(["--recipe", str(path), "--models", "proposed_cnn,vgg16"])
    with pytest.raises(ValueError, match=r"epochs must be ≤ 1000 \(.* of vgg16\)"):
        command_line.invocation_of(args)


def test_the_ci_preset_takes_no_recipe_and_its_values_are_explicit():
    args = command_line.parse_args(["--preset", "ci"])
    assert args.recipe == "none"
    explicit = command_line.explicit_settings(args)
    assert (explicit["epochs"], explicit["batch_size"], explicit["seed"]) == (5, 16, 0)


def test_the_record_header_carries_the_recipe_verbatim(tmp_path):
    loaded = load_recipe(_write(tmp_path, RECIPE))
    spec = RunSpec(backend="torch", model="vgg16", dataset="synthetic", prepared_data="x.npz",
                   train=loaded.train_config("vgg16", {"seed": 3}),
                   recipe=loaded.as_record({"seed": 3}))
    header = record_header(spec)
    assert header[schema.RECIPE] == {"source": str(tmp_path / "r.toml"), "text": RECIPE,
                                     "explicit": {"seed": 3}}
    assert header[schema.CONFIG]["learning_rate"] == 1e-4
    assert RunSpec.from_json(spec.to_json()) == spec
    assert json.loads(json.dumps(header))[schema.RECIPE] == header[schema.RECIPE]
    assert RunSpec(backend="torch", model="vgg16", dataset="synthetic",
                   prepared_data="x.npz").recipe == {"source": None, "text": None,
                                                     "explicit": {}}


def test_dropout_is_a_model_setting_the_invocation_checks_per_model(tmp_path):
    path = _write(tmp_path, "[train]\ndropout = 0.3\n[models.vgg16]\ndropout = 0.0\n")
    args = command_line.parse_args(["--recipe", str(path), "--models", "proposed_cnn,vgg16"])
    train = command_line.invocation_of(args).train
    assert (train["proposed_cnn"].dropout, train["vgg16"].dropout) == (0.3, 0.0)
    assert TrainConfig().dropout is None  # the model's own rate
    args = command_line.parse_args(["--recipe", str(path), "--models", "vgg16,resnet18"])
    with pytest.raises(ValueError, match="resnet18 has no dropout layers"):
        command_line.invocation_of(args)
    with pytest.raises(ValueError, match=r"dropout must be None or in \[0, 1\)"):
        TrainConfig(dropout=1.0)


def test_the_recipes_warmup_keeps_its_share_when_the_command_line_sets_the_epochs(tmp_path):
    path = _write(tmp_path, "[models.vgg16]\nepochs = 12\nwarmup_epochs = 5\n")
    recipe = load_recipe(path)
    assert recipe.train_config("vgg16").warmup_epochs == 5
    assert recipe.train_config("vgg16", {"epochs": 6}).warmup_epochs == 2
    assert recipe.train_config("vgg16", {"epochs": 1}).warmup_epochs == 0
    assert recipe.train_config("vgg16", {"epochs": 6, "warmup_epochs": 3}).warmup_epochs == 3
    with pytest.raises(ValueError, match=r"warmup_epochs must be an integer in \[0, epochs=2\)"):
        recipe.train_config("vgg16", {"epochs": 2, "warmup_epochs": 4})
