"""Optional compiled kernels (numba) for the engine's hot loops; the pure-torch versions stay the reference.

A z-buffer is a loop over points with a compare per pixel: as a compiled loop it costs a few nanoseconds a
point, while the vectorised torch version (scatter_reduce over packed keys) pays for several passes over
large index arrays. numba is optional: without it, or with ``LEVITOR_NO_NUMBA=1``, the torch paths run.
Both give identical results (tests compare them).
"""

from __future__ import annotations

import os
import threading

import numpy as np

try:  # pragma: no cover - depends on the environment
    if os.environ.get("LEVITOR_NO_NUMBA", "") not in ("", "0"):
        raise ImportError("disabled by LEVITOR_NO_NUMBA")
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def _cover_py(x, y, z, i, s, base, height, width, zbuf, win):
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


_cover = numba.njit(cache=True, nogil=True, inline="always")(_cover_py) if HAVE_NUMBA else _cover_py


def _zbuffer_py(x, y, z, frame, footprint, num_frames, height, width, zbuf, win):
    """For each point in order, cover its s x s block; the nearest point wins, the later one on ties."""
    for i in range(x.shape[0]):
        zi = z[i]
        if not zi > 0:
            continue
        _cover(x[i], y[i], zi, i, footprint[i], frame[i] * height * width, height, width, zbuf, win)


if HAVE_NUMBA:  # pragma: no branch
    _zbuffer = numba.njit(cache=True, nogil=True)(_zbuffer_py)
else:  # pragma: no cover
    _zbuffer = None


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


