"""PyTorch model definitions. Mirrors backends/tf/models.py block for block.

Module paths are the canonical weight names (see backends/base.py), so
`state_dict()` is already in the canonical layout. Builders are called through
`create_model`, which validates the arguments and resolves `dropout` from the catalog.
"""

from __future__ import annotations

import torch
from torch import nn

from backends.base import BN_EPSILON, BN_MOMENTUM_TORCH, GN_EPSILON
from backends.catalog import ModelRegistry

_registry = ModelRegistry("torch")
register_model = _registry.register
create_model = _registry.create
list_models = _registry.names


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM_TORCH)


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = True
) -> nn.Conv2d:
    """A conv padded by kernel // 2 on every side (the only padding the zoo uses)."""
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=bias)


def _pooled(size: int, kernel: int, stride: int, times: int) -> int:
    """Returns a spatial size after `times` unpadded max-pools (floor mode)."""
    for _ in range(times):
        size = (size - kernel) // stride + 1
    return size


class ShuffleAttention(nn.Module):
    """Shuffle attention (SA-Net, Zhang & Yang, ICASSP 2021).

    The channels are split into `groups` groups; in each, one half is gated by channel
    attention (global average pool, per-channel affine, sigmoid) and the other by spatial
    attention (GroupNorm with one channel per group, per-channel affine, sigmoid); the
    halves are concatenated and the channels shuffled with 2 groups. The affine and
    GroupNorm parameters have C/(2G) entries, shared by the G groups, and start at
    SA-Net's values: channel_weight 0, channel_bias 1, spatial_weight 0, spatial_bias 1,
    gn.weight 1, gn.bias 0, which the shared init (backends/init.py) keeps. With both
    gate weights 0, every gate starts at sigmoid(1) whatever the input: the layer starts
    as a constant scaling and a channel shuffle, leaving the host network's start intact.

    Args:
        channels: input (and output) channels C, a multiple of 2 · groups.
        groups: the number of groups G.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(
                f"channels must be a multiple of 2·groups = {2 * groups}. "
                f"Received: channels={channels}"
            )
        half = channels // (2 * groups)
        self.groups = groups
        self.channel_weight = nn.Parameter(torch.zeros(half))
        self.channel_bias = nn.Parameter(torch.ones(half))
        self.spatial_weight = nn.Parameter(torch.zeros(half))
        self.spatial_bias = nn.Parameter(torch.ones(half))
        self.gn = nn.GroupNorm(half, half, eps=GN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Group g holds channels g·C/G … (g+1)·C/G - 1; the first half of each is x_channel.
        x = x.reshape(b * self.groups, c // self.groups, h, w)
        x_channel, x_spatial = x.chunk(2, dim=1)
        pooled = x_channel.mean(dim=(2, 3), keepdim=True)
        gate = _affine(pooled, self.channel_weight, self.channel_bias)
        x_channel = x_channel * torch.sigmoid(gate)
        gate = _affine(_in_float32(self.gn, x_spatial), self.spatial_weight, self.spatial_bias)
        x_spatial = x_spatial * torch.sigmoid(gate)
        x = torch.cat([x_channel, x_spatial], dim=1).reshape(b, c, h, w)
        # Channel shuffle with 2 groups: channel s·C/2 + i moves to 2·i + s.
        return x.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


class StagedModel(nn.Module):
    """Base of every zoo model: its forward passes each stage's output through `tap`.

    `tap` returns its input unchanged, so a plain forward computes exactly what it would
    without it; `forward_stages` also collects the tapped tensors, still in the autograd
    graph, for feature maps and Grad-CAM (`Backend.feature_maps`, `Backend.grad_cam`).
    The stage names are the catalog's (`backends.catalog.model_stages`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._taps: dict[str, torch.Tensor] | None = None

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Returns `x`, kept under `name` while `forward_stages` runs."""
        if self._taps is not None:
            self._taps[name] = x
        return x

    def forward_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The logits and every stage's output (NCHW), in one forward pass."""
        self._taps = {}
        try:
            return self(x), self._taps
        finally:
            self._taps = None


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    # In x's dtype, as Keras computes a layer's own weights in its compute dtype: under
    # autocast a float32 weight would otherwise promote the 16-bit gate to float32.
    return x * weight.to(x.dtype)[:, None, None] + bias.to(x.dtype)[:, None, None]


