"""TF's optimizers take torch's steps (backends/tf/optimizers.py, docs/design.md §4).

Two levels: each Keras optimizer against its `torch.optim` class on the same gradients,
with a learning rate that changes every step (where folding the rate into a buffer shows)
and weight decay; then both Backends' whole training path (`fit`, the per-step schedule,
each backend's optimizer construction and step) for 20 steps on a softmax-regression
model, one per optimizer, to 1e-4 relative.
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.keras.optimizers import TorchOrderAdam, TorchRMSprop, TorchSGD  # noqa: E402
from backends.train_config import TrainConfig  # noqa: E402
from tests.conftest import backend_params, threads_for_tests  # noqa: E402
from tests.in_backend_process import (  # noqa: E402
    INPUT_SHAPE,
    dense_config,
    fit_keras_dense,
    keras_dense_model,
)
from tests.remote_backend import run_in_backend_process  # noqa: E402

# Steps whose rate changes every time, as in warm-up.
RATES = [0.1 * (k + 1) / 5 for k in range(5)]
# Small gradients next to large ones: where ε conventions part.
GRADIENTS = [np.array([1e-4, -3e-5, 2e-3, 0.5], np.float32) * (i + 1) * (-1) ** i
             for i in range(5)]
START = np.array([0.5, -1.0, 2.0, 0.1], np.float32)


def _tf_steps(optimizer):
    variable = keras.Variable(START.copy())
    for rate, gradient in zip(RATES, GRADIENTS, strict=True):
        optimizer.learning_rate.assign(rate)
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
    return variable.numpy()


def _torch_steps(optimizer_class, **kwargs):
    param = torch.tensor(START.copy(), requires_grad=True)
    optimizer = optimizer_class([param], lr=RATES[0], **kwargs)
    for rate, gradient in zip(RATES, GRADIENTS, strict=True):
        optimizer.param_groups[0]["lr"] = rate
        param.grad = torch.from_numpy(gradient.copy())
        optimizer.step()
    return param.detach().numpy()


@pytest.mark.parametrize(
    ("ours", "torch_class", "torch_kwargs"),
    [
        (lambda: TorchOrderAdam(epsilon=1e-4), torch.optim.Adam, {"eps": 1e-4}),
        (lambda: TorchOrderAdam(epsilon=1e-4, weight_decay=0.1), torch.optim.Adam,
         {"eps": 1e-4, "weight_decay": 0.1}),
        (lambda: TorchOrderAdam(epsilon=1e-4, weight_decay=0.1, decoupled_weight_decay=True),
         torch.optim.AdamW, {"eps": 1e-4, "weight_decay": 0.1}),
        (lambda: TorchSGD(momentum=0.9), torch.optim.SGD, {"momentum": 0.9}),
        (lambda: TorchSGD(momentum=0.9, nesterov=True, weight_decay=0.1), torch.optim.SGD,
         {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
        (lambda: TorchSGD(), torch.optim.SGD, {}),
        (lambda: TorchRMSprop(epsilon=1e-4, weight_decay=0.1), torch.optim.RMSprop,
         {"eps": 1e-4, "weight_decay": 0.1}),
    ],
    ids=["adam", "adam-l2", "adamw", "sgd-momentum", "sgd-nesterov-l2", "sgd-plain",
         "rmsprop-l2"],
)
def test_each_optimizer_takes_torchs_steps(ours, torch_class, torch_kwargs):
    expected = _torch_steps(torch_class, **torch_kwargs)
    np.testing.assert_allclose(_tf_steps(ours()), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("stock", "torch_class", "torch_kwargs"),
    [
        # ε added before the bias correction.
        (lambda: keras.optimizers.Adam(epsilon=1e-4), torch.optim.Adam, {"eps": 1e-4}),
        # The rate folded into the velocity: wrong as soon as the rate changes.
        (lambda: keras.optimizers.SGD(momentum=0.9), torch.optim.SGD, {"momentum": 0.9}),
        # ε inside the square root, and Keras's rho defaults to 0.9.
        (lambda: keras.optimizers.RMSprop(rho=0.99, epsilon=1e-4), torch.optim.RMSprop,
         {"eps": 1e-4}),
    ],
    ids=["adam", "sgd", "rmsprop"],
)
def test_the_stock_keras_optimizers_do_differ(stock, torch_class, torch_kwargs):
    """So the test above can tell torch's formulas from Keras's."""
    expected = _torch_steps(torch_class, **torch_kwargs)
    assert np.abs(_tf_steps(stock()) - expected).max() > 1e-3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": "lamb"}, "optimizer must be one of adam, adamw, sgd, rmsprop"),
        ({"epsilon": 0.0}, "epsilon must be a finite number > 0. Received: epsilon=0.0"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number ≥ 0"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number ≥ 0"),
        ({"momentum": 2}, r"momentum must be in \[0, 1\). Received: momentum=2"),
        ({"rmsprop_alpha": 1.0}, r"rmsprop_alpha must be in \[0, 1\)"),
        ({"adam_beta2": -0.1}, r"adam_beta2 must be in \[0, 1\)"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov requires momentum > 0"),
    ],
)
def test_optimizer_fields_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_adamw_without_weight_decay_is_allowed():
    assert TrainConfig(optimizer="adamw").weight_decay == 0.0


CLASSES = 3


def dense_start(seed: int, widths: tuple[int, ...] = (CLASSES,)):
    """The start of `_dense_backends`' dense layers: (kernels (out, in), biases), per layer."""
    rng = np.random.default_rng(seed)
    sizes = (int(np.prod(INPUT_SHAPE)), *widths)
    weights = [rng.normal(0, 0.3, (out, fan_in)).astype(np.float32)
               for fan_in, out in zip(sizes, sizes[1:], strict=False)]
    biases = [rng.normal(0, 0.1, out).astype(np.float32) for out in widths]
    return weights, biases


