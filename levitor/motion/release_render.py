"""The release's per-frame compositing of moved objects (REFERENCE.md, "Depth semantics the user sees").

levitor's renderer (:mod:`levitor.motion.render`) decides occlusion per moved pixel against a static layer whose
holes are inpainted. The release decides it per object and frame, in selection order, against a running depth map:

- before the first object, every pixel whose first-frame id is <= M (the moved objects' ids, and 0: unlabelled
  pixels anywhere) has id 0 and depth 1.0 (the far end of the scale);
- object j's rendered pixels are drawn where the frame's depth map is strictly farther than its path depth d_t
  (one depth per object); there its id and d_t are written into the frame's instance and depth maps;
- after object j, every such pixel still at id 0 takes j's fill id: the mode of the first column of the
  first-frame map (ids <= M zeroed) in rows [y-5, y), columns [x-5, x+5) above j's first pixel (x, y) in raster
  order (ties: the lowest id). Its depth stays 1.0, so a control point there gets the depth value 0.

So in frame 0 a moved object covers its own place unless its path depth is >= 1.0. Which pixels an object covers
comes from levitor's splatting (the release uses pytorch3d's point rasterizer, radius 0.011 in NDC); everything
after that follows the release. A camera path, which the release does not have, moves the static part as
levitor's renderer does, before the objects are composited.
"""

from __future__ import annotations

import numpy as np
import torch

from levitor.depth import FAR_DEPTH
from levitor.motion.lift import move
from levitor.motion.render import (
    Mover,
    RenderResult,
    StaticLayer,
    footprint,
    moves,
    render_static_with_camera,
    splat,
    static_layer,
)
from levitor.scene import Intrinsics

FILL_ROWS = 5  # the release's fill window: 5 rows above the object's first pixel ...
FILL_HALF_WIDTH = 5  # ... columns x-5 .. x+4 (only the first of them decides: see fill_id)
FAR = FAR_DEPTH  # depth of moved objects' own pixels and of unlabelled ones: the far end of (0, 1]


def fill_id(base_ids: np.ndarray, first_pixel: tuple[int, int]) -> int | None:
    """The id the release gives the pixels a moved object leaves uncovered, or None where it has none.

    base_ids: (H, W) first-frame ids with the moved objects' ids and 0 set to 0; first_pixel: (x, y) of the
    object's first pixel in raster order. The release takes ``scipy.stats.mode`` of the window's rows, which is a
    mode per column, and keeps the first column's. An object in the top row has an empty window (the release's
    code fails there; levitor fills nothing).
    """
    x, y = first_pixel
    column = base_ids[max(y - FILL_ROWS, 0):y, max(x - FILL_HALF_WIDTH, 0)]
    if column.size == 0:
        return None
    values, counts = np.unique(column, return_counts=True)  # sorted: argmax takes the lowest of equal counts
    return int(values[np.argmax(counts)])


def render_release(
    image: torch.Tensor,
    depth: torch.Tensor,
    instance: torch.Tensor,
    movers: list[Mover],
    num_selected: int,
    K: Intrinsics,
    num_frames: int,
    camera_track: torch.Tensor | None = None,
    static: StaticLayer | None = None,
) -> RenderResult:
    """Render the moved scene by the release's rules (see the module docstring).

    image (H, W, 3) uint8, depth (H, W), instance (H, W) int64 first-frame map (release assembly); movers: the
    selected objects still in the map, in selection order (each one id); num_selected: M, the number of selected
    objects (ids 1..M). ``static`` (levitor's static layer) only gives the preview's colours under the movers.
    """
    H, W = instance.shape
    static = static or static_layer(image, depth, instance, movers)
    fillable0 = instance <= num_selected
    base_ids = torch.where(fillable0, torch.zeros_like(instance), instance)
    base_depth = torch.where(fillable0, torch.full_like(depth, FAR, dtype=torch.float64), depth.to(torch.float64))
    base_color = static.color
    fills = []
    for mv in movers:
        first = int(torch.argmin(mv.pixels[:, 1] * W + mv.pixels[:, 0]))  # raster order: row, then column
        fills.append(fill_id(base_ids.numpy(), (int(mv.pixels[first, 0]), int(mv.pixels[first, 1]))))
    if camera_track is not None and moves(camera_track):
        ids_f, depth_f, color_f = render_static_with_camera(base_ids, base_depth.float(), base_color, K,
                                                             camera_track, num_frames)
        depth_f = depth_f.to(torch.float64)
    else:
        ids_f, depth_f, color_f = base_ids[None], base_depth[None], base_color[None]
    covered = _coverage(movers, K, num_frames, H, W)

    out = RenderResult(torch.empty(num_frames, H, W, dtype=torch.int64), torch.empty(num_frames, H, W),
                       torch.empty(num_frames, H, W, 3, dtype=torch.uint8))
    for f in range(num_frames):
        sf = f if ids_f.shape[0] > 1 else 0
        ids = ids_f[sf].reshape(-1).clone()
        dmap = depth_f[sf].reshape(-1).clone()
        col = color_f[sf].reshape(-1, 3).clone()
        fillable = ids == 0
        for j, mv in enumerate(movers):
            pix, point = covered[f][j]
            d_t = float(mv.track[f, 2])
            draw = dmap[pix] > d_t
            ids[pix[draw]] = int(mv.instance[0])
            dmap[pix[draw]] = d_t
            col[pix[draw]] = mv.color[point[draw]]
            if fills[j] is not None:
                ids[fillable & (ids == 0)] = fills[j]
        out.instance[f] = ids.view(H, W)
        out.depth[f] = dmap.view(H, W).to(torch.float32)
        out.color[f] = col.view(H, W, 3)
    return out


def _coverage(movers: list[Mover], K: Intrinsics, num_frames: int, H: int, W: int):
    """Per frame and mover, the pixels the mover's moved points cover and the point covering each. Every mover is
    splatted alone (the release renders each object on its own): one splat of J images per frame."""
    if not movers:  # nothing moves (a camera path alone): nothing to cover
        return [[] for _ in range(num_frames)]
    moved = []
    for mv in movers:
        xy, z = move(mv.pixels.float(), mv.depth.float(), mv.track.float(), K)  # (F, N, 2), (F, N)
        moved.append((xy, z, footprint(mv.depth.float()[None], z)))
    sizes = [len(mv.pixels) for mv in movers]
    starts = np.cumsum([0] + sizes)
    image_of_point = torch.cat([torch.full((n,), j, dtype=torch.int64) for j, n in enumerate(sizes)])
    out = []
    for f in range(num_frames):
        sp = splat(torch.cat([xy[f] for xy, _, _ in moved]), torch.cat([z[f] for _, z, _ in moved]),
                   image_of_point, len(movers), H, W, torch.cat([fp[f] for _, _, fp in moved]))
        image = sp.pixel // (H * W)
        out.append([(sp.pixel[image == j] % (H * W), sp.point[image == j] - int(starts[j]))
                    for j in range(len(movers))])
    return out
