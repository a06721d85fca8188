"""What bfloat16 and compilation buy: proposed_cnn's training in both frameworks.

    python -m benchmarks.precision [--epochs 4] [--subjects 28] [--threads N] [--out reports]

Runs `proposed_cnn` on the synthetic set at 48×48 in both frameworks, three ways, each
run in its own worker through the suite's runner (`benchmarks.gpu_check.run_configs`):
float32, bfloat16, and float32 compiled (`--compile`: XLA for TF, torch.compile for
torch). It prints, per framework, the training throughput of the steady epochs in
float32 and bfloat16 and their ratio, then the first-epoch and steady-epoch times
compiled and not: compilation lands in the first epoch, which the records report apart
(`timing.first_epoch_s`). On a CPU bfloat16 pays only where the CPU has bfloat16
instructions (AVX512-BF16, AMX). Run it alone on the machine: other load changes times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.backend_choice import PAIR
from benchmarks.gpu_check import CheckConfig, run_configs
from benchmarks.record import schema
from benchmarks.record.store import new_report_dir
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.study_options import add_workload_options, check_workload

MODEL = "proposed_cnn"
# Short probes: the study reads training times only.
MEASURE = MeasureConfig(latency_warmup=1, latency_repeats=5, latency_budget_s=0.5)


def _timing(records: list[dict[str, Any]], backend: str, label: str) -> dict[str, Any]:
    (record,) = [r for r in records if r[schema.BACKEND] == backend
                 and r["_label"] == label]
    if record[schema.STATUS] != schema.OK:
        raise RuntimeError(f"{backend} {label}: run {record[schema.STATUS]}: "
                           f"{record[schema.ERROR]}")
    return record[schema.TIMING]


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def summary(records: list[dict[str, Any]], labels: dict[str, str]) -> str:
    """The study's two tables from its records (each tagged with its config's `_label`).

    Args:
        records: the runs' records.
        labels: "float32", "bfloat16", "compiled" → the config label of those runs.
    """
    lines = [f"{'backend':<8}{'fp32 img/s':>12}{'bf16 img/s':>12}{'bf16/fp32':>11}"]
    for backend in PAIR:
        fp32 = _timing(records, backend, labels["float32"])["train_throughput_img_s"]
        bf16 = _timing(records, backend, labels["bfloat16"])["train_throughput_img_s"]
        ratio = bf16 / fp32 if fp32 and bf16 else None
        lines.append(f"{backend:<8}{_cell(fp32, ',.0f'):>12}{_cell(bf16, ',.0f'):>12}"
                     f"{_cell(ratio, '.2f'):>11}")
    lines += ["", f"{'backend':<8}{'compiled':<10}{'first epoch s':>15}{'steady epoch s':>16}"]
    for backend in PAIR:
        for compiled, label in (("no", labels["float32"]), ("yes", labels["compiled"])):
            timing = _timing(records, backend, label)
            lines.append(f"{backend:<8}{compiled:<10}{_cell(timing['first_epoch_s'], '.2f'):>15}"
                         f"{_cell(timing['steady_epoch_s_mean'], '.3f'):>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision",
                                     description=__doc__.split("\n\n")[0])
    add_workload_options(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per framework (default: every core)")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent of the study's new folder (default: reports)")
    args = parser.parse_args(argv)
    check_workload(parser, args)
    configs = {
        key: CheckConfig(48, precision, (MODEL,), args.subjects, args.batch_size, args.epochs,
                         compile=compiled, threads=args.threads)
        for key, precision, compiled in (("float32", "float32", False),
                                         ("bfloat16", "bfloat16", False),
                                         ("compiled", "float32", True))
    }
    folder = new_report_dir(args.out, "precision-study")
    records = []
    for config in configs.values():
        found = run_configs(folder, [config], MEASURE)
        records += [{**record, "_label": config.label} for record in found]
    print()
    print(summary(records, {key: config.label for key, config in configs.items()}))
    print(f"\nrecords: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
