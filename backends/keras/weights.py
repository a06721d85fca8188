"""A Keras model's weights to and from the canonical layout (backends/base.py).

The conversion goes by layer type, so it holds for every model of backends/keras/models.py
on every Keras backend: conv kernels HWIO ↔ OIHW, dense kernels transposed (and, after a
flatten, their rows reordered from NHWC's (H, W, C) to torch's (C, H, W)), BatchNorm's
four arrays renamed, and custom layers through their own `to_canonical`/`from_canonical`.
"""

from __future__ import annotations

# The framework package that imports this module has pinned KERAS_BACKEND
# (backends/keras/__init__.py).
import keras
import numpy as np


def parametric_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model` that hold weights, in model order."""
    return [layer for layer in model.layers if layer.weights]


def canonical_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every parameter and BN statistic of `model` in the canonical layout.

    Args:
        model: a model of backends/keras/models.py.

    Returns:
        "<layer>.<param>" → float32 array, torch's names and shapes.
    """
    weights = {}
    for layer in parametric_layers(model):
        arrays = [np.asarray(keras.ops.convert_to_numpy(w), np.float32) for w in layer.weights]
        for param, value in _to_canonical(layer, arrays).items():
            weights[f"{layer.name}.{param}"] = value
    return weights


def load_canonical_weights(model: keras.Model, weights: dict[str, np.ndarray]) -> None:
    """Loads canonical weights into `model`; names and shapes must match exactly.

    Args:
        model: a model of backends/keras/models.py.
        weights: what `canonical_weights` returns for this model.

    Raises:
        ValueError: a missing or unexpected name, or an array of the wrong shape.
    """
    expected = set(canonical_weights(model))
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"weight names differ: missing {missing}, unexpected {extra}")
    for layer in parametric_layers(model):
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
