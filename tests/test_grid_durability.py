"""Grid folders: run ids from the full spec, torn records, the driver's lock."""

import json
from dataclasses import replace

import pytest

from backends.train_config import TrainConfig
from benchmarks.grid import __main__ as grid_cli
from benchmarks.grid.driver import GridBusy, grid_lock
from benchmarks.record.layout import GRID_SPEC_FILE, RESULTS_FILE
from benchmarks.record.store import append_record, cut_torn_tail, read_records
from benchmarks.runner.config import RunSpec
from tests.grid_specs import write_spec


def test_the_same_spec_is_the_same_run_id():
    spec = RunSpec(backend="torch", model="proposed_cnn", dataset="synthetic",
                   prepared_data="/a/prepared.npz", train=TrainConfig(learning_rate=1e-3),
                   threads=1, data_info={"fingerprint": "f", "split": "holdout-seed0"},
                   id_from_spec=True)
    # Where the data and weights lie and the time limit change no figure.
    same = replace(spec, prepared_data="/elsewhere.npz", timeout_s=9.0, weights_path="/w")
    assert same.run_id == spec.run_id
    assert spec.run_id.startswith("torch-proposed_cnn-synthetic-seed0-")
    for changed in (replace(spec, train=TrainConfig(learning_rate=3e-3)),
                    replace(spec, deterministic=True),
                    replace(spec, data_info={"fingerprint": "g", "split": "holdout-seed0"})):
        assert changed.run_id != spec.run_id
    assert replace(spec, id_from_spec=False).run_id == "torch-proposed_cnn-synthetic-seed0"


def test_a_torn_last_record_is_skipped_then_cut_before_the_next(tmp_path):
    record = {"schema_version": 1, "run_id": "a", "status": "ok", "backend": "tf",
              "model": "proposed_cnn", "dataset": "synthetic"}
    append_record(tmp_path, record)
    whole = (tmp_path / RESULTS_FILE).read_bytes()
    # What a SIGKILL in the middle of the next write leaves.
    (tmp_path / RESULTS_FILE).write_bytes(whole + json.dumps({**record, "run_id": "b"})[:30]
                                          .encode())
    warnings = []
    assert [r["run_id"] for r in read_records(tmp_path, warnings.append)] == ["a"]
    assert "incomplete last record" in warnings[0]
    assert cut_torn_tail(tmp_path) == 30 and cut_torn_tail(tmp_path) == 0
    append_record(tmp_path, {**record, "run_id": "c"})
    assert [r["run_id"] for r in read_records(tmp_path, warnings.append)] == ["a", "c"]
    assert len(warnings) == 1


def test_a_second_driver_on_a_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "grid"
    folder.mkdir()
    spec = write_spec(tmp_path)
    (folder / GRID_SPEC_FILE).write_text(spec.read_text())
    with grid_lock(folder):
        with pytest.raises(GridBusy, match="another benchmarks.grid driver"), grid_lock(folder):
            pass
        assert grid_cli.main([str(spec), "--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is running on" in err
    assert not (folder / RESULTS_FILE).exists()
    with grid_lock(folder):  # released with its holder
        pass


def test_resume_needs_a_grid_folder(tmp_path, capsys):
    assert grid_cli.main([str(write_spec(tmp_path)), "--resume", str(tmp_path)]) == 2
    assert "is not a grid folder" in capsys.readouterr().err
