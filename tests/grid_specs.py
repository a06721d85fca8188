"""Tiny grid specs for the grid tests: a few seconds a run on a CPU."""

from pathlib import Path

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


def write_spec(folder: Path, text: str = TINY_SPEC, name: str = "spec.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
