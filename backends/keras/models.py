"""Keras 3 model definitions. Mirrors backends/torch/models.py block for block.

Shared by the tf and keras-jax backends: written in `keras.layers` and `keras.ops` only.
Layer names are the canonical weight prefixes (the torch module paths, see
backends/base.py); backends/keras/weights.py converts each layer's arrays to and from the
canonical layout by layer type. Builders are called through `create_model`, which
validates the arguments and resolves `dropout` from the catalog. Initial weights: by
default both frameworks load the same ones, drawn by backends/init.py from the canonical
names (each family's rules are on torch's classes); Keras's own initialisers serve only
`--init native`.
"""

from __future__ import annotations

# The framework package that imports this module has pinned KERAS_BACKEND
# (backends/keras/__init__.py).
import keras
import numpy as np
from keras import layers, ops

from backends.base import BN_EPSILON, BN_MOMENTUM_KERAS, GN_EPSILON
from backends.catalog import ModelRegistry

_registry = ModelRegistry("Keras")
register_model = _registry.register
create_model = _registry.create
list_models = _registry.names


class TorchBatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose running variance tracks the unbiased batch variance.

    torch's BatchNorm2d normalises with the biased batch variance but feeds the unbiased
    one (× n/(n-1)) into `running_var`; Keras feeds the biased one into
    `moving_variance`. Left alone, eval-mode outputs of the two frameworks would drift
    apart after training. Normalisation is unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, "float32")
        mean, variance = self._moments(x, mask)
        count = ops.cast(ops.size(x), "float32") / x.shape[self.axis]
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum)
        )
        outputs = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=self.beta, scale=self.gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)


# A stage's output passes through an Identity layer named "<stage>.out", which computes
# nothing and holds no weight, so `staged_model` can find it by name (the stage's own
# canonical name may already name a weighted layer: alexnet's "conv1" is the conv).
STAGE_SUFFIX = ".out"


def _stage(x, name: str):
    """Marks `x` as the output of stage `name` (`backends.catalog.model_stages`)."""
    return layers.Identity(name=f"{name}{STAGE_SUFFIX}")(x)


def staged_model(model: keras.Model, stages: tuple[str, ...]) -> keras.Model:
    """A model sharing `model`'s layers that returns (logits, {stage: NHWC output}).

    Args:
        model: a zoo model built by `create_model`.
        stages: its stage names, each marked by `_stage`.

    Returns:
        A functional keras.Model on the same input; one call gives the logits and the
        stage tensors of the same forward pass, so a GradientTape around it differentiates
        the logits with respect to each stage.
    """
    outputs = {name: model.get_layer(f"{name}{STAGE_SUFFIX}").output for name in stages}
    return keras.Model(model.inputs, [model.outputs[0], outputs])


def _bn(name: str) -> layers.BatchNormalization:
    return TorchBatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM_KERAS, name=name)


def _conv(
    x, out_channels: int, kernel: int, stride: int = 1, bias: bool = True, name: str | None = None
):
    """A conv padded by kernel // 2 on every side, like torch's `_conv`.

    Stride 1 "same" pads an odd kernel evenly. With stride 2, "same" pads only as much as
    the output size needs and puts the odd pixel at the bottom/right, which shifts every
    window against torch's; so strided convs pad explicitly and run "valid".
    """
    pad = kernel // 2
    if stride > 1 and pad:
        x = layers.ZeroPadding2D(pad)(x)
    padding = "same" if stride == 1 else "valid"
    return layers.Conv2D(
        out_channels, kernel, stride, padding=padding, use_bias=bias, name=name
    )(x)


