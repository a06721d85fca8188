"""`python -m benchmarks.reproduce STUDY`: run a published study's protocol, set its figures
beside the measured ones (docs/reproduce.md).

    python -m benchmarks.reproduce --list
    python -m benchmarks.reproduce fer2013-4conv-cnn --scale smoke      # minutes, generated data
    python -m benchmarks.reproduce ckplus-five-models --data-dir ~/data/CK+48
    python -m benchmarks.reproduce fer2013-cnn-vs-resnet18 --checkpoint-dir ~/checkpoints
    python -m benchmarks.reproduce ckplus-five-models --resume reports/<study folder>

A study folder `<out>/<timestamp>-reproduce-<study>-<scale>/` holds one grid folder per
group of models (`benchmarks.reproduce.plan`), each run by the grid driver like any grid
(every run in its own worker, records kept as they come, `--resume`, `--jobs`, Ray), each
with the report's "Published vs measured" section.

Exit status: 0 when every run succeeded; 1 when a run failed (rerun with --resume); 2 for
bad input: an unknown study, an invalid spec, a missing dataset or checkpoint, a --resume
folder of another study or scale (one line, nothing written); 130 after Ctrl-C and 143
after SIGTERM (what finished is recorded and reported: --resume completes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from backends import MissingFrameworkError
from backends.pretrained import TORCHVISION_MODELS
from benchmarks.analysis.published import PUBLISHED_FILE, comparison_rows, read_published
from benchmarks.console import run_command, say
from benchmarks.grid.driver import NothingToRun, keep_spec, latest_records, prepare, run_study
from benchmarks.grid.executors import EXECUTORS, LocalExecutor, RayExecutor
from benchmarks.record.store import ResultsFileError, new_report_dir
from benchmarks.report import write_report
from benchmarks.report.tables import text_table
from benchmarks.reproduce.fixtures import smoke_checkpoint_dir, smoke_data_dir
from benchmarks.reproduce.plan import StudyGroup, plan_study
from benchmarks.reproduce.spec import SCALES, StudySpec, find_study, load_study, shipped_studies
from benchmarks.runner.env import available_cores
from benchmarks.runner.interrupts import exit_status, stop_name, stoppable_command
from datasets.cache import default_cache_dir

CHECKPOINTS = "checkpoints"  # the default checkpoint folder's name, beside the datasets'


def default_checkpoint_dir() -> Path:
    """$FERBENCH_DATA/checkpoints when FERBENCH_DATA is set, else data/checkpoints in the
    checkout: where the datasets are looked for, one folder further."""
    base = os.environ.get("FERBENCH_DATA")
    return (Path(base) if base else Path(__file__).resolve().parents[2] / "data") / CHECKPOINTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reproduce",
        description="Run a published study's protocol in both frameworks and set its "
                    "published figures beside the measured ones (docs/reproduce.md).")
    parser.add_argument("study", nargs="?", default=None,
                        help="a shipped study (--list) or a study spec file (.toml)")
    parser.add_argument("--list", action="store_true",
                        help="list the shipped studies, one a line, name first, and exit")
    parser.add_argument("--scale", choices=SCALES, default="full",
                        help="full: the study as written, on the real data (default); "
                             "smoke: the same machinery in minutes on generated faces in "
                             "the dataset's real format (and random stand-in checkpoints)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the dataset's folder (default: $FERBENCH_DATA/<dataset> or "
                             "data/<dataset>; at --scale smoke: generated)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="where the checkpoints a study names are (default: "
                             "$FERBENCH_DATA/checkpoints or data/checkpoints; at --scale "
                             "smoke: generated stand-ins)")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the new study folder (default: reports)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="complete the study folder DIR: runs recorded ok there are "
                             "skipped, missing and failed ones run")
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="intra- and inter-op threads of every run (default: all "
                             "%(default)s cores)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local: worker processes at once (default 1: timings have the "
                             "machine to themselves)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local (default) or ray: one Ray task per run")
    parser.add_argument("--address", default=None,
                        help="ray: auto or HOST:PORT of the head (default: a new local Ray)")
    return parser


def list_studies() -> str:
    """One line a shipped study: its name, dataset, models and title."""
    lines = []
    for name, path in shipped_studies().items():
        spec = load_study(path)
        lines.append(f"{name:<26} {spec.full.dataset:<9} {','.join(spec.full.models):<38} "
                     f"{spec.title}")
    return "\n".join(lines)


def _inputs(spec: StudySpec, args: argparse.Namespace) -> tuple[Path | None, Path]:
    """(data folder, checkpoint folder) of the study at its scale: generated at smoke
    unless given; at full, every checkpoint the study names must be there.

    Raises:
        FileNotFoundError: a checkpoint is missing (one line: which, where, the fix).
    """
    protocol = spec.protocol(args.scale)
    named = {checkpoint: models[0] for (_, checkpoint), models in protocol.groups().items()
             if checkpoint is not None}
    data_dir, checkpoint_dir = args.data_dir, args.checkpoint_dir
    if args.scale == "smoke":
        cache = default_cache_dir()
        data_dir = data_dir or smoke_data_dir(protocol.dataset, cache)
        if checkpoint_dir is None and named:
            stand_ins = {name: model for name, model in named.items()
                         if model in TORCHVISION_MODELS}
            checkpoint_dir = smoke_checkpoint_dir(stand_ins, cache)
    checkpoint_dir = checkpoint_dir or default_checkpoint_dir()
    for name, model in named.items():
        if not (checkpoint_dir / name).is_file():
            raise FileNotFoundError(
                f"study {spec.name} starts {model} from the checkpoint {name}, which is not in "
                f"{checkpoint_dir}: put it there (torchvision's ImageNet weights, from "
                f"https://download.pytorch.org/models/{name}) or pass --checkpoint-dir; "
                "--scale smoke runs with a random stand-in")
    return data_dir, checkpoint_dir


def _group_folders(folder: Path, spec: StudySpec, scale: str) -> dict[str, Path]:
    """group name → its folder in the study folder `folder` (--resume).

    Raises:
        ValueError: `folder` holds no group of this study, or a group of another study or
            scale.
    """
    if not folder.is_dir():
        raise ValueError(f"--resume {folder} is not a folder: pass the study folder a "
                         "`python -m benchmarks.reproduce` run made")
    found = {}
    for child in sorted(folder.iterdir()):
        try:
            study = read_published(child) if child.is_dir() else None
        except ValueError as error:
            raise ValueError(f"--resume {folder}: {error}") from None
        if study is None:
            continue
        if (study.get("study"), study.get("scale")) != (spec.name, scale):
            raise ValueError(f"--resume {folder} holds study {study.get('study')!r} at "
                             f"--scale {study.get('scale')}, not {spec.name} at --scale "
                             f"{scale}: resume it with those, or start a new study folder")
        found[str(study.get("group"))] = child
    if not found:
        raise ValueError(f"--resume {folder} holds no group folder of a study "
                         f"({PUBLISHED_FILE} in a subfolder): pass the study folder a "
                         "`python -m benchmarks.reproduce` run made, or drop --resume")
    return found


def _study_json(spec: StudySpec, scale: str, group: StudyGroup) -> dict[str, Any]:
    """What a group's folder keeps of the study: the figures of its own models."""
    study = spec.as_json(scale)
    study["published"] = [f for f in study["published"] if f["model"] in group.models]
    return {**study, "group": group.name, "models": list(group.models)}