def _torch_dense_backend(weights, biases):
    """torch's Backend holding `dense_start`'s layers; returns it and its Linear layers."""
    modules, linears = [torch.nn.Flatten()], []
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
        modules += [linear] + ([torch.nn.ReLU()] if i < len(weights) - 1 else [])
        linears.append(linear)
    backend = create_backend("torch")
    backend.model = backend.runtime.place_model(torch.nn.Sequential(*modules))
    backend.model_name, backend.num_classes = "softmax_regression", weights[-1].shape[0]
    return backend, linears


def _dense_backends(seed: int, widths: tuple[int, ...] = (CLASSES,)):
    """Both Backends holding the same dense layers (ReLU between) on the flattened pixels.

    A catalog model cannot hold parameters to 1e-4: the frameworks' BatchNorm backward
    passes already give gradients ~1e-3 apart (relative) after one step, which any
    optimizer then carries. Dense layers have well-conditioned gradients that agree to
    float32 rounding, so what remains is the optimizers' and the schedule's agreement.
    With one channel, Keras's NHWC flatten and torch's NCHW flatten order pixels alike.
    The layers carry the same canonical names in both: torch's Sequential indices ("1",
    "3", …, after the Flatten and between the ReLUs), which the Keras layers are named.

    Returns:
        (tf_backend, its Dense layers, torch_backend, its Linear layers).
    """
    weights, biases = dense_start(seed, widths)
    tf_backend = create_backend("tf")
    tf_backend.model, denses = keras_dense_model(weights, biases)
    torch_backend, linears = _torch_dense_backend(weights, biases)
    tf_backend.model_name, tf_backend.num_classes = "softmax_regression", widths[-1]
    return tf_backend, denses, torch_backend, linears


def _softmax_regression_backends(seed: int):
    """Both Backends holding one dense layer on the flattened pixels, same weights."""
    tf_backend, (dense,), torch_backend, (linear,) = _dense_backends(seed)
    return tf_backend, dense, torch_backend, linear


