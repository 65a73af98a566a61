"""Compiled loops of the control layer (see :mod:`levitor._util.jit`): Lloyd's K-means, one object's K-means
track over a clip, the one-pass pixel sampling of every object, and the stamp drawing of the encoder. The
torch paths in points.py and encode.py are the reference; tests check both give the same result.
"""

from __future__ import annotations

import threading

import numpy as np

from levitor._util.jit import jit


def assign(xs, ys, c, dist, labels):
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


assign = jit(assign, inline=True)


def lloyd(x, c, max_iter, tol_abs):
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
        assign(xs, ys, c, dist, labels)
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
    assign(xs, ys, c, dist, labels)
    inertia = 0.0
    for i in range(n):
        inertia += dist[i]
    return inertia


lloyd = jit(lloyd)


def tolerance(x, tol, min_shift):
    """The stopping threshold of Lloyd's loop for samples x (n, 2): ``tol`` times the mean per-feature variance,
    at least ``min_shift``; the compiled twin of :func:`levitor.control.points.kmeans_tolerance` (same formula:
    from the sums, exact on pixel coordinates)."""
    n = x.shape[0]
    sx, sy, qx, qy = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        sx += x[i, 0]
        sy += x[i, 1]
        qx += x[i, 0] * x[i, 0]
        qy += x[i, 1] * x[i, 1]
    nf = float(max(n, 1))
    ss = (qx - sx * sx / nf) + (qy - sy * sy / nf)
    return max(tol * ss / (2 * nf), min_shift)


tolerance = jit(tolerance, inline=True)


def move_centre(c, sums, counts, j):
    """sklearn's M step for centre j, in place: sums times the float32 reciprocal of the count. Returns the squared
    shift as sklearn adds it to its stopping sum (float32 norm, then squared)."""
    f32 = np.float32
    alpha = f32(1.0) / counts[j]
    sq = f32(0.0)
    for m in range(c.shape[1]):
        new = sums[j, m] * alpha
        diff = new - c[j, m]
        sq += diff * diff
        c[j, m] = new
    shift = f32(np.sqrt(sq))
    return shift * shift


move_centre = jit(move_centre, inline=True)


def lloyd32(x, c, max_iter, tol_abs, labels):
    """sklearn's Lloyd iteration in float32 on centred samples x (n, d), in place on the centres c (k, d): the
    compiled twin of :func:`levitor.control.release_kmeans.kmeans32` (same arithmetic, operation for operation).
    Returns the number of iterations, or -1 when a cluster empties (the caller then runs the reference, which
    relocates it as sklearn does)."""
    n, d = x.shape
    k = c.shape[0]
    f32 = np.float32
    labels_old = np.full(n, -1, dtype=np.int64)
    c_norm = np.empty(k, dtype=np.float32)
    sums = np.empty((k, d), dtype=np.float32)
    counts = np.empty(k, dtype=np.float32)
    for it in range(max_iter):
        for j in range(k):
            acc = f32(0.0)
            for m in range(d):
                acc += c[j, m] * c[j, m]
            c_norm[j] = acc
        sums[:] = 0
        counts[:] = 0
        for i in range(n):
            best = np.inf
            lab = 0
            for j in range(k):
                dot = x[i, 0] * c[j, 0]
                for m in range(1, d):  # fused multiply-add, as the BLAS kernel: one rounding
                    dot = f32(np.float64(dot) + np.float64(x[i, m]) * np.float64(c[j, m]))
                dist = c_norm[j] + f32(-2.0) * dot
                if dist < best:
                    best = dist
                    lab = j
            labels[i] = lab
            counts[lab] += f32(1.0)
            for m in range(d):
                sums[lab, m] += x[i, m]
        shift_tot = f32(0.0)
        for j in range(k):
            if counts[j] == 0:
                return -1
            shift_tot += move_centre(c, sums, counts, j)
        same = True
        for i in range(n):
            if labels[i] != labels_old[i]:
                same = False
                break
        if same or shift_tot <= tol_abs:
            return it + 1
        for i in range(n):
            labels_old[i] = labels[i]
    return max_iter


lloyd32 = jit(lloyd32)


def cluster_track(flat, offsets, k, warm, first, have_first, max_iter, min_shift, out_c, out_vis):
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
        lloyd(x, c, max_iter, tolerance(x, 1e-4, min_shift))
        out_c[f] = c
        have_prev, p0, p1, pmx, pmy = True, s0, s1, mx, my


cluster_track = jit(cluster_track)


def draw_stamps(out, fidx, pidx, r0, r1, c0, c1, atlas, ids, depth):
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


draw_stamps = jit(draw_stamps)


def _sample_frames(inst, slot, stride, width, areas, scratch, counts):
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


_sample_frames = jit(_sample_frames)


def _gather_samples(scratch, counts, out):
    """Copy scratch[f, b, :counts[f, b]] into out, object after object, each object's frames in order."""
    F, B = counts.shape
    j = 0
    for b in range(B):
        for f in range(F):
            for i in range(counts[f, b]):
                out[j, 0] = scratch[f, b, i, 0]
                out[j, 1] = scratch[f, b, i, 1]
                j += 1


_gather_samples = jit(_gather_samples)


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
