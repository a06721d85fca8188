"""Framework-neutral cost of each model: trainable parameters and forward FLOPs.

Every architecture of the zoo is traced here a third time, on shapes alone, so these
numbers need neither framework and are by construction the same for both backends.
Tests check the parameter counts against both frameworks and the conv/dense FLOPs
against torch's FLOP counter, so this trace cannot drift from the models.

FLOPs are counted for one forward pass of one image in inference mode:

* conv and dense layers: 2 per multiply-add (bias excluded). This is what
  `torch.utils.flop_counter.FlopCounterMode` counts and is reported alone as
  `matmul_flops`; it dominates every model here;
* a bias: 1 per output element; a residual add: 1 per element;
* BatchNorm, folded to a scale and a shift: 2 per element;
* GroupNorm, which computes its statistics at inference too: 6 per element (mean 1,
  variance 3, scale and shift 2);
* ReLU and sigmoid: 1 per element; a gating multiply: 1 per element;
* max pooling: 1 per window element per output (comparisons); global average
  pooling: 1 per input element;
* nothing for dropout (identity at inference), padding, flatten, reshape, concat and
  channel shuffle (data movement only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelCost:
    """A model's size and work at one input shape.

    Attributes:
        params: trainable parameters (BN running statistics excluded).
        flops: forward FLOPs per image, everything listed in the module docstring.
        matmul_flops: the conv and dense part of `flops` (2 per multiply-add).
    """

    params: int
    flops: int
    matmul_flops: int


class _Trace:
    """Follows a feature map's (H, W, C) shape through a model, summing costs."""

    def __init__(self, model: str, shape: tuple[int, int, int]) -> None:
        self.model = model
        self.h, self.w, self.c = shape
        self.params = 0
        self.matmul = 0
        self.other = 0

    @property
    def elements(self) -> int:
        return self.h * self.w * self.c

    def branch(self) -> _Trace:
        """Returns a trace of a side path (a shortcut) that starts from this shape."""
        return _Trace(self.model, (self.h, self.w, self.c))

    def _resize(self, op: str, kernel: int, stride: int, pad: int) -> None:
        h = (self.h + 2 * pad - kernel) // stride + 1
        w = (self.w + 2 * pad - kernel) // stride + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"input_shape is too small for {self.model}: a {kernel}×{kernel}/{stride} "
                f"{op} would turn a {self.h}×{self.w} feature map into {h}×{w}"
            )
        self.h, self.w = h, w

    def conv(self, out: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        """A conv padded by kernel // 2 on every side, as all convs of the zoo are."""
        weights = self.c * kernel * kernel * out
        self._resize("conv", kernel, stride, kernel // 2)
        self.c = out
        self.params += weights + (out if bias else 0)
        self.matmul += 2 * self.h * self.w * self.c * (weights // out)
        self.other += self.elements if bias else 0

    def dense(self, out: int) -> None:
        if self.h * self.w != 1:
            raise RuntimeError(f"{self.model}: dense layer on a {self.h}×{self.w} map")
        self.params += self.c * out + out
        self.matmul += 2 * self.c * out
        self.other += out
        self.c = out

    def batch_norm(self) -> None:
        self.params += 2 * self.c
        self.other += 2 * self.elements

    def relu(self) -> None:
        self.other += self.elements

    def max_pool(self, kernel: int, stride: int, pad: int = 0) -> None:
        self._resize("max-pool", kernel, stride, pad)
        self.other += kernel * kernel * self.elements

    def global_avg_pool(self) -> None:
        self.other += self.elements
        self.h = self.w = 1

    def flatten(self) -> None:
        self.h, self.w, self.c = 1, 1, self.elements

    def add(self, shortcut: _Trace) -> None:
        """Merges a side path of the same output shape, plus the elementwise sum."""
        if (shortcut.h, shortcut.w, shortcut.c) != (self.h, self.w, self.c):
            raise RuntimeError(f"{self.model}: residual shapes differ")
        self.params += shortcut.params
        self.matmul += shortcut.matmul
        self.other += shortcut.other + self.elements

    def shuffle_attention(self, groups: int) -> None:
        self.params += 6 * (self.c // (2 * groups))
        half_map = self.elements // 2
        # Channel half: average pool and gate per element; affine (2) and sigmoid per channel.
        self.other += 2 * half_map + 3 * (self.c // 2)
        # Spatial half, per element: GroupNorm 6, affine 2, sigmoid 1, gate 1.
        self.other += 10 * half_map


def _conv_stage(
    t: _Trace,
    out: int,
    convs: int,
    batch_norm: bool = True,
    attention_groups: int | None = None,
) -> None:
    for _ in range(convs):
        t.conv(out, 3)
        if batch_norm:
            t.batch_norm()
        t.relu()
    if attention_groups is not None:
        t.shuffle_attention(attention_groups)


def _classifier(t: _Trace, num_classes: int, hidden: int = 4096) -> None:
    t.flatten()
    for _ in range(2):
        t.dense(hidden)
        t.relu()
    t.dense(num_classes)


def _proposed_cnn(t: _Trace, num_classes: int, attention_groups: int | None = None) -> None:
    for width in (32, 64, 128):
        _conv_stage(t, width, 2, attention_groups=attention_groups)
        t.max_pool(2, 2)
    _conv_stage(t, 256, 1, attention_groups=attention_groups)
    t.global_avg_pool()
    t.dense(num_classes)


def _sanet(t: _Trace, num_classes: int) -> None:
    _proposed_cnn(t, num_classes, attention_groups=8)


def _vgg16(t: _Trace, num_classes: int) -> None:
    for width, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        _conv_stage(t, width, convs, batch_norm=False)
        t.max_pool(2, 2)
    _classifier(t, num_classes)


def _alexnet(t: _Trace, num_classes: int) -> None:
    layers = ((64, 3, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))
    for width, kernel, pool in layers:
        t.conv(width, kernel)
        t.relu()
        if pool:
            t.max_pool(3, 2)
    _classifier(t, num_classes)


def _basic_block(t: _Trace, width: int, stride: int) -> None:
    shortcut = _downsample(t, width, stride)
    t.conv(width, 3, stride, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(width, 3, bias=False)
    t.batch_norm()
    t.add(shortcut)
    t.relu()


def _bottleneck(t: _Trace, width: int, stride: int) -> None:
    shortcut = _downsample(t, 4 * width, stride)
    t.conv(width, 1, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(width, 3, stride, bias=False)
    t.batch_norm()
    t.relu()
    t.conv(4 * width, 1, bias=False)
    t.batch_norm()
    t.add(shortcut)
    t.relu()


def _downsample(t: _Trace, out: int, stride: int) -> _Trace:
    shortcut = t.branch()
    if stride != 1 or t.c != out:
        shortcut.conv(out, 1, stride, bias=False)
        shortcut.batch_norm()
    return shortcut


def _resnet(
    t: _Trace, num_classes: int, block: Callable[[_Trace, int, int], None], layers: tuple
) -> None:
    t.conv(64, 7, 2, bias=False)
    t.batch_norm()
    t.relu()
    t.max_pool(3, 2, pad=1)
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        for i in range(blocks):
            block(t, width, 2 if stage > 0 and i == 0 else 1)
    t.global_avg_pool()
    t.dense(num_classes)


def _resnet18(t: _Trace, num_classes: int) -> None:
    _resnet(t, num_classes, _basic_block, (2, 2, 2, 2))


def _resnet50(t: _Trace, num_classes: int) -> None:
    _resnet(t, num_classes, _bottleneck, (3, 4, 6, 3))


_TRACES: dict[str, Callable[[_Trace, int], None]] = {
    "proposed_cnn": _proposed_cnn,
    "sanet": _sanet,
    "vgg16": _vgg16,
    "resnet50": _resnet50,
    "resnet18": _resnet18,
    "alexnet": _alexnet,
}

TRACED_MODELS: tuple[str, ...] = tuple(_TRACES)


def model_cost(name: str, input_shape: tuple[int, int, int], num_classes: int) -> ModelCost:
    """Returns the trainable parameters and forward FLOPs of a model at one input shape.

    Args:
        name: a catalog model name.
        input_shape: (height, width, channels).
        num_classes: output classes.

    Returns:
        The ModelCost (FLOPs per image; see the module docstring for what counts).

    Raises:
        ValueError: unknown model, or an input too small for the model's down-sampling.
    """
    if name not in _TRACES:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(TRACED_MODELS)}")
    t = _Trace(name, tuple(input_shape))
    _TRACES[name](t, num_classes)
    return ModelCost(params=t.params, flops=t.matmul + t.other, matmul_flops=t.matmul)
