"""The release's per-frame compositing of moved objects (REFERENCE.md, "Depth semantics the user sees").

levitor's renderer (:mod:`levitor.motion.render`) decides occlusion per moved pixel against a static layer whose
holes are inpainted. The release decides it per object and frame, in selection order, against a running depth map:

- before the first object, every pixel whose first-frame id is <= M (the moved objects' ids, and 0: unlabelled
  pixels anywhere) has id 0 and depth 1.0 (the far end of the scale);
- object j's rendered pixels (pytorch3d's point rasteriser, :mod:`levitor.motion.release_raster`) are drawn where
  the frame's depth map is strictly farther than its path depth d_t (one depth per object, compared in float64 as
  the release does); there its id and d_t are written into the frame's instance and depth maps;
- after object j, every such pixel still at id 0 takes j's fill id: the mode of the first column of the
  first-frame map (ids <= M zeroed) in rows [y-5, y), columns [x-5, x+5) above j's first pixel (x, y) in raster
  order (ties: the lowest id). Its depth stays 1.0, so a control point there gets the depth value 0.

So in frame 0 a moved object covers its own place unless its path depth is >= 1.0. A camera path, which the release
does not have, moves the static part as levitor's renderer does, before the objects are composited. The preview
colour of a drawn pixel is that of the nearest point the rasteriser kept there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from levitor._util.hashing import array_hash, digest
from levitor._util.jit import jit, numba_on
from levitor._util.threads import parallel_map
from levitor.depth import DISPARITY_MAX, FAR_DEPTH
from levitor.motion import release_raster as rr
from levitor.motion.render import (
    STRIP_HALF_WIDTH,
    STRIP_ROWS,
    Mover,
    RenderResult,
    StaticLayer,
    moves,
    render_static_with_camera,
    static_layer,
)
from levitor.scene import Intrinsics

FAR = FAR_DEPTH  # depth of moved objects' own pixels and of unlabelled ones: the far end of (0, 1]
NO_FILL = -1
COVERAGE_CACHE_BYTES = 64 << 20  # moved objects' coverage per frame kept across edits (~1 MB a frame of a large one)


def fill_id(base_ids: np.ndarray, first_pixel: tuple[int, int]) -> int | None:
    """The id the release gives the pixels a moved object leaves uncovered, or None where it has none.

    base_ids: (H, W) first-frame ids with the moved objects' ids and 0 set to 0; first_pixel: (x, y) of the
    object's first pixel in raster order. The release takes ``scipy.stats.mode`` of the window's rows, which is a
    mode per column, and keeps the first column's. The window is levitor's hole-fill strip (STRIP_ROWS rows above,
    columns x - STRIP_HALF_WIDTH .. x + STRIP_HALF_WIDTH - 1), of which only the first column decides. An object in
    the top row has an empty window (the release's code fails there; levitor fills nothing).
    """
    x, y = first_pixel
    column = base_ids[max(y - STRIP_ROWS, 0):y, max(x - STRIP_HALF_WIDTH, 0)]
    if column.size == 0:
        return None
    values, counts = np.unique(column, return_counts=True)  # sorted: argmax takes the lowest of equal counts
    return int(values[np.argmax(counts)])


def release_depth_map(depth: np.ndarray) -> np.ndarray:
    """The scene depth as the release holds it: float64 ``1 / disparity`` (it divides 1.0 by the uint8 map).

    levitor keeps float32 depths; where one is the float32 of 1/k for a disparity k in 1..255, the release's value
    is the float64 1/k, and the release compares path depths (float64) against that (1/48 > 1/48 is false in
    float64 but true against the float32 1/48 widened). Other depths (not from a disparity map) are widened."""
    d = np.asarray(depth, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.rint(1.0 / d.astype(np.float64))
        on_grid = (k >= 1) & (k <= DISPARITY_MAX) & (np.float32(1.0) / k.astype(np.float32) == d)
        return np.where(on_grid, 1.0 / np.where(on_grid, k, 1.0), d.astype(np.float64))


def _release_depth_map_cached(depth: np.ndarray, cache: dict | None) -> np.ndarray:
    """:func:`release_depth_map`, kept in ``cache`` (one map, for the same depth compared in place) for the next
    edit."""
    if cache is None:
        return release_depth_map(depth)
    held = cache.get("release depth map")
    if held is None or not np.array_equal(held[0], depth):
        held = cache["release depth map"] = (depth.copy(), release_depth_map(depth))
    return held[1]


@dataclass
class _Cloud:
    """One moved object as the release renders it: its pixels, their depth (float32) and colour, in raster order."""

    u: np.ndarray  # (N,) float64 column
    v: np.ndarray  # (N,) float64 row
    z0: np.ndarray  # (N,) float32 depth
    order0: np.ndarray  # (N,) int64: ascending (z0, index)
    color: np.ndarray  # (N, 3) uint8
    id: int
    fill: int  # NO_FILL where the release has none
    delta: np.ndarray  # (F, 3) float64 path displacement from frame 0
    path_depth: np.ndarray  # (F,) float64 path depth d_t
    key: str = ""  # a hash of u, v, z0 and id (with a cache)


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
    use_kernel: bool = True,
    cache: dict | None = None,
    after_frame: Callable[[int, np.ndarray], None] | None = None,
) -> RenderResult:
    """Render the moved scene by the release's rules (see the module docstring).

    image (H, W, 3) uint8, depth (H, W), instance (H, W) int64 first-frame map (release assembly); movers: the
    selected objects still in the map, in selection order (each one id; its track in the release's terms); num_selected:
    M, the number of selected objects (ids 1..M). ``static`` (levitor's static layer) only gives the preview's colours
    under the movers. ``use_kernel``: the compiled loop when numba is installed (the same result). ``cache``: a dict
    kept by the caller across calls, where each moved object's rasterised coverage is kept (an edit that moves one
    object does not rasterise the others again; the answer is the same without it). ``after_frame(f, ids)``: called
    with each frame's (H, W) instance ids as soon as that frame is composited, on the thread that composited it (the
    compiled path; frames in any order), so work that needs one frame only overlaps the rendering of the others.
    """
    H, W = instance.shape
    static = static or static_layer(image, depth, instance, movers)
    fillable0 = instance <= num_selected
    base_ids = torch.where(fillable0, torch.zeros_like(instance), instance)
    base_depth = torch.where(fillable0, torch.full(depth.shape, FAR, dtype=torch.float64),
                             torch.from_numpy(_release_depth_map_cached(depth.numpy(), cache)))
    base_color = static.color
    if camera_track is not None and moves(camera_track):
        ids_f, depth_f, color_f = render_static_with_camera(base_ids, base_depth.float(), base_color, K,
                                                             camera_track, num_frames)
        depth_f = torch.from_numpy(release_depth_map(depth_f.numpy()))
    else:
        ids_f, depth_f, color_f = base_ids[None], base_depth[None], base_color[None]
    st_ids = ids_f.reshape(ids_f.shape[0], -1).contiguous().numpy()
    st_depth = depth_f.reshape(depth_f.shape[0], -1).to(torch.float64).contiguous().numpy()
    st_color = color_f.reshape(color_f.shape[0], -1, 3).contiguous().numpy()
    clouds = [_cloud(mv, base_ids.numpy(), W, cache) for mv in movers]

    # numpy asks the kernel for huge pages for arrays this large (madvise): first writing a clip's maps costs half
    # of what torch.empty's 4 KB page faults do (5 vs 10 ms for 16 frames of 320x512, measured 2026-12-06)
    out = RenderResult(*(torch.from_numpy(np.empty((num_frames, H, W, *c), dt))
                         for dt, c in ((np.int64, ()), (np.float32, ()), (np.uint8, (3,)))))
    out_ids, out_depth = out.instance.numpy().reshape(num_frames, -1), out.depth.numpy().reshape(num_frames, -1)
    out_color = out.color.numpy().reshape(num_frames, -1, 3)
    cam = rr.ReleaseCamera.of(K, H, W)
    if use_kernel and numba_on():
        _render_compiled(clouds, cam, st_ids, st_depth, st_color, out_ids, out_depth, out_color, H, W, cache,
                         after_frame)
    else:
        _render_numpy(clouds, cam, st_ids, st_depth, st_color, out_ids, out_depth, out_color, H, W)
    return out


def _cloud(mv: Mover, base_ids: np.ndarray, W: int, cache: dict | None = None) -> _Cloud:
    """The mover as the release renders it. With a cache, its depth order and key are kept for the next edit
    (an edit of a path leaves every mover's pixels and depths as they were: compared in place, not hashed)."""
    pix = mv.pixels.numpy()
    first = int(np.argmin(pix[:, 1] * W + pix[:, 0]))  # raster order: row, then column
    fill = fill_id(base_ids, (int(pix[first, 0]), int(pix[first, 1])))
    u, v = np.ascontiguousarray(pix[:, 0], np.float64), np.ascontiguousarray(pix[:, 1], np.float64)
    z0 = mv.depth.numpy().astype(np.float32)
    obj_id = int(mv.instance[0])
    clouds = cache.setdefault("release clouds", {}) if cache is not None else {}
    held = clouds.get(obj_id)
    if held is not None and all(np.array_equal(a, b) for a, b in zip(held[:3], (u, v, z0))):
        order0, key = held[3], held[4]
    else:
        order0 = rr.depth_order(z0)
        key = digest(array_hash(u), array_hash(v), array_hash(z0), obj_id) if cache is not None else ""
        if cache is not None:
            clouds[obj_id] = (u, v, z0, order0, key)
    track = mv.track.to(torch.float64).numpy()
    return _Cloud(u=u, v=v, z0=z0, order0=order0, color=np.ascontiguousarray(mv.color.numpy()), id=obj_id,
                  fill=NO_FILL if fill is None else fill, delta=track - track[:1],
                  path_depth=np.ascontiguousarray(track[:, 2]), key=key)


def _render_numpy(clouds, cam, st_ids, st_depth, st_color, out_ids, out_depth, out_color, H, W) -> None:
    """The frame loop without numba, in the release's order (the reference for :func:`_render_compiled`)."""
    for f in range(out_ids.shape[0]):
        sf = f if st_ids.shape[0] > 1 else 0
        ids, dmap, col = st_ids[sf].copy(), st_depth[sf].copy(), st_color[sf].copy()
        fillable = ids == 0
        for c in clouds:
            x, y, z = rr.project(c.u, c.v, c.z0, c.delta[f], cam)
            pix, near = rr.coverage(x, y, z, rr.depth_order(z), rr.point_radius(c.delta[f, 2]), c.id, H, W,
                                    use_kernel=False)
            d_t = float(c.path_depth[f])
            draw = dmap[pix] > d_t  # float64, strictly farther
            ids[pix[draw]] = c.id
            dmap[pix[draw]] = d_t
            col[pix[draw]] = c.color[near[draw]]
            if c.fill != NO_FILL:
                ids[fillable & (ids == 0)] = c.fill
        out_ids[f], out_depth[f], out_color[f] = ids, dmap.astype(np.float32), col


def _render_compiled(clouds, cam, st_ids, st_depth, st_color, out_ids, out_depth, out_color, H, W,
                     cache: dict | None, after_frame: Callable[[int, np.ndarray], None] | None = None) -> None:
    """The compiled path, one task per frame on the worker threads: the frame's coverage of each cloud (kept in
    ``cache`` by the cloud's pixels, depths, id and the frame's displacement: frame 0 and objects an edit did not
    move are not rasterised again), its compositing, then ``after_frame``. One task per frame, not one per stage:
    no stage waits for the slowest piece of the one before."""
    F = out_ids.shape[0]
    cams = (cam.fx, cam.fy, cam.cx, cam.cy, cam.ax, cam.ay, cam.bx, cam.by, H, W)
    kept = cache.setdefault("release coverage", OrderedDict()) if cache is not None else None
    frames: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    keys: dict[tuple[int, int], str] = {}
    for j, c in enumerate(clouds if kept is not None else []):
        cloud_key = digest(c.key, cams)
        for f in range(F):
            keys[j, f] = key = digest(cloud_key, c.delta[f].tobytes())
            if key in kept:
                kept.move_to_end(key)
                frames[j, f] = kept[key]
    todo = {f: [j for j in range(len(clouds)) if (j, f) not in frames] for f in range(F)}
    # the fill: the release fills after each object, but a pixel it fills is never 0 again and a drawn one is never
    # filled, so one fill at the end with the first fill id that is not 0 gives the same map
    fill = next((c.fill for c in clouds if c.fill not in (NO_FILL, 0)), -1)
    # and where no cloud draws id 0 (the engine's never do), a fillable pixel can take it before the clouds are
    # drawn: a drawn pixel is not 0 then, and the same map comes without a pass of its own
    prefill = fill if fill > 0 and all(c.id != 0 for c in clouds) else -1

    def frame(f: int) -> list[tuple[np.ndarray, np.ndarray]]:
        new = [rr.frame_coverage(clouds[j].u, clouds[j].v, clouds[j].z0, clouds[j].order0, clouds[j].delta[f],
                                 clouds[j].id, cam, H, W) for j in todo[f]]
        cover = dict(zip(todo[f], new))
        sf = f if st_ids.shape[0] > 1 else 0
        dmap, stamp, gen = _Scratch.get(st_ids.shape[1])
        _begin_frame(f, sf, st_ids, st_depth, st_color, out_ids, out_depth, out_color, prefill)
        for j, c in enumerate(clouds):
            pix, near = cover[j] if j in cover else frames[j, f]
            _draw_cloud(f, sf, pix, near, c.color, c.id, float(c.path_depth[f]), st_depth, out_ids, out_depth,
                        out_color, dmap, stamp, gen)
        if fill > 0 and prefill < 0:
            _fill_frame(f, sf, fill, st_ids, out_ids)
        if after_frame is not None:
            after_frame(f, out_ids[f].reshape(H, W))
        return new

    order = sorted(range(F), key=lambda f: -len(todo[f]))  # the frames with most to rasterise first
    for f, new in zip(order, parallel_map(frame, order)):
        for j, cov in zip(todo[f], new):
            frames[j, f] = cov
            if kept is not None:
                kept[keys[j, f]] = cov
    if kept is not None:
        size = sum(p.nbytes + q.nbytes for p, q in kept.values())
        while size > COVERAGE_CACHE_BYTES and len(kept) > len(frames):  # never what this call uses
            p, q = kept.popitem(last=False)[1]  # the least recently used
            size -= p.nbytes + q.nbytes


class _Scratch:
    """The compositing's running float64 depth map and its stamps, per thread (a fresh one would page-fault its
    way in every frame): dmap[p] is this frame's where stamp[p] == gen, a number no earlier frame used."""

    _local = threading.local()

    @classmethod
    def get(cls, n: int) -> tuple[np.ndarray, np.ndarray, int]:
        held = getattr(cls._local, "held", None)
        if held is None or held[0].size != n:
            held = cls._local.held = [np.empty(n, np.float64), np.zeros(n, np.int64), 0]
        held[2] += 1
        return held[0], held[1], held[2]


def _begin_frame(f, sf, st_ids, st_depth, st_color, out_ids, out_depth, out_color, fill):
    """Frame f of the release's compositing starts as static frame sf, its fillable pixels (id 0) as ``fill`` where
    that is > 0 (flat passes: vectorised; the colours as one run of bytes, 2x faster than pixel by pixel and
    channel by channel)."""
    for p in range(st_ids.shape[1]):
        v = st_ids[sf, p]
        out_ids[f, p] = fill if v == 0 and fill > 0 else v
    for p in range(st_ids.shape[1]):
        out_depth[f, p] = np.float32(st_depth[sf, p])
    dst = out_color[f].reshape(-1)
    src = st_color[sf].reshape(-1)
    for q in range(src.shape[0]):
        dst[q] = src[q]


_begin_frame = jit(_begin_frame)


def _draw_cloud(f, sf, pix, near, colors, obj_id, d_t, st_depth, out_ids, out_depth, out_color, dmap, stamp, gen):
    """Draw one cloud's coverage in frame f (pixels ``pix``, nearest points ``near`` into ``colors``) where the
    running depth map (float64) is farther than its path depth d_t: dmap[p] where stamp[p] == gen (drawn earlier
    in this frame), the static frame's elsewhere."""
    d_t32 = np.float32(d_t)
    for q in range(pix.shape[0]):
        p = pix[q]
        if (dmap[p] if stamp[p] == gen else st_depth[sf, p]) > d_t:
            out_ids[f, p] = obj_id
            dmap[p] = d_t
            stamp[p] = gen
            out_depth[f, p] = d_t32
            for ch in range(3):
                out_color[f, p, ch] = colors[near[q], ch]


_draw_cloud = jit(_draw_cloud)


def _fill_frame(f, sf, fill, st_ids, out_ids):
    """The fill of frame f: fillable pixels (static id 0) nobody drew take ``fill``."""
    for p in range(st_ids.shape[1]):
        if out_ids[f, p] == 0 and st_ids[sf, p] == 0:
            out_ids[f, p] = fill


_fill_frame = jit(_fill_frame)
