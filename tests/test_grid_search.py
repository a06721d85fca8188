"""benchmarks.grid's Optuna search (a spec with [search]).

Its spec's checks need no Optuna (tests/test_grid_spec.py); without Optuna a search is one
line and exit 2. The searches themselves run where Optuna is installed
(`pip install -e '.[optuna]'`) and are skipped with that reason elsewhere.
"""

import importlib.util
import json
import math
import statistics
from collections import Counter

import pytest

from backends.augment import augment_config
from benchmarks.grid import __main__ as grid_cli
from benchmarks.grid.spec import load_spec
from benchmarks.record.layout import GRID_SUMMARY_FILE
from benchmarks.record.store import read_records
from tests.grid_specs import SEARCH_SPEC, kill_after_first_record, start_driver, write_spec
from tests.report_fixtures import make_record

HAS_OPTUNA = importlib.util.find_spec("optuna") is not None


@pytest.mark.skipif(HAS_OPTUNA, reason="Optuna is installed: this checks the message where "
                                       "it is not")
def test_a_search_without_optuna_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert grid_cli.main([str(write_spec(tmp_path, SEARCH_SPEC)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: optuna is not installed: pip install -e '.[optuna]'"
    assert not out.exists()


# --- the search's logic, with a stand-in for the workers (fast; needs Optuna) -----------


def _optuna():
    return pytest.importorskip("optuna", reason="Optuna is not installed: "
                                                "pip install -e '.[optuna]'")


def _validation(spec, epoch):
    """A made-up validation curve: best at learning rate 1e-3 and with light augmentation,
    rising by epoch, a little higher for the second seed."""
    lr, light = spec.train.learning_rate, spec.train.augment == augment_config("light")
    return (0.3 + 0.1 * epoch - 0.1 * abs(math.log10(lr) + 3) + (0.02 if light else 0.0)
            + 0.005 * (spec.train.seed % 2))


class CurveExecutor:
    """Stands in for the worker processes: each run "trains" instantly to `_validation`'s
    curve. With `stop_at_second_seed` it raises KeyboardInterrupt (Ctrl-C) when asked for
    that many-th run of seed 1: the second of a trial the pruner let go on, its first run
    (seed 0) kept."""

    def __init__(self, stop_at_second_seed=None):
        self.ran, self.stop = [], stop_at_second_seed
        self.second_seeds = 0

    def describe(self):
        return "stand-in"

    def run(self, specs, on_line):
        for spec in specs:
            self.second_seeds += spec.train.seed == 1
            if self.second_seeds == self.stop:
                raise KeyboardInterrupt
            self.ran.append(spec.run_id)
            record = make_record(spec.backend, spec.model, spec.train.seed)
            curve = [_validation(spec, e) for e in range(1, spec.train.epochs + 1)]
            record["history"] = record["history"][:len(curve)]
            for log, value in zip(record["history"], curve, strict=True):
                log["val_accuracy"] = value
            record.update(run_id=spec.run_id, fold=spec.fold, selection={
                "best_val_accuracy": max(curve), "best_val_loss": 1 - max(curve)})
            yield spec, record


def test_the_search_prunes_chooses_on_validation_and_resumes_without_duplicates(tmp_path):
    _optuna()
    from benchmarks.grid.search import read_trials, run_search
    from benchmarks.record.layout import TRIALS_FILE

    text = SEARCH_SPEC.replace("trials = 4", "trials = 6")
    spec, out = load_spec(write_spec(tmp_path, text)), tmp_path / "out"
    # Ctrl-C as the second trial to pass the pruner starts its second run.
    stopped = CurveExecutor(stop_at_second_seed=2)
    with pytest.raises(KeyboardInterrupt):
        run_search(spec, out, None, stopped, lambda line: None)
    (folder,) = out.iterdir()
    before = read_trials(folder, print)
    finished_points = [t["point"] for t in before]
    (cut_off,) = {json.dumps(r["grid_point"]) for r in read_records(folder)
                  if r["grid_point"] not in finished_points}
    assert 1 <= len(before) < 6
    resumed = CurveExecutor()
    _, summary = run_search(spec, out, folder, resumed, lambda line: None)
    trials = read_trials(folder, print)
    assert len(trials) == 6 and trials[:len(before)] == before
    # The trial cut off comes first, complete; its recorded first run is not rerun.
    assert json.dumps(trials[len(before)]["point"]) == cut_off
    assert trials[len(before)]["state"] == "complete"
    assert not set(stopped.ran) & set(resumed.ran)
    records = read_records(folder)
    assert len({r["run_id"] for r in records}) == len(records) == len(stopped.ran) + len(
        resumed.ran)
    for trial in trials:
        runs = [r for r in records if r["grid_point"] == trial["point"]]
        # A pruned trial ran its first run (seed 0) only, and was worse than the median
        # of the earlier complete trials' first runs at the epoch it was stopped.
        assert len(runs) == (1 if trial["state"] == "pruned" else 2), trial
        if trial["state"] == "pruned":
            # MedianPruner: the trial's best figure so far against the median, at that
            # epoch, of the trials complete before it.
            epoch = trial["pruned_at_epoch"]
            earlier = [dict(t["curve"])[epoch] for t in trials[:trial["number"]]
                       if t["state"] == "complete"]
            best_so_far = max(value for e, value in trial["curve"] if e <= epoch)
            assert best_so_far < statistics.median(earlier)
    assert {t["state"] for t in trials} == {"complete", "pruned"}
    # The choice: the complete trial with the best validation mean over its two seeds.
    complete = [t for t in trials if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["value"])
    (choice,) = summary["choices"]
    assert choice["point"] == best["point"] and choice["validation"]["n"] == 2
    assert len(choice["points"]) == len({json.dumps(t["point"]) for t in complete})
    assert [t["number"] for t in summary["trials"]] == list(range(6))
    # Every trial done: one line, exit 2, nothing written.
    results = (folder / "results.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"every trial of search spec .* \(6\) is already"):
        run_search(spec, out, folder, CurveExecutor(), lambda line: None)
    assert (folder / "results.jsonl").read_bytes() == results
    assert len((folder / TRIALS_FILE).read_text().splitlines()) == 6


# --- a real search: worker processes that train (slow; needs Optuna) -------------------


@pytest.mark.slow
def test_a_real_search_survives_a_sigkill_of_its_driver_and_resumes(tmp_path):
    _optuna()
    from benchmarks.grid.search import read_trials
    from benchmarks.record.layout import TRIALS_FILE

    text = SEARCH_SPEC.replace("trials = 4", "trials = 3")
    spec, out = write_spec(tmp_path, text), tmp_path / "out"
    folder = kill_after_first_record(start_driver(spec, "--out", out), out)
    kept = read_records(folder, on_warning=lambda m: None)
    resumed = start_driver(spec, "--resume", folder)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    trials = read_trials(folder, print)
    records = read_records(folder)
    ok = Counter(r["run_id"] for r in records if r["status"] == "ok")
    assert len(trials) == 3 and set(ok.values()) == {1}  # no run twice
    assert {r["run_id"] for r in kept} <= set(ok)  # none lost
    for trial in trials:
        runs = [r for r in records if r["grid_point"] == trial["point"]]
        assert len(runs) == (1 if trial["state"] == "pruned" else 2), trial
        assert all(r["config"]["learning_rate"] == trial["point"]["learning_rate"]
                   for r in runs)
    summary = json.loads((folder / GRID_SUMMARY_FILE).read_text())
    complete = [t for t in trials if t["state"] == "complete"]
    assert summary["choices"][0]["point"] == max(complete, key=lambda t: t["value"])["point"]
    report = (folder / "report.html").read_text()
    assert 'id="chart-study"' in report and "<h3>Trials</h3>" in report
    # Every trial finished: one line, exit 2, nothing written.
    lines = (folder / TRIALS_FILE).read_bytes()
    again = start_driver(spec, "--resume", folder)
    assert again.wait(timeout=120) == 2
    assert "every trial of search spec" in again.stderr.read()
    assert (folder / TRIALS_FILE).read_bytes() == lines
