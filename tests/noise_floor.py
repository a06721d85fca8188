"""The noise floor under the cross-framework parity tests, measured on this host.

    .venv/bin/python -m tests.noise_floor [--cases NAME,…] [--perturbations LABEL,…]
        [--json FILE]

A parity test trains both frameworks from the same start on the same batches and compares
a figure (a loss, the weights) within a tolerance. Float rounding differs between kernels,
so the figure moves with the CPU's instruction set and the thread count even within *one*
framework, and a tolerance measured on one host is a guess on the next (an Intel Xeon with
AMX parted the frameworks' validation losses by 1.7e-3 where an AMD EPYC gave 3e-4).

So every case below is run in a fresh process under each perturbation that stands in for
another CPU (`PERTURBATIONS`: one thread instead of two, oneDNN and ATen held to AVX2 or
AVX-512 without its extensions, TensorFlow's oneDNN off) and once more unperturbed, and
the table gives, per case:

* the *same-framework* gap under each perturbation (the larger of the two frameworks';
  the JSON rows also give each side's), in the unit of the test's own assertion;
* the *cross-framework* gap unperturbed and the largest under any perturbation (for the
  compile test, which compares one framework compiled and eager, that pair's gap);
* the test's tolerance and its margin over the larger of the two.

The rule (docs/design.md, "Tolerances from a noise floor"): a tolerance is at least 3×
the larger of the floor and the cross-framework gap. The figures go into each test's
docstring and docs/design.md. Run it alone: it is CPU-bound, about 10 minutes for the
tf/torch cases; the JAX backends' per-model cases (`_model_cases`: 24 of them, XLA
compiling every model's training step twice in each process) took 13 to 37 minutes a
process on 2 cores shared with other jobs. `--perturbations` runs some of them only: on
a host whose own ISA is AVX2 the ISA caps are no perturbation (torch's 20-step losses of
every model were bit-identical under oneDNN AVX2 and ATen AVX2 there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

from backends.catalog import DEFAULT_INPUT_SHAPE as DEFAULT_SHAPE
from tests.conftest import THREADS_VARIABLE, apply_test_threads, make_backend, threads_for_tests
from tests.remote_backend import run_in_backend_process

FRAMEWORKS = ("tf", "torch")
JAX_BACKENDS = ("keras-jax", "jax")
# Environment of each perturbation (THREADS_VARIABLE: tests/conftest.py).
PERTURBATIONS = {
    "unperturbed again": {},
    "1 thread": {THREADS_VARIABLE: "1"},
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "TF oneDNN off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "ATen AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    # XLA's CPU code generation held to AVX2 (keras-jax; XLA reads it when it starts).
    "XLA AVX2": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
}
# What the JAX backends' cases leave out: switches of TensorFlow alone, and oneDNN's
# AVX-512 subset, which moves torch's side as oneDNN AVX2 does (measured for the tf cases).
KERAS_JAX_LEFT_OUT = {
    "TF oneDNN off": "TensorFlow's switch: neither XLA nor torch reads it",
    "oneDNN AVX512_CORE": "torch's oneDNN side as under oneDNN AVX2",
}
SAFETY_FACTOR = 3

Arrays = dict[str, np.ndarray]


def relative_gap(a: Arrays, b: Arrays) -> float:
    """max |a − b| / |b|: `pytest.approx(b, rel=tolerance)`'s measure."""
    return max(float(np.max(np.abs(a[k] - b[k]) / np.abs(b[k]))) for k in b)


def dense_gap(a: Arrays, b: Arrays) -> float:
    """max |a − b| / (|b| + floor): `assert_allclose(a, b, rtol, atol=rtol · floor)`'s."""
    from tests.test_optimizer import DENSE_WEIGHT_FLOOR

    return max(float(np.max(np.abs(a[k] - b[k]) / (np.abs(b[k]) + DENSE_WEIGHT_FLOOR)))
               for k in b)


def absolute_gap(a: Arrays, b: Arrays) -> float:
    """max |a − b|: test_models' logit measure."""
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in b)


def cosine_gap(a: Arrays, b: Arrays) -> float:
    """1 − the smallest per-tensor cosine between two sets of weight updates."""
    from tests.test_fairness import update_cosines

    return 1.0 - min(update_cosines(a, b).values())


