"""No-weights perception: masks and depth a user can make without any downloaded model.

Masks:
- :func:`lasso_mask`: a closed polygon (the lasso tool), filled;
- :func:`brush_mask`: strokes of a round brush (polylines with a radius);
- :func:`flood_fill_mask`: the connected region around a seed click whose colour is within a tolerance of the
  seed's colour (the paint-bucket tool), and :func:`threshold_mask` for a plain brightness/colour range.

Depth (scene convention of :mod:`levitor.depth`: (0, 1], smaller = nearer):
- :func:`ground_plane_depth`: a camera looking at a flat floor. Below the horizon the floor's inverse depth
  grows linearly with the row (that is what perspective does to a plane), so the disparity runs from 0 at the
  horizon to 255 at the bottom row, then ``depth = 1 / disparity`` exactly as for DepthAnything's output.
  Everything above the horizon is as far as it gets (depth 1).
- :func:`constant_depth`: each object mask painted with one depth on top of a background depth; by default an
  object stands on the floor, taking the background depth under its lowest pixels;
- :func:`flat_depth`: every pixel at one depth (mid disparity), and :func:`nearer_depth`: a flat background with
  each object mask "N x nearer" than it (the two depths a close-up photo without a depth model reads best with).

The :class:`~levitor.scene.Scene` records which tool made each mask (``mask_sources``: "lasso", "brush",
"flood") and the depth (``depth_source``: "ground-plane", "constant").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from levitor.depth import DEFAULT_HORIZON, DISPARITY_MAX, FLAT_DISPARITY, depth_from_disparity

GROUND_PLANE_SOURCE = "ground-plane"
CONSTANT_SOURCE = "constant"
# the background of nearer_depth: objects can be up to 255 / 60 = 4.25x nearer, and one at the default N = 2
# (disparity 120) can still come 2x nearer on the 0..255 scale (at 64 it stopped at 1.99x)
BACKGROUND_DISPARITY = 60

Point = tuple[float, float]


# ---------------------------------------------------------------------- masks
def lasso_mask(points: Sequence[Point] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill the closed polygon through ``points`` ((x, y) pixels, in drawing order) -> (H, W) bool.

    The outline itself belongs to the mask, so a lasso around a thin object never misses its edge pixels. Points
    may lie off the image (a stroke that ran past its edge): the polygon is clipped to it.
    """
    pts = _points(points, "points")
    if len(pts) < 3:
        raise ValueError(
            f"a lasso needs at least 3 points to enclose an area, got {len(pts)}; use brush_mask for lines"
        )
    height, width = _shape(shape)
    canvas = Image.new("1", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts.tolist()], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def brush_mask(
    strokes: Sequence[Sequence[Point]] | np.ndarray, radius: float, shape: tuple[int, int]
) -> np.ndarray:
    """Paint round-brush strokes -> (H, W) bool. ``strokes``: a list of strokes, each a list of (x, y) pixels
    (a single stroke may be passed directly). ``radius``: the brush radius in pixels."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0 pixels, got {radius}")
    height, width = _shape(shape)
    if isinstance(strokes, np.ndarray):
        strokes = [strokes] if strokes.ndim == 2 else list(strokes)
    elif len(strokes) and np.ndim(strokes[0]) == 1:
        strokes = [strokes]  # one stroke given directly as a list of (x, y)
    mask = np.zeros((height, width), dtype=bool)
    for i, stroke in enumerate(strokes):
        pts = _points(stroke, f"strokes[{i}]")
        if len(pts) == 1:
            pts = np.concatenate([pts, pts])  # a dab: a zero-length segment paints a disc
        for p0, p1 in zip(pts[:-1], pts[1:]):
            _paint_segment(mask, p0, p1, float(radius))
    return mask


def _paint_segment(mask: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float) -> None:
    """Set every pixel whose centre (x = column, y = row) is within ``radius`` of the segment p0-p1."""
    height, width = mask.shape
    x0 = max(int(np.floor(min(p0[0], p1[0]) - radius)), 0)
    x1 = min(int(np.ceil(max(p0[0], p1[0]) + radius)) + 1, width)
    y0 = max(int(np.floor(min(p0[1], p1[1]) - radius)), 0)
    y1 = min(int(np.ceil(max(p0[1], p1[1]) + radius)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return  # the stroke lies entirely off the image
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = p1 - p0
    length2 = float(d @ d)
    t = np.zeros_like(xs) if length2 == 0 else np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / length2, 0, 1)
    dist2 = (xs - (p0[0] + t * d[0])) ** 2 + (ys - (p0[1] + t * d[1])) ** 2
    mask[y0:y1, x0:x1] |= dist2 <= radius * radius


def flood_fill_mask(
    image: np.ndarray,
    seed: Point,
    tolerance: float = 24.0,
    connectivity: int = 4,
    fill_holes: bool = True,
) -> np.ndarray:
    """The paint bucket: pixels connected to ``seed`` ((x, y) pixels) whose RGB colour is within ``tolerance``
    (Euclidean distance on the 0..255 scale) of the seed pixel's colour -> (H, W) bool.

    ``connectivity``: 4 (edges only) or 8 (corners too). ``fill_holes``: also take enclosed specks (texture,
    highlights) the tolerance missed, which is almost always what an object mask wants.
    """
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    x, y = seed
    col, row = int(round(x)), int(round(y))
    if not (0 <= col < width and 0 <= row < height):
        raise ValueError(f"seed {seed} is outside the {width}x{height} image; it is an (x, y) pixel, x to the right")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 (a colour distance on the 0..255 scale), got {tolerance}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    colour = rgb[row, col].astype(np.float32)
    close = np.linalg.norm(rgb.astype(np.float32) - colour, axis=-1) <= tolerance
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(close, structure=structure)
    mask = labels == labels[row, col]
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def threshold_mask(
    image: np.ndarray,
    low: float | Sequence[float],
    high: float | Sequence[float],
    seed: Point | None = None,
) -> np.ndarray:
    """Pixels whose value lies in [low, high] -> (H, W) bool. Scalars compare the grey level (mean of RGB),
    3-sequences compare each RGB channel. With ``seed``, keep only the connected region around that pixel."""
    rgb = _rgb(image).astype(np.float32)
    lo, hi = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
    if lo.shape != hi.shape or lo.shape not in ((), (3,)):
        raise ValueError(f"low and high must both be numbers (grey) or both RGB triples, got {low!r}, {high!r}")
    if np.any(lo > hi):
        raise ValueError(f"low must be <= high, got {low!r} > {high!r}")
    values = rgb.mean(axis=-1) if lo.shape == () else rgb
    inside = (values >= lo) & (values <= hi)
    mask = inside if lo.shape == () else inside.all(axis=-1)
    if seed is not None:
        col, row = int(round(seed[0])), int(round(seed[1]))
        if not (0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]):
            raise ValueError(f"seed {seed} is outside the image")
        labels, _ = ndimage.label(mask)
        mask = labels == labels[row, col] if mask[row, col] else np.zeros_like(mask)
    return mask


# ---------------------------------------------------------------------- depth
def ground_plane_disparity(
    shape: tuple[int, int], horizon: float = DEFAULT_HORIZON, near_disparity: int = DISPARITY_MAX
) -> np.ndarray:
    """(H, W) uint8 disparity of a flat floor: 0 on and above the horizon row, rising linearly to
    ``near_disparity`` at the bottom row (disparity of a plane is linear in the image row)."""
    height, width = _shape(shape)
    if not 0.0 <= horizon < 1.0:
        raise ValueError(f"horizon is a fraction of the image height from the top, in [0, 1), got {horizon}")
    if not 1 <= near_disparity <= DISPARITY_MAX:
        raise ValueError(f"near_disparity must be in 1..{DISPARITY_MAX}, got {near_disparity}")
    horizon_row = horizon * (height - 1)
    rows = np.arange(height, dtype=np.float64)
    t = np.clip((rows - horizon_row) / max(height - 1 - horizon_row, 1e-6), 0.0, 1.0)
    column = np.round(t * near_disparity).astype(np.uint8)
    return np.repeat(column[:, None], width, axis=1)


def ground_plane_depth(
    shape: tuple[int, int], horizon: float = DEFAULT_HORIZON, near_disparity: int = DISPARITY_MAX
) -> np.ndarray:
    """(H, W) float32 scene depth of a flat floor: ``1 / disparity`` of :func:`ground_plane_disparity`.

    The bottom row is the nearest (1/255 with the default), depth doubles each time the disparity halves on the
    way up, and the horizon and everything above it is at 1 (the farthest).
    """
    return depth_from_disparity(ground_plane_disparity(shape, horizon, near_disparity)).astype(np.float32)


def constant_depth(
    masks: Sequence[np.ndarray],
    depths: Sequence[float | None] | None = None,
    background: np.ndarray | float = 1.0,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Paint each object mask with one depth over ``background`` -> (H, W) float32 scene depth.

    ``depths[i]`` in (0, 1] (smaller = nearer), or None: the object *stands on* the background, taking the
    median background depth along its lowest row of pixels (its contact with the floor). ``background``: a
    depth map (e.g. :func:`ground_plane_depth`) or one number. Later masks are painted over earlier ones.
    """
    if np.ndim(background) == 2:
        base = np.asarray(background, dtype=np.float32).copy()
    else:
        if shape is None:
            if not masks:
                raise ValueError("give shape=(H, W) (or a background depth map) when there are no masks")
            shape = np.asarray(masks[0]).shape
        base = np.full(_shape(shape), float(background), dtype=np.float32)
    if depths is None:
        depths = [None] * len(masks)
    if len(depths) != len(masks):
        raise ValueError(f"got {len(masks)} masks but {len(depths)} depths; give one depth (or None) per mask")
    out = base.copy()
    for i, (mask, d) in enumerate(zip(masks, depths)):
        m = np.asarray(mask, dtype=bool)
        if m.shape != base.shape:
            raise ValueError(f"masks[{i}] has shape {m.shape}, but the depth map is {base.shape}")
        if not m.any():
            continue
        if d is None:
            rows = np.flatnonzero(m.any(axis=1))
            bottom = rows[-1]
            d = float(np.median(base[bottom][m[bottom]]))
        if not 0.0 < d <= 1.0:
            raise ValueError(f"depths[{i}] = {d} is outside (0, 1] (scene depth, smaller = nearer)")
        out[m] = d
    if out.min() <= 0 or out.max() > 1.0:
        raise ValueError(f"background depth must be in (0, 1], got min {base.min():.3g}, max {base.max():.3g}")
    return out


