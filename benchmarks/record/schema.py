"""The result record's schema: its version, its fields and sections, and the records the
runner writes for a run.

A record is one JSON object per run (results.jsonl, `benchmarks.record.store`). Every
record, ok or failed, opens with the header (HEADER_FIELDS: which run, with which
settings, on which data; the runner writes it from the run's spec,
`benchmarks.runner.config.record_header`) and its outcome (status, error). An ok record adds the
measurement sections, whose numeric leaves are the figures (`benchmarks.record.figures`),
then the run's facts and raw outputs; a failed one adds the tail of the worker's stderr
(`benchmarks.runner.config.failed_record`).

Schema 1 has grown without a new number: fields were added (deterministic,
measure_config, test_injection, recipe, pretrained, twin_of, run_position,
equivalence_margin, the grid driver's grid_point and execution; the latency, energy, work
and artifacts sections; timing's train_others_cpu_s, train_others_cpu_share and
unfreeze_epoch_s with history's others_cpu_s, which the load rule reads:
`benchmarks.analysis.load`), none renamed or removed. The timing figures' meaning did not
change but for the steady epochs, which now leave out a --freeze-epochs run's unfreeze
epoch as they do the first. Older schema-1 records, such as a committed baseline's, lack
some of them, so readers require only READ_FIELDS; the worker checks its own record
against everything this version writes (`check_record(record, complete=True)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
# The checkpoint a run started from (`--pretrained`): the file (path, sha256, bytes, format,
# architecture) in every record of such a run, and, once the worker has fitted it to the
# model, which canonical layers it loaded, adapted and re-initialised; None without.
PRETRAINED = "pretrained"
# A twin (`benchmarks.run --twins`): the run_id of the run it repeats from initial weights
# one ulp away (`backends.init.one_ulp_away`), to measure run-to-run chaos; None for a run
# that is no twin. Twins are left out of the figures and tests of the frameworks, and
# make the chaos floor (`benchmarks.analysis.stats.chaos_floor`).
TWIN_OF = "twin_of"
# The run's place among the runs of its (fold, model, seed), 0 first: the invocation
# balances which backend goes first (`benchmarks.runner.invocation.Invocation.jobs`); None where the
# order was not recorded (older records).
RUN_POSITION = "run_position"
# The margin, in accuracy (a fraction), within which the report calls the frameworks
# equivalent (`benchmarks.analysis.stats.DEFAULT_EQUIVALENCE_MARGIN`): set before the runs
# (`benchmarks.run --equivalence-margin`), not chosen after seeing them.
EQUIVALENCE_MARGIN = "equivalence_margin"
THREADS = "threads"
DETERMINISTIC = "deterministic"
CONFIG = "config"  # the training recipe (TrainConfig), resolved
RECIPE = "recipe"  # where CONFIG came from: the recipe file's source and text, explicit overrides
MEASURE_CONFIG = "measure_config"  # how the worker measures (MeasureConfig)
DATA = "data"  # facts about the prepared data (runner.data.prepare_data)
TEST_INJECTION = "test_injection"  # test-only faults (benchmarks.runner.faults), None without

# --- the outcome ------------------------------------------------------------------------
STATUS = "status"
ERROR = "error"
OK, FAILED = "ok", "failed"
# Runs stopped from outside: Ctrl-C, or the harness's per-run time limit. Neither succeeded,
# so every reader treats them as it treats failed runs.
INTERRUPTED, TIMEOUT = "interrupted", "timeout"
# Every status this version writes; what is not OK did not succeed.
STATUSES = (OK, FAILED, INTERRUPTED, TIMEOUT)

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
# Files the run left beside its record (`backends.weights`): the weights file's name under
# the report folder's WEIGHTS_DIR and its size, or the reason there is none.
ARTIFACTS = "artifacts"

# Added by the grid driver (`benchmarks.grid`) to every record it keeps: the run's point
# (axis → value) and where and how it ran (executor, node, device, and whether its
# timings had the device to themselves).
GRID_POINT = "grid_point"
EXECUTION = "execution"

# --- what a failed record adds ------------------------------------------------------------
STDERR_TAIL = "stderr_tail"

# Leaves of the metrics section that are structures rather than figures.
PER_CLASS = "per_class"  # class name → {"precision": …, "recall": …, "f1": …, "support": …}
CONFUSION_MATRIX = "confusion_matrix"  # rows: true class, columns: predicted, counts
AUC_CLASSES_SKIPPED = "auc_classes_skipped"  # class names
METRIC_STRUCTURES = (PER_CLASS, CONFUSION_MATRIX, AUC_CLASSES_SKIPPED)

# The fields that say which run a record is; run_id is made of the others.
IDENTITY_FIELDS = (RUN_ID, BACKEND, MODEL, DATASET, FOLD, SEED)
# The fields every record carries, ok or failed, in `record_header`'s order.
HEADER_FIELDS = (VERSION_FIELD, *IDENTITY_FIELDS, TWIN_OF, RUN_POSITION, INIT, PRETRAINED,
                 THREADS, DETERMINISTIC, CONFIG, RECIPE, MEASURE_CONFIG, DATA, TEST_INJECTION,
                 EQUIVALENCE_MARGIN)
OUTCOME_FIELDS = (STATUS, ERROR)
MEASUREMENT_SECTIONS = (MODEL_INFO, METRICS, TIMING, LATENCY, MEMORY, ENERGY, WORK)
# What an ok record carries besides the header and the outcome.
OK_FIELDS = (*MEASUREMENT_SECTIONS, HISTORY, FLAGS, ENV, TEST_LABELS, TEST_PREDICTIONS, WALL_S,
             ARTIFACTS)
# What a failed record carries besides the header and the outcome.
FAILED_FIELDS = (STDERR_TAIL,)
# Sections holding facts about a run rather than measurements: their numbers are no figures.
FACT_SECTIONS = (CONFIG, RECIPE, MEASURE_CONFIG, DATA, ENV, FLAGS, TEST_INJECTION, ARTIFACTS,
                 GRID_POINT, EXECUTION, PRETRAINED)
# Fields without which a record cannot be placed in a report or a comparison; every
# schema-1 record has carried them.
READ_FIELDS = (VERSION_FIELD, RUN_ID, STATUS, BACKEND, MODEL, DATASET)


class RecordError(ValueError):
    """A value that is not a result record this code reads; the message names the fix."""


def describe_injection(injection: Mapping[str, Any]) -> str:
    """A record's TEST_INJECTION in words, e.g. "torch training +30% (busy CPU), 100 MB
    held"; as recorded ("name=value, …") where another version of the fault switches, or
    an edit, wrote fields this one does not know.

    Args:
        injection: the field's value (`benchmarks.runner.faults.InjectedFaults.as_record`).
    """
    known = {"slowdown_backend": None, "slowdown_fraction": 0.0, "alloc_mb": 0}
    try:
        if not set(injection) <= set(known):
            raise TypeError("fields of another version")
        faults = {**known, **injection}
        parts = []
        if faults["slowdown_backend"] is not None:
            parts.append(f"{faults['slowdown_backend']} training "
                         f"+{faults['slowdown_fraction']:.0%} (busy CPU)")
        if faults["alloc_mb"]:
            parts.append(f"{faults['alloc_mb']} MB held")
        return ", ".join(parts)
    except (TypeError, ValueError):
        return ", ".join(f"{name}={value!r}" for name, value in sorted(injection.items()))


def succeeded(record: dict[str, Any]) -> bool:
    """Whether `record` is of a run that succeeded."""
    return record.get(STATUS) == OK


def is_twin(record: dict[str, Any]) -> bool:
    """Whether `record` is of a twin run (TWIN_OF), not one of the frameworks' replicates."""
    return record.get(TWIN_OF) is not None


