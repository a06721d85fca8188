"""Choosing a grid's configuration: on validation only, averaged over folds and seeds."""

import copy

from benchmarks.analysis.grid_selection import (
    choose,
    chosen_test_summary,
    same_choice,
    score_points,
)

SLOW, FAST = {"learning_rate": 1e-4}, {"learning_rate": 1e-2}


def _record(backend, point, seed, val_accuracy, val_loss, test_accuracy):
    return {"schema_version": 1, "run_id": f"{backend}-{seed}-{point}", "status": "ok",
            "dataset": "synthetic", "model": "proposed_cnn", "backend": backend,
            "fold": None, "seed": seed, "grid_point": point,
            "selection": {"best_val_accuracy": val_accuracy, "best_val_loss": val_loss},
            "metrics": {"accuracy": test_accuracy}}


def _records():
    # FAST wins on validation on average (one seed of it is worse than SLOW's), while
    # its test accuracy is far lower: a choice that read test figures would pick SLOW.
    return [_record(backend, point, seed, val, loss, test)
            for backend in ("tf", "torch")
            for point, seed, val, loss, test in (
                (SLOW, 0, 0.50, 1.2, 0.90), (SLOW, 1, 0.52, 1.1, 0.92),
                (FAST, 0, 0.70, 0.9, 0.30), (FAST, 1, 0.48, 1.0, 0.31))]


def test_the_choice_reads_validation_never_test_figures():
    records = _records()
    chosen = choose(score_points(records, "val_accuracy", [SLOW, FAST]), True)
    assert {key[2]: c.point for key, c in chosen.items()} == {"tf": FAST, "torch": FAST}
    assert chosen[("synthetic", "proposed_cnn", "tf")].validation.mean == (0.70 + 0.48) / 2
    # With every test figure removed the choice is the same: it never read them.
    blind = copy.deepcopy(records)
    for record in blind:
        del record["metrics"]
    assert choose(score_points(blind, "val_accuracy", [SLOW, FAST]), True) == chosen
    # Only then are the chosen point's test figures read, over its seeds.
    assert chosen_test_summary(records, ("synthetic", "proposed_cnn", "tf"), FAST).mean == \
        (0.30 + 0.31) / 2


def test_val_loss_is_minimised_and_failed_runs_do_not_count():
    records = _records()
    records.append({**_record("tf", SLOW, 2, 0.99, 0.01, 0.99), "status": "failed"})
    chosen = choose(score_points(records, "val_loss", [SLOW, FAST]), False)
    assert chosen[("synthetic", "proposed_cnn", "tf")].point == FAST
    assert chosen[("synthetic", "proposed_cnn", "tf")].validation.n == 2


def test_ties_go_to_the_first_point_and_backends_are_compared():
    records = [_record("tf", p, 0, 0.5, 1.0, 0.5) for p in (FAST, SLOW)]
    records += [_record("torch", SLOW, 0, 0.4, 1.0, 0.5), _record("torch", FAST, 0, 0.6, 1.0, 0.5)]
    chosen = choose(score_points(records, "val_accuracy", [SLOW, FAST]), True)
    assert chosen[("synthetic", "proposed_cnn", "tf")].point == SLOW  # SLOW is first
    assert same_choice(chosen) == {("synthetic", "proposed_cnn"): False}


def test_the_study_averages_each_axis_value_over_the_rest():
    from benchmarks.analysis.grid_study import marginals, study_entries

    records = _records()
    study = marginals(records, "val_accuracy", {"learning_rate": [1e-4, 1e-2]})
    rows = study[("synthetic", "proposed_cnn", "torch")]["learning_rate"]
    assert [value for value, _ in rows] == [1e-4, 1e-2]
    assert rows[0][1].mean == (0.50 + 0.52) / 2 and rows[1][1].n == 2
    # A search's range keeps the values the runs took, in order, drawn to scale.
    (entry, *_) = study_entries(records, "val_accuracy",
                                {"learning_rate": {"low": 1e-5, "high": 1e-1, "log": True}})
    assert entry["scale"] == "log" and [v["value"] for v in entry["values"]] == [1e-4, 1e-2]
