"""The report's "Deployment (ONNX)" section: onnxruntime's latency beside the frameworks'.

Read from `onnx/onnx.json`, which `python -m benchmarks.export FOLDER` writes (numpy and
JSON only: no framework, no onnxruntime). Native latencies are the training runs' own
`latency` figures; onnxruntime's were measured by the same probe
(`trackers.timing.inference_latency`) with the same settings on the same test images,
each export in its own process. Throughput at the training batch is derived alike for
every column: the batch's images ÷ its p50 latency.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.analysis.load import LOADED_MARK
from benchmarks.messages import shortened
from benchmarks.record import schema
from benchmarks.record.layout import ONNX_DIR, ONNX_SUMMARY_FILE
from benchmarks.report.artifacts import UnsafeName, artifact_path
from benchmarks.report.data import ReportData

NOT_MEASURED = ("ONNX: not measured (pip install -e '.[onnx]', or '.[jax-onnx]' for jax and "
                "keras-jax runs, then run python -m benchmarks.export on this report folder)")


def _ms(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda latency: latency.get(key)


def _throughput(latency: dict[str, Any]) -> float | None:
    size, p50 = latency.get("latency_train_batch_size"), latency.get("latency_train_batch_p50_ms")
    return size / p50 * 1e3 if size and p50 else None


# (row title, how to read the figure from a latency section, decimals)
FIGURES = (
    ("latency b1 p50 (ms)", _ms("latency_b1_p50_ms"), 2),
    ("latency b1 p95 (ms)", _ms("latency_b1_p95_ms"), 2),
    ("latency train batch p50 (ms)", _ms("latency_train_batch_p50_ms"), 2),
    ("latency train batch p95 (ms)", _ms("latency_train_batch_p95_ms"), 2),
    ("throughput at the train batch (img/s)", _throughput, 0),
)


@dataclass
class Deployment:
    """What the section shows.

    Attributes:
        note: why there are no figures ("ONNX: not measured …"), or None.
        latency: (headers, rows): per model and figure, each backend's native figure,
            and onnxruntime's from each backend's exports.
        parity: (headers, rows): per export, its max |Δ logits| against its framework.
        facts: lines under the tables (tolerance, load average, providers).
    """

    note: str | None = None
    latency: tuple[list[str], list[list[str]]] = field(default_factory=lambda: ([], []))
    parity: tuple[list[str], list[list[str]]] = field(default_factory=lambda: ([], []))
    facts: list[str] = field(default_factory=list)


def read_summary(data: ReportData) -> tuple[dict[str, Any] | None, str | None]:
    """`onnx/onnx.json` of the report's folder, or None and why it is missing or unreadable."""
    try:
        path = artifact_path(data.source.parent, ONNX_DIR, ONNX_SUMMARY_FILE)
    except UnsafeName as error:
        return None, f"ONNX: {error}"
    if not path.is_file():
        return None, NOT_MEASURED
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary.get("exports"), list):
            raise TypeError("no list of exports")
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as error:
        # ValueError: not UTF-8 or not JSON; RecursionError: nested too deep to parse.
        return None, (f"ONNX: {path} is unreadable ({shortened(str(error), 200)}); rerun "
                      "`python -m benchmarks.export` on this folder")
    return summary, None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if _number(v) is not None]
    return sum(known) / len(known) if known else None


def _number(value: Any) -> float | None:
    """`value` when it is a number; None for anything else onnx.json may hold (the file is
    read as it is found, edited or not)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _shown(value: Any, spec: str) -> str:
    """A figure formatted by `spec`; "—" for what is no number."""
    number = _number(value)
    return "—" if number is None else format(number, spec)


def _cell(value: float | None, digits: int, mark: bool = False) -> str:
    shown = _shown(value, f",.{digits}f")
    return shown + (f" {LOADED_MARK}" if mark and shown != "—" else "")


def deployment(data: ReportData) -> Deployment:
    """The section of a report."""
    summary, note = read_summary(data)
    if summary is None:
        return Deployment(note=note)
    exports = [e for e in summary["exports"] if isinstance(e, dict)]
    backends = data.backends
    headers = (["model", "figure"] + [f"{f} native" for f in backends]
               + [f"onnxruntime ({f} export)" for f in backends])
    rows = []
    for label, by_backend in data.groups.items():
        run_ids = {r[schema.RUN_ID] for runs in by_backend.values() for r in runs}
        ours = {f: [e.get("latency") or {} for e in exports
                    if e.get("name") in run_ids and e.get("exported_by") == f and
                    e.get("latency")] for f in backends}
        if not any(ours.values()):
            continue
        native = {f: [r.get(schema.LATENCY) or {} for r in by_backend.get(f, [])]
                  for f in backends}
        for title, read, digits in FIGURES:
            rows.append([label, title]
                        + [_cell(_mean([read(x) for x in native[f]]), digits,
                                 data.under_load(label, f)) for f in backends]
                        + [_cell(_mean([read(x) for x in ours[f]]), digits)
                           for f in backends])
    tolerance = summary.get("tolerance")
    parity_rows = []
    for e in exports:
        difference = _number(e.get("parity_max_abs_logit_diff"))
        size = _number(e.get("onnx_bytes"))
        within = (difference is not None and _number(tolerance) is not None
                  and difference <= tolerance)
        parity_rows.append([
            str(e.get("file")), str(e.get("model")), str(e.get("exported_by")),
            _shown(difference, ".1e"),
            "yes" if within else "NO", f"{e.get('parity_images', '—')} ({e.get('parity_on')})",
            str(e.get("provider") or e.get("error") or "not timed"),
            _shown(size / 1e6 if size else None, ".1f")])
    facts = [f"Parity: each export's logits against its own framework's on the same images; "
             f"tolerance {tolerance}.",
             "onnxruntime: inference only, each export timed in its own process by the "
             "training runs' latency probe with their settings (threads, warm-up, repeats, "
             "test images); the graph takes uint8 images and scales them itself, as the "
             "native predict_proba does; throughput = train batch ÷ its p50."]
    loads = [a for e in exports for a in (e.get("load_average") or [])
             if isinstance(a, (int, float))]
    versions = sorted({str(e["onnxruntime"]) for e in exports if e.get("onnxruntime")})
    if loads:
        facts.append(f"Load average (1 min) while onnxruntime was timed: {min(loads):.2f}–"
                     f"{max(loads):.2f}; onnxruntime {', '.join(versions)}.")
    return Deployment(
        note=None if rows else ("ONNX: exported, but no export was timed (--no-latency, or "
                                  "the timing failed: see the provider column)"),
        latency=(headers, rows),
        parity=(["export", "model", "exported by", "max |Δ logits|", "within tolerance",
                 "images", "provider", "MB"], parity_rows),
        facts=facts)