def _in_float32(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` computed in float32, returned in x's dtype (a no-op cast in float32).

    Keras's GroupNormalization upcasts 16-bit input the same way; autocast alone would
    leave GroupNorm in bfloat16 on a CPU and return float32 from it on a GPU.
    """
    with torch.autocast(x.device.type, enabled=False):
        return norm(x.float()).to(x.dtype)


class ConvStage(nn.Module):
    """`convs` × [Conv3×3 (pad 1) + BN + ReLU], then optionally shuffle attention.

    Modules conv1, bn1, conv2, bn2, …, and sa.

    Args:
        in_channels: input channels.
        out_channels: channels of every conv in the stage.
        convs: number of Conv-(BN)-ReLU units.
        batch_norm: whether each conv is followed by BatchNorm.
        attention_groups: G of a ShuffleAttention after the last ReLU; None for none.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        convs: int,
        batch_norm: bool = True,
        attention_groups: int | None = None,
    ) -> None:
        super().__init__()
        self.convs, self.batch_norm = convs, batch_norm
        for i in range(1, convs + 1):
            conv = _conv(in_channels if i == 1 else out_channels, out_channels, 3)
            self.add_module(f"conv{i}", conv)
            if batch_norm:
                self.add_module(f"bn{i}", _bn(out_channels))
        self.sa = (
            None if attention_groups is None else ShuffleAttention(out_channels, attention_groups)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.convs + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{i}")(x)
            x = torch.relu(x)
        return x if self.sa is None else self.sa(x)


class Classifier(nn.Module):
    """The VGG/AlexNet head: Flatten, [Linear + ReLU + Dropout] × 2, Linear.

    Modules fc1, fc2, fc3. The flatten runs over (C, H, W), the canonical order. The
    shared init draws their weights N(0, 0.01²) with zero biases, torchvision's VGG
    practice (backends/init.py recognises this head by its names, classifier.fc<k>).

    Args:
        in_features: flattened input size C·H·W.
        num_classes: output classes.
        dropout: rate of both dropout layers.
        hidden: width of the two hidden layers.
    """

    def __init__(
        self, in_features: int, num_classes: int, dropout: float, hidden: int = 4096
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
        x = self.dropout(torch.relu(self.fc2(x)))
        return self.fc3(x)


class ProposedCNN(StagedModel):
    """The design card's proposed CNN (docs/design.md, Models), optionally with shuffle attention.

    block1-3: ConvStage ×2 convs (32, 64, 128) each followed by MaxPool2; block4: one
    Conv-BN-ReLU of 256 then Dropout; global average pool; Linear 256 → C.
    584,807 trainable parameters at 1 channel and 7 classes (any input size); with
    attention (sanet) each stage's ShuffleAttention adds 6·C/(2G): 584,987 at G = 8.

    Shared init (backends/init.py): every conv is followed by BatchNorm and the head is
    one Linear on globally pooled features, as in a ResNet without shortcuts, so it
    follows torchvision's ResNet practice minus the zero-γ of residual branches, which it
    has none of: convs Kaiming-normal (fan_out, ReLU) with zero biases, BN γ = 1 and
    β = 0, the classifier torch's nn.Linear default U(±1/√256). Shuffle attention keeps
    SA-Net's constants (ShuffleAttention).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        dropout: rate of the dropout after block4.
        attention_groups: G of a ShuffleAttention ending each block; None for none.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float,
        attention_groups: int | None = None,
    ) -> None:
        super().__init__()
        self.block1 = ConvStage(in_channels, 32, 2, attention_groups=attention_groups)
        self.block2 = ConvStage(32, 64, 2, attention_groups=attention_groups)
        self.block3 = ConvStage(64, 128, 2, attention_groups=attention_groups)
        self.block4 = ConvStage(128, 256, 1, attention_groups=attention_groups)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.tap("block1", self.block1(x)))
        x = self.pool(self.tap("block2", self.block2(x)))
        x = self.pool(self.tap("block3", self.block3(x)))
        x = self.dropout(self.tap("block4", self.block4(x)))
        return self.classifier(x.mean(dim=(2, 3)))


@register_model
def proposed_cnn(
    input_shape: tuple[int, int, int], num_classes: int, dropout: float
) -> nn.Module:
    """Returns the proposed CNN for (H, W, C) input; see ProposedCNN."""
    return ProposedCNN(input_shape[2], num_classes, dropout)


@register_model
def sanet(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> nn.Module:
    """Returns the proposed CNN with shuffle attention (G = 8) ending each conv stage."""
    return ProposedCNN(input_shape[2], num_classes, dropout, attention_groups=8)


class VGG16(StagedModel):
    """VGG-16, configuration D (Simonyan & Zisserman, 2015), without BatchNorm.

    block1-5: ConvStage of 3×3 convs (pad 1) + ReLU, widths 64×2, 128×2, 256×3, 512×3,
    512×3, each followed by MaxPool2; then Classifier (Flatten, 4096, 4096, C). There is
    no adaptive pooling: at 48×48 the last map is 1×1, so fc1 sees 512 features and the
    model has 33,624,775 trainable parameters at 1 channel and 7 classes.

    Shared init (backends/init.py), torchvision's VGG: convs Kaiming-normal (fan_out,
    ReLU), biases 0; the classifier N(0, 0.01²), biases 0.

    Args:
        input_shape: (H, W, C), needed to size fc1.
        num_classes: output classes.
        dropout: rate of the classifier's dropout layers.
    """

    stages = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        height, width, channels = input_shape
        for i, (out_channels, convs) in enumerate(self.stages, 1):
            stage = ConvStage(channels, out_channels, convs, batch_norm=False)
            self.add_module(f"block{i}", stage)
            channels = out_channels
        self.pool = nn.MaxPool2d(2)
        n = len(self.stages)
        flat = channels * _pooled(height, 2, 2, n) * _pooled(width, 2, 2, n)
        self.classifier = Classifier(flat, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, len(self.stages) + 1):
            x = self.pool(self.tap(f"block{i}", getattr(self, f"block{i}")(x)))
        return self.classifier(x)


@register_model
def vgg16(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> nn.Module:
    """Returns VGG-16 for (H, W, C) input; see VGG16."""
    return VGG16(input_shape, num_classes, dropout)


class AlexNet(StagedModel):
    """AlexNet (Krizhevsky et al., 2012) with its first conv adapted to small input.

    Layers (every conv padded by kernel // 2, stride 1, then ReLU):
    conv1 3×3 64 (the original's 11×11/4 would shrink 48 px to 11 before any pooling),
    MaxPool 3×3/2, conv2 5×5 192, MaxPool 3×3/2, conv3 3×3 384, conv4 3×3 256,
    conv5 3×3 256, MaxPool 3×3/2, then Classifier (Flatten, 4096, 4096, C; dropout after
    each hidden layer, as the paper's "dropout in the first two fully-connected layers").
    No adaptive pooling. At 48×48 the maps are 48 → 23 → 11 → 5, fc1 sees 256·5·5 = 6,400
    features, and the model has 45,475,527 trainable parameters at 1 channel and 7
    classes (convs 2,447,040; fc1 26,218,496; fc2 16,781,312; fc3 28,679).

    Shared init (backends/init.py): VGG's, as for VGG16 (convs Kaiming-normal fan_out,
    classifier N(0, 0.01²), biases 0). torchvision's AlexNet keeps torch's default
    initialisers; this one, a plain no-BatchNorm net with VGG's 4096-4096 head, follows
    VGG's practice instead, which starts it at the loss of an untrained classifier.

    Args:
        input_shape: (H, W, C), needed to size fc1.
        num_classes: output classes.
        dropout: rate of the classifier's dropout layers.
    """

    # (out_channels, kernel, followed by a max-pool)
    layers = ((64, 3, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        height, width, channels = input_shape
        for i, (out_channels, kernel, _) in enumerate(self.layers, 1):
            self.add_module(f"conv{i}", _conv(channels, out_channels, kernel))
            channels = out_channels
        self.pool = nn.MaxPool2d(3, 2)
        n = sum(pool for *_, pool in self.layers)
        flat = channels * _pooled(height, 3, 2, n) * _pooled(width, 3, 2, n)
        self.classifier = Classifier(flat, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (*_, pool) in enumerate(self.layers, 1):
            x = self.tap(f"conv{i}", torch.relu(getattr(self, f"conv{i}")(x)))
            if pool:
                x = self.pool(x)
        return self.classifier(x)


@register_model
def alexnet(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> nn.Module:
    """Returns the adapted AlexNet for (H, W, C) input; see AlexNet."""
    return AlexNet(input_shape, num_classes, dropout)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The shortcut's 1×1 conv + BN (modules 0, 1) where the shape changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    conv = _conv(in_channels, out_channels, 1, stride, bias=False)
    return nn.Sequential(conv, _bn(out_channels))


class BasicBlock(nn.Module):
    """ResNet's basic block: [3×3 conv + BN + ReLU, 3×3 conv + BN] + shortcut, ReLU.

    Args:
        in_channels: input channels.
        width: channels of both convs (and the output).
        stride: stride of the first conv and of the shortcut.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, width, 3, stride, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = _conv(width, width, 3, bias=False)
        self.bn2 = _bn(width)
        self.downsample = _downsample(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + shortcut)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1×1, 3×3 (strided), 1×1 (×4) convs with BN + shortcut.

    v1.5 strides the 3×3 conv, as torchvision does; v1 (and Keras Applications'
    ResNet50) strides the first 1×1 instead.

    Args:
        in_channels: input channels.
        width: channels of the 1×1 and 3×3 convs; the output has 4 · width.
        stride: stride of the 3×3 conv and of the shortcut.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, width, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = _conv(width, width, 3, stride, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = _conv(width, width * self.expansion, 1, bias=False)
        self.bn3 = _bn(width * self.expansion)
        self.downsample = _downsample(in_channels, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + shortcut)


class ResNet(StagedModel):
    """ResNet (He et al., 2016) with torchvision's module names, convs without bias.

    Stem: conv1 7×7/2 (pad 3) + bn1 + ReLU, MaxPool 3×3/2 (pad 1); layer1-4 of `blocks`
    blocks, widths 64, 128, 256, 512, the first block of layer2-4 strided 2; global
    average pool; fc. torch pads the max-pool with -inf; the TF mirror pads with zeros,
    which gives the same maxima only because the input (post-ReLU) is ≥ 0.

    Shared init (backends/init.py), torchvision's with `zero_init_residual=True`: convs
    Kaiming-normal (fan_out, ReLU); BN γ = 1 and β = 0, except γ = 0 for the last BN of
    every residual branch (bn2 of a basic block, bn3 of a bottleneck; Goyal et al. 2017),
    so every block starts as its shortcut; fc torch's nn.Linear default U(±1/√fan_in)
    for weight and bias, which torchvision keeps.

    Args:
        block: BasicBlock or Bottleneck.
        blocks: blocks per stage, e.g. (3, 4, 6, 3).
        in_channels: input channels.
        num_classes: output classes.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, 64, 7, 2, bias=False)
        self.bn1 = _bn(64)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        channels = 64
        self.stages = len(blocks)
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
            stage = []
            for j in range(count):
                stage.append(block(channels, width, 2 if i > 1 and j == 0 else 1))
                channels = width * block.expansion
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.stages + 1):
            x = self.tap(f"layer{i}", getattr(self, f"layer{i}")(x))
        return self.fc(x.mean(dim=(2, 3)))


@register_model
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Returns ResNet-18 (basic blocks 2-2-2-2) for (H, W, C) input; see ResNet."""
    return ResNet(BasicBlock, (2, 2, 2, 2), input_shape[2], num_classes)


@register_model
def resnet50(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Returns ResNet-50 v1.5 (bottlenecks 3-4-6-3) for (H, W, C) input; see ResNet."""
    return ResNet(Bottleneck, (3, 4, 6, 3), input_shape[2], num_classes)
