"""JAX's runtime settings, the ones that must precede its first op, in one place.

Mirrors backends/torch/runtime.py and backends/tf/runtime.py. XLA reads its thread and
determinism switches from XLA_FLAGS once, when JAX's client starts (at the first op), so
`configure_runtime` writes them there before that, and refuses a change after it. What
XLA lets one set (docs/design.md §5):

* threads: on a CPU, XLA sizes its pool to the CPUs the process may run on and has no
  switch for another count; one compute thread it can do
  (`--xla_cpu_multi_thread_eigen=false`: the convolutions and matmuls, where the
  arithmetic runs, single-threaded). Any other count keeps XLA's default, reported as
  None.
* determinism: XLA's CPU code gives the same result run to run at a fixed thread count
  already; on a GPU `--xla_gpu_deterministic_ops=true` holds its reductions and scatter
  to a fixed order (and switches autotuning's nondeterministic choices off).
* float32 means IEEE float32: JAX's default matmul precision would compute float32
  matmuls and convolutions in TF32 on Ampere and later GPUs, as TF would by default.
* convolutions on a CPU run on Eigen, not YNNPACK, from jaxlib 0.10 on (backends/xla_flags.py:
  faster here, the same float32 arithmetic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import jaxlib
from jax._src import xla_bridge  # the one public-less question: has the client started?

from backends.xla_flags import cpu_convolution_flags

SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
_DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


@dataclass(frozen=True)
class RuntimeSettings:
    """What `configure_runtime` applied, as JAX reports it once applied.

    Attributes:
        device: the one device JAX computes on: the first GPU when one is visible, else
            the CPU.
        intra_op_threads: 1 when XLA runs its CPU code single-threaded; None for XLA's
            default (a pool the size of the process's CPUs).
        deterministic: whether XLA's deterministic-ops switch is on (GPU) or, on a CPU,
            determinism was asked for (XLA's CPU code is deterministic already).
        matmul_precision: JAX's default precision of float32 matmuls and convolutions:
            "highest", IEEE float32.
        xla_flags: XLA_FLAGS as the client started with them.
    """

    device: jax.Device
    intra_op_threads: int | None
    deterministic: bool
    matmul_precision: str
    xla_flags: str

    @property
    def on_gpu(self) -> bool:
        """Whether JAX computes on a GPU."""
        return self.device.platform == "gpu"


def configure_runtime(threads: int | None, deterministic: bool) -> RuntimeSettings:
    """Applies the settings that must precede JAX's first op.

    Args:
        threads: 1 for single-threaded XLA CPU code; any other count keeps XLA's
            default (see the module docstring); None keeps the default.
        deterministic: turn on XLA's deterministic ops.

    Returns:
        The settings in force, for `Backend.flags()` to report.

    Raises:
        RuntimeError: a setting differs from the one JAX's client already started with
            (one line naming the fix: a fresh process).
    """
    wanted = list(cpu_convolution_flags(jaxlib.__version__, os.environ.get("XLA_FLAGS", "")))
    if threads == 1:
        wanted.extend(SINGLE_THREAD_FLAGS)
    if deterministic:
        wanted.append(_DETERMINISTIC_GPU_FLAG)
    in_force = os.environ.get("XLA_FLAGS", "").split()
    missing = [flag for flag in wanted if flag not in in_force]
    if missing and xla_bridge.backends_are_initialized():
        raise RuntimeError(f"JAX started before XLA_FLAGS held {' '.join(missing)}: "
                           "XLA reads them once; create this backend in a fresh process")
    if missing:
        os.environ["XLA_FLAGS"] = " ".join([*in_force, *missing])
    jax.config.update("jax_default_matmul_precision", "highest")
    flags = os.environ.get("XLA_FLAGS", "").split()
    return RuntimeSettings(
        device=jax.devices()[0],
        intra_op_threads=1 if SINGLE_THREAD_FLAGS[0] in flags else None,
        deterministic=deterministic or _DETERMINISTIC_GPU_FLAG in flags,
        matmul_precision=str(jax.config.jax_default_matmul_precision),
        xla_flags=" ".join(flags),
    )
