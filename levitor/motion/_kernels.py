"""Optional compiled kernels (numba) for the engine's hot loops; the pure-torch versions stay the reference.

A z-buffer is a loop over points with a compare per pixel: as a compiled loop it costs a few nanoseconds a
point, while the vectorised torch version (scatter_reduce over packed keys) pays for several passes over
large index arrays. numba is optional: without it, or with ``LEVITOR_NO_NUMBA=1``, the torch paths run.
Both give identical results (tests compare them).
"""

from __future__ import annotations

import os

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
                      ids, colors, out_inst, out_depth, out_color, zbuf, win):
    """Move every mover pixel along its track (2D shift, then depth change), z-buffer it, and composite
    the winners over the static layer where they are nearer. Same arithmetic as lift.move + render."""
    num_frames = tracks.shape[1]
    hw = height * width
    for f in range(num_frames):
        for i in range(px.shape[0]):
            m = owner[i]
            dx = np.float32(tracks[m, f, 0] - tracks[m, 0, 0])
            dy = np.float32(tracks[m, f, 1] - tracks[m, 0, 1])
            dd = np.float32(tracks[m, f, 2] - tracks[m, 0, 2])
            zi = z0[i]
            x3 = (px[i] + dx - cx) * zi / fx
            y3 = (py[i] + dy - cy) * zi / fy
            z = zi + dd
            if z < min_z:
                z = min_z
            u = fx * x3 / z + cx
            v = fy * y3 / z + cy
            s = int(np.ceil(zi / z - np.float32(1e-6)))
            if s < 1:
                s = 1
            if s > max_fp:
                s = max_fp
            _cover(u, v, z, i, s, f * hw, height, width, zbuf, win)
    for p in range(zbuf.shape[0]):
        i = win[p]
        if i >= 0 and zbuf[p] < out_depth[p]:  # out_depth holds the static layer until a mover wins
            out_inst[p] = ids[i]
            out_depth[p] = zbuf[p]
            for c in range(3):
                out_color[p, c] = colors[i, c]


if HAVE_NUMBA:  # pragma: no branch
    _render_movers = numba.njit(cache=True, nogil=True)(_render_movers_py)
else:  # pragma: no cover
    _render_movers = None


def render_movers(px, py, z0, owner, tracks, K, min_z, max_fp, ids, colors, out_inst, out_depth, out_color) -> None:
    """Fused move + z-buffer + composite into the (F, H, W) outputs, in place (numpy arrays)."""
    F, H, W = out_inst.shape
    zbuf = np.full(F * H * W, np.inf, dtype=np.float32)
    win = np.full(F * H * W, -1, dtype=np.int64)
    f32 = np.float32
    _render_movers(px, py, z0, owner, tracks, f32(K.fx), f32(K.fy), f32(K.cx), f32(K.cy), f32(min_z), max_fp,
                   H, W, ids, colors, out_inst.reshape(-1), out_depth.reshape(-1),
                   out_color.reshape(-1, 3), zbuf, win)


def _lloyd_py(x, c, max_iter, tol_abs):
    """Lloyd's K-means on one object's samples, in place on the centres c (K, 2); sklearn's rules: ties go to
    the lower index, an empty cluster moves to the sample farthest from its centre, stop when the summed
    squared centre shift is at most tol_abs. Returns the inertia."""
    n, k = x.shape[0], c.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    dist = np.zeros(n, dtype=np.float64)
    sums = np.zeros((k, 2), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for _ in range(max_iter):
        sums[:] = 0.0
        counts[:] = 0
        for i in range(n):
            best, arg = np.inf, 0
            for j in range(k):
                ddx = x[i, 0] - c[j, 0]
                ddy = x[i, 1] - c[j, 1]
                d = ddx * ddx + ddy * ddy
                if d < best:
                    best, arg = d, j
            labels[i] = arg
            dist[i] = best
            sums[arg, 0] += x[i, 0]
            sums[arg, 1] += x[i, 1]
            counts[arg] += 1
        shift = 0.0
        for j in range(k):
            if counts[j] > 0:
                nx, ny = sums[j, 0] / counts[j], sums[j, 1] / counts[j]
            else:  # relocate an empty cluster to the farthest sample
                far = np.argmax(dist)
                nx, ny = x[far, 0], x[far, 1]
                dist[far] = 0.0
            shift += (nx - c[j, 0]) ** 2 + (ny - c[j, 1]) ** 2
            c[j, 0], c[j, 1] = nx, ny
        if shift <= tol_abs:
            break
    inertia = 0.0
    for i in range(n):
        best = np.inf
        for j in range(k):
            ddx = x[i, 0] - c[j, 0]
            ddy = x[i, 1] - c[j, 1]
            d = ddx * ddx + ddy * ddy
            if d < best:
                best = d
        inertia += best
    return inertia


if HAVE_NUMBA:  # pragma: no branch
    lloyd = numba.njit(cache=True, nogil=True)(_lloyd_py)
else:  # pragma: no cover
    lloyd = None


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


def _sample_counts_py(inst, slot, stride, counts):
    """Pass 1 of sampling: per frame and object slot, its area and how many samples it gives."""
    F, n = inst.shape
    for f in range(F):
        for p in range(n):
            b = slot[inst[f, p]] if inst[f, p] >= 0 else -1
            if b >= 0:
                counts[f, b] += 1


def _sample_fill_py(inst, slot, stride, width, offsets, out):
    """Pass 2: every stride-th pixel of each object in row-major order, written as (row, col) at offsets."""
    F, n = inst.shape
    B = offsets.shape[1] - 1
    seen = np.zeros(B, dtype=np.int64)
    for f in range(F):
        seen[:] = 0
        for p in range(n):
            v = inst[f, p]
            b = slot[v] if v >= 0 else -1
            if b < 0:
                continue
            if seen[b] % stride == 0:
                j = offsets[f, b] + seen[b] // stride
                out[j, 0] = p // width
                out[j, 1] = p % width
            seen[b] += 1


if HAVE_NUMBA:  # pragma: no branch
    _sample_counts = numba.njit(cache=True, nogil=True)(_sample_counts_py)
    _sample_fill = numba.njit(cache=True, nogil=True)(_sample_fill_py)


def sample_pixels(instance: np.ndarray, ids: list[int], stride: int):
    """Every stride-th pixel (row-major) of each id's mask per frame, in two passes over the maps.

    Returns areas (F, B) int64 and samples[f][b] as (n, 2) float64 (row, col) arrays.
    """
    F, H, W = instance.shape
    inst = np.ascontiguousarray(instance.reshape(F, H * W))
    slot = np.full(int(max(ids)) + 1 if ids else 1, -1, dtype=np.int64)
    slot[np.asarray(ids, dtype=np.int64)] = np.arange(len(ids))
    inst = np.where(inst < len(slot), inst, -1) if inst.max(initial=0) >= len(slot) else inst
    areas = np.zeros((F, len(ids)), dtype=np.int64)
    _sample_counts(inst, slot, stride, areas)
    n = (areas + stride - 1) // stride
    offsets = np.zeros((F, len(ids) + 1), dtype=np.int64)
    flat = np.concatenate([[0], np.cumsum(n.reshape(-1))])
    offsets[:, :-1] = flat[:-1].reshape(F, len(ids))
    offsets[:, -1] = flat[1:].reshape(F, len(ids))[:, -1]
    out = np.zeros((int(flat[-1]), 2), dtype=np.float64)
    _sample_fill(inst, slot, stride, W, offsets, out)
    samples = [[out[offsets[f, b]: offsets[f, b] + n[f, b]] for b in range(len(ids))] for f in range(F)]
    return areas, samples
