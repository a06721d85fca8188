"""Keras optimizers that take torch.optim's steps, formula for formula (docs/design.md §4).

Keras's stock optimizers differ from torch's in ways a pinned constant cannot fix: Adam
adds ε before the bias correction, SGD folds the learning rate into its velocity
(v ← m·v − lr·g, which parts from torch's buf ← m·buf + g; p ← p − lr·buf whenever the
rate changes between steps), RMSprop adds ε inside the square root, and the base
optimizer's `weight_decay` is always decoupled (p ← p − lr·wd·p, before the step), where
torch's Adam, SGD and RMSprop add an L2 term to the gradient. So each class here writes
torch's update in its `update_step` and owns its weight decay there too: the Keras
`weight_decay` argument stays None, so the base optimizer applies none of its own.

Each update is a single step of the matching `torch.optim` class's single-tensor code
path; the iteration counter (`self.iterations`) is the step count t − 1.
"""

from __future__ import annotations

import math

# The framework package that imports this module has pinned KERAS_BACKEND
# (backends/keras/__init__.py).
import keras

from backends.base import LOSS_SCALE_GROWTH_STEPS, LOSS_SCALE_INITIAL
from backends.train_config import TrainConfig

ops = keras.ops
# JAX computes in float32 at most: FER-Bench leaves `jax_enable_x64` off, as JAX's users do
# and as Keras's JAX backend expects.
_HAS_FLOAT64 = keras.backend.backend() != "jax"
_WIDEST_FLOAT = "float64" if _HAS_FLOAT64 else "float32"


def _bias_correction(beta: float, step):
    """Adam's 1 − β^t at step t, to the float32 accuracy torch's has once applied.

    torch computes it in Python (float64). So does this where the backend has float64
    (`ops.cast` would round the Python β to float32 first: 1 − β2^t in float32 is 1.3e-5
    off at t = 1, β2 = 0.999 not being a float32 number). Without float64 (JAX) it is
    −expm1(t·ln β), ln β taken in Python in float64: about 1e-7 off, float32's rounding.

    Args:
        beta: the moment's decay β, a Python float.
        step: the 1-based step t, an integer tensor.

    Returns:
        1 − β^t, a float64 scalar where the backend has float64, else float32.
    """
    if _HAS_FLOAT64:
        return 1 - ops.power(ops.convert_to_tensor(beta, "float64"), ops.cast(step, "float64"))
    return -ops.expm1(ops.cast(step, "float32") * math.log(beta))


class _TorchWeightDecay:
    """torch's weight decay for the optimizers below: L2 on the gradient or decoupled.

    Attributes:
        torch_weight_decay: the decay wd, ≥ 0.
        decoupled_weight_decay: False: g ← g + wd·p (torch's Adam, SGD, RMSprop);
            True: p ← p·(1 − lr·wd) before the step (torch's AdamW).
    """

    torch_weight_decay: float = 0.0
    decoupled_weight_decay: bool = False

    def _decayed_gradient(self, gradient, variable, learning_rate):
        """Casts to the variable's dtype and applies the decay to `variable` or `gradient`.

        Every update step starts here. Returns the gradient to step on and the rate.
        """
        dtype = variable.dtype
        gradient, learning_rate = ops.cast(gradient, dtype), ops.cast(learning_rate, dtype)
        if not self.torch_weight_decay:
            return gradient, learning_rate
        decay = ops.cast(self.torch_weight_decay, dtype)
        if self.decoupled_weight_decay:
            self.assign(variable, ops.multiply(variable, 1 - learning_rate * decay))
            return gradient, learning_rate
        return ops.add(gradient, ops.multiply(variable, decay)), learning_rate


