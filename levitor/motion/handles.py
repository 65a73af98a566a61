"""Where a path point puts its object: the handle geometry (numpy only, so the Studio's drawing code can use it
without torch).

A path is a list of handles: per frame, the pixel (x, y) where the object's **anchor** is to be seen, and a depth.
The anchor is the object's start point P1 lifted into the scene: P1's pixel at the **anchor depth** z_a, which
is the scene depth at P1's pixel when that pixel lies on the object's mask, and otherwise (P1 off the mask, e.g.
the centroid of a ring) the median scene depth over the mask, which is the depth :meth:`Scene.select` gives P1.
The object moves rigidly in depth with its path: at frame t every pixel's depth changes by d_t - d_0 (the path
depth minus P1's), so the anchor sits at depth z_t = z_a + d_t - d_0, and the motion is solved so that the anchor
projects exactly onto the handle (x_t, y_t). "Handle terms" (``Scene.path_terms = "handle"``, the default).

The release's convention ("release terms") is the other way round: it shifts every pixel by the path's 2D delta
*at the pixel's old depth* and only then changes the depth, so the anchor lands at c + (x_t - c) z_a / z_t about
the image centre c: an object brought 2x nearer drifts outward, away from where the path was clicked. The renderers
consume release-terms tracks (``Mover.track``: the per-pixel formula of :func:`levitor.motion.lift.move`, what the
release computes), so a handle-terms track is converted per frame, exactly:

    release x_t = c + (x_t - c) * z_t / z_a        (and y likewise; depth unchanged)

A scene whose paths are in release terms (``path_terms = "release"``: the release's own inputs, and scene files
of schema version 1, which were made under that convention) goes to the renderers as it is, so it gives the
release's control bit for bit. :func:`handles_from_release_track` is the inverse, and :func:`convert_points`
converts a path's clicks between the terms (exact at the clicks; between them the interpolation of converted
clicks differs slightly from the conversion of the interpolated path, since the map is not linear).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from levitor.depth import MIN_DEPTH

PATH_TERMS = ("handle", "release")
# the nearest an anchor may come: the renderers clamp moved depths here (levitor.motion.lift.MIN_Z)
MIN_Z = MIN_DEPTH / 4


def anchor_depth(depth: np.ndarray, mask: np.ndarray, x: float, y: float) -> float:
    """The anchor depth z_a of an object whose P1 is at (x, y): the scene depth at P1's pixel (x and y rounded
    half up, as the renderer places points) when that pixel is on ``mask``, else the median depth over the mask
    (1.0, the far end, for an empty mask)."""
    m = np.asarray(mask, dtype=bool)
    H, W = m.shape
    col, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    if 0 <= col < W and 0 <= row < H and m[row, col]:
        return float(depth[row, col])
    if not m.any():
        return 1.0
    return float(np.median(depth[m]))


def anchor_depths_along(track: np.ndarray, z_a: float) -> np.ndarray:
    """(F,) the anchor's depth per frame: z_a plus the path's depth change, clamped as the renderers clamp it."""
    t = np.asarray(track, dtype=np.float64)
    return np.maximum(z_a + (t[:, 2] - t[0, 2]), MIN_Z)


def release_track_from_handles(track: np.ndarray, z_a: float, cx: float, cy: float) -> np.ndarray:
    """A per-frame (F, 3) (x, y, depth) handle track -> the release-terms track that puts the anchor on it.

    Row 0 is unchanged (no depth change yet), so frame 0 is the photo as before."""
    t = np.asarray(track, dtype=np.float64)
    s = anchor_depths_along(t, z_a) / z_a
    out = t.copy()
    moved = s != 1.0
    out[moved, 0] = cx + (t[moved, 0] - cx) * s[moved]
    out[moved, 1] = cy + (t[moved, 1] - cy) * s[moved]
    return out


def handles_from_release_track(track: np.ndarray, z_a: float, cx: float, cy: float) -> np.ndarray:
    """The inverse of :func:`release_track_from_handles`: where a release-terms track puts the anchor."""
    t = np.asarray(track, dtype=np.float64)
    s = z_a / anchor_depths_along(t, z_a)
    out = t.copy()
    moved = s != 1.0
    out[moved, 0] = cx + (t[moved, 0] - cx) * s[moved]
    out[moved, 1] = cy + (t[moved, 1] - cy) * s[moved]
    return out


def convert_points(points: Sequence[tuple[float, float, float]], z_a: float, cx: float, cy: float,
                   to: str) -> list[tuple[float, float, float]]:
    """Path clicks (x, y, depth), the first being P1, converted to the terms ``to`` ("handle" or "release")."""
    if to not in PATH_TERMS:
        raise ValueError(f"path terms must be one of {PATH_TERMS}, got {to!r}")
    if not points:
        return []
    t = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    fn = handles_from_release_track if to == "handle" else release_track_from_handles
    return [tuple(float(v) for v in row) for row in fn(t, z_a, cx, cy)]


def anchor_path_3d(track: np.ndarray, z_a: float, fx: float, fy: float, cx: float, cy: float,
                   terms: str = "handle") -> np.ndarray:
    """The anchor's camera-space positions (F, 3) (X, Y, Z) along a per-frame (x, y, depth) track in ``terms``."""
    if terms not in PATH_TERMS:
        raise ValueError(f"path terms must be one of {PATH_TERMS}, got {terms!r}")
    t = np.asarray(track, dtype=np.float64).reshape(-1, 3)
    handles = t if terms == "handle" else handles_from_release_track(t, z_a, cx, cy)
    z = anchor_depths_along(t, z_a)
    return np.stack([(handles[:, 0] - cx) * z / fx, (handles[:, 1] - cy) * z / fy, z], axis=1)
