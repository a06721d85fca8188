"""Training augmentation and test-time views, on the host, in numpy (docs/design.md §3).

Both frameworks must train on identical pixels, so augmentation runs here, on the uint8
NHWC batch, before either framework sees it. Every random parameter of a batch comes
from one generator (`batch_rng`) in a fixed layout that depends on the batch's shape and
nothing else, so a seed fixes the augmented pixels bit for bit.

Per image, the ops run in torchvision's recipe order:

1. geometry: random resized crop or pad-and-crop, rotation, horizontal flip. The three
   compose into one inverse affine map per image, sampled once with bilinear
   interpolation (one blur instead of three). Outside the image the nearest edge pixel
   is repeated, for pad-crop and rotation alike. Sampling the whole image, a crop
   window's outermost output pixels blend with the source pixels just outside the window
   (as torch's affine_grid with align_corners=False), where cropping first and resizing
   after would clamp at the window's edge;
2. photometric: contrast around the image's mean, then an additive brightness shift,
   clipped to [0, 255] and rounded once, half to even (`np.rint`);
3. random erasing (Zhong et al. 2017) last, on the final uint8 pixels, as torchvision puts
   RandomErasing after ToTensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache

import numpy as np

AUGMENT_LEVELS = ("none", "light", "standard")
TTA_MODES = ("none", "flip", "tencrop")

# Ends the seed of every augmentation generator so that it never equals the shuffle
# stream's (seed, epoch) seed, zero-padded or not ("aug" in ASCII).
_AUGMENT_STREAM = 0x617567
# Tries at drawing a crop or an erased rectangle that fits, as in torchvision.
_ATTEMPTS = 10
# Uniform draws per image, the columns of one row of the batch's block, in op order:
# resized crop (apply; areas, log-ratios, top, left), pad-crop shift (top, left), angle,
# flip, brightness, contrast, erase (apply; areas, log-ratios, top, left; value).
_COLUMNS = (1, 2 * _ATTEMPTS + 2, 2, 1, 1, 1, 1, 1, 2 * _ATTEMPTS + 2, 1)
_DRAWS = sum(_COLUMNS)


def _check_number(name: str, value: object, low: float, high: float,
                  low_open: bool = False, high_open: bool = False) -> None:
    """Raises ValueError unless `value` is a finite real number in [low, high], the ends
    excluded where `low_open` or `high_open`."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}. Received: {name}={value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-op settings of `augment_batch`; an op is off when its probability or amount is 0.

    Plain numbers only, so `AugmentConfig(**dataclasses.asdict(config))` round-trips.

    Attributes:
        pad_crop_frac: pad-and-crop: pad each side by round(pad_crop_frac · side) pixels
            and crop back to H×W at a uniform random offset, i.e. shift by a whole number
            of pixels in [-pad, pad] on each axis. A fraction of the side rather than
            pixels, so one setting means the same at 48 and at 224 pixels. The padding
            repeats the edge pixels: reflecting would mirror a face's features (a second
            eye or chin) into the border, where repeating leaves a featureless smear.
            In [0, 0.5).
        resized_crop_prob: probability of a random resized crop for each image, which
            then replaces the pad-and-crop.
        resized_crop_scale: the crop's smallest area, as a fraction of the image's; the
            area is uniform in [resized_crop_scale, 1]. In (0, 1].
        resized_crop_ratio: r ≥ 1: the crop's aspect ratio (width/height) is log-uniform
            in [1/r, r]. As torchvision: 10 tries at a crop that fits, else the whole
            image; the crop is resized back to H×W.
        flip_prob: probability of a horizontal flip.
        rotate_deg: d: rotation by an angle uniform in [-d, d] degrees, counter-clockwise
            for positive angles, about the image's centre. In [0, 180].
        brightness: b: additive shift uniform in [-b, b] · 255 pixel values. In [0, 1].
        contrast: c: factor uniform in [1 - c, 1 + c] on each image's deviation from its
            own mean. In [0, 1].
        erase_prob: probability of erasing one rectangle, as torchvision's RandomErasing:
            10 tries at a rectangle that fits strictly inside, else none.
        erase_scale_min: the rectangle's smallest area, as a fraction of the image's.
        erase_scale_max: its largest; the area is uniform in [min, max].
        erase_ratio: r ≥ 1: the rectangle's aspect ratio is log-uniform in [1/r, r].
            The rectangle is filled with one random grey value, uniform over 0..255, in
            every channel: a flat occluder like a hand, where per-pixel noise would be a
            texture no face has, easy to learn to ignore.
    """

    pad_crop_frac: float = 0.0
    resized_crop_prob: float = 0.0
    resized_crop_scale: float = 0.08
    resized_crop_ratio: float = 4 / 3
    flip_prob: float = 0.0
    rotate_deg: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erase_prob: float = 0.0
    erase_scale_min: float = 0.02
    erase_scale_max: float = 0.33
    erase_ratio: float = 3.3

    def __post_init__(self) -> None:
        for name in ("resized_crop_prob", "flip_prob", "erase_prob", "brightness", "contrast"):
            _check_number(name, getattr(self, name), 0.0, 1.0)
        _check_number("pad_crop_frac", self.pad_crop_frac, 0.0, 0.5, high_open=True)
        _check_number("resized_crop_scale", self.resized_crop_scale, 0.0, 1.0, low_open=True)
        _check_number("rotate_deg", self.rotate_deg, 0.0, 180.0)
        _check_number("erase_scale_min", self.erase_scale_min, 0.0, 1.0, low_open=True)
        _check_number("erase_scale_max", self.erase_scale_max, self.erase_scale_min, 1.0)
        for name in ("resized_crop_ratio", "erase_ratio"):
            _check_number(name, getattr(self, name), 1.0, math.inf)

    @property
    def is_identity(self) -> bool:
        """Whether every op is off, so that `augment_batch` returns a copy."""
        return (self.pad_crop_frac == 0 and self.resized_crop_prob == 0
                and self.flip_prob == 0 and self.rotate_deg == 0 and self.brightness == 0
                and self.contrast == 0 and self.erase_prob == 0)


_LIGHT = AugmentConfig(flip_prob=0.5, pad_crop_frac=1 / 12)
_LEVELS = {
    "none": AugmentConfig(),
    "light": _LIGHT,
    "standard": AugmentConfig(
        flip_prob=_LIGHT.flip_prob, pad_crop_frac=_LIGHT.pad_crop_frac, rotate_deg=10.0,
        brightness=0.2, contrast=0.2, erase_prob=0.25, erase_scale_min=0.02,
        erase_scale_max=0.15,
    ),
}


def augment_config(level: str) -> AugmentConfig:
    """The settings of a named level (docs/design.md §3 tabulates them).

    Args:
        level: one of AUGMENT_LEVELS: "none" (all off), "light" (flip p 0.5, pad-crop by
            1/12 of the side: 4 px at 48) or "standard" (light, plus rotation ±10°,
            brightness and contrast 0.2, erasing p 0.25 of 2–15 % of the area).

    Returns:
        The level's AugmentConfig.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {', '.join(AUGMENT_LEVELS)}. "
                         f"Received: level={level!r}")
    return _LEVELS[level]


