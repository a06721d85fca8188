"""The GPU check: every GPU figure of the suite, measured once, and the GPU invariants.

    python -m benchmarks.gpu_check [--out reports] [--require-gpu]

Sized to finish within 8 minutes on one GPU: the card models in both frameworks, in
float32 and bfloat16, on the synthetic set at 48×48, then `resnet50` at 224×224 in both
precisions. Every run goes through the suite's own runner (`run_invocation`: one worker
process per run, as `benchmarks.run` runs them) and every figure shown is one the
records already carry (docs/measurement.md): training throughput, NVML's per-process
peak, both allocators' peaks, energy per epoch and images per joule, achieved TFLOP/s
and its share of the measured matmul peak, and the share of training time the input
path kept the device waiting.

From the records it asserts the GPU invariants: both frameworks computed on the GPU,
TF32 was off in float32 runs, TF grew its GPU memory on demand, the run's precision was
in effect, and NVML saw the worker's own process (a per-process peak at least as large
as what its framework's allocator handed out).

Writes `<out>/<timestamp>-gpu-check/`: one sub-folder of records and report per
configuration, then `gpu_check.md` (the table and the invariants) and `gpu_check.json`.

Exit status: 0 when every run succeeded and every invariant held, or when no GPU is
found (one line says so and nothing is measured; with `--require-gpu`, 1); 1 when a run
failed or an invariant broke; 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import MissingFrameworkError
from backends.catalog import CARD_MODELS
from backends.registry import visible_gpu
from benchmarks.backend_choice import PAIR
from benchmarks.record import schema
from benchmarks.record.store import new_report_dir
from benchmarks.report import write_report
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.invocation import Invocation
from benchmarks.runner.launch import run_invocation
from benchmarks.runner.recipe import NO_RECIPE

# Short latency and calibration probes: the check proves the figures exist and hold
# together, it is not the measurement of record.
MEASURE = MeasureConfig(latency_warmup=3, latency_repeats=20, latency_budget_s=1.0)


@dataclass(frozen=True)
class CheckConfig:
    """One invocation of the check.

    Attributes:
        image_size: side of the synthetic faces.
        precision: the TrainConfig precision.
        models: catalog models.
        subjects: synthetic subjects (21 images each).
        batch_size: training batch size.
        epochs: epochs; the first (tracing, autotuning) is reported apart, so ≥ 2.
        compile: TrainConfig's `compile` (XLA / torch.compile).
        threads: intra- and inter-op threads; None: the runner's default (every core).
    """

    image_size: int
    precision: str
    models: tuple[str, ...]
    subjects: int
    batch_size: int
    epochs: int = 3
    compile: bool = False
    threads: int | None = None

    @property
    def label(self) -> str:
        """E.g. "48px-bfloat16" or "48px-float32-compiled"."""
        return f"{self.image_size}px-{self.precision}" + ("-compiled" if self.compile else "")


PLAN = (
    *(CheckConfig(48, precision, CARD_MODELS, subjects=28, batch_size=64)
      for precision in ("float32", "bfloat16")),
    *(CheckConfig(224, precision, ("resnet50",), subjects=10, batch_size=32)
      for precision in ("float32", "bfloat16")),
)

COLUMNS = ("model", "backend", "precision", "px", "img/s", "NVML MB", "alloc MB", "J/epoch",
           "img/J", "TFLOP/s", "util", "input wait")


def gpu_status() -> tuple[bool, str]:
    """Whether both frameworks compute on a GPU here, and what each said.

    Returns:
        (both on a GPU; "torch: NVIDIA H100 (torch 2.13.0); tf: cpu (tensorflow 2.21.0)").

    Raises:
        MissingFrameworkError: a framework is not installed.
    """
    found, said = [], []
    for name in PAIR:
        gpu, version = visible_gpu(name)
        found.append(gpu is not None)
        said.append(f"{name}: {gpu or 'cpu'} ({version})")
    return all(found), "; ".join(said)


def _input_wait_share(history: list[dict[str, Any]]) -> float | None:
    """Of every epoch's training time, the share spent waiting for the next host batch."""
    waits = [e.get("input_wait_s") for e in history]
    if not history or None in waits:
        return None
    return sum(waits) / sum(e["train_s"] for e in history)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def row_of(record: dict[str, Any]) -> dict[str, Any]:
    """One table row from one record, every figure as the record carries it.

    Energy per epoch and images per joule divide the training energy (validation passes
    included, as `fit` runs them) by the epochs and the images trained.
    """
    timing, memory = record.get(schema.TIMING, {}), record.get(schema.MEMORY, {})
    work, history = record.get(schema.WORK, {}), record.get(schema.HISTORY, [])
    energy = record.get(schema.ENERGY, {}).get("train_energy_j")
    return {
        "model": record[schema.MODEL], "backend": record[schema.BACKEND],
        "precision": record[schema.CONFIG]["precision"],
        "px": (record.get(schema.DATA, {}).get("image_shape") or [None])[0],
        "status": record[schema.STATUS],
        "img/s": timing.get("train_throughput_img_s"),
        "NVML MB": memory.get("nvml_peak_mb"),
        "alloc MB": memory.get("gpu_allocator_peak_mb"),
        "J/epoch": _ratio(energy, len(history)),
        "img/J": _ratio(sum(e["images"] for e in history), energy),
        "TFLOP/s": work.get("train_achieved_tflops"),
        "util": work.get("train_utilization"),
        "input wait": _input_wait_share(history),
    }


