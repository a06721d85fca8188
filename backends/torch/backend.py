"""The PyTorch Backend: native nn.Module training with a plain, sync-free loop.

Mirrors backends/tf/backend.py method for method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import (
    LOSS_SCALE_GROWTH_STEPS,
    LOSS_SCALE_INITIAL,
    PIXEL_CENTER,
    PIXEL_SCALE,
    Backend,
)
from backends.torch.models import create_model
from backends.torch.runtime import configure_runtime
from backends.train_config import TrainConfig

_MB = 1024 * 1024
# The 16-bit type autocast computes convolutions and dense layers in, per TrainConfig
# precision; float32 has none: no autocast at all.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchBackend(Backend):
    """PyTorch implementation of Backend (CUDA when available, else CPU)."""

    name = "torch"
    framework = "PyTorch"

    def __init__(self, threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__(threads, deterministic)
        self.runtime = configure_runtime(threads, deterministic)
        self.model: torch.nn.Module | None = None
        self._step = None
        self._compiled = False
        self._autocast_dtype: torch.dtype | None = None
        self._loss_scaling = False

    def versions(self) -> dict[str, str | None]:
        cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
        return {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": str(cudnn) if cudnn else None,
        }

    def device_name(self) -> str:
        return torch.cuda.get_device_name(0) if self.runtime.device.type == "cuda" else "cpu"

    def flags(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "device": str(runtime.device),
            "channels_last": runtime.memory_format == torch.channels_last,
            "torch_compile": self._compiled,
            # The effective precision: autocast's 16-bit type (None: plain float32) and
            # whether a GradScaler scales the loss.
            "precision": self.precision,
            "autocast_dtype": None if self._autocast_dtype is None
            else str(self._autocast_dtype).removeprefix("torch."),
            "loss_scaling": self._loss_scaling,
            "intra_op_threads": runtime.intra_op_threads,
            "inter_op_threads": runtime.inter_op_threads,
            "deterministic": runtime.deterministic,
            "cudnn_benchmark": runtime.cudnn_benchmark,
            "tf32": runtime.tf32,
        }

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    # --- measurement hooks -----------------------------------------------------------
    def synchronize(self) -> None:
        if self.runtime.device.type == "cuda":
            torch.cuda.synchronize(self.runtime.device)

    def gpu_allocator_peak_mb(self) -> float | None:
        if self.runtime.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.runtime.device) / _MB

    def matmul_op(self, size: int) -> Callable[[], Any]:
        device = self.runtime.device
        a, b = (torch.rand(size, size, device=device) for _ in range(2))
        out = torch.empty(size, size, device=device)
        return lambda: torch.mm(a, b, out=out)

    # --- model -----------------------------------------------------------------------
    def _build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str,
        overrides: dict[str, Any],
    ) -> None:
        self.model = self.runtime.place_model(
            create_model(model_name, input_shape, num_classes, **overrides)
        )
        self._autocast_dtype = AUTOCAST_DTYPES.get(precision)
        self._step = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        """The context every forward pass runs in: autocast at the 16-bit precision.

        In float32 there is no autocast at all, so a float32 run executes exactly the
        code it did before precision was a setting.
        """
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.runtime.device.type, dtype=self._autocast_dtype)

    def num_trainable_params(self) -> int:
        # Every parameter: a freeze (`TrainConfig.freeze_epochs`) switches requires_grad
        # off for a while, which changes what the model can train, not what it has (the
        # Keras model's trainable weights stay the same through it too).
        return sum(p.numel() for p in self.model.parameters())

    def get_weights(self) -> dict[str, np.ndarray]:
        return {
            name: tensor.detach().cpu().numpy().astype(np.float32, copy=True)
            for name, tensor in self.model.state_dict().items()
            if not name.endswith("num_batches_tracked")
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = self.model.state_dict()
        expected = {k for k in state if not k.endswith("num_batches_tracked")}
        if set(weights) != expected:
            missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise ValueError(f"weight names differ: missing {missing}, unexpected {extra}")
        for name in expected:
            if tuple(state[name].shape) != weights[name].shape:
                raise ValueError(
                    f"weight {name!r} has shape {weights[name].shape}, "
                    f"model expects {tuple(state[name].shape)}"
                )
        with torch.no_grad():
            for name in expected:
                state[name].copy_(torch.from_numpy(np.asarray(weights[name])))

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        """NHWC (uint8 or float) on device → scaled float NCHW in the model's format."""
        x = x.permute(0, 3, 1, 2)
        if x.dtype == torch.uint8:
            x = (x.float() - PIXEL_CENTER) / PIXEL_SCALE
        return self.runtime.format_batch(x)

    def logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.model.train(training)
        with torch.no_grad(), self._autocast():
            out = self.model(self._to_input(torch.from_numpy(x).to(self.runtime.device)))
        return out.float().cpu().numpy()

    # --- what the model sees ---------------------------------------------------------
    def _stage_outputs(self, x: np.ndarray, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        self.model.eval()
        with torch.inference_mode():
            _, taps = self.model.forward_stages(self._to_input(self._device_batch(x)))
        return {stage: _nhwc(taps[stage]) for stage in stages}

    def _stage_gradients(self, x: np.ndarray, stage: str,
                         class_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        with torch.enable_grad():
            logits, taps = self.model.forward_stages(self._to_input(self._device_batch(x)))
            rows = torch.arange(len(x), device=logits.device)
            picked = torch.from_numpy(class_index).to(logits.device)
            # Images are independent in eval mode, so the gradient of the sum is, image
            # by image, the gradient of that image's own class logit.
            (gradients,) = torch.autograd.grad(logits[rows, picked].sum(), taps[stage])
        return _nhwc(taps[stage].detach()), _nhwc(gradients)

    def _device_batch(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.runtime.device)

    # --- training and inference ------------------------------------------------------
    def _prepare_training(self, config: TrainConfig, class_weights: np.ndarray,
                          layers: frozenset[str] | None = None) -> None:
        self._class_weights = torch.from_numpy(class_weights).to(self.runtime.device)
        trained = []
        for name, param in self.model.named_parameters():
            # A frozen parameter needs no gradient: autograd then skips its backward too.
            param.requires_grad_(layers is None or name.rpartition(".")[0] in layers)
            if param.requires_grad:
                trained.append(param)
        optimizer = self._optimizer = _make_optimizer(config, trained)
        smoothing = config.label_smoothing
        # float16's narrow range needs the loss scaled so small gradients do not flush to
        # zero; bfloat16 has float32's range and needs none (as in the TF backend).
        scaler = None
        if config.precision == "float16":
            scaler = torch.amp.GradScaler(
                self.runtime.device.type, init_scale=LOSS_SCALE_INITIAL, growth_factor=2.0,
                backoff_factor=0.5, growth_interval=LOSS_SCALE_GROWTH_STEPS)
        self._loss_scaling = scaler is not None

        def forward_loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                logits = self.model(self._to_input(images))
            # The loss in float32 whatever the precision (a no-op on float32 logits).
            return training_loss(logits.float(), labels, self._class_weights, smoothing)

        if config.compile:
            # Forward, loss and, through AOTAutograd, their backward; the optimizer step
            # stays eager. Compiled, it guards on each group's rate, a Python float, and
            # recompiles when the schedule first changes it, in the second epoch, which
            # then bills a compilation as steady time (seen with TORCH_LOGS=recompiles).
            # Eager, it also takes exactly the uncompiled run's float32 steps.
            forward_loss = torch.compile(forward_loss)

        def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            loss = forward_loss(images, labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                # torch's own float16 path; GradScaler.step reads its inf check on the
                # host, one sync per step that float32 and bfloat16 do not have.
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            return loss.detach()

        self._compiled = config.compile
        self._step = step

    def _train_epoch(self, batches, learning_rates: np.ndarray) -> float:
        self.model.train()
        device = self.runtime.device
        total = torch.zeros((), device=device)
        steps = 0
        for (images, labels), rate in zip(batches, learning_rates, strict=True):
            for group in self._optimizer.param_groups:
                group["lr"] = float(rate)
            total += self._step(torch.from_numpy(images).to(device, non_blocking=True),
                                torch.from_numpy(labels).to(device, non_blocking=True))
            steps += 1
        # The only host sync of the epoch: reading the loss waits for the device.
        return float(total) / steps

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        self.model.eval()
        out = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(x), batch_size):
                batch = torch.from_numpy(x[start : start + batch_size]).to(self.runtime.device)
                out.append(torch.softmax(self.model(self._to_input(batch)).float(), dim=1))
            probs = torch.cat(out).cpu().numpy()
        return probs.astype(np.float64)


def training_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor,
                  smoothing: float) -> torch.Tensor:
    """The training step's loss, TF's `training_loss` in PyTorch.

    Args:
        logits: (N, C) float32 logits.
        labels: (N,) int64 labels.
        class_weights: (C,) float32 per-class loss weights.
        smoothing: label smoothing in [0, 1).

    Returns:
        The class-weighted mean of the per-sample cross-entropies: Σ wᵢ·ℓᵢ / Σ wᵢ, wᵢ the
        weight of sample i's class. Weighted by hand rather than through
        `cross_entropy(weight=…)`, which with label smoothing also weights the smoothed
        targets' other classes.
    """
    per_sample = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
    weights = class_weights[labels]
    return (per_sample * weights).sum() / weights.sum()


def _nhwc(tensor: torch.Tensor) -> np.ndarray:
    """An NCHW tensor (any memory format) as a float32 NHWC numpy array."""
    return np.ascontiguousarray(tensor.permute(0, 2, 3, 1).float().cpu().numpy())


def _make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """The optimizer `config` names, every hyper-parameter passed explicitly.

    Nothing is left to torch's defaults, so what each class does by default (AdamW's
    weight decay of 0.01, SGD's dampening, RMSprop's momentum) cannot slip in unrecorded.

    Args:
        config: the shared recipe (its optimizer, learning_rate, epsilon, betas,
            weight_decay, momentum, nesterov and rmsprop_alpha).
        params: the parameters to train.

    Returns:
        The torch optimizer at the recipe's base learning rate.
    """
    lr, decay = config.learning_rate, config.weight_decay
    if config.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return adam(params, lr=lr, betas=(config.adam_beta1, config.adam_beta2),
                    eps=config.epsilon, weight_decay=decay, amsgrad=False)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, dampening=0.0,
                               weight_decay=decay, nesterov=config.nesterov)
    return torch.optim.RMSprop(params, lr=lr, alpha=config.rmsprop_alpha, eps=config.epsilon,
                               weight_decay=decay, momentum=0.0, centered=False)
