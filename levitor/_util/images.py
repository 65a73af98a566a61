"""Images in, defined once: every image levitor takes (arrays, PIL images, files) becomes (H, W, 3) uint8 RGB here."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image


def as_rgb_uint8(image: Any) -> np.ndarray:
    """Accept PIL images and arrays in the common modes; return (H, W, 3) uint8 RGB."""
    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I", "F"):
            image = np.asarray(image)
        else:
            return np.asarray(image.convert("RGB")).copy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got shape {a.shape}")
    if a.shape[2] == 4:
        a = a[..., :3]  # alpha is dropped: the video model sees RGB only
    if a.shape[0] < 8 or a.shape[1] < 8:
        raise ValueError(f"image is {a.shape[1]}x{a.shape[0]}; it must be at least 8x8 pixels")
    if a.dtype == np.uint8:
        return np.array(a, copy=not (a.flags.writeable and a.flags.c_contiguous), order="C")
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("image has NaN or inf values")
        scale = 255.0 if a.max() <= 1.0 else 1.0  # floats in [0, 1] or in [0, 255]
        return np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise ValueError(f"image dtype {a.dtype} is not supported; use uint8 RGB")


def center_crop_box(h: int, w: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """(y0, x0, crop_h, crop_w): the largest centred box of aspect ``target_w / target_h`` inside h x w."""
    if w * target_h > h * target_w:  # source is wider than the target: cut left and right
        cw = max(1, round(h * target_w / target_h))
        return 0, (w - cw) // 2, h, cw
    ch = max(1, round(w * target_h / target_w))
    return (h - ch) // 2, 0, ch, w


def fit_image(image: Any, height: int, width: int) -> np.ndarray:
    """An image centre-cropped to the aspect ratio of ``height`` x ``width`` and resized (bicubic): how a photo
    becomes a scene at the generation size."""
    rgb = as_rgb_uint8(image)
    y0, x0, ch, cw = center_crop_box(rgb.shape[0], rgb.shape[1], height, width)
    img = Image.fromarray(rgb[y0:y0 + ch, x0:x0 + cw])
    return np.asarray(img.resize((width, height), Image.BICUBIC))