@dataclass(frozen=True)
class Case:
    """One compared figure of one parity test.

    Attributes:
        name: the row's name.
        test: the test (module::function) whose assertion this is.
        steps: what was trained, in words.
        compute: runs both frameworks; framework → the compared arrays.
        gap: the assertion's measure of how far two results are apart.
        tolerance: what the test allows of `gap`; a callable, read when the table is made,
            so that the figure comes from the test module itself.
        sides: the two results the test compares (the keys of `compute`'s answer): the two
            frameworks, or one framework compiled and eager.
        cannot_run: perturbation → why the case cannot run under it (left out there).
    """

    name: str
    test: str
    steps: str
    compute: Callable[[], dict[str, Arrays]]
    gap: Callable[[Arrays, Arrays], float]
    tolerance: Callable[[], float]
    sides: tuple[str, str] = FRAMEWORKS
    cannot_run: dict[str, str] = field(default_factory=dict)


@cache
def _selection(config_name: str) -> dict[str, Arrays]:
    from tests.test_selection import SELECTION_CONFIG, fit_on_shifted_validation

    config = {"sgd": SELECTION_CONFIG,
              "adam": replace(SELECTION_CONFIG, optimizer="adam", learning_rate=1e-3,
                              momentum=0.0)}[config_name]
    return {fw: {"val_loss": np.array([log.val_loss for log in
                                       fit_on_shifted_validation(fw, config)[1]])}
            for fw in FRAMEWORKS}


@cache
def _trajectory(config_name: str, sides: tuple[str, str] = FRAMEWORKS
                ) -> dict[str, tuple[Arrays, Arrays]]:
    from tests.test_fairness import TRAJECTORY_CONFIGS, _train, trajectory_data, weight_updates

    data = trajectory_data()
    result = {}
    for fw in sides:
        backend, history = _train(fw, data, TRAJECTORY_CONFIGS[config_name])
        result[fw] = ({"train_loss": np.array([log.train_loss for log in history])},
                      weight_updates(backend, data))
    return result


@cache
def _bfloat16(model: str, sides: tuple[str, str] = FRAMEWORKS) -> dict[str, np.ndarray]:
    from tests.conftest import step_losses

    return {fw: step_losses(fw, model, "bfloat16", seed=0)[0] for fw in sides}


def _logits(model: str, compared: str) -> dict[str, Arrays]:
    """test_models' logits after porting torch's test weights to `compared`."""
    from tests.test_models import NUM_CLASSES, _reference

    reference, weights, x = _reference(model, DEFAULT_SHAPE)
    backends = {"torch": reference, compared: make_backend(compared)}
    backends[compared].build(model, DEFAULT_SHAPE, NUM_CLASSES, dropout=0.0)
    result = {}
    for name, backend in backends.items():
        backend.set_weights(weights)
        result[name] = {mode: backend.logits(x, training=mode == "train")
                        for mode in ("eval", "train")}
    return result


@cache
def _model_steps(model: str, side: str) -> Arrays:
    """test_models' 20 Adam steps of `model` in backend `side` (torch once per model)."""
    from tests.conftest import model_step_losses

    return {"loss": model_step_losses(side, model)}


def _dense_other(optimizer: str, compared: str) -> dict[str, Arrays]:
    """test_optimizer's 20 dense steps, torch and the Keras backend `compared`."""
    from tests.in_backend_process import dense_config, fit_keras_dense
    from tests.test_optimizer import (
        PARITY_CONFIGS,
        STEPS,
        _dense_data,
        dense_start,
        torch_dense_for_20_steps,
    )

    weights, _ = run_in_backend_process(
        compared, fit_keras_dense, compared, dense_start(5),
        dense_config(PARITY_CONFIGS[optimizer], STEPS), *_dense_data(),
        threads=threads_for_tests())
    return {"torch": torch_dense_for_20_steps(optimizer)[0], compared: weights}


def _dense(optimizer: str) -> dict[str, Arrays]:
    from tests.test_optimizer import train_dense_for_20_steps

    _, dense, _, linear, _, _ = train_dense_for_20_steps(optimizer)
    return {"tf": {"weight": dense.kernel.numpy().T, "bias": dense.bias.numpy()},
            "torch": {"weight": linear.weight.detach().numpy(),
                      "bias": linear.bias.detach().numpy()}}


def _compiled(framework: str) -> dict[str, Arrays]:
    from tests.test_compile import fit_four_epochs

    return {side: {"train_loss": np.array([log.train_loss for log in
                                           fit_four_epochs(framework, side == "compiled")[1]])}
            for side in ("compiled", "eager")}


def _freeze() -> dict[str, Arrays]:
    from tests.test_optimizer import freeze_then_unfreeze

    _, _, _, tf_after, torch_after = freeze_then_unfreeze()
    return {fw: {str(i): v for i, v in enumerate(after)}
            for fw, after in (("tf", tf_after), ("torch", torch_after))}


