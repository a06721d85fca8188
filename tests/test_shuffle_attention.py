"""The shuffle-attention layer of both frameworks against SA-Net's algorithm in numpy.

The model parity tests prove the two frameworks agree; these prove that what they agree
on is SA-Net's layer (Zhang & Yang, ICASSP 2021, official code's `sa_layer`), including
its group split and final channel shuffle, written here independently on NCHW arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

import torch  # noqa: E402

from backends.base import GN_EPSILON  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402
from backends.keras.models import ShuffleAttention as TFShuffleAttention  # noqa: E402
from backends.torch.models import ShuffleAttention as TorchShuffleAttention  # noqa: E402

NAMES = ("channel_weight", "channel_bias", "spatial_weight", "spatial_bias", "gn.weight", "gn.bias")
SA_NET_START = dict(zip(NAMES, (0, 1, 0, 1, 1, 0), strict=True))
SHAPES = [(32, 8), (24, 2)]  # (channels, groups): sanet's first stage, and 6 per half-group


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reference(x: np.ndarray, groups: int, p: dict[str, np.ndarray]) -> np.ndarray:
    """SA-Net's sa_layer on NCHW float64 input."""
    b, c, h, w = x.shape
    x = x.reshape(b * groups, c // groups, h, w)
    x0, x1 = np.split(x, 2, axis=1)
    k = {name: v.reshape(1, -1, 1, 1) for name, v in p.items()}
    pooled = x0.mean(axis=(2, 3), keepdims=True)
    x0 = x0 * _sigmoid(k["channel_weight"] * pooled + k["channel_bias"])
    mean, var = x1.mean(axis=(2, 3), keepdims=True), x1.var(axis=(2, 3), keepdims=True)
    normed = (x1 - mean) / np.sqrt(var + GN_EPSILON) * k["gn.weight"] + k["gn.bias"]
    x1 = x1 * _sigmoid(k["spatial_weight"] * normed + k["spatial_bias"])
    out = np.concatenate([x0, x1], axis=1).reshape(b, c, h, w)
    return out.reshape(b, 2, c // 2, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)


def _random_case(channels: int, groups: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(channels + groups)
    # Non-square, with per-channel offsets so every channel's statistics differ.
    x = rng.normal(size=(2, channels, 5, 7)) + rng.normal(size=(1, channels, 1, 1))
    half = channels // (2 * groups)
    params = {name: rng.normal(size=half).astype(np.float32) for name in NAMES}
    return x.astype(np.float32), params


def _tf_layer(channels: int, groups: int) -> TFShuffleAttention:
    layer = TFShuffleAttention(groups, name="sa")
    layer.build((None, 5, 7, channels))
    return layer


@pytest.mark.parametrize(("channels", "groups"), SHAPES)
def test_torch_layer_is_sa_net(channels: int, groups: int) -> None:
    x, params = _random_case(channels, groups)
    layer = TorchShuffleAttention(channels, groups)
    layer.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        out = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, _reference(x.astype(np.float64), groups, params), atol=1e-5)


@pytest.mark.parametrize(("channels", "groups"), SHAPES)
def test_tf_layer_is_sa_net(channels: int, groups: int) -> None:
    x, params = _random_case(channels, groups)
    layer = _tf_layer(channels, groups)
    for variable, value in zip(layer.weights, layer.from_canonical(params), strict=True):
        variable.assign(value)
    out = np.asarray(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, _reference(x.astype(np.float64), groups, params), atol=1e-5)


def test_both_start_from_sa_net_values_and_shared_init_keeps_them() -> None:
    torch_params = {k: v.numpy() for k, v in TorchShuffleAttention(32, 8).state_dict().items()}
    layer = _tf_layer(32, 8)
    tf_params = layer.to_canonical([np.asarray(w) for w in layer.weights])
    shared = shared_initial_weights({f"block1.sa.{k}": v for k, v in torch_params.items()}, 0)
    for params in (torch_params, tf_params, {k[len("block1.sa.") :]: v for k, v in shared.items()}):
        assert sorted(params) == sorted(NAMES)
        for name, value in params.items():
            np.testing.assert_array_equal(value, np.full(2, SA_NET_START[name], np.float32))


def test_channels_must_split_into_group_halves() -> None:
    with pytest.raises(ValueError, match="channels must be a multiple of 2·groups = 16"):
        TorchShuffleAttention(24, 8)
    with pytest.raises(ValueError, match="channels must be a multiple of 2·groups = 16"):
        _tf_layer(24, 8)
