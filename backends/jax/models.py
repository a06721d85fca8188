"""Flax NNX model definitions. Mirrors backends/torch/models.py block for block.

NHWC throughout, as JAX users write convolutions. Attribute paths are the canonical
weight prefixes (the torch module paths, see backends/base.py): `nnx.List` gives a
ResNet stage's blocks torch's indices (`layer1.0`) and a shortcut's conv and BatchNorm
theirs (`downsample.0`, `downsample.1`); backends/jax/backend.py converts each module's
variables to and from the canonical layout by module type. Builders are called through
`create_model`, which validates the arguments and resolves `dropout` from the catalog.
Initial weights: by default every framework loads the same ones (backends/init.py);
Flax's own initialisers serve only `--init native`.

Every builder takes `dtype`, the type convolutions and dense layers compute in (None:
float32; jnp.bfloat16 or jnp.float16 for mixed precision), and `rngs`, which draws the
native initial weights and holds the dropout stream. Parameters are float32 whatever the
dtype; BatchNorm and GroupNorm compute in float32 (docs/design.md §4, "Precision").
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from backends.base import BN_EPSILON, BN_MOMENTUM_KERAS, GN_EPSILON
from backends.catalog import ModelRegistry

_registry = ModelRegistry("jax")
register_model = _registry.register
create_model = _registry.create
list_models = _registry.names

Dtype = jnp.dtype | type | None


class StageTap:
    """Collects the stage outputs of one forward pass, for feature maps and Grad-CAM.

    A model's forward passes each stage's output through its tap (`_tapped`), which adds
    the stage's offset, if given, and keeps the result. JAX differentiates with respect
    to function arguments, not intermediate values, so the gradient of a logit with
    respect to a stage is taken as the gradient with respect to that stage's zero offset
    (`Backend.grad_cam`; docs/design.md §9). The stage names are the catalog's
    (`backends.catalog.model_stages`).

    Args:
        offsets: stage → an array added to that stage's output (zeros change nothing).
    """

    def __init__(self, offsets: dict[str, jax.Array] | None = None) -> None:
        self.offsets = offsets or {}
        self.outputs: dict[str, jax.Array] = {}

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        """Returns `x` plus the stage's offset, kept under `name`."""
        if name in self.offsets:
            x = x + self.offsets[name].astype(x.dtype)
        self.outputs[name] = x
        return x


def _tapped(tap: StageTap | None, name: str, x: jax.Array) -> jax.Array:
    return x if tap is None else tap(name, x)


class TorchBatchNorm(nnx.BatchNorm):
    """BatchNorm with torch's semantics, computed in float32 and returned in x's dtype.

    torch normalises with the biased batch variance but feeds the unbiased one
    (× n/(n−1)) into its running variance; Flax feeds the biased one, so eval-mode
    outputs would part after training (as Keras's do; see TF's TorchBatchNormalization).
    Flax's momentum is Keras's convention, the weight of the old running value.
    Variables: scale, bias (Param), mean, var (BatchStat), Flax's names.

    Args:
        channels: features on the last axis.
        rngs: the model's Rngs (unused by BatchNorm's constant initialisers).
    """

    def __init__(self, channels: int, rngs: nnx.Rngs) -> None:
        super().__init__(channels, momentum=BN_MOMENTUM_KERAS, epsilon=BN_EPSILON, rngs=rngs)

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        inputs = x.astype(jnp.float32)
        frozen = self.use_running_average if use_running_average is None else use_running_average
        if frozen:
            mean, variance = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = inputs.mean(axes)
            variance = jnp.square(inputs - mean).mean(axes)
            count = inputs.size // inputs.shape[-1]
            unbiased = variance * (count / max(count - 1, 1))
            momentum = self.momentum
            self.mean[...] = momentum * self.mean[...] + (1.0 - momentum) * mean
            self.var[...] = momentum * self.var[...] + (1.0 - momentum) * unbiased
        normalised = (inputs - mean) / jnp.sqrt(variance + self.epsilon)
        return (normalised * self.scale[...] + self.bias[...]).astype(x.dtype)


def _conv(in_channels: int, out_channels: int, kernel: int, rngs: nnx.Rngs, dtype: Dtype,
          stride: int = 1, bias: bool = True) -> nnx.Conv:
    """A conv padded by kernel // 2 on every side (the only padding the zoo uses).

    Explicit padding rather than "SAME": with stride 2, "SAME" puts the odd pixel at the
    bottom/right, which shifts every window against torch's.
    """
    pad = kernel // 2
    return nnx.Conv(in_channels, out_channels, (kernel, kernel), stride,
                    padding=((pad, pad), (pad, pad)), use_bias=bias, dtype=dtype, rngs=rngs)