def check_record(record: Any, complete: bool = False) -> None:
    """Raises RecordError unless `record` is a result record this code reads.

    Args:
        record: a parsed JSON value.
        complete: also require every field this version writes: the header, the outcome,
            and OK_FIELDS or FAILED_FIELDS by status. Older schema-1 records lack some of
            them, so readers leave this off; the worker checks its own record with it.

    Raises:
        RecordError: `record` is not a dict with READ_FIELDS, names a schema newer than
            SCHEMA_VERSION, holds a field of a type no reader expects (`check_types`), or
            (with `complete`) lacks a field or has an unknown status.
    """
    missing = [name for name in READ_FIELDS
               if not isinstance(record, dict) or name not in record]
    if missing:
        raise RecordError(f"not a FER-Bench result record (missing {', '.join(missing)}); "
                          f"pass a results.jsonl written by benchmarks.run")
    version = record[VERSION_FIELD]
    if not _is_int(version) or version > SCHEMA_VERSION:
        raise RecordError(f"result schema {version!r} is not one this FER-Bench reads "
                          f"(1 to {SCHEMA_VERSION}); update FER-Bench")
    check_types(record)
    if not complete:
        return
    status = record[STATUS]
    if status not in STATUSES:
        raise RecordError(f"record {record[RUN_ID]!r} has status {status!r}; a record's "
                          f"status is one of {', '.join(STATUSES)}")
    expected = (*HEADER_FIELDS, *OUTCOME_FIELDS, *(OK_FIELDS if status == OK else FAILED_FIELDS))
    missing = [name for name in expected if name not in record]
    if missing:
        raise RecordError(f"record {record[RUN_ID]!r} lacks {', '.join(missing)}, which "
                          f"every {status} record of schema {SCHEMA_VERSION} carries")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_text(v) for v in value)


def _is_square_count_matrix(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int_list(row) and len(row) == len(value)
                                           for row in value)


def _is_per_class(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(scores, dict) and all(v is None or _is_number(v) for v in scores.values())
        for scores in value.values())


