"""`python -m benchmarks.explain RUN_DIR`: what the saved models look at, in every backend.

For the first ok run of each (model, backend) that saved its weights (`--save-weights
best`), and a fixed, seeded sample of its test images per class, this rebuilds the model
from the one weights file in every backend of the folder's records, and in tf and torch
where installed (`explaining_backends`, `backends.weights.load_into`), and computes
there Grad-CAM on the last convolutional stage (of each image's true class) and the
feature maps of every stage (`Backend.grad_cam`, `Backend.feature_maps`). It writes into
`RUN_DIR/explain/`: per run a Grad-CAM figure (every backend's overlays side by side)
and a feature-map grid (one image, every stage, in the reference backend), and
`explain.json`, which lists them with how far the other backends' maps lie from the
reference backend's (`--reference-backend`, default torch; the largest gap;
docs/design.md §9; a map holding NaN or Inf is reported as not finite, never as
agreeing); then it rebuilds the report, which embeds them.

Exit status: 0 when written; 2 for bad input (no results, no saved weights, a weights
file missing, damaged or for another model or shape, a record naming a file outside the
folder or a run id that would), with one line naming the file and the problem, nothing
written; 1 when the files could not be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from backends import MissingFrameworkError
from backends.weights import SavedWeights, WeightsError, check_matches, load_into, read_weights
from benchmarks.backend_choice import (
    PAIR,
    add_reference_option,
    missing_framework,
    reference_backend,
    registry_order,
)
from benchmarks.console import run_command
from benchmarks.record import schema
from benchmarks.record.layout import (
    EXPLAIN_DIR,
    EXPLAIN_SUMMARY_FILE,
    WEIGHTS_DIR,
    explain_figure_name,
)
from benchmarks.record.store import ResultsFileError, read_records, results_path
from benchmarks.report import gallery
from benchmarks.report.artifacts import (
    artifact_path,
    described_difference,
    explained_runs,
    test_images,
    weights_path,
)

# The two frameworks whose maps are compared, rebuilt in this one process. keras-jax's
# Keras cannot share a process with tf's (Keras runs one backend per process), so it is not
# among them until explain runs each backend in a process of its own.
SAMPLES_PER_CLASS = 2
SAMPLE_SEED = 0


def sample_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to `per_class` test indices of each class, drawn once from a seeded generator.

    The draw depends only on the labels and the seed, so every run of one split, in
    either framework, explains the same images.

    Returns:
        The indices, grouped by class in label order.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        chosen.append(np.sort(rng.choice(members, min(per_class, len(members)), replace=False)))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float | None:
    """max |a − b| over each map, as a share of that map's range; the worst over maps.

    None when a map holds NaN or Inf: it has no distance to the other, and the masking
    below would otherwise drop it and report the rest as agreeing.
    """
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    axes = tuple(range(1, a.ndim))
    spread = a.max(axis=axes) - a.min(axis=axes)
    difference = np.abs(a - b).max(axis=axes)
    kept = spread > 0
    # Maps without any spread are zero in both frameworks: no difference to scale.
    return float((difference[kept] / spread[kept]).max(initial=0.0))


def explain_run(folder: Path, record: dict[str, Any], backends: dict[str, Any],
                per_class: int, seed: int, reference: str) -> dict[str, Any]:
    """Grad-CAM and feature maps of one run, in every framework, written as figures.

    Args:
        folder: the report folder.
        record: the run's record (it saved weights).
        backends: framework name → Backend to rebuild the model in.
        per_class: sampled test images per class.
        seed: the sample's seed.
        reference: the backend (a key of `backends`) every other's maps are measured
            against, and whose feature maps are drawn.

    Returns:
        The run's entry of explain.json.

    Raises:
        WeightsError: the weights or test images are missing, damaged, or not the run's.
        UnsafeName: the record names files, or its run id makes names, that lead out of
            the folder.
    """
    run_id = record[schema.RUN_ID]
    data = record.get(schema.DATA) or {}
    class_names = [str(c) for c in data.get("class_names") or []]
    files = figure_paths(folder, run_id)
    saved: SavedWeights = read_weights(weights_path(folder, record))
    shape = data.get("image_shape")
    check_matches(saved, model=record[schema.MODEL], num_classes=len(class_names),
                  input_shape=tuple(shape) if shape else None)
    images, labels = test_images(folder, record)
    sample = sample_per_class(labels, per_class, seed)
    chosen, truth = images[sample], labels[sample]
    predicted = np.asarray(record[schema.TEST_PREDICTIONS])[sample]
    maps, features = {}, {}
    for name, backend in backends.items():
        load_into(backend, saved)
        maps[name] = backend.grad_cam(chosen, truth)
        features[name] = backend.feature_maps(chosen[:1])
    names = list(backends)
    others = [name for name in names if name != reference]
    feature_gaps = [_relative_difference(features[other][stage], features[reference][stage])
                    for other in others for stage in features[reference]]
    gradcam_gaps = [_relative_difference(maps[other], maps[reference]) for other in others]
    files["gradcam"].parent.mkdir(exist_ok=True)
    trained_by = saved.meta.backend
    _write_png(files["gradcam"], gallery.grad_cam_figure(
        chosen, truth, predicted, maps, class_names,
        f"{record[schema.MODEL]} (weights trained by {trained_by}): Grad-CAM of the true "
        f"class on {explained_stage(backends)}"))
    _write_png(files["features"], gallery.feature_grid_figure(
        chosen[0], {stage: value[0] for stage, value in features[reference].items()},
        f"{record[schema.MODEL]} (weights trained by {trained_by}): feature maps of a "
        f"{class_names[truth[0]]} test image, every stage ({reference})"))
    return {"run_id": run_id, "model": record[schema.MODEL], "trained_by": trained_by,
            "frameworks": names, "samples": sample.tolist(),
            **{kind: path.name for kind, path in files.items()},
            "gradcam_max_relative_difference": _worst(gradcam_gaps),
            "feature_max_relative_difference": _worst(feature_gaps)}


def _worst(gaps: list[float | None]) -> float | None:
    """The largest of the gaps; None when one is (a map not finite) or there are none."""
    return None if None in gaps or not gaps else max(gaps)


def figure_paths(folder: Path, run_id: str) -> dict[str, Path]:
    """Where a run's Grad-CAM and feature-map figures go: explain/<run id>-<kind>.png.

    Raises:
        UnsafeName: the run id would lead out of explain/ (a record edited to say
            "../../x"), or explain/ is a link out of the folder.
    """
    return {kind: artifact_path(folder, EXPLAIN_DIR, explain_figure_name(run_id, kind))
            for kind in ("gradcam", "features")}


def explained_stage(backends: dict[str, Any]) -> str:
    """The stage Grad-CAM explains (the last) of the model the backends hold."""
    return next(iter(backends.values())).stages()[-1]


def _write_png(path: Path, png: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(png)
    os.replace(partial, path)


def explaining_backends(records: list[dict[str, Any]]) -> list[str]:
    """The backends a folder's models are rebuilt in: those of its records, and tf and
    torch where installed (a one-backend run is still explained in both), in the
    registry's order.

    Args:
        records: the folder's records.

    Returns:
        The backend names.
    """
    return registry_order([*(r[schema.BACKEND] for r in records),
                           *(name for name in PAIR if missing_framework(name) is None)])


def explain_folder(location: Path, per_class: int = SAMPLES_PER_CLASS, seed: int = SAMPLE_SEED,
                   on_line=print, reference: str | None = None) -> dict[str, Any]:
    """Explains every (model, backend)'s first saved run of a report folder.

    Args:
        location: the report folder, or its results file.
        per_class: sampled test images per class.
        seed: the sample's seed.
        on_line: receives one progress line per run.
        reference: the backend the others' maps are measured against
            (`--reference-backend`, one of the records' backends; None: the default
            rule, as the report applies it).

    Returns:
        The summary written to `explain/explain.json`.

    Raises:
        ResultsFileError: the results file is missing or damaged.
        WeightsError: no run saved weights, or a run's files are missing, damaged or
            not its own.
        UnsafeName: a record names a file, or makes a figure's name, outside the folder;
            checked for every run before anything is computed or written.
        ValueError: `reference` is not among the records' backends.
        MissingFrameworkError: a record's backend's framework is not installed.
    """
    from backends import create_backend
    from backends.registry import sharing_one_process

    source = results_path(location)
    folder = source.parent
    records = read_records(source)
    runs = explained_runs(records)
    if not runs:
        raise WeightsError(f"{folder / WEIGHTS_DIR}: no run saved its weights (made with "
                           "--save-weights none, or every run failed)")
    summary_path = artifact_path(folder, EXPLAIN_DIR, EXPLAIN_SUMMARY_FILE)
    for record in runs:
        figure_paths(folder, record[schema.RUN_ID])
        weights_path(folder, record)
    # The report's reference, among the records' backends, so that explain.json and the
    # report it rebuilds set the backends against the same one.
    chosen_reference = reference_backend((r[schema.BACKEND] for r in records), reference)
    candidates = explaining_backends(records)
    kept, left_out = sharing_one_process(
        [chosen_reference, *(name for name in candidates if name != chosen_reference)])
    names = registry_order(kept)
    for name in left_out:
        on_line(f"{name}: not rebuilt here (Keras runs one backend per process); its runs' "
                f"weights are explained in {', '.join(names)}")
    backends = {name: create_backend(name) for name in names}
    others = ", ".join(name for name in names if name != chosen_reference)
    entries = []
    for record in runs:
        entry = explain_run(folder, record, backends, per_class, seed, chosen_reference)
        on_line(f"{entry['run_id']}: Grad-CAM {others} vs {chosen_reference} max |Δ| = "
                f"{described_difference(entry['gradcam_max_relative_difference'])}")
        entries.append(entry)
    summary = {"samples_per_class": per_class, "sample_seed": seed, "runs": entries}
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.explain",
        description="Grad-CAM and feature maps of a report folder's saved models, computed "
                    "in every backend from the same weights; rebuilds the report.")
    parser.add_argument("location", type=Path, help="a report folder or its results.jsonl")
    parser.add_argument("--per-class", type=int, default=SAMPLES_PER_CLASS,
                        help="test images per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED,
                        help="seed of the sample of test images (default: %(default)s)")
    add_reference_option(parser)
    args = parser.parse_args(argv)
    from benchmarks.report import write_report

    try:
        if args.per_class < 1:
            raise ValueError(f"--per-class must be ≥ 1. Received: {args.per_class}")
        explain_folder(args.location, args.per_class, args.seed,
                       reference=args.reference_backend)
        written = write_report(args.location, reference=args.reference_backend)
    except (ResultsFileError, ValueError, MissingFrameworkError) as error:
        # WeightsError and UnsafeName are ValueErrors.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: could not write the figures or the report: {error.strerror or error}",
              file=sys.stderr)
        return 1
    print(f"figures: {results_path(args.location).parent / EXPLAIN_DIR}")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