_FORMATS = {"img/s": ",.0f", "NVML MB": ",.0f", "alloc MB": ",.0f", "J/epoch": ",.1f",
            "img/J": ",.1f", "TFLOP/s": ".2f", "util": ".1%", "input wait": ".1%"}


def table(rows: Iterable[dict[str, Any]]) -> str:
    """A Markdown table of the rows; "—" for a figure the record lacks."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row[column]
            spec = _FORMATS.get(column)
            cells.append("—" if value is None else format(value, spec) if spec else str(value))
        if row["status"] != schema.OK:
            cells[0] += f" ({row['status']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def invariant_failures(records: list[dict[str, Any]]) -> list[str]:
    """Every GPU invariant a record breaks, one line each; [] when all hold.

    Args:
        records: the check's records.
    """
    failures = []
    for record in records:
        where = f"{record[schema.BACKEND]} {record[schema.MODEL]} ({record[schema.RUN_ID]})"
        if record[schema.STATUS] != schema.OK:
            failures.append(f"{where}: run {record[schema.STATUS]}: {record[schema.ERROR]}")
            continue
        flags, memory = record[schema.FLAGS], record[schema.MEMORY]
        precision = record[schema.CONFIG]["precision"]
        if record[schema.ENV].get("device") == "cpu" or flags.get("device") == "cpu":
            failures.append(f"{where}: computed on the CPU")
        if precision == "float32" and flags.get("tf32") is not False:
            failures.append(f"{where}: TF32 not off in a float32 run (tf32={flags.get('tf32')})")
        if record[schema.BACKEND] == "tf" and flags.get("memory_growth") is not True:
            failures.append(f"{where}: TF memory growth off")
        if flags.get("precision") != precision:
            failures.append(f"{where}: precision {precision} asked, "
                            f"{flags.get('precision')} in effect")
        nvml, allocator = memory.get("nvml_peak_mb"), memory.get("gpu_allocator_peak_mb")
        if nvml is None:
            failures.append(f"{where}: NVML did not see the worker's process")
        elif allocator is None or nvml < allocator:
            failures.append(f"{where}: NVML's per-process peak ({nvml} MB) is below the "
                            f"allocator's ({allocator} MB): not the run's own process")
    return failures


def run_configs(folder: Path, configs: Iterable[CheckConfig],
                measure: MeasureConfig = MEASURE) -> list[dict[str, Any]]:
    """Runs each configuration as one invocation of the suite's runner, both backends, seed 0,
    no recipe, into `folder/<label>/`; returns every record, in run order.

    Raises:
        As `run_invocation`: bad input before anything runs, a record that cannot be written,
        Ctrl-C.
    """
    records: list[dict[str, Any]] = []
    for config in configs:
        extra = {} if config.threads is None else {"threads": config.threads}
        invocation = Invocation(
            dataset="synthetic", backends=PAIR, models=config.models,
            recipe=NO_RECIPE,
            explicit={"precision": config.precision, "epochs": config.epochs,
                      "batch_size": config.batch_size, "compile": config.compile, "seed": 0},
            image_size=config.image_size, synthetic_subjects=config.subjects,
            measure=measure, save_weights="none", **extra)
        print(f"== {config.label}: {', '.join(config.models)}", flush=True)
        _, found = run_invocation(invocation, folder / config.label, report=write_report)
        records.extend(found)
    return records


def run_check(out_root: Path, plan: Iterable[CheckConfig] = PLAN,
              status: str = "") -> tuple[Path, list[dict[str, Any]], list[str]]:
    """Runs every configuration of `plan` and writes the check's report.

    Args:
        out_root: parent of the check's new folder.
        plan: the configurations.
        status: what `gpu_status` said, for the report.

    Returns:
        The check's folder, every record, and the invariant failures.
    """
    folder = new_report_dir(out_root, "gpu-check")
    records = run_configs(folder, plan)
    rows = [row_of(record) for record in records]
    failures = invariant_failures(records)
    text = table(rows)
    verdict = "\n".join(f"- {line}" for line in failures) or "every invariant held"
    (folder / "gpu_check.md").write_text(f"# GPU check\n\n{status}\n\n{text}\n\n"
                                         f"## Invariants\n\n{verdict}\n", encoding="utf-8")
    (folder / "gpu_check.json").write_text(json.dumps(
        {"status": status, "rows": rows, "invariant_failures": failures}, indent=1),
        encoding="utf-8")
    return folder, records, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the check's new folder (default: reports)")
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit 1 instead of 0 when no GPU is found")
    args = parser.parse_args(argv)
    try:
        on_gpu, said = gpu_status()
    except MissingFrameworkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not on_gpu:
        print(f"no GPU found ({said}): nothing measured")
        return 1 if args.require_gpu else 0
    started = time.perf_counter()
    folder, records, failures = run_check(args.out, status=said)
    print()
    print(table(row_of(record) for record in records))
    for line in failures:
        print(f"invariant broken: {line}")
    print(f"\n{len(records)} runs in {time.perf_counter() - started:.0f}s; "
          f"{'every invariant held' if not failures else f'{len(failures)} invariants broken'}"
          f"; report: {folder / 'gpu_check.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