def _tolerance(module: str, name: str, transform: Callable[[float], float] = float):
    def read() -> float:
        return transform(getattr(__import__(f"tests.{module}", fromlist=[name]), name))
    return read


def _cases() -> list[Case]:
    selection = "test_selection.py::test_both_frameworks_keep_the_same_epoch_from_the_same_start"
    trajectory = "test_fairness.py::test_both_frameworks_follow_the_same_trajectory"
    bfloat16 = "test_precision.py::test_bfloat16_trains_alike_in_both_frameworks"
    dense = ("test_optimizer.py::test_both_backends_train_alike_for_20_steps_at_a_rate_"
             "changing_every_step")
    cases = [Case(f"selection/{opt}", selection, f"15 {opt} steps, proposed_cnn",
                  lambda opt=opt: _selection(opt), relative_gap,
                  _tolerance("test_selection", "VAL_LOSS_TOLERANCE"))
             for opt in ("adam", "sgd")]
    for name, steps in (("adam", "6 Adam steps"), ("sgd-smoothing-classweights", "3 SGD steps"),
                        ("adamw-warmup", "6 AdamW steps")):
        cases += [
            Case(f"trajectory/{name}/train_loss", trajectory, steps + ", proposed_cnn",
                 lambda name=name: {fw: v[0] for fw, v in _trajectory(name).items()},
                 relative_gap, _tolerance("test_fairness", "TRAIN_LOSS_TOLERANCE",
                                           lambda by_name, name=name: by_name[name])),
            Case(f"trajectory/{name}/1-cosine", trajectory, steps + ", proposed_cnn",
                 lambda name=name: {fw: v[1] for fw, v in _trajectory(name).items()},
                 cosine_gap, _tolerance("test_fairness", "UPDATE_COSINE_MIN", lambda c: 1 - c)),
        ]
    no_bfloat16 = {"oneDNN AVX2": "TensorFlow has no bfloat16 convolution there"}
    for model in ("proposed_cnn", "sanet"):
        cases += [
            Case(f"bfloat16/{model}/first-step", bfloat16, "1 Adam step (forward only)",
                 lambda model=model: {fw: {"loss": v[:1]} for fw, v in _bfloat16(model).items()},
                 relative_gap, _tolerance("test_precision", "BF16_FIRST_STEP_TOLERANCE"),
                 cannot_run=no_bfloat16),
            Case(f"bfloat16/{model}/8-steps", bfloat16, "8 Adam steps",
                 lambda model=model: {fw: {"loss": v} for fw, v in _bfloat16(model).items()},
                 relative_gap, _tolerance("test_precision", "BF16_STEPS_TOLERANCE"),
                 cannot_run=no_bfloat16),
        ]
    compile_test = "test_compile.py::test_compiled_training_compiles_in_the_first_epoch_only"
    cases += [Case(f"compile/{fw}", compile_test, "4 epochs of 4 Adam steps, proposed_cnn",
                   lambda fw=fw: _compiled(fw), relative_gap,
                   _tolerance("test_compile", "COMPILED_TRAIN_LOSS_TOLERANCE"),
                   sides=("compiled", "eager"))
              for fw in FRAMEWORKS]
    from tests.test_optimizer import PARITY_CONFIGS

    cases += [Case(f"dense-20-steps/{name}", dense, "20 steps, one dense layer",
                   lambda name=name: _dense(name), dense_gap,
                   _tolerance("test_optimizer", "DENSE_TOLERANCE"))
              for name in PARITY_CONFIGS]
    cases.append(Case("freeze-unfreeze", "test_optimizer.py::test_both_backends_freeze_"
                      "then_unfreeze_alike_for_20_steps", "20 Adam steps, two dense layers",
                      _freeze, dense_gap, _tolerance("test_optimizer", "DENSE_TOLERANCE")))
    return cases + _keras_jax_cases() + _model_cases()