def _render_movers_py(px, py, z0, owner, tracks, fx, fy, cx, cy, min_z, max_fp, height, width,
                      ids, colors, st_inst, st_depth, st_color, out_inst, out_depth, out_color, zbuf, win):
    """Move every mover pixel along its track (2D shift, then depth change), z-buffer it, and composite
    the winners over the static layer (st_*: one frame, or one per frame) where they are nearer, writing
    every pixel of the outputs. Same arithmetic as lift.move + render.

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
            _cover(u[i], v[i], zz[i], i, ss[i], 0, height, width, zbuf, win)
        base = f * hw
        sf = f if st_inst.shape[0] > 1 else 0
        for p in range(hw):
            i = win[p]
            if i >= 0 and zbuf[p] < st_depth[sf, p]:  # a mover wins where it is nearer than the static layer
                out_inst[base + p] = ids[i]
                out_depth[base + p] = zbuf[p]
                for c in range(3):
                    out_color[base + p, c] = colors[i, c]
            else:
                out_inst[base + p] = st_inst[sf, p]
                out_depth[base + p] = st_depth[sf, p]
                for c in range(3):
                    out_color[base + p, c] = st_color[sf, p, c]


if HAVE_NUMBA:  # pragma: no branch
    _render_movers = numba.njit(cache=True, nogil=True)(_render_movers_py)
else:  # pragma: no cover
    _render_movers = None


def render_movers(px, py, z0, owner, tracks, K, min_z, max_fp, ids, colors,
                  st_inst, st_depth, st_color, out_inst, out_depth, out_color) -> None:
    """Fused move + z-buffer + composite over the static layer (st_*: (1 or F, H, W[, 3])) into the
    (F, H, W[, 3]) outputs (numpy arrays, every pixel written)."""
    F, H, W = out_inst.shape
    zbuf = np.empty(H * W, dtype=np.float32)  # one frame's z-buffer, reused frame after frame
    win = np.empty(H * W, dtype=np.int64)
    f32 = np.float32
    _render_movers(px, py, z0, owner, tracks, f32(K.fx), f32(K.fy), f32(K.cx), f32(K.cy), f32(min_z), max_fp,
                   H, W, ids, colors, st_inst.reshape(st_inst.shape[0], -1), st_depth.reshape(st_depth.shape[0], -1),
                   st_color.reshape(st_color.shape[0], -1, 3), out_inst.reshape(-1), out_depth.reshape(-1),
                   out_color.reshape(-1, 3), zbuf, win)


def _lloyd_py(x, c, max_iter, tol_abs):
    """Lloyd's K-means on one object's samples, in place on the centres c (K, 2); sklearn's rules: ties go to
    the lower index, an empty cluster moves to the sample farthest from its centre, stop when the summed
    squared centre shift is at most tol_abs. Returns the inertia.

    The assignment loops run centre by centre over coordinate arrays, so the compiler vectorises them."""
    n, k = x.shape[0], c.shape[0]
    xs = np.empty(n, dtype=np.float64)
    ys = np.empty(n, dtype=np.float64)
    for i in range(n):
        xs[i] = x[i, 0]
        ys[i] = x[i, 1]
    labels = np.zeros(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    sums = np.zeros((k, 2), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for _ in range(max_iter):
        _assign(xs, ys, c, dist, labels)
        sums[:] = 0.0
        counts[:] = 0
        for i in range(n):
            a = labels[i]
            sums[a, 0] += xs[i]
            sums[a, 1] += ys[i]
            counts[a] += 1
        shift = 0.0
        for j in range(k):
            if counts[j] > 0:
                nx, ny = sums[j, 0] / counts[j], sums[j, 1] / counts[j]
            else:  # relocate an empty cluster to the farthest sample
                far = np.argmax(dist)
                nx, ny = xs[far], ys[far]
                dist[far] = 0.0
            shift += (nx - c[j, 0]) ** 2 + (ny - c[j, 1]) ** 2
            c[j, 0], c[j, 1] = nx, ny
        if shift <= tol_abs:
            break
    _assign(xs, ys, c, dist, labels)
    inertia = 0.0
    for i in range(n):
        inertia += dist[i]
    return inertia


def _assign_py(xs, ys, c, dist, labels):
    """Nearest centre of every sample (the first on ties) and its squared distance."""
    n = xs.shape[0]
    dist[:] = np.inf
    labels[:] = 0
    for j in range(c.shape[0]):
        cx, cy = c[j, 0], c[j, 1]
        for i in range(n):
            ddx = xs[i] - cx
            ddy = ys[i] - cy
            d = ddx * ddx + ddy * ddy
            if d < dist[i]:
                dist[i] = d
                labels[i] = j


_assign = numba.njit(cache=True, nogil=True, inline="always")(_assign_py) if HAVE_NUMBA else _assign_py


if HAVE_NUMBA:  # pragma: no branch
    lloyd = numba.njit(cache=True, nogil=True)(_lloyd_py)
    _lloyd_inner = lloyd
else:  # pragma: no cover
    lloyd = None
    _lloyd_inner = _lloyd_py


def _cluster_track_py(flat, offsets, k, warm, first, have_first, max_iter, min_shift, out_c, out_vis):
    """K-means of one object in every frame: flat (N, 2) samples of all frames, frame f at
    offsets[f]:offsets[f + 1]. A frame with fewer than k samples gets no points. "warm": a frame starts from
    the previous frame's centres shifted by the change of the samples' mean (the same samples as last frame
    give the same centres); otherwise, and after a gap, from the release's evenly spaced samples. ``first``
    (k, 2) is frame 0's answer when ``have_first`` (the caller's cache). Writes out_c (F, k, 2), out_vis (F,)."""
    num_frames = offsets.shape[0] - 1
    c = np.zeros((k, 2), dtype=np.float64)
    have_prev = False
    p0, p1 = 0, 0
    pmx, pmy = 0.0, 0.0
    for f in range(num_frames):
        s0, s1 = offsets[f], offsets[f + 1]
        n = s1 - s0
        if n < k:
            out_vis[f] = False
            have_prev = False
            continue
        out_vis[f] = True
        x = flat[s0:s1]
        mx, my = 0.0, 0.0
        for i in range(n):
            mx += x[i, 0]
            my += x[i, 1]
        mx /= n
        my /= n
        if warm and have_prev and p1 - p0 == n:
            same = True
            for i in range(n):
                if flat[p0 + i, 0] != x[i, 0] or flat[p0 + i, 1] != x[i, 1]:
                    same = False
                    break
            if same:  # c still holds last frame's centres
                out_c[f] = c
                p0, p1, pmx, pmy = s0, s1, mx, my
                continue
        if warm and have_prev:
            for j in range(k):
                c[j, 0] += mx - pmx
                c[j, 1] += my - pmy
        elif f == 0 and have_first:
            c[:] = first
            out_c[f] = c
            have_prev, p0, p1, pmx, pmy = True, s0, s1, mx, my
            continue
        else:
            step = n // k
            for j in range(k):
                c[j, 0] = x[step // 2 + step * j, 0]
                c[j, 1] = x[step // 2 + step * j, 1]
        vx, vy = 0.0, 0.0
        for i in range(n):
            vx += (x[i, 0] - mx) ** 2
            vy += (x[i, 1] - my) ** 2
        _lloyd_inner(x, c, max_iter, max(1e-4 * (vx + vy) / (2 * n), min_shift))
        out_c[f] = c
        have_prev, p0, p1, pmx, pmy = True, s0, s1, mx, my


if HAVE_NUMBA:  # pragma: no branch
    cluster_track = numba.njit(cache=True, nogil=True)(_cluster_track_py)
else:  # pragma: no cover
    cluster_track = None


def _draw_stamps_py(out, fidx, pidx, r0, r1, c0, c1, atlas, ids, depth):
    """Draw points in order: each writes its whole (clipped, squashed) stamp square into the three channels,
    overwriting what earlier points wrote there. out: (F, 3, H, W) float32, zeroed."""
    for j in range(fidx.shape[0]):
        f, p = fidx[j], pidx[j]
        h, w = r1[j] - r0[j], c1[j] - c0[j]
        inst, dep = ids[p], depth[f, p]
        for yy in range(h):
            for xx in range(w):
                v = atlas[h, w, yy, xx]
                on = 1.0 if v > 0 else 0.0
                out[f, 0, r0[j] + yy, c0[j] + xx] = v
                out[f, 1, r0[j] + yy, c0[j] + xx] = inst * on
                out[f, 2, r0[j] + yy, c0[j] + xx] = dep * on


if HAVE_NUMBA:  # pragma: no branch
    draw_stamps = numba.njit(cache=True, nogil=True)(_draw_stamps_py)
else:  # pragma: no cover
    draw_stamps = None


def _sample_frames_py(inst, slot, stride, width, areas, scratch, counts):
    """One pass over the maps: per frame and object slot its area, and every stride-th pixel of it (row-major)
    as (row, col) in scratch[f, b, :counts[f, b]]. inst: (F, H*W) ids (any integer type; ids outside slot
    are ignored)."""
    F, n = inst.shape
    B = areas.shape[1]
    L = slot.shape[0]
    due = np.empty(B, dtype=np.int64)  # pixels until the object's next sample
    for f in range(F):
        due[:] = 1
        p = 0
        for r in range(n // width):
            for c in range(width):
                v = inst[f, p]
                p += 1
                if v < 0 or v >= L:
                    continue
                b = slot[v]
                if b < 0:
                    continue
                areas[f, b] += 1
                due[b] -= 1
                if due[b] == 0:
                    j = counts[f, b]
                    scratch[f, b, j, 0] = r
                    scratch[f, b, j, 1] = c
                    counts[f, b] = j + 1
                    due[b] = stride


def _gather_samples_py(scratch, counts, out):
    """Copy scratch[f, b, :counts[f, b]] into out, object after object, each object's frames in order."""
    F, B = counts.shape
    j = 0
    for b in range(B):
        for f in range(F):
            for i in range(counts[f, b]):
                out[j, 0] = scratch[f, b, i, 0]
                out[j, 1] = scratch[f, b, i, 1]
                j += 1


