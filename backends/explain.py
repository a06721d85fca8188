"""Grad-CAM's framework-neutral half, in numpy (docs/design.md §9).

Each backend computes, with its own autograd (torch autograd, TF GradientTape), a stage's
activations A (N, h, w, K) and the gradients dy_c/dA of the chosen class's logit; the
rest is here, once, for both frameworks (Selvaraju et al., 2017):

    α_k = mean over (h, w) of dy_c/dA_k;   map = ReLU(Σ_k α_k · A_k),

resized to the input's (H, W) bilinearly with half-pixel centres (torch's
`align_corners=False`). Doing the resize on the host keeps each framework's own
interpolation (whose conventions differ) out of the comparison.
"""

from __future__ import annotations

import numpy as np


def grad_cam_maps(activations: np.ndarray, gradients: np.ndarray,
                  size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM maps from one stage's activations and the class logit's gradients.

    Args:
        activations: (N, h, w, K) float32, the stage's output.
        gradients: (N, h, w, K), d logit[class] / d activations.
        size: (H, W) of the input, the maps' output size.

    Returns:
        (N, H, W) float32 maps, ≥ 0, not normalised (their scale is the logit's).
    """
    if activations.shape != gradients.shape or activations.ndim != 4:
        raise ValueError(f"activations and gradients must be one (N, h, w, K) shape. "
                         f"Received: {activations.shape}, {gradients.shape}")
    weights = gradients.astype(np.float64).mean(axis=(1, 2))  # (N, K)
    maps = np.einsum("nhwk,nk->nhw", activations.astype(np.float64), weights)
    return resize_bilinear(np.maximum(maps, 0.0), size).astype(np.float32)


def _axis_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: the two source indices and the second's weight."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0.0, source - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    return low, high, centres - low


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes (N, h, w) maps to (N, H, W), bilinear with half-pixel centres.

    Separable: rows, then columns; edges repeat (torch's `align_corners=False` without
    antialiasing).
    """
    height, width = size
    low, high, frac = _axis_weights(maps.shape[1], height)
    rows = maps[:, low] * (1 - frac)[None, :, None] + maps[:, high] * frac[None, :, None]
    low, high, frac = _axis_weights(maps.shape[2], width)
    return rows[:, :, low] * (1 - frac)[None, None, :] + rows[:, :, high] * frac[None, None, :]


def class_indices(class_index: int | np.ndarray, count: int, num_classes: int) -> np.ndarray:
    """One class index per image, int64, checked against `num_classes`.

    Args:
        class_index: one class for every image, or one per image.
        count: images.
        num_classes: the model's classes.
    """
    indices = np.broadcast_to(np.asarray(class_index, np.int64), (count,)).copy()
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"class_index must be in [0, {num_classes}). "
                         f"Received: {sorted(set(indices.tolist()))}")
    return indices
