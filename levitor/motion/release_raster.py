"""The release's point rasteriser: what pytorch3d computes when the release renders a moved object, reproduced.

The release renders each moved object on its own, once per frame: the object's pixels, back-projected by its camera
and moved along the path, go through pytorch3d's ``PointsRasterizer`` (radius max(0.011 - dz, 0.011) in NDC,
10 points per pixel) and ``AlphaCompositor`` with the object's id as the feature, and a pixel is the object's where
the rounded image is not 0 (REFERENCE.md, "The release's point rasteriser"). Here that is as arithmetic, in the
order pytorch3d's CPU kernels do it:

- NDC: +X left, +Y up, the short image side spans [-1, 1]. Pixel centres are pytorch3d's float32
  ``PixToNonSquareNdc``: x = (W - 2 col - 1) / m, y = (H - 2 row - 1) / m with m = min(H, W) (:func:`pixel_centres`).
- Camera (``PerspectiveCameras(in_ndc=False)``, R = diag(-1, -1, 1), T = 0; :class:`ReleaseCamera`): a pixel (u, v)
  moved by the path's (dx, dy) is back-projected at its depth Z0 in float32 as the release's code does
  (X = (u + dx - cx) Z0 / fx), its depth becomes Z0 + dz, and it projects to x = -X (fx / s) / Z with s = m / 2.
  An unmoved pixel lands half a pixel up and left of its own pixel centre. (The release projects on the GPU, whose
  float32 matrix arithmetic can differ in the last bit.)
- Hit: the squared distance to a pixel centre d2 = dx^2 + dy^2 (float32) strictly below r^2, r the radius in float32.
  Only z < 0 is culled (z = 0 is kept).
- Per pixel, the ``points_per_pixel`` hits with the smallest (z, point index), ascending: pytorch3d's CPU kernel
  (its binned CUDA kernel, which the release ran, may order equal-z hits otherwise).
- Composite: w = 1 - d2 / (r * r) (r * r in float64, then float32), result += (cum * w) * f, cum *= 1 - w over the
  kept hits, float32, background 0; the pixel is covered where round(result) != 0 (half to even: |result| > 0.5).

The compiled path (:func:`frame_coverage`) processes points in ascending (z, index), so each pixel keeps the first
hits it sees and stops taking points when full: its cost is the points' rows plus the hits kept, not pixels x
points. A point's hits in a row are one run of columns, scanned outward from its nearest columns; for radii above a
few pixels (an approaching object's grows to tens) a union-find over each row skips full pixels. A pixel one close
hit already proves covered takes no more (only the uncertain rim is composited exactly). The numpy fallback
enumerates each point's bounding box in chunks (the same result; slow for very large radii). Tests check both
against a per-pixel reference written from the semantics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from levitor._util.jit import jit, numba_on
from levitor.scene import Intrinsics

BASE_RADIUS = 0.011  # NDC: the release's point radius for an object that keeps its depth (1.58 px at m = 288)
POINTS_PER_PIXEL = 10  # the release's points_per_pixel: hits kept per pixel, nearest first
COVERED = 0.5  # a pixel is the object's where round(image) != 0: |image| > 0.5 (numpy rounds half to even)
_BOX_BUDGET = 1 << 22  # numpy fallback: candidate (point, pixel) pairs per chunk
SCAN_MAX_PX = 4.0  # compiled loop: radii up to this many pixels scan each run of hits; larger ones skip full pixels
CERTAIN = 1 << 20  # a pixel's hit count once one hit proves it covered (it takes no more)
_f32 = np.float32


def point_radius(dz: float) -> float:
    """The release's radius (NDC) for an object whose path depth changed by ``dz``: it grows as the object
    approaches (dz < 0) and never shrinks below the base radius."""
    return max(BASE_RADIUS - float(dz), BASE_RADIUS)


def _ndc_range(s1: int, s2: int) -> np.float32:
    """pytorch3d's NonSquareNdcRange: 2 for the short side, 2 s1 / s2 for the long one (float32)."""
    return _f32(_f32(s1) * _f32(2.0) / _f32(s2)) if s1 > s2 else _f32(2.0)


def pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """NDC of every column's centre (W,) and every row's centre (H,), float32, as pytorch3d computes them
    (``PixToNonSquareNdc`` of the flipped index: +X left, +Y up)."""

    def ndc(i: np.ndarray, s1: int, s2: int) -> np.ndarray:
        rng = _ndc_range(s1, s2)
        off = rng / _f32(2.0)
        return (-off + (rng * i.astype(np.float32) + off) / _f32(s1)).astype(np.float32)

    return ndc(width - 1 - np.arange(width), width, height), ndc(height - 1 - np.arange(height), height, width)


@dataclass(frozen=True)
class ReleaseCamera:
    """The release's camera as float32 constants: back-projection (fx, fy, cx, cy, as the release's float32 CPU
    code) and projection to NDC, x = (-X ax + Z bx) / Z (ax = fx / s, s = min(H, W) / 2; bx = (W/2 - cx) / s, 0 for
    the release's principal point (W/2, H/2))."""

    fx: np.float32
    fy: np.float32
    cx: np.float32
    cy: np.float32
    ax: np.float32
    ay: np.float32
    bx: np.float32
    by: np.float32

    @classmethod
    def of(cls, K: Intrinsics, height: int, width: int) -> ReleaseCamera:
        s = min(height, width) / 2.0
        inv_s = _f32(1.0) / _f32(s)  # the screen-to-NDC matrix's scale
        fx, fy = _f32(K.fx), _f32(K.fy)
        return cls(fx, fy, _f32(K.cx), _f32(K.cy), _f32(fx * inv_s), _f32(fy * inv_s),
                   _f32((width / 2.0 - K.cx) / s), _f32((height / 2.0 - K.cy) / s))


