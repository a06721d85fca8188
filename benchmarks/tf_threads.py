"""Which thread settings train TensorFlow fastest on this CPU: proposed_cnn's throughput.

    python -m benchmarks.tf_threads [--epochs 4] [--subjects 28] [--repeats 2]

TensorFlow's intra-op pool (the threads one op's kernels split their work over) and its
inter-op pool (the threads that run independent ops at once) both get every core today
(`backends/tf/runtime.py`, `configure_runtime`: `--threads N` sets both). On 2 cores that
is up to 4 busy threads, which queue behind each other: TF's runs count 8–23% of their
training as run-queue wait on a quiet machine (docs/measurement.md). This study trains
`proposed_cnn` (48×48, batch 32, the synthetic set) in TF under each setting of SETTINGS,
each run in a fresh process (thread pools are fixed at TF's first op), and prints per
setting the median steady-epoch throughput over `--repeats` rounds (each round runs every
setting once, in a rotated order, so a drift in the machine's load falls on all of them),
the run-queue wait and other processes' share of the CPU during the steady epochs, and the
1-minute load average before and after each run. TF's CPU kernels run on its own thread
pools (oneDNN through TF's threadpool, not OpenMP), so OMP_NUM_THREADS is left out; the
oneDNN switch (TF_ENABLE_ONEDNN_OPTS) is one setting, for reference. Run it alone on the
machine: other load changes every figure (a run whose others' share passes
`analysis.load.MAX_OTHERS_CPU_SHARE` is marked †).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks.analysis.load import LOADED_MARK, MAX_OTHERS_CPU_SHARE
from benchmarks.runner.env import SUITE_ROOT, available_cores
from benchmarks.runner.study_options import add_workload_options, check_workload

MODEL = "proposed_cnn"
# What a child prints its result after, on one line of JSON.
_PROTOCOL = "TF_THREADS_RESULT"


@dataclass(frozen=True)
class ThreadSetting:
    """One runtime setting of TensorFlow's CPU threads.

    Attributes:
        label: the row's name.
        intra_op_threads: TF's intra-op pool size (0: TF's default, every core).
        inter_op_threads: TF's inter-op pool size (0: TF's default).
        environment: variables set for the child before TF is imported.
    """

    label: str
    intra_op_threads: int
    inter_op_threads: int
    environment: tuple[tuple[str, str], ...] = ()


def settings(cores: int) -> tuple[ThreadSetting, ...]:
    """The settings compared on a machine with `cores` usable cores; the first is today's."""
    return (
        ThreadSetting(f"today: intra {cores}, inter {cores}", cores, cores),
        ThreadSetting(f"intra {cores}, inter 1", cores, 1),
        ThreadSetting("intra 1, inter 1", 1, 1),
        ThreadSetting(f"intra 1, inter {cores}", 1, cores),
        ThreadSetting("TF's defaults (0, 0)", 0, 0),
        ThreadSetting(f"intra {cores}, inter 1, oneDNN off", cores, 1,
                (("TF_ENABLE_ONEDNN_OPTS", "0"),)),
    )