# 20 epochs of one step each (the 16 images are one batch), 19 of them warm-up: the rate
# changes at every step until it reaches the base rate, at which the last step runs.
STEPS = 20
PARITY_CONFIGS = {
    "adam": TrainConfig(optimizer="adam", learning_rate=0.05),
    "adamw": TrainConfig(optimizer="adamw", learning_rate=0.05, weight_decay=0.5),
    "sgd-momentum": TrainConfig(optimizer="sgd", learning_rate=0.5, momentum=0.9),
    "sgd-nesterov-l2": TrainConfig(optimizer="sgd", learning_rate=0.5, nesterov=True,
                                   weight_decay=0.05),
    "rmsprop-l2": TrainConfig(optimizer="rmsprop", learning_rate=0.01, weight_decay=0.05),
}


# Every parameter within this much, relative, of the other framework's; for elements near
# zero, relative to DENSE_WEIGHT_FLOOR instead (the weights are O(0.1–1)).
DENSE_TOLERANCE = 1e-4
DENSE_WEIGHT_FLOOR = 1e-2


def assert_dense_parity(tf_values, torch_values):
    for tf_value, torch_value in zip(tf_values, torch_values, strict=True):
        np.testing.assert_allclose(tf_value, torch_value, rtol=DENSE_TOLERANCE,
                                   atol=DENSE_TOLERANCE * DENSE_WEIGHT_FLOOR)


def _dense_data():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (16, *INPUT_SHAPE), dtype=np.uint8), np.arange(16) % CLASSES


def train_dense_for_20_steps(name: str):
    """Both Backends' `fit` on one dense layer, 20 one-step epochs under optimizer `name`.

    Returns:
        (tf_backend, its Dense layer, torch_backend, its Linear layer, the start weight,
        both epoch logs).
    """
    config = dense_config(PARITY_CONFIGS[name], STEPS)
    x, y = _dense_data()
    tf_backend, dense, torch_backend, linear = _softmax_regression_backends(seed=5)
    start = dense.kernel.numpy().T.copy()
    tf_logs = tf_backend.fit(x, y, config)
    torch_logs = torch_backend.fit(x, y, config)
    return tf_backend, dense, torch_backend, linear, start, (tf_logs, torch_logs)


@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_both_backends_train_alike_for_20_steps_at_a_rate_changing_every_step(name):
    tf_backend, dense, torch_backend, linear, start, (tf_logs, torch_logs) = \
        train_dense_for_20_steps(name)
    rates = [log.learning_rate for log in torch_logs]
    assert [log.learning_rate for log in tf_logs] == rates
    # Every warm-up step has its own rate; the last reaches the base rate the final step keeps.
    assert len(set(rates)) == STEPS - 1 and rates[-1] == PARITY_CONFIGS[name].learning_rate
    tf_weight, torch_weight = dense.kernel.numpy().T, linear.weight.detach().numpy()
    # The training moved the weights by far more than the tolerance.
    assert np.abs(torch_weight - start).max() > 0.05
    assert_dense_parity([tf_weight, dense.bias.numpy()],
                        [torch_weight, linear.bias.detach().numpy()])
    # A new rate each step is new data for the traced step, not a retrace: the step is
    # traced on its first call (twice, as tf.function does when the optimizer creates its
    # variables there) and never again.
    traces = tf_backend._step.experimental_get_tracing_count()
    x = np.random.default_rng(3).integers(0, 256, (16, *INPUT_SHAPE), dtype=np.uint8)
    tf_backend._train_epoch([(x, (np.arange(16) % CLASSES).astype(np.int64))], np.array([0.123]))
    assert tf_backend._step.experimental_get_tracing_count() == traces <= 2


