"""`python -m benchmarks.leaderboard`: one page over many report folders, rows ranked within
their protocol only (benchmarks/leaderboard/)."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest

from benchmarks.analysis.published import PUBLISHED_FILE
from benchmarks.grid.driver import build_summary
from benchmarks.grid.spec import parse_spec
from benchmarks.leaderboard import __main__ as leaderboard_cli
from benchmarks.leaderboard import collect
from tests.grid_specs import TINY_SPEC
from tests.report_fixtures import INJECTION, make_record, write_results

FOUR = ["anger", "happiness", "sadness", "neutral"]


def _runs(model: str, accuracy: float, seeds: int = 3, **data) -> list[dict]:
    """Both backends' records of `model` over `seeds` seeds, their data facts changed."""
    records = []
    for seed in range(seeds):
        for backend in ("tf", "torch"):
            record = make_record(backend, model, seed, accuracy)
            facts = {k: v for k, v in data.items() if k != "dataset_name"}
            record["data"] = {**copy.deepcopy(record["data"]), **facts}
            record["dataset"] = data.get("dataset_name", record["dataset"])
            record["env"] = {"device": "cpu", "cpu": "AMD EPYC (test)"}
            records.append(record)
    return records


PROTOCOLS = {
    "fer-private": {"dataset_name": "fer2013", "protocol": "official",
                    "num_test": 3589},
    "fer-public": {"dataset_name": "fer2013", "protocol": "official train, tested on the "
                   "official validation part, validation stratified from train; the official "
                   "test part left out", "num_test": 3589,
                   "selection": {"test_part": "val"}},
    "fer-four": {"dataset_name": "fer2013", "num_test": 1000,
                 "protocol": "official; 1000 training images a class and 250 test images a "
                             "class (seed 0)",
                 "class_names": FOUR,
                 "selection": {"classes": FOUR, "train_per_class": 1000,
                               "test_per_class": 250, "test_part": "test"}},
    "ck-kfold": {"dataset_name": "ck+", "num_test": 98},
}


def _folders(tmp_path):
    """Four report folders of four protocols (the fer-private one twice, once better)."""
    root = tmp_path / "reports"
    written = {
        "fer-private": write_results(root, _runs("proposed_cnn", 0.6, **PROTOCOLS["fer-private"])
                                     + _runs("vgg16", 0.5, **PROTOCOLS["fer-private"])),
        "fer-private-again": write_results(root, _runs("proposed_cnn", 0.8,
                                                       **PROTOCOLS["fer-private"])),
        "fer-public": write_results(root, _runs("sanet", 0.9, **PROTOCOLS["fer-public"])),
        "fer-four": write_results(root, _runs("proposed_cnn", 0.95, **PROTOCOLS["fer-four"])),
    }
    ck = []
    for fold in range(3):
        for record in _runs("resnet50", 0.7, seeds=1, **PROTOCOLS["ck-kfold"]):
            record["fold"] = fold
            record["data"]["protocol"] = f"3-fold subject-independent, fold {fold}"
            ck.append(record)
    written["ck-kfold"] = write_results(root / "nested" / "deeper", ck)
    return root, written


def test_rows_of_different_protocols_are_never_ranked_together(tmp_path):
    root, written = _folders(tmp_path)
    notes = []
    ranked, folders = collect([root], notes.append)
    assert folders == 5 and notes == []
    assert len(ranked) == 4  # four protocols: four tables
    for rows in ranked.values():  # each table holds one protocol, ranked from 1
        assert len({row.best.protocol for row in rows}) == 1
        assert min(row.rank for row in rows) == 1
    tables = {(p.dataset, p.test_part, p.test_per_class, p.split.split(",")[0]): rows
              for p, rows in ranked.items()}
    private = tables["fer2013", "test", None, "official"]
    # proposed_cnn's best of two reports (about 0.8) above vgg16 (0.5); sanet's 0.9 on
    # PublicTest and the four-class 0.95 sit in tables of their own and outrank nothing.
    assert [row.best.model for row in private] == ["proposed_cnn", "proposed_cnn", "vgg16",
                                                   "vgg16"]
    assert max(r.rank for r in private[:2]) < min(r.rank for r in private[2:])
    best = private[0]
    assert best.best.folder == written["fer-private-again"] and len(best.entries) == 2
    public = tables["fer2013", "val", None, "official train"]
    assert [(row.rank, row.best.model) for row in public] in (
        [(1, "sanet"), (2, "sanet")], [(1, "sanet"), (1, "sanet")])
    four = tables["fer2013", "test", 250, "official"]  # the draws' words held as numbers
    assert {row.best.model for row in four} == {"proposed_cnn"}
    assert four[0].best.protocol.classes == tuple(FOUR)
    (ck,) = [rows for key, rows in tables.items() if key[0] == "ck+"]
    # The folds of one report are one protocol (3-fold, its fold index stripped), their
    # test images summed, and its interval over the folds.
    assert ck[0].best.protocol.split == "3-fold subject-independent"
    assert ck[0].best.protocol.test_images == 3 * 98 and ck[0].best.accuracy.n == 3


