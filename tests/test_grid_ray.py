"""benchmarks.grid on a real local Ray instance (ray.init(num_cpus=2)); skipped without Ray."""

import json

import pytest

from benchmarks.grid import __main__ as grid_cli
from benchmarks.record.layout import GRID_SUMMARY_FILE
from benchmarks.record.store import read_records
from tests.grid_specs import write_spec

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")


def test_an_unreachable_ray_address_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    # Port 1 on this host: nothing listens there.
    assert grid_cli.main([str(write_spec(tmp_path)), "--out", str(out), "--executor", "ray",
                          "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot be reached" in err and not out.exists()


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_runs_the_same_grid_to_the_same_choice_and_figures(tmp_path, local_ray):
    spec = write_spec(tmp_path)
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    assert grid_cli.main([str(spec), "--out", str(local_out), "--deterministic"]) == 0
    assert grid_cli.main([str(spec), "--out", str(ray_out), "--deterministic",
                          "--executor", "ray"]) == 0
    (local_folder,), (ray_folder,) = local_out.iterdir(), ray_out.iterdir()
    local = {r["run_id"]: r for r in read_records(local_folder)}
    remote = {r["run_id"]: r for r in read_records(ray_folder)}
    assert set(local) == set(remote) and len(local) == 2  # the same spec: the same ids
    for run_id, record in remote.items():
        assert record["execution"]["executor"] == "ray" and record["execution"]["node"]
        assert record["selection"] == local[run_id]["selection"]
        assert record["metrics"]["accuracy"] == local[run_id]["metrics"]["accuracy"]
    choices = [json.loads((f / GRID_SUMMARY_FILE).read_text())["choices"]
               for f in (local_folder, ray_folder)]
    assert choices[0] == choices[1]