if HAVE_NUMBA:  # pragma: no branch
    _sample_frames = numba.njit(cache=True, nogil=True)(_sample_frames_py)
    _gather_samples = numba.njit(cache=True, nogil=True)(_gather_samples_py)


_local = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """An int32 work array of this shape, reused call after call (per thread): a fresh one would page-fault
    its way in every time, which costs as much as the pass that fills it."""
    n = int(np.prod(shape))
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(n, dtype=np.int32)
    return buf[:n].reshape(shape)


def sample_pixels(instance: np.ndarray, ids: list[int], stride: int):
    """Every stride-th pixel (row-major) of each id's mask per frame, in one pass over the maps.

    Returns areas (F, B) int64, samples (N, 2) float64 (row, col) and offsets (B, F + 1): object b's samples
    in frame f are samples[offsets[b, f]:offsets[b, f + 1]], each object's frames one after another.
    """
    F, H, W = instance.shape
    B = len(ids)
    inst = np.ascontiguousarray(instance).reshape(F, H * W)
    slot = np.full(int(max(ids)) + 1 if ids else 1, -1, dtype=np.int64)
    slot[np.asarray(ids, dtype=np.int64)] = np.arange(B)
    areas = np.zeros((F, B), dtype=np.int64)
    counts = np.zeros((F, B), dtype=np.int64)
    scratch = _scratch((F, B, (H * W + stride - 1) // stride, 2))
    _sample_frames(inst, slot, stride, W, areas, scratch, counts)
    offsets = np.zeros((B, F + 1), dtype=np.int64)
    offsets[:, 1:] = np.cumsum(counts.T.reshape(-1)).reshape(B, F)
    offsets[1:, 0] = offsets[:-1, -1]
    out = np.empty((int(offsets[-1, -1]) if B else 0, 2), dtype=np.float64)
    _gather_samples(scratch, counts, out)
    return areas, out, offsets
