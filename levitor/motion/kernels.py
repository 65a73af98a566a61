"""Compiled loops of the renderer (see :mod:`levitor._util.jit`): the z-buffer and the fused move + splat +
composite of :func:`levitor.motion.render.render`. The torch paths in render.py are the reference.

A z-buffer is a loop over points with a compare per pixel: as a compiled loop it costs a few nanoseconds a
point, while the vectorised torch version (scatter_reduce over packed keys) pays for several passes over
large index arrays.
"""

from __future__ import annotations

import numpy as np

from levitor._util.jit import jit


def cover(x, y, z, i, s, base, height, width, zbuf, win):
    """Point i at (x, y), depth z, covers the s x s block around it in the image starting at ``base``:
    it takes each pixel where it is at least as near as what is there (so later points win ties)."""
    half = np.float32(0.5 - (s - 1) / 2.0)  # float32 arithmetic, as the torch path
    x0 = int(np.floor(x + half))
    y0 = int(np.floor(y + half))
    for dy in range(s):
        yy = y0 + dy
        if yy < 0 or yy >= height:
            continue
        for dx in range(s):
            xx = x0 + dx
            if xx < 0 or xx >= width:
                continue
            p = base + yy * width + xx
            if z <= zbuf[p]:
                zbuf[p] = z
                win[p] = i


cover = jit(cover, inline=True)


def _zbuffer(x, y, z, frame, footprint, num_frames, height, width, zbuf, win):
    """For each point in order, cover its s x s block; the nearest point wins, the later one on ties."""
    for i in range(x.shape[0]):
        zi = z[i]
        if not zi > 0:
            continue
        cover(x[i], y[i], zi, i, footprint[i], frame[i] * height * width, height, width, zbuf, win)


_zbuffer = jit(_zbuffer)


def zbuffer(x: np.ndarray, y: np.ndarray, z: np.ndarray, frame: np.ndarray, footprint: np.ndarray,
            num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense z-buffer: zbuf (F*H*W,) float32 (inf where empty) and winner (F*H*W,) int64 (-1 where empty)."""
    n = num_frames * height * width
    zbuf = np.full(n, np.inf, dtype=np.float32)
    win = np.full(n, -1, dtype=np.int64)
    _zbuffer(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32),
             np.ascontiguousarray(z, np.float32), np.ascontiguousarray(frame, np.int64),
             np.ascontiguousarray(footprint, np.int64), num_frames, height, width, zbuf, win)
    return zbuf, win


def _render_movers(px, py, z0, owner, tracks, fx, fy, cx, cy, min_z, max_fp, height, width,
                      ids, colors, st_inst, st_depth, st_color, st_front, out_inst, out_depth, out_color, zbuf, win):
    """Move every mover pixel along its track (2D shift, then depth change), z-buffer it, and composite
    the winners over the static layer (st_*: one frame, or one per frame) where they are at least as near as
    what it has in front (st_front: inf where a mover left), writing every pixel of the outputs. Same
    arithmetic as lift.move + render.

    One frame at a time, so the z-buffer (zbuf, win: H*W) stays in cache while points scatter into it."""
    num_frames, n = tracks.shape[1], px.shape[0]
    hw = height * width
    u = np.empty(n, dtype=np.float32)
    v = np.empty(n, dtype=np.float32)
    zz = np.empty(n, dtype=np.float32)
    ss = np.empty(n, dtype=np.int64)
    shift = np.empty((tracks.shape[0], 3), dtype=np.float32)
    for f in range(num_frames):
        for m in range(tracks.shape[0]):
            for c in range(3):
                shift[m, c] = np.float32(tracks[m, f, c] - tracks[m, 0, c])
        for i in range(n):  # branch-free, so the compiler can vectorise it
            m = owner[i]
            zi = z0[i]
            x3 = (px[i] + shift[m, 0] - cx) * zi / fx
            y3 = (py[i] + shift[m, 1] - cy) * zi / fy
            z = max(zi + shift[m, 2], min_z)
            u[i] = fx * x3 / z + cx
            v[i] = fy * y3 / z + cy
            zz[i] = z
            ss[i] = min(max(int(np.ceil(zi / z - np.float32(1e-6))), 1), max_fp)
        zbuf[:] = np.inf
        win[:] = -1
        for i in range(n):
            cover(u[i], v[i], zz[i], i, ss[i], 0, height, width, zbuf, win)
        base = f * hw
        sf = f if st_inst.shape[0] > 1 else 0
        for p in range(hw):
            i = win[p]
            if i >= 0 and zbuf[p] <= st_front[sf, p]:  # a mover wins where nothing static is nearer
                out_inst[base + p] = ids[i]
                out_depth[base + p] = zbuf[p]
                for c in range(3):
                    out_color[base + p, c] = colors[i, c]
            else:
                out_inst[base + p] = st_inst[sf, p]
                out_depth[base + p] = st_depth[sf, p]
                for c in range(3):
                    out_color[base + p, c] = st_color[sf, p, c]


_render_movers = jit(_render_movers)


def render_movers(px, py, z0, owner, tracks, K, min_z, max_fp, ids, colors,
                  st_inst, st_depth, st_color, st_front, out_inst, out_depth, out_color) -> None:
    """Fused move + z-buffer + composite over the static layer (st_*: (1 or F, H, W[, 3]); st_front its occlusion
    depth) into the (F, H, W[, 3]) outputs (numpy arrays, every pixel written)."""
    _, H, W = out_inst.shape
    zbuf = np.empty(H * W, dtype=np.float32)  # one frame's z-buffer, reused frame after frame
    win = np.empty(H * W, dtype=np.int64)
    f32 = np.float32
    _render_movers(px, py, z0, owner, tracks, f32(K.fx), f32(K.fy), f32(K.cx), f32(K.cy), f32(min_z), max_fp,
                   H, W, ids, colors, st_inst.reshape(st_inst.shape[0], -1), st_depth.reshape(st_depth.shape[0], -1),
                   st_color.reshape(st_color.shape[0], -1, 3), st_front.reshape(st_front.shape[0], -1),
                   out_inst.reshape(-1), out_depth.reshape(-1),
                   out_color.reshape(-1, 3), zbuf, win)
