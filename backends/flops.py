"""Framework-neutral cost of a model: trainable parameters and forward FLOPs.

Each catalog model has, besides its two framework definitions, a framework-neutral one
(`ModelInfo.architecture`, backends/catalog.py) that walks a `Trace` on shapes alone, so
these numbers need neither framework and are by construction the same for both backends.
Tests check the parameter counts against both frameworks and the conv/dense FLOPs
against torch's FLOP counter, so the trace cannot drift from the models.

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


class Trace:
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

    def cost(self) -> ModelCost:
        """What the trace has summed so far: the whole model's cost once it has walked it."""
        return ModelCost(params=self.params, flops=self.matmul + self.other,
                         matmul_flops=self.matmul)

    def branch(self) -> Trace:
        """Returns a trace of a side path (a shortcut) that starts from this shape."""
        return Trace(self.model, (self.h, self.w, self.c))

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

    def add(self, shortcut: Trace) -> None:
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
