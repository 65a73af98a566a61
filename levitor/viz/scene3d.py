"""A 3D view of a scene that reads like the photo: the lifted pixels, the camera frustum, the photo's plane and
each object's 3D path, as plain plotly-style trace dicts (no plotly import: any front end can draw them).

Coordinates. Camera space is X right, Y down, Z = depth (the scene's unit: (0, 1], 1 = the farthest). The view
plots (x, depth, up) with a *linear* depth axis in that unit, and x / up in pixels of the photo's plane at the
farthest shown depth ``z_far``: x = X * fx / z_far, up = -Y * fy / z_far. So the photo plane is exactly the
photo's W x H pixels, the frustum runs from the camera (0, 0, 0) to its corners, and a pixel at depth z sits at
z / z_far of the way from the camera, shrunk towards the optical axis as perspective does. The release's
near-orthographic focal would make true proportions a thin funnel; the axes are scaled independently instead
(``aspect``) so the box reads like the photo seen from slightly above and to the side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from levitor.motion.handles import anchor_path_3d
from levitor.scene import Intrinsics, PathPoint, Scene
from levitor.viz.colors import css

MAX_POINTS = 20_000  # a browser redraws ~20k WebGL points well under 0.5 s; 100k takes seconds
FAR_DEPTH = 0.999  # depth 1 is "at infinity" (disparity 0, e.g. the sky): left out unless nothing else is there
ASPECT = {"x": 1.6, "y": 1.4, "z": 1.0}  # box proportions: photo width, depth, photo height
EYE = {"x": 1.15, "y": -1.9, "z": 0.85}  # behind the camera, above and to the right
PATH_WIDTH = 6


@dataclass
class SceneView3D:
    """What the 3D view draws: the point cloud, the other traces and the layout."""

    points: np.ndarray  # (N, 3) float32 plot coordinates (x, depth, up)
    colors: np.ndarray  # (N, 3) uint8
    traces: list[dict] = field(default_factory=list)  # frustum, photo plane, camera, paths (plotly scatter3d dicts)
    layout: dict = field(default_factory=dict)
    z_far: float = 1.0

    @property
    def num_points(self) -> int:
        return int(len(self.points))


def plot_coords(xyz: np.ndarray, K: Intrinsics, z_far: float) -> np.ndarray:
    """Camera-space (N, 3) X, Y, Z -> plot (N, 3) x, depth, up (see the module docstring)."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return np.stack([xyz[:, 0] * K.fx / z_far, xyz[:, 2], -xyz[:, 1] * K.fy / z_far], 1)


