"""The Keras 3 on JAX Backend: the shared Keras models under a jitted, stateless step.

Mirrors backends/tf/backend.py method for method; the models, optimizers, loss and
canonical weight conversion are backends/keras/'s, the same code tf runs. What differs is
the step: `model.stateless_call` inside `jax.value_and_grad`, the optimizer through
`stateless_apply`, all in one `jax.jit` whose compilation falls in the first epoch.

Between steps the variables live as JAX arrays in a `TrainingState`, which the step takes
and returns (its buffers donated, so an update reuses them as torch's and TF's in-place
updates do); they are written back to the Keras model only when something reads the model
(`get_weights`, Grad-CAM, a new optimizer). So `self.model`'s variables are current only
after such a read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

# backends/keras_jax/__init__.py, which Python runs before this module, pins KERAS_BACKEND.
import jax
import jax.numpy as jnp
import jaxlib
import keras
import numpy as np

from backends.base import PIXEL_CENTER, PIXEL_SCALE, Backend
from backends.keras.models import STAGE_SUFFIX, create_model, staged_model
from backends.keras.optimizers import make_training_optimizer
from backends.keras.training import DTYPE_POLICIES, dtype_policy, training_loss
from backends.keras.weights import canonical_weights, load_canonical_weights
from backends.keras_jax.runtime import configure_runtime
from backends.train_config import TrainConfig

_MB = 1024 * 1024


class TrainingState(NamedTuple):
    """The values of the model's and the optimizer's variables between steps.

    Attributes:
        trainable: the model's trainable variables' values, in `trainable_variables`
            order.
        non_trainable: the model's other variables' values (BatchNorm statistics, the
            dropout seed), in `non_trainable_variables` order.
    """

    trainable: list[jax.Array]
    non_trainable: list[jax.Array]


class KerasJaxBackend(Backend):
    """Keras 3 / JAX implementation of Backend (the first JAX device: GPU if any, else CPU)."""

    name = "keras-jax"
    framework = "Keras on JAX"

    def __init__(self, threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__(threads, deterministic)
        self.runtime = configure_runtime(threads, deterministic)
        self.model: keras.Model | None = None
        self._state: TrainingState | None = None  # newer than the model's variables
        self._optimizer = None
        self._optimizer_values: list[jax.Array] | None = None
        self._step = None
        self._loss_scaling = False
        # The latest asynchronously dispatched results, which `synchronize` waits for.
        self._in_flight: list[Any] = []

    def versions(self) -> dict[str, str | None]:
        platform = self.runtime.device.client.platform_version if self.runtime.on_gpu else None
        return {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "keras": keras.__version__,
            "cuda": platform,  # XLA's GPU platform version, e.g. "cuda 12080"
            "cudnn": None,  # JAX does not report it
        }

    def device_name(self) -> str:
        return self.runtime.device.device_kind if self.runtime.on_gpu else "cpu"

    def flags(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "device": runtime.device.platform,
            "jit": True,
            "precision": self.precision,
            "dtype_policy": None if self.model is None else self.model.dtype_policy.name,
            "loss_scaling": self._loss_scaling,
            "matmul_precision": jax.config.jax_default_matmul_precision,
            "xla_cpu_threads": runtime.cpu_threads,
            "xla_flags": runtime.xla_flags,
            "xla_preallocate": runtime.preallocate,
            "deterministic": runtime.deterministic,
        }

    def seed(self, seed: int) -> None:
        # Keras's global seed: the seed generators of the layers made after it (dropout),
        # whose JAX key state then travels through the step as a non-trainable variable.
        keras.utils.set_random_seed(seed)

    # --- measurement hooks -----------------------------------------------------------
    def synchronize(self) -> None:
        # JAX dispatches asynchronously, on the CPU too: wait for what was launched last
        # (the step's new state, the matmul probe's product).
        jax.block_until_ready(self._in_flight)
        self._in_flight = []

    def gpu_allocator_peak_mb(self) -> float | None:
        if not self.runtime.on_gpu:
            return None
        # XLA's allocator's own peak, preallocation being off (backends/keras_jax/__init__.py).
        return self.runtime.device.memory_stats()["peak_bytes_in_use"] / _MB

    def matmul_op(self, size: int) -> Callable[[], Any]:
        a, b = jax.random.uniform(jax.random.key(0), (2, size, size), jnp.float32)
        matmul = jax.jit(jnp.matmul)

        def launch() -> jax.Array:
            out = matmul(a, b)
            self._in_flight = [out]
            return out

        return launch

    # --- model -----------------------------------------------------------------------
    def _build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str,
        overrides: dict[str, Any],
    ) -> None:
        with dtype_policy(DTYPE_POLICIES[precision]):
            self.model = create_model(model_name, input_shape, num_classes, **overrides)
        self._state, self._step, self._optimizer, self._optimizer_values = None, None, None, None
        self._staged = None  # made on first use: training never needs it
        self._stage_gradient_functions: dict[str, tuple[keras.Model, Callable]] = {}
        self._forward = jax.jit(self._stateless_forward, static_argnames="training")
        self._predict = jax.jit(self._probabilities)

    def num_trainable_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_weights))

    def _write_back(self) -> None:
        """Writes the training state into the model's and the optimizer's variables."""
        if self._state is None:
            return
        model = self.model
        for variable, value in zip(model.trainable_variables + model.non_trainable_variables,
                                   self._state.trainable + self._state.non_trainable,
                                   strict=True):
            variable.assign(value)
        if self._optimizer is not None:
            for variable, value in zip(self._optimizer.variables, self._optimizer_values,
                                       strict=True):
                variable.assign(value)
        self._state = None

    def _current_state(self) -> TrainingState:
        """The newest variable values: the training state's, else the model's."""
        if self._state is not None:
            return self._state
        return TrainingState([v.value for v in self.model.trainable_variables],
                             [v.value for v in self.model.non_trainable_variables])

    def get_weights(self) -> dict[str, np.ndarray]:
        self._write_back()
        return canonical_weights(self.model)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._write_back()
        load_canonical_weights(self.model, weights)

    def _stateless_forward(self, state: TrainingState, images, training: bool):
        """The model on scaled NHWC `images` at `state`'s values.

        Returns:
            (logits, the non-trainable values after: BatchNorm's statistics moved in
            training mode).
        """
        return self.model.stateless_call(state.trainable, state.non_trainable, images,
                                         training=training)

    def _probabilities(self, state: TrainingState, images):
        """Eval-mode class probabilities (float32) of uint8 NHWC `images`."""
        logits, _ = self._stateless_forward(state, _scale(images), training=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    def logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        state = self._current_state()
        logits, non_trainable = self._forward(state, jnp.asarray(x), training=training)
        if training:  # BatchNorm's running statistics moved, as in the other frameworks
            self._state = TrainingState(state.trainable, non_trainable)
        return np.asarray(logits, np.float32)

    # --- what the model sees ---------------------------------------------------------
    def _values_for(self, submodel: keras.Model) -> tuple[list, list]:
        """The current values of `submodel`'s variables (it shares the model's layers)."""
        state, model = self._current_state(), self.model
        by_id = {id(v): value for v, value in zip(
            model.trainable_variables + model.non_trainable_variables,
            state.trainable + state.non_trainable, strict=True)}
        return ([by_id[id(v)] for v in submodel.trainable_variables],
                [by_id[id(v)] for v in submodel.non_trainable_variables])

    def _staged_outputs(self, x: np.ndarray) -> dict[str, jax.Array]:
        """Every stage's eval-mode output (NHWC) on uint8 images `x`, jitted."""
        if self._staged is None:
            staged = self._staged = staged_model(self.model, self.stages())
            self._staged_forward = jax.jit(
                lambda values, images: staged.stateless_call(*values, _scale(images),
                                                             training=False)[0][1])
        return self._staged_forward(self._values_for(self._staged), jnp.asarray(x))

    def _stage_outputs(self, x: np.ndarray, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        taps = self._staged_outputs(x)
        return {stage: np.asarray(taps[stage], np.float32) for stage in stages}

    def _stage_gradient_function(self, stage: str) -> tuple[keras.Model, Callable]:
        """The model's rest from `stage` on, and the jitted gradient of its picked logits.

        JAX differentiates functions, not tensors of a forward pass: the gradient with
        respect to a stage's output is that of the model's rest, from the stage on (a
        functional model sharing the layers).

        Args:
            stage: a stage name of the built model.

        Returns:
            (the rest, `gradient(stage_output, its variables' values, picked)`, picked the
            (N, 1) class of each image).
        """
        if stage not in self._stage_gradient_functions:
            tail = keras.Model(self.model.get_layer(f"{stage}{STAGE_SUFFIX}").output,
                               self.model.outputs[0])

            def score(stage_output, values, picked):
                logits, _ = tail.stateless_call(*values, stage_output, training=False)
                # Images are independent in eval mode, so the gradient of the sum is,
                # image by image, the gradient of that image's own class logit.
                return jnp.take_along_axis(logits.astype(jnp.float32), picked, axis=1).sum()

            self._stage_gradient_functions[stage] = (tail, jax.jit(jax.grad(score)))
        return self._stage_gradient_functions[stage]

    def _stage_gradients(self, x: np.ndarray, stage: str,
                         class_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        activations = self._staged_outputs(x)[stage]
        tail, gradient_of = self._stage_gradient_function(stage)
        gradients = gradient_of(activations, self._values_for(tail),
                                jnp.asarray(class_index)[:, None])
        return np.asarray(activations, np.float32), np.asarray(gradients, np.float32)

    # --- training and inference ------------------------------------------------------
    def _prepare_training(self, config: TrainConfig, class_weights: np.ndarray,
                          layers: frozenset[str] | None = None) -> None:
        self._write_back()
        model, smoothing = self.model, config.label_smoothing
        table = jnp.asarray(class_weights, jnp.float32)
        variables = model.trainable_variables
        # The gradient is taken, and the optimizer updates, these alone; the layers stay
        # trainable, so BatchNorm keeps its training-mode behaviour in frozen layers too.
        if layers is None:
            trained = list(range(len(variables)))
        else:
            chosen = {id(v) for layer in model.layers if layer.name in layers
                      for v in layer.trainable_weights}
            trained = [i for i, v in enumerate(variables) if id(v) in chosen]
        optimizer = make_training_optimizer(config, [variables[i] for i in trained])
        if not optimizer.built:
            optimizer.build([variables[i] for i in trained])
        rate_index = next(i for i, v in enumerate(optimizer.variables)
                          if v is optimizer.learning_rate)
        scaling = self._loss_scaling = config.precision == "float16"

        def loss_of(trained_values, state, optimizer_values, images, labels):
            values = list(state.trainable)
            for i, value in zip(trained, trained_values, strict=True):
                values[i] = value
            logits, non_trainable = model.stateless_call(values, state.non_trainable,
                                                         _scale(images), training=True)
            # The loss in float32 whatever the precision.
            loss = training_loss(logits.astype(jnp.float32), labels, table, smoothing)
            scaled = loss
            if scaling:  # the loss scale is an optimizer variable: read its value here
                mapping = list(zip(optimizer.variables, optimizer_values, strict=True))
                with keras.StatelessScope(state_mapping=mapping):
                    scaled = optimizer.scale_loss(loss)
            return scaled, (loss, non_trainable)

        gradient_of = jax.value_and_grad(loss_of, has_aux=True)

        def step(state: TrainingState, optimizer_values, images, labels, learning_rate):
            # The rate is an argument: a new value is new data, not a recompilation.
            optimizer_values = list(optimizer_values)
            optimizer_values[rate_index] = learning_rate
            trained_values = [state.trainable[i] for i in trained]
            (_, (loss, non_trainable)), gradients = gradient_of(
                trained_values, state, optimizer_values, images, labels)
            trained_values, optimizer_values = optimizer.stateless_apply(
                optimizer_values, gradients, trained_values)
            values = list(state.trainable)
            for i, value in zip(trained, trained_values, strict=True):
                values[i] = value
            return TrainingState(values, non_trainable), optimizer_values, loss

        self._optimizer = optimizer
        self._optimizer_values = [v.value for v in optimizer.variables]
        self._step = jax.jit(step, donate_argnums=(0, 1))

    def _train_epoch(self, batches, learning_rates: np.ndarray) -> float:
        state, optimizer_values = self._current_state(), self._optimizer_values
        losses = []
        for (images, labels), rate in zip(batches, learning_rates, strict=True):
            state, optimizer_values, loss = self._step(
                state, optimizer_values, jnp.asarray(images), jnp.asarray(labels),
                jnp.float32(rate))
            losses.append(loss)
        self._state, self._optimizer_values = state, optimizer_values
        self._in_flight = [state, optimizer_values]
        # The only host sync of the epoch: reading the loss waits for the device.
        return float(jnp.mean(jnp.stack(losses)))

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        state = self._current_state()
        out = [self._predict(state, jnp.asarray(x[start:start + batch_size]))
               for start in range(0, len(x), batch_size)]
        return np.concatenate([np.asarray(p) for p in out]).astype(np.float64)


def _scale(images):
    """uint8 (or float) pixels → float32 in [-1, 1], as every backend scales them."""
    return (jnp.asarray(images, jnp.float32) - PIXEL_CENTER) / PIXEL_SCALE

