"""K-means control points exactly as the official release computes them (REFERENCE.md, "K-means as the release
runs it"): scikit-learn's Lloyd iteration in float32 with its stopping rule, and the release's init across frames.

Written for levitor from sklearn's documented algorithm (scikit-learn is not a dependency): data centred on its
mean, squared distances as ``|c|^2 - 2 x.c``, ties to the lower centre, centres as sums times the reciprocal count,
an empty cluster moved to the sample farthest from its centre, and a stop when no label changes or when the summed
squared centre shift is at most ``tol`` times the mean per-feature variance. Sums run in sample order, which is
sklearn's single-thread order; with more threads sklearn adds per-thread partial sums, which can move a centre by
float rounding (tests compare with sklearn and count: same pixel, or within 1 px).

The init across frames, as the release's code runs (not as it reads): the first frame with points starts from its
evenly spaced samples, converges, keeps the converged centres as the object's init and fits again from them; every
later frame keeps that stored init unless one of its points fails NumPy's ``point in samples`` test, which is true
when *some* sample shares its row *or* its column; then the init becomes this frame's evenly spaced samples (and
stays so: it is never updated with converged centres again).
"""

from __future__ import annotations

import numpy as np

from levitor._util.jit import HAVE_NUMBA
from levitor.control import kernels

MAX_ITER = 300  # sklearn's defaults
TOL = 1e-4


def even_samples(samples: np.ndarray, k: int) -> np.ndarray:
    """The release's init: samples at L//2, L//2 + L, ... with L = n // k."""
    step = samples.shape[0] // k
    return samples[step // 2 + step * np.arange(k)]


def kmeans32(samples: np.ndarray, init: np.ndarray, max_iter: int = MAX_ITER, tol: float = TOL,
             use_kernel: bool = True) -> np.ndarray:
    """sklearn's ``KMeans(n_clusters=len(init), init=init).fit(samples).cluster_centers_``, in float32.

    samples: (n, d) with n >= k; init: (k, d). Returns (k, d) float32. ``use_kernel``: the compiled loop
    (:func:`levitor.control.kernels.lloyd32`, the same arithmetic) when numba is installed.
    """
    x = np.array(samples, dtype=np.float32, order="C")
    c = np.array(init, dtype=np.float32, order="C")
    n, k = x.shape[0], c.shape[0]
    if n < k:
        raise ValueError(f"{n} samples for {k} clusters; K-means needs at least as many samples as clusters")
    tol_abs = np.mean(np.var(x, axis=0)) * tol  # on the data as given, before centring (as sklearn)
    mean = x.mean(axis=0)
    x -= mean
    c -= mean
    if use_kernel and HAVE_NUMBA:
        fast = c.copy()
        if kernels.lloyd32(x, fast, max_iter, np.float32(tol_abs), np.empty(n, dtype=np.int64)) >= 0:
            return fast + mean
    labels_old = np.full(n, -1, dtype=np.int64)
    labels = labels_old
    for _ in range(max_iter):
        labels, distances = _assign(x, c)
        new = _centres(x, c, labels, k)
        shift = np.sqrt(((new - c) ** 2).sum(axis=1, dtype=np.float32))  # float32, per centre
        c = new
        if np.array_equal(labels, labels_old):  # strict convergence: no label changed
            break
        if (shift**2).sum(dtype=np.float32) <= tol_abs:
            break
        labels_old = labels
    return c + mean


def _assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre per sample (the first of equals), by sklearn's float32 formula |c|^2 - 2 x.c (|x|^2 dropped).

    The dot product is accumulated as the BLAS kernel under sklearn does on x86 (measured against it): the first
    product rounded to float32, each further one fused (one rounding per multiply-add, emulated in float64). On
    samples and centres that lie on the pixel grid exact ties are common, and only this order breaks them as
    sklearn does."""
    c_norm = (c * c).sum(axis=1, dtype=np.float32)
    dot = x[:, None, 0] * c[None, :, 0]
    for j in range(1, x.shape[1]):
        fused = dot.astype(np.float64) + x[:, None, j].astype(np.float64) * c[None, :, j].astype(np.float64)
        dot = fused.astype(np.float32)
    d = c_norm[None, :] + np.float32(-2.0) * dot
    labels = np.argmin(d, axis=1)  # argmin keeps the first minimum, as sklearn's strict '<' scan
    return labels, d


def _centres(x: np.ndarray, old: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The M step: per-cluster sums in sample order (float32), empty clusters relocated, then times 1 / count."""
    sums = np.zeros_like(old)
    counts = np.zeros(k, dtype=np.float32)
    np.add.at(sums, labels, x)  # unbuffered, one sample after another
    np.add.at(counts, labels, np.float32(1.0))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        far_d = ((x - old[labels]) ** 2).sum(axis=1, dtype=np.float32)
        if far_d.max() > 0:
            far = np.argpartition(far_d, -empty.size)[: -empty.size - 1: -1]  # the farthest samples, farthest first
            for j, i in zip(empty, far):
                sums[labels[i]] -= x[i]
                counts[labels[i]] -= 1
                sums[j] = x[i]
                counts[j] = 1
    biggest = int(np.argmax(counts))
    out = sums.copy()
    for j in range(k):
        if counts[j] > 0:
            out[j] = sums[j] * (np.float32(1.0) / counts[j])
        else:  # sklearn parks a still-empty cluster on the biggest one
            out[j] = out[biggest]
    return out


def release_track(samples: list[np.ndarray], k_unscaled: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One object's K-means centres over a clip, as the release computes them.

    samples: per frame, (n_f, 2) (row, col) of every 10th mask pixel in row-major order. A frame with fewer samples
    than ``k_unscaled`` (K before the scale factor) gets no points, as in the release; one with fewer than the
    scaled ``k`` none either (the release's sklearn call raises there). Returns centres (F, k, 2) float32 (row, col)
    and visibility (F,).
    """
    num_frames = len(samples)
    out = np.zeros((num_frames, k, 2), dtype=np.float32)
    visible = np.zeros(num_frames, dtype=bool)
    stored: np.ndarray | None = None
    for f, s in enumerate(samples):
        s = np.asarray(s, dtype=np.float32)
        if s.shape[0] < k_unscaled or s.shape[0] < k:
            continue
        if stored is None:
            stored = kmeans32(s, even_samples(s, k))
        elif not all(bool((s == point).any()) for point in stored):  # NumPy's `point in s`
            stored = even_samples(s, k)
        out[f] = kmeans32(s, stored)
        visible[f] = True
    return out, visible
