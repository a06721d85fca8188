"""One measured run in its own process (DESIGN §2.6).

    python -m benchmarks.worker SPEC.json RESULT.json

Reads a RunSpec, trains and evaluates one model with one backend, and writes one result
record. The harness starts a fresh interpreter per run so memory peaks, thread pools and
allocators never leak across runs; if this process dies, the harness records the failure.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import SCHEMA_VERSION, RunSpec
from benchmarks.env import host_environment
from benchmarks.metrics import classification_metrics
from benchmarks.probes import Stopwatch, current_rss_mb, os_peak_rss_mb


def _say(spec: RunSpec, message: str) -> None:
    print(f"[{spec.backend} {spec.model}] {message}", flush=True)


def _timing(history, build_s: float, fit_s: float, eval_s: float) -> dict[str, Any]:
    """Epoch 1 includes tracing/compilation, so throughput comes from the later epochs."""
    steady = history[1:]
    steady_s = sum(e.train_s for e in steady)
    return {
        "build_s": build_s,
        "first_epoch_s": history[0].train_s,
        "steady_epoch_s_mean": steady_s / len(steady) if steady else None,
        "train_wall_s": fit_s,
        "train_throughput_img_s": sum(e.images for e in steady) / steady_s if steady else None,
        "eval_wall_s": eval_s,
    }


def execute(spec: RunSpec) -> dict[str, Any]:
    """Runs `spec` in this process and returns its result record."""
    from backends import create_backend
    from backends.init import shared_initial_weights

    data = np.load(spec.prepared_data)
    class_names = [str(c) for c in data["class_names"]]
    x_train, y_train = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"], data["y_val"]
    x_test, y_test = data["x_test"], data["y_test"]

    backend = create_backend(spec.backend, threads=spec.threads)
    rss_after_import_mb = current_rss_mb()
    backend.seed(spec.train.seed)
    with Stopwatch() as build:
        backend.build(spec.model, x_train.shape[1:], len(class_names))
        if spec.init == "shared":
            backend.set_weights(shared_initial_weights(backend.get_weights(), spec.train.seed))
    _say(spec, f"built in {build.seconds:.1f}s, {backend.num_trainable_params():,} params")

    def progress(log) -> None:
        _say(spec, f"epoch {log.epoch}/{spec.train.epochs} loss {log.train_loss:.4f} "
                   f"val_acc {log.val_accuracy:.3f} ({log.train_s:.1f}s)")

    with Stopwatch() as fit:
        history = backend.fit(x_train, y_train, spec.train, (x_val, y_val), progress)
    with Stopwatch() as evaluation:
        probabilities = backend.predict_proba(x_test, spec.train.eval_batch_size)
    metrics = classification_metrics(y_test, probabilities, class_names)
    _say(spec, f"test accuracy {metrics['accuracy']:.3f}")
    return {
        "model_info": {"trainable_params": backend.num_trainable_params()},
        "metrics": metrics,
        "timing": _timing(history, build.seconds, fit.seconds, evaluation.seconds),
        "memory": {
            "rss_after_import_mb": rss_after_import_mb,
            "peak_host_rss_mb": os_peak_rss_mb(),
        },
        "history": [asdict(e) for e in history],
        "flags": backend.flags(),
        "env": {**host_environment(), **backend.versions(), "device": backend.device_name()},
        "test_labels": y_test.tolist(),
        "test_predictions": probabilities.argmax(1).tolist(),
    }


def record_header(spec: RunSpec) -> dict[str, Any]:
    """The fields every record carries, whether the run succeeded or failed."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "backend": spec.backend,
        "model": spec.model,
        "dataset": spec.dataset,
        "fold": spec.fold,
        "seed": spec.train.seed,
        "init": spec.init,
        "threads": spec.threads,
        "config": asdict(spec.train),
        "data": spec.data_info,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = RunSpec.read(Path(argv[0]))
    started = time.time()
    record = {**record_header(spec), "status": "ok", "error": None, **execute(spec)}
    record["wall_s"] = time.time() - started
    Path(argv[1]).write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
