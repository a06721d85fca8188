"""One measured run in its own process (docs/design.md §6).

    python -m benchmarks.runner.worker SPEC.json RESULT.json

Reads a RunSpec, trains one model with one backend (keeping the best epoch on
validation, docs/design.md §7), evaluates it on the test set and writes one result record.
The harness starts a fresh interpreter per run so memory peaks, thread pools and
allocators never leak across runs; if this process dies, the harness records the failure.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import EpochLog, Selection
from benchmarks.analysis.metrics import classification_metrics
from benchmarks.record import schema
from benchmarks.record.schema import check_record
from benchmarks.runner.config import RunSpec, record_header
from benchmarks.runner.env import host_environment
from benchmarks.runner.faults import hold_resident_memory, slow_down
from benchmarks.trackers.energy import EnergyTracker
from benchmarks.trackers.memory import (
    GpuMemoryTracker,
    HostMemoryTracker,
    current_anon_rss_mb,
    current_rss_mb,
    os_peak_rss_mb,
)
from benchmarks.trackers.timing import (
    CpuWaitClock,
    OthersCpuClock,
    SpeedCalibration,
    Stopwatch,
    inference_latency,
    peak_matmul_flops,
)

# The reference workload's matmul side with `MeasureConfig.epoch_calibration`: its operands
# (1 MB each) outgrow the per-core caches, as the models' working sets do.
EPOCH_CALIBRATION_MATMUL_SIZE = 512
# A training step costs about 3 forward passes: the forward itself, then a backward that
# computes gradients with respect to both activations and weights, each about as costly.
TRAIN_FLOPS_MULTIPLIER = 3
# The record's section saying which epoch's weights were tested (docs/design.md §7), added
# to schema 1 like its other later sections. Its numbers (epochs, validation scores) are
# shown in reports but judged by no threshold.
SELECTION = "selection"


def _say(spec: RunSpec, message: str) -> None:
    print(f"[{spec.backend} {spec.model}] {message}", flush=True)


def steady_epochs(history: list[EpochLog], freeze_epochs: int = 0) -> list[EpochLog]:
    """The epochs whose training time is the step's own: all but those that traced.

    Epoch 1 traces and compiles the step (and warms up caches and thread pools); with
    `freeze_epochs` F > 0, epoch F + 1 starts a fresh optimizer over every parameter,
    which retraces TF's step (a new variable list) and warms up torch's new optimizer
    state. Both are reported apart (`first_epoch_s`, `unfreeze_epoch_s`), alike in both
    frameworks; the other epochs are the steady ones every throughput is taken over.

    Args:
        history: `Backend.fit`'s epoch logs.
        freeze_epochs: `TrainConfig.freeze_epochs` of the run.

    Returns:
        The steady epochs, in order (empty with a single epoch).
    """
    return [e for e in history[1:] if freeze_epochs == 0 or e.epoch != freeze_epochs + 1]


def timing_summary(
    history: list[EpochLog],
    build_s: float,
    fit_s: float,
    eval_s: float,
    num_eval: int,
    threads: int = 1,
    calibration_s: list[float | None] | None = None,
    freeze_epochs: int = 0,
    cpus: int = 1,
) -> dict[str, float | None]:
    """The run's time figures (docs/measurement.md, docs/ci.md).

    Epoch 1 includes tracing/compilation, and with `freeze_epochs` the unfreeze epoch
    retraces, so throughput comes from the other, steady epochs only (`steady_epochs`;
    None without any). Each of those epochs also gives:

    * its load-corrected throughput, images / (train_s − cpu_wait_s / threads): the epoch
      without the time its threads waited for a CPU (exact when one thread computes at a
      time, as with `threads` = 1; with more, the wait is taken as spread evenly over the
      threads);
    * with `calibration_s`, its normalised speed: the load-corrected throughput times the
      mean duration of the reference workload timed just before and just after it, i.e.
      the images trained in the time the machine, as loaded then, ran the reference.

    Each figure is the median over the steady epochs; None where the epochs lack what it
    needs.

    Args:
        history: `Backend.fit`'s epoch logs.
        build_s: model build time.
        fit_s: wall time of `fit` (validation passes included).
        eval_s: wall time of predicting the `num_eval` test images.
        num_eval: test images.
        threads: intra-op threads the run computed with.
        calibration_s: `trackers.timing.SpeedCalibration` durations: one before the first epoch,
            then one after each epoch.
        freeze_epochs: `TrainConfig.freeze_epochs` of the run (0: no unfreeze epoch).
        cpus: the CPUs the run could use (`OthersCpuClock.cpus`): the capacity other
            processes' CPU time is a share of.

    Returns:
        The record's `timing` section: seconds (`_s`), images per second (`_img_s`),
        images per calibration and shares of capacity (`_share`, a fraction).
    """
    steady = steady_epochs(history, freeze_epochs)
    steady_s = sum(e.train_s for e in steady)
    waits = [e.cpu_wait_s for e in steady if e.cpu_wait_s is not None]
    others = [e.others_cpu_s for e in steady if e.others_cpu_s is not None]
    corrected = {e.epoch: e.images / (e.train_s - e.cpu_wait_s / threads) for e in steady
                 if e.cpu_wait_s is not None and e.train_s > e.cpu_wait_s / threads}
    normalised = []
    if calibration_s and len(calibration_s) == len(history) + 1:
        # Epoch n (1-based) lies between calibrations n − 1 and n.
        normalised = [speed * (calibration_s[n - 1] + calibration_s[n]) / 2
                      for n, speed in corrected.items()
                      if calibration_s[n - 1] is not None and calibration_s[n] is not None]
    # Busy time is sampled per clock tick, own time accounted exactly, so on an idle
    # machine their difference can come out a few ticks below zero: no one else ran.
    others_s = max(0.0, sum(others)) if steady and len(others) == len(steady) else None
    unfreeze = freeze_epochs + 1 if 0 < freeze_epochs < len(history) else None
    return {
        "build_s": build_s,
        "first_epoch_s": history[0].train_s,
        "unfreeze_epoch_s": history[unfreeze - 1].train_s if unfreeze else None,
        "steady_epoch_s_mean": steady_s / len(steady) if steady else None,
        "train_wall_s": fit_s,
        "train_throughput_img_s": sum(e.images for e in steady) / steady_s if steady else None,
        "train_throughput_corrected_img_s":
            statistics.median(corrected.values()) if corrected else None,
        "train_img_per_calibration": statistics.median(normalised) if normalised else None,
        "train_cpu_wait_s": sum(waits) if steady and len(waits) == len(steady) else None,
        "train_others_cpu_s": others_s,
        "train_others_cpu_share": None if others_s is None else others_s / (cpus * steady_s),
        # The host input path (backends/pipeline.py), over every epoch: the augmentation's
        # own cost, overlapped with training, and the share of it training waited for.
        "augment_s_per_epoch": _mean_known([e.augment_s for e in history]),
        "input_wait_s_per_epoch": _mean_known([e.input_wait_s for e in history]),
        "eval_wall_s": eval_s,
        "eval_throughput_img_s": num_eval / eval_s,
    }


def _mean_known(values: list[float | None]) -> float | None:
    """The mean of `values`, or None when any is unknown."""
    return None if not values or None in values else sum(values) / len(values)


def selection_summary(selection: Selection, history: list[EpochLog]) -> dict[str, Any]:
    """The record's `selection` section: `Backend.fit`'s Selection and the kept epoch's scores.

    Args:
        selection: what `fit` left in the model.
        history: `fit`'s epoch logs.
    """
    kept = history[selection.best_epoch - 1]
    return {**asdict(selection), "best_val_loss": kept.val_loss,
            "best_val_accuracy": kept.val_accuracy}


def _latency(spec: RunSpec, backend, images: np.ndarray) -> dict[str, Any]:
    """Inference latency (predict_proba on one batch) at batch 1 and the training batch size.

    The batches are test images, cycled when the test set is smaller than a batch.
    """
    measure = spec.measure
    return inference_latency(backend.predict_proba, images, spec.train.batch_size,
                             backend.synchronize, warmup=measure.latency_warmup,
                             repeats=measure.latency_repeats, budget_s=measure.latency_budget_s)


def _work(spec: RunSpec, backend, timing: dict, forward_flops: int) -> dict[str, Any]:
    """Achieved FLOP/s from the model's FLOP count, against a measured matmul peak."""
    size = spec.measure.calibration_size
    if size is None:
        size = 2048 if backend.device_name() == "cpu" else 8192
    peak = peak_matmul_flops(backend.matmul_op(size), size, backend.synchronize)
    throughput = timing["train_throughput_img_s"]
    train = TRAIN_FLOPS_MULTIPLIER * forward_flops * throughput if throughput else None
    evaluation = forward_flops * timing["eval_throughput_img_s"]
    return {
        "forward_flops_per_img": forward_flops,
        "train_flops_multiplier": TRAIN_FLOPS_MULTIPLIER,
        "train_achieved_tflops": train / 1e12 if train else None,
        "eval_achieved_tflops": evaluation / 1e12,
        "peak_matmul_tflops": peak / 1e12,
        "calibration_matmul_size": size,
        "train_utilization": train / peak if train else None,
        "eval_utilization": evaluation / peak,
    }


