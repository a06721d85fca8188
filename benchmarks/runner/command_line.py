"""The command line of an invocation: `python -m benchmarks.run`'s options and the
`Invocation` they make (`invocation_of`).

Every TrainConfig and AugmentConfig field of a plain type is an option, named, typed and
described by the field (`recipe.TRAIN_SETTINGS`, `AUGMENT_SETTINGS`); the bounds, the
presets and the spellings other than the field's name come from `benchmarks.runner.recipe`.
The command (`benchmarks.run`) and the CI check, which must know the runs a preset makes,
both read it here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.augment import AUGMENT_LEVELS
from backends.catalog import CARD_MODELS, MODEL_NAMES, check_model_name
from backends.init import INIT_MODES
from benchmarks.analysis.stats import DEFAULT_EQUIVALENCE_MARGIN
from benchmarks.backend_choice import add_backend_option, add_reference_option, expand_backends
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.env import available_cores
from benchmarks.runner.invocation import SAVE_WEIGHTS, Invocation
from benchmarks.runner.recipe import (
    AUGMENT,
    AUGMENT_SETTINGS,
    AUTO,
    FIELD_BOUNDS,
    LEVEL,
    MAX_IMAGE_SIZE,
    MAX_RUN_TIMEOUT_S,
    MAX_SEEDS,
    MAX_SYNTHETIC_SUBJECTS,
    MIN_IMAGE_SIZE,
    NONE,
    OPTION_FLAGS,
    PRESETS,
    RUN_TIMEOUT_BASE_S,
    RUN_TIMEOUT_FLOPS_PER_S,
    TRAIN_SETTINGS,
    image_size_range,
    resolve_recipe,
)
from datasets import DATASET_ALIASES, DATASET_NAMES, check_dataset_name
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import add_selection_arguments, selection_of
from datasets.synthetic import DEFAULT_SUBJECTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Train and evaluate FER models in TensorFlow/Keras, PyTorch and every "
                    "other registered backend.",
    )
    add_backend_option(parser)
    add_reference_option(parser)
    parser.add_argument("--dataset", default="synthetic",
                        help=f"one of {', '.join(DATASET_NAMES)}; also "
                             + ", ".join(f"{a} for {n}" for a, n in DATASET_ALIASES.items())
                             + " (default: synthetic)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset (default: $FERBENCH_DATA/<dataset> "
                             "or data/<dataset>; see docs/datasets.md)")
    parser.add_argument("--folds", type=int, default=None,
                        help="k-fold cross-validation, subject-independent where subjects "
                             "exist (10 is the norm on CK+); runs every fold unless --fold")
    parser.add_argument("--fold", type=int, default=None,
                        help="with --folds: run only this fold (0-based)")
    parser.add_argument("--kdef-angles", default="frontal", choices=KDEF_ANGLES,
                        help="KDEF pictures to use (default: frontal)")
    add_selection_arguments(parser)
    parser.add_argument("--models", default="card",
                        help="comma-separated model names, each once (replicates come from "
                             "--seeds), 'card' (the design card's four, default) or 'all'")
    parser.add_argument("--recipe", default=AUTO, metavar="auto|none|FILE.toml",
                        help="the training recipe: auto, the dataset's shipped one "
                             "(benchmarks/recipes/<dataset>.toml); none, TrainConfig's "
                             "defaults; or a TOML file ([train], [augment], "
                             "[models.<model>]). Options below override it (default: auto)")
    _add_setting_options(parser, TRAIN_SETTINGS)
    parser.add_argument("--augment", choices=AUGMENT_LEVELS, default=argparse.SUPPRESS,
                        metavar="LEVEL",
                        help=f"training augmentation level, one of {', '.join(AUGMENT_LEVELS)}"
                             "; per-op settings (the recipe's [augment] table, the "
                             "--augment-* options) apply on top (default: from the recipe)")
    _add_setting_options(parser, _AUGMENT_OPS, prefix=f"{AUGMENT}_")
    parser.add_argument("--seeds", type=int, default=1,
                        help="number of seeds: runs seed, seed+1, … seed+N-1 for every "
                             "(backend, model), for means, intervals and paired tests; "
                             f"1 to {MAX_SEEDS} (default: 1)")
    parser.add_argument("--twins", action="store_true",
                        help="also run every (backend, model, seed) a second time from the "
                             "shared initial weights moved one ulp away from zero: the chaos "
                             "floor the report sets the frameworks' difference against "
                             "(doubles the runs; needs --init shared)")
    parser.add_argument("--equivalence-margin", type=float,
                        default=DEFAULT_EQUIVALENCE_MARGIN, metavar="ACCURACY",
                        help="the report calls the frameworks equivalent when a TOST over "
                             "the seeds shows their mean accuracy difference within ± this "
                             "(a fraction in (0, 1)), recorded with every run (default: "
                             "%(default)s, ±2 points)")
    parser.add_argument("--image-size", type=int, default=48,
                        help="side of the square grayscale input in pixels, "
                             f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}{_model_size_limits()} "
                             "(default: %(default)s)")
    parser.add_argument("--synthetic-subjects", type=int, default=DEFAULT_SUBJECTS,
                        help="people in the synthetic set (21 images each), 1 to "
                             f"{MAX_SYNTHETIC_SUBJECTS} (default: {DEFAULT_SUBJECTS})")
    parser.add_argument("--init", default="shared", choices=INIT_MODES,
                        help="shared: both frameworks start from the same weights (default); "
                             "native: each framework's own initialisers")
    parser.add_argument("--pretrained", type=Path, default=None, metavar="FILE",
                        help="start from this checkpoint: a torchvision resnet18, resnet50 or "
                             "vgg16 state_dict (.pt/.pth) or a FER-Bench weights file (.npz); "
                             "--models must be its architecture. A 3-channel stem is summed "
                             "to grayscale; layers of other shapes (the classifier) take the "
                             "shared initial weights; --freeze-epochs N trains only those "
                             "first (docs/weights.md)")
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="intra- and inter-op threads, set explicitly in both frameworks, "
                             f"1 to {os.cpu_count()} (default: all %(default)s cores)")
    parser.add_argument("--deterministic", action="store_true",
                        help="turn on both frameworks' deterministic-algorithm switches "
                             "(slower on GPU)")
    parser.add_argument("--run-timeout", type=float, default=None, metavar="SECONDS",
                        help="kill a run's worker after this long and record the run as "
                             f"'timeout', 1 to {MAX_RUN_TIMEOUT_S:g} (default: scaled to the "
                             f"run: {RUN_TIMEOUT_BASE_S:g} s plus "
                             f"{1e9 / RUN_TIMEOUT_FLOPS_PER_S:g} s per GFLOP it computes: "
                             "15 times what the slowest machine seen needs)")
    parser.add_argument("--save-weights", choices=SAVE_WEIGHTS, default="best",
                        help="best: keep each ok run's selected (best-epoch) weights, in the "
                             "framework-neutral layout, and its test probabilities in the "
                             "report folder's weights/ (for benchmarks.explain; vgg16 takes "
                             "134 MB a run); none: keep no weights (default: best)")
    parser.add_argument("--no-report", action="store_true",
                        help="write results.jsonl (and weights) only, no report.html, "
                             "report.md or explanations: for scripts that read the records "
                             "(the CI check); build the report later with `python -m "
                             "benchmarks.report FOLDER --explain`")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the new report folder, outside the dataset "
                             "folder (default: reports)")
    parser.add_argument("--list-models", action="store_true",
                        help="list the models with parameters and FLOPs, then exit")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="named defaults; options given explicitly still win. "
                             + "; ".join(f"{name}: {p.summary}" for name, p in PRESETS.items()))
    return parser


# The per-op augmentation settings, each an --augment-<op> option (dest augment_<op>).
_AUGMENT_OPS = {name: s for name, s in AUGMENT_SETTINGS.items() if name != LEVEL}


def _add_setting_options(parser: argparse.ArgumentParser, settings: dict[str, Any],
                         prefix: str = "") -> None:
    """One option per setting (a TrainConfig or AugmentConfig field of a plain type),
    named, typed and described by the field (`recipe.TRAIN_SETTINGS`, `AUGMENT_SETTINGS`).

    An option not given leaves no attribute (argparse.SUPPRESS): a field that may be None
    takes "none", so None cannot also mean "not given".

    Args:
        parser: the command's parser.
        settings: field name → Setting.
        prefix: of each option's destination and flag ("augment_": --augment-flip-prob).
    """
    for field_name, setting in settings.items():
        name = prefix + field_name
        flags = OPTION_FLAGS.get(name, (f"--{name.replace('_', '-')}",))
        bounds = f"; {FIELD_BOUNDS[name]}" if name in FIELD_BOUNDS else ""
        text = f"{setting.help}{bounds}".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                                  "help": f"{text} (default: from the recipe)"}
        if setting.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif setting.choices:
            kwargs.update(choices=setting.choices, metavar="|".join(setting.choices))
        else:
            kind = setting.kind.__name__ + ("-list" if setting.sequence else "")
            kwargs.update(type=_typed(setting.parse, kind),
                          metavar=name.upper() + (f"|{NONE}" if setting.nullable else ""))
        parser.add_argument(*flags, **kwargs)


def _typed(parse: Any, kind: str) -> Any:
    """`parse` under the name argparse shows on a bad value ("invalid int value: 'x'")."""
    def typed(text: str) -> Any:
        return parse(text)
    typed.__name__ = kind
    return typed


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the command line (or the preset) gave, and "augment": the
    [augment] keys --augment (the level) and the --augment-* options gave."""
    given = {name: getattr(args, name) for name in TRAIN_SETTINGS if hasattr(args, name)}
    augment = {op: getattr(args, f"{AUGMENT}_{op}") for op in _AUGMENT_OPS
               if hasattr(args, f"{AUGMENT}_{op}")}
    if hasattr(args, AUGMENT):
        augment[LEVEL] = args.augment
    if augment:
        given[AUGMENT] = augment
    return given


