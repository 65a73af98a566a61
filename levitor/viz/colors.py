"""Colours, defined once: instance colours, track colours, the depth colormap, and CSS strings for the widgets."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

GOLDEN = 0.618033988749895  # hue step between consecutive ids: neighbours never look alike

POINT_RADIUS = 4.0  # pixels: a control point's dot in the pictures and on the Studio's canvas


# Stops of a perceptual colormap (dark blue -> teal -> yellow), for depth and heatmaps.
_CMAP_STOPS = np.array([[48, 18, 59], [50, 136, 189], [102, 194, 165], [230, 245, 152], [254, 224, 139],
                        [244, 109, 67], [158, 1, 66]], dtype=np.float64)


def instance_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours; id 0 (no control) is grey. Deterministic: id i always has colour i."""
    out = np.zeros((max(n, 1), 3), dtype=np.uint8)
    out[0] = (128, 128, 128)
    for i in range(1, n):
        h = (i * GOLDEN) % 1.0
        out[i] = hsv_to_rgb(h, 0.75 if i % 2 else 0.55, 0.95)
    return out


def mask_colors(num_masks: int) -> np.ndarray:
    """(num_masks, 3) uint8: mask i always has the same colour (instance_colors of id i + 1), in the Studio and in
    every overlay made for its scene, whatever instance id the engine gives the mask."""
    return np.asarray(instance_colors(num_masks + 1), np.uint8)[1:num_masks + 1, :3].reshape(-1, 3)


def colors_by_mask(mask_of_id: dict[int, int], num_masks: int) -> np.ndarray:
    """(ids, 3) RGB per instance id, each id in its mask's colour (:func:`mask_colors`): the table an overlay takes
    to look like the Studio's canvas."""
    pal = mask_colors(num_masks)
    table = instance_colors(max(mask_of_id, default=0) + 1)
    for i, m in mask_of_id.items():
        table[i] = pal[m]
    return table


def colormap(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Map a 2D array to (H, W, 3) uint8 colours."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.nanmin(v) if vmin is None else vmin
    hi = np.nanmax(v) if vmax is None else vmax
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1) * (len(_CMAP_STOPS) - 1)
    i = np.minimum(t.astype(np.int64), len(_CMAP_STOPS) - 2)
    f = (t - i)[..., None]
    return (_CMAP_STOPS[i] * (1 - f) + _CMAP_STOPS[i + 1] * f).astype(np.uint8)


def track_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct, saturated colours (golden-ratio hues), stable for a given point index."""
    return np.asarray([hsv_to_rgb((i * GOLDEN) % 1.0, 1.0, 1.0) for i in range(n)], np.uint8).reshape(n, 3)


def css(rgb: Iterable[int]) -> str:
    """An RGB triple as a CSS colour, ``rgb(r,g,b)``."""
    r, g, b = (int(c) for c in rgb)
    return f"rgb({r},{g},{b})"


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)
