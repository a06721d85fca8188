"""Parity work that runs inside a Keras backend's own process (tests/remote_backend.py).

The functions here build plain Keras models, so they run where the backend has pinned
Keras's backend: in the test process for tf, in its child for keras-jax. This module
imports no framework at its top, so a child can import it before pinning.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from backends.train_config import TrainConfig

INPUT_SHAPE = (4, 4, 1)  # the dense tests' images: 16 pixels, one channel


def dense_config(config: TrainConfig, steps: int) -> TrainConfig:
    """`config` for the dense tests: `steps` one-step epochs, all but the last warm-up,
    so the rate changes every step until it reaches the base rate."""
    return replace(config, epochs=steps, batch_size=16, warmup_epochs=steps - 1, seed=7)


def keras_dense_model(weights: list[np.ndarray], biases: list[np.ndarray]):
    """A Keras Sequential of dense layers (ReLU between) on the flattened pixels.

    The layers are named as torch's Sequential indices ("1", "3", …, after the Flatten
    and between the ReLUs), so their canonical names are torch's.

    Args:
        weights: each layer's kernel, (out, in) as torch's.
        biases: each layer's bias.

    Returns:
        (the model, its Dense layers).
    """
    import keras

    last = len(weights) - 1
    denses = [keras.layers.Dense(weight.shape[0], activation=None if i == last else "relu",
                                 name=str(2 * i + 1)) for i, weight in enumerate(weights)]
    model = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Flatten(), *denses])
    for dense, weight, bias in zip(denses, weights, biases, strict=True):
        dense.set_weights([weight.T, bias])
    return model, denses


def fit_keras_dense(backend_name: str, start: tuple[list, list], config: TrainConfig,
                    x: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], list[float]]:
    """Backend `backend_name`'s `fit` of `keras_dense_model(*start)` on (x, y).

    Returns:
        (the canonical weights after, each epoch's learning rate).
    """
    from backends import create_backend

    backend = create_backend(backend_name)
    backend.model, _ = keras_dense_model(*start)
    backend.model_name, backend.num_classes = "softmax_regression", start[0][-1].shape[0]
    logs = backend.fit(x, y, config)
    return backend.get_weights(), [log.learning_rate for log in logs]


def keras_jax_step_compute_dtypes(precision: str, seed: int) -> dict[str, set[str]]:
    """What keras-jax's training step computes its convolutions and matmuls in.

    Reads the jaxpr of the jitted step (forward and backward, as XLA receives it) of
    proposed_cnn built at `precision`, on `tests.conftest.step_data(seed)`'s first batch.

    Returns:
        JAX primitive ("conv_general_dilated", "dot_general") → the dtypes of its inputs,
        and "master weights" → the dtypes of the trainable variables the step updates.
    """
    import jax
    import jax.numpy as jnp

    from backends import create_backend
    from tests.conftest import BATCH, SIDE, step_data

    x, y = step_data(seed)
    backend = create_backend("keras-jax")
    backend.build("proposed_cnn", (SIDE, SIDE, 1), 7, precision=precision, dropout=0.0)
    backend.start_training(x, y, TrainConfig(precision=precision))
    jaxpr = jax.make_jaxpr(backend._step)(
        backend._current_state(), backend._optimizer_values, jnp.asarray(x[:BATCH]),
        jnp.asarray(y[:BATCH]), jnp.float32(1e-3))
    seen = {"master weights": {str(v.dtype) for v in backend._current_state().trainable}}
    _collect_heavy_dtypes(jaxpr.jaxpr, seen)
    return seen


def _collect_heavy_dtypes(jaxpr, seen: dict[str, set[str]]) -> None:
    for equation in jaxpr.eqns:
        if equation.primitive.name in ("conv_general_dilated", "dot_general"):
            seen.setdefault(equation.primitive.name, set()).update(
                str(var.aval.dtype) for var in equation.invars)
        for inner in equation.params.values():  # jit, custom_vjp, cond bodies
            for candidate in inner if isinstance(inner, (list, tuple)) else (inner,):
                body = getattr(candidate, "jaxpr", None)
                if body is not None:
                    _collect_heavy_dtypes(getattr(body, "jaxpr", body), seen)


def rebuilt_from_file(path, backend_name: str, model: str,
                      images: np.ndarray) -> tuple[dict[str, np.ndarray], dict, np.ndarray]:
    """`backends.weights.load_backend` of `path` in backend `backend_name`, read back.

    Returns:
        (the rebuilt model's canonical weights, the file's weights, its logits on `images`).
    """
    from backends.weights import load_backend

    rebuilt, saved = load_backend(path, backend_name, model=model)
    assert rebuilt.model_name == model and saved.meta.backend == "torch"
    return rebuilt.get_weights(), saved.weights, rebuilt.logits(images)


def keras_training_loss(backend_name: str, logits: np.ndarray, labels: np.ndarray,
                        class_weights: np.ndarray, smoothing: float) -> float:
    """`backends.keras.training.training_loss` on Keras backend `backend_name`'s tensors."""
    from backends import create_backend

    create_backend(backend_name)  # its package pins Keras's backend
    import keras

    from backends.keras.training import training_loss

    tensors = [keras.ops.convert_to_tensor(a) for a in (logits, labels, class_weights)]
    return float(training_loss(*tensors, smoothing))


def exported_beside_native(backend_name: str, model: str, input_shape: tuple[int, int, int],
                           num_classes: int, weights: dict[str, np.ndarray],
                           images: np.ndarray, path) -> tuple[int, np.ndarray, np.ndarray]:
    """`model` built in `backend_name` with `weights`, exported to ONNX at `path`.

    The model keeps its catalogue dropout: the export must drop it (eval mode), as the
    native pass does.

    Args:
        backend_name: the exporting backend.
        model: a catalogue model name.
        input_shape: (height, width, channels).
        num_classes: the classes the model predicts.
        weights: canonical weights (`Backend.set_weights`).
        images: uint8 NHWC images the native outputs are computed on.
        path: the `.onnx` file to write.

    Returns:
        (export_onnx's file size in bytes, the native eval-mode logits of `images`, their
        `predict_proba`).
    """
    from backends import create_backend
    from backends.onnx_export import export_onnx, scaled

    backend = create_backend(backend_name)
    backend.build(model, input_shape, num_classes)
    backend.set_weights(weights)
    size = export_onnx(backend, path, input_shape)
    return size, backend.logits(scaled(images)), backend.predict_proba(images)
