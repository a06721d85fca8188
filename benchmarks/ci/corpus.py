"""A corpus of A/B readings of unchanged code: what the CI speed rule's noise looks like.

    python -m benchmarks.ci corpus [--pairs N] [--corpus FILE] [RUN OPTIONS …]

Runs the `ci` preset's (model, backend) workers from the reference tree (the baseline's
commit, as `check` does) and from this checkout, `--pairs` times, each pass alternating
which side runs first (A B, then B A, …), and appends every reading to a JSON file: both
sides' load-normalised speed, their anonymous-memory figures and the load average around
them. Run it on unchanged code (the checkout at the baseline's commit, or one whose
changes do not touch training) on a machine left alone: every pair is then a pair of the
same code, and `benchmarks.ci.speed_rule.replay` measures how often a rule calls such a
pair a regression (docs/ci.md, "The speed rule's false-alarm rate").

The file is rewritten after each pass, so an interrupted collection keeps what it read.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.ci.regression_check import (
    SPEED_FIGURE,
    Check,
    ReferenceUnavailable,
    candidate_side,
    preset_pairs,
    reference_commit,
    reference_side,
    reference_worktree,
)
from benchmarks.record import schema
from benchmarks.record.figures import ANON_MEMORY, CATALOG
from benchmarks.record.store import read_records
from benchmarks.runner.env import cpu_model

DEFAULT_CORPUS = Path("tests/data/ci_speed_corpus.json")
_MEMORY_KEYS = tuple(key for key, m in CATALOG.items() if m.kind == ANON_MEMORY)


def _figures(record: dict[str, Any]) -> dict[str, Any]:
    """The corpus's view of one run: the speed figure, anonymous memory, the load."""
    timing = record.get(schema.TIMING) or {}
    figures = {SPEED_FIGURE: timing.get(SPEED_FIGURE)}
    for key in _MEMORY_KEYS:
        section, field = key.split(".", 1)
        figures[key] = (record.get(section) or {}).get(field)
    figures["load_average_1m"] = ((record.get(schema.ENV) or {})
                                  .get("load_average_1_5_15m") or [None])[0]
    figures["ok"] = schema.succeeded(record)
    return figures


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"about": "A/B readings of unchanged code by `python -m benchmarks.ci corpus` "
                     "(docs/ci.md): reference and candidate are the same code.",
            "figure": SPEED_FIGURE, "readings": []}


def collect(baseline_dir: Path, out_root: Path, corpus_path: Path, passes: int,
            run_options: list[str]) -> int:
    """Runs `passes` A/B passes of the preset and appends their readings to `corpus_path`.

    Returns:
        The exit status: 0 when every pass was read; 2 when the reference cannot be run.
    """
    baseline = read_records(baseline_dir)
    pairs = preset_pairs(run_options)
    corpus = _load(corpus_path)
    first_pass = 1 + max((r["pass"] for r in corpus["readings"]), default=0)
    with ExitStack() as stack:
        try:
            commit = reference_commit(baseline)
            reference = reference_side(stack.enter_context(reference_worktree(commit)), commit)
        except ReferenceUnavailable as error:
            print(f"error: the corpus needs the reference tree: {error}", file=sys.stderr)
            return 2
        state = Check(baseline, str(baseline_dir), candidate_side(), reference, out_root,
                      run_options)
        for number in range(first_pass, first_pass + passes):
            reference_first = number % 2 == 1
            print(f"=== corpus pass {number} ({'reference' if reference_first else 'candidate'}"
                  f" first)", flush=True)
            for model, backend in pairs:
                sides = [state.reference, state.candidate]
                if not reference_first:
                    sides.reverse()
                read = {}
                for side in sides:
                    records, _ = state._run(side, (model, backend))
                    read[side.name] = _figures(records[0]) if records else None
                corpus["readings"].append({
                    "pass": number, "model": model, "backend": backend,
                    "reference_first": reference_first, "cpu": cpu_model(),
                    "reference_commit": reference.commit,
                    "candidate_commit": state.candidate.commit, **read})
            corpus_path.parent.mkdir(parents=True, exist_ok=True)
            corpus_path.write_text(json.dumps(corpus, indent=1) + "\n", encoding="utf-8")
    print(f"corpus: {len(corpus['readings'])} readings in {corpus_path}")
    return 0


def speed_pairs(corpus_path: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The corpus's speed readings per host (`env.cpu`, as the reading recorded it) and
    figure ("model backend"): (reference, candidate) pairs where both runs succeeded, in
    the order read.

    Hosts are kept apart because their noise differs (docs/ci.md: every figure but TF
    vgg16 spreads more on the AVX2 EPYC than on the AVX-512 one), and a rule's rates hold
    per host.

    Raises:
        FileNotFoundError: when there is no corpus at `corpus_path`.
    """
    if not corpus_path.is_file():
        raise FileNotFoundError(f"no speed corpus at {corpus_path}: collect one with "
                                "`python -m benchmarks.ci corpus` (docs/ci.md)")
    hosts: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for reading in _load(corpus_path)["readings"]:
        sides = (reading.get("reference"), reading.get("candidate"))
        if all(side and side["ok"] and side[SPEED_FIGURE] for side in sides):
            figures = hosts.setdefault(reading["cpu"], {})
            figures.setdefault(f"{reading['model']} {reading['backend']}", []).append(
                (sides[0][SPEED_FIGURE], sides[1][SPEED_FIGURE]))
    return hosts
