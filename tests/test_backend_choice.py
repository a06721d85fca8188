"""`--backend` and `--reference-backend` for N backends: parsing, the default reference,
and the run command's door, with four registered names (the two JAX backends are not on
this branch, so the registry is given them here, one installed and one not)."""

from __future__ import annotations

import pytest

import backends.registry
from benchmarks import run
from benchmarks.backend_choice import (
    PAIR,
    expand_backends,
    reference_backend,
    registry_order,
)
from benchmarks.runner import command_line, invocation
from tests.report_fixtures import FOUR_BACKENDS

TINY = ["--epochs", "1", "--synthetic-subjects", "8", "--image-size", "32"]


def _missing_keras_jax(name: str) -> str | None:
    return "backend 'keras-jax' needs Keras, which is not installed: pip install -e " \
        "'.[jax]'" if name == "keras-jax" else None


@pytest.mark.parametrize("choice, expected", [
    ("both", PAIR),
    ("tf,jax", ("tf", "jax")),
    (" jax , torch ", ("jax", "torch")),  # the order given, spaces dropped
    ("keras-jax", ("keras-jax",)),
])
def test_names_lists_and_both_expand_in_the_order_given(choice, expected):
    found = expand_backends(choice, registered=FOUR_BACKENDS)
    assert found.backends == expected and found.skipped == ()
    assert found.skipped_line() is None


def test_all_is_every_installed_backend_and_names_the_skipped_ones():
    found = expand_backends("all", registered=FOUR_BACKENDS, missing=_missing_keras_jax)
    assert found.backends == ("tf", "torch", "jax")
    assert found.skipped == ("keras-jax",)
    line = found.skipped_line()
    assert line == ("--backend all: skipping keras-jax: backend 'keras-jax' needs Keras, "
                    "which is not installed: pip install -e '.[jax]'")


def test_all_with_nothing_installed_is_an_error():
    with pytest.raises(ValueError, match="no backend's framework is installed"):
        expand_backends("all", registered=FOUR_BACKENDS, missing=lambda name: "not here")


@pytest.mark.parametrize("choice, problem", [
    ("mxnet", "unknown backend 'mxnet'"),
    ("tf,,jax", "has an empty item"),
    ("tf,", "has an empty item"),
    ("", "has an empty item"),
    ("tf,jax,tf", "names tf more than once"),
])
def test_bad_backend_values_are_one_line_naming_what_is_valid(choice, problem):
    with pytest.raises(ValueError) as caught:
        expand_backends(choice, registered=FOUR_BACKENDS)
    message = str(caught.value)
    assert problem in message and "\n" not in message
    if "unknown" in problem:
        assert "valid backends: tf, torch, keras-jax, jax, both (tf, torch), all" in message


def test_the_reference_is_the_chosen_one_else_torch_else_the_first_registered(monkeypatch):
    monkeypatch.setattr(backends.registry, "BACKEND_NAMES", FOUR_BACKENDS)
    assert reference_backend(FOUR_BACKENDS) == "torch"
    assert reference_backend(FOUR_BACKENDS, "jax") == "jax"
    # Without torch: the first in the registry's order, whatever order it was given in.
    assert reference_backend(["jax", "keras-jax"]) == "keras-jax"
    assert registry_order(["jax", "tf", "jax", "keras-jax", "old"]) == [
        "tf", "keras-jax", "jax", "old"]
    assert reference_backend([]) is None
    with pytest.raises(ValueError, match=r"'jax' is not among the backends compared "
                                         r"\(tf, torch\)"):
        reference_backend(PAIR, "jax")


@pytest.fixture
def four_registered(monkeypatch):
    """The registry with keras-jax (its framework "installed": a module that exists) and
    jax (a framework that is not) beside tf and torch."""
    entries = dict(backends.registry._BACKENDS)
    entry = entries["torch"]
    entries["keras-jax"] = backends.registry._BackendEntry(
        entry.module, entry.class_name, "json", "jax", "Keras on JAX")
    entries["jax"] = backends.registry._BackendEntry(
        entry.module, entry.class_name, "ferbench_no_such_framework", "jax", "JAX",
        make_target="setup-jax")
    monkeypatch.setattr(backends.registry, "_BACKENDS", entries)
    monkeypatch.setattr(backends.registry, "BACKEND_NAMES", FOUR_BACKENDS)
    monkeypatch.setattr(invocation, "BACKEND_NAMES", FOUR_BACKENDS)


def test_all_runs_the_installed_backends_and_says_which_it_skipped(four_registered):
    said = []
    made = command_line.invocation_of(command_line.parse_args(["--backend", "all"]),
                                      on_line=said.append)
    assert made.backends == ("tf", "torch", "keras-jax")
    assert said == ["--backend all: skipping jax: backend 'jax' needs JAX, which is not "
                    "installed: pip install -e '.[jax]' (or run `make setup-jax`)"]
    # Four backends of one (model, seed) run back to back, reversed every other pair of
    # replicates, as two are.
    jobs = command_line.invocation_of(command_line.parse_args(
        ["--backend", "tf,torch,keras-jax", "--models", "proposed_cnn", "--seeds", "2"])).jobs()
    assert [job.backend for job in jobs] == ["tf", "torch", "keras-jax",
                                             "keras-jax", "torch", "tf"]


def test_the_default_invocation_still_runs_tf_and_torch(four_registered):
    made = command_line.invocation_of(command_line.parse_args([]))
    assert made.backends == PAIR and made.reference_backend is None


@pytest.mark.parametrize("argv, listed", [
    (["--backend", "tf,tf"], "names tf more than once"),
    (["--backend", "tf,,torch"], "has an empty item"),
    (["--backend", "mxnet"], "valid backends: tf, torch, keras-jax, jax, both (tf, torch)"),
    (["--backend", "tf,keras-jax", "--reference-backend", "torch"],
     "--reference-backend 'torch' is not among the backends compared (tf, keras-jax)"),
    # Named but not installed: the registry's line naming the extra, before any run.
    (["--backend", "tf,jax"], "backend 'jax' needs JAX, which is not installed: "
                              "pip install -e '.[jax]'"),
])
def test_bad_backends_at_the_door_are_one_line_and_exit_2(four_registered, argv, listed,
                                                          capsys, tmp_path):
    assert run.main([*argv, *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert listed in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv, listed", [
    (["--backend", "tf,tf"], "names tf more than once"),
    (["--backend", "mxnet"], "unknown backend 'mxnet'"),
])
def test_export_reads_backend_as_the_run_does(argv, listed, capsys, tmp_path):
    from benchmarks import export

    weights = tmp_path / "run.npz"
    weights.write_bytes(b"")  # refused for its --backend before the file is read
    assert export.main([str(weights), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert listed in err and "\n" not in err
    assert sorted(tmp_path.iterdir()) == [weights]


def test_one_process_holds_one_keras_backend_the_first_named():
    """Keras runs one backend per process: explain rebuilds keras-jax only without tf."""
    from backends.registry import sharing_one_process

    assert sharing_one_process(["torch", "tf", "keras-jax", "jax"]) == (
        ["torch", "tf", "jax"], ["keras-jax"])
    assert sharing_one_process(["keras-jax", "tf", "torch"]) == (["keras-jax", "torch"], ["tf"])
    assert sharing_one_process(["keras-jax", "jax"]) == (["keras-jax", "jax"], [])
