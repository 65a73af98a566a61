"""Images in, defined once: every image levitor takes (a file, a PIL image, an array) becomes (H, W, 3) uint8 RGB
here, by these rules:

- files: EXIF orientation is applied (a phone's portrait photo stays portrait); a truncated or non-image file is
  a ValueError naming the file; a file Pillow's decompression-bomb guard refuses (over ~179 MP) is refused with
  its name before it is decoded; a named pipe, socket or device is refused before it is opened (reading one
  would wait forever);
- 16-bit images (PNG ``I;16``, ``I``, uint16 arrays) are scaled 0..65535 -> 0..255; float images in [0, 1] (or
  [0, 255] when their maximum says so) are scaled and rounded;
- palette, CMYK and grey modes are converted to RGB; an alpha channel (RGBA, LA, PA, (H, W, 4) arrays) is
  composited on **white**, as a browser shows a transparent PNG on a page, so cut-out objects keep their edges;
- at least :data:`MIN_SIDE` pixels a side; photos over :data:`MAX_PIXELS` are downscaled (aspect kept) with a
  warning, so a 100-megapixel photo never becomes an array in the kernel (the model runs at 320x512 anyway).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from levitor._util.files import check_not_special

MIN_SIDE = 8
MAX_PIXELS = 4096 * 4096  # larger photos are downscaled to this many pixels on load
BACKGROUND = 255  # alpha is composited on white


class ImageDownscaledWarning(UserWarning):
    """A photo larger than MAX_PIXELS was downscaled on load."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file with its EXIF orientation applied and its pixels read (so a truncated file fails here,
    with its name, not later), downscaled to at most :data:`MAX_PIXELS`."""
    path = check_not_special(path, "image file")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image; pass an image file (PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we downscale big photos ourselves
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS and im.format == "JPEG":
                im.draft("RGB", _fit_pixels(w, h))  # decode a JPEG at a fraction of its size: fast and small
            image = ImageOps.exif_transpose(im)
            image.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} is too large to decode safely ({err}); downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}: {err}); open it in an image "
                         "viewer, or save it again as PNG or JPEG") from None
    return _limit_size(image, str(path))


def as_rgb_uint8(image: Any) -> np.ndarray:
    """A file path, PIL image or array in any common mode -> (H, W, 3) uint8 RGB (the module docstring's rules)."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        a = _pil_to_array(_limit_size(image, "the image"))
    else:
        a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got shape {a.shape}")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        raise ValueError(f"image is {a.shape[1]}x{a.shape[0]}; it must be at least {MIN_SIDE}x{MIN_SIDE} pixels")
    rgb = _to_uint8(a)
    if rgb.shape[2] == 4:
        alpha = rgb[..., 3:].astype(np.float32) / 255.0
        rgb = np.round(rgb[..., :3] * alpha + BACKGROUND * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":  # 32-bit ints: 16-bit PNGs open this way
        a = np.asarray(image)
        return a.astype(np.uint16) if a.min() >= 0 and a.max() <= 65535 else a
    if image.mode == "F":
        return np.asarray(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 65535 -> 255, rounded
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("image has NaN or inf values; fix them (e.g. np.nan_to_num) before using it")
        scale = 255.0 if a.max() <= 1.0 else 1.0  # floats in [0, 1] or in [0, 255]
        return np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer image values {a.min()}..{a.max()} are outside 0..255; pass uint8 or uint16")
        return a.astype(np.uint8)
    raise ValueError(f"image dtype {a.dtype} is not supported; use uint8 RGB")


def _fit_pixels(w: int, h: int) -> tuple[int, int]:
    scale = (MAX_PIXELS / (w * h)) ** 0.5
    return max(MIN_SIDE, int(w * scale)), max(MIN_SIDE, int(h * scale))


def _limit_size(image: Image.Image, name: str) -> Image.Image:
    w, h = image.size
    if w * h <= MAX_PIXELS:
        return image
    size = _fit_pixels(w, h)
    warnings.warn(f"{name} is {w}x{h} pixels; downscaled to {size[0]}x{size[1]} on load (levitor works at "
                  "320x512: the full size would only fill memory)", ImageDownscaledWarning, stacklevel=3)
    return image.resize(size, Image.LANCZOS)


def center_crop_box(h: int, w: int, target_h: int, target_w: int, offset: float = 0.0) -> tuple[int, int, int, int]:
    """(y0, x0, crop_h, crop_w): the largest box of aspect ``target_w / target_h`` inside h x w, centred unless
    ``offset`` moves it along the axis that is cut: -1 the top (or left) edge, 0 the centre, 1 the bottom (right)."""
    check_crop_offset(offset)
    if w * target_h > h * target_w:  # source is wider than the target: cut left and right
        cw = max(1, round(h * target_w / target_h))
        return 0, _shifted(w - cw, offset), h, cw
    ch = max(1, round(w * target_h / target_w))
    return _shifted(h - ch, offset), 0, ch, w


def _shifted(spare: int, offset: float) -> int:
    """Where a window starts when ``spare`` pixels are cut: offset 0 keeps the centred ``spare // 2``."""
    return spare // 2 if offset == 0 else int(round((spare / 2) * (1 + offset)))


def check_crop_offset(offset: float) -> None:
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.integer, np.floating)) \
            or not -1.0 <= float(offset) <= 1.0:
        raise ValueError(f"crop_offset must be a number in -1..1 (-1: top/left, 0: centre, 1: bottom/right), got "
                         f"{offset!r}")


def fit_image(image: Any, height: int, width: int, offset: float = 0.0) -> np.ndarray:
    """An image cropped to the aspect ratio of ``height`` x ``width`` (centred, or moved by ``offset``: see
    :func:`center_crop_box`) and resized (bicubic): how a photo becomes a scene at the generation size."""
    rgb = as_rgb_uint8(image)
    y0, x0, ch, cw = center_crop_box(rgb.shape[0], rgb.shape[1], height, width, offset)
    img = Image.fromarray(rgb[y0:y0 + ch, x0:x0 + cw])
    return np.asarray(img.resize((width, height), Image.BICUBIC))