def torch_dense_for_20_steps(name: str) -> tuple[dict[str, np.ndarray], list[float]]:
    """torch's `fit` of `train_dense_for_20_steps`: (its canonical weights after, the rates)."""
    torch_backend, _ = _torch_dense_backend(*dense_start(5))
    logs = torch_backend.fit(*_dense_data(), dense_config(PARITY_CONFIGS[name], STEPS))
    return torch_backend.get_weights(), [log.learning_rate for log in logs]


# The Keras backends beside tf: the same dense layers in their own process.
@pytest.mark.parametrize("backend_name", backend_params(("keras-jax",)))
@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_other_keras_backends_train_alike_for_20_steps(name, backend_name):
    """keras-jax's jitted step (stateless_apply of the same optimizers) against torch, as
    tf's above: measured (docs/design.md §10) its largest gap in DENSE_TOLERANCE's measure
    was 9.6e-6 (RMSprop), the floor 1.4e-5 (RMSprop under oneDNN AVX2, torch's side; one
    XLA thread and XLA at AVX2 moved keras-jax by 0): 1e-4 keeps 7.4× and more."""
    expected, rates = torch_dense_for_20_steps(name)
    start = dense_start(5)[0][0]
    weights, keras_rates = run_in_backend_process(
        backend_name, fit_keras_dense, backend_name, dense_start(5),
        dense_config(PARITY_CONFIGS[name], STEPS), *_dense_data(),
        threads=threads_for_tests())
    assert keras_rates == rates and len(set(rates)) == STEPS - 1
    assert np.abs(expected["1.weight"] - start).max() > 0.05
    assert_dense_parity([weights["1.weight"], weights["1.bias"]],
                        [expected["1.weight"], expected["1.bias"]])


# --- native JAX (backends/jax/optimizers.py): its own optimizers, its own dense stack --------
def _jax_dense_backend(start: tuple[list, list]):
    """The jax Backend holding `dense_start`'s layers under torch's canonical names.

    Args:
        start: `dense_start`'s (kernels (out, in), biases).

    Returns:
        The backend; its `get_weights()` reads the layers ("1.weight", "1.bias", …).
    """
    from flax import nnx

    weights, biases = start

    class DenseStack(nnx.Module):
        """torch's Sequential(Flatten, Linear "1", ReLU, Linear "3", …) in Flax."""

        def __init__(self) -> None:
            self.names = tuple(str(2 * i + 1) for i in range(len(weights)))
            for name, weight in zip(self.names, weights, strict=True):
                setattr(self, name, nnx.Linear(weight.shape[1], weight.shape[0],
                                               rngs=nnx.Rngs(0)))

        def __call__(self, x):
            x = x.reshape(x.shape[0], -1)
            for i, name in enumerate(self.names):
                x = getattr(self, name)(x)
                x = x if i == len(self.names) - 1 else nnx.relu(x)
            return x

    backend = create_backend("jax")
    backend.model = DenseStack()
    backend.model_name, backend.num_classes = "softmax_regression", weights[-1].shape[0]
    backend.set_weights({f"{name}.{param}": value
                         for name, weight, bias in zip(backend.model.names, weights, biases,
                                                       strict=True)
                         for param, value in (("weight", weight), ("bias", bias))})
    return backend