def _model_cases() -> list[Case]:
    """Every model in each JAX backend against torch (docs/design.md's per-model table):
    native JAX's logits after porting (keras-jax's are `_keras_jax_cases`'), and both
    backends' 20 Adam steps (`test_every_model_trains_like_torch_for_20_steps`)."""
    from backends.catalog import MODEL_NAMES
    from tests.conftest import MODEL_STEPS, MODEL_STEPS_BATCH, MODEL_STEPS_SIDE

    steps = f"{MODEL_STEPS} Adam steps, {MODEL_STEPS_SIDE}×{MODEL_STEPS_SIDE}, batch " \
            f"{MODEL_STEPS_BATCH}"
    cases = [Case(f"logits/{model}/jax", "test_models.py::test_logits_match_after_porting",
                  "one forward pass, eval and train mode",
                  lambda model=model: _logits(model, "jax"), absolute_gap,
                  _tolerance("test_models", "TOLERANCE"), sides=("jax", "torch"),
                  cannot_run=KERAS_JAX_LEFT_OUT)
             for model in MODEL_NAMES]
    test = "test_models.py::test_every_model_trains_like_torch_for_20_steps"
    cases += [Case(f"model-steps/{model}/{other}", test, steps,
                   lambda model=model, other=other: {side: _model_steps(model, side)
                                                     for side in (other, "torch")},
                   relative_gap, _tolerance("test_models", "MODEL_STEPS_TOLERANCE",
                                            lambda by_model, model=model: by_model[model]),
                   sides=(other, "torch"), cannot_run=KERAS_JAX_LEFT_OUT)
              for model in MODEL_NAMES for other in JAX_BACKENDS]
    return cases


def _keras_jax_cases() -> list[Case]:
    """keras-jax against torch: the same tests' figures, with `sides` (keras-jax, torch)."""
    from backends.catalog import MODEL_NAMES
    from tests.test_optimizer import PARITY_CONFIGS

    sides, other = ("keras-jax", "torch"), "keras-jax"
    trajectory = "test_fairness.py::test_both_frameworks_follow_the_same_trajectory"
    cases = [Case(f"logits/{model}/{other}", "test_models.py::test_logits_match_after_porting",
                  "one forward pass, eval and train mode",
                  lambda model=model: _logits(model, other), absolute_gap,
                  _tolerance("test_models", "TOLERANCE"), sides=sides,
                  cannot_run=KERAS_JAX_LEFT_OUT)
             for model in MODEL_NAMES]
    for name, steps in (("adam", "6 Adam steps"), ("sgd-smoothing-classweights", "3 SGD steps"),
                        ("adamw-warmup", "6 AdamW steps")):
        cases += [
            Case(f"trajectory/{name}/train_loss/{other}", trajectory, steps + ", proposed_cnn",
                 lambda name=name: {fw: v[0] for fw, v in _trajectory(name, sides).items()},
                 relative_gap, _tolerance("test_fairness", "TRAIN_LOSS_TOLERANCE",
                                           lambda by_name, name=name: by_name[name]),
                 sides=sides, cannot_run=KERAS_JAX_LEFT_OUT),
            Case(f"trajectory/{name}/1-cosine/{other}", trajectory, steps + ", proposed_cnn",
                 lambda name=name: {fw: v[1] for fw, v in _trajectory(name, sides).items()},
                 cosine_gap, _tolerance("test_fairness", "UPDATE_COSINE_MIN", lambda c: 1 - c),
                 sides=sides, cannot_run=KERAS_JAX_LEFT_OUT),
        ]
    bfloat16 = "test_precision.py::test_bfloat16_trains_alike_in_keras_on_jax"
    cases += [
        Case(f"bfloat16/proposed_cnn/first-step/{other}", bfloat16, "1 Adam step (forward only)",
             lambda: {fw: {"loss": v[:1]} for fw, v in _bfloat16("proposed_cnn", sides).items()},
             relative_gap, _tolerance("test_precision", "BF16_FIRST_STEP_TOLERANCE"),
             sides=sides, cannot_run=KERAS_JAX_LEFT_OUT),
        Case(f"bfloat16/proposed_cnn/8-steps/{other}", bfloat16, "8 Adam steps",
             lambda: {fw: {"loss": v} for fw, v in _bfloat16("proposed_cnn", sides).items()},
             relative_gap, _tolerance("test_precision", "BF16_STEPS_TOLERANCE_KERAS_JAX"),
             sides=sides, cannot_run=KERAS_JAX_LEFT_OUT),
    ]
    dense = "test_optimizer.py::test_other_keras_backends_train_alike_for_20_steps"
    cases += [Case(f"dense-20-steps/{name}/{other}", dense, "20 steps, one dense layer",
                   lambda name=name: _dense_other(name, other), dense_gap,
                   _tolerance("test_optimizer", "DENSE_TOLERANCE"), sides=sides,
                   cannot_run=KERAS_JAX_LEFT_OUT)
              for name in PARITY_CONFIGS]
    return cases


