"""One leaderboard over many report folders (docs/reports.md, "Leaderboard").

    python -m benchmarks.leaderboard reports/ ~/collected-reports/ --out leaderboard/

Every report folder found under the given folders (a folder holding results.jsonl:
`benchmarks.run`'s, a grid's, a reproduced study's group) adds its ok runs, twins left
out; a grid folder adds only its chosen configuration's runs, as its report does. Rows
are (dataset, protocol, model, backend): the best mean test accuracy any folder reached,
with its 95% t-interval over the replicates, the seeds and folds behind it, its recipe,
its hardware, the report it is in, how many reports measured the row, and the published
figure where a study spec names one (`benchmarks.reproduce`).

Rows are ranked only against rows of the same protocol (`Protocol`): the same dataset,
split protocol, class set, official part tested on, per-class draws and number of test
images. Two protocols are two tables, never one ranking.

Report folders are untrusted input: nothing is followed out of a given folder (links are
not walked), every text is escaped where it goes, and a folder that cannot be read is
left out with a one-line note, the others ranked.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.analysis.grid_selection import chosen_runs
from benchmarks.analysis.grid_study import read_grid_summary
from benchmarks.analysis.published import (
    PublishedFileError,
    figure_name,
    format_value,
    read_published,
)
from benchmarks.analysis.stats import Summary, seed_replicates, summarize
from benchmarks.messages import shortened
from benchmarks.record import schema
from benchmarks.record.layout import RESULTS_FILE
from benchmarks.record.store import ResultsFileError, read_records

# Report folders one leaderboard reads: far more than anyone collects, and a bound on the
# walk of a folder that is no collection of reports (a home directory).
MAX_FOLDERS = 10_000
# What a split protocol's text adds for one fold, and for the per-class draws (which the
# Protocol holds as numbers): "10-fold subject-independent, fold 3; 400 training images a
# class (seed 0)" is "10-fold subject-independent".
_DRAWS_SUFFIX = re.compile(r"; \d+ (?:training|test) images a class.*$")
_FOLD_SUFFIX = re.compile(r", fold \d+$")


@dataclass(frozen=True)
class Protocol:
    """What makes two measurements comparable: the same test on the same kind of data.

    Attributes:
        dataset: the dataset's canonical name.
        split: the split protocol, without the fold ("10-fold subject-independent").
        classes: the class names, in label order.
        test_part: the official part tested on ("test", or "val": FER2013's PublicTest).
        train_per_class: training images drawn per class; None: all.
        test_per_class: test images drawn per class; None: all.
        test_images: the test images of every fold measured, summed.
    """

    dataset: str
    split: str
    classes: tuple[str, ...]
    test_part: str
    train_per_class: int | None
    test_per_class: int | None
    test_images: int

    def describe(self) -> str:
        """The protocol in one line, as the leaderboard's section titles show it."""
        parts = [self.dataset, self.split]  # the split's text names the part tested on
        parts.append(f"{len(self.classes)} classes ({', '.join(self.classes)})")
        draws = [f"{n} {part} a class" for part, n in (("training", self.train_per_class),
                                                       ("test", self.test_per_class)) if n]
        parts += draws + [f"{self.test_images:,} test images"]
        return " · ".join(parts)


@dataclass(frozen=True)
class Entry:
    """One report folder's measurement of one (protocol, model, backend).

    Attributes:
        folder: the report folder.
        protocol: what was measured on.
        model: catalog model.
        backend: backend name.
        accuracy: test accuracy over the replicates (seeds, or folds of one seed).
        macro_f1: macro F1 likewise.
        seeds: the seeds run.
        folds: the folds run (empty for a holdout).
        recipe: the recipe in one line.
        hardware: where it ran, in one line.
        published: the published accuracy figures of this model a study names, in words.
    """

    folder: Path
    protocol: Protocol
    model: str
    backend: str
    accuracy: Summary
    macro_f1: Summary
    seeds: tuple[Any, ...]
    folds: tuple[Any, ...]
    recipe: str
    hardware: str
    published: tuple[str, ...] = ()


@dataclass
class Row:
    """A leaderboard row: the best entry of one (protocol, model, backend).

    Attributes:
        best: the entry with the highest mean accuracy.
        entries: every entry of the row (each a report folder).
        rank: 1 for the best row of its protocol; rows with the same mean share a rank.
    """

    best: Entry
    entries: list[Entry] = field(default_factory=list)
    rank: int = 0

    @property
    def published(self) -> tuple[str, ...]:
        """Every report's published figures for the row, each once."""
        return tuple(dict.fromkeys(p for entry in self.entries for p in entry.published))


class LeaderboardError(ValueError):
    """Bad input to the leaderboard: a folder that does not exist, or holds no report."""


def find_report_folders(roots: Sequence[Path]) -> list[Path]:
    """Every report folder under `roots` (theirs included), in path order.

    Links are not followed, and a results file that is a link does not count: nothing
    outside the given folders is read.

    Raises:
        LeaderboardError: a root is no folder, none holds a report folder, or they hold
            more than MAX_FOLDERS.
    """
    found: set[Path] = set()
    for root in roots:
        if not Path(root).is_dir():
            raise LeaderboardError(f"{root} is not a folder: pass folders holding report "
                                   "folders (each with a results.jsonl)")
        for folder, _, files in os.walk(root, followlinks=False):
            if RESULTS_FILE in files and stat.S_ISREG(os.lstat(Path(folder, RESULTS_FILE))
                                                      .st_mode):
                found.add(Path(folder))
                if len(found) > MAX_FOLDERS:
                    raise LeaderboardError(f"more than {MAX_FOLDERS:,} report folders under "
                                           f"{', '.join(map(str, roots))}: pass the folders "
                                           "that collect the reports")
    if not found:
        raise LeaderboardError(f"no report folder (a folder holding {RESULTS_FILE}) under "
                               f"{', '.join(map(str, roots))}")
    return sorted(found)


def _protocol(runs: Sequence[dict[str, Any]]) -> Protocol:
    """The protocol the runs of one (folder, dataset, model, backend) measured on."""
    data = runs[0].get(schema.DATA) or {}
    selection = data.get("selection") or {}
    test_images = {run.get(schema.FOLD): (run.get(schema.DATA) or {}).get("num_test") or 0
                   for run in runs}
    split = _FOLD_SUFFIX.sub("", _DRAWS_SUFFIX.sub("", str(data.get("protocol")
                                                         or "unrecorded split")))

    def count(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Protocol(dataset=str(runs[0][schema.DATASET]), split=split,
                    classes=tuple(str(c) for c in data.get("class_names") or ()),
                    test_part=str(selection.get("test_part") or "test"),
                    train_per_class=count(selection.get("train_per_class")),
                    test_per_class=count(selection.get("test_per_class")),
                    test_images=sum(v for v in test_images.values() if isinstance(v, int)))


def _recipe(record: dict[str, Any]) -> str:
    """The recipe in one line: its file, optimizer, rate, epochs and batch."""
    config = record.get(schema.CONFIG) or {}
    source = (record.get(schema.RECIPE) or {}).get("source")
    name = Path(str(source)).name if source else "TrainConfig defaults"
    settings = [f"{config.get('optimizer', '?')} lr {config.get('learning_rate', '?')}",
                f"{config.get('epochs', '?')} epochs", f"batch {config.get('batch_size', '?')}"]
    if record.get(schema.PRETRAINED):
        settings.append(f"from {Path(str(record[schema.PRETRAINED].get('path'))).name}")
    return f"{name}: {', '.join(settings)}"


def _hardware(record: dict[str, Any]) -> str:
    env = record.get(schema.ENV) or {}
    return f"{env.get('device', '?')} · {env.get('cpu', '?')}"


def _published(study: dict[str, Any] | None, model: str, backend: str) -> tuple[str, ...]:
    """The study's published accuracy figures of `model` in `backend`, in words."""
    if study is None:
        return ()
    return tuple(
        f"{format_value(f, f['value'])} {figure_name(f)}: {f['as_named']} "
        f"({study['study']}; on {f['split']})"
        for f in study["published"]
        if f["model"] == model and f.get("framework", "any") in ("any", backend)
        and f["metric"] in ("accuracy",))


def _metric(runs: Sequence[dict[str, Any]], name: str) -> Summary:
    """A test metric over the runs' replicates (seeds, or folds for one seed)."""
    return summarize(seed_replicates(runs, lambda run: (run.get(schema.METRICS) or {}).get(name)))


def entries_of(folder: Path, on_note: Callable[[str], None]) -> list[Entry]:
    """The entries of one report folder; none (and a note) when it cannot be read."""
    try:
        records = read_records(folder, on_warning=lambda m: on_note(f"{folder}: {m}"))
        grid = read_grid_summary(folder)
        study = read_published(folder)
    except (ResultsFileError, PublishedFileError, OSError) as error:
        on_note(f"{folder} left out: {shortened(str(error), 200)}")
        return []
    if grid is not None:
        records = chosen_runs(records, grid["choices"])
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        if schema.succeeded(record) and not schema.is_twin(record):
            key = (record[schema.DATASET], record[schema.MODEL], record[schema.BACKEND])
            groups.setdefault(key, []).append(record)
    entries = []
    for (_, model, backend), runs in groups.items():
        entries.append(Entry(
            folder=folder, protocol=_protocol(runs), model=model, backend=backend,
            accuracy=_metric(runs, "accuracy"), macro_f1=_metric(runs, "macro_f1"),
            seeds=tuple(sorted({r.get(schema.SEED) for r in runs}, key=str)),
            folds=tuple(sorted({r.get(schema.FOLD) for r in runs
                                if r.get(schema.FOLD) is not None})),
            recipe=_recipe(runs[0]), hardware=_hardware(runs[0]),
            published=_published(study, model, backend)))
    return entries


def rank(entries: Iterable[Entry]) -> dict[Protocol, list[Row]]:
    """Protocol → its rows, best first: the best entry of each (model, backend), ranked
    against the rows of that protocol only."""
    rows: dict[Protocol, dict[tuple[str, str], Row]] = {}
    for entry in entries:
        row = rows.setdefault(entry.protocol, {}).setdefault((entry.model, entry.backend),
                                                             Row(best=entry))
        row.entries.append(entry)
        if _score(entry) > _score(row.best):
            row.best = entry
    ranked = {}
    for protocol in sorted(rows, key=lambda p: (p.dataset, p.split, p.classes, p.test_part,
                                                 p.test_images)):
        ordered = sorted(rows[protocol].values(), key=lambda r: (-_score(r.best),
                                                                 r.best.model, r.best.backend))
        for row in ordered:
            row.rank = 1 + sum(_score(other.best) > _score(row.best) for other in ordered)
        ranked[protocol] = ordered
    return ranked


def _score(entry: Entry) -> float:
    """The ranked figure: mean test accuracy; an entry without one ranks last."""
    return entry.accuracy.mean if entry.accuracy.mean is not None else float("-inf")


def collect(roots: Sequence[Path],
            on_note: Callable[[str], None]) -> tuple[dict[Protocol, list[Row]], int]:
    """The ranked rows of every report folder under `roots`, and how many folders were read.

    Raises:
        LeaderboardError: as `find_report_folders`.
    """
    folders = find_report_folders(roots)
    entries = [entry for folder in folders for entry in entries_of(folder, on_note)]
    return rank(entries), len(folders)