class TorchOrderAdam(_TorchWeightDecay, keras.optimizers.Adam):
    """`torch.optim.Adam` (or `AdamW`, with `decoupled_weight_decay`), non-amsgrad.

    m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
    p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε).

    Keras adds ε to √v before correcting the bias, so its effective ε is
    1/√(1 − β2^t) times torch's: 31× at step 1, enough to change the first steps of
    weights with small gradients. Pinning the ε value alone is not enough.

    Args:
        learning_rate: the initial rate (a float: Keras keeps it in a variable the
            traced step reads).
        beta_1: first-moment decay.
        beta_2: second-moment decay.
        epsilon: added after the bias correction.
        weight_decay: torch's `weight_decay`, ≥ 0.
        decoupled_weight_decay: AdamW's decoupled decay instead of Adam's L2 term.
    """

    def __init__(
        self,
        learning_rate: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon)
        self.torch_weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        gradient, learning_rate = self._decayed_gradient(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = self.iterations + 1
        bias_1, bias_2 = (_bias_correction(beta, step) for beta in (self.beta_1, self.beta_2))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        # torch's order, v·β2 then + (1 − β2)·g² (its mul_ then addcmul_), in two assigns:
        # one expression would hold one full-size temporary more at a time (+200 MB at
        # the peak for vgg16).
        self.assign(v, ops.multiply(v, self.beta_2))
        self.assign_add(v, ops.multiply(ops.square(gradient), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.cast(ops.sqrt(bias_2), dtype)),
                              self.epsilon)
        step_size = ops.cast(ops.divide(ops.cast(learning_rate, _WIDEST_FLOAT), bias_1), dtype)
        self.assign_sub(variable, ops.divide(ops.multiply(m, step_size), denominator))


class TorchSGD(_TorchWeightDecay, keras.optimizers.SGD):
    """`torch.optim.SGD` without dampening: the rate multiplies the buffer, not the gradient.

    g ← g + wd·p;  buf ← m·buf + g;  p ← p − lr·(g + m·buf) with Nesterov, else
    p ← p − lr·buf. The buffer starts at zero, so the first step's buf is g, as torch
    sets it. Without momentum: p ← p − lr·g.

    Args:
        learning_rate: the initial rate.
        momentum: m, in [0, 1).
        nesterov: Nesterov momentum (needs m > 0).
        weight_decay: torch's L2 `weight_decay`, ≥ 0.
    """

    def __init__(
        self,
        learning_rate: float = 1e-2,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)
        self.torch_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        gradient, learning_rate = self._decayed_gradient(gradient, variable, learning_rate)
        dtype = variable.dtype
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            momentum = ops.cast(self.momentum, dtype)
            self.assign(buffer, ops.add(ops.multiply(buffer, momentum), gradient))
            if self.nesterov:
                gradient = ops.add(gradient, ops.multiply(buffer, momentum))
            else:
                gradient = buffer
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))


class TorchRMSprop(_TorchWeightDecay, keras.optimizers.RMSprop):
    """`torch.optim.RMSprop` without momentum, not centered: ε outside the square root.

    g ← g + wd·p;  v ← α·v + (1 − α)·g²;  p ← p − lr·g / (√v + ε). Keras's own RMSprop
    divides by √(v + ε) instead.

    Args:
        learning_rate: the initial rate.
        alpha: the smoothing constant α (Keras's rho), in [0, 1).
        epsilon: ε, added after the square root.
        weight_decay: torch's L2 `weight_decay`, ≥ 0.
    """

    def __init__(
        self,
        learning_rate: float = 1e-2,
        alpha: float = 0.99,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate=learning_rate, rho=alpha, epsilon=epsilon)
        self.torch_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        gradient, learning_rate = self._decayed_gradient(gradient, variable, learning_rate)
        v = self._velocities[self._get_variable_index(variable)]
        # torch's order, v·α then + (1 − α)·g², in two assigns (one full-size temporary
        # fewer alive at a time than in one expression).
        self.assign(v, ops.multiply(v, self.rho))
        self.assign_add(v, ops.multiply(ops.square(gradient), 1 - self.rho))
        denominator = ops.add(ops.sqrt(v), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(gradient, learning_rate), denominator))


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer `config` names, with every hyper-parameter from the recipe.

    Args:
        config: the shared recipe (its optimizer, learning_rate, epsilon, betas,
            weight_decay, momentum, nesterov and rmsprop_alpha).

    Returns:
        A Keras optimizer taking torch's steps; its learning rate is the recipe's base
        rate until the training loop assigns each step's.
    """
    lr, decay = config.learning_rate, config.weight_decay
    if config.optimizer in ("adam", "adamw"):
        return TorchOrderAdam(lr, config.adam_beta1, config.adam_beta2, config.epsilon, decay,
                              decoupled_weight_decay=config.optimizer == "adamw")
    if config.optimizer == "sgd":
        return TorchSGD(lr, config.momentum, config.nesterov, decay)
    return TorchRMSprop(lr, config.rmsprop_alpha, config.epsilon, decay)


def make_training_optimizer(config: TrainConfig, variables) -> keras.optimizers.Optimizer:
    """`make_optimizer`'s optimizer for a training step, with float16's loss scale.

    Under float16 it is wrapped in a LossScaleOptimizer with torch's GradScaler
    semantics (LOSS_SCALE_*): unscale, skip a non-finite step and halve the scale,
    double it after a run of finite steps. That one is built over `variables` at once:
    a step traced before would bake in the initial scale as a constant.

    Args:
        config: the shared recipe (its precision and `make_optimizer`'s fields).
        variables: the variables the optimizer will update.

    Returns:
        The optimizer; built only when it scales the loss.
    """
    optimizer = make_optimizer(config)
    if config.precision != "float16":
        return optimizer
    optimizer = keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=LOSS_SCALE_INITIAL,
        dynamic_growth_steps=LOSS_SCALE_GROWTH_STEPS)
    optimizer.build(variables)
    return optimizer