@keras.saving.register_keras_serializable(package="fer_bench")
class ShuffleAttention(layers.Layer):
    """Shuffle attention (SA-Net, Zhang & Yang, ICASSP 2021); see torch's ShuffleAttention.

    Works on NHWC but reproduces torch's NCHW channel bookkeeping exactly: group g holds
    channels g·C/G … (g+1)·C/G - 1, the first half of each group gets channel attention,
    and the final 2-group shuffle moves channel s·C/2 + i to 2·i + s. Canonical
    parameters: channel_weight, channel_bias, spatial_weight, spatial_bias, gn.weight,
    gn.bias, each of C/(2G) entries.

    Args:
        groups: the number of groups G; the input's channels must be a multiple of 2·G.
        **kwargs: Layer arguments (name, …).
    """

    def __init__(self, groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.groups = groups

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        if channels % (2 * self.groups):
            raise ValueError(
                f"channels must be a multiple of 2·groups = {2 * self.groups}. "
                f"Received: channels={channels}"
            )
        half = channels // (2 * self.groups)
        self.channel_weight = self.add_weight((half,), "zeros", name="channel_weight")
        self.channel_bias = self.add_weight((half,), "ones", name="channel_bias")
        self.spatial_weight = self.add_weight((half,), "zeros", name="spatial_weight")
        self.spatial_bias = self.add_weight((half,), "ones", name="spatial_bias")
        # The layer's own policy (mixed under bfloat16/float16), wherever it is built.
        self.gn = layers.GroupNormalization(groups=half, epsilon=GN_EPSILON, name="gn",
                                            dtype=self.dtype_policy)
        self.gn.build((None, input_shape[1], input_shape[2], half))

    def call(self, x):
        _, h, w, c = x.shape
        g = self.groups
        # NHWC twin of torch's reshape to (B·G, C/G, H, W): split channels into (G, C/G)
        # and move G next to the batch axis.
        x = ops.transpose(ops.reshape(x, (-1, h, w, g, c // g)), (0, 3, 1, 2, 4))
        x = ops.reshape(x, (-1, h, w, c // g))
        x_channel, x_spatial = ops.split(x, 2, axis=-1)
        pooled = ops.mean(x_channel, axis=(1, 2), keepdims=True)
        x_channel = x_channel * ops.sigmoid(pooled * self.channel_weight + self.channel_bias)
        gate = self.gn(x_spatial) * self.spatial_weight + self.spatial_bias
        x_spatial = x_spatial * ops.sigmoid(gate)
        x = ops.reshape(ops.concatenate([x_channel, x_spatial], axis=-1), (-1, g, h, w, c // g))
        x = ops.transpose(x, (0, 2, 3, 1, 4))
        # Channel shuffle: view channels as (2, C/2), i.e. index s·C/2 + i, and swap.
        x = ops.swapaxes(ops.reshape(x, (-1, h, w, 2, c // 2)), 3, 4)
        return ops.reshape(x, (-1, h, w, c))

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups}

    def _canonical_variables(self) -> dict:
        return {
            "channel_weight": self.channel_weight,
            "channel_bias": self.channel_bias,
            "spatial_weight": self.spatial_weight,
            "spatial_bias": self.spatial_bias,
            "gn.weight": self.gn.gamma,
            "gn.bias": self.gn.beta,
        }

    def to_canonical(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Arrays in `self.weights` order → {canonical param name: array}."""
        by_id = {id(v): a for v, a in zip(self.weights, arrays, strict=True)}
        return {name: by_id[id(v)] for name, v in self._canonical_variables().items()}

    def from_canonical(self, params: dict[str, np.ndarray]) -> list[np.ndarray]:
        """{canonical param name: array} → arrays in `self.weights` order."""
        names = {id(v): name for name, v in self._canonical_variables().items()}
        return [params[names[id(v)]] for v in self.weights]


def conv_stage(
    x,
    out_channels: int,
    convs: int,
    name: str,
    batch_norm: bool = True,
    attention_groups: int | None = None,
):
    """`convs` × [Conv3×3 (pad 1) + BN + ReLU], then optionally shuffle attention.

    Layers <name>.conv1, <name>.bn1, …, and <name>.sa.

    Args:
        x: input tensor (NHWC).
        out_channels: channels of every conv in the stage.
        convs: number of Conv-(BN)-ReLU units.
        name: the stage's name prefix.
        batch_norm: whether each conv is followed by BatchNorm.
        attention_groups: G of a ShuffleAttention after the last ReLU; None for none.

    Returns:
        The stage's output tensor.
    """
    for i in range(1, convs + 1):
        x = _conv(x, out_channels, 3, name=f"{name}.conv{i}")
        if batch_norm:
            x = _bn(f"{name}.bn{i}")(x)
        x = layers.ReLU()(x)
    if attention_groups is not None:
        x = ShuffleAttention(attention_groups, name=f"{name}.sa")(x)
    return x


def classifier(x, num_classes: int, dropout: float, name: str, hidden: int = 4096):
    """The VGG/AlexNet head: Flatten, [Dense + ReLU + Dropout] × 2, Dense.

    Layers <name>.fc1, <name>.fc2, <name>.fc3. Keras flattens NHWC in (H, W, C) order;
    fc1 carries `flatten_input_hwc` so backends/keras/weights.py reorders its kernel rows
    to torch's (C, H, W) when converting to and from the canonical layout.

    Args:
        x: input tensor (NHWC).
        num_classes: output classes.
        dropout: rate of both dropout layers.
        name: the head's name prefix.
        hidden: width of the two hidden layers.

    Returns:
        The logits tensor.
    """
    fc1 = layers.Dense(hidden, name=f"{name}.fc1")
    fc1.flatten_input_hwc = tuple(x.shape[1:])
    x = layers.Dropout(dropout)(layers.ReLU()(fc1(layers.Flatten()(x))))
    x = layers.Dropout(dropout)(layers.ReLU()(layers.Dense(hidden, name=f"{name}.fc2")(x)))
    return layers.Dense(num_classes, name=f"{name}.fc3")(x)


def _proposed_cnn(
    input_shape, num_classes: int, dropout: float, attention_groups: int | None, name: str
) -> keras.Model:
    """The design card's proposed CNN; see torch's ProposedCNN."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, (width, convs) in enumerate(((32, 2), (64, 2), (128, 2)), 1):
        x = conv_stage(x, width, convs, f"block{i}", attention_groups=attention_groups)
        x = layers.MaxPooling2D(2)(_stage(x, f"block{i}"))
    x = _stage(conv_stage(x, 256, 1, "block4", attention_groups=attention_groups), "block4")
    x = layers.GlobalAveragePooling2D()(layers.Dropout(dropout)(x))
    outputs = layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model
def proposed_cnn(
    input_shape: tuple[int, int, int], num_classes: int, dropout: float
) -> keras.Model:
    """Returns the proposed CNN for (H, W, C) input; see torch's ProposedCNN."""
    return _proposed_cnn(input_shape, num_classes, dropout, None, "proposed_cnn")


@register_model
def sanet(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> keras.Model:
    """Returns the proposed CNN with shuffle attention (G = 8) ending each conv stage."""
    return _proposed_cnn(input_shape, num_classes, dropout, 8, "sanet")


@register_model
def vgg16(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> keras.Model:
    """Returns VGG-16 for (H, W, C) input; see torch's VGG16."""
    inputs = keras.Input(input_shape)
    x = inputs
    stages = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
    for i, (out_channels, convs) in enumerate(stages, 1):
        x = conv_stage(x, out_channels, convs, f"block{i}", batch_norm=False)
        x = layers.MaxPooling2D(2)(_stage(x, f"block{i}"))
    outputs = classifier(x, num_classes, dropout, "classifier")
    return keras.Model(inputs, outputs, name="vgg16")


@register_model
def alexnet(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> keras.Model:
    """Returns the adapted AlexNet for (H, W, C) input; see torch's AlexNet (layers)."""
    inputs = keras.Input(input_shape)
    x = inputs
    # (out_channels, kernel, followed by a max-pool)
    convs = ((64, 3, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))
    for i, (out_channels, kernel, pool) in enumerate(convs, 1):
        x = _stage(layers.ReLU()(_conv(x, out_channels, kernel, name=f"conv{i}")), f"conv{i}")
        if pool:
            x = layers.MaxPooling2D(3, 2)(x)
    outputs = classifier(x, num_classes, dropout, "classifier")
    return keras.Model(inputs, outputs, name="alexnet")


def _downsample(x, out_channels: int, stride: int, name: str):
    """The shortcut: 1×1 conv + BN (<name>.downsample.0/.1) where the shape changes."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    x = _conv(x, out_channels, 1, stride, bias=False, name=f"{name}.downsample.0")
    return _bn(f"{name}.downsample.1")(x)


def basic_block(x, width: int, stride: int, name: str):
    """ResNet's basic block; see torch's BasicBlock."""
    shortcut = _downsample(x, width, stride, name)
    out = _conv(x, width, 3, stride, bias=False, name=f"{name}.conv1")
    out = layers.ReLU()(_bn(f"{name}.bn1")(out))
    out = _conv(out, width, 3, bias=False, name=f"{name}.conv2")
    out = _bn(f"{name}.bn2")(out)
    return layers.ReLU()(layers.Add()([out, shortcut]))


def bottleneck(x, width: int, stride: int, name: str):
    """ResNet v1.5 bottleneck (stride on the 3×3 conv); see torch's Bottleneck."""
    shortcut = _downsample(x, 4 * width, stride, name)
    out = _conv(x, width, 1, bias=False, name=f"{name}.conv1")
    out = layers.ReLU()(_bn(f"{name}.bn1")(out))
    out = _conv(out, width, 3, stride, bias=False, name=f"{name}.conv2")
    out = layers.ReLU()(_bn(f"{name}.bn2")(out))
    out = _conv(out, 4 * width, 1, bias=False, name=f"{name}.conv3")
    out = _bn(f"{name}.bn3")(out)
    return layers.ReLU()(layers.Add()([out, shortcut]))


def resnet(input_shape, num_classes: int, block, blocks: tuple[int, ...], name: str):
    """ResNet with torchvision's layer names; see torch's ResNet.

    The stem's 7×7/2 conv and 3×3/2 max-pool pad explicitly (see `_conv`). torch pads the
    max-pool with -inf, ZeroPadding2D with 0: the maxima agree because the pool's input
    is post-ReLU, hence ≥ 0, and every window holds at least one real pixel.

    Args:
        input_shape: (H, W, C).
        num_classes: output classes.
        block: basic_block or bottleneck.
        blocks: blocks per stage, e.g. (3, 4, 6, 3).
        name: the model's name.

    Returns:
        A functional keras.Model mapping NHWC float input to logits.
    """
    inputs = keras.Input(input_shape)
    x = layers.ReLU()(_bn("bn1")(_conv(inputs, 64, 7, 2, bias=False, name="conv1")))
    x = layers.MaxPooling2D(3, 2)(layers.ZeroPadding2D(1)(x))
    for i, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        for j in range(count):
            x = block(x, width, 2 if i > 1 and j == 0 else 1, f"layer{i}.{j}")
        x = _stage(x, f"layer{i}")
    outputs = layers.Dense(num_classes, name="fc")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name=name)


@register_model
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Returns ResNet-18 (basic blocks 2-2-2-2) for (H, W, C) input."""
    return resnet(input_shape, num_classes, basic_block, (2, 2, 2, 2), "resnet18")


@register_model
def resnet50(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Returns ResNet-50 v1.5 (bottlenecks 3-4-6-3) for (H, W, C) input."""
    return resnet(input_shape, num_classes, bottleneck, (3, 4, 6, 3), "resnet50")
