"""TensorFlow's runtime settings, the ones that must precede its first op, in one place.

Mirrors backends/torch/runtime.py. The backend and the overhead study's bare loop
(benchmarks/overhead.py) both call `configure_runtime`, so both train with the
same threads, determinism switches, float32 precision, device and GPU memory growth.
Unlike torch's, the settings need no helpers for models and batches: TF places ops on
its device itself, and Keras convolutions take NHWC as they come.
"""

from __future__ import annotations

from dataclasses import dataclass

# backends/tf/__init__.py, which Python runs before this module, sets TF's log level.
import tensorflow as tf


@dataclass(frozen=True)
class RuntimeSettings:
    """What `configure_runtime` applied, as TF reports it once applied.

    Attributes:
        gpu: the one GPU TF computes on; None when none is visible (the CPU).
        memory_growth: whether TF grows its GPU memory on demand instead of reserving it.
        intra_op_threads: TF's intra-op thread pool size (0: TF's default).
        inter_op_threads: TF's inter-op thread pool size (0: TF's default).
        deterministic: whether op determinism is on.
        tf32: whether float32 matmuls and convs may run in TF32.
    """

    gpu: tf.config.PhysicalDevice | None
    memory_growth: bool
    intra_op_threads: int
    inter_op_threads: int
    deterministic: bool
    tf32: bool

    @property
    def device(self) -> str:
        """Where TF computes: "gpu" or "cpu"."""
        return "cpu" if self.gpu is None else "gpu"


def configure_runtime(threads: int | None, deterministic: bool) -> RuntimeSettings:
    """Applies the settings that must precede TF's first op; call it once, before any.

    Args:
        threads: intra- and inter-op thread pool sizes; None keeps TF's defaults.
        deterministic: turn on TF's op determinism.

    Returns:
        The settings in force, for `Backend.flags()` to report.
    """
    if threads is not None:
        # Only honoured before TF's runtime starts, i.e. before the first op.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    # float32 means IEEE float32 in both frameworks; TF would otherwise run its float32
    # matmuls and convs in TF32 on Ampere and later GPUs (see the torch runtime).
    tf.config.experimental.enable_tensor_float_32_execution(False)
    # Compute on the first GPU only, like torch's "cuda": TF would otherwise open a
    # context on every visible GPU, which NVML's per-process memory would count.
    gpus = tf.config.list_physical_devices("GPU")[:1]
    if gpus:
        tf.config.set_visible_devices(gpus, "GPU")
        # Without growth TF reserves nearly all GPU memory and peaks mean nothing.
        tf.config.experimental.set_memory_growth(gpus[0], True)
    return RuntimeSettings(
        gpu=gpus[0] if gpus else None,
        memory_growth=bool(gpus),
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        deterministic=deterministic,
        tf32=tf.config.experimental.tensor_float_32_execution_enabled(),
    )