def _model_size_limits() -> str:
    """The models whose --image-size range is narrower than the command's, for --help."""
    limits = []
    for name in MODEL_NAMES:
        low, high = image_size_range(name)
        if low > MIN_IMAGE_SIZE:
            limits.append(f"{name} ≥ {low}")
        if high < MAX_IMAGE_SIZE:
            limits.append(f"{name} ≤ {high}")
    return f"; {', '.join(limits)}" if limits else ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line, with a preset's defaults under the explicit options."""
    parser = build_parser()
    preset = parser.parse_known_args(argv)[0].preset
    if preset is not None:
        parser.set_defaults(**PRESETS[preset].options)
    return parser.parse_args(argv)


def model_names(choice: str) -> list[str]:
    """The models `--models choice` names; ValueError on an unknown one."""
    if choice == "card":
        return list(CARD_MODELS)
    if choice == "all":
        return list(MODEL_NAMES)
    names = [name.strip() for name in choice.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--models is empty; valid models: {', '.join(MODEL_NAMES)}")
    for name in names:
        check_model_name(name)
    return names


def invocation_of(args: argparse.Namespace,
                  on_line: Callable[[str], None] | None = None) -> Invocation:
    """The Invocation the parsed command line asks for.

    Args:
        args: the parsed command line.
        on_line: receives the line naming the backends `--backend all` skipped, if any.

    Returns:
        The invocation, checked.

    Raises:
        ValueError: an invalid option value (the message names it and what is valid).
    """
    dataset = check_dataset_name(args.dataset)
    choice = expand_backends(args.backend)
    invocation = Invocation(
        dataset=dataset, backends=choice.backends, reference_backend=args.reference_backend,
        models=tuple(model_names(args.models)),
        recipe=resolve_recipe(args.recipe, dataset), explicit=explicit_settings(args),
        seeds=args.seeds, folds=args.folds, fold=args.fold, data_dir=args.data_dir,
        kdef_angles=args.kdef_angles, image_size=args.image_size,
        synthetic_subjects=args.synthetic_subjects, init=args.init, threads=args.threads,
        deterministic=args.deterministic,
        measure=MeasureConfig(**(PRESETS[args.preset].measure if args.preset else {})),
        run_timeout_s=args.run_timeout, save_weights=args.save_weights,
        pretrained=args.pretrained, twins=args.twins,
        equivalence_margin=args.equivalence_margin, data_selection=selection_of(args),
    )
    skipped = choice.skipped_line()
    if skipped and on_line is not None:
        on_line(skipped)
    return invocation