def test_the_command_writes_html_markdown_and_csv_escaped_with_links(tmp_path, capsys):
    root, written = _folders(tmp_path)
    runs = _runs(f"proposed_cnn{INJECTION}", 0.6, **PROTOCOLS["fer-private"])
    for run in runs:
        run["recipe"] = {"source": "=cmd|' /C calc'!A0.toml", "text": "", "explicit": {}}
    write_results(root, runs)
    study = {"study": "fer2013-4conv-cnn", "title": "t", "split": "PrivateTest",
             "caveats": [], "published": [
                 {"model": "vgg16", "as_named": "VGG-16", "metric": "accuracy", "value": 0.518,
                  "split": "unstated", "source": "README", "framework": "any",
                  "class_name": None, "anchor": False}]}
    (written["fer-private"] / PUBLISHED_FILE).write_text(json.dumps(study))
    out = tmp_path / "board"
    assert leaderboard_cli.main([str(root), "--out", str(out)]) == 0
    page = (out / "leaderboard.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<table>") == 4
    link = f'href="./../reports/{written["fer-private"].name}/report.html"'
    assert link in page
    assert "51.8 % accuracy: VGG-16 (fer2013-4conv-cnn; on unstated)" in page
    markdown = (out / "leaderboard.md").read_text()
    assert markdown.count("\n## ") == 4 and f"reports/{written['fer-private'].name}" in markdown
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert len(rows) == 2 * 6 and all(not r["recipe"].startswith("=") for r in rows)
    assert {r["rank"] for r in rows if r["split"] == "3-fold subject-independent"} == {"1", "2"}
    assert "12 rows in 4 protocol(s) from 6 report folder(s)" in capsys.readouterr().out


def test_a_grid_folder_counts_its_chosen_configuration_only(tmp_path):
    records = []
    # Chosen on validation: the learning rate with the better validation accuracy, whose
    # test accuracy is the lower one.
    for lr, validation, accuracy in ((1e-3, 0.3, 0.9), (3e-3, 0.6, 0.4)):
        for record in _runs("proposed_cnn", accuracy, seeds=1):
            record["grid_point"] = {"learning_rate": lr}
            record["selection"] = {"best_val_accuracy": validation}
            records.append(record)
    folder = write_results(tmp_path / "reports", records)
    summary = build_summary(parse_spec(TINY_SPEC, "spec.toml"), records, len(records))
    (folder / "grid.json").write_text(json.dumps(summary))
    ranked, _ = collect([tmp_path / "reports"], print)
    (rows,) = ranked.values()
    assert len(rows) == 2 and all(row.best.accuracy.mean < 0.6 for row in rows)


def test_bad_input_is_one_line_exit_2_and_a_damaged_folder_is_left_out_with_a_note(
        tmp_path, capsys):
    assert leaderboard_cli.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a folder" in err and "\n" not in err and not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    assert leaderboard_cli.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no report folder" in capsys.readouterr().err
    root, _ = _folders(tmp_path)
    damaged = root / "damaged"
    damaged.mkdir()
    (damaged / "results.jsonl").write_text("not json\n{}\n")
    assert leaderboard_cli.main([str(root), "--out", str(tmp_path / "o")]) == 0
    assert "damaged left out" in capsys.readouterr().err
    assert "damaged left out" in (tmp_path / "o" / "leaderboard.html").read_text()


@pytest.mark.parametrize("target", ["results.jsonl", "folder"])
def test_links_out_of_the_given_folders_are_not_followed(tmp_path, target):
    outside = write_results(tmp_path / "outside", _runs("vgg16", 0.9,
                                                        **PROTOCOLS["fer-private"]))
    root = tmp_path / "reports"
    root.mkdir()
    if target == "folder":
        (root / "link").symlink_to(outside)
    else:
        (root / "real").mkdir()
        (root / "real" / "results.jsonl").symlink_to(outside / "results.jsonl")
    with pytest.raises(ValueError, match="no report folder"):
        collect([root], print)
