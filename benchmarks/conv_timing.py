"""Each convolution of a model, forward and both backwards, timed in JAX (XLA) and torch.

    python -m benchmarks.conv_timing [--model resnet50] [--side 48] [--batch 32]
                                     [--repeats 5] [--xla-flags "--xla_..."]

Why XLA's CPU code trains some models slowly (docs/design.md, "Why XLA trains resnet50
slowly on a CPU"): this study takes every convolution the model's native JAX forward
pass makes (its jaxpr, at the given input side and batch), groups identical ones, and
times each group's three passes, forward, backward to the input and backward to the
kernel, in JAX (one jitted function per pass) and in torch (`F.conv2d` and
`aten.convolution_backward`, channels-last), each framework in a fresh process with the
suite's runtime settings (`configure_runtime`, every core). For each of XLA's passes it
says how XLA lowered the convolution, read from the optimized HLO: "ynn" (a YNNPACK
fusion), "eigen" (Eigen's convolution) or "loop" (XLA's generic elemental loop nest, left
where algsimp swapped the operands into a form neither library takes). Times are the
fastest of `--repeats` calls after two warm-up calls, in ms; the model's total per pass
weighs each group by its count. A convolution that reads the images has no backward to
the input (training takes no gradient of them), here as in a training step.
`--xla-flags` adds flags to XLA_FLAGS in the JAX process only, to compare XLA's switches
(`--xla-flags=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution` times XLA's
own default, convolutions on YNNPACK, where the suite puts them on Eigen:
backends/xla_flags.py).
Run it alone on the machine: other load changes every figure, torch's OpenMP threads
most of all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.runner.env import SUITE_ROOT

PASSES = ("forward", "backward_input", "backward_kernel")
NUM_CLASSES = 7
# What a child prints its result after, on one line of JSON.
_PROTOCOL = "CONV_TIMING_RESULT"
_WARM_UP_CALLS = 2
# XLA's dimension labels of a convolution it keeps in the suite's NHWC/HWIO layout.
_CANONICAL_LABELS = "dim_labels=b01f_01io->b01f"


@dataclass(frozen=True)
class ConvCase:
    """One distinct convolution of the model, in JAX's NHWC/HWIO layout.

    Attributes:
        input_nhwc: the input's shape (batch, height, width, channels).
        kernel_hwio: the kernel's shape (height, width, input channels per group,
            output channels).
        strides: (vertical, horizontal) strides.
        padding: symmetric zero padding (vertical, horizontal).
        dilation: the kernel's (vertical, horizontal) dilation.
        groups: feature groups.
        image_input: whether its input is the model's images, of which training takes no
            gradient: its backward to the input is neither timed nor counted.
        count: how many times the model's forward pass makes this convolution.
    """

    input_nhwc: tuple[int, int, int, int]
    kernel_hwio: tuple[int, int, int, int]
    strides: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    image_input: bool = False
    count: int = 1

    @property
    def trained_passes(self) -> tuple[str, ...]:
        """The PASSES a training step makes of this convolution."""
        return tuple(name for name in PASSES
                     if not (self.image_input and name == "backward_input"))

    @property
    def output_nhwc(self) -> tuple[int, int, int, int]:
        """The output's shape (batch, height, width, channels)."""
        n, h, w, _ = self.input_nhwc
        sizes = [(size + 2 * pad - dil * (k - 1) - 1) // stride + 1
                 for size, pad, dil, k, stride in zip(
                     (h, w), self.padding, self.dilation, self.kernel_hwio[:2], self.strides,
                     strict=True)]
        return (n, *sizes, self.kernel_hwio[3])

    @property
    def forward_gflop(self) -> float:
        """Multiply-adds × 2 of one forward call, in GFLOP (each backward does as many)."""
        n, ho, wo, cout = self.output_nhwc
        kh, kw, cin_per_group, _ = self.kernel_hwio
        return 2 * n * ho * wo * cout * kh * kw * cin_per_group / 1e9

    @property
    def label(self) -> str:
        """e.g. "3×3/2 256→256 @6×6" (kernel/stride, channels, input height × width)."""
        kh, kw, cin_per_group, cout = self.kernel_hwio
        stride = "" if self.strides == (1, 1) else f"/{self.strides[0]}"
        groups = "" if self.groups == 1 else f" g{self.groups}"
        return (f"{kh}×{kw}{stride} {cin_per_group * self.groups}→{cout}{groups} "
                f"@{self.input_nhwc[1]}×{self.input_nhwc[2]}")


