"""Figures of images: Grad-CAM overlays, feature-map grids, the most confident mistakes.

numpy and matplotlib only (no deep-learning framework): `benchmarks.explain` computes the
maps and draws them here; the report draws the error gallery from a run's saved test
probabilities. Each function returns PNG bytes (`plots._png`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from benchmarks.report.plots import _png, _text, backend_color

# Overlay opacity: enough colour to read the map, enough face to see what it covers.
_OVERLAY_ALPHA = 0.45
FEATURE_CHANNELS = 8  # channels shown per stage: the first ones, in canonical order


def _face(ax, image: np.ndarray) -> None:
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


def grad_cam_figure(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                    maps: dict[str, np.ndarray], class_names: list[str], title: str) -> bytes:
    """Per class a row of test images, each followed by every framework's Grad-CAM overlay.

    Both frameworks' maps of one image share one colour scale (their common maximum), so
    equal maps look equal.

    Args:
        images: (N, H, W, C) uint8, grouped by class.
        labels: (N,) true classes; the maps explain these.
        predicted: (N,) the model's predicted classes, shown above each image.
        maps: backend → (N, H, W) Grad-CAM maps.
        class_names: names of the classes, in label order.
        title: the figure's title.
    """
    classes = list(dict.fromkeys(labels.tolist()))
    per_class = max(int((labels == c).sum()) for c in classes)
    backends = list(maps)
    columns = per_class * (1 + len(backends))
    figure = Figure(figsize=(1.3 * columns, 1.45 * len(classes) + 0.6), layout="constrained")
    axes = figure.subplots(len(classes), columns, squeeze=False)
    for row, cls in enumerate(classes):
        chosen = np.flatnonzero(labels == cls)
        for slot in range(per_class):
            cells = axes[row, slot * (1 + len(backends)):(slot + 1) * (1 + len(backends))]
            if slot >= len(chosen):
                for ax in cells:
                    ax.set_visible(False)
                continue
            index = chosen[slot]
            _face(cells[0], images[index])
            mark = "✓" if predicted[index] == cls else "✗"
            cells[0].set_title(f"{mark} pred {_text(class_names[predicted[index]])}", fontsize=6)
            scale = max(float(maps[b][index].max()) for b in backends) or 1.0
            for ax, backend in zip(cells[1:], backends, strict=True):
                _face(ax, images[index])
                ax.imshow(maps[backend][index] / scale, cmap="jet", vmin=0, vmax=1,
                          alpha=_OVERLAY_ALPHA)
                ax.set_title(_text(backend), fontsize=7, color=backend_color(backend, backends))
        axes[row, 0].set_ylabel(_text(class_names[cls]), fontsize=8)
    figure.suptitle(_text(title), fontsize=10)
    return _png(figure)


def feature_grid_figure(image: np.ndarray, features: dict[str, np.ndarray], title: str,
                        channels: int = FEATURE_CHANNELS) -> bytes:
    """One image's feature maps: a row per stage, its first `channels` channels.

    Args:
        image: (H, W, C) uint8, the input.
        features: stage → (h, w, K) float32, in forward order.
        title: the figure's title.
        channels: channels shown per stage.
    """
    figure = Figure(figsize=(1.1 * (channels + 1), 1.2 * len(features) + 0.6),
                    layout="constrained")
    axes = figure.subplots(len(features), channels + 1, squeeze=False)
    for row, (stage, maps) in enumerate(features.items()):
        _face(axes[row, 0], image)
        axes[row, 0].set_ylabel(f"{_text(stage)}\n{maps.shape[0]}×{maps.shape[1]}×"
                                f"{maps.shape[2]}", fontsize=7)
        for column in range(channels):
            ax = axes[row, column + 1]
            if column >= maps.shape[-1]:
                ax.set_visible(False)
                continue
            ax.imshow(maps[..., column], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"ch {column}", fontsize=7)
    figure.suptitle(_text(title), fontsize=10)
    return _png(figure)


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` wrong predictions made with the highest probability."""
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    # Stable, so equal confidences keep test-set order and the gallery never reshuffles.
    return wrong[np.argsort(-confidence, kind="stable")[:count]]


def mistakes_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                    class_names: list[str], title: str, count: int = 12) -> bytes | None:
    """The most confident mistakes: each test image with its true and predicted label.

    Args:
        images: (N, H, W, C) uint8 test images.
        labels: (N,) true classes.
        probabilities: (N, C) the run's test probabilities.
        class_names: names of the classes, in label order.
        title: the figure's title.
        count: mistakes shown at most.

    Returns:
        PNG bytes, or None when the run made no mistake.
    """
    chosen = confident_mistakes(labels, probabilities, count)
    if not len(chosen):
        return None
    columns = min(6, len(chosen))
    rows = -(-len(chosen) // columns)
    figure = Figure(figsize=(1.6 * columns, 1.9 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(chosen):]:
        ax.set_visible(False)
    for ax, index in zip(axes, chosen, strict=False):
        _face(ax, images[index])
        guess = int(probabilities[index].argmax())
        ax.set_title(f"true {_text(class_names[labels[index]])}\npred "
                     f"{_text(class_names[guess])} ({probabilities[index, guess]:.0%})",
                     fontsize=7)
    figure.suptitle(_text(title), fontsize=10)
    return _png(figure)