# What the readers (reports, comparisons, statistics) rely on, field by field: a check and
# the words for it. Fields left out are only shown as text, so any value reads.
_HEADER_TYPES = {
    **dict.fromkeys((RUN_ID, STATUS, BACKEND, MODEL, DATASET), (_is_text, "text")),
    **dict.fromkeys((FOLD, SEED, THREADS), (_is_int, "an integer or null")),
    **dict.fromkeys((INIT, ERROR, STDERR_TAIL, TWIN_OF), (_is_text, "text or null")),
    RUN_POSITION: (lambda v: _is_int(v) and v >= 0, "an integer ≥ 0 or null"),
    EQUIVALENCE_MARGIN: (lambda v: _is_number(v) and 0 < v < 1,
                         "a number in (0, 1) (an accuracy margin) or null"),
    **dict.fromkeys((*MEASUREMENT_SECTIONS, *FACT_SECTIONS),
                    (lambda v: isinstance(v, dict), "an object or null")),
    HISTORY: (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
              "a list of objects (one per epoch) or null"),
    TEST_LABELS: (_is_int_list, "a list of integers or null"),
    TEST_PREDICTIONS: (_is_int_list, "a list of integers or null"),
    WALL_S: (_is_number, "a number or null"),
}
_METRIC_STRUCTURE_TYPES = {
    PER_CLASS: (_is_per_class, "an object of per-class objects of numbers"),
    CONFUSION_MATRIX: (_is_square_count_matrix, "a square list of lists of integers"),
    AUC_CLASSES_SKIPPED: (_is_text_list, "a list of class names"),
}
# The per-epoch fields the training curves draw.
_PLOTTED_EPOCH_FIELDS = ("train_loss", "val_loss", "val_accuracy")


def _type_error(run_id: Any, name: str, expected: str, value: Any) -> RecordError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
    return RecordError(f"record {run_id!r}: {name} must be {expected}. Received: "
                       f"{name}={shown}; the record was edited or damaged: restore the file "
                       "or rerun `python -m benchmarks.run`")


def _check_figures(run_id: Any, content: dict[str, Any], prefix: str) -> None:
    for name, value in content.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            _check_figures(run_id, value, f"{key}.")
        elif value is not None and not _is_number(value):
            raise _type_error(run_id, key, "a number or null (a figure)", value)


def check_types(record: dict[str, Any]) -> None:
    """Raises RecordError naming the first field whose value no reader can use.

    A field that is absent or null is never wrong: readers show it as not measured ("—").
    Checked where present: the header's text and integers, every section being an object,
    every leaf of a measurement section being a number (the metrics' per-class scores,
    confusion matrix and skipped classes excepted, each of its own shape), the class
    names, the epochs of `history`, and the per-image test labels and predictions (of one
    length).

    Args:
        record: a dict holding READ_FIELDS.

    Raises:
        RecordError: the message names the run, the field, the type expected and the value.
    """
    run_id = record.get(RUN_ID)
    for name, (check, expected) in _HEADER_TYPES.items():
        value = record.get(name)
        # READ_FIELDS place a record in every table: null is no value for them.
        if (value is not None or name in READ_FIELDS) and not check(value):
            raise _type_error(run_id if _is_text(run_id) else None, name, expected, value)
    for section in MEASUREMENT_SECTIONS:
        content = dict(record.get(section) or {})
        if section == METRICS:
            for name, (check, expected) in _METRIC_STRUCTURE_TYPES.items():
                value = content.pop(name, None)
                if value is not None and not check(value):
                    raise _type_error(run_id, f"{METRICS}.{name}", expected, value)
        _check_figures(run_id, content, f"{section}.")
    class_names = (record.get(DATA) or {}).get("class_names")
    if class_names is not None and not _is_text_list(class_names):
        raise _type_error(run_id, f"{DATA}.class_names", "a list of class names", class_names)
    matrix = (record.get(METRICS) or {}).get(CONFUSION_MATRIX)
    if class_names and matrix and len(matrix) != len(class_names):
        raise _type_error(run_id, f"{METRICS}.{CONFUSION_MATRIX}",
                          f"{len(class_names)} × {len(class_names)}, one row per class name",
                          matrix)
    for number, epoch in enumerate(record.get(HISTORY) or [], 1):
        if not _is_int(epoch.get("epoch")):
            raise _type_error(run_id, f"{HISTORY}[{number}].epoch", "an integer",
                              epoch.get("epoch"))
        for name in _PLOTTED_EPOCH_FIELDS:
            value = epoch.get(name)
            if value is not None and not _is_number(value):
                raise _type_error(run_id, f"{HISTORY}[{number}].{name}", "a number or null",
                                  value)
    labels, predictions = record.get(TEST_LABELS), record.get(TEST_PREDICTIONS)
    if labels is not None and predictions is not None and len(labels) != len(predictions):
        raise _type_error(run_id, TEST_PREDICTIONS,
                          f"as long as {TEST_LABELS} ({len(labels)} images)", predictions)
