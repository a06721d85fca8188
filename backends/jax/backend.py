"""The native JAX Backend: Flax NNX models and a `jax.jit` train step over pure state.

Mirrors backends/torch/backend.py and backends/tf/backend.py method for method. The
train step is the functional form JAX users write for speed: the model is split once per
epoch into its trained parameters, frozen parameters and the rest (BatchNorm statistics,
the dropout stream's key and count), a jitted function maps those state trees, the
batch and the step's learning rate to new trees, and the model takes them back at the
epoch's end. XLA compiles the step on its first call, inside the first epoch, which the
benchmark reports apart as it does TF's tracing (docs/design.md §5).

Weight conversion to the canonical (torch) layout is done per module type in
`_canonical_variables`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from flax import nnx

from backends.base import (
    LOSS_SCALE_GROWTH_STEPS,
    LOSS_SCALE_INITIAL,
    PIXEL_CENTER,
    PIXEL_SCALE,
    Backend,
)
from backends.jax.models import StageTap, create_model
from backends.jax.optimizers import make_optimizer
from backends.jax.runtime import configure_runtime
from backends.train_config import TrainConfig

_MB = 1024 * 1024
# The type convolutions and dense layers compute in, per TrainConfig precision; float32
# has none: the layers' own float32.
COMPUTE_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}


class JaxBackend(Backend):
    """JAX / Flax NNX implementation of Backend (the first GPU when visible, else CPU)."""

    name = "jax"
    framework = "JAX (Flax NNX)"

    def __init__(self, threads: int | None = None, deterministic: bool = False) -> None:
        super().__init__(threads, deterministic)
        self.runtime = configure_runtime(threads, deterministic)
        self._model: nnx.Module | None = None
        # Whether the train step's trees are newer than the model's own variables, which
        # then hold arrays the step has donated (`model` writes the trees back first).
        self._model_behind = False
        self._seed = 0
        self._step = None
        self._training: _TrainingState | None = None
        self._loss_scaling = False
        # The last results dispatched (arrays or a tree of them): JAX queues work and
        # returns at once, and waiting on the last results waits for everything queued
        # before them (one device, in order).
        self._pending: Any = None

    @property
    def model(self) -> nnx.Module | None:
        """The built model, holding the newest weights.

        Training steps update split-off trees, not the model (`_train_epoch`), so that a
        run of steps pays no split or merge; the first use of the model afterwards
        writes the trees back into it.
        """
        if self._model_behind:
            nnx.update(self._model, self._training.params, self._training.rest)
            self._model_behind = False
        return self._model

    @model.setter
    def model(self, model: nnx.Module | None) -> None:
        self._model, self._model_behind = model, False
        self._step = self._training = None

    def versions(self) -> dict[str, str | None]:
        return {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            # e.g. "cuda 12080": the CUDA runtime XLA was built against and runs on.
            "cuda": self.runtime.device.client.platform_version if self.runtime.on_gpu
            else None,
        }

    def device_name(self) -> str:
        return self.runtime.device.device_kind if self.runtime.on_gpu else "cpu"

    def flags(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "device": runtime.device.platform,
            "jit": True,
            # The effective precision: the dtype convolutions and dense layers compute in
            # (None: float32) and whether a dynamic scale scales the loss.
            "precision": self.precision,
            "compute_dtype": None if self.precision == "float32" else self.precision,
            "loss_scaling": self._loss_scaling,
            "xla_preallocate": False,
            "intra_op_threads": runtime.intra_op_threads,
            "deterministic": runtime.deterministic,
            "matmul_precision": runtime.matmul_precision,
            "xla_flags": runtime.xla_flags,
        }

    def seed(self, seed: int) -> None:
        # JAX has no global generator: the seed keys the next build's Rngs (its native
        # initial weights) and the built model's dropout stream.
        self._seed = seed
        if self.model is not None:
            nnx.reseed(self.model, dropout=seed)

    # --- measurement hooks -----------------------------------------------------------
    def synchronize(self) -> None:
        if self._pending is not None:
            jax.block_until_ready(self._pending)

    def gpu_allocator_peak_mb(self) -> float | None:
        if not self.runtime.on_gpu:
            return None
        # XLA's allocator statistics; with preallocation off (backends/jax/__init__.py)
        # the peak is what the run used, not a reservation.
        return self.runtime.device.memory_stats()["peak_bytes_in_use"] / _MB

    def matmul_op(self, size: int) -> Callable[[], Any]:
        keys = jax.random.split(jax.random.key(0))
        a, b = (jax.random.uniform(key, (size, size), jnp.float32) for key in keys)
        matmul = jax.jit(jnp.matmul)
        matmul(a, b).block_until_ready()  # compiled here, so the callable only queues

        def queue() -> jax.Array:
            self._pending = matmul(a, b)
            return self._pending

        return queue

    # --- model -----------------------------------------------------------------------
    def _build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str,
        overrides: dict[str, Any],
    ) -> None:
        rngs = nnx.Rngs(params=self._seed, dropout=self._seed)
        self.model = create_model(
            model_name, input_shape, num_classes,
            framework_args={"rngs": rngs, "dtype": COMPUTE_DTYPES.get(precision)},
            **overrides)

    def num_trainable_params(self) -> int:
        # Every parameter: a freeze changes what is trained, not what the model has.
        return int(sum(leaf.size for leaf in jax.tree.leaves(nnx.state(self.model, nnx.Param))))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: np.array(convert.to_canonical(np.asarray(variable[...])), np.float32)
                for name, (variable, convert) in _canonical_variables(self.model).items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        variables = _canonical_variables(self.model)
        if set(weights) != set(variables):
            missing = sorted(set(variables) - set(weights))
            extra = sorted(set(weights) - set(variables))
            raise ValueError(f"weight names differ: missing {missing}, unexpected {extra}")
        converted = {}
        for name, (variable, convert) in variables.items():
            value = convert.from_canonical(np.asarray(weights[name], np.float32))
            if value.shape != variable[...].shape:
                raise ValueError(f"weight {name!r} converts to shape {value.shape}, "
                                 f"model expects {variable[...].shape}")
            converted[name] = value
        for name, (variable, _) in variables.items():
            variable[...] = jnp.asarray(converted[name])

    def logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        # Eager, so that a training-mode pass updates the BatchNorm statistics in place.
        if training:
            self.model.train()
        else:
            self.model.eval()
        return np.asarray(self.model(jnp.asarray(x)).astype(jnp.float32))

    # --- what the model sees ---------------------------------------------------------
    def _stage_outputs(self, x: np.ndarray, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        self.model.eval()
        tap = StageTap()
        self.model(_scale(jnp.asarray(x)), tap)
        return {stage: np.asarray(tap.outputs[stage], np.float32) for stage in stages}

    def _stage_gradients(self, x: np.ndarray, stage: str,
                         class_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        images = _scale(jnp.asarray(x))
        rows = jnp.arange(len(x))
        shape = jax.eval_shape(lambda: _stage_output(self.model, images, stage))

        def picked_logits(offset: jax.Array) -> tuple[jax.Array, jax.Array]:
            tap = StageTap({stage: offset})
            logits = self.model(images, tap).astype(jnp.float32)
            # Images are independent in eval mode, so the gradient of the sum is, image
            # by image, the gradient of that image's own class logit.
            return logits[rows, class_index].sum(), tap.outputs[stage]

        # The gradient with respect to a zero offset added to the stage's output is the
        # gradient with respect to the output itself (StageTap).
        gradients, activations = jax.grad(picked_logits, has_aux=True)(
            jnp.zeros(shape.shape, shape.dtype))
        return np.asarray(activations, np.float32), np.asarray(gradients, np.float32)

    # --- training and inference ------------------------------------------------------
    def _prepare_training(self, config: TrainConfig, class_weights: np.ndarray,
                          layers: frozenset[str] | None = None) -> None:
        optimizer = make_optimizer(config)
        smoothing, table = config.label_smoothing, jnp.asarray(class_weights)
        trained = nnx.Param if layers is None else nnx.All(
            nnx.Param, lambda path, _: ".".join(map(str, path[:-1])) in layers)
        scaling = self._loss_scaling = config.precision == "float16"
        self.model.train()
        graphdef, params, frozen, rest = nnx.split(self.model, trained, nnx.Param, ...)

        def step(params, frozen, rest, optimizer_state, loss_scale, images, labels,
                 learning_rate):
            def loss_of(params):
                # Fresh variables of this trace, which BatchNorm may update (merged
                # without a copy, they would be the jit trace's and refuse it).
                model = nnx.merge(graphdef, params, frozen, rest, copy=True)
                # The loss in float32 whatever the precision.
                logits = model(_scale(images)).astype(jnp.float32)
                loss = training_loss(logits, labels, table, smoothing)
                *_, new_rest = nnx.split(model, trained, nnx.Param, ...)
                return (loss * loss_scale.scale if scaling else loss), (loss, new_rest)

            gradients, (loss, rest) = jax.grad(loss_of, has_aux=True)(params)
            if not scaling:
                params, optimizer_state = optimizer.update(gradients, optimizer_state, params,
                                                           learning_rate)
                return params, rest, optimizer_state, loss_scale, loss
            # torch's GradScaler (LOSS_SCALE_*): unscale, skip a non-finite step and
            # halve the scale, double it after a run of finite steps.
            gradients = jax.tree.map(lambda g: g * (1.0 / loss_scale.scale), gradients)
            finite = jnp.all(jnp.array([jnp.isfinite(g).all()
                                        for g in jax.tree.leaves(gradients)]))
            stepped = optimizer.update(gradients, optimizer_state, params, learning_rate)
            params, optimizer_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), stepped, (params, optimizer_state))
            return params, rest, optimizer_state, loss_scale.next(finite), loss

        compiled = jax.jit(step, donate_argnums=(0, 2, 3, 4))
        self._training = _TrainingState(graphdef, trained, params, frozen, rest,
                                        optimizer.init(params), _LossScale.initial())

        def host_step(images: np.ndarray, labels: np.ndarray,
                      learning_rate: np.float32) -> jax.Array:
            state = self._training
            params, rest, optimizer_state, loss_scale, loss = compiled(
                state.params, state.frozen, state.rest, state.optimizer_state,
                state.loss_scale, images, labels, learning_rate)
            self._training = state._replace(params=params, rest=rest,
                                            optimizer_state=optimizer_state,
                                            loss_scale=loss_scale)
            return loss

        self._step = host_step

    def _train_epoch(self, batches, learning_rates: np.ndarray) -> float:
        if not self._model_behind:
            # The model holds the newest weights (built, loaded or used since the last
            # steps): the step starts from them. The step's graph is `_prepare_training`'s,
            # in training mode, whatever mode the model is in now.
            state = self._training
            _, params, frozen, rest = nnx.split(self._model, state.trained, nnx.Param, ...)
            self._training = state._replace(params=params, frozen=frozen, rest=rest)
        total = jnp.zeros((), jnp.float32)
        steps = 0
        try:
            for (images, labels), rate in zip(batches, learning_rates, strict=True):
                total = total + self._step(images, labels, np.float32(rate))
                steps += 1
        finally:
            # The step donates the trees it is given: the newest are the step's, which
            # `model` writes back at its next use.
            self._model_behind = True
        # The step's every output, not the loss alone: `synchronize` waits for the last
        # update too.
        state = self._training
        self._pending = (total, state.params, state.rest, state.optimizer_state)
        # The only host sync of the epoch: reading the loss waits for the device.
        return float(total) / steps

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        self.model.eval()
        graphdef, state = nnx.split(self.model)
        out = [_predict_step(graphdef, state, x[start:start + batch_size])
               for start in range(0, len(x), batch_size)]
        self._pending = out[-1]
        return np.concatenate([np.asarray(p) for p in out]).astype(np.float64)


class _LossScale(NamedTuple):
    """The float16 loss scale and its run of finite steps (torch's GradScaler state)."""

    scale: jax.Array
    finite_steps: jax.Array

    @classmethod
    def initial(cls) -> _LossScale:
        return cls(jnp.float32(LOSS_SCALE_INITIAL), jnp.zeros((), jnp.int32))

    def next(self, finite: jax.Array) -> _LossScale:
        """The state after a step: halved on a non-finite gradient, doubled after
        LOSS_SCALE_GROWTH_STEPS finite ones in a row."""
        run = jnp.where(finite, self.finite_steps + 1, 0)
        grow = run == LOSS_SCALE_GROWTH_STEPS
        scale = jnp.where(finite, jnp.where(grow, self.scale * 2.0, self.scale),
                          self.scale * 0.5)
        return _LossScale(scale, jnp.where(grow, 0, run))


class _TrainingState(NamedTuple):
    """What the train step maps, between steps: the model split, and the optimizer's."""

    graphdef: Any
    trained: Any  # the nnx filter of the trained parameters
    params: nnx.State
    frozen: nnx.State
    rest: nnx.State
    optimizer_state: Any
    loss_scale: _LossScale


def _scale(images: jax.Array) -> jax.Array:
    return (images.astype(jnp.float32) - PIXEL_CENTER) / PIXEL_SCALE


def _stage_output(model: nnx.Module, images: jax.Array, stage: str) -> jax.Array:
    tap = StageTap()
    model(images, tap)
    return tap.outputs[stage]


@functools.partial(jax.jit, static_argnums=0)
def _predict_step(graphdef, state: nnx.State, images: jax.Array) -> jax.Array:
    logits = nnx.merge(graphdef, state)(_scale(images)).astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1)


