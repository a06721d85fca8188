"""The TensorFlow/Keras 3 Backend: a compiled `tf.function` train step.

Mirrors backends/torch/backend.py method for method. Weight conversion to the canonical
(torch) layout is done per layer type in `_to_canonical` / `_from_canonical`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# backends/tf/__init__.py, which Python runs before this module, pins KERAS_BACKEND.
import keras
import numpy as np
import tensorflow as tf

from backends.base import (
    LOSS_SCALE_GROWTH_STEPS,
    LOSS_SCALE_INITIAL,
    PIXEL_CENTER,
    PIXEL_SCALE,
    Backend,
)
from backends.tf.models import create_model, staged_model
from backends.tf.optimizers import make_optimizer
from backends.tf.runtime import configure_runtime
from backends.train_config import TrainConfig

_MB = 1024 * 1024
# The Keras dtype policy of each TrainConfig precision: "mixed_*" keeps variables (the
# master weights) in float32 and computes layers in the 16-bit type.
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                  "float16": "mixed_float16"}
BFLOAT16_NEEDS_ONEDNN = ("precision bfloat16 needs a CPU whose oneDNN path has a bfloat16 "
                         "convolution (AVX-512 or newer); TensorFlow has none on this one "
                         "(an AVX2-only instruction set, or ONEDNN_MAX_CPU_ISA=AVX2): use "
                         "--precision float32 here")


class TFBackend(Backend):
    """Keras 3 / TensorFlow implementation of Backend (GPU when visible, else CPU)."""

    name = "tf"
    framework = "TensorFlow"

    def __init__(self, threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__(threads, deterministic)
        self.runtime = configure_runtime(threads, deterministic)
        self.model: keras.Model | None = None
        self._step = None
        self._jit_compile = False
        self._loss_scaling = False

    def versions(self) -> dict[str, str | None]:
        build = tf.sysconfig.get_build_info()
        on_gpu = self.runtime.gpu is not None
        return {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cuda": build.get("cuda_version") if on_gpu else None,
            "cudnn": build.get("cudnn_version") if on_gpu else None,
        }

    def device_name(self) -> str:
        if self.runtime.gpu is None:
            return "cpu"
        return tf.config.experimental.get_device_details(self.runtime.gpu).get("device_name", "gpu")

    def flags(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "device": runtime.device,
            "tf_function": True,
            "jit_compile": self._jit_compile,
            # The effective precision: the policy the model's layers were built with and
            # whether a LossScaleOptimizer scales the loss.
            "precision": self.precision,
            "dtype_policy": None if self.model is None else self.model.dtype_policy.name,
            "loss_scaling": self._loss_scaling,
            "memory_growth": runtime.memory_growth,
            "intra_op_threads": runtime.intra_op_threads,
            "inter_op_threads": runtime.inter_op_threads,
            "deterministic": runtime.deterministic,
            "tf32": runtime.tf32,
        }

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)

    # --- measurement hooks -----------------------------------------------------------
    def synchronize(self) -> None:
        # On the CPU, eager ops and tf.function calls return only when done.
        if self.runtime.gpu is not None:
            tf.test.experimental.sync_devices()

    def gpu_allocator_peak_mb(self) -> float | None:
        if self.runtime.gpu is None:
            return None
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / _MB

    def matmul_op(self, size: int) -> Callable[[], Any]:
        a, b = (tf.random.uniform((size, size)) for _ in range(2))
        return lambda: tf.linalg.matmul(a, b)

    # --- model -----------------------------------------------------------------------
    def _build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str,
        overrides: dict[str, Any],
    ) -> None:
        if precision == "bfloat16" and (refusal := bfloat16_refusal()):
            raise ValueError(refusal)
        with _dtype_policy(DTYPE_POLICIES[precision]):
            self.model = create_model(model_name, input_shape, num_classes, **overrides)
        self._step = None
        self._staged = None  # made on first use: training never needs it

    def num_trainable_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_weights))

    def _parametric_layers(self):
        return [layer for layer in self.model.layers if layer.weights]

    def get_weights(self) -> dict[str, np.ndarray]:
        weights = {}
        for layer in self._parametric_layers():
            arrays = [np.asarray(w.numpy(), np.float32) for w in layer.weights]
            for param, value in _to_canonical(layer, arrays).items():
                weights[f"{layer.name}.{param}"] = value
        return weights

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        expected = set(self.get_weights())
        if set(weights) != expected:
            missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise ValueError(f"weight names differ: missing {missing}, unexpected {extra}")
        for layer in self._parametric_layers():
            prefix = f"{layer.name}."
            params = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            arrays = _from_canonical(layer, params)
            for variable, value in zip(layer.weights, arrays, strict=True):
                if tuple(variable.shape) != value.shape:
                    raise ValueError(
                        f"weight {layer.name!r} converts to shape {value.shape}, "
                        f"model expects {tuple(variable.shape)}"
                    )
                variable.assign(value)

    def logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        logits = self.model(tf.constant(x), training=training)
        return np.asarray(tf.cast(logits, tf.float32))

    # --- what the model sees ---------------------------------------------------------
    def _staged_model(self) -> keras.Model:
        if self._staged is None:
            self._staged = staged_model(self.model, self.stages())
        return self._staged

    def _stage_outputs(self, x: np.ndarray, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        _, taps = self._staged_model()(_scale(tf.constant(x)), training=False)
        return {stage: np.asarray(taps[stage], np.float32) for stage in stages}

    def _stage_gradients(self, x: np.ndarray, stage: str,
                         class_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with tf.GradientTape() as tape:
            logits, taps = self._staged_model()(_scale(tf.constant(x)), training=False)
            picked = tf.gather(logits, class_index, axis=1, batch_dims=1)
            # Images are independent in eval mode, so the gradient of the sum is, image
            # by image, the gradient of that image's own class logit.
            score = tf.reduce_sum(picked)
        gradients = tape.gradient(score, taps[stage])
        return np.asarray(taps[stage], np.float32), np.asarray(gradients, np.float32)

    # --- training and inference ------------------------------------------------------
    def _prepare_training(self, config: TrainConfig, class_weights: np.ndarray,
                          layers: frozenset[str] | None = None) -> None:
        table = tf.constant(class_weights)
        optimizer = make_optimizer(config)
        model, smoothing = self.model, config.label_smoothing
        # The tape differentiates, and the optimizer updates, these alone; the layers stay
        # trainable, so BatchNorm keeps its training-mode behaviour in frozen layers too.
        variables = model.trainable_variables if layers is None else [
            v for layer in model.layers if layer.name in layers for v in layer.trainable_weights]
        scaling = self._loss_scaling = config.precision == "float16"
        if scaling:
            # torch's GradScaler semantics (LOSS_SCALE_*): unscale, skip a non-finite
            # step and halve the scale, double it after a run of finite steps. Built
            # before tracing, or the trace would bake in the initial scale as a constant.
            optimizer = keras.optimizers.LossScaleOptimizer(
                optimizer, initial_scale=LOSS_SCALE_INITIAL,
                dynamic_growth_steps=LOSS_SCALE_GROWTH_STEPS)
            optimizer.build(variables)
        self._optimizer = optimizer

        @tf.function(jit_compile=config.compile, reduce_retracing=True)
        def step(images, labels, learning_rate):
            # The rate is a scalar tensor argument: a new value is new data, not a retrace.
            optimizer.learning_rate.assign(learning_rate)
            with tf.GradientTape() as tape:
                # The loss in float32 whatever the precision (tf.cast is the identity on
                # float32 logits).
                logits = tf.cast(model(_scale(images), training=True), tf.float32)
                loss = training_loss(logits, labels, table, smoothing)
                scaled = optimizer.scale_loss(loss) if scaling else loss
            optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables,
                                          strict=True))
            return loss

        self._jit_compile = config.compile
        self._step = step

    def _train_epoch(self, batches, learning_rates: np.ndarray) -> float:
        total = tf.zeros((), tf.float32)
        steps = 0
        for (images, labels), rate in zip(batches, learning_rates, strict=True):
            total += self._step(tf.constant(images), tf.constant(labels),
                                tf.constant(rate, tf.float32))
            steps += 1
        # The only host sync of the epoch: reading the loss waits for the device.
        return float(total) / steps

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = [
            _predict_step(self.model, tf.constant(x[start : start + batch_size]))
            for start in range(0, len(x), batch_size)
        ]
        return np.concatenate([np.asarray(p) for p in out]).astype(np.float64)


def _scale(images):
    return (tf.cast(images, tf.float32) - PIXEL_CENTER) / PIXEL_SCALE


@tf.function(reduce_retracing=True)
def _predict_step(model, images):
    return tf.nn.softmax(tf.cast(model(_scale(images), training=False), tf.float32), axis=-1)


@contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Makes `name` Keras's global dtype policy for the block only.

    Keras layers take the global policy when they are made, so the model built in the
    block keeps it, and nothing built later in the process (another model, the
    calibration's tensors) inherits it.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _cross_entropy(logits, labels, num_classes: int, smoothing: float):
    """Per-sample cross-entropy with torch's label smoothing: (1-s)·onehot + s/C."""
    target = tf.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def training_loss(logits, labels, class_weights, smoothing: float):
    """The training step's loss, torch's `training_loss` in TensorFlow.

    Args:
        logits: (N, C) float32 logits.
        labels: (N,) integer labels.
        class_weights: (C,) float32 per-class loss weights.
        smoothing: label smoothing in [0, 1).

    Returns:
        The class-weighted mean of the per-sample cross-entropies: Σ wᵢ·ℓᵢ / Σ wᵢ, wᵢ the
        weight of sample i's class (torch's `cross_entropy(weight=…)` mean reduction).
    """
    per_sample = _cross_entropy(logits, labels, logits.shape[-1], smoothing)
    weights = tf.gather(class_weights, labels)
    return tf.reduce_sum(per_sample * weights) / tf.reduce_sum(weights)


