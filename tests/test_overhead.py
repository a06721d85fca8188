"""The overhead study's command (`python -m benchmarks.overhead`): the backends it
measures, how it refuses one it cannot, and a whole run of the JAX backends.

Each bare loop's own settings are checked in tests/test_runtime.py.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import backends.registry
from backends import BACKEND_NAMES
from benchmarks import overhead
from tests.conftest import missing_framework

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_backend_has_a_bare_loop():
    # docs/design.md: a backend comes with its bare loop; `all` measures them in this order.
    assert tuple(overhead.BARE) == BACKEND_NAMES


def _without(monkeypatch, module: str) -> None:
    """Makes `module` look uninstalled to the registry's availability check."""
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.registry.importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))


@pytest.mark.parametrize(("backend", "framework_module"),
                         [("jax", "flax"), ("keras-jax", "jax")])
def test_a_missing_jax_is_one_line_naming_the_make_target(backend, framework_module,
                                                          monkeypatch, capsys):
    _without(monkeypatch, framework_module)
    assert overhead.main(["--backend", backend]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"backend {backend!r}" in err and "make setup-jax" in err


def test_all_names_the_backends_it_skips(monkeypatch):
    _without(monkeypatch, "flax")
    choice = overhead._validate(overhead.build_parser().parse_args(["--backend", "all"]))
    assert "jax" in choice.skipped and "jax" not in choice.backends and choice.backends
    line = choice.skipped_line()
    assert line.startswith("--backend all: skipping") and "make setup-jax" in line


@pytest.mark.slow  # four processes each build and compile proposed_cnn: 1–2 min on 2 cores
@pytest.mark.skipif(missing_framework("jax") is not None or missing_framework("keras-jax")
                    is not None,
                    reason=str(missing_framework("keras-jax") or missing_framework("jax")))
def test_the_jax_backends_run_bare_and_suite_whatever_keras_backend_is_inherited():
    # The children inherit KERAS_BACKEND=tensorflow, as from a shell that ran tf: each
    # must pin its own.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.overhead", "--backend", "keras-jax,jax",
         "--repeats", "1", "--epochs", "2", "--images", "16", "--batch-size", "8",
         "--image-size", "16", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr
    for backend in ("keras-jax", "jax"):
        row = re.search(rf"^{re.escape(backend)} +([\d.]+) +([\d.]+) +([\d.]+) +1 ",
                        done.stdout, re.MULTILINE)
        assert row, done.stdout
        bare, suite, ratio = map(float, row.groups())
        assert bare > 0 and suite > 0
        assert ratio == pytest.approx(suite / bare, rel=0.01)