def batch_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one training step's augmentation.

    Seeded by (seed, epoch, step) and a constant tag, so any step reproduces on its own,
    and the stream is not the shuffle order's (`epoch_batches`, seeded by (seed, epoch)).

    Args:
        seed: the run's seed.
        epoch: 0-based epoch number.
        step: 0-based step within the epoch.

    Returns:
        A fresh numpy Generator.
    """
    return np.random.default_rng([seed, epoch, step, _AUGMENT_STREAM])


@dataclass(frozen=True, eq=False)
class AugmentParams:
    """Every random choice of one batch, drawn by `draw_params`, applied by `apply_params`.

    Attributes:
        size: (H, W) the parameters were drawn for.
        crop_box: (n, 4) float64 (top, left, height, width) of the source window, in
            pixels, mapped onto the whole output; (0, 0, H, W) is no crop. Pad-and-crop
            is a window of the image's size at a shifted offset.
        angle_deg: (n,) rotation, counter-clockwise for positive angles.
        flip: (n,) bool, horizontal flip.
        contrast: (n,) contrast factor (1: unchanged).
        brightness: (n,) additive shift in pixel values.
        erase: (n,) bool, whether a rectangle is erased.
        erase_box: (n, 4) int64 (top, left, height, width) of the erased rectangle.
        erase_value: (n,) uint8 fill value.
    """

    size: tuple[int, int]
    crop_box: np.ndarray
    angle_deg: np.ndarray
    flip: np.ndarray
    contrast: np.ndarray
    brightness: np.ndarray
    erase: np.ndarray
    erase_box: np.ndarray
    erase_value: np.ndarray

    def equals(self, other: AugmentParams) -> bool:
        """Whether `other` holds the same choices, array for array."""
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in fields(self))


def _random_boxes(u: np.ndarray, h: int, w: int, scale: tuple[float, float], ratio: float,
                  strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's rectangle sampler, vectorised: the first of `_ATTEMPTS` tries whose
    rectangle fits (strictly inside when `strict`, as RandomErasing asks).

    Args:
        u: (n, 2 · _ATTEMPTS + 2) uniforms: areas, log-ratios, top, left.
        h, w: image size.
        scale: area fraction range.
        ratio: aspect ratio bound r ≥ 1.

    Returns:
        (boxes, found): (n, 4) int64 (top, left, height, width), and (n,) bool, False
        where no try fitted (the box is then the whole image).
    """
    n = len(u)
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[:, :_ATTEMPTS])
    log_r = math.log(ratio)
    aspect = np.exp(-log_r + 2 * log_r * u[:, _ATTEMPTS : 2 * _ATTEMPTS])
    box_w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    box_h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    if strict:
        fits = (box_h >= 1) & (box_w >= 1) & (box_h < h) & (box_w < w)
    else:
        fits = (box_h >= 1) & (box_w >= 1) & (box_h <= h) & (box_w <= w)
    first = np.argmax(fits, axis=1)
    found = fits[np.arange(n), first]
    box_h = np.where(found, box_h[np.arange(n), first], h)
    box_w = np.where(found, box_w[np.arange(n), first], w)
    top = np.floor(u[:, -2] * (h - box_h + 1)).astype(np.int64)
    left = np.floor(u[:, -1] * (w - box_w + 1)).astype(np.int64)
    return np.stack([top, left, box_h, box_w], axis=1), found