def _work(names: list[str], out: Path) -> None:
    """In a fresh process: computes the named cases, saves every array to `out` (npz)."""
    apply_test_threads()
    arrays = {}
    for case in _cases():
        if case.name in names:
            for fw, values in case.compute().items():
                arrays.update({f"{case.name}|{fw}|{key}": value for key, value in values.items()})
    np.savez(out, **arrays)


def _load(path: Path) -> dict[str, dict[str, Arrays]]:
    result: dict[str, dict[str, Arrays]] = {}
    with np.load(path) as saved:
        for key in saved.files:
            case, fw, name = key.split("|")
            result.setdefault(case, {}).setdefault(fw, {})[name] = saved[key]
    return result


def _run_worker(names: list[str], env: dict[str, str], out: Path) -> dict[str, dict[str, Arrays]]:
    print(f"--- {' '.join(f'{k}={v}' for k, v in env.items()) or 'unperturbed'}", flush=True)
    if not names:
        return {}
    subprocess.run([sys.executable, "-m", "tests.noise_floor", "--work", ",".join(names),
                    "--npz", str(out)], env={**os.environ, **env}, check=True)
    return _load(out)


def measure(names: list[str], labels: list[str] | None = None) -> list[dict]:
    """Runs the named cases unperturbed and under every perturbation; one row per case.

    A case's figure under a perturbation it cannot run under (`Case.cannot_run`), or
    one left out of `labels`, is None.

    Args:
        names: the cases.
        labels: the perturbations (PERTURBATIONS' labels) to run; None: all of them.
    """
    cases = [case for case in _cases() if case.name in names]
    chosen = {label: env for label, env in PERTURBATIONS.items()
              if labels is None or label in labels}
    with tempfile.TemporaryDirectory() as folder:
        base = _run_worker(names, {}, Path(folder) / "base.npz")
        perturbed = {label: _run_worker([case.name for case in cases
                                          if label not in case.cannot_run],
                                         env, Path(folder) / f"{i}.npz")
                     for i, (label, env) in enumerate(chosen.items())}
    rows = []
    for case in cases:
        results = {label: result[case.name] for label, result in perturbed.items()
                   if case.name in result}
        by_side = {label: {side: case.gap(results[label][side], base[case.name][side])
                           for side in case.sides} for label in results}
        same = {label: max(by_side[label].values()) if label in by_side else None
                for label in PERTURBATIONS}
        cross = [case.gap(result[case.sides[0]], result[case.sides[1]])
                 for result in (base[case.name], *results.values())]
        floor = max(value for value in same.values() if value is not None)
        tolerance = case.tolerance()
        rows.append({"case": case.name, "test": case.test, "steps": case.steps,
                     "sides": list(case.sides), "same_framework": same,
                     "same_framework_by_side": by_side,
                     "cannot_run": case.cannot_run, "floor": floor, "cross": cross[0],
                     "cross_max": max(cross), "tolerance": tolerance,
                     "margin": tolerance / max(floor, max(cross), 1e-300)})
    return rows


def render(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    labels = list(PERTURBATIONS)
    lines = ["| case | steps | " + " | ".join(labels) + " | floor | compared pair "
             "(unperturbed; largest) | tolerance | margin |",
             "|" + "---|" * (len(labels) + 6)]
    for row in rows:
        lines.append(f"| {row['case']} | {row['steps']} | "
                     + " | ".join("n/a" if row["same_framework"][label] is None
                                  else f"{row['same_framework'][label]:.1e}" for label in labels)
                     + f" | {row['floor']:.1e} | {row['cross']:.1e}; {row['cross_max']:.1e} | "
                     f"{row['tolerance']:.1e} | {row['margin']:.1f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.noise_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--perturbations",
                        help="comma-separated perturbations (default: all); one that cannot "
                             "move a figure on this host (an ISA cap at or above its own ISA) "
                             "can be left out: its column reads n/a")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.work:
        _work(args.work.split(","), args.npz)
        return 0
    labels = args.perturbations.split(",") if args.perturbations else None
    unknown = sorted(set(labels or ()) - set(PERTURBATIONS))
    if unknown:
        print(f"error: unknown perturbation(s) {', '.join(unknown)}; known: "
              f"{', '.join(PERTURBATIONS)}", file=sys.stderr)
        return 2
    known = [case.name for case in _cases()]
    names = args.cases.split(",") if args.cases else known
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f"error: unknown case(s) {', '.join(unknown)}; known: {'; '.join(known)}",
              file=sys.stderr)
        return 2
    rows = measure(names, labels)
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    short = [row["case"] for row in rows if row["margin"] < SAFETY_FACTOR]
    if short:
        print(f"\nbelow the {SAFETY_FACTOR}× margin: {', '.join(short)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
