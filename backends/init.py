"""Framework-neutral initial weights, so both frameworks start from the same point.

`shared_initial_weights` draws every parameter from a numpy generator seeded by the
run's seed and the parameter's canonical name, following each family's reference
practice (torchvision's), then the backend loads the result with `set_weights`. The rule
of a parameter follows from its canonical name and shape alone, which both frameworks
share (backends/base.py), so a template exported by either framework gives bit-identical
weights. The rules (docs/design.md §2 and Models):

* every conv kernel (4-D): Kaiming-normal, fan_out mode, ReLU gain: N(0, 2 / fan_out)
  with fan_out = out · kh · kw (torchvision's VGG and ResNet); conv biases 0;
* the VGG/AlexNet head (`Classifier`: `classifier.fc1`-`fc3`): N(0, 0.01²), bias 0
  (torchvision's VGG; its AlexNet keeps torch's defaults, but ours is a VGG-style plain
  net with the same no-BatchNorm 4096-4096 head, where torch's defaults start from
  logits of order 1 and larger);
* every other dense layer, a single head on globally pooled features (ResNet's `fc`,
  proposed_cnn's and sanet's `classifier`): torch's `nn.Linear` default, which
  torchvision's ResNet keeps: weight and bias U(-1/√fan_in, 1/√fan_in);
* BatchNorm: γ = 1, β = 0, running mean 0, running variance 1; in a ResNet, γ = 0 for
  the last BatchNorm of every residual branch (`layer<i>.<j>.bn<k>` with the highest k
  of its block: bn3 of a bottleneck, bn2 of a basic block; torchvision's
  `zero_init_residual`, Goyal et al. 2017), so that every block starts as the identity;
* GroupNorm (shuffle attention's `gn`): γ = 1, β = 0; shuffle attention's gate
  constants keep SA-Net's values, which both frameworks define identically.

A twin run (`benchmarks.run --twins`) starts from the same weights with every nonzero one
moved one ulp away from zero (`twin=True`): a perturbation that changes no mathematics,
loaded into either framework alike, whose trained outcome measures run-to-run chaos
(docs/design.md §10, docs/reports.md Statistics).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

INIT_MODES = ("shared", "native")
# torchvision's VGG: nn.init.normal_(linear.weight, 0, 0.01).
VGG_HEAD_STD = 0.01
# The dense layers of the VGG/AlexNet head (torch's Classifier, TF's `classifier`).
_VGG_HEAD = re.compile(r"(.+\.)?classifier\.fc\d+")
# A ResNet block's BatchNorms (its shortcut's is `downsample.1`).
_RESIDUAL_BN = re.compile(r"(layer\d+\.\d+)\.bn(\d+)")


def shared_initial_weights(template: dict[str, np.ndarray], seed: int,
                           twin: bool = False) -> dict[str, np.ndarray]:
    """Returns initial weights for the model whose canonical layout is `template`.

    Args:
        template: a freshly built model's `get_weights()`, from either framework; only
            names, shapes and shuffle attention's gate constants are used.
        seed: the run's seed.
        twin: move every nonzero weight one float32 ulp away from zero (`one_ulp_away`),
            for a twin run.

    Returns:
        A new dict with the same keys and shapes, float32, drawn by the rules of the
        module docstring; deterministic given `seed`, the names and `twin`.
    """
    zero_gamma = _last_residual_norms(template)
    weights = {}
    for name, value in template.items():
        layer, _, param = name.rpartition(".")
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        kernel = template.get(f"{layer}.weight")
        if value.ndim == 4:
            fan_out = value.size // value.shape[1]
            drawn = rng.normal(0.0, np.sqrt(2.0 / fan_out), value.shape)
        elif kernel is not None and kernel.ndim == 2 and _VGG_HEAD.fullmatch(layer):
            drawn = rng.normal(0.0, VGG_HEAD_STD, value.shape) if param == "weight" else 0.0
        elif kernel is not None and kernel.ndim == 2:
            # torch's nn.Linear default, for its weight and its bias alike.
            bound = 1.0 / np.sqrt(kernel.shape[1])
            drawn = rng.uniform(-bound, bound, value.shape)
        elif param in ("bias", "running_mean"):
            drawn = 0.0  # conv biases; BatchNorm and GroupNorm shifts; running means
        elif param == "running_var":
            drawn = 1.0
        elif param == "weight":
            drawn = 0.0 if layer in zero_gamma else 1.0  # BatchNorm and GroupNorm scales
        else:
            drawn = value  # shuffle attention's gate constants
        weights[name] = np.broadcast_to(np.asarray(drawn, np.float32), value.shape).copy()
    return {name: one_ulp_away(value) for name, value in weights.items()} if twin else weights


def one_ulp_away(values: np.ndarray) -> np.ndarray:
    """`values` (float32) with every nonzero element moved one ulp away from zero.

    Zeros stay zero: their neighbour is a subnormal, which CPU kernels that flush
    subnormals to zero would turn back into 0, so the perturbation would depend on the
    kernel; a ResNet's zero-initialised BatchNorm scales keep their identity start too.

    Args:
        values: a float32 array.

    Returns:
        A new float32 array of the same shape.
    """
    values = np.asarray(values, np.float32)
    away = np.nextafter(values, np.copysign(np.float32(np.inf), values))
    return np.where(values == 0, values, away).astype(np.float32)


def _last_residual_norms(template: dict[str, np.ndarray]) -> set[str]:
    """The last BatchNorm of each residual branch: its block's highest-numbered bn<k>."""
    last: dict[str, int] = {}
    for name in template:
        match = _RESIDUAL_BN.fullmatch(name.rpartition(".")[0])
        if match:
            block, index = match.group(1), int(match.group(2))
            last[block] = max(index, last.get(block, 0))
    return {f"{block}.bn{index}" for block, index in last.items()}