def model_convolutions(model_name: str, side: int, batch: int) -> list[ConvCase]:
    """The distinct convolutions of the model's native JAX forward pass, in order.

    Args:
        model_name: a catalog model name.
        side: the input images' side in pixels (grayscale).
        batch: images per call.

    Returns:
        One ConvCase per distinct convolution, with how often the forward pass makes it.

    Raises:
        ValueError: a convolution outside NHWC/HWIO layout, or with asymmetric padding,
            input dilation or batch groups (torch's conv2d has no counterpart).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from backends.jax.models import create_model

    model = create_model(model_name, (side, side, 1), NUM_CLASSES,
                         framework_args={"rngs": nnx.Rngs(0), "dtype": None})
    model.eval()
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda state, x: nnx.merge(graphdef, state)(x))(
        state, jnp.zeros((batch, side, side, 1), jnp.float32))
    cases: dict[ConvCase, int] = {}
    for equation, reads_images in _equations(jaxpr.jaxpr, [jaxpr.jaxpr.invars[-1]]):
        if equation.primitive.name == "conv_general_dilated":
            case = _conv_case(equation, reads_images)
            cases[case] = cases.get(case, 0) + 1
    return [ConvCase(**{**asdict(case), "count": count}) for case, count in cases.items()]


def _equations(jaxpr: Any, image_vars: list[Any]):
    """Every equation of a jaxpr, those of its sub-jaxprs (pjit, custom_jvp) included, with
    whether its first operand is one of `image_vars` (the images, under any name)."""
    def is_image(var: Any) -> bool:
        # By identity: a literal operand is no variable and may not hash.
        return any(var is image for image in image_vars)

    for equation in jaxpr.eqns:
        yield equation, bool(equation.invars) and is_image(equation.invars[0])
        for value in equation.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                yield from _equations(inner, [inner_var for outer, inner_var in zip(
                    equation.invars, inner.invars, strict=False) if is_image(outer)])


def _conv_case(equation: Any, reads_images: bool) -> ConvCase:
    """The ConvCase of one `conv_general_dilated` equation (count 1); ValueError where
    torch's conv2d has no counterpart (`model_convolutions`)."""
    params = equation.params
    numbers = params["dimension_numbers"]
    nhwc, hwio = (0, 3, 1, 2), (3, 2, 0, 1)
    if (tuple(numbers.lhs_spec), tuple(numbers.rhs_spec), tuple(numbers.out_spec)) != (
            nhwc, hwio, nhwc):
        raise ValueError(f"convolution layout must be NHWC/HWIO/NHWC. Received: {numbers}")
    if any(low != high for low, high in params["padding"]):
        raise ValueError(f"convolution padding must be symmetric (torch's conv2d). "
                         f"Received: padding={params['padding']}")
    if tuple(params["lhs_dilation"]) != (1, 1) or params["batch_group_count"] != 1:
        raise ValueError("convolution input dilation and batch groups must be 1. Received: "
                         f"lhs_dilation={params['lhs_dilation']}, "
                         f"batch_group_count={params['batch_group_count']}")
    lhs, rhs = (tuple(int(d) for d in var.aval.shape) for var in equation.invars)
    return ConvCase(input_nhwc=lhs, kernel_hwio=rhs,
                    strides=tuple(params["window_strides"]),
                    padding=tuple(low for low, _ in params["padding"]),
                    dilation=tuple(params["rhs_dilation"]),
                    groups=params["feature_group_count"], image_input=reads_images)


def _fastest_ms(call: Callable[[], Any], wait: Callable[[Any], Any], repeats: int) -> float:
    """The fastest of `repeats` calls after the warm-up ones, each awaited, in ms."""
    for _ in range(_WARM_UP_CALLS):
        wait(call())
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        wait(call())
        fastest = min(fastest, time.perf_counter() - start)
    return fastest * 1e3


def xla_lowering(optimized_hlo: str) -> str:
    """How XLA lowered a module's convolutions: "ynn", "eigen" or "loop" (the worst).

    Args:
        optimized_hlo: the compiled module's text (`Compiled.as_text()`).

    Returns:
        "loop" if any convolution outside a YNNPACK fusion is not in the canonical
        NHWC/HWIO form (XLA's elemental loop nest), else "eigen" if any convolution is
        outside a YNNPACK fusion, else "ynn".
    """
    ynn_computations = set()
    for line in optimized_hlo.splitlines():
        if "__ynn_fusion" in line and "calls=%" in line:
            ynn_computations.add(line.split("calls=%", 1)[1].split(",", 1)[0])
    lowering, computation = "ynn", None
    for line in optimized_hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            computation = line.removeprefix("ENTRY ").lstrip("%").split(" ", 1)[0]
        if " convolution(" not in line or computation in ynn_computations:
            continue
        if _CANONICAL_LABELS not in line or "rhs_reversal" in line:
            return "loop"
        lowering = "eigen"
    return lowering