def flat_depth(shape: tuple[int, int], disparity: int = FLAT_DISPARITY) -> np.ndarray:
    """(H, W) float32: every pixel at ``1 / disparity`` (a flat scene; only the paths' depth changes matter)."""
    height, width = _shape(shape)
    if not 1 <= disparity <= DISPARITY_MAX:
        raise ValueError(f"disparity must be in 1..{DISPARITY_MAX}, got {disparity}")
    return np.full((height, width), 1.0 / float(disparity), dtype=np.float32)


def max_nearness(background_disparity: int = BACKGROUND_DISPARITY) -> float:
    """How much nearer than the background an object can be on the 0..255 disparity scale."""
    return DISPARITY_MAX / float(background_disparity)


def nearer_depth(
    shape: tuple[int, int],
    masks: Sequence[np.ndarray],
    nearness: float = 2.0,
    background_disparity: int = BACKGROUND_DISPARITY,
) -> np.ndarray:
    """A flat background at ``1 / background_disparity`` with every mask ``nearness`` x nearer -> (H, W) float32.

    ``nearness`` is in [1, :func:`max_nearness`] (255 / 60 = 4.25 with the default background): the disparity
    scale ends at 255."""
    top = max_nearness(background_disparity)
    if not 1.0 <= nearness <= top + 1e-9:
        raise ValueError(f"nearness must be in 1..{top:.2f} (the 0..255 disparity scale ends there with a "
                         f"background at disparity {background_disparity}), got {nearness}")
    out = flat_depth(shape, background_disparity)
    near = 1.0 / min(background_disparity * float(nearness), DISPARITY_MAX)
    for i, mask in enumerate(masks):
        m = np.asarray(mask, dtype=bool)
        if m.shape != out.shape:
            raise ValueError(f"masks[{i}] has shape {m.shape}, but the image is {out.shape}")
        out[m] = near
    return out


# ---------------------------------------------------------------------- helpers
def _points(points, name: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must be a list of (x, y) pixels, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} has NaN or inf coordinates")
    return pts


def _shape(shape) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"shape must be (H, W), got {shape!r}")
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return height, width


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {a.shape}")
    return a[..., :3]
