"""Run specifications: dataclasses recorded verbatim in the results, and the header of
the record a run's spec opens (`record_header`, `failed_record`; the fields are
`benchmarks.record.schema`'s)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.train_config import TrainConfig
from benchmarks.analysis.stats import DEFAULT_EQUIVALENCE_MARGIN, check_equivalence_margin
from benchmarks.record import schema
from benchmarks.runner.env import available_cores
from benchmarks.runner.faults import InjectedFaults
from benchmarks.runner.recipe import NO_RECIPE


@dataclass(frozen=True)
class MeasureConfig:
    """How a worker measures beyond training and evaluation (docs/measurement.md).

    Attributes:
        latency_warmup: inference calls per batch size before timing starts; the first
            includes tracing/compilation and is reported apart.
        latency_repeats: timed inference calls per batch size, at most.
        latency_budget_s: stop timing a batch size once its timed calls took this long
            (after at least 5 calls).
        calibration_size: side of the float32 matmul that calibrates the peak FLOP/s;
            None: 8192 on a GPU, 2048 on the CPU (large enough to reach the peak, small
            enough to take about a second).
        epoch_calibration: time a fixed reference workload (`trackers.timing.SpeedCalibration`)
            before the first training epoch and after each one, for the load-normalised
            training speed the CI check judges (docs/ci.md); off by default.
    """

    latency_warmup: int = 3
    latency_repeats: int = 50
    latency_budget_s: float = 5.0
    calibration_size: int | None = None
    epoch_calibration: bool = False

    def __post_init__(self) -> None:
        for name in ("latency_warmup", "latency_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1. Received: {name}={value!r}")
        budget = self.latency_budget_s
        if not budget > 0:
            raise ValueError(f"latency_budget_s must be > 0. Received: latency_budget_s={budget!r}")
        size = self.calibration_size
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(
                "calibration_size must be None or an integer ≥ 1. "
                f"Received: calibration_size={size!r}"
            )


# The prepared data's facts (`data.prepare_data`) that say which images a run sees.
_DATA_IDENTITY = ("fingerprint", "split", "split_seed", "image_shape")


@dataclass(frozen=True)
class RunSpec:
    """Everything one worker process needs for one (backend, model, dataset, fold, seed).

    Attributes:
        backend: a backend name (`backends.BACKEND_NAMES`).
        model: catalog model name.
        dataset: dataset name.
        prepared_data: .npz written by the harness with x_/y_ train, val, test arrays
            and class_names (the one preprocessed uint8 array that feeds both backends).
        train: the run's training recipe, resolved (`Recipe.train_config`).
        init: "shared" (same ported initial weights in both frameworks) or "native".
        threads: intra- and inter-op threads, set explicitly in either framework before
            its first op (default: every core this process may use).
        deterministic: turn on each framework's deterministic-algorithm switches.
        fold: fold index for k-fold protocols, None for a holdout.
        data_info: facts about the data (fingerprint, protocol, sizes) for the record.
        measure: how latency and peak FLOP/s are measured.
        faults: test-only fault injection (benchmarks.runner.faults), parsed once where the
            run started; None for a real measurement.
        timeout_s: the harness kills the worker after this many seconds and records the
            run as timed out; None: no limit. Not part of the record: a limit changes no
            figure.
        recipe: where `train` came from, recorded verbatim (`Recipe.as_record`): the
            recipe file's source and text, and the overrides given explicitly.
        weights_path: where the worker writes the kept epoch's weights and the test
            probabilities (`backends.weights`), after every measurement; None: nowhere
            (`--save-weights none`).
        id_from_spec: end `run_id` with `spec_digest`, for runs that differ by more than
            (backend, model, dataset, fold, seed): a grid's points (`benchmarks.grid`).
        pretrained: the checkpoint the run starts from (`--pretrained`), as the record
            names it (`backends.pretrained.Checkpoint.describe`: path, sha256, bytes,
            format, architecture); None: the initial weights of `init`.
        pretrained_file: where the harness staged that checkpoint's canonical arrays for
            the workers (`Checkpoint.stage`), so that no worker needs PyTorch to read a
            torchvision file; None without `pretrained`. Not part of the record.
        twin_of: the run_id of the run this one repeats from initial weights one ulp away
            (`backends.init.one_ulp_away`; `--twins`), to measure run-to-run chaos; None
            for a run that is no twin.
        run_position: the run's place among the runs of its (fold, model, seed), 0 first
            (`Invocation.jobs`); None where no order was planned. Not part of `spec_digest`:
            the order changes no figure's mathematics.
        equivalence_margin: the accuracy margin (a fraction) within which the report calls
            the frameworks equivalent, recorded so that it is fixed before the results
            are seen (`benchmarks.analysis.stats.framework_verdict`). Not part of
            `spec_digest`: it changes no run.
    """

    backend: str
    model: str
    dataset: str
    prepared_data: str
    train: TrainConfig = field(default_factory=TrainConfig)
    init: str = "shared"
    threads: int = field(default_factory=available_cores)
    deterministic: bool = False
    fold: int | None = None
    data_info: dict[str, Any] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    faults: InjectedFaults | None = None
    timeout_s: float | None = None
    recipe: dict[str, Any] = field(default_factory=NO_RECIPE.as_record)
    weights_path: str | None = None
    id_from_spec: bool = False
    pretrained: dict[str, Any] | None = None
    pretrained_file: str | None = None
    twin_of: str | None = None
    run_position: int | None = None
    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN

    def __post_init__(self) -> None:
        check_equivalence_margin(self.equivalence_margin)
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be an integer ≥ 1. Received: threads={self.threads!r}")
        # `not > 0` also rejects NaN, which would never expire.
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError("timeout_s must be None or > 0. "
                             f"Received: timeout_s={self.timeout_s!r}")

    @property
    def run_id(self) -> str:
        """backend-model-dataset[-foldF]-seedS[-twin], then `-<spec_digest>` with
        `id_from_spec`."""
        fold = "" if self.fold is None else f"-fold{self.fold}"
        twin = "-twin" if self.twin_of is not None else ""
        digest = f"-{self.spec_digest}" if self.id_from_spec else ""
        return (f"{self.backend}-{self.model}-{self.dataset}{fold}-seed{self.train.seed}"
                f"{twin}{digest}")

    @property
    def spec_digest(self) -> str:
        """12 hex digits of SHA-256 over everything that decides the run's outcome.

        The same spec is the same digest on any machine: the prepared file's path, the
        time limit, where weights go and the recipe's file name are left out (they change
        no figure); the data enter by their fingerprint and split, not their path, and a
        pretrained checkpoint by its sha256. What was added after grids were first
        resumed (freeze_epochs, pretrained, twin) enters only when set, so that the digests of
        the runs without it, and the grids that hold them, stay as they were.
        """
        data = {key: self.data_info.get(key) for key in _DATA_IDENTITY}
        train = asdict(self.train)
        if not train["freeze_epochs"]:
            del train["freeze_epochs"]
        identity = {"backend": self.backend, "model": self.model, "dataset": self.dataset,
                    "fold": self.fold, "train": train, "init": self.init,
                    "threads": self.threads, "deterministic": self.deterministic,
                    "data": data, "measure": asdict(self.measure),
                    "faults": asdict(self.faults) if self.faults else None}
        if self.pretrained is not None:
            identity["pretrained"] = self.pretrained["sha256"]
        if self.twin_of is not None:
            identity["twin"] = True
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        raw = json.loads(text)
        raw["train"] = TrainConfig(**raw["train"])
        raw["measure"] = MeasureConfig(**raw["measure"])
        raw["faults"] = InjectedFaults(**raw["faults"]) if raw.get("faults") else None
        return cls(**raw)

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls.from_json(Path(path).read_text())


def record_header(spec: RunSpec) -> dict[str, Any]:
    """The fields every record carries, whether the run succeeded or failed.

    Args:
        spec: the run.

    Returns:
        `schema.HEADER_FIELDS` with the spec's values. `recipe` holds the recipe file
        verbatim and the explicit overrides (`Recipe.as_record`). `test_injection` holds
        the spec's test-only faults (`benchmarks.runner.faults`), None without: a record
        measured with one is never a real measurement.
    """
    return {
        schema.VERSION_FIELD: schema.SCHEMA_VERSION,
        schema.RUN_ID: spec.run_id,
        schema.BACKEND: spec.backend,
        schema.MODEL: spec.model,
        schema.DATASET: spec.dataset,
        schema.FOLD: spec.fold,
        schema.SEED: spec.train.seed,
        schema.TWIN_OF: spec.twin_of,
        schema.RUN_POSITION: spec.run_position,
        schema.INIT: spec.init,
        schema.PRETRAINED: spec.pretrained,
        schema.THREADS: spec.threads,
        schema.DETERMINISTIC: spec.deterministic,
        schema.CONFIG: asdict(spec.train),
        schema.RECIPE: spec.recipe,
        schema.MEASURE_CONFIG: asdict(spec.measure),
        schema.DATA: spec.data_info,
        schema.TEST_INJECTION: spec.faults.as_record() if spec.faults else None,
        schema.EQUIVALENCE_MARGIN: spec.equivalence_margin,
    }


def failed_record(spec: RunSpec, error: str, stderr_tail: str,
                  status: str = schema.FAILED) -> dict[str, Any]:
    """The record of a run whose worker crashed, raised, was killed, timed out or interrupted.

    Args:
        spec: the run.
        error: one line saying why the run did not succeed.
        stderr_tail: the last lines the worker wrote to stderr.
        status: schema.FAILED, TIMEOUT or INTERRUPTED.

    Returns:
        The header, the outcome and `schema.FAILED_FIELDS`.

    Raises:
        ValueError: `status` is schema.OK or unknown.
    """
    if status not in schema.STATUSES or status == schema.OK:
        raise ValueError(f"status must be one of {', '.join(schema.STATUSES[1:])}. "
                         f"Received: status={status!r}")
    return {**record_header(spec), schema.STATUS: status, schema.ERROR: error,
            schema.STDERR_TAIL: stderr_tail}