def _max_pool(x: jax.Array, kernel: int, stride: int, pad: int = 0) -> jax.Array:
    """Max-pool in floor mode; padding counts as −inf, as torch's.

    The padding is an op of its own and the pool unpadded, its arguments by keyword, for
    the ONNX export (backends/jax/export.py): jax2onnx replaces `nnx.max_pool` while it
    traces with a version that takes keyword arguments and "SAME" or "VALID" padding
    only, and lowers `lax.reduce_window` called directly to a pool over every axis,
    batch and channels included, which onnxruntime refuses. The values and gradients are
    those of the padded pool.
    """
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    return nnx.max_pool(x, window_shape=(kernel, kernel), strides=(stride, stride),
                        padding="VALID")


def _pooled(size: int, kernel: int, stride: int, times: int) -> int:
    """Returns a spatial size after `times` unpadded max-pools (floor mode)."""
    for _ in range(times):
        size = (size - kernel) // stride + 1
    return size


class ShuffleAttention(nnx.Module):
    """Shuffle attention (SA-Net, Zhang & Yang, ICASSP 2021); see torch's ShuffleAttention.

    Works on NHWC but reproduces torch's NCHW channel bookkeeping exactly: group g holds
    channels g·C/G … (g+1)·C/G − 1, the first half of each group gets channel attention,
    and the final 2-group shuffle moves channel s·C/2 + i to 2·i + s. Parameters
    channel_weight, channel_bias, spatial_weight, spatial_bias and gn (one channel per
    group), each of C/(2G) entries, at SA-Net's starting values.

    Args:
        channels: input (and output) channels C, a multiple of 2 · groups.
        groups: the number of groups G.
        rngs: the model's Rngs.
    """

    def __init__(self, channels: int, groups: int, rngs: nnx.Rngs) -> None:
        if channels % (2 * groups):
            raise ValueError(
                f"channels must be a multiple of 2·groups = {2 * groups}. "
                f"Received: channels={channels}"
            )
        half = channels // (2 * groups)
        self.groups = groups
        self.channel_weight = nnx.Param(jnp.zeros(half))
        self.channel_bias = nnx.Param(jnp.ones(half))
        self.spatial_weight = nnx.Param(jnp.zeros(half))
        self.spatial_bias = nnx.Param(jnp.ones(half))
        # GroupNorm in float32 whatever the model's dtype, as torch's and Keras's.
        self.gn = nnx.GroupNorm(half, num_groups=half, epsilon=GN_EPSILON,
                                dtype=jnp.float32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        g = self.groups
        # (B, H, W, G, C/G) → (B·G, H, W, C/G): torch's reshape(b·G, C/G, h, w) in NHWC.
        x = x.reshape(b, h, w, g, c // g).transpose(0, 3, 1, 2, 4).reshape(b * g, h, w, c // g)
        x_channel, x_spatial = jnp.split(x, 2, axis=-1)
        pooled = x_channel.mean(axis=(1, 2), keepdims=True)
        gate = _affine(pooled, self.channel_weight, self.channel_bias)
        x_channel = x_channel * jax.nn.sigmoid(gate)
        normalised = self.gn(x_spatial.astype(jnp.float32)).astype(x.dtype)
        gate = _affine(normalised, self.spatial_weight, self.spatial_bias)
        x_spatial = x_spatial * jax.nn.sigmoid(gate)
        x = jnp.concatenate([x_channel, x_spatial], axis=-1)
        x = x.reshape(b, g, h, w, c // g).transpose(0, 2, 3, 1, 4).reshape(b, h, w, c)
        # Channel shuffle with 2 groups: channel s·C/2 + i moves to 2·i + s.
        return x.reshape(b, h, w, 2, c // 2).swapaxes(3, 4).reshape(b, h, w, c)


def _affine(x: jax.Array, weight: nnx.Param, bias: nnx.Param) -> jax.Array:
    # In x's dtype, as torch's and Keras's: a float32 weight would promote a 16-bit gate.
    return x * weight[...].astype(x.dtype) + bias[...].astype(x.dtype)


class ConvStage(nnx.Module):
    """`convs` × [Conv3×3 (pad 1) + BN + ReLU], then optionally shuffle attention.

    Submodules conv1, bn1, conv2, bn2, …, and sa.

    Args:
        in_channels: input channels.
        out_channels: channels of every conv in the stage.
        convs: number of Conv-(BN)-ReLU units.
        rngs: the model's Rngs.
        dtype: the compute dtype of the convs.
        batch_norm: whether each conv is followed by BatchNorm.
        attention_groups: G of a ShuffleAttention after the last ReLU; None for none.
    """

    def __init__(self, in_channels: int, out_channels: int, convs: int, rngs: nnx.Rngs,
                 dtype: Dtype, batch_norm: bool = True,
                 attention_groups: int | None = None) -> None:
        self.convs, self.batch_norm = convs, batch_norm
        for i in range(1, convs + 1):
            source = in_channels if i == 1 else out_channels
            setattr(self, f"conv{i}", _conv(source, out_channels, 3, rngs, dtype))
            if batch_norm:
                setattr(self, f"bn{i}", TorchBatchNorm(out_channels, rngs))
        self.sa = (None if attention_groups is None
                   else ShuffleAttention(out_channels, attention_groups, rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(1, self.convs + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{i}")(x)
            x = nnx.relu(x)
        return x if self.sa is None else self.sa(x)


class Classifier(nnx.Module):
    """The VGG/AlexNet head: Flatten, [Linear + ReLU + Dropout] × 2, Linear.

    Submodules fc1, fc2, fc3. The flatten runs over NHWC's (H, W, C); fc1 carries the
    map's (H, W, C) as `flatten_input_hwc`, by which the backend reorders its kernel to
    and from the canonical (C, H, W) rows.

    Args:
        input_hwc: (H, W, C) of the map the head flattens.
        num_classes: output classes.
        dropout: rate of both dropout layers.
        rngs: the model's Rngs (its `dropout` stream drives the masks).
        dtype: the compute dtype of the dense layers.
        hidden: width of the two hidden layers.
    """

    def __init__(self, input_hwc: tuple[int, int, int], num_classes: int, dropout: float,
                 rngs: nnx.Rngs, dtype: Dtype, hidden: int = 4096) -> None:
        h, w, c = input_hwc
        self.fc1 = nnx.Linear(h * w * c, hidden, dtype=dtype, rngs=rngs)
        self.fc1.flatten_input_hwc = input_hwc
        self.fc2 = nnx.Linear(hidden, hidden, dtype=dtype, rngs=rngs)
        self.fc3 = nnx.Linear(hidden, num_classes, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.dropout(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))
        x = self.dropout(nnx.relu(self.fc2(x)))
        return self.fc3(x)


class ProposedCNN(nnx.Module):
    """The design card's proposed CNN, optionally with shuffle attention; see torch's.

    block1-3: ConvStage ×2 convs (32, 64, 128) each followed by MaxPool2; block4: one
    Conv-BN-ReLU of 256 then Dropout; global average pool; Linear 256 → C.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        dropout: rate of the dropout after block4.
        rngs: the model's Rngs.
        dtype: the compute dtype of convs and dense layers.
        attention_groups: G of a ShuffleAttention ending each block; None for none.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float, rngs: nnx.Rngs,
                 dtype: Dtype, attention_groups: int | None = None) -> None:
        widths = ((in_channels, 32, 2), (32, 64, 2), (64, 128, 2), (128, 256, 1))
        for i, (source, width, convs) in enumerate(widths, 1):
            setattr(self, f"block{i}", ConvStage(source, width, convs, rngs, dtype,
                                                 attention_groups=attention_groups))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.classifier = nnx.Linear(256, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, tap: StageTap | None = None) -> jax.Array:
        x = _max_pool(_tapped(tap, "block1", self.block1(x)), 2, 2)
        x = _max_pool(_tapped(tap, "block2", self.block2(x)), 2, 2)
        x = _max_pool(_tapped(tap, "block3", self.block3(x)), 2, 2)
        x = self.dropout(_tapped(tap, "block4", self.block4(x)))
        return self.classifier(x.mean(axis=(1, 2)))


@register_model
def proposed_cnn(input_shape: tuple[int, int, int], num_classes: int, dropout: float,
                 rngs: nnx.Rngs, dtype: Dtype = None) -> nnx.Module:
    """Returns the proposed CNN for (H, W, C) input; see ProposedCNN."""
    return ProposedCNN(input_shape[2], num_classes, dropout, rngs, dtype)


@register_model
def sanet(input_shape: tuple[int, int, int], num_classes: int, dropout: float,
          rngs: nnx.Rngs, dtype: Dtype = None) -> nnx.Module:
    """Returns the proposed CNN with shuffle attention (G = 8) ending each conv stage."""
    return ProposedCNN(input_shape[2], num_classes, dropout, rngs, dtype, attention_groups=8)


class VGG16(nnx.Module):
    """VGG-16, configuration D, without BatchNorm; see torch's VGG16.

    Args:
        input_shape: (H, W, C), needed to size fc1.
        num_classes: output classes.
        dropout: rate of the classifier's dropout layers.
        rngs: the model's Rngs.
        dtype: the compute dtype of convs and dense layers.
    """

    stages = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float,
                 rngs: nnx.Rngs, dtype: Dtype) -> None:
        height, width, channels = input_shape
        for i, (out_channels, convs) in enumerate(self.stages, 1):
            setattr(self, f"block{i}", ConvStage(channels, out_channels, convs, rngs, dtype,
                                                 batch_norm=False))
            channels = out_channels
        n = len(self.stages)
        hwc = (_pooled(height, 2, 2, n), _pooled(width, 2, 2, n), channels)
        self.classifier = Classifier(hwc, num_classes, dropout, rngs, dtype)

    def __call__(self, x: jax.Array, tap: StageTap | None = None) -> jax.Array:
        for i in range(1, len(self.stages) + 1):
            x = _max_pool(_tapped(tap, f"block{i}", getattr(self, f"block{i}")(x)), 2, 2)
        return self.classifier(x)


@register_model
def vgg16(input_shape: tuple[int, int, int], num_classes: int, dropout: float,
          rngs: nnx.Rngs, dtype: Dtype = None) -> nnx.Module:
    """Returns VGG-16 for (H, W, C) input; see VGG16."""
    return VGG16(input_shape, num_classes, dropout, rngs, dtype)


class AlexNet(nnx.Module):
    """AlexNet with its first conv adapted to small input; see torch's AlexNet.

    Args:
        input_shape: (H, W, C), needed to size fc1.
        num_classes: output classes.
        dropout: rate of the classifier's dropout layers.
        rngs: the model's Rngs.
        dtype: the compute dtype of convs and dense layers.
    """

    # (out_channels, kernel, followed by a max-pool)
    layers = ((64, 3, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float,
                 rngs: nnx.Rngs, dtype: Dtype) -> None:
        height, width, channels = input_shape
        for i, (out_channels, kernel, _) in enumerate(self.layers, 1):
            setattr(self, f"conv{i}", _conv(channels, out_channels, kernel, rngs, dtype))
            channels = out_channels
        n = sum(pool for *_, pool in self.layers)
        hwc = (_pooled(height, 3, 2, n), _pooled(width, 3, 2, n), channels)
        self.classifier = Classifier(hwc, num_classes, dropout, rngs, dtype)

    def __call__(self, x: jax.Array, tap: StageTap | None = None) -> jax.Array:
        for i, (*_, pool) in enumerate(self.layers, 1):
            x = _tapped(tap, f"conv{i}", nnx.relu(getattr(self, f"conv{i}")(x)))
            if pool:
                x = _max_pool(x, 3, 2)
        return self.classifier(x)


@register_model
def alexnet(input_shape: tuple[int, int, int], num_classes: int, dropout: float,
            rngs: nnx.Rngs, dtype: Dtype = None) -> nnx.Module:
    """Returns the adapted AlexNet for (H, W, C) input; see AlexNet."""
    return AlexNet(input_shape, num_classes, dropout, rngs, dtype)


def _downsample(in_channels: int, out_channels: int, stride: int, rngs: nnx.Rngs,
                dtype: Dtype) -> nnx.List | None:
    """The shortcut's 1×1 conv + BN (items 0, 1) where the shape changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    conv = _conv(in_channels, out_channels, 1, rngs, dtype, stride, bias=False)
    return nnx.List([conv, TorchBatchNorm(out_channels, rngs)])


def _shortcut(downsample: nnx.List | None, x: jax.Array) -> jax.Array:
    if downsample is None:
        return x
    conv, norm = downsample
    return norm(conv(x))


class BasicBlock(nnx.Module):
    """ResNet's basic block: [3×3 conv + BN + ReLU, 3×3 conv + BN] + shortcut, ReLU.

    Args:
        in_channels: input channels.
        width: channels of both convs (and the output).
        stride: stride of the first conv and of the shortcut.
        rngs: the model's Rngs.
        dtype: the compute dtype of the convs.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, rngs: nnx.Rngs,
                 dtype: Dtype) -> None:
        self.conv1 = _conv(in_channels, width, 3, rngs, dtype, stride, bias=False)
        self.bn1 = TorchBatchNorm(width, rngs)
        self.conv2 = _conv(width, width, 3, rngs, dtype, bias=False)
        self.bn2 = TorchBatchNorm(width, rngs)
        self.downsample = _downsample(in_channels, width, stride, rngs, dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nnx.relu(out + _shortcut(self.downsample, x))


class Bottleneck(nnx.Module):
    """ResNet v1.5 bottleneck: 1×1, 3×3 (strided), 1×1 (×4) convs with BN + shortcut.

    Args:
        in_channels: input channels.
        width: channels of the 1×1 and 3×3 convs; the output has 4 · width.
        stride: stride of the 3×3 conv and of the shortcut.
        rngs: the model's Rngs.
        dtype: the compute dtype of the convs.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, rngs: nnx.Rngs,
                 dtype: Dtype) -> None:
        self.conv1 = _conv(in_channels, width, 1, rngs, dtype, bias=False)
        self.bn1 = TorchBatchNorm(width, rngs)
        self.conv2 = _conv(width, width, 3, rngs, dtype, stride, bias=False)
        self.bn2 = TorchBatchNorm(width, rngs)
        self.conv3 = _conv(width, width * self.expansion, 1, rngs, dtype, bias=False)
        self.bn3 = TorchBatchNorm(width * self.expansion, rngs)
        self.downsample = _downsample(in_channels, width * self.expansion, stride, rngs, dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = nnx.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return nnx.relu(out + _shortcut(self.downsample, x))


class ResNet(nnx.Module):
    """ResNet with torchvision's module names, convs without bias; see torch's ResNet.

    The stem's max-pool pads with −inf, as torch's.

    Args:
        block: BasicBlock or Bottleneck.
        blocks: blocks per stage, e.g. (3, 4, 6, 3).
        in_channels: input channels.
        num_classes: output classes.
        rngs: the model's Rngs.
        dtype: the compute dtype of convs and the dense layer.
    """

    def __init__(self, block: Callable[..., nnx.Module], blocks: tuple[int, int, int, int],
                 in_channels: int, num_classes: int, rngs: nnx.Rngs, dtype: Dtype) -> None:
        self.conv1 = _conv(in_channels, 64, 7, rngs, dtype, 2, bias=False)
        self.bn1 = TorchBatchNorm(64, rngs)
        channels = 64
        self.stages = len(blocks)
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
            stage = []
            for j in range(count):
                stage.append(block(channels, width, 2 if i > 1 and j == 0 else 1, rngs, dtype))
                channels = width * block.expansion
            setattr(self, f"layer{i}", nnx.List(stage))
        self.fc = nnx.Linear(channels, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, tap: StageTap | None = None) -> jax.Array:
        x = _max_pool(nnx.relu(self.bn1(self.conv1(x))), 3, 2, pad=1)
        for i in range(1, self.stages + 1):
            for block in getattr(self, f"layer{i}"):
                x = block(x)
            x = _tapped(tap, f"layer{i}", x)
        return self.fc(x.mean(axis=(1, 2)))


@register_model
def resnet18(input_shape: tuple[int, int, int], num_classes: int, rngs: nnx.Rngs,
             dtype: Dtype = None) -> nnx.Module:
    """Returns ResNet-18 (basic blocks 2-2-2-2) for (H, W, C) input; see ResNet."""
    return ResNet(BasicBlock, (2, 2, 2, 2), input_shape[2], num_classes, rngs, dtype)


@register_model
def resnet50(input_shape: tuple[int, int, int], num_classes: int, rngs: nnx.Rngs,
             dtype: Dtype = None) -> nnx.Module:
    """Returns ResNet-50 v1.5 (bottlenecks 3-4-6-3) for (H, W, C) input; see ResNet."""
    return ResNet(Bottleneck, (3, 4, 6, 3), input_shape[2], num_classes, rngs, dtype)