def draw_params(n: int, h: int, w: int, config: AugmentConfig,
                rng: np.random.Generator) -> AugmentParams:
    """Draws every random choice of a batch of `n` images of size H×W.

    The generator gives one block of n × _DRAWS uniforms, a row per image, whatever the
    config: the draws depend on the batch's shape alone, never on its pixels, so two
    pipelines that share a seed cannot drift apart; turning one op on leaves the others'
    choices as they were; and the first k images of a batch get the choices they would
    get in a batch of k.

    Args:
        n: images in the batch (≥ 1).
        h, w: image height and width (≥ 1).
        config: the ops' settings.
        rng: the batch's generator (`batch_rng`); advanced by exactly n × _DRAWS doubles.

    Returns:
        The batch's AugmentParams.
    """
    for name, value in (("n", n), ("h", h), ("w", w)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1. Received: {name}={value!r}")
    (u_resize, u_resized_box, u_shift, u_angle, u_flip, u_brightness, u_contrast, u_erase,
     u_erase_box, u_value) = np.split(rng.random((n, _DRAWS)), np.cumsum(_COLUMNS)[:-1],
                                      axis=1)
    resize = u_resize[:, 0] < config.resized_crop_prob
    resized_box, _ = _random_boxes(u_resized_box, h, w, (config.resized_crop_scale, 1.0),
                                   config.resized_crop_ratio, strict=False)
    pad = np.array([np.rint(config.pad_crop_frac * h), np.rint(config.pad_crop_frac * w)])
    shift = np.floor(u_shift * (2 * pad + 1)) - pad
    crop_box = np.empty((n, 4))
    crop_box[:, :2] = shift
    crop_box[:, 2:] = (h, w)
    crop_box[resize] = resized_box[resize]

    angle = config.rotate_deg * (2 * u_angle[:, 0] - 1)
    flip = u_flip[:, 0] < config.flip_prob
    brightness = 255.0 * config.brightness * (2 * u_brightness[:, 0] - 1)
    contrast = 1.0 + config.contrast * (2 * u_contrast[:, 0] - 1)

    erase = u_erase[:, 0] < config.erase_prob
    erase_box, found = _random_boxes(u_erase_box, h, w, (config.erase_scale_min,
                                                         config.erase_scale_max),
                                     config.erase_ratio, strict=True)
    erase_value = np.floor(u_value[:, 0] * 256).astype(np.uint8)
    return AugmentParams(size=(h, w), crop_box=crop_box, angle_deg=angle, flip=flip,
                         contrast=contrast, brightness=brightness, erase=erase & found,
                         erase_box=erase_box, erase_value=erase_value)


def _inverse_maps(h: int, w: int, crop_box: np.ndarray, angle_deg: np.ndarray,
                  flip: np.ndarray) -> np.ndarray:
    """(n, 2, 3) float64 maps from an output pixel's (x, y, 1) to the source pixel (x, y)
    it samples, for output = flip(rotate(resize(crop(image)))).

    Worked in centred coordinates, pixel centres at index + 0.5: undo the flip, undo the
    rotation about the output's centre, then scale into the crop window about its centre.
    """
    top, left, box_h, box_w = crop_box.T
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    sign = np.where(flip, -1.0, 1.0)
    sx, sy = box_w / w, box_h / h
    # y points down, so a counter-clockwise turn on screen maps source p to
    # [[c, s], [-s, c]] p; its inverse is [[c, -s], [s, c]].
    maps = np.empty((len(crop_box), 2, 3))
    maps[:, 0, 0] = sx * cos * sign
    maps[:, 0, 1] = -sx * sin
    maps[:, 1, 0] = sy * sin * sign
    maps[:, 1, 1] = sy * cos
    ox, oy = 0.5 - w / 2, 0.5 - h / 2  # output index → centred output coordinate
    maps[:, 0, 2] = maps[:, 0, 0] * ox + maps[:, 0, 1] * oy + left + box_w / 2 - 0.5
    maps[:, 1, 2] = maps[:, 1, 0] * ox + maps[:, 1, 1] * oy + top + box_h / 2 - 0.5
    return maps


@cache
def _base_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel indices x and y, each (H, W) float32; cached per size (read-only)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def _bilinear(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Samples each image at its inverse affine map, bilinearly, in one gather.

    Source coordinates are clamped into the image, which repeats the edge pixels beyond
    it. At whole-pixel coordinates the result is the source pixel exactly.

    Args:
        images: (n, H, W, C) uint8.
        maps: (n, 2, 3) from `_inverse_maps`.

    Returns:
        (n, H, W, C) float32 in [0, 255].
    """
    n, h, w, c = images.shape
    xs, ys = _base_grid(h, w)
    m = maps.astype(np.float32)[:, :, :, None, None]
    src_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]
    src_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    np.clip(src_x, 0, w - 1, out=src_x)
    np.clip(src_y, 0, h - 1, out=src_y)
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = src_x - x0, src_y - y0
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    rows0 = y0 * w + (np.arange(n, dtype=np.intp) * (h * w))[:, None, None]
    rows1 = rows0 + (y1 - y0) * w
    if c == 1:
        flat = images.reshape(-1)
    else:
        flat = images.reshape(n * h * w, c)
        fx, fy = fx[..., None], fy[..., None]
    v00, v01 = flat[rows0 + x0].astype(np.float32), flat[rows0 + x1].astype(np.float32)
    v10, v11 = flat[rows1 + x0].astype(np.float32), flat[rows1 + x1].astype(np.float32)
    # Lerps rather than four weights: at fx = 0 or fy = 0 they return a corner exactly.
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    out = top + fy * (bottom - top)
    return out.reshape(n, h, w, c)


def _check_images(images: np.ndarray) -> None:
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and min(images.shape) >= 1):
        raise ValueError(
            "images must be a non-empty uint8 array of shape (N, H, W, C). Received: "
            f"dtype={getattr(images, 'dtype', type(images).__name__)}, "
            f"shape={getattr(images, 'shape', None)}"
        )


def apply_params(images: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Applies a batch's drawn choices: geometry, then photometric, then erasing.

    Args:
        images: (n, H, W, C) uint8, H×W as `params.size`.
        params: from `draw_params` for this batch's shape.

    Returns:
        A new (n, H, W, C) uint8 array.
    """
    _check_images(images)
    n, h, w, _ = images.shape
    if (h, w) != params.size or n != len(params.flip):
        raise ValueError(
            "params were drawn for another batch shape. Received: images of shape "
            f"{images.shape}, params for {len(params.flip)} images of {params.size}"
        )
    identity_box = np.array([0.0, 0.0, h, w])
    warp = ((params.crop_box != identity_box).any(axis=1) | (params.angle_deg != 0)
            | params.flip)
    tone = (params.contrast != 1) | (params.brightness != 0)
    if warp.any() or tone.any():
        pixels = (_bilinear(images, _inverse_maps(h, w, params.crop_box, params.angle_deg,
                                                  params.flip))
                  if warp.any() else images.astype(np.float32))
        if tone.any():
            factor = params.contrast.astype(np.float32)[:, None, None, None]
            mean = pixels.mean(axis=(1, 2, 3), dtype=np.float32)[:, None, None, None]
            shift = params.brightness.astype(np.float32)[:, None, None, None]
            # (x - mean) · c + mean + b, as one multiply-add per pixel.
            pixels = pixels * factor + (mean * (1 - factor) + shift)
        np.clip(pixels, 0, 255, out=pixels)
        out = np.rint(pixels, out=pixels).astype(np.uint8)
    else:
        out = images.copy()
    if params.erase.any():
        top, left, box_h, box_w = params.erase_box.T
        rows = np.arange(h)
        cols = np.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
        mask = in_rows[:, :, None] & in_cols[:, None, :] & params.erase[:, None, None]
        out = np.where(mask[..., None], params.erase_value[:, None, None, None], out)
    return out


def augment_batch(images: np.ndarray, config: AugmentConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """Augments a training batch: `draw_params` from `rng`, then `apply_params`.

    Given the same generator state the output is bit-identical, whichever framework
    trains on it.

    Args:
        images: (N, H, W, C) uint8.
        config: the ops' settings (`augment_config(level)` for a named level).
        rng: the step's generator (`batch_rng(seed, epoch, step)`); consumed the same
            whatever the pixels, and not at all when every op is off.

    Returns:
        A new uint8 array of the same shape; an exact copy when every op is off.
    """
    _check_images(images)
    if config.is_identity:
        return images.copy()
    n, h, w, _ = images.shape
    return apply_params(images, draw_params(n, h, w, config, rng))


def tta_views(images: np.ndarray, mode: str, crop_frac: float = 0.875) -> list[np.ndarray]:
    """Test-time augmentation views of a batch, each to be predicted and averaged.

    Args:
        images: (N, H, W, C) uint8.
        mode: one of TTA_MODES: "none" ([images]), "flip" ([images, mirrored]) or
            "tencrop": the top-left, top-right, bottom-left, bottom-right and centre
            crops of side round(crop_frac · H) × round(crop_frac · W), each resized
            bilinearly back to H×W (the models take a fixed input size), then the mirror
            image of each of the five, in the same order: 10 views.
        crop_frac: the tencrop crops' side as a fraction of the image's, in (0, 1].

    Returns:
        A list of uint8 arrays of the shape of `images`; the identity view is `images`
        itself, not a copy.
    """
    _check_images(images)
    if mode not in TTA_MODES:
        raise ValueError(f"mode must be one of {', '.join(TTA_MODES)}. Received: mode={mode!r}")
    _check_number("crop_frac", crop_frac, 0.0, 1.0, low_open=True)
    if mode == "none":
        return [images]
    if mode == "flip":
        return [images, np.ascontiguousarray(images[:, :, ::-1])]
    n, h, w, _ = images.shape
    ch, cw = max(1, int(np.rint(crop_frac * h))), max(1, int(np.rint(crop_frac * w)))
    centre = (int(np.rint((h - ch) / 2)), int(np.rint((w - cw) / 2)))
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), centre]
    crops = []
    for top, left in corners:
        box = np.tile([top, left, ch, cw], (n, 1)).astype(np.float64)
        maps = _inverse_maps(h, w, box, np.zeros(n), np.zeros(n, bool))
        crops.append(np.rint(_bilinear(images, maps)).astype(np.uint8))
    return crops + [np.ascontiguousarray(view[:, :, ::-1]) for view in crops]
