"""XLA's runtime settings for the keras-jax backend, the ones that must precede its start.

Mirrors backends/tf/runtime.py. XLA reads XLA_FLAGS once, when its first client starts
(the first `jax.devices()` or array), not when jax is imported; so `configure_runtime`
sets them then, and refuses settings that differ from those of a client already running
in the process.

Threads: XLA's CPU client keeps one pool of a thread per CPU the process may use, and has
no setting for another size. `threads=1` turns off Eigen's multi-threading of the
convolutions and matmuls (`--xla_cpu_multi_thread_eigen=false`), which is where the
arithmetic runs: one compute thread, as torch's and TF's one. Any other count keeps XLA's
pool; `flags()` reports its size, so a record says what ran. To run on N CPUs, start the
worker on N (taskset), which XLA's pool follows.

Convolutions on a CPU run on Eigen, not YNNPACK, from jaxlib 0.10 on, as in the native JAX
backend (backends/xla_flags.py: faster here, the same float32 arithmetic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# backends/keras_jax/__init__.py, which Python runs before this module, turned off XLA's
# GPU memory preallocation.
import jax
import jaxlib
from jax._src import xla_bridge

from backends.xla_flags import cpu_convolution_flags

SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
DETERMINISTIC_GPU_FLAGS = ("--xla_gpu_deterministic_ops=true",)


@dataclass(frozen=True)
class RuntimeSettings:
    """What `configure_runtime` applied.

    Attributes:
        device: the one JAX device the backend computes on (the first).
        cpu_threads: XLA's CPU threads running the arithmetic: 1 with `threads=1`, else
            the CPUs the process may use.
        deterministic: whether XLA's deterministic GPU ops are on (XLA's CPU code is
            deterministic as compiled).
        xla_flags: XLA_FLAGS as the client started with them.
        preallocate: whether XLA reserves most of a GPU's memory at its start (off:
            backends/keras_jax/__init__.py).
    """

    device: jax.Device
    cpu_threads: int
    deterministic: bool
    xla_flags: str
    preallocate: bool

    @property
    def on_gpu(self) -> bool:
        """Whether the device is a GPU."""
        return self.device.platform == "gpu"


def configure_runtime(threads: int | None, deterministic: bool) -> RuntimeSettings:
    """Sets XLA_FLAGS for `threads` and `deterministic` and starts JAX's client.

    Args:
        threads: 1 for one compute thread; None or any other count keeps XLA's pool
            (module docstring).
        deterministic: XLA's deterministic GPU ops.

    Returns:
        The settings in force, for `Backend.flags()` to report.

    Raises:
        RuntimeError: JAX's client already runs in this process with other flags.
    """
    wanted = (cpu_convolution_flags(jaxlib.__version__, os.environ.get("XLA_FLAGS", ""))
              + (SINGLE_THREAD_FLAGS if threads == 1 else ())
              + (DETERMINISTIC_GPU_FLAGS if deterministic else ()))
    present = os.environ.get("XLA_FLAGS", "").split()
    missing = [flag for flag in wanted if flag not in present]
    if missing and xla_bridge.backends_are_initialized():
        raise RuntimeError(
            f"XLA has started in this process without {' '.join(missing)}: create the "
            "keras-jax backend with these threads/deterministic settings before anything "
            "else uses JAX, or in a fresh process")
    if missing:
        os.environ["XLA_FLAGS"] = " ".join(present + missing)
    # float32 means IEEE float32 in every framework: XLA would otherwise run float32
    # matmuls and convolutions on a GPU in TF32 or bfloat16 passes (see the torch runtime).
    jax.config.update("jax_default_matmul_precision", "highest")
    device = jax.devices()[0]
    single = set(SINGLE_THREAD_FLAGS) <= set(os.environ.get("XLA_FLAGS", "").split())
    return RuntimeSettings(
        device=device,
        cpu_threads=1 if single else len(os.sched_getaffinity(0)),
        deterministic=deterministic,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true") != "false",
    )
