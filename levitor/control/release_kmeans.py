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

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from levitor._util.hashing import bytes_hash
from levitor._util.jit import jit, numba_on
from levitor._util.threads import parallel_map
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

    samples: (n, d) with n >= k; init: (k, d). Returns (k, d) float32. ``use_kernel``: the compiled loop (the same
    arithmetic; for 2-D samples vectorised, :func:`_lloyd32_sweep`) when numba is installed.
    """
    x = np.array(samples, dtype=np.float32, order="C")
    c = np.array(init, dtype=np.float32, order="C")
    n, k = x.shape[0], c.shape[0]
    if n < k:
        raise ValueError(f"{n} samples for {k} clusters; K-means needs at least as many samples as clusters")
    if use_kernel and numba_on() and x.shape[1] == 2:
        mean, var_mean = _moments32(x)  # NumPy's values (its axis-0 sums run row after row), 20x faster here
        x -= mean
        c -= mean
        return _kmeans32_compiled(x, c, max_iter, np.float32(var_mean * tol)) + mean
    tol_abs = np.mean(np.var(x, axis=0)) * tol  # on the data as given, before centring (as sklearn)
    mean = x.mean(axis=0)
    x -= mean
    c -= mean
    if use_kernel and numba_on():
        fast = c.copy()
        if kernels.lloyd32(x, fast, max_iter, np.float32(tol_abs), np.empty(n, dtype=np.int64)) >= 0:
            return fast + mean
    labels_old = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        labels, _ = _assign(x, c)
        sums, counts = _sums(x, labels, k)
        c, stop = _step(x, c, labels, labels_old, sums, counts, tol_abs)
        if stop:
            break
        labels_old = labels
    return c + mean


def _moments32_loop(x, mean):
    """``x.mean(axis=0)`` into mean and ``np.mean(np.var(x, axis=0))``, for 2-D float32 samples, in NumPy's order:
    an axis-0 sum of a C-ordered array adds row after row in float32; each sum is divided by n in float32."""
    n = x.shape[0]
    f32 = np.float32
    s0 = f32(0.0)
    s1 = f32(0.0)
    for i in range(n):
        s0 += x[i, 0]
        s1 += x[i, 1]
    m0 = s0 / f32(n)
    m1 = s1 / f32(n)
    q0 = f32(0.0)
    q1 = f32(0.0)
    for i in range(n):
        d0 = x[i, 0] - m0
        d1 = x[i, 1] - m1
        q0 += d0 * d0
        q1 += d1 * d1
    mean[0] = m0
    mean[1] = m1
    return (q0 / f32(n) + q1 / f32(n)) / f32(2.0)


_moments32_loop = jit(_moments32_loop)


def _moments32(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    mean = np.empty(2, dtype=np.float32)
    var_mean = np.float32(_moments32_loop(x, mean))
    return mean, var_mean


def _kmeans32_compiled(x: np.ndarray, c: np.ndarray, max_iter: int, tol_abs: np.float32) -> np.ndarray:
    """The Lloyd loop compiled; an iteration that empties a cluster is finished here (sklearn relocates it to the
    farthest sample, in NumPy's argpartition order), and the loop resumes from the new centres."""
    n, k = x.shape[0], c.shape[0]
    labels = np.empty(n, dtype=np.int32)
    labels_old = np.full(n, -1, dtype=np.int32)
    sums = np.empty((k, 2), dtype=np.float32)
    counts = np.empty(k, dtype=np.float32)
    done = 0
    while done < max_iter:
        it = _lloyd32_sweep(x, c, max_iter - done, tol_abs, labels, labels_old, sums, counts)
        if it >= 0:
            break
        done += -it
        c, stop = _step(x, c, labels, labels_old, sums, counts, tol_abs)
        if stop:
            break
        labels_old[:] = labels
    return c


def _step(x, c, labels, labels_old, sums, counts, tol_abs) -> tuple[np.ndarray, bool]:
    """The rest of one Lloyd iteration from its labels and sums: the new centres, and whether sklearn stops here
    (no label changed, or the summed squared centre shift is at most tol_abs)."""
    new = _centres(x, c, labels, sums, counts)
    shift = np.sqrt(((new - c) ** 2).sum(axis=1, dtype=np.float32))  # float32, per centre
    stop = bool(np.array_equal(labels, labels_old)) or bool((shift**2).sum(dtype=np.float32) <= tol_abs)
    return new, stop


def _assign_sweep(x0, x1, c, c_norm, best, labels):
    """Every sample's nearest centre by sklearn's float32 formula |c|^2 - 2 x.c (the first of equals), into labels;
    x0, x1: the samples' coordinates as arrays. Centre after centre over all samples: the inner loop has no
    dependence from sample to sample, so the compiler vectorises it (every sample against 8 centres costs less than
    skipping the scans whose answer is certain did, from K = 8 to 64: measured 2026-12-06)."""
    f32 = np.float32
    n = x0.shape[0]
    for i in range(n):
        best[i] = np.inf
        labels[i] = 0
    for j in range(c.shape[0]):
        c0 = c[j, 0]
        c1 = np.float64(c[j, 1])
        cn = c_norm[j]
        for i in range(n):
            dot = f32(np.float64(x0[i] * c0) + np.float64(x1[i]) * c1)  # one rounding of the second term (BLAS)
            dist = cn + f32(-2.0) * dot
            if dist < best[i]:  # strict: the first of equal centres keeps the sample, as sklearn's scan
                best[i] = dist
                labels[i] = j


_assign_sweep = jit(_assign_sweep, inline=True)


def _cluster_sums(x, labels, sums, counts):
    """Each cluster's sums (float32) and counts in sample order; a run of one label stays in registers."""
    f32 = np.float32
    sums[:] = 0
    counts[:] = 0
    run = -1
    acc0 = acc1 = cnt = f32(0.0)
    for i in range(x.shape[0]):
        lab = labels[i]
        if lab != run:
            if run >= 0:
                sums[run, 0], sums[run, 1], counts[run] = acc0, acc1, cnt
            run = lab
            acc0, acc1, cnt = sums[lab, 0], sums[lab, 1], counts[lab]
        cnt += f32(1.0)
        acc0 += x[i, 0]
        acc1 += x[i, 1]
    if run >= 0:
        sums[run, 0], sums[run, 1], counts[run] = acc0, acc1, cnt


_cluster_sums = jit(_cluster_sums, inline=True)


def _lloyd32_sweep(x, c, max_iter, tol_abs, labels, labels_old, sums, counts):
    """sklearn's Lloyd iterations in float32 on centred 2-D samples, in place on the centres c: the arithmetic of
    :func:`levitor.control.kernels.lloyd32` (the same labels, sums and stopping, bit for bit), with the assignment
    vectorised (:func:`_assign_sweep`). labels, labels_old: int32 work arrays, labels_old the labels of the
    iteration before (-1 at the start).

    Returns the number of iterations run when sklearn's rule stops (or max_iter is reached); -i when iteration i
    empties a cluster, with c unchanged and that iteration's labels, sums and counts filled (the caller relocates
    it and calls again)."""
    f32 = np.float32
    n = x.shape[0]
    k = c.shape[0]
    x0 = np.empty(n, dtype=np.float32)
    x1 = np.empty(n, dtype=np.float32)
    for i in range(n):
        x0[i] = x[i, 0]
        x1[i] = x[i, 1]
    best = np.empty(n, dtype=np.float32)
    c_norm = np.empty(k, dtype=np.float32)
    for it in range(max_iter):
        for j in range(k):
            c_norm[j] = f32(f32(0.0) + c[j, 0] * c[j, 0]) + c[j, 1] * c[j, 1]
        _assign_sweep(x0, x1, c, c_norm, best, labels)
        changed = 0
        for i in range(n):
            changed += labels[i] != labels_old[i]
        _cluster_sums(x, labels, sums, counts)
        for j in range(k):
            if counts[j] == 0:
                return -(it + 1)
        shift_tot = f32(0.0)
        for j in range(k):
            shift_tot += kernels.move_centre(c, sums, counts, j)
        if changed == 0 or shift_tot <= tol_abs:
            return it + 1
        labels_old[:] = labels
    return max_iter


_lloyd32_sweep = jit(_lloyd32_sweep)


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


def _sums(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums in sample order (float32) and counts."""
    sums = np.zeros((k, x.shape[1]), dtype=np.float32)
    counts = np.zeros(k, dtype=np.float32)
    np.add.at(sums, labels, x)  # unbuffered, one sample after another
    np.add.at(counts, labels, np.float32(1.0))
    return sums, counts


def _centres(x: np.ndarray, old: np.ndarray, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The M step from the sums: empty clusters relocated, then times 1 / count."""
    sums, counts, k = sums.copy(), counts.copy(), old.shape[0]
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


def _all_in(samples, points):
    """NumPy's ``point in samples`` for every point: some sample equals it in some coordinate (row or column)."""
    for p in range(points.shape[0]):
        found = False
        for i in range(samples.shape[0]):
            if samples[i, 0] == points[p, 0] or samples[i, 1] == points[p, 1]:
                found = True
                break
        if not found:
            return False
    return True


_all_in = jit(_all_in)


def release_track(samples: list[np.ndarray], k_unscaled: int, k: int, cache: dict | None = None,
                  track: object = None) -> tuple[np.ndarray, np.ndarray]:
    """One object's K-means centres over a clip, as the release computes them.

    samples: per frame, (n_f, 2) (row, col) of every 10th mask pixel in row-major order. A frame with fewer samples
    than ``k_unscaled`` (K before the scale factor) gets no points, as in the release; one with fewer than the
    scaled ``k`` none either (the release's sklearn call raises there). Returns centres (F, k, 2) float32 (row, col)
    and visibility (F,). ``cache``: a dict kept by the caller across calls, where each fit is kept by its samples
    and init (an edit leaves most frames of most objects as they were; the answer is the same without it);
    ``track``: a name for this object there, under which its last fits are kept by frame and compared in place
    (cheaper than hashing every frame's samples again).
    """
    return release_tracks([TrackJob(samples, k_unscaled, k, track)], cache)[0]


@dataclass
class TrackJob:
    """One object's samples per frame and its K (before and after the scale factor) for :func:`release_tracks`;
    ``track``: its name in the cache (see :func:`release_track`)."""

    samples: list[np.ndarray]
    k_unscaled: int
    k: int
    track: object = None
    frames: list[np.ndarray | None] = field(default_factory=list)  # float32 samples of the frames with points
    seed: tuple | None = None  # the first frame's first fit: (samples, init, centres or None until fitted)


def release_tracks(jobs: list[TrackJob], cache: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`release_track` of several objects, their fits on the worker threads together (largest first).

    Each frame's init depends only on the samples and on the first frame's first fit: so the first fits of all
    objects run first, then every other fit at once."""
    fits = _fits(cache)
    held = [_last(cache, job) for job in jobs]
    seeds = []
    for job, last in zip(jobs, held):
        job.frames = [_usable(s, job) for s in job.samples]
        first = next((s for s in job.frames if s is not None), None)
        if first is not None:
            init = even_samples(first, job.k)
            job.seed = (first, init, _same_fit(last.get(-1), first, init))
            if job.seed[2] is None:
                seeds.append(job)
    for job, centres in zip(seeds, _fit_all([job.seed[:2] for job in seeds], fits)):
        job.seed = (*job.seed[:2], centres)
    plans, todo = [], []
    for b, (job, last) in enumerate(zip(jobs, held)):
        out = np.zeros((len(job.samples), job.k, 2), dtype=np.float32)
        now = {-1: job.seed} if job.seed is not None else {}  # frame (-1: the seed fit) -> (samples, init, centres)
        stored = job.seed[2] if job.seed is not None else None
        first = True
        for f, s in enumerate(job.frames):
            if s is None:
                continue
            if not first and not _stored_init_found(s, stored):
                stored = even_samples(s, job.k)
            first = False
            centres = _same_fit(last.get(f), s, stored)
            if centres is None:
                todo.append((b, f, s, stored))
            else:
                out[f], now[f] = centres, (s, stored, centres)
        plans.append((out, now))
    for (b, f, s, init), centres in zip(todo, _fit_all([(s, init) for _, _, s, init in todo], fits)):
        out, now = plans[b]
        out[f], now[f] = centres, (s, init, centres.copy())
    result = []
    for job, (out, now) in zip(jobs, plans):
        if cache is not None and job.track is not None:
            cache[("release last fits", job.track, job.k)] = now
        result.append((out, np.array([s is not None for s in job.frames], dtype=bool)))
    return result


def _usable(s: np.ndarray, job: TrackJob) -> np.ndarray | None:
    """A frame's samples as float32, or None where it gets no points (too few samples for K)."""
    s = np.ascontiguousarray(s, dtype=np.float32)
    return None if s.shape[0] < job.k_unscaled or s.shape[0] < job.k else s


def _last(cache: dict | None, job: TrackJob) -> dict:
    if cache is None or job.track is None:
        return {}
    return cache.get(("release last fits", job.track, job.k), {})


def _same_fit(fit: tuple[np.ndarray, np.ndarray, np.ndarray] | None, samples: np.ndarray,
              init: np.ndarray) -> np.ndarray | None:
    """The centres of an earlier fit of the same samples from the same init, or None."""
    if fit is None or not np.array_equal(fit[1], init) or not np.array_equal(fit[0], samples):
        return None
    return fit[2]


FIT_CACHE_SIZE = 4096  # fits kept (a few hundred bytes each): a few edits of a scene with dozens of objects


def _fits(cache: dict | None) -> OrderedDict | None:
    if cache is None:
        return None
    return cache.setdefault("release fits", OrderedDict())


def _fit_key(samples: np.ndarray, init: np.ndarray) -> str:
    init = np.ascontiguousarray(init, dtype=np.float32)
    return bytes_hash(b"%d|" % len(init) + init.tobytes() + samples.tobytes())


def _fit_all(jobs: list[tuple[np.ndarray, np.ndarray]], fits: OrderedDict | None) -> list[np.ndarray]:
    """kmeans32 of every (samples, init) on the worker threads (the largest first, so they finish together); each
    looked up in ``fits`` first and a new one kept there (least recently used dropped first). The key is hashed on
    the worker too: hashing every fit's samples costs a tenth of fitting them."""
    lock = threading.Lock()

    def fit(q: int) -> np.ndarray:
        samples, init = jobs[q]
        key = _fit_key(samples, init) if fits is not None else None
        if key is not None:
            with lock:
                held = fits.get(key)
                if held is not None:
                    fits.move_to_end(key)
                    return held.copy()
        centres = kmeans32(samples, init)
        if key is not None:
            with lock:
                fits[key] = centres.copy()
                if len(fits) > FIT_CACHE_SIZE:
                    fits.popitem(last=False)
        return centres

    order = sorted(range(len(jobs)), key=lambda q: -len(jobs[q][0]))
    out: list[np.ndarray | None] = [None] * len(jobs)
    for q, centres in zip(order, parallel_map(fit, order)):
        out[q] = centres
    return out


def _stored_init_found(samples: np.ndarray, stored: np.ndarray) -> bool:
    """The release's check ``all(point in samples for point in stored)``, NumPy's ``in``: (samples == point).any()."""
    if numba_on():
        return bool(_all_in(np.ascontiguousarray(samples, np.float32), np.ascontiguousarray(stored, np.float32)))
    return all(bool((samples == point).any()) for point in stored)
