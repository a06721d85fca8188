"""`python -m benchmarks.export LOCATION`: saved models as ONNX, checked and timed.

LOCATION is a report folder (or its results.jsonl) or one weights file (`.npz`).

* A report folder: every ok run that saved its weights is rebuilt from its weights file
  in the framework that trained it and exported by that framework (TF: tf2onnx;
  PyTorch: torch.onnx; keras-jax and jax: jax2onnx) into
  `FOLDER/onnx/<run_id>.<framework>.onnx`; Keras runs one backend per process, so of
  tf and keras-jax runs the second's are exported in a spawned process. Each export's
  logits are compared with the framework's own on the run's saved test images
  (max |Δ logits| ≤ 1e-4, `backends.onnx_export.PARITY_TOLERANCE`). Then each export is
  timed by onnxruntime, inference only, in its own process
  (`benchmarks.runner.onnx_worker`, through the harness that starts every run), with the
  run's own latency settings: batch 1 and the run's training batch, its thread count,
  its test images. `onnx/onnx.json` keeps every figure, and the report is rebuilt: its
  "Deployment (ONNX)" section sets onnxruntime's latency beside the native frameworks'.
* A weights file: the model is exported by each backend `--backend` names (default
  `both`: tf and torch) into the file's folder (or `--out`) as `<name>.<backend>.onnx`
  (`<name>.tf.onnx`, `<name>.torch.onnx`), checked on a fixed seeded batch, and timed
  likewise (batch 1 and 32); the figures are printed, not kept. A report folder's runs
  are each exported by the backend that trained them, whatever `--backend` says.

Exit status: 0 when every export matched its framework and was timed; 1 when one did
not match (beyond the tolerance, named loudly) or could not be timed, or a file could
not be written; 2 for bad input (not a report folder nor a weights file, a report
without saved weights, a weights file missing, damaged or for another model, `--out` a
file, the exporter's extra not installed: `onnx` for tf and torch, `jax-onnx` for the
JAX backends, `make setup-jax-onnx`), with one line naming the problem, and nothing
written (arrays that do not fit the model their file names are found only when loaded,
and a graph onnxruntime could not run only when exported, after the exports before
them); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import MissingFrameworkError
from backends.train_config import TrainConfig
from backends.weights import SavedWeights, WeightsError, check_matches, load_into, read_weights
from benchmarks.backend_choice import (
    add_backend_option,
    add_reference_option,
    expand_backends,
    reference_backend,
)
from benchmarks.console import run_command, say
from benchmarks.record import schema
from benchmarks.record.layout import (
    ONNX_DIR,
    ONNX_SUMMARY_FILE,
    RESULTS_FILE,
    WEIGHTS_DIR,
    onnx_model_name,
)
from benchmarks.record.store import ResultsFileError, read_records, results_path
from benchmarks.report.artifacts import artifact_path, test_images, test_images_path, weights_path
from benchmarks.report.tables import text_table
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.env import available_cores

# A weights file alone has no test images: a fixed batch of random pixels, this many,
# drawn from this seed, is what its exports are checked and timed on.
SEEDED_IMAGES, SEEDED_SEED = 32, 0
SEEDED_KEY = "images"


@dataclass
class Job:
    """One export: which weights, exported by which framework, checked on which images.

    Attributes:
        name: the run id (report folder) or the weights file's stem.
        weights_path: the weights file.
        framework: the framework that exports it.
        out_path: the `.onnx` to write.
        images_path, images_key: where the images it is checked and timed on are.
        train_batch_size, threads, measure: the latency settings (the run's).
        record: the run's record (report folder), or None.
    """

    name: str
    weights_path: Path
    framework: str
    out_path: Path
    images_path: Path
    images_key: str
    train_batch_size: int
    threads: int | None
    measure: MeasureConfig
    record: dict[str, Any] | None = None


def saved_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ok run whose weights were saved, in file order."""
    return [r for r in records if schema.succeeded(r)
            and (r.get(schema.ARTIFACTS) or {}).get("weights_file")]


def _measure(record: dict[str, Any]) -> MeasureConfig:
    stored = record.get(schema.MEASURE_CONFIG) or {}
    fields = MeasureConfig.__dataclass_fields__
    return MeasureConfig(**{k: v for k, v in stored.items() if k in fields})


def report_jobs(location: Path, out: Path | None) -> tuple[Path, list[Job]]:
    """The exports of a report folder, every input checked first.

    Returns:
        The report folder and its jobs.

    Raises:
        ResultsFileError: the results file is missing or damaged.
        WeightsError: no run saved its weights, or a run's weights or test images are
            missing, damaged or not its own.
        UnsafeName: a record names a file, or makes an export's name, outside the folder.
    """
    source = results_path(location)
    folder = source.parent
    runs = saved_runs(read_records(source))
    if not runs:
        raise WeightsError(f"{folder / WEIGHTS_DIR}: no run saved its weights (made with "
                           "--save-weights none, or every run failed): nothing to export")
    artifact_path(folder, ONNX_DIR, ONNX_SUMMARY_FILE)  # written last, refused first
    jobs = []
    for record in runs:
        backend = record[schema.BACKEND]
        # The name comes from the record: it must not lead out of the folder it goes to.
        name = onnx_model_name(record[schema.RUN_ID], backend)
        out_path = artifact_path(out, name) if out else artifact_path(folder, ONNX_DIR, name)
        weights = weights_path(folder, record)
        _check_weights(weights, record)
        test_images(folder, record)  # raises unless the run's own test images are there
        jobs.append(Job(
            name=record[schema.RUN_ID], weights_path=weights, framework=backend,
            out_path=out_path, images_path=test_images_path(folder, record),
            images_key="x_test",
            train_batch_size=int((record.get(schema.CONFIG) or {}).get(
                "batch_size", TrainConfig().batch_size)),
            threads=record.get(schema.THREADS), measure=_measure(record), record=record))
    return folder, jobs


def _check_weights(path: Path, record: dict[str, Any]) -> None:
    data = record.get(schema.DATA) or {}
    shape = data.get("image_shape")
    check_matches(read_weights(path), model=record[schema.MODEL],
                  input_shape=tuple(shape) if shape else None,
                  num_classes=len(data["class_names"]) if data.get("class_names") else None)


def weights_jobs(path: Path, out: Path | None, work: Path,
                 frameworks: tuple[str, ...]) -> list[Job]:
    """The exports of one weights file: by each of `frameworks`, on a seeded batch in `work`.

    Args:
        path: the weights file.
        out: the folder for the .onnx files; None: the weights file's.
        work: a scratch folder for the seeded batch.
        frameworks: the backends that export it (`--backend`).

    Returns:
        One job per framework.

    Raises:
        WeightsError: the file is missing, damaged or not a weights file.
    """
    saved = read_weights(path)
    rng = np.random.default_rng(SEEDED_SEED)
    images = rng.integers(0, 256, (SEEDED_IMAGES, *saved.meta.input_shape), dtype=np.uint8)
    images_path = work / "seeded-images.npz"
    np.savez(images_path, **{SEEDED_KEY: images})
    target = out or path.parent
    stem = path.name.removesuffix(".npz")
    return [Job(name=stem, weights_path=path, framework=framework,
                out_path=target / onnx_model_name(stem, framework), images_path=images_path,
                images_key=SEEDED_KEY, train_batch_size=TrainConfig().batch_size,
                threads=available_cores(), measure=MeasureConfig())
            for framework in frameworks]


def export_job(job: Job, backends: dict[str, Any]) -> dict[str, Any]:
    """Exports one job and checks it against its framework; returns its summary entry."""
    from backends.onnx_export import OnnxSession, export_onnx, parity

    saved: SavedWeights = read_weights(job.weights_path)
    backend = load_into(backends[job.framework], saved)
    with np.load(job.images_path, allow_pickle=False) as stored:
        images = stored[job.images_key]
    size = export_onnx(backend, job.out_path, saved.meta.input_shape)
    difference = parity(backend, OnnxSession(job.out_path), images)
    return {"name": job.name, "model": saved.meta.model, "trained_by": saved.meta.backend,
            "exported_by": job.framework, "file": job.out_path.name, "onnx_bytes": size,
            "parity_max_abs_logit_diff": difference, "parity_images": len(images),
            "parity_on": "test set" if job.record is not None else
            f"{len(images)} random images (seed {SEEDED_SEED})"}


def export_jobs(jobs: list[Job],
                on_line: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Exports `jobs` in this process, each framework's backend created once.

    Args:
        jobs: the exports.
        on_line: receives each export's `exported_line` as it is done; None: nothing.

    Returns:
        `export_job`'s entry of each job, in order.
    """
    from backends import create_backend

    backends = {name: create_backend(name) for name in dict.fromkeys(j.framework for j in jobs)}
    entries = []
    for job in jobs:
        entries.append(export_job(job, backends))
        if on_line is not None:
            on_line(exported_line(job, entries[-1]))
    return entries


def exported_line(job: Job, entry: dict[str, Any]) -> str:
    """The progress line of one export: where it went and its parity."""
    return (f"{job.name}: exported by {job.framework} → {job.out_path} "
            f"({entry['onnx_bytes'] / 1e6:.1f} MB); max |Δ logits| vs {job.framework} = "
            f"{entry['parity_max_abs_logit_diff']:.1e} on {entry['parity_on']}")


def export_each_in_its_process(jobs: list[Job],
                               on_line: Callable[[str], None] = say) -> list[dict[str, Any]]:
    """Exports `jobs` in this process, but those of a Keras backend it cannot run.

    Keras runs one backend per process (`backends.registry.sharing_one_process`): of tf
    and keras-jax runs (a `--backend all` folder), the framework this process cannot run
    (the second, or the one whose Keras another has imported here) exports in a spawned
    process of its own. A framework's threads and memory go with the call that created
    it, before onnxruntime is timed.

    Args:
        jobs: the exports.
        on_line: receives each export's `exported_line`: as it is done in this process;
            a spawned process's, once it has done them all.

    Returns:
        `export_job`'s entry of each job, in the jobs' order.
    """
    from backends.registry import runs_in_this_process, sharing_one_process

    entries: dict[int, dict[str, Any]] = {}
    remaining = list(dict.fromkeys(job.framework for job in jobs))
    while remaining:
        kept, remaining = sharing_one_process(remaining)
        group = [i for i, job in enumerate(jobs) if job.framework in kept]
        if all(runs_in_this_process(name) for name in kept):
            exported = export_jobs([jobs[i] for i in group], on_line)
        else:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                exported = pool.submit(export_jobs, [jobs[i] for i in group]).result()
            for i, entry in zip(group, exported, strict=True):
                on_line(exported_line(jobs[i], entry))
        entries.update(zip(group, exported, strict=True))
    return [entries[i] for i in range(len(jobs))]


def time_job(job: Job, on_line=print) -> dict[str, Any]:
    """Times one export in onnxruntime in its own process; its result, or its error."""
    from benchmarks.runner.harness import run_process
    from benchmarks.runner.onnx_worker import OnnxRunSpec

    spec = OnnxRunSpec(label=f"{job.name} ({job.framework} export)",
                       onnx_path=str(job.out_path.resolve()),
                       images_path=str(job.images_path.resolve()), images_key=job.images_key,
                       train_batch_size=job.train_batch_size, threads=job.threads,
                       measure=job.measure)
    ended = run_process("benchmarks.runner.onnx_worker", spec.to_json(), spec.timeout_s,
                        on_line)
    if ended.interrupted:
        raise KeyboardInterrupt
    if ended.result is None:
        return {"error": ended.failure_reason()}
    return ended.result


def latency_table(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The printed summary: one row per export."""
    headers = ["export", "max |Δ logits|", "provider", "b1 p50 ms", "b1 p95 ms",
               "train batch", "p50 ms", "p95 ms", "img/s"]
    rows = []
    for entry in entries:
        latency = entry.get("latency") or {}
        size, p50 = latency.get("latency_train_batch_size"), \
            latency.get("latency_train_batch_p50_ms")
        rows.append([entry["file"], f"{entry['parity_max_abs_logit_diff']:.1e}",
                     entry.get("provider") or entry.get("error") or "not timed",
                     *(_ms(latency.get(k)) for k in ("latency_b1_p50_ms", "latency_b1_p95_ms")),
                     str(size or "—"),
                     *(_ms(latency.get(k)) for k in ("latency_train_batch_p50_ms",
                                                     "latency_train_batch_p95_ms")),
                     f"{size / p50 * 1e3:,.0f}" if size and p50 else "—"])
    return headers, rows


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _jobs(args: argparse.Namespace, work: Path) -> tuple[Path | None, list[Job]]:
    """The report folder (None for a weights file) and the jobs, every input checked."""
    location = args.location
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder (made if missing)")
    if location.is_dir() or location.name == RESULTS_FILE:
        return report_jobs(location, args.out)
    if location.is_file() and location.suffix == ".npz":
        return None, weights_jobs(location, args.out, work,
                                  expand_backends(args.backend).backends)
    raise ValueError(f"{location}: neither a report folder (holding results.jsonl) nor a "
                     "weights file (.npz): pass reports/<folder> or "
                     "reports/<folder>/weights/<run_id>.npz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.export",
        description="Export saved models to ONNX from their frameworks, check each "
                    "against its framework's logits and time it in onnxruntime.")
    parser.add_argument("location", type=Path,
                        help="a report folder (or its results.jsonl) or a weights file (.npz)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the .onnx files (default: the report folder's "
                             "onnx/, or the weights file's folder)")
    parser.add_argument("--no-latency", action="store_true",
                        help="export and check only: no onnxruntime timing")
    add_backend_option(parser)
    add_reference_option(parser)
    args = parser.parse_args(argv)
    from backends.onnx_export import PARITY_TOLERANCE, check_onnx_available
    from backends.registry import check_available

    with tempfile.TemporaryDirectory(prefix="ferbench-export-") as work:
        try:
            folder, jobs = _jobs(args, Path(work))
            if folder is not None:  # the rebuilt report's reference, checked before any export
                reference_backend((r[schema.BACKEND] for r in read_records(folder / RESULTS_FILE)),
                                  args.reference_backend)
            frameworks = tuple(dict.fromkeys(job.framework for job in jobs))
            for framework in frameworks:
                check_available(framework)
            check_onnx_available(frameworks)
        except (ResultsFileError, MissingFrameworkError, ValueError) as error:
            # WeightsError is a ValueError.
            print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            return _export_all(folder, jobs, args.no_latency, PARITY_TOLERANCE,
                               args.reference_backend)
        except (WeightsError, NotImplementedError) as error:
            # Arrays that do not fit the model their metadata names, or a graph the
            # exporter wrote that onnxruntime cannot run: found only when exported.
            print(f"error: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"error: could not write the exports or the report: "
                  f"{error.strerror or error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: the exports written so far are kept; onnx.json and the "
                  "report were not updated", file=sys.stderr)
            return 130


def _export_all(folder: Path | None, jobs: list[Job], no_latency: bool,
                tolerance: float, reference: str | None) -> int:
    for job in jobs:
        job.out_path.parent.mkdir(parents=True, exist_ok=True)
    entries = export_each_in_its_process(jobs)
    mismatched = [f"{job.out_path.name}: max |Δ logits| "
                  f"{entry['parity_max_abs_logit_diff']:.2e} > {tolerance:g}"
                  for job, entry in zip(jobs, entries, strict=True)
                  if not entry["parity_max_abs_logit_diff"] <= tolerance]
    failed = []
    for job, entry in zip(jobs, entries, strict=True):
        if no_latency:
            continue
        entry.update(time_job(job))
        if "error" in entry:
            failed.append(f"{job.out_path.name}: not timed: {entry['error']}")
    print(text_table(*latency_table(entries)))
    if folder is not None:
        summary = {"tolerance": tolerance, "load_average_1min": os.getloadavg()[0],
                   "exports": entries}
        (folder / ONNX_DIR).mkdir(exist_ok=True)
        artifact_path(folder, ONNX_DIR, ONNX_SUMMARY_FILE).write_text(
            json.dumps(summary, indent=1))
        from benchmarks.report import write_report

        for path in write_report(folder, reference=reference):
            print(path)
    for line in mismatched:
        print(f"error: PARITY FAILED: {line}", file=sys.stderr)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if mismatched or failed else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