def child(intra: int, inter: int, epochs: int, subjects: int, batch_size: int) -> dict[str, Any]:
    """Trains MODEL in TF with the given pools in this process; returns its figures.

    Args:
        intra: intra-op threads (0: TF's default).
        inter: inter-op threads (0: TF's default).
        epochs: epochs, the first reported apart (tracing).
        subjects: synthetic subjects, 21 images each.
        batch_size: training batch.

    Returns:
        `train_throughput_img_s`, `first_epoch_s`, `steady_epoch_s_mean`, the run-queue
        wait and others' CPU share of the steady epochs, as the worker records them.
    """
    import tensorflow as tf

    # Before TF's first op, which fixes the pools; the backend then leaves them alone
    # (threads=None), so this is the only setting in force.
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    from backends import create_backend
    from backends.init import shared_initial_weights
    from backends.train_config import TrainConfig
    from benchmarks.runner.worker import timing_summary
    from benchmarks.trackers.timing import CpuWaitClock, OthersCpuClock
    from datasets.synthetic import generate

    faces = generate(num_subjects=subjects, image_size=48)
    backend = create_backend("tf")
    backend.build(MODEL, faces.images.shape[1:], len(faces.class_names))
    backend.set_weights(shared_initial_weights(backend.get_weights(), 0))
    others = OthersCpuClock()
    history = backend.fit(faces.images, faces.labels,
                          TrainConfig(epochs=epochs, batch_size=batch_size),
                          cpu_wait_clock=CpuWaitClock(), others_cpu_clock=others)
    timing = timing_summary(history, 0.0, 0.0, 1.0, 1, cpus=len(others.cpus) or 1)
    steady_s = sum(e.train_s for e in history[1:])
    wait = timing["train_cpu_wait_s"]
    return {
        "train_throughput_img_s": timing["train_throughput_img_s"],
        "first_epoch_s": timing["first_epoch_s"],
        "steady_epoch_s_mean": timing["steady_epoch_s_mean"],
        # Summed over threads, as a share of the steady time: queueing, own threads included.
        "cpu_wait_share": None if wait is None else wait / steady_s,
        "others_cpu_share": timing["train_others_cpu_share"],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def _load_1m() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_setting(setting: ThreadSetting, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one setting in a fresh interpreter; returns its figures and the load around it."""
    command = [sys.executable, "-m", "benchmarks.tf_threads", "--child",
               str(setting.intra_op_threads), str(setting.inter_op_threads),
               "--epochs", str(args.epochs), "--subjects", str(args.subjects),
               "--batch-size", str(args.batch_size)]
    # The same TF log level as the backend sets, whichever module imports TF first.
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, **dict(setting.environment)}
    load_before = _load_1m()
    done = subprocess.run(command, cwd=SUITE_ROOT, env=env, capture_output=True, text=True,
                          check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_PROTOCOL)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{setting.label}: the child exited with status "
                           f"{done.returncode}:\n{done.stderr[-2000:]}")
    result = json.loads(lines[-1].split(maxsplit=1)[1])
    return {**result, "load_before": load_before, "load_after": _load_1m()}


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per setting: medians over its rounds, and the load range around its runs.

    Args:
        results: setting label → each round's figures (`run_setting`).
    """
    header = (f"{'setting':<36}{'img/s':>8}{'steady s':>10}{'first s':>9}{'run-queue':>11}"
              f"{'others':>8}  load 1m")
    lines = [header, "-" * len(header)]
    for label, rounds in results.items():
        def median(key: str, rounds=rounds) -> float | None:
            values = [r[key] for r in rounds if r[key] is not None]
            return statistics.median(values) if values else None

        others = median("others_cpu_share")
        mark = f" {LOADED_MARK}" if others is not None and others > MAX_OTHERS_CPU_SHARE else ""
        loads = [r[k] for r in rounds for k in ("load_before", "load_after")
                 if r[k] is not None]
        load = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "—"
        lines.append(f"{label:<36}{_cell(median('train_throughput_img_s'), '.1f'):>8}"
                     f"{_cell(median('steady_epoch_s_mean'), '.3f'):>10}"
                     f"{_cell(median('first_epoch_s'), '.2f'):>9}"
                     f"{_cell(median('cpu_wait_share'), '.0%'):>11}"
                     f"{_cell(others, '.0%') + mark:>8}  {load}")
    lines.append(f"median over rounds; run-queue: the run's threads' wait for a CPU, summed "
                 f"over threads, as a share of the steady time; others: other processes' "
                 f"share of the CPU capacity ({LOADED_MARK} beyond "
                 f"{MAX_OTHERS_CPU_SHARE:.0%}: not comparable)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tf_threads",
                                     description=__doc__.split("\n\n")[0])
    add_workload_options(parser)
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds over every setting, ≥ 1 (default 2)")
    parser.add_argument("--child", nargs=2, type=int, metavar=("INTRA", "INTER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_workload(parser, args)
    if args.repeats < 1:
        parser.error(f"--repeats must be ≥ 1. Received: {args.repeats}")
    if args.child:
        result = child(*args.child, args.epochs, args.subjects, args.batch_size)
        print(_PROTOCOL, json.dumps(result), flush=True)
        return 0
    chosen = settings(available_cores())
    results: dict[str, list[dict[str, Any]]] = {s.label: [] for s in chosen}
    for round_number in range(args.repeats):
        shift = round_number % len(chosen)
        for setting in chosen[shift:] + chosen[:shift]:
            result = run_setting(setting, args)
            results[setting.label].append(result)
            print(f"round {round_number + 1}/{args.repeats} {setting.label}: "
                  f"{_cell(result['train_throughput_img_s'], '.1f')} img/s "
                  f"(pools {result['intra_op_threads']}/{result['inter_op_threads']})",
                  flush=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
