"""PyTorch's runtime settings, the ones that must precede its first op, in one place.

Mirrors backends/tf/runtime.py. The backend and the overhead study's bare loop
(benchmarks/overhead.py) both call `configure_runtime`, so both train with the
same threads, determinism switches, float32 precision, device and memory format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RuntimeSettings:
    """What `configure_runtime` applied, as torch reports it once applied.

    Attributes:
        device: where models and tensors live: the first CUDA GPU when one is available,
            else the CPU.
        memory_format: the layout models and batches train in: channels-last.
        intra_op_threads: torch's intra-op thread pool size.
        inter_op_threads: torch's inter-op thread pool size.
        deterministic: whether the deterministic-algorithm switches are on.
        cudnn_benchmark: whether cuDNN autotunes its convolution kernels.
        tf32: whether float32 matmuls or convs may run in TF32.
    """

    device: torch.device
    memory_format: torch.memory_format
    intra_op_threads: int
    inter_op_threads: int
    deterministic: bool
    cudnn_benchmark: bool
    tf32: bool

    def place_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Moves a model to `device` and its parameters to `memory_format`.

        Args:
            model: a freshly built module.

        Returns:
            The same module, moved in place (as `Module.to` does).
        """
        return model.to(self.device).to(memory_format=self.memory_format)

    def format_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Lays out an NCHW batch in `memory_format`, the layout the model expects.

        Args:
            batch: an (N, C, H, W) tensor on `device`.

        Returns:
            The same values, contiguous in `memory_format` (a copy unless already so).
        """
        return batch.contiguous(memory_format=self.memory_format)


def configure_runtime(threads: int | None, deterministic: bool) -> RuntimeSettings:
    """Applies the settings that must precede torch's first op; call it once, before any.

    Args:
        threads: intra- and inter-op thread pool sizes; None keeps torch's defaults.
        deterministic: turn on torch's deterministic-algorithm switches (which also turn
            off cuDNN autotuning).

    Returns:
        The settings in force, for `Backend.flags()` to report.
    """
    if threads is not None:
        # Both pools must be sized before the first parallel op runs.
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    if deterministic:
        # cuBLAS reads this when it initialises, i.e. at the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    # Autotuning picks the fastest cuDNN kernels for the run's fixed shapes, as TF does by
    # default; its choice can vary between runs, so determinism turns it off.
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    _pin_ieee_float32()
    return RuntimeSettings(
        device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        # Channels-last lets cuDNN and oneDNN pick their fast NHWC kernels. Measured on a
        # 2-core CPU, batch 64 at 48×48, training img/s NCHW → channels-last: resnet50
        # 9.6 → 46.9, sanet 23 → 65, vgg16 ~10 → ~12, proposed_cnn 22 → 23.
        memory_format=torch.channels_last,
        intra_op_threads=torch.get_num_threads(),
        inter_op_threads=torch.get_num_interop_threads(),
        deterministic=deterministic,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        tf32=_tf32_enabled(),
    )


def _pin_ieee_float32() -> None:
    """Makes float32 mean IEEE float32 for matmuls and convs, as in the TF runtime.

    By default torch runs float32 convs in TF32 on Ampere and later GPUs but not its
    matmuls, while TF does both: left alone, the two would train at different precision.
    """
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch ≥ 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _tf32_enabled() -> bool:
    """Whether float32 matmuls or convs may run in TF32 (mirrors TF's query)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
        return "tf32" in (matmul.fp32_precision, conv.fp32_precision)
    return torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
