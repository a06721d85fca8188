"""One onnxruntime inference-only measurement in its own process.

    python -m benchmarks.runner.onnx_worker SPEC.json RESULT.json

Reads an OnnxRunSpec, opens the exported model in onnxruntime (`backends.onnx_export`) and
times it with the training worker's latency probe (`trackers.timing.inference_latency`:
batch 1 and the training batch size, warm-up apart, p50/p95) on the same test images.
`benchmarks.export` starts it through `harness.run_process`, as every training run is
started, so no framework, allocator or thread pool of another measurement is in the
process: it imports numpy and onnxruntime only.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner.config import MeasureConfig
from benchmarks.trackers.memory import os_peak_rss_mb
from benchmarks.trackers.timing import CpuWaitClock, Stopwatch, inference_latency


@dataclass(frozen=True)
class OnnxRunSpec:
    """What one onnxruntime measurement times.

    Attributes:
        label: names the measurement in progress lines (the run id and the exporter).
        onnx_path: the exported model.
        images_path: an `.npz` holding the images to time on (uint8 NHWC) …
        images_key: … under this key (`x_test` in a report folder's test split file).
        train_batch_size: the second batch size timed (the run's training batch).
        threads: onnxruntime's intra- and inter-op threads (the run's `threads`); None:
            its default.
        measure: warm-up, repeats and time budget per batch size (the run's).
        timeout_s: the harness kills the process after this long.
    """

    label: str
    onnx_path: str
    images_path: str
    images_key: str
    train_batch_size: int
    threads: int | None = None
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    timeout_s: float | None = 600.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> OnnxRunSpec:
        raw = json.loads(text)
        return cls(**{**raw, "measure": MeasureConfig(**raw["measure"])})


def execute(spec: OnnxRunSpec) -> dict[str, Any]:
    """Times `spec`'s model in this process; returns the result the exporter records.

    Returns:
        `provider` (the execution provider onnxruntime ran it on), `onnxruntime` (its
        version), `threads`, `session_s` (opening the session: graph optimisation and,
        on a GPU, the weights' upload), `cpu_wait_s` (the load's delay during timing,
        `trackers.timing.CpuWaitClock`; None where unknown), `load_average` (1-minute,
        before and after), `peak_host_rss_mb`, and `latency`: the same fields as a
        training record's latency section.
    """
    from backends.onnx_export import OnnxSession

    with np.load(spec.images_path, allow_pickle=False) as stored:
        images = stored[spec.images_key]
    load_before = os.getloadavg()[0]
    with Stopwatch() as opening:
        session = OnnxSession(Path(spec.onnx_path), spec.threads)
    clock = CpuWaitClock()
    waited_from = clock()
    measure = spec.measure
    latency = inference_latency(session.predict_proba, images, spec.train_batch_size,
                                session.synchronize, warmup=measure.latency_warmup,
                                repeats=measure.latency_repeats,
                                budget_s=measure.latency_budget_s)
    waited_to = clock()
    return {
        "provider": session.provider,
        "onnxruntime": session.version,
        "threads": spec.threads,
        "session_s": opening.seconds,
        "cpu_wait_s": None if waited_from is None else waited_to - waited_from,
        "load_average": [load_before, os.getloadavg()[0]],
        "peak_host_rss_mb": os_peak_rss_mb(),
        "latency": latency,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.runner.onnx_worker SPEC.json RESULT.json",
              file=sys.stderr)
        return 2
    spec = OnnxRunSpec.from_json(Path(argv[0]).read_text())
    print(f"[onnxruntime {spec.label}] timing {Path(spec.onnx_path).name}", flush=True)
    result = execute(spec)
    latency = result["latency"]
    print(f"[onnxruntime {spec.label}] {result['provider']}: b1 p50 "
          f"{latency['latency_b1_p50_ms']:.2f} ms, b{spec.train_batch_size} p50 "
          f"{latency['latency_train_batch_p50_ms']:.2f} ms", flush=True)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