def training_loss(logits: jax.Array, labels: jax.Array, class_weights: jax.Array,
                  smoothing: float) -> jax.Array:
    """The training step's loss, torch's `training_loss` in JAX.

    Args:
        logits: (N, C) float32 logits.
        labels: (N,) integer labels.
        class_weights: (C,) float32 per-class loss weights.
        smoothing: label smoothing in [0, 1).

    Returns:
        The class-weighted mean of the per-sample cross-entropies with torch's label
        smoothing, (1 − s)·onehot + s/C: Σ wᵢ·ℓᵢ / Σ wᵢ, wᵢ the weight of sample i's class.
    """
    num_classes = logits.shape[-1]
    target = jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    per_sample = -(target * jax.nn.log_softmax(logits, axis=-1)).sum(-1)
    weights = class_weights[labels]
    return (per_sample * weights).sum() / weights.sum()


# --- canonical weight conversion ---------------------------------------------------------
class _Conversion(NamedTuple):
    """How one variable's array maps to and from its canonical array."""

    to_canonical: Callable[[np.ndarray], np.ndarray]
    from_canonical: Callable[[np.ndarray], np.ndarray]


_AS_IS = _Conversion(lambda a: a, lambda a: a)
# HWIO ↔ OIHW.
_CONV_KERNEL = _Conversion(lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0))
_DENSE_KERNEL = _Conversion(lambda a: a.T, lambda a: a.T)
# A module type's variable names → the canonical parameter names (torch's).
_CANONICAL_NAMES = {
    nnx.Conv: {"kernel": "weight", "bias": "bias"},
    nnx.Linear: {"kernel": "weight", "bias": "bias"},
    nnx.BatchNorm: {"scale": "weight", "bias": "bias", "mean": "running_mean",
                    "var": "running_var"},
    nnx.GroupNorm: {"scale": "weight", "bias": "bias"},
}


