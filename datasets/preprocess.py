"""Turning one decoded picture into one model input: grayscale, face crop, resize.

Face crops use OpenCV's Haar cascade (`haarcascade_frontalface_default.xml` from
`cv2.data.haarcascades`) where the installed OpenCV has one. OpenCV 5 moved
`CascadeClassifier` and its models to opencv-contrib (opencv/opencv#25198), so with
opencv-python-headless 5.x, or whenever no face is found, the crop falls back to a centred
square (CENTRE_CROP_FRACTION of the shorter side); every fallback is counted.
`$FERBENCH_HAAR_CASCADE` may name another cascade file. A picture whose header states more
than MAX_IMAGE_PIXELS pixels is refused before it is decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

KDEF_ANGLES = ("frontal", "all")
# Full-frame portraits (CK+, KDEF) centre the head; this share of the shorter side holds the
# face from brows to chin in both, with little background.
CENTRE_CROP_FRACTION = 0.6
# A picture whose grey levels span no more than this is a placeholder, not a face.
BLANK_RANGE = 4
# The detector runs on a copy whose shorter side is this long: ~10× faster than full size,
# and faces in full-frame portraits stay far above the cascade's 24-pixel window.
_DETECT_SIDE_PX = 240
_MIN_FACE_FRACTION = 0.25  # smaller detections are background clutter, not the sitter
# The pixel budget: a picture whose header states more pixels is skipped before decoding.
# A few kilobytes of PNG can declare gigapixels; decoding one would take gigabytes (or
# raise cv2.error past OpenCV's own limit of 2**30). The budget equals Pillow's
# decompression-bomb threshold, so Pillow's warning only ever concerns a skipped file, and
# it is far above any face dataset (CK+ frames, the largest, are 640×490 = 0.3 MP).
MAX_IMAGE_PIXELS = 89_478_485


@dataclass(frozen=True)
class LoadOptions:
    """The settings that shape a loaded dataset (all of them key its cache).

    Attributes:
        image_size: side of the square output images, in pixels.
        kdef_angles: "frontal" (KDEF's straight-on `S` pictures, the default) or "all".
    """

    image_size: int = 48
    kdef_angles: str = "frontal"

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be ≥ 16. Received: image_size={self.image_size}")
        if self.kdef_angles not in KDEF_ANGLES:
            raise ValueError(
                f"kdef_angles must be one of {KDEF_ANGLES}. Received: kdef_angles="
                f"{self.kdef_angles!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """The fallback face box of a full-frame portrait.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        (x, y, side) of the centred square of CENTRE_CROP_FRACTION of the shorter side.
    """
    side = int(CENTRE_CROP_FRACTION * min(height, width))
    return (width - side) // 2, (height - side) // 2, side


class FaceFinder:
    """Locates the face in a full-frame grayscale portrait."""

    def __init__(self) -> None:
        self.cascade_path = _cascade_path()
        self._local = threading.local()  # a CascadeClassifier per thread: not thread-safe

    @property
    def name(self) -> str:
        """What finds faces here; part of the cache key, so a new detector re-crops."""
        if self.cascade_path is None:
            return f"centre-crop (no Haar cascade in OpenCV {cv2.__version__})"
        return f"haar:{self.cascade_path.name} (OpenCV {cv2.__version__})"

    def box(self, gray: np.ndarray) -> tuple[tuple[int, int, int], bool]:
        """Finds the face.

        Args:
            gray: (H, W) uint8 image.

        Returns:
            ((x, y, side), found): the largest detected face as a square, found=True; or
            the centred fallback square, found=False.
        """
        height, width = gray.shape
        if self.cascade_path is not None:
            cascade = getattr(self._local, "cascade", None)
            if cascade is None:
                cascade = self._local.cascade = cv2.CascadeClassifier(str(self.cascade_path))
            scale = min(1.0, _DETECT_SIDE_PX / min(height, width))
            small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            min_side = int(_MIN_FACE_FRACTION * min(small.shape))
            faces = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(min_side, min_side))
            if len(faces):
                x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
                side = int(round(max(w, h) / scale))
                return (int(x / scale), int(y / scale), min(side, height, width)), True
        return centre_square(height, width), False


def _cascade_path() -> Path | None:
    if not hasattr(cv2, "CascadeClassifier"):
        return None
    override = os.environ.get("FERBENCH_HAAR_CASCADE")
    base = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    path = Path(override) if override else base / "haarcascade_frontalface_default.xml"
    return path if path.is_file() else None


def decode_gray(path: Path) -> np.ndarray:
    """Reads an image file as (H, W) uint8 grayscale, within the pixel budget.

    Args:
        path: the file (any name: bytes are read first, so spaces and non-ASCII are fine).

    Returns:
        The decoded image.

    Raises:
        ValueError: the file is empty, its header states more than MAX_IMAGE_PIXELS
            pixels, or it is not an image OpenCV can decode.
    """
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        raise ValueError("empty file")
    _check_pixel_budget(data)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    except cv2.error as error:
        raise ValueError(f"not a decodable image (OpenCV: {error.err})") from error
    if image is None:
        raise ValueError("not a decodable image")
    return image


def _check_pixel_budget(data: np.ndarray) -> None:
    """Raises ValueError when the image header in `data` states over MAX_IMAGE_PIXELS pixels.

    Pillow reads only the header here. A header Pillow cannot read is left to OpenCV,
    which then either refuses the file (not decodable) or decodes it under its own limit.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        # Pillow refuses past twice its threshold (by default the budget) without a size.
        raise ValueError(
            f"image too large: its header states over {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
            f"(Pillow's decompression-bomb limit); the pixel budget is {MAX_IMAGE_PIXELS:,} "
            "(MAX_IMAGE_PIXELS)"
        ) from None
    except (OSError, ValueError, EOFError):  # UnidentifiedImageError is an OSError
        return  # no header Pillow can read: OpenCV decides, as the docstring says
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image too large: {width}×{height} = {width * height:,} pixels; the pixel budget "
            f"is {MAX_IMAGE_PIXELS:,} (MAX_IMAGE_PIXELS)"
        )


def blank_reason(gray: np.ndarray) -> str | None:
    """Why `gray` is a placeholder rather than a picture (None when it is a picture)."""
    if int(gray.max()) - int(gray.min()) <= BLANK_RANGE:
        return f"blank image (every pixel ≈ {int(gray.min())})"
    return None


def pixel_digest(gray: np.ndarray) -> bytes:
    """A hash of the decoded pixels: equal for exact duplicates whatever their file names."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(gray.shape, np.int64).tobytes())
    digest.update(np.ascontiguousarray(gray).tobytes())
    return digest.digest()


def square_resize(gray: np.ndarray, box: tuple[int, int, int] | None, size: int) -> np.ndarray:
    """Crops `gray` to the square `box` (default: its centred largest square), resizes.

    Args:
        gray: (H, W) uint8 image.
        box: (x, y, side) in pixels, or None for the largest centred square.
        size: output side length in pixels.

    Returns:
        (size, size) uint8 image.
    """
    height, width = gray.shape
    if box is None:
        side = min(height, width)
        box = ((width - side) // 2, (height - side) // 2, side)
    x, y, side = box
    x, y = min(max(x, 0), width - side), min(max(y, 0), height - side)
    crop = gray[y:y + side, x:x + side]
    if side == size:
        return np.ascontiguousarray(crop)
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
