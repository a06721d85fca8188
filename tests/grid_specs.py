"""Tiny grid specs for the grid tests (a few seconds a run on a CPU), and a driver to kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.record.layout import RESULTS_FILE
from benchmarks.runner.env import SUITE_ROOT

TINY_SPEC = """\
[grid]
dataset = "synthetic"
models = ["proposed_cnn"]
backends = ["torch"]
seeds = 1
recipe = "none"
image_size = 32
synthetic_subjects = 3

[fixed]
epochs = 1
batch_size = 8

[axes]
learning_rate = [1e-3, 3e-3]

[measure]
latency_warmup = 1
latency_repeats = 2
latency_budget_s = 0.2
calibration_size = 256
"""


# A search over the same tiny runs (two seeds of two epochs: a trial the pruner stops after
# its first run saves the second): a log range and two choices, median pruning from the
# second trial on.
SEARCH_SPEC = TINY_SPEC.replace("seeds = 1", "seeds = 2").replace(
    "epochs = 1", "epochs = 2").replace("[axes]\nlearning_rate = [1e-3, 3e-3]", """\
[search]
trials = 4
sampler = "tpe"
startup_trials = 2
pruning = true
pruning_startup_trials = 1

[axes]
learning_rate = { low = 1e-4, high = 1e-2, log = true }
augment = ["none", "light"]""")
assert SEARCH_SPEC != TINY_SPEC


def write_spec(folder: Path, text: str = TINY_SPEC, name: str = "spec.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def start_driver(*args) -> subprocess.Popen:
    """`python -m benchmarks.grid ARGS` in its own process group, its stderr kept."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.grid", *map(str, args)],
                            cwd=SUITE_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_after_first_record(driver: subprocess.Popen, out: Path,
                            timeout_s: float = 300) -> Path:
    """SIGKILLs the driver (only: its worker is orphaned) once its folder under `out`
    holds a record; returns the folder."""
    deadline = time.monotonic() + timeout_s
    results = None
    while time.monotonic() < deadline and driver.poll() is None:
        folders = list(out.glob("*")) if out.exists() else []
        results = folders[0] / RESULTS_FILE if folders else None
        if results is not None and results.exists() and results.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the driver finished before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    return results.parent