def _flattened_dense_kernel(hwc: tuple[int, int, int]) -> _Conversion:
    """A dense kernel after an NHWC flatten: rows (H, W, C) here, (C, H, W) canonically."""
    h, w, c = hwc

    def to_canonical(kernel: np.ndarray) -> np.ndarray:
        return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T

    def from_canonical(weight: np.ndarray) -> np.ndarray:
        return weight.T.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)

    return _Conversion(to_canonical, from_canonical)


def _canonical_variables(model: nnx.Module) -> dict[str, tuple[nnx.Variable, _Conversion]]:
    """Canonical name → (the model's variable, how its array converts), in model order.

    Parameters and BatchNorm statistics only: the dropout stream's key and count are
    JAX's own RNG state, with no canonical counterpart.
    """
    variables = {}
    for path, module in nnx.iter_modules(model):
        prefix = "".join(f"{part}." for part in path)
        names = next((table for kind, table in _CANONICAL_NAMES.items()
                      if isinstance(module, kind)), {})
        for attribute, variable in vars(module).items():
            if not isinstance(variable, (nnx.Param, nnx.BatchStat)):
                continue
            conversion = _AS_IS
            if attribute == "kernel" and variable[...].ndim == 4:
                conversion = _CONV_KERNEL
            elif attribute == "kernel":
                hwc = getattr(module, "flatten_input_hwc", None)
                conversion = _DENSE_KERNEL if hwc is None else _flattened_dense_kernel(hwc)
            variables[f"{prefix}{names.get(attribute, attribute)}"] = (variable, conversion)
    return variables
