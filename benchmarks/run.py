"""FER-Bench's main command: train and evaluate models in both frameworks, side by side.

    python -m benchmarks.run --backend both --dataset synthetic
    python -m benchmarks.run --dataset ck+ --data-dir ~/data/CK+48 --folds 10
    python -m benchmarks.run --list-models
    python -m benchmarks.run --preset ci          # the CI regression check's runs (docs/ci.md)
    python -m benchmarks.run --recipe my.toml --lr 3e-4   # a recipe file, one field overridden

Every TrainConfig field has an option (`--label-smoothing`, `--compile/--no-compile`, …);
those given, and a preset's, override the recipe (`--recipe`: the dataset's shipped one by
default; see benchmarks/runner/recipe.py).

Every (backend, model, fold, seed) run executes in its own worker process; results go to
a new `reports/<timestamp>-<dataset>/results.jsonl` (the folder is made at the first
record), a side-by-side table is printed (with k-fold, also each model and backend's mean
± std accuracy over the folds), and the report (report.html, report.md, CSV summaries; see
`benchmarks.report`) is written next to the results.

Exit status: 0 when every run succeeded; 1 when a run failed or timed out, or a record or
the report could not be written (one line says what was kept); 2 for bad input, with one
line saying what is wrong, and nothing written; 130 after Ctrl-C and 143 after SIGTERM,
either of which records the run it interrupted and reports what finished.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import BACKEND_NAMES, MissingFrameworkError
from backends.augment import AUGMENT_LEVELS
from backends.base import MAX_SEED, TrainConfig
from backends.catalog import CARD_MODELS, MODEL_NAMES, check_model_name, describe_models
from backends.init import INIT_MODES
from benchmarks.analysis.load import LOADED_MARK, LOADED_NOTE, loaded_run, others_cpu_share
from benchmarks.analysis.stats import DEFAULT_EQUIVALENCE_MARGIN
from benchmarks.console import run_command
from benchmarks.record.schema import INTERRUPTED, is_twin
from benchmarks.record.store import TEST_SPLIT_PREFIX, WEIGHTS_DIR
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.env import available_cores
from benchmarks.runner.grid import (
    MAX_BATCH_PIXELS,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_RUN_TIMEOUT_S,
    MAX_SEEDS,
    MAX_SYNTHETIC_SUBJECTS,
    MIN_IMAGE_SIZE,
    RUN_TIMEOUT_BASE_S,
    RUN_TIMEOUT_FLOPS_PER_S,
    SAVE_WEIGHTS,
    Grid,
    GridInterrupted,
    ResultsNotWritten,
    image_size_range,
    max_batch_size,
    run_grid,
)
from benchmarks.runner.interrupts import exit_status, stop_name, stoppable
from benchmarks.runner.recipe import (
    AUGMENT,
    AUGMENT_SETTINGS,
    AUTO,
    LEVEL,
    NONE,
    TRAIN_SETTINGS,
    resolve_recipe,
)
from datasets import DATASET_ALIASES, DATASET_NAMES, check_dataset_name
from datasets.preprocess import KDEF_ANGLES
from datasets.selection import add_selection_arguments, selection_of
from datasets.synthetic import DEFAULT_SUBJECTS

DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class Preset:
    """Named defaults for this command; options given explicitly still win.

    Attributes:
        summary: one line for --help.
        options: option defaults, keyed by argparse destination ("synthetic_subjects";
            a TrainConfig field's name for its option). They count as given explicitly, so
            they override the recipe.
        measure: how the workers measure beyond training and evaluation.
    """

    summary: str
    options: dict[str, Any]
    measure: MeasureConfig


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
                 "learning_rate": DEFAULTS.learning_rate, "seed": 0, "seeds": 1,
                 "init": "shared", "threads": 1, "deterministic": False, "recipe": NONE,
                 # The check compares speed and memory only; weights would be disk for
                 # nothing (and no figure changes either way: they are saved after all).
                 "save_weights": "none"},
        measure=MeasureConfig(latency_repeats=10, latency_budget_s=1.0, calibration_size=1024,
                              epoch_calibration=True),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Train and evaluate FER models in TensorFlow/Keras and PyTorch.",
    )
    parser.add_argument("--backend", default="both",
                        help=f"one of {', '.join(BACKEND_NAMES)}, both (default: both)")
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


# Option spellings other than the field's name in kebab case.
_FLAGS = {"learning_rate": ("--lr", "--learning-rate")}
# What the grid bounds beyond TrainConfig's own checks, for --help.
_BOUNDS = {
    "epochs": f"1 to {MAX_EPOCHS}",
    "seed": f"0 to {MAX_SEED}",
    "learning_rate": "a finite number > 0",
    "batch_size": (f"at most the training split's images and {MAX_BATCH_PIXELS:,} pixels "
                   f"({max_batch_size(48)} images at 48×48, {max_batch_size(MAX_IMAGE_SIZE)} "
                   f"at {MAX_IMAGE_SIZE}×{MAX_IMAGE_SIZE})"),
}


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
        flags = _FLAGS.get(name, (f"--{name.replace('_', '-')}",))
        bounds = f"; {_BOUNDS[name]}" if name in _BOUNDS else ""
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


def backend_names(choice: str) -> list[str]:
    """The backends `--backend choice` names; ValueError when it names none."""
    if choice == "both":
        return list(BACKEND_NAMES)
    if choice not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {choice!r}; valid backends: {', '.join(BACKEND_NAMES)}, both"
        )
    return [choice]


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


def fold_summary(records: list[dict[str, Any]]) -> str:
    """Mean ± std (sample) test accuracy over folds for each (model, backend)."""
    accuracies: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if record["status"] == "ok":
            key = (record["model"], record["backend"])
            accuracies.setdefault(key, []).append(record["metrics"]["accuracy"])
    lines = [f"{'model':<14}{'backend':<8}{'folds':>6}  accuracy (mean ± std over folds)"]
    for (model, backend), values in sorted(accuracies.items()):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"{model:<14}{backend:<8}{len(values):>6}  "
                     f"{statistics.mean(values):.3f} ± {spread:.3f}")
    return "\n".join(lines)


def list_models() -> str:
    lines = [f"{'model':<14}{'card':<6}{'params':>14}{'GFLOPs/img':>12}  (48×48×1, 7 classes)"]
    for row in describe_models():
        lines.append(f"{row['name']:<14}{'yes' if row['card'] else '':<6}"
                     f"{row['params']:>14,}{row['flops'] / 1e9:>12.3f}  {row['summary']}")
    return "\n".join(lines)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# How much of a core other processes may hold, on the 1-minute load average, before the
# machine counts as busy: the workers run one thread per core and every synchronous step
# waits for its slowest thread, so one core taken half the time already shows in the times.
BUSY_LOAD_MARGIN = 0.5


def busy_machine_warning() -> str | None:
    """One line saying the machine is already busy, so timings will suffer; None if not.

    Busy: the 1-minute load average leaves fewer than (cores this process may use) −
    BUSY_LOAD_MARGIN cores free, i.e. it exceeds the machine's other cores plus the
    margin. None where the OS has no load average.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = available_cores()
    limit = (os.cpu_count() or cores) - cores + BUSY_LOAD_MARGIN
    if load <= limit:
        return None
    return (f"warning: the machine is already busy (1-minute load average {load:.2f} > "
            f"{limit:.1f} on the {cores} cores this run may use): its timings will suffer "
            "and runs during which other processes take the CPU are marked as not "
            "comparable")


def _others_cell(record: dict[str, Any]) -> str:
    """The share of the run's CPU other processes took, marked when its timings are not
    comparable (that share, or a device shared with other runs: `analysis.load.loaded_run`)."""
    share = others_cpu_share(record)
    # A run that shared its device is marked even without the figure.
    mark = f" {LOADED_MARK}" if loaded_run(record) else ""
    return ("-" if share is None else f"{share:.0%}") + mark


def summary_table(records: list[dict[str, Any]]) -> str:
    """A plain-text side-by-side table: one row per run, backends of a model adjacent.

    Its last column is the share of the run's CPU capacity other processes used while it
    trained, marked when the run's timings are not comparable; a footnote then says what
    the mark means.
    """
    header = (f"{'model':<14}{'backend':<12}{'status':<12}{'acc':>7}{'mF1':>7}{'AUC':>7}"
              f"{'train s':>9}{'img/s':>9}{'eval s':>8}{'peak MB':>9}{'others':>10}")
    lines = [header, "-" * len(header)]
    for rec in sorted(records, key=lambda r: (r["model"], r.get("fold") or 0, r["seed"],
                                              is_twin(r), r["backend"])):
        m, t, mem = rec.get("metrics", {}), rec.get("timing", {}), rec.get("memory", {})
        backend = f"{rec['backend']} twin" if is_twin(rec) else rec["backend"]
        lines.append(
            f"{rec['model']:<14}{backend:<12}{rec['status']:<12}"
            f"{_fmt(m.get('accuracy'), '.3f'):>7}{_fmt(m.get('macro_f1'), '.3f'):>7}"
            f"{_fmt(m.get('auc_macro_ovr'), '.3f'):>7}{_fmt(t.get('train_wall_s'), '.1f'):>9}"
            f"{_fmt(t.get('train_throughput_img_s'), '.0f'):>9}"
            f"{_fmt(t.get('eval_wall_s'), '.2f'):>8}"
            f"{_fmt(mem.get('peak_host_rss_mb'), '.0f'):>9}{_others_cell(rec):>10}"
        )
    if any(map(loaded_run, records)):
        lines.append(LOADED_NOTE)
    return "\n".join(lines)


def grid_of(args: argparse.Namespace) -> Grid:
    """The Grid the parsed command line asks for.

    Raises:
        ValueError: an invalid option value (the message names it and what is valid).
    """
    dataset = check_dataset_name(args.dataset)
    return Grid(
        dataset=dataset, backends=tuple(backend_names(args.backend)),
        models=tuple(model_names(args.models)),
        recipe=resolve_recipe(args.recipe, dataset), explicit=explicit_settings(args),
        seeds=args.seeds, folds=args.folds, fold=args.fold, data_dir=args.data_dir,
        kdef_angles=args.kdef_angles, image_size=args.image_size,
        synthetic_subjects=args.synthetic_subjects, init=args.init, threads=args.threads,
        deterministic=args.deterministic,
        measure=PRESETS[args.preset].measure if args.preset else MeasureConfig(),
        run_timeout_s=args.run_timeout, save_weights=args.save_weights,
        pretrained=args.pretrained, twins=args.twins,
        equivalence_margin=args.equivalence_margin, data_selection=selection_of(args),
    )


def weights_disk_line(report_dir: Path) -> str | None:
    """One line saying how much disk the saved weights (and test images) take; None if none."""
    folder = report_dir / WEIGHTS_DIR
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        return None
    total_bytes = sum(f.stat().st_size for f in files)
    runs = sum(not f.name.startswith(TEST_SPLIT_PREFIX) for f in files)
    return (f"weights: {total_bytes / 1e6:,.1f} MB on disk for {runs} run"
            f"{'s' if runs != 1 else ''} (with the test images): {folder}")


def _print_results(records: list[dict[str, Any]], grid: Grid) -> None:
    print()
    print(summary_table(records))
    if len(grid.fold_indices()) > 1:
        print()
        print(fold_summary(records))


def _interrupted(stop: GridInterrupted, grid: Grid) -> int:
    """Says what an interrupted grid kept; the exit status of the signal that stopped it."""
    if stop.report_dir is None:
        print(f"interrupted ({stop_name()}) before the first run was recorded; nothing "
              "written", file=sys.stderr)
        return exit_status()
    _print_results(stop.records, grid)
    finished = sum(r["status"] != INTERRUPTED for r in stop.records)
    print(f"\ninterrupted ({stop_name()}): {finished} of {stop.planned} runs finished; results: "
          f"{stop.report_dir / 'results.jsonl'}")
    if stop.reported:
        print(f"report: {stop.report_dir / 'report.html'}")
    else:
        print(f"no report: rebuild it with `python -m benchmarks.report {stop.report_dir}`")
    return exit_status()


def _warn_if_busy() -> None:
    warning = busy_machine_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    with stoppable():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.list_models:
        print(list_models())
        return 0
    started = time.perf_counter()
    try:
        grid = grid_of(args)
        report_dir, records = run_grid(grid, args.out, on_start=_warn_if_busy,
                                       report=not args.no_report)
    except GridInterrupted as stop:
        return _interrupted(stop, grid)
    except KeyboardInterrupt:
        print(f"interrupted ({stop_name()}) while loading the data; nothing written",
              file=sys.stderr)
        return exit_status()
    except ResultsNotWritten as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, MissingFrameworkError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_results(records, grid)
    print(f"\n{len(records)} runs in {time.perf_counter() - started:.0f}s; "
          f"results: {report_dir / 'results.jsonl'}")
    disk = weights_disk_line(report_dir)
    if disk:
        print(disk)
    if args.no_report:
        print(f"report: not written (--no-report); `python -m benchmarks.report {report_dir}` "
              f"writes it")
    else:
        print(f"report: {report_dir / 'report.html'}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
