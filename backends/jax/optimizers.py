"""Optimizers that take torch.optim's steps, formula for formula (docs/design.md §4).

Mirrors backends/tf/optimizers.py. optax's stock transformations part from torch's where
a pinned constant cannot fix them: `optax.adam` computes its bias corrections 1 − β^t in
float32 (1.3e-5 off at t = 1: 0.999 is no float32 number) and `optax.rmsprop` divides by
√(v + ε), where torch divides by √v + ε. `optax.sgd` after `optax.add_decayed_weights`
would take torch's SGD steps, but one family written out keeps every formula in one
place, beside the TF ones. So each optimizer here is written out, pure and jit-able, as
a pair of functions (`Optimizer.init`, `Optimizer.update`) over any pytree of
parameters: an nnx.State.

Each update is a single step of the matching `torch.optim` class's single-tensor code
path, the learning rate fed from the host each step. The step count lives in the state,
on the device, so a step skipped by the float16 loss scale counts no step, as torch's
GradScaler skips `optimizer.step()`. The bias corrections 1 − β^t are computed as
−expm1(t · ln β), ln β from the host in float64: within an ulp of torch's float64
`1 - beta ** t`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from backends.train_config import TrainConfig

Tree = Any
State = dict[str, Any]


class Optimizer(NamedTuple):
    """A torch optimizer as two pure functions.

    Attributes:
        init: parameters → the optimizer's state (step count and buffers).
        update: (gradients, state, parameters, learning rate) → (new parameters, new
            state); the learning rate is a float32 scalar, the step's.
    """

    init: Callable[[Tree], State]
    update: Callable[[Tree, State, Tree, jax.Array], tuple[Tree, State]]


def _zeros(params: Tree) -> Tree:
    return jax.tree.map(jnp.zeros_like, params)


def _bias_correction(step: jax.Array, beta: float) -> jax.Array:
    """1 − β^step in float32, to an ulp of torch's float64 figure (module docstring)."""
    if beta == 0.0:
        return jnp.ones((), jnp.float32)
    return -jnp.expm1(step.astype(jnp.float32) * jnp.float32(math.log(beta)))


def _l2(gradients: Tree, params: Tree, weight_decay: float) -> Tree:
    """torch's coupled weight decay: g + wd·p (the gradients unchanged when wd is 0)."""
    if not weight_decay:
        return gradients
    return jax.tree.map(lambda g, p: g + weight_decay * p, gradients, params)


def adam(beta1: float, beta2: float, epsilon: float, weight_decay: float,
         decoupled: bool) -> Optimizer:
    """`torch.optim.Adam`, or `AdamW` with `decoupled`, non-amsgrad.

    m ← m + (1 − β1)·(g − m) (torch's lerp);  v ← β2·v + (1 − β2)·g²;
    p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε).
    Adam adds wd·p to g first; AdamW multiplies p by 1 − lr·wd first.

    Args:
        beta1: first-moment decay.
        beta2: second-moment decay.
        epsilon: added after the bias correction.
        weight_decay: torch's `weight_decay`, ≥ 0.
        decoupled: AdamW's decoupled decay instead of Adam's L2 term.

    Returns:
        The Optimizer.
    """

    def init(params: Tree) -> State:
        return {"step": jnp.zeros((), jnp.int32), "m": _zeros(params), "v": _zeros(params)}

    def update(gradients: Tree, state: State, params: Tree,
               learning_rate: jax.Array) -> tuple[Tree, State]:
        step = state["step"] + 1
        if decoupled and weight_decay:
            params = jax.tree.map(lambda p: p * (1 - learning_rate * weight_decay), params)
        elif not decoupled:
            gradients = _l2(gradients, params, weight_decay)
        m = jax.tree.map(lambda m, g: m + (1 - beta1) * (g - m), state["m"], gradients)
        v = jax.tree.map(lambda v, g: v * beta2 + (1 - beta2) * (g * g), state["v"], gradients)
        step_size = learning_rate / _bias_correction(step, beta1)
        root_bias2 = jnp.sqrt(_bias_correction(step, beta2))
        params = jax.tree.map(
            lambda p, m, v: p - step_size * (m / (jnp.sqrt(v) / root_bias2 + epsilon)),
            params, m, v)
        return params, {"step": step, "m": m, "v": v}

    return Optimizer(init, update)