def _new_group_folder(study_folder: Path, spec: StudySpec, scale: str,
                      group: StudyGroup) -> Path:
    """A group's folder, made with its study and grid spec before any run, so that its
    report (written by the driver, an interrupted one's too) shows the published figures."""
    folder = new_report_dir(study_folder, "-".join((spec.full.dataset, *group.models)))
    text = json.dumps(_study_json(spec, scale, group), indent=2)
    (folder / PUBLISHED_FILE).write_text(text, encoding="utf-8")
    keep_spec(group.grid_spec, folder)
    return folder


def _published_table(folder: Path) -> str | None:
    """The folder's "Published vs measured" table for the terminal (no source column)."""
    study = read_published(folder)
    records = list(latest_records(folder, say).values())
    if study is None or not records:
        return None
    headers, rows = comparison_rows(study, records)
    return text_table(headers[:-1], [row[:-1] for row in rows])


@stoppable_command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            print(list_studies())
            return 0
        if args.study is None:
            raise ValueError("name a study: `python -m benchmarks.reproduce --list` shows "
                             f"them ({', '.join(shipped_studies())})")
        spec = find_study(args.study)
        executor = (RayExecutor(args.address, 0) if args.executor == "ray"
                    else LocalExecutor(args.jobs))
        data_dir, checkpoint_dir = _inputs(spec, args)
        groups = plan_study(spec, args.scale, data_dir, checkpoint_dir, args.threads)
        existing = {} if args.resume is None else _group_folders(args.resume, spec, args.scale)
        # Every group's data, checkpoint and folders are checked before the first run.
        parent = args.resume if args.resume is not None else args.out
        for group in groups:
            prepare(group.grid_spec, parent, existing.get(group.name))
    except KeyboardInterrupt:
        print(f"interrupted ({stop_name()}) while checking the input; nothing written",
              file=sys.stderr)
        return exit_status()
    except (ValueError, MissingFrameworkError, FileNotFoundError, ResultsFileError) as error:
        hint = (" (or --scale smoke: generated faces in the dataset's format)"
                if isinstance(error, FileNotFoundError) and args.scale == "full" and
                "checkpoint" not in str(error) else "")
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    study_folder = args.resume or new_report_dir(args.out, f"reproduce-{spec.name}-{args.scale}")
    say(f"study {spec.name} at --scale {args.scale}: {len(groups)} group(s) of models in "
         f"{study_folder}")
    all_ok, folders = True, []
    try:
        for group in groups:
            folder = existing.get(group.name) or _new_group_folder(study_folder, spec,
                                                                   args.scale, group)
            folders.append(folder)
            say(f"== group {group.name} ({group.image_size}×{group.image_size}"
                 + (f", from {group.checkpoint.name}" if group.checkpoint else "") + ")")
            try:
                _, summary = run_study(group.grid_spec, study_folder, folder, executor, say)
                all_ok &= summary["runs"]["not_ok"] == 0 and summary["runs"]["missing"] == 0
            except NothingToRun as done:
                say(f"   {done}")
                write_report(folder)
    except KeyboardInterrupt:
        print(f"interrupted ({stop_name()}): what finished is recorded and reported; complete "
              f"it with --resume {study_folder}", file=sys.stderr)
        return exit_status()
    except (ValueError, ResultsFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for folder in folders:
        table = _published_table(folder)
        if table:
            print(f"\nPublished vs measured ({folder.name}):\n{table}")
    print(f"\nstudy folder: {study_folder} (a report.html in each group's folder)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