# --- canonical weight conversion ---------------------------------------------------------
def _to_canonical(layer, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Keras layer arrays → {param: canonical array} (see backends/base.py)."""
    if isinstance(layer, keras.layers.Conv2D):
        out = {"weight": arrays[0].transpose(3, 2, 0, 1)}  # HWIO → OIHW
        if layer.use_bias:
            out["bias"] = arrays[1]
        return out
    if isinstance(layer, keras.layers.Dense):
        kernel = arrays[0]
        hwc = getattr(layer, "flatten_input_hwc", None)
        if hwc is not None:
            # Rows of a kernel after an NHWC flatten run over (H, W, C); torch's over (C, H, W).
            h, w, c = hwc
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        out = {"weight": kernel.T}
        if layer.use_bias:
            out["bias"] = arrays[1]
        return out
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, mean, var = arrays
        return {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var}
    if hasattr(layer, "to_canonical"):
        return layer.to_canonical(arrays)
    raise TypeError(f"no canonical weight conversion for layer {layer.name!r} ({type(layer)})")


def _from_canonical(layer, params: dict[str, np.ndarray]) -> list[np.ndarray]:
    """{param: canonical array} → the Keras layer's arrays, in `layer.weights` order."""
    if isinstance(layer, keras.layers.Conv2D):
        out = [params["weight"].transpose(2, 3, 1, 0)]  # OIHW → HWIO
        return out + ([params["bias"]] if layer.use_bias else [])
    if isinstance(layer, keras.layers.Dense):
        kernel = params["weight"].T
        hwc = getattr(layer, "flatten_input_hwc", None)
        if hwc is not None:
            h, w, c = hwc
            kernel = kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
        return [kernel] + ([params["bias"]] if layer.use_bias else [])
    if isinstance(layer, keras.layers.BatchNormalization):
        return [params[k] for k in ("weight", "bias", "running_mean", "running_var")]
    if hasattr(layer, "from_canonical"):
        return layer.from_canonical(params)
    raise TypeError(f"no canonical weight conversion for layer {layer.name!r} ({type(layer)})")


def bfloat16_refusal() -> str | None:
    """Why TensorFlow cannot train in bfloat16 here (one line), or None where it can."""
    if tf.config.list_physical_devices("GPU") or cpu_runs_bfloat16_convolutions():
        return None
    return BFLOAT16_NEEDS_ONEDNN


@functools.cache
def cpu_runs_bfloat16_convolutions() -> bool:
    """Whether TensorFlow's oneDNN path has a bfloat16 convolution on this CPU.

    It has none on an AVX2-only instruction set (or under ONEDNN_MAX_CPU_ISA=AVX2): the
    first bfloat16 convolution aborts with "could not create a primitive descriptor",
    deep in a training step, so `build` asks first.
    """
    try:
        tf.nn.conv2d(tf.zeros((1, 4, 4, 1), tf.bfloat16), tf.zeros((3, 3, 1, 1), tf.bfloat16),
                     1, "SAME")
    except tf.errors.AbortedError:
        return False
    return True
