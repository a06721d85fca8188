"""The TensorFlow/Keras 3 Backend: a compiled `tf.function` train step.

Mirrors backends/torch/backend.py method for method. The models, optimizers, loss and
weight conversion to the canonical (torch) layout are backends/keras/'s, shared with the
keras-jax backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# backends/tf/__init__.py, which Python runs before this module, pins KERAS_BACKEND.
import keras
import numpy as np
import tensorflow as tf

from backends.base import PIXEL_CENTER, PIXEL_SCALE, Backend
from backends.keras.models import create_model, staged_model
from backends.keras.optimizers import make_training_optimizer
from backends.keras.training import DTYPE_POLICIES, dtype_policy, training_loss
from backends.keras.weights import canonical_weights, load_canonical_weights
from backends.tf.runtime import configure_runtime
from backends.train_config import TrainConfig

_MB = 1024 * 1024
BFLOAT16_NEEDS_ONEDNN = ("precision bfloat16 needs a bfloat16 convolution, and TensorFlow's "
                         "oneDNN path has none here (an AVX-512 CPU held to AVX2 by "
                         "ONEDNN_MAX_CPU_ISA): unset ONEDNN_MAX_CPU_ISA or use --precision "
                         "float32")


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
        with dtype_policy(DTYPE_POLICIES[precision]):
            self.model = create_model(model_name, input_shape, num_classes, **overrides)
        self._step = None
        self._staged = None  # made on first use: training never needs it

    def num_trainable_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_weights))

    def get_weights(self) -> dict[str, np.ndarray]:
        return canonical_weights(self.model)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        load_canonical_weights(self.model, weights)

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
        model, smoothing = self.model, config.label_smoothing
        # The tape differentiates, and the optimizer updates, these alone; the layers stay
        # trainable, so BatchNorm keeps its training-mode behaviour in frozen layers too.
        variables = model.trainable_variables if layers is None else [
            v for layer in model.layers if layer.name in layers for v in layer.trainable_weights]
        scaling = self._loss_scaling = config.precision == "float16"
        optimizer = self._optimizer = make_training_optimizer(config, variables)

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


def bfloat16_refusal() -> str | None:
    """Why TensorFlow cannot train in bfloat16 here (one line), or None where it can."""
    if tf.config.list_physical_devices("GPU") or cpu_runs_bfloat16_convolutions():
        return None
    return BFLOAT16_NEEDS_ONEDNN


@functools.cache
def cpu_runs_bfloat16_convolutions() -> bool:
    """Whether TensorFlow's oneDNN path has a bfloat16 convolution on this CPU.

    It has none on an AVX-512 CPU held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`: TensorFlow
    routes bfloat16 to oneDNN, which then has no kernel): the first bfloat16 convolution
    aborts with "could not create a primitive descriptor", deep in a training step, so
    `build` asks first. An AVX2-only CPU (an AMD EPYC of family 25 model 1, 2026-12-06)
    convolves in bfloat16 with or without that variable, off oneDNN's AVX-512 kernels.
    """
    try:
        tf.nn.conv2d(tf.zeros((1, 4, 4, 1), tf.bfloat16), tf.zeros((3, 3, 1, 1), tf.bfloat16),
                     1, "SAME")
    except tf.errors.AbortedError:
        return False
    return True