def time_jax(cases: list[ConvCase], repeats: int) -> list[dict[str, Any]]:
    """Times each case's training passes in JAX, jitted (XLA configured by the caller).

    Args:
        cases: the convolutions.
        repeats: timed calls per pass.

    Returns:
        Per case: pass → {"ms": fastest call, "lowering": `xla_lowering`'s answer}.
    """
    import jax
    from jax import lax

    results = []
    for case in cases:
        def conv(x, kernel, case=case):
            return lax.conv_general_dilated(
                x, kernel, case.strides, [(p, p) for p in case.padding],
                rhs_dilation=case.dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=case.groups)

        keys = jax.random.split(jax.random.key(0), 3)
        x, kernel, grad = (jax.random.normal(key, shape) for key, shape in zip(
            keys, (case.input_nhwc, case.kernel_hwio, case.output_nhwc), strict=True))
        functions = {
            "forward": (conv, (x, kernel)),
            "backward_input": (lambda x, kernel, grad, conv=conv: jax.vjp(
                lambda x: conv(x, kernel), x)[1](grad)[0], (x, kernel, grad)),
            "backward_kernel": (lambda x, kernel, grad, conv=conv: jax.vjp(
                lambda kernel: conv(x, kernel), kernel)[1](grad)[0], (x, kernel, grad)),
        }
        row = {}
        for name in case.trained_passes:
            function, arguments = functions[name]
            compiled = jax.jit(function).lower(*arguments).compile()
            row[name] = {
                "ms": _fastest_ms(lambda compiled=compiled, arguments=arguments:
                                  compiled(*arguments), jax.block_until_ready, repeats),
                "lowering": xla_lowering(compiled.as_text()),
            }
        results.append(row)
    return results


def time_torch(cases: list[ConvCase], repeats: int) -> list[dict[str, Any]]:
    """Times each case's training passes in torch, channels-last, with the suite's settings.

    Args:
        cases: the convolutions.
        repeats: timed calls per pass.

    Returns:
        Per case: pass → {"ms": fastest call}.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812  (torch's own name for it)

    from backends.torch.runtime import configure_runtime

    settings = configure_runtime(threads=None, deterministic=False)
    generator = torch.Generator().manual_seed(0)

    def tensor(nhwc_or_hwio: tuple[int, ...], kernel: bool = False) -> torch.Tensor:
        # NCHW (or OIHW) logical shape, channels-last in memory, as the backend trains.
        a, b, c, d = nhwc_or_hwio
        shape = (d, c, a, b) if kernel else (a, d, b, c)
        return torch.randn(shape, generator=generator).contiguous(
            memory_format=settings.memory_format)

    results = []
    with torch.inference_mode():
        for case in cases:
            x, kernel, grad = (tensor(case.input_nhwc), tensor(case.kernel_hwio, kernel=True),
                               tensor(case.output_nhwc))
            shape_args = (list(case.strides), list(case.padding), list(case.dilation), False,
                          [0, 0], case.groups)

            def backward(mask: list[bool], x=x, kernel=kernel, grad=grad,
                         shape_args=shape_args):
                return torch.ops.aten.convolution_backward(grad, x, kernel, None,
                                                           *shape_args, mask)

            calls = {
                "forward": lambda x=x, kernel=kernel, case=case: F.conv2d(
                    x, kernel, None, case.strides, case.padding, case.dilation, case.groups),
                "backward_input": lambda backward=backward: backward([True, False, False]),
                "backward_kernel": lambda backward=backward: backward([False, True, False]),
            }
            results.append({name: {"ms": _fastest_ms(calls[name], lambda _: None, repeats)}
                            for name in case.trained_passes})
    return results


def _run_child(framework: str, cases: list[ConvCase] | None, args: argparse.Namespace,
               xla_flags: str) -> dict[str, Any]:
    """Runs one framework's child in a fresh interpreter; returns its JSON result."""
    command = [sys.executable, "-m", "benchmarks.conv_timing", "--child", framework,
               "--model", args.model, "--side", str(args.side), "--batch", str(args.batch),
               "--repeats", str(args.repeats)]
    env = dict(os.environ)
    if framework == "jax" and xla_flags:
        env["XLA_FLAGS"] = " ".join(filter(None, (env.get("XLA_FLAGS", ""), xla_flags)))
    stdin = json.dumps([asdict(case) for case in cases]) if cases is not None else ""
    done = subprocess.run(command, cwd=SUITE_ROOT, env=env, input=stdin, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_PROTOCOL)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {framework} child exited with status {done.returncode}:\n"
                           f"{done.stderr[-2000:]}")
    return json.loads(lines[-1].split(maxsplit=1)[1])


