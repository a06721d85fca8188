"""Synthetic result records for the report and compare tests (no training).

The records have the worker's shape, and their metrics come from the real metrics module
applied to generated predictions, so confusion matrices and per-class figures agree.
"""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.analysis.metrics import classification_metrics
from benchmarks.record.schema import SCHEMA_VERSION
from benchmarks.record.store import append_record, new_report_dir

# A class name and an error message that would run script if the report did not escape.
INJECTION = '<script>alert("x")</script>'
CLASS_NAMES = ["anger", "happiness", f"sad {INJECTION}", "surprise"]
FAILED_ERROR = ("worker killed by SIGKILL <img src=x onerror=alert(1)> (likely out of memory: "
                "the kernel's OOM killer)")
NUM_TEST = 120
EPOCHS = 3
# Today's pair, and the four backends as the registry names them once JAX is in.
PAIR = ("tf", "torch")
FOUR_BACKENDS = ("tf", "torch", "keras-jax", "jax")


def make_record(backend: str, model: str, seed: int, accuracy: float = 0.7,
                fold: int | None = None, train_s: float = 20.0) -> dict[str, Any]:
    """An ok record whose predictions are right on about `accuracy` of the test images."""
    rng = np.random.default_rng(zlib.crc32(f"{backend}-{model}-{seed}-{fold}".encode()))
    labels = np.arange(NUM_TEST) % len(CLASS_NAMES)
    predictions = np.where(rng.random(NUM_TEST) < accuracy, labels,
                           rng.integers(0, len(CLASS_NAMES), NUM_TEST))
    probabilities = np.full((NUM_TEST, len(CLASS_NAMES)), 0.1)
    probabilities[np.arange(NUM_TEST), predictions] = 0.7
    probabilities /= probabilities.sum(1, keepdims=True)
    history = [{"epoch": e, "train_loss": 1.5 / e + rng.normal(0, 0.02), "train_s": train_s / 3,
                "steps": 10, "images": 640, "val_loss": 1.6 / e, "val_accuracy": 0.3 + 0.1 * e,
                "val_s": 0.5, "extra": {}} for e in range(1, EPOCHS + 1)]
    return {
        **header(backend, model, seed, fold),
        "status": "ok",
        "error": None,
        "model_info": {"trainable_params": 584_807},
        "metrics": classification_metrics(labels, probabilities, CLASS_NAMES),
        "timing": {"build_s": 0.2, "first_epoch_s": train_s / 2,
                   "steady_epoch_s_mean": train_s / 4, "train_wall_s": train_s,
                   "train_throughput_img_s": 640 / (train_s / 4), "eval_wall_s": 1.0,
                   # A probe the catalog does not list, shown where present (the
                   # worker's own latency figures are in schema.LATENCY).
                   "latency_b1_p50_ms": 3.0 if backend == "torch" else None,
                   "train_cpu_wait_s": 0.0, "train_others_cpu_share": 0.0},
        "memory": {"rss_after_import_mb": 400.0, "peak_host_rss_mb": 1000.0 + seed,
                   "peak_anon_rss_mb": 600.0 + seed},
        "energy": {"train_j": 50.0 * train_s},
        # Skewed as real latencies are: one seed in three is 30 times slower, so the
        # t-interval of three seeds reaches far below zero.
        "latency": {"latency_b1_p50_ms": 60.0 if seed % 3 == 2 else 2.0,
                    "latency_b1_calls": 50, "latency_train_batch_size": 64},
        "work": {"forward_flops_per_img": 86_064_647, "train_flops_multiplier": 3,
                 "calibration_matmul_size": 2048, "peak_matmul_tflops": 0.1 + 0.01 * seed},
        "history": history,
        "flags": {"tf_function": backend == "tf"},
        "env": {"python": "3.11.7", backend: "2.0.0", "device": "cpu"},
        "test_labels": labels.tolist(),
        "test_predictions": predictions.tolist(),
    }


def header(backend: str, model: str, seed: int, fold: int | None = None) -> dict[str, Any]:
    fold_part = "" if fold is None else f"-fold{fold}"
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{backend}-{model}-synthetic{fold_part}-seed{seed}",
        "backend": backend, "model": model, "dataset": "synthetic", "fold": fold,
        "seed": seed, "init": "shared", "threads": None,
        "config": {"epochs": EPOCHS, "batch_size": 64, "seed": seed},
        "data": {"class_names": CLASS_NAMES, "fingerprint": "abc123",
                 "protocol": "holdout (subject-independent)", "num_train": 600,
                 "num_val": 100, "num_test": NUM_TEST,
                 "skipped_files": [{"path": f"faces/{INJECTION}.png", "reason": "not an image"}],
                 "duplicates": 2},
    }


def twin_of(record: dict[str, Any], changed: int, backend: str | None = None) -> dict[str, Any]:
    """A twin of `record` (`schema.TWIN_OF`) that predicts its first `changed` test images
    otherwise; `backend` makes it a run of another backend instead (no twin)."""
    twin = copy.deepcopy(record)
    predictions = twin["test_predictions"]
    for index in range(changed):
        predictions[index] = (predictions[index] + 1) % len(CLASS_NAMES)
    labels = np.asarray(twin["test_labels"])
    twin["metrics"]["accuracy"] = float(np.mean(np.asarray(predictions) == labels))
    if backend is not None:
        twin["backend"] = backend
        twin["run_id"] = twin["run_id"].replace(record["backend"], backend, 1)
    else:
        twin["twin_of"] = record["run_id"]
        twin["run_id"] = f"{record['run_id']}-twin"
    return twin


def failed_record(backend: str, model: str, seed: int) -> dict[str, Any]:
    return {**header(backend, model, seed), "status": "failed", "error": FAILED_ERROR,
            "stderr_tail": f"Traceback …\n{FAILED_ERROR}"}


def grid(seeds: int = 3, backends: tuple[str, ...] = PAIR) -> list[dict[str, Any]]:
    """`backends` × two models × `seeds` seeds, all ok; each backend after the first two
    trains a little slower (train_s), so that their timing columns differ."""
    return [make_record(backend, model, seed, accuracy=0.6 if model == "sanet" else 0.75,
                        train_s=20.0 * (1 + 0.25 * max(0, index - 1)))
            for model in ("proposed_cnn", "sanet") for seed in range(seeds)
            for index, backend in enumerate(backends)]


def slower(records: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Copies of `records` with every time × factor and every throughput ÷ factor."""
    result = copy.deepcopy(records)
    for record in result:
        timing = record.get("timing") or {}
        for key, value in timing.items():
            if value is not None:
                timing[key] = value / factor if key.endswith("_img_s") else value * factor
    return result


def write_results(root: Path, records: list[dict[str, Any]]) -> Path:
    """A new report folder holding `records` as its results.jsonl."""
    folder = new_report_dir(root, "synthetic")
    for record in records:
        append_record(folder, record)
    return folder