def cloud_points(scene: Scene, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray, float]:
    """The photo's pixels lifted to plot coordinates on a regular grid of at most ``max_points``:
    (points (N, 3) float32, colours (N, 3) uint8, z_far)."""
    H, W = scene.height, scene.width
    step = max(1, int(np.ceil(np.sqrt(H * W / max(1, max_points)))))
    rows, cols = np.mgrid[step // 2:H:step, step // 2:W:step]
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    z = scene.depth[rows, cols].astype(np.float64)
    keep = z < FAR_DEPTH
    if keep.any():
        rows, cols, z = rows[keep], cols[keep], z[keep]
    K = scene.camera()
    z_far = float(z.max())
    xyz = np.stack([(cols - K.cx) * z / K.fx, (rows - K.cy) * z / K.fy, z], 1)
    return plot_coords(xyz, K, z_far).astype(np.float32), scene.image[rows, cols], z_far


def path_points_3d(points: Sequence[PathPoint], K: Intrinsics, anchor_depth: float | None = None,
                   terms: str = "handle") -> np.ndarray:
    """The user's path points in camera space, where the engine puts the object's anchor at each of them: at the
    point's pixel (handle terms) at depth z_a + d - d_1 (levitor.motion.handles). ``anchor_depth`` z_a: the
    scene's (Scene.anchor_depth); default P1's path depth."""
    if not points:
        return np.zeros((0, 3))
    return track_3d(np.array([[p.x, p.y, p.depth] for p in points], dtype=np.float64), K, anchor_depth, terms)


def track_3d(track: np.ndarray, K: Intrinsics, anchor_depth: float | None = None, terms: str = "handle") -> np.ndarray:
    """A per-frame (F, 3) (x, y, depth) track as the anchor's camera-space path (the rule of
    :func:`path_points_3d`)."""
    t = np.asarray(track, dtype=np.float64)
    z_a = float(t[0, 2]) if anchor_depth is None else float(anchor_depth)
    return anchor_path_3d(t, z_a, K.fx, K.fy, K.cx, K.cy, terms)


def _line(xyz: np.ndarray, color: str, name: str, width: int = 2, dash: str = "solid", mode: str = "lines",
          marker: dict | None = None) -> dict:
    t = {"type": "scatter3d", "mode": mode, "name": name, "showlegend": False, "hoverinfo": "name",
         "x": xyz[:, 0].round(3).tolist(), "y": xyz[:, 1].round(5).tolist(), "z": xyz[:, 2].round(3).tolist(),
         "line": {"color": color, "width": width, "dash": dash}}
    if marker is not None:
        t["marker"] = marker
    return t


FIGURE_WIDTH, FIGURE_HEIGHT = 520, 420  # px: the 3D view's figure (the Studio's View3D too)


def scene_view_3d(scene: Scene, tracks: Sequence[np.ndarray] = (), colors: Sequence = (), frame: int = 0,
                  max_points: int = MAX_POINTS, width: int = FIGURE_WIDTH, height: int = FIGURE_HEIGHT,
                  cloud: tuple[np.ndarray, np.ndarray, float] | None = None) -> SceneView3D:
    """Everything the 3D view shows for ``scene`` at ``frame``.

    tracks: per selected object its per-frame (F, 3) (x, y, depth) track (``EngineResult.tracks``), with
    ``colors`` its RGB; a scene without objects shows the cloud, frustum and photo plane only.
    cloud: a result of :func:`cloud_points` to reuse (it changes only with the depth map).
    """
    K = scene.camera()
    points, rgb, z_far = cloud if cloud is not None else cloud_points(scene, max_points)
    hw, hh = scene.width / 2.0, scene.height / 2.0
    corners = np.array([[-hw, z_far, hh], [hw, z_far, hh], [hw, z_far, -hh], [-hw, z_far, -hh]])
    traces = [_line(np.vstack([corners, corners[:1]]), "rgba(60,60,60,0.9)", "photo plane", 2)]
    for c in corners:
        traces.append(_line(np.array([[0, 0, 0], c]), "rgba(90,90,90,0.6)", "camera frustum", 1, "dash"))
    traces.append(_line(np.zeros((1, 3)), "black", "camera", mode="markers",
                        marker={"size": 5, "color": "black", "symbol": "diamond"}))
    lo, hi = points.min(0) if len(points) else np.zeros(3), points.max(0) if len(points) else np.zeros(3)
    for i, (track, rgb_i) in enumerate(zip(tracks, colors)):
        obj = scene.objects[i]
        color = css(rgb_i)
        z_a = scene.anchor_depth(i)
        line = plot_coords(track_3d(track, K, z_a, scene.path_terms), K, z_far)
        clicks = plot_coords(path_points_3d(obj.path, K, z_a, scene.path_terms), K, z_far)
        f = int(np.clip(frame, 0, len(line) - 1))
        traces.append(_line(line, color, f"{obj.name}: path", PATH_WIDTH))
        traces.append(_line(clicks, color, f"{obj.name}: path points", mode="markers",
                            marker={"size": 4, "color": color, "line": {"color": "white", "width": 1}}))
        traces.append(_line(line[f:f + 1], color, f"{obj.name} at frame {f + 1}", mode="markers",
                            marker={"size": 9, "color": color, "line": {"color": "black", "width": 1}}))
        lo, hi = np.minimum(lo, line.min(0)), np.maximum(hi, line.max(0))
    x_half = max(hw, abs(lo[0]), abs(hi[0])) * 1.04
    up_half = max(hh, abs(lo[2]), abs(hi[2])) * 1.04
    depth_top = max(z_far, hi[1]) * 1.04
    axis = {"showbackground": True, "backgroundcolor": "rgb(245,245,245)", "gridcolor": "white",
            "zeroline": False, "showspikes": False}
    layout = {
        "width": width, "height": height, "margin": {"l": 0, "r": 0, "t": 4, "b": 0}, "showlegend": False,
        "uirevision": "keep",  # a redraw keeps the user's rotation
        "scene": {
            "aspectmode": "manual", "aspectratio": dict(ASPECT),
            "xaxis": dict(axis, title={"text": "x"}, range=[-x_half, x_half], showticklabels=False),
            "yaxis": dict(axis, title={"text": "depth"}, range=[0, depth_top], nticks=5,
                          tickformat=".2~g"),
            "zaxis": dict(axis, title={"text": "up"}, range=[-up_half, up_half], showticklabels=False),
            "camera": {"eye": dict(EYE), "up": {"x": 0, "y": 0, "z": 1}, "center": {"x": 0, "y": 0, "z": 0}},
        },
    }
    return SceneView3D(points, rgb, traces, layout, z_far)