def sgd(momentum: float, nesterov: bool, weight_decay: float) -> Optimizer:
    """`torch.optim.SGD` without dampening: the rate multiplies the buffer, not the gradient.

    g ← g + wd·p;  buf ← m·buf + g;  p ← p − lr·(g + m·buf) with Nesterov, else
    p ← p − lr·buf. The buffer starts at zero, so the first step's buf is g, as torch
    sets it. Without momentum: p ← p − lr·g.

    Args:
        momentum: m, in [0, 1).
        nesterov: Nesterov momentum (needs m > 0).
        weight_decay: torch's L2 `weight_decay`, ≥ 0.

    Returns:
        The Optimizer.
    """

    def init(params: Tree) -> State:
        return {"step": jnp.zeros((), jnp.int32),
                "buffer": _zeros(params) if momentum else None}

    def update(gradients: Tree, state: State, params: Tree,
               learning_rate: jax.Array) -> tuple[Tree, State]:
        gradients = _l2(gradients, params, weight_decay)
        buffer = state["buffer"]
        if momentum:
            buffer = jax.tree.map(lambda b, g: momentum * b + g, buffer, gradients)
            if nesterov:
                gradients = jax.tree.map(lambda g, b: g + momentum * b, gradients, buffer)
            else:
                gradients = buffer
        params = jax.tree.map(lambda p, g: p - learning_rate * g, params, gradients)
        return params, {"step": state["step"] + 1, "buffer": buffer}

    return Optimizer(init, update)


def rmsprop(alpha: float, epsilon: float, weight_decay: float) -> Optimizer:
    """`torch.optim.RMSprop` without momentum, not centered: ε outside the square root.

    g ← g + wd·p;  v ← α·v + (1 − α)·g²;  p ← p − lr·g / (√v + ε).

    Args:
        alpha: the smoothing constant α, in [0, 1).
        epsilon: ε, added after the square root.
        weight_decay: torch's L2 `weight_decay`, ≥ 0.

    Returns:
        The Optimizer.
    """

    def init(params: Tree) -> State:
        return {"step": jnp.zeros((), jnp.int32), "v": _zeros(params)}

    def update(gradients: Tree, state: State, params: Tree,
               learning_rate: jax.Array) -> tuple[Tree, State]:
        gradients = _l2(gradients, params, weight_decay)
        v = jax.tree.map(lambda v, g: v * alpha + (1 - alpha) * (g * g), state["v"], gradients)
        params = jax.tree.map(lambda p, g, v: p - learning_rate * (g / (jnp.sqrt(v) + epsilon)),
                              params, gradients, v)
        return params, {"step": state["step"] + 1, "v": v}

    return Optimizer(init, update)


def make_optimizer(config: TrainConfig) -> Optimizer:
    """The optimizer `config` names, with every hyper-parameter from the recipe.

    Args:
        config: the shared recipe (its optimizer, epsilon, betas, weight_decay, momentum,
            nesterov and rmsprop_alpha; the learning rate comes with each step).

    Returns:
        An Optimizer taking torch's steps.
    """
    decay = config.weight_decay
    if config.optimizer in ("adam", "adamw"):
        return adam(config.adam_beta1, config.adam_beta2, config.epsilon, decay,
                    decoupled=config.optimizer == "adamw")
    if config.optimizer == "sgd":
        return sgd(config.momentum, config.nesterov, decay)
    return rmsprop(config.rmsprop_alpha, config.epsilon, decay)
