"""The release's K-means (levitor.control.release_kmeans) against scikit-learn, which the release runs, and the
release's init across frames as REFERENCE.md states it."""

import warnings

import numpy as np
import pytest
import torch

from levitor._util.jit import HAVE_NUMBA
from levitor.control import release_kmeans
from levitor.control.krule import KRule
from levitor.control.points import control_from_masks
from levitor.control.release_kmeans import even_samples, kmeans32, release_track

sklearn = pytest.importorskip("sklearn.cluster")
threadpoolctl = pytest.importorskip("threadpoolctl")


def _sklearn(samples, init, threads=1):
    with threadpoolctl.threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's "explicit initial center position passed" notice
        return sklearn.KMeans(n_clusters=len(init), init=init).fit(samples).cluster_centers_


def _blob_samples(rng, H=96, W=128):
    yy, xx = np.mgrid[0:H, 0:W]
    m = np.zeros((H, W), bool)
    for _ in range(rng.integers(1, 4)):
        m |= (((yy - rng.uniform(8, H - 8)) / rng.uniform(4, 30)) ** 2
              + ((xx - rng.uniform(8, W - 8)) / rng.uniform(4, 45)) ** 2) < 1
    return np.stack(np.nonzero(m), 1).astype(np.float32)[:: int(rng.choice([1, 10]))]  # (row, col), row-major


