"""The result record's schema: its version, its fields and sections, and the records the
runner writes for a run.

A record is one JSON object per run (results.jsonl, `benchmarks.record.store`). Every
record, ok or failed, opens with the header (`record_header`: which run, with which
settings, on which data) and its outcome (status, error). An ok record adds the
measurement sections, whose numeric leaves are the figures (`benchmarks.record.figures`),
then the run's facts and raw outputs; a failed one adds the tail of the worker's stderr
(`failed_record`).

Schema 1 has grown without a new number: fields were added (deterministic,
measure_config, test_injection; the latency, energy and work sections), none renamed or
removed. Older schema-1 records, such as a committed baseline's, lack some of them, so
readers require only READ_FIELDS; the worker checks its own record against everything
this version writes (`check_record(record, complete=True)`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.runner.config import RunSpec

SCHEMA_VERSION = 1

# --- the header: which run, with which settings, on which data ----------------------------
VERSION_FIELD = "schema_version"
RUN_ID = "run_id"
BACKEND = "backend"
MODEL = "model"
DATASET = "dataset"
FOLD = "fold"
SEED = "seed"
INIT = "init"
THREADS = "threads"
DETERMINISTIC = "deterministic"
CONFIG = "config"  # the training recipe (TrainConfig)
MEASURE_CONFIG = "measure_config"  # how the worker measures (MeasureConfig)
DATA = "data"  # facts about the prepared data (harness.prepare_data)
TEST_INJECTION = "test_injection"  # test-only faults (benchmarks.ci.faults), None without

# --- the outcome ------------------------------------------------------------------------
STATUS = "status"
ERROR = "error"
OK, FAILED = "ok", "failed"

# --- what an ok record adds ---------------------------------------------------------------
# Measurement sections: their numeric leaves are the run's figures.
MODEL_INFO = "model_info"
METRICS = "metrics"
TIMING = "timing"
LATENCY = "latency"
MEMORY = "memory"
ENERGY = "energy"
WORK = "work"
# The run's facts and raw outputs.
HISTORY = "history"  # one entry per epoch
FLAGS = "flags"  # the backend's settings as it applied them
ENV = "env"  # host, versions, device, suite commit
TEST_LABELS = "test_labels"
TEST_PREDICTIONS = "test_predictions"
WALL_S = "wall_s"  # the worker's whole run

# --- what a failed record adds ------------------------------------------------------------
STDERR_TAIL = "stderr_tail"

# The fields that say which run a record is; run_id is made of the others.
IDENTITY_FIELDS = (RUN_ID, BACKEND, MODEL, DATASET, FOLD, SEED)
# The fields every record carries, ok or failed, in `record_header`'s order.
HEADER_FIELDS = (VERSION_FIELD, *IDENTITY_FIELDS, INIT, THREADS, DETERMINISTIC, CONFIG,
                 MEASURE_CONFIG, DATA, TEST_INJECTION)
OUTCOME_FIELDS = (STATUS, ERROR)
MEASUREMENT_SECTIONS = (MODEL_INFO, METRICS, TIMING, LATENCY, MEMORY, ENERGY, WORK)
# What an ok record carries besides the header and the outcome.
OK_FIELDS = (*MEASUREMENT_SECTIONS, HISTORY, FLAGS, ENV, TEST_LABELS, TEST_PREDICTIONS, WALL_S)
# What a failed record carries besides the header and the outcome.
FAILED_FIELDS = (STDERR_TAIL,)
# Sections holding facts about a run rather than measurements: their numbers are no figures.
FACT_SECTIONS = (CONFIG, MEASURE_CONFIG, DATA, ENV, FLAGS, TEST_INJECTION)
# Fields without which a record cannot be placed in a report or a comparison; every
# schema-1 record has carried them.
READ_FIELDS = (VERSION_FIELD, RUN_ID, STATUS, BACKEND, MODEL, DATASET)


class RecordError(ValueError):
    """A value that is not a result record this code reads; the message names the fix."""


def record_header(spec: RunSpec) -> dict[str, Any]:
    """The fields every record carries, whether the run succeeded or failed.

    Args:
        spec: the run.

    Returns:
        HEADER_FIELDS with the spec's values. `test_injection` holds the spec's test-only
        faults (`benchmarks.ci.faults`), None without: a record measured with one is never
        a real measurement.
    """
    return {
        VERSION_FIELD: SCHEMA_VERSION,
        RUN_ID: spec.run_id,
        BACKEND: spec.backend,
        MODEL: spec.model,
        DATASET: spec.dataset,
        FOLD: spec.fold,
        SEED: spec.train.seed,
        INIT: spec.init,
        THREADS: spec.threads,
        DETERMINISTIC: spec.deterministic,
        CONFIG: asdict(spec.train),
        MEASURE_CONFIG: asdict(spec.measure),
        DATA: spec.data_info,
        TEST_INJECTION: spec.faults.as_record() if spec.faults else None,
    }


def failed_record(spec: RunSpec, error: str, stderr_tail: str) -> dict[str, Any]:
    """The record of a run whose worker crashed, raised or was killed.

    Args:
        spec: the run.
        error: one line saying why the run failed.
        stderr_tail: the last lines the worker wrote to stderr.

    Returns:
        The header, the outcome and FAILED_FIELDS.
    """
    return {**record_header(spec), STATUS: FAILED, ERROR: error, STDERR_TAIL: stderr_tail}


def succeeded(record: dict[str, Any]) -> bool:
    """Whether `record` is of a run that succeeded."""
    return record.get(STATUS) == OK


def check_record(record: Any, complete: bool = False) -> None:
    """Raises RecordError unless `record` is a result record this code reads.

    Args:
        record: a parsed JSON value.
        complete: also require every field this version writes: the header, the outcome,
            and OK_FIELDS or FAILED_FIELDS by status. Older schema-1 records lack some of
            them, so readers leave this off; the worker checks its own record with it.

    Raises:
        RecordError: `record` is not a dict with READ_FIELDS, names a schema newer than
            SCHEMA_VERSION, or (with `complete`) lacks a field or has an unknown status.
    """
    missing = [name for name in READ_FIELDS
               if not isinstance(record, dict) or name not in record]
    if missing:
        raise RecordError(f"not a FER-Bench result record (missing {', '.join(missing)}); "
                          f"pass a results.jsonl written by benchmarks.run")
    version = record[VERSION_FIELD]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RecordError(f"result schema {version!r} is not one this FER-Bench reads "
                          f"(1 to {SCHEMA_VERSION}); update FER-Bench")
    if not complete:
        return
    by_status = {OK: OK_FIELDS, FAILED: FAILED_FIELDS}
    status = record[STATUS]
    if status not in by_status:
        raise RecordError(f"record {record[RUN_ID]!r} has status {status!r}; a record's "
                          f"status is one of {', '.join(by_status)}")
    expected = (*HEADER_FIELDS, *OUTCOME_FIELDS, *by_status[status])
    missing = [name for name in expected if name not in record]
    if missing:
        raise RecordError(f"record {record[RUN_ID]!r} lacks {', '.join(missing)}, which "
                          f"every {status} record of schema {SCHEMA_VERSION} carries")
