"""PyTorch model definitions. Mirrors backends/tf/models.py block for block.

Module paths are the canonical weight names (see backends/base.py), so
`state_dict()` is already in the canonical layout.
"""

from __future__ import annotations

import torch
from torch import nn

from backends.base import BN_EPSILON, BN_MOMENTUM_TORCH
from backends.catalog import ModelRegistry

_registry = ModelRegistry("torch")
register_model = _registry.register
create_model = _registry.create
list_models = _registry.names


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM_TORCH)


class ConvStage(nn.Module):
    """`convs` × [Conv3×3 (pad 1) + BN + ReLU]; modules conv1, bn1, conv2, bn2, …

    Args:
        in_channels: input channels.
        out_channels: channels of every conv in the stage.
        convs: number of Conv-BN-ReLU units.
    """

    def __init__(self, in_channels: int, out_channels: int, convs: int) -> None:
        super().__init__()
        self.convs = convs
        for i in range(1, convs + 1):
            conv = nn.Conv2d(in_channels if i == 1 else out_channels, out_channels, 3, padding=1)
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", _bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.convs + 1):
            x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return x


class ProposedCNN(nn.Module):
    """The design card's proposed CNN (DESIGN §3).

    block1-3: ConvStage ×2 convs (32, 64, 128) each followed by MaxPool2; block4: one
    Conv-BN-ReLU of 256 then Dropout(0.5); global average pool; Linear 256 → C.
    584,807 trainable parameters at 1 channel and 7 classes (any input size).

    Args:
        in_channels: input channels.
        num_classes: output classes.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.block1 = ConvStage(in_channels, 32, 2)
        self.block2 = ConvStage(32, 64, 2)
        self.block3 = ConvStage(64, 128, 2)
        self.block4 = ConvStage(128, 256, 1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.pool(self.block3(x))
        x = self.dropout(self.block4(x))
        return self.classifier(x.mean(dim=(2, 3)))


@register_model
def proposed_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Returns the proposed CNN for (H, W, C) input; see ProposedCNN."""
    return ProposedCNN(input_shape[2], num_classes)