def _cases(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s = _blob_samples(rng)
        k = int(rng.integers(1, 25))
        if len(s) < k:
            continue
        init = even_samples(s, k)
        if rng.random() < 0.3:  # off-grid starts too (the release's later frames start from converged centres)
            init = init + rng.normal(0, 3, init.shape).astype(np.float32)
        out.append((s, init))
    return out


def test_kmeans32_is_sklearn_float_for_float_on_one_thread():
    cases = _cases(120)
    same = sum(int(np.array_equal(kmeans32(s, init), _sklearn(s, init))) for s, init in cases)
    assert same == len(cases)  # every centre bit-equal: the same arithmetic in the same order


def test_kmeans32_against_multithreaded_sklearn_same_pixel_or_within_one():
    # with several threads sklearn adds per-thread partial sums: centres move by float rounding, so a truncated
    # point can land one pixel over (measured: 4 of 3678 points on a 2-core machine; the rest the same pixel)
    pixel_same = total = 0
    for s, init in _cases(60, seed=1):
        got, ref = kmeans32(s, init).astype(int), _sklearn(s, init, threads=None).astype(int)
        off = np.abs(got - ref).max(1)
        assert off.max() <= 1
        pixel_same += int((off == 0).sum())
        total += len(off)
    assert pixel_same >= 0.98 * total


def test_compiled_and_reference_loops_agree_and_an_empty_cluster_is_relocated_as_sklearn_does():
    for s, init in _cases(40, seed=2):
        assert np.array_equal(kmeans32(s, init, use_kernel=True), kmeans32(s, init, use_kernel=False))
    s = _blob_samples(np.random.default_rng(3))
    init = np.concatenate([even_samples(s, 3), [[5000.0, 5000.0]]]).astype(np.float32)  # a centre nobody picks
    assert np.array_equal(kmeans32(s, init), _sklearn(s, init))
    with pytest.raises(ValueError, match="at least as many samples"):
        kmeans32(s[:2], even_samples(s, 3))


def _grid_cases(n, seed):
    """Row-major samples of rectangles (every 1st, 3rd or 10th pixel), as the release's: exact ties everywhere; some
    inits far off (stale), so that clusters empty and are relocated."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(5, 60, 2)
        r0, c0 = rng.integers(0, 200, 2)
        rows, cols = np.mgrid[r0:r0 + h, c0:c0 + w]
        s = np.stack([rows.ravel(), cols.ravel()], 1).astype(np.float32)[:: int(rng.choice([1, 3, 10]))]
        k = int(rng.integers(1, min(25, len(s)) + 1))
        init = even_samples(s, k)
        if rng.random() < 0.4:
            init = init + rng.normal(0, 40, init.shape).astype(np.float32)
            init[: max(1, k // 3)] += 500
        out.append((s, init))
    return out


@pytest.mark.skipif(not HAVE_NUMBA, reason="compares the compiled loop with the NumPy reference")
def test_the_vectorised_compiled_loop_is_the_reference_bit_for_bit_on_grids_ties_and_emptied_clusters():
    # the compiled loop assigns centre by centre over all samples (vectorised); exact ties on the pixel grid go to
    # the first centre; an emptied cluster is relocated in NumPy and the loop resumes
    cases = _grid_cases(150, seed=4) + _cases(60, seed=5)
    emptied = 0
    for s, init in cases:
        assert np.array_equal(kmeans32(s, init), kmeans32(s, init, use_kernel=False))
        x = s - s.mean(0)
        emptied += int(np.any(np.bincount(np.argmin(((x[:, None] - (init - s.mean(0))[None]) ** 2).sum(-1), 1),
                                          minlength=len(init)) == 0))
    assert emptied > 20  # the relocation path ran


@pytest.mark.skipif(not HAVE_NUMBA, reason="the compiled moments")
def test_compiled_moments_are_numpys_mean_and_variance():
    rng = np.random.default_rng(3)
    for t in range(300):
        n = int(rng.integers(1, 9000))
        x = (rng.normal(150, 60, (n, 2)) if t % 2 else rng.integers(0, 512, (n, 2))).astype(np.float32)
        mean, var_mean = release_kmeans._moments32(x)
        assert np.array_equal(mean, x.mean(axis=0)) and var_mean == np.mean(np.var(x, axis=0))


def test_stored_init_check_is_numpys_in():
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = rng.integers(0, 20, (int(rng.integers(1, 30)), 2)).astype(np.float32)
        stored = (rng.integers(0, 25, (int(rng.integers(1, 9)), 2)) + rng.choice([0, 0.5], (1, 2))).astype(np.float32)
        assert release_kmeans._stored_init_found(s, stored) == all(bool((s == p).any()) for p in stored)


def _grid(rows, cols):
    r, c = np.meshgrid(np.asarray(rows, np.float32), np.asarray(cols, np.float32), indexing="ij")
    return np.stack([r.ravel(), c.ravel()], 1)


def test_release_track_init_across_frames_as_the_release_runs_it():
    k = 3
    f0 = _grid(range(10, 30), range(10, 40))
    f1 = _grid(range(50, 70), range(60, 90))  # shares no row or column with frame 0's float centres
    f2 = f1 + np.float32([0.0, 7.0])  # every stale frame-1 sample still shares a row with some sample here
    f3 = f1 + np.float32([5.0, 100.0])  # one of them shares neither a row nor a column: re-initialise
    tiny = f0[:2]  # fewer samples than K: no points, the stored init untouched
    frames = [f0, f1, tiny, f2, f3]
    centres, visible = release_track(frames, k_unscaled=k, k=k)
    assert visible.tolist() == [True, True, False, True, True]

    # expected, written from REFERENCE.md with sklearn itself
    stored = _sklearn(f0, even_samples(f0, k))  # first frame: even samples, converged centres stored ...
    expected = [_sklearn(f0, stored)]  # ... and fitted again from them
    assert not any((f1 == p).any() for p in stored)  # NumPy `in` fails for frame 1's centres ...
    stored = even_samples(f1, k)  # ... so frame 1 starts from its own even samples, which are stored (stale)
    expected.append(_sklearn(f1, stored))
    assert all((f2 == p).any() for p in stored)  # `in`: some sample has the same row (or column)
    expected.append(_sklearn(f2, stored))  # frame 2 keeps frame 1's samples as its init
    assert not all((f3 == p).any() for p in stored)
    expected.append(_sklearn(f3, even_samples(f3, k)))
    for got, want in zip(centres[[0, 1, 3, 4]], expected):
        assert np.array_equal(got, want)


def test_release_track_with_a_cache_gives_the_same_centres_and_reuses_unchanged_fits(monkeypatch):
    rng = np.random.default_rng(7)
    frames = [_grid(range(10 + f, 30 + f), range(10, 40 + 2 * f)) for f in range(5)]
    cache: dict = {}
    want = release_track(frames, 3, 4)
    fits = []
    real = release_kmeans.kmeans32
    monkeypatch.setattr(release_kmeans, "kmeans32", lambda s, i: fits.append(len(s)) or real(s, i))
    for got in (release_track(frames, 3, 4, cache=cache), release_track(frames, 3, 4, cache=cache)):
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert len(fits) == 6  # frame 0 twice, then one fit a frame; the second call: all from the cache
    frames[3] = frames[3] + np.float32(rng.integers(1, 3))  # an edit that changes frame 3 only
    got = release_track(frames, 3, 4, cache=cache)
    assert all(np.array_equal(g, w) for g, w in zip(got, release_track(frames, 3, 4)))
    # frame 3 fitted again, and frame 4 where its init comes from frame 3's samples (then the uncached reference: 6)
    assert len(fits) - 6 - 6 in (1, 2)


def test_release_kmeans_checks_the_sample_count_against_k_before_the_scale_factor():
    # one object, 3 frames of 2, 40 and 40 sampled pixels (stride 1); moved: K = 3 before scale 0.5, 1 after
    H, W = 40, 40
    inst = torch.zeros(3, H, W, dtype=torch.int64)
    inst[0, 0, :2] = 1
    inst[1:, 10:14, 10:20] = 1
    depth = torch.full((3, H, W), 0.5)
    rule = KRule(scale=0.5)
    for init, frame0 in (("release", False), ("warm", True)):
        sig = control_from_masks(inst, depth, moved_ids=[1], rule=rule, init=init, sample_stride=1)
        assert sig.num_points == 1  # K = max(1, int(3 * 0.5))
        assert sig.visible[:, 0].tolist() == [frame0, True, True]  # release: 2 samples < unscaled K = 3