JAX_OPTIMIZER_CASES = {
    "adam": (torch.optim.Adam, {"eps": 1e-4}),
    "adam-l2": (torch.optim.Adam, {"eps": 1e-4, "weight_decay": 0.1}),
    "adamw": (torch.optim.AdamW, {"eps": 1e-4, "weight_decay": 0.1}),
    "sgd-momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "sgd-nesterov-l2": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True,
                                          "weight_decay": 0.1}),
    "sgd-plain": (torch.optim.SGD, {}),
    "rmsprop-l2": (torch.optim.RMSprop, {"eps": 1e-4, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("backend_name", backend_params(("jax",)))
@pytest.mark.parametrize("case", list(JAX_OPTIMIZER_CASES))
def test_each_jax_optimizer_takes_torchs_steps(case, backend_name):
    """backends/jax/optimizers.py against torch.optim on the same gradients and rates."""
    import jax.numpy as jnp

    from backends.jax import optimizers

    torch_class, kwargs = JAX_OPTIMIZER_CASES[case]
    decay = kwargs.get("weight_decay", 0.0)
    optimizer = {
        "adam": lambda: optimizers.adam(0.9, 0.999, 1e-4, decay, decoupled=False),
        "adamw": lambda: optimizers.adam(0.9, 0.999, 1e-4, decay, decoupled=True),
        "sgd": lambda: optimizers.sgd(kwargs.get("momentum", 0.0),
                                      kwargs.get("nesterov", False), decay),
        "rmsprop": lambda: optimizers.rmsprop(0.99, 1e-4, decay),
    }[case.split("-")[0]]()
    params = {"p": jnp.asarray(START)}
    state = optimizer.init(params)
    for rate, gradient in zip(RATES, GRADIENTS, strict=True):
        params, state = optimizer.update({"p": jnp.asarray(gradient)}, state, params,
                                         jnp.float32(rate))
    np.testing.assert_allclose(np.asarray(params["p"]), _torch_steps(torch_class, **kwargs),
                               rtol=1e-6, atol=1e-7)
    assert int(state["step"]) == len(RATES)


@pytest.mark.parametrize("backend_name", backend_params(("jax",)))
@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_jax_trains_like_torch_for_20_steps(name, backend_name):
    """The jax Backend's whole path (fit, schedule, jitted step, its optimizers) against
    torch's, as tf's above. Measured (docs/design.md §10): largest gap over the five
    optimizers 1.1e-5 of DENSE_TOLERANCE's measure (RMSprop; Adam 5.4e-6, SGD 6.8e-7),
    9× below it."""
    expected, rates = torch_dense_for_20_steps(name)
    backend = _jax_dense_backend(dense_start(5))
    logs = backend.fit(*_dense_data(), dense_config(PARITY_CONFIGS[name], STEPS))
    assert [log.learning_rate for log in logs] == rates and len(set(rates)) == STEPS - 1
    assert np.abs(expected["1.weight"] - dense_start(5)[0][0]).max() > 0.05
    weights = backend.get_weights()
    assert_dense_parity([weights["1.weight"], weights["1.bias"]],
                        [expected["1.weight"], expected["1.bias"]])


@pytest.mark.parametrize("backend_name", backend_params(("jax",)))
def test_jax_freezes_then_unfreezes_like_torch_for_20_steps(backend_name):
    config = TrainConfig(optimizer="adam", learning_rate=0.05, epochs=STEPS, batch_size=16,
                         warmup_epochs=STEPS - 1, seed=7, freeze_epochs=FROZEN,
                         weight_decay=0.01)
    start = dense_start(5, (HIDDEN, CLASSES))
    torch_backend, _ = _torch_dense_backend(*start)
    jax_backend = _jax_dense_backend(start)
    for backend in (torch_backend, jax_backend):
        backend.fit(*_dense_data(), config, head_layers=frozenset({"3"}))
    expected, actual = torch_backend.get_weights(), jax_backend.get_weights()
    names = sorted(expected)
    assert min(np.abs(expected[k] - v).max()
               for k, v in zip(("1.weight", "3.weight"), start[0], strict=True)) > 0.05
    assert_dense_parity([actual[k] for k in names], [expected[k] for k in names])


# The freeze schedule (TrainConfig.freeze_epochs): a hidden layer frozen, the head trained.
FROZEN, HIDDEN = 10, 6


def _layer_weights(denses, linears):
    return ([d.kernel.numpy().T.copy() for d in denses] + [d.bias.numpy().copy() for d in denses],
            [lin.weight.detach().numpy().copy() for lin in linears]
            + [lin.bias.detach().numpy().copy() for lin in linears])


def freeze_then_unfreeze():
    """Both Backends' two dense layers, the hidden one frozen for 10 of 20 Adam steps.

    Returns:
        (tf_backend, torch_backend, the start weights, tf's weights after, torch's after),
        weights as `_layer_weights` orders them.
    """
    config = TrainConfig(optimizer="adam", learning_rate=0.05, epochs=STEPS, batch_size=16,
                         warmup_epochs=STEPS - 1, seed=7, freeze_epochs=FROZEN,
                         weight_decay=0.01)
    x, y = _dense_data()
    tf_backend, denses, torch_backend, linears = _dense_backends(5, (HIDDEN, CLASSES))
    start = _layer_weights(denses, linears)[1]
    tf_backend.fit(x, y, config, head_layers=frozenset({"3"}))
    torch_backend.fit(x, y, config, head_layers=frozenset({"3"}))
    return (tf_backend, torch_backend, start, *_layer_weights(denses, linears))


def test_both_backends_freeze_then_unfreeze_alike_for_20_steps():
    tf_backend, torch_backend, start, tf_after, torch_after = freeze_then_unfreeze()
    # Both layers moved by far more than the tolerance: the hidden one after the unfreeze.
    assert min(np.abs(a - b).max() for a, b in zip(torch_after, start, strict=True)) > 0.05
    assert_dense_parity(tf_after, torch_after)
    assert torch_backend.num_trainable_params() == tf_backend.num_trainable_params()


def test_frozen_layers_get_no_update_and_no_optimizer_state():
    """While frozen, a layer does not move (weight decay included); at the unfreeze its
    Adam state starts fresh, so its first step is lr·g/(|g| + ε) = ±lr element by element.
    Moments accumulated over the frozen steps (zero gradients, or Keras's global step
    count in the bias correction) would make that step smaller than lr."""
    x, y = _dense_data()
    rate = 0.05
    config = TrainConfig(optimizer="adam", learning_rate=rate, lr_schedule="constant",
                         epochs=FROZEN + 1, batch_size=16, seed=7, freeze_epochs=FROZEN,
                         weight_decay=0.01)
    tf_backend, denses, torch_backend, linears = _dense_backends(5, (HIDDEN, CLASSES))
    start = _layer_weights(denses, linears)[1]
    frozen = {}

    def snapshot(backend, log):  # the weights at the end of the last frozen epoch
        if log.epoch == FROZEN:
            tf_weights, torch_weights = _layer_weights(denses, linears)
            frozen[backend.name] = tf_weights if backend.name == "tf" else torch_weights

    for backend in (tf_backend, torch_backend):
        backend.fit(x, y, config, on_epoch_end=lambda log, b=backend: snapshot(b, log),
                    head_layers=frozenset({"3"}))
    for name, after in zip(("tf", "torch"), _layer_weights(denses, linears), strict=True):
        # Order: weight "1", weight "3", bias "1", bias "3".
        assert np.abs(frozen[name][1] - start[1]).max() > 0.05  # the head trained
        assert not (frozen[name][0] - start[0]).any() and not (frozen[name][2] - start[2]).any()
        moved = np.concatenate([(after[0] - start[0]).ravel(), (after[2] - start[2]).ravel()])
        # Adam's L2 decay is part of the gradient, so it leaves the ±lr intact; it also
        # gives a dead ReLU unit's weights a gradient, so every element moves.
        np.testing.assert_allclose(np.abs(moved), rate, rtol=1e-3)


def test_freeze_epochs_needs_head_layers():
    tf_backend, _, torch_backend, _ = _dense_backends(5, (HIDDEN, CLASSES))
    x, y = _dense_data()
    config = TrainConfig(epochs=2, freeze_epochs=1, batch_size=16)
    for backend in (tf_backend, torch_backend):
        with pytest.raises(ValueError, match="freeze_epochs needs the layers to train"):
            backend.fit(x, y, config)