def table(cases: list[ConvCase], jax_rows: list[dict[str, Any]],
          torch_rows: list[dict[str, Any]]) -> str:
    """One row per case and pass a training step makes, then the model's totals per pass.

    Args:
        cases: the convolutions.
        jax_rows: `time_jax`'s results, case by case.
        torch_rows: `time_torch`'s results, case by case.

    Returns:
        The table as text: ms per call in each framework, their ratio, XLA's lowering.
    """
    header = (f"{'convolution':<26}{'count':>6}{'GFLOP':>7}  {'pass':<16}{'jax ms':>9}"
              f"{'torch ms':>10}{'jax/torch':>10}  XLA")
    lines = [header, "-" * len(header)]
    totals = {name: [0.0, 0.0] for name in PASSES}
    for case, jax_row, torch_row in zip(cases, jax_rows, torch_rows, strict=True):
        for index, name in enumerate(case.trained_passes):
            jax_ms, torch_ms = jax_row[name]["ms"], torch_row[name]["ms"]
            totals[name][0] += case.count * jax_ms
            totals[name][1] += case.count * torch_ms
            first = (f"{case.label:<26}{case.count:>6}{case.forward_gflop:>7.3f}" if index == 0
                     else " " * 39)
            lines.append(f"{first}  {name:<16}{jax_ms:>9.2f}{torch_ms:>10.2f}"
                         f"{jax_ms / torch_ms:>10.1f}  {jax_row[name]['lowering']}")
    lines.append("-" * len(header))
    for name, (jax_ms, torch_ms) in totals.items():
        lines.append(f"{'model total (× count)':<39}  {name:<16}{jax_ms:>9.1f}{torch_ms:>10.1f}"
                     f"{jax_ms / torch_ms:>10.1f}")
    jax_all, torch_all = (sum(t[i] for t in totals.values()) for i in (0, 1))
    lines.append(f"{'':<39}  {'all passes':<16}{jax_all:>9.1f}{torch_all:>10.1f}"
                 f"{jax_all / torch_all:>10.1f}")
    return "\n".join(lines)


def _child(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    if framework == "jax":
        from backends.jax.runtime import configure_runtime

        # Before JAX's first op (building the model), which fixes XLA's flags.
        configure_runtime(threads=None, deterministic=False)
        cases = model_convolutions(args.model, args.side, args.batch)
        return {"cases": [asdict(case) for case in cases],
                "timings": time_jax(cases, args.repeats)}
    cases = [_case_from_json(case) for case in json.loads(sys.stdin.read())]
    return {"timings": time_torch(cases, args.repeats)}


def _case_from_json(fields: dict[str, Any]) -> ConvCase:
    # JSON turns the shape tuples into lists.
    return ConvCase(**{key: tuple(value) if isinstance(value, list) else value
                       for key, value in fields.items()})


def main(argv: list[str] | None = None) -> int:
    from backends import MissingFrameworkError, check_available
    from backends.catalog import MODEL_NAMES, model_cost

    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_timing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50",
                        help=f"catalog model, one of {', '.join(MODEL_NAMES)} (default resnet50)")
    parser.add_argument("--side", type=int, default=48,
                        help="input side in pixels, grayscale (default 48, FER2013's)")
    parser.add_argument("--batch", type=int, default=32,
                        help="images per call (default 32, the recipes' batch)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls per pass, the fastest kept, ≥ 1 (default 5)")
    parser.add_argument("--xla-flags", default="",
                        help="added to XLA_FLAGS in the JAX process only")
    parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model not in MODEL_NAMES:
        parser.error(f"--model must be one of {', '.join(MODEL_NAMES)}. "
                     f"Received: {args.model!r}")
    for option in ("side", "batch", "repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be ≥ 1. Received: {getattr(args, option)}")
    try:
        model_cost(args.model, (args.side, args.side, 1), NUM_CLASSES)
    except ValueError as error:
        parser.error(f"--side {args.side}: {error}; give a larger --side")
    try:
        for backend_name in ("jax", "torch"):
            check_available(backend_name)
    except MissingFrameworkError as error:
        parser.error(str(error))
    if args.child:
        print(_PROTOCOL, json.dumps(_child(args.child, args)), flush=True)
        return 0
    load_before = os.getloadavg()[0]
    jax_result = _run_child("jax", None, args, args.xla_flags)
    cases = [_case_from_json(case) for case in jax_result["cases"]]
    torch_result = _run_child("torch", cases, args, "")
    print(f"{args.model}, {args.side}×{args.side}×1, batch {args.batch}; fastest of "
          f"{args.repeats} calls; XLA_FLAGS added: {args.xla_flags or 'none'}; "
          f"load 1 min {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(table(cases, jax_result["timings"], torch_result["timings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