def _max_known(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def execute(spec: RunSpec) -> dict[str, Any]:
    """Runs `spec` in this process and returns its result record."""
    from backends import create_backend
    from backends.catalog import model_cost
    from backends.init import shared_initial_weights

    data = np.load(spec.prepared_data)
    class_names = [str(c) for c in data["class_names"]]
    x_train, y_train = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"], data["y_val"]
    x_test, y_test = data["x_test"], data["y_test"]

    backend = create_backend(spec.backend, threads=spec.threads, deterministic=spec.deterministic)
    rss_after_import_mb = current_rss_mb()
    anon_rss_after_import_mb = current_anon_rss_mb()
    faults = spec.faults
    slow_down(backend, faults)
    # Test-only: held from here until the memory figures are read.
    ballast = hold_resident_memory(faults.alloc_mb) if faults and faults.alloc_mb else None
    sync = backend.synchronize

    clock, others_clock = CpuWaitClock(), OthersCpuClock()
    calibration = None
    if spec.measure.epoch_calibration:
        calibration = SpeedCalibration(backend.matmul_op(EPOCH_CALIBRATION_MATMUL_SIZE), sync,
                                       clock)
    calibration_s = []

    def after_epoch(log) -> None:
        if calibration is not None:
            calibration_s.append(calibration())
        _say(spec, f"epoch {log.epoch}/{spec.train.epochs} loss {log.train_loss:.4f} "
                   f"val_acc {log.val_accuracy:.3f} ({log.train_s:.1f}s)")

    # The GPU tracker spans the whole run; it finds this process in NVML's list once the
    # framework has opened its CUDA context.
    with GpuMemoryTracker() as gpu_memory:
        backend.seed(spec.train.seed)
        with Stopwatch(sync) as build:
            backend.build(spec.model, x_train.shape[1:], len(class_names),
                          precision=spec.train.precision, dropout=spec.train.dropout)
            if spec.init == "shared":
                backend.set_weights(shared_initial_weights(backend.get_weights(), spec.train.seed,
                                                           twin=spec.twin_of is not None))
        _say(spec, f"built in {build.seconds:.1f}s, {backend.num_trainable_params():,} params")
        pretrained = load_pretrained(spec, backend) if spec.pretrained_file else None
        if calibration is not None:
            calibration_s.append(calibration())  # the first epoch's "before"
        with (
            HostMemoryTracker() as train_rss,
            EnergyTracker() as train_energy,
            Stopwatch(sync) as fit,
        ):
            history = backend.fit(x_train, y_train, spec.train, (x_val, y_val), after_epoch,
                                  cpu_wait_clock=clock, others_cpu_clock=others_clock,
                                  head_layers=pretrained and frozenset(pretrained.reinitialised))
        selection = selection_summary(backend.selection, history)
        _say(spec, f"testing epoch {selection['best_epoch']} of {selection['last_epoch']} "
                   f"(by {selection['metric']})")
        # The test set is scored once, here, with the kept epoch's weights; fit never saw
        # it (the latency probe below only times inference on its images). Its batch
        # shapes are traced first, untimed: the stopwatch bills prediction alone.
        backend.warm_up_prediction(x_test, spec.train.eval_batch_size)
        with (
            HostMemoryTracker() as eval_rss,
            EnergyTracker() as eval_energy,
            Stopwatch(sync) as evaluation,
        ):
            probabilities = backend.predict_proba_tta(x_test, spec.train.tta,
                                                      spec.train.eval_batch_size)
        latency = _latency(spec, backend, x_test)
    # Read before the calibration allocates its matrices, which would raise the peak.
    # Both views of one peak: the sampled phases may see a few pages more than the
    # kernel's lazily updated high-water mark, which catches what sampling misses.
    peak_host_rss_mb = max(os_peak_rss_mb(), train_rss.peak_mb, eval_rss.peak_mb)
    del ballast
    memory = {
        "rss_after_import_mb": rss_after_import_mb,
        "peak_host_rss_mb": peak_host_rss_mb,
        "train_peak_host_rss_mb": train_rss.peak_mb,
        "eval_peak_host_rss_mb": eval_rss.peak_mb,
        # Without the mapped library pages, whose resident share depends on the page cache
        # as well as on the code: the figures CI judges (docs/ci.md).
        "anon_rss_after_import_mb": anon_rss_after_import_mb,
        "peak_anon_rss_mb": _max_known(train_rss.peak_anon_mb, eval_rss.peak_anon_mb),
        "train_peak_anon_rss_mb": train_rss.peak_anon_mb,
        "eval_peak_anon_rss_mb": eval_rss.peak_anon_mb,
        "gpu_allocator_peak_mb": backend.gpu_allocator_peak_mb(),
        "nvml_peak_mb": gpu_memory.peak_mb,
    }
    timing = timing_summary(history, build.seconds, fit.seconds, evaluation.seconds, len(x_test),
                            spec.threads, calibration_s, spec.train.freeze_epochs,
                            len(others_clock.cpus) or 1)
    forward_flops = model_cost(spec.model, x_train.shape[1:], len(class_names)).flops
    work = _work(spec, backend, timing, forward_flops)
    metrics = classification_metrics(y_test, probabilities, class_names)
    _say(spec, f"test accuracy {metrics['accuracy']:.3f}, "
               f"{work['peak_matmul_tflops'] * 1e3:.0f} GFLOP/s matmul peak")
    # Saved only now, after every clock and memory peak above was read, so that saving
    # (a host copy of the weights, compression, disk) changes no figure.
    artifacts = save_run_weights(spec, backend, class_names, x_train.shape[1:],
                                 selection["best_epoch"], probabilities)
    return {
        schema.MODEL_INFO: {"trainable_params": backend.num_trainable_params()},
        schema.METRICS: metrics,
        schema.TIMING: timing,
        schema.LATENCY: latency,
        schema.MEMORY: memory,
        schema.ENERGY: {"train_energy_j": train_energy.energy_j,
                        "eval_energy_j": eval_energy.energy_j},
        schema.WORK: work,
        SELECTION: selection,
        schema.HISTORY: [{**asdict(e), "calibration_after_s": c}
                         for e, c in zip(history, calibration_s[1:] or [None] * len(history),
                                         strict=True)],
        schema.FLAGS: backend.flags(),
        schema.ENV: {**host_environment(), **backend.versions(),
                     "device": backend.device_name()},
        schema.TEST_LABELS: y_test.tolist(),
        schema.TEST_PREDICTIONS: probabilities.argmax(1).tolist(),
        schema.ARTIFACTS: artifacts,
        # The header's facts about the checkpoint, with the layers it provided.
        **({schema.PRETRAINED: {**spec.pretrained, **pretrained.as_record()}}
           if pretrained else {}),
    }


def load_pretrained(spec: RunSpec, backend):
    """Loads the run's staged checkpoint into the built model, over its initial weights.

    The layers the checkpoint cannot provide take the shared initial weights of the run's
    seed, in both frameworks alike (`backends.pretrained.map_checkpoint`).

    Returns:
        The `PretrainedWeights` loaded (its layer lists).

    Raises:
        ValueError: freeze_epochs > 0 but every layer came from the checkpoint.
    """
    from backends.pretrained import map_checkpoint, staged_checkpoint

    # With init "shared" (which a pretrained invocation requires) the model already holds the
    # shared initial weights of the run's seed: they are both the template and what the
    # re-initialised layers take, drawn once.
    if spec.init != "shared":
        raise ValueError(f"pretrained weights need init 'shared'. Received: init={spec.init!r}")
    initial = backend.get_weights()
    fitted = map_checkpoint(staged_checkpoint(Path(spec.pretrained_file)), initial, initial)
    backend.set_weights(fitted.weights)
    if spec.train.freeze_epochs and not fitted.reinitialised:
        raise ValueError(f"freeze_epochs {spec.train.freeze_epochs}: every layer of "
                         f"{spec.model} came from {spec.pretrained['path']}, so there is "
                         "nothing to train while the rest is frozen; use --freeze-epochs 0")
    reinitialised = ", ".join(fitted.reinitialised) or "none"
    _say(spec, f"pretrained: {len(fitted.loaded) + len(fitted.adapted)} layers from "
               f"{Path(spec.pretrained['path']).name} ({len(fitted.adapted)} adapted), "
               f"re-initialised: {reinitialised}")
    fitted.weights = {}  # the arrays now live in the model; the lists are what is kept
    return fitted


def save_run_weights(spec: RunSpec, backend, class_names: list[str],
                     input_shape: tuple[int, int, int], best_epoch: int,
                     probabilities: np.ndarray) -> dict[str, Any]:
    """Writes the model's weights (the kept epoch's) to `spec.weights_path`, if any.

    Args:
        spec: the run; nothing is written when its `weights_path` is None.
        backend: the trained backend, holding the kept epoch's weights.
        class_names: the classes, in label order.
        input_shape: (height, width, channels) of the model's input.
        best_epoch: the epoch whose weights the model holds (`Backend.selection`).
        probabilities: the test-set probabilities, stored with the weights for the
            report's error gallery.

    Returns:
        The record's `artifacts` section: `weights_file` (the name under the report
        folder's `weights/`, or None) and `weights_bytes` (None when not saved).
    """
    from backends.weights import WeightsMeta, save_weights

    if spec.weights_path is None:
        return {"weights_file": None, "weights_bytes": None}
    path = Path(spec.weights_path)
    meta = WeightsMeta(model=spec.model, input_shape=tuple(int(v) for v in input_shape),
                       num_classes=len(class_names), class_names=tuple(class_names),
                       backend=spec.backend, run_id=spec.run_id, best_epoch=best_epoch)
    size = save_weights(path, backend.get_weights(), meta, probabilities)
    _say(spec, f"weights: {size / 1e6:.1f} MB → {path.name}")
    return {"weights_file": path.name, "weights_bytes": size}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.runner.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = RunSpec.read(Path(argv[0]))
    if spec.faults:
        _say(spec, f"TEST FAULT INJECTION ACTIVE: {spec.faults.describe()}")
    started = time.time()
    record = {**record_header(spec), schema.STATUS: schema.OK, schema.ERROR: None,
              **execute(spec)}
    record[schema.WALL_S] = time.time() - started
    # A field the schema names but this worker forgot fails the run here, loudly, rather
    # than reaching the readers as a figure that is silently "—".
    check_record(record, complete=True)
    Path(argv[1]).write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