def project(u: np.ndarray, v: np.ndarray, z0: np.ndarray, delta: tuple[float, float, float],
            cam: ReleaseCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NDC (x, y) and view depth z (float32) of pixels (u, v) (integers, float64) at depth z0 (float32), moved by
    the path's ``delta`` = (dx, dy, dz) (float64).

    As the release: u + dx in float64 rounded to float32 (it adds a float64 tensor), then float32 arithmetic;
    the depth change is added in float32 (a float64 0-d tensor does not promote). A point at z = 0 projects to
    infinity (it hits nothing)."""
    dx, dy, dz = (float(d) for d in delta)
    z0 = np.asarray(z0, np.float32)
    X = (((u + dx).astype(np.float32) - cam.cx) * z0) / cam.fx
    Y = (((v + dy).astype(np.float32) - cam.cy) * z0) / cam.fy
    z = z0 + _f32(dz)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ((-X) * cam.ax + z * cam.bx) / z
        y = ((-Y) * cam.ay + z * cam.by) / z
    return x.astype(np.float32), y.astype(np.float32), z


def pixel_to_ndc(x: np.ndarray, y: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 2) NDC of pixel positions (x, y) as the release's camera places them: an unmoved pixel (u, v) at
    ((W - 2u) / m, (H - 2v) / m), half a pixel up and left of its pixel centre (float64)."""
    m = min(height, width)
    return np.stack([(width - 2 * np.asarray(x, np.float64)) / m, (height - 2 * np.asarray(y, np.float64)) / m], -1)


def depth_order(z: np.ndarray) -> np.ndarray:
    """Point indices in ascending (z, index): the order in which the rasteriser fills each pixel's slots."""
    return np.argsort(z, kind="stable")


# ---------------------------------------------------------------------------------------------- compiled loops

def _project_point(u, v, z0, dx, dy, dz32, fx, fy, cx, cy, ax, ay, bx, by):
    """One point of :func:`project` (the same float32 operations)."""
    X = ((np.float32(u + dx) - cx) * z0) / fx
    Y = ((np.float32(v + dy) - cy) * z0) / fy
    z = z0 + dz32
    if z == 0:  # numpy gives inf or nan here: either way the point hits nothing
        return np.float32(np.inf), np.float32(np.inf), z
    return ((-X) * ax + z * bx) / z, ((-Y) * ay + z * by) / z, z


_project_point = jit(_project_point)


def _fix_order(order0, z0, z, out):
    """``out`` = the points in ascending (z, index), given ``order0`` in ascending (z0, index) and z = z0 + dz (float32,
    so monotone in z0): the order only changes where the addition makes different z0 equal; those runs are
    re-sorted by index."""
    n = order0.shape[0]
    for t in range(n):
        out[t] = order0[t]
    t = 0
    while t < n:
        e = t + 1
        while e < n and z[out[e]] == z[out[t]]:
            e += 1
        if e - t > 1 and z0[out[t]] != z0[out[e - 1]]:
            out[t:e] = np.sort(out[t:e])
        t = e


_fix_order = jit(_fix_order)


def _find(nxt, a):
    """The first non-full pixel at or after slot a of a row (union-find with path halving)."""
    while nxt[a] != a:
        nxt[a] = nxt[nxt[a]]
        a = nxt[a]
    return a


_find = jit(_find)


# One loop nest on purpose (C901 25): split into compiled helpers (per point, per row or per hit, inlined or not)
# the same results ran 1.25-3.5x slower on the release's hot path (measured 2026-12-06, issue 26).
def _rasterise_cloud(x, y, z, order, r32, cert, xc, yc, slots, count, slot_i, slot_d, nxt, touched,  # noqa: C901
                     full):
    """Rasterise one cloud: for each point in ``order`` (ascending (z, index)), every pixel centre within the radius
    that still has a free slot takes it (point index and d2). A hit with d2 < ``cert`` (:func:`certain_below`;
    negative for none) proves its pixel covered whatever comes after: the pixel keeps its nearest point, its count
    becomes CERTAIN and it takes no more.
    Returns the number of pixels touched (listed in ``touched``) and of pixels filled (``full``: their ``nxt``
    entries to reset). count (H*W,) must be 0 and nxt (H*(W+1),) the identity on entry; :func:`_reset_scratch`.

    The hits of a point in one row are one run of columns (d2 is unimodal along the row) around the two columns
    either side of the point, and its rows one run around its row: small radii scan outward from those; above
    SCAN_MAX_PX pixels each run's ends are found exactly and a union-find skips the pixels already full."""
    H = yc.shape[0]
    W = xc.shape[0]
    m = min(H, W)
    half = m / 2.0
    r2 = r32 * r32
    r_px = np.float64(r32) * half
    lim_x = W / m + np.float64(r32) + 1.0  # beyond this a point hits nothing (also catches inf and nan)
    lim_y = H / m + np.float64(r32) + 1.0
    scan = r_px <= SCAN_MAX_PX
    n_t = 0
    n_f = 0
    for t in range(order.shape[0]):
        i = order[t]
        if z[i] < 0:
            continue
        px = x[i]
        py = y[i]
        if not (abs(px) <= lim_x and abs(py) <= lim_y):
            continue
        fr = (H - 1 - np.float64(py) * m) / 2.0  # the point's row and column in pixel units
        fc = (W - 1 - np.float64(px) * m) / 2.0
        if scan:
            ra = int(np.floor(fr))
            ca = int(np.floor(fc))
            for up in range(2):
                row = min(ra, H - 1) if up == 1 else max(ra + 1, 0)
                while 0 <= row < H:
                    dy = py - yc[row]
                    dy2 = dy * dy
                    if not dy2 < r2:  # d2 >= dy2: no hit in this row, nor beyond it
                        break
                    for left in range(2):
                        c = min(ca, W - 1) if left == 1 else max(ca + 1, 0)
                        while 0 <= c < W:
                            dx = px - xc[c]
                            d2 = dx * dx + dy2
                            if not d2 < r2:
                                break
                            p = row * W + c  # the pixel takes the hit (as below; kept apart: a helper is slower)
                            k = count[p]
                            if k < slots:
                                if k == 0:
                                    touched[n_t] = p
                                    n_t += 1
                                    slot_i[p * slots] = i
                                if d2 < cert:
                                    count[p] = CERTAIN
                                else:
                                    slot_i[p * slots + k] = i
                                    slot_d[p * slots + k] = d2
                                    count[p] = k + 1
                            c += -1 if left == 1 else 1
                    row += -1 if up == 1 else 1
            continue
        r0 = max(int(np.floor(fr - r_px)) - 1, 0)
        r1 = min(int(np.ceil(fr + r_px)) + 1, H - 1)
        for row in range(r0, r1 + 1):
            dy = py - yc[row]
            dy2 = dy * dy
            if not dy2 < r2:
                continue
            hw = np.sqrt(max(np.float64(r2) - np.float64(dy2), 0.0)) * half
            c0 = max(int(np.floor(fc - hw)) - 1, 0)
            c1 = min(int(np.ceil(fc + hw)) + 1, W - 1)
            while c0 <= c1:  # the run's ends, exactly
                dx = px - xc[c0]
                if dx * dx + dy2 < r2:
                    break
                c0 += 1
            while c1 >= c0:
                dx = px - xc[c1]
                if dx * dx + dy2 < r2:
                    break
                c1 -= 1
            if c0 > c1:
                continue
            base = row * (W + 1)
            c = _find(nxt, base + c0) - base
            while c <= c1:
                dx = px - xc[c]
                d2 = dx * dx + dy2
                p = row * W + c
                k = count[p]  # < slots: full pixels are skipped
                if k == 0:
                    touched[n_t] = p
                    n_t += 1
                    slot_i[p * slots] = i
                if d2 < cert:
                    count[p] = CERTAIN
                else:
                    slot_i[p * slots + k] = i
                    slot_d[p * slots + k] = d2
                    count[p] = k + 1
                if count[p] >= slots:
                    nxt[base + c] = base + c + 1
                    full[n_f] = base + c
                    n_f += 1
                c = _find(nxt, base + c + 1) - base
    return n_t, n_f


_rasterise_cloud = jit(_rasterise_cloud)


def certain_below(radius: float, feature: float) -> np.float32:
    """The squared distance below which one kept hit alone proves a pixel covered: the composite is
    f (1 - prod(1 - w_k)) >= f w_j (all w in [0, 1] to within 1e-6), and f w_j > 0.5 + 1e-4 f leaves room for
    float32 rounding of the whole sum (about 1e-6 f); so d2 < r^2 (1 - (0.5 + 1e-4 f) / f). -1 where no single hit
    can prove it (f < 1)."""
    r2w = float(np.float32(float(radius) * float(radius)))
    t = r2w * (1.0 - (COVERED + 1e-4 * feature) / feature) if feature > 0 else -1.0
    return _f32(t) if t > 0 else _f32(-1.0)


def _composite_pixel(p, slots, count, slot_d, r2w, feature):
    """The alpha compositor's value at pixel p (pytorch3d's CPU kernel, float32); a certain pixel gives 1."""
    if count[p] == CERTAIN:
        return np.float32(1.0)
    res = np.float32(0.0)
    cum = np.float32(1.0)
    for k in range(count[p]):
        alpha = np.float32(1.0) - slot_d[p * slots + k] / r2w
        res = res + cum * alpha * feature
        cum = cum * (np.float32(1.0) - alpha)
    return res


_composite_pixel = jit(_composite_pixel)


def _reset_scratch(count, nxt, touched, n_t, full, n_f):
    for t in range(n_t):
        count[touched[t]] = 0
    for t in range(n_f):
        nxt[full[t]] = full[t]


_reset_scratch = jit(_reset_scratch)


def _rasterise_dense(x, y, z, order, r32, xc, yc, slots, count, slot_i, slot_d, nxt, touched, full,
                     out_idx, out_z, out_d):
    """:func:`_rasterise_cloud`, written out as pytorch3d's (H*W, K) outputs (pre-filled with -1)."""
    n_t, n_f = _rasterise_cloud(x, y, z, order, r32, np.float32(-1.0), xc, yc, slots, count, slot_i, slot_d, nxt,
                               touched, full)
    for t in range(n_t):
        p = touched[t]
        for k in range(count[p]):
            i = slot_i[p * slots + k]
            out_idx[p, k] = i
            out_z[p, k] = z[i]
            out_d[p, k] = slot_d[p * slots + k]
    _reset_scratch(count, nxt, touched, n_t, full, n_f)


_rasterise_dense = jit(_rasterise_dense)


def _coverage_kernel(x, y, z, order, r32, r2w, cert, feature, xc, yc, slots, count, slot_i, slot_d, nxt, touched,
                     full, out_pix, out_near):
    """The covered pixels of one cloud and the nearest point at each; returns how many."""
    n_t, n_f = _rasterise_cloud(x, y, z, order, r32, cert, xc, yc, slots, count, slot_i, slot_d, nxt, touched, full)
    n = 0
    for t in range(n_t):
        p = touched[t]
        v = _composite_pixel(p, slots, count, slot_d, r2w, feature)
        if v > 0.5 or v < -0.5:
            out_pix[n] = p
            out_near[n] = slot_i[p * slots]
            n += 1
    _reset_scratch(count, nxt, touched, n_t, full, n_f)
    return n


_coverage_kernel = jit(_coverage_kernel)


def _cloud_coverage(u, v, z0, order0, dx, dy, dz, base_radius, cert, feature, fx, fy, cx, cy, ax, ay, bx, by,
                    x, y, z, order, xc, yc, slots, count, slot_i, slot_d, nxt, touched, full, out_pix, out_near):
    """:func:`coverage` of one moved cloud in one frame, from its pixels: project, order, rasterise, composite.
    Returns how many pixels it covers (in out_pix, with the nearest kept point in out_near)."""
    n = u.shape[0]
    dz32 = np.float32(dz)
    for i in range(n):
        x[i], y[i], z[i] = _project_point(u[i], v[i], z0[i], dx, dy, dz32, fx, fy, cx, cy, ax, ay, bx, by)
    _fix_order(order0, z0, z[:n], order[:n])
    radius = max(base_radius - dz, base_radius)
    return _coverage_kernel(x[:n], y[:n], z[:n], order[:n], np.float32(radius), np.float32(radius * radius), cert,
                            feature, xc, yc, slots, count, slot_i, slot_d, nxt, touched, full, out_pix, out_near)


_cloud_coverage = jit(_cloud_coverage)


def frame_coverage(u: np.ndarray, v: np.ndarray, z0: np.ndarray, order0: np.ndarray, delta: np.ndarray,
                   feature: int, cam: ReleaseCamera, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's coverage of one moved cloud (compiled): the pixels it covers (int32, flat) and the nearest kept
    point at each (int32). Safe to call from several threads at once (each has its own work arrays).

    u, v: (N,) pixel column and row (float64), z0: (N,) float32 depth, order0: :func:`depth_order` of z0, delta:
    the path's (dx, dy, dz) in this frame (float64), feature: the object's id."""
    K = POINTS_PER_PIXEL
    s = Scratch.get(height, width, K)
    x, y, z, order = s.points(u.size)
    dx, dy, dz = (float(d) for d in delta)
    radius = point_radius(dz)
    n = _cloud_coverage(u, v, z0, order0, dx, dy, dz, BASE_RADIUS, certain_below(radius, feature), _f32(feature),
                        cam.fx, cam.fy, cam.cx, cam.cy, cam.ax, cam.ay, cam.bx, cam.by, x, y, z, order, *s.args(K),
                        s.out_pix, s.out_near)
    return s.out_pix[:n].astype(np.int32), s.out_near[:n].astype(np.int32)


class Scratch:
    """Work arrays of the compiled rasteriser for one image size, kept per thread: allocating (and page-faulting)
    several megabytes on every call would cost as much as the rasterisation."""

    _local = threading.local()

    def __init__(self, height: int, width: int, slots: int):
        n = height * width
        self.out_pix = np.empty(n, dtype=np.int64)
        self.out_near = np.empty(n, dtype=np.int64)
        self._points = (np.empty(0, np.float32),) * 3 + (np.empty(0, np.int64),)
        self.count = np.zeros(n, dtype=np.int32)
        self.slot_i = np.empty(n * slots, dtype=np.int32)
        self.slot_d = np.empty(n * slots, dtype=np.float32)
        self.nxt = np.arange(height * (width + 1), dtype=np.int64)
        self.touched = np.empty(n, dtype=np.int64)
        self.full = np.empty(n, dtype=np.int64)
        self.xc, self.yc = pixel_centres(height, width)
        self.key = (height, width, slots)

    @classmethod
    def get(cls, height: int, width: int, slots: int) -> Scratch:
        s = getattr(cls._local, "scratch", None)
        if s is None or s.key != (height, width, slots):
            s = cls._local.scratch = cls(height, width, slots)
        return s

    def points(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z (float32) and order (int64) arrays for n points."""
        if self._points[0].size < n:
            self._points = (*(np.empty(n, np.float32) for _ in range(3)), np.empty(n, np.int64))
        return tuple(a[:n] for a in self._points)

    def args(self, slots: int) -> tuple:
        return (self.xc, self.yc, slots, self.count, self.slot_i, self.slot_d, self.nxt, self.touched, self.full)


# ---------------------------------------------------------------------------------------------- numpy fallback

def _hits_np(x, y, z, order, r32, xc, yc, slots):
    """The kept hits of one cloud without numba: (pixel, point, d2) arrays grouped by pixel (ascending), each
    pixel's hits in (z, index) order, at most ``slots`` per pixel. Each point's bounding box is enumerated in
    chunks; pixels already full take no more hits."""
    H, W = yc.shape[0], xc.shape[0]
    m = min(H, W)
    r2 = _f32(r32) * _f32(r32)
    r_px = float(r32) * m / 2.0
    with np.errstate(invalid="ignore"):
        reach = float(r32) + 1.0  # beyond the image by more than this a point hits nothing (also inf and nan)
        ok = (z[order] >= 0) & (np.abs(x[order]) <= W / m + reach) & (np.abs(y[order]) <= H / m + reach)
    pts = order[ok]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if pts.size == 0:
        return empty
    fr = (H - 1 - y[pts].astype(np.float64) * m) / 2.0
    fc = (W - 1 - x[pts].astype(np.float64) * m) / 2.0
    r0 = np.clip(np.floor(fr - r_px).astype(np.int64) - 1, 0, H - 1)
    r1 = np.clip(np.ceil(fr + r_px).astype(np.int64) + 1, 0, H - 1)
    c0 = np.clip(np.floor(fc - r_px).astype(np.int64) - 1, 0, W - 1)
    c1 = np.clip(np.ceil(fc + r_px).astype(np.int64) + 1, 0, W - 1)
    bw = c1 - c0 + 1
    box = (r1 - r0 + 1) * bw
    count = np.zeros(H * W, np.int64)
    kept: list[tuple] = []
    start = 0
    while start < pts.size:  # chunks of points, in order, each enumerating at most _BOX_BUDGET candidates
        stop = start + max(1, int(np.searchsorted(np.cumsum(box[start:]), _BOX_BUDGET)))
        sel = np.arange(start, min(stop, pts.size))
        start = sel[-1] + 1
        nb = box[sel]
        owner = np.repeat(sel, nb)
        local = np.arange(int(nb.sum())) - np.repeat(np.cumsum(nb) - nb, nb)
        rr = r0[owner] + local // bw[owner]
        cc = c0[owner] + local % bw[owner]
        p = pts[owner]
        dy = y[p] - yc[rr]
        dx = x[p] - xc[cc]
        d2 = dx * dx + dy * dy
        hit = np.flatnonzero(d2 < r2)
        pix = rr[hit] * W + cc[hit]
        s = np.argsort(pix, kind="stable")  # by pixel, each pixel's hits in point order
        pix, hit = pix[s], hit[s]
        first = np.r_[0, np.flatnonzero(np.diff(pix)) + 1]
        rank = np.arange(pix.size) - np.repeat(first, np.diff(np.r_[first, pix.size]))
        take = rank + count[pix] < slots
        pix, hit = pix[take], hit[take]
        np.add.at(count, pix, 1)
        kept.append((pix, p[hit], d2[hit]))
    pix = np.concatenate([k[0] for k in kept])
    s = np.argsort(pix, kind="stable")  # chunks came in point order: stable keeps it per pixel
    return pix[s], np.concatenate([k[1] for k in kept])[s], np.concatenate([k[2] for k in kept])[s]


def _slots_np(pix: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels, and for each hit its pixel's row and slot in a (pixels, slots) table."""
    first = np.r_[0, np.flatnonzero(np.diff(pix)) + 1] if pix.size else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[first, pix.size])
    return pix[first], np.repeat(np.arange(first.size), sizes), np.arange(pix.size) - np.repeat(first, sizes)


# ---------------------------------------------------------------------------------------------- public API

def rasterize(x: np.ndarray, y: np.ndarray, z: np.ndarray, radius: float, height: int, width: int,
              points_per_pixel: int = POINTS_PER_PIXEL, use_kernel: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pytorch3d's ``rasterize_points`` for one cloud already in NDC (x, y, view z; float32, (N,)).

    Returns idx (H, W, K) int64, zbuf (H, W, K) float32 and dists (H, W, K) float32 (squared NDC distance), each
    pixel's hits ascending in (z, index), padded with -1; row 0 is the top of the image, column 0 the left.
    ``use_kernel``: the compiled loop when numba is installed (the same result).
    """
    x, y, z = (np.ascontiguousarray(a, np.float32) for a in (x, y, z))
    order = depth_order(z)
    r32 = _f32(radius)
    K = int(points_per_pixel)
    n = height * width
    idx = np.full((n, K), -1, np.int64)
    zbuf = np.full((n, K), -1, np.float32)
    dists = np.full((n, K), -1, np.float32)
    if use_kernel and numba_on():
        s = Scratch.get(height, width, K)
        _rasterise_dense(x, y, z, order, r32, *s.args(K), idx, zbuf, dists)
    else:
        xc, yc = pixel_centres(height, width)
        pix, pt, d2 = _hits_np(x, y, z, order, r32, xc, yc, K)
        _, _, k = _slots_np(pix, K)
        idx[pix, k], zbuf[pix, k], dists[pix, k] = pt, z[pt], d2
    shape = (height, width, K)
    return idx.reshape(shape), zbuf.reshape(shape), dists.reshape(shape)


def composite(idx: np.ndarray, dists: np.ndarray, radius: float, features: np.ndarray) -> np.ndarray:
    """What the release's ``PointsRenderer`` + ``AlphaCompositor`` make of :func:`rasterize`'s output, one feature
    channel: (H, W) float32. features: (N,) per point."""
    r2w = _f32(float(radius) * float(radius))  # the renderer's r * r is a Python float, divided in float32
    f = np.asarray(features, np.float32)
    res = np.zeros(idx.shape[:2], np.float32)
    cum = np.ones(idx.shape[:2], np.float32)
    for k in range(idx.shape[2]):
        on = idx[..., k] >= 0
        if not on.any():
            continue
        alpha = _f32(1.0) - dists[..., k] / r2w
        res = np.where(on, res + cum * alpha * f[np.where(on, idx[..., k], 0)], res)
        cum = np.where(on, cum * (_f32(1.0) - alpha), cum)
    return res


def coverage(x: np.ndarray, y: np.ndarray, z: np.ndarray, order: np.ndarray, radius: float, feature: float,
             height: int, width: int, points_per_pixel: int = POINTS_PER_PIXEL, use_kernel: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    """The pixels one cloud covers, as the release counts them (round(image) != 0, the image being the composite
    of the feature ``feature``), and the nearest point at each.

    x, y, z: NDC and view depth (float32, (N,)); order: :func:`depth_order` of z. Returns flat pixel indices
    row * W + col (int64) and point indices (int64)."""
    x, y, z = (np.ascontiguousarray(a, np.float32) for a in (x, y, z))
    r32 = _f32(radius)
    r2w = _f32(float(radius) * float(radius))
    f = _f32(feature)
    K = int(points_per_pixel)
    if use_kernel and numba_on():
        s = Scratch.get(height, width, K)
        out_pix = np.empty(height * width, np.int64)
        out_near = np.empty(height * width, np.int64)
        n = _coverage_kernel(x, y, z, np.ascontiguousarray(order, np.int64), r32, r2w, certain_below(radius, f), f,
                             *s.args(K), out_pix, out_near)
        pix, near = out_pix[:n], out_near[:n]
        s_ = np.argsort(pix)
        return pix[s_], near[s_]
    xc, yc = pixel_centres(height, width)
    pix, pt, d2 = _hits_np(x, y, z, np.asarray(order, np.int64), r32, xc, yc, K)
    pixels, row, k = _slots_np(pix, K)
    res = np.zeros(pixels.size, np.float32)
    cum = np.ones(pixels.size, np.float32)
    for slot in range(K):
        sel = k == slot
        r = row[sel]
        alpha = _f32(1.0) - d2[sel] / r2w
        res[r] = res[r] + cum[r] * alpha * f
        cum[r] = cum[r] * (_f32(1.0) - alpha)
    near = pt[k == 0]
    on = np.abs(res) > COVERED
    return pixels[on], near[on]
