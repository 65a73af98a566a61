"""The K rule, K-means against sklearn, and control points from video masks."""

import numpy as np
import pytest
import torch

from levitor._util.jit import HAVE_NUMBA
from levitor.control.krule import KRule
from levitor.control.points import control_from_masks, kmeans, release_init


@pytest.mark.parametrize("areas, moved, expected", [
    ([1000] * 4, False, 1),            # round(1000 * 50 / 100000) = round(0.5) = 0 -> at least 1
    ([10000] * 4, False, 5),           # 10% of the image -> 5
    ([40000] * 4, False, 8),           # 20 -> capped at 8
    ([4000] * 4, True, 3),             # moved objects get at least 3
    ([10000, 900, 5000, 10000], False, 5),  # ratio 11.1 > 10 -> >= 3 (already 5)
    ([3000, 200, 3000, 3000], False, 3),    # ratio 15 > 10 -> 3
    ([3000, 301, 3000, 3000], False, 2),    # ratio 9.97 -> round(1.5) = 2
    ([3000, 0, 3000, 3000], False, 3),      # vanishes -> 3
    ([0, 0, 0, 0], True, 0),                # never visible -> no points
])
def test_k_rule_defaults(areas, moved, expected):
    assert KRule()(areas, 100000, moved=moved) == expected


@pytest.mark.parametrize("scale, expected", [(0.25, 1), (0.5, 2), (1.0, 5), (2.0, 10), (8.0, 40), (1.3, 6)])
def test_k_rule_scale_applies_after_the_cap(scale, expected):
    assert KRule(scale=scale)([10000], 100000) == expected


def test_k_rule_parameters():
    assert KRule(lam=100)([10000], 100000) == 8
    assert KRule(k_max=4)([40000], 100000) == 4
    assert KRule(k_min=5)([1000], 100000, moved=True) == 5
    with pytest.raises(ValueError, match="scale"):
        KRule(scale=0)([100], 1000)


def test_release_init_indices():
    s = torch.arange(20, dtype=torch.float64)[:, None].repeat(1, 2)
    np.testing.assert_array_equal(release_init(s, 3)[:, 0].numpy(), [3, 9, 15])  # L = 6: 3, 9, 15


def _blobs(seed, n=900):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 300, (4, 2))
    return np.concatenate([rng.normal(c, rng.uniform(5, 30), (n // 4, 2)) for c in centres])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_kmeans_matches_sklearn_inertia(seed, k):
    sklearn = pytest.importorskip("sklearn.cluster")
    x = _blobs(seed)
    init = release_init(torch.from_numpy(x), k).numpy()
    ref = sklearn.KMeans(n_clusters=k, init=init, n_init=1).fit(x)
    _, labels, inertia = kmeans(torch.from_numpy(x)[None], torch.ones(1, len(x), dtype=torch.bool),
                                torch.from_numpy(init)[None], torch.ones(1, k, dtype=torch.bool), return_labels=True)
    assert float(inertia[0]) <= ref.inertia_ * 1.02
    assert float(inertia[0]) >= ref.inertia_ * 0.98
    assert labels.shape == (1, len(x)) and int(labels.max()) < k


def test_kmeans_batched_padding_is_ignored():
    x1, x2 = _blobs(1, 400), _blobs(2, 800)
    x = torch.zeros(2, 800, 2, dtype=torch.float64)
    x[0, :400], x[1] = torch.from_numpy(x1), torch.from_numpy(x2)
    valid = torch.zeros(2, 800, dtype=torch.bool)
    valid[0, :400], valid[1] = True, True
    init = torch.stack([release_init(x[0, :400], 3), release_init(x[1], 3)])
    c, labels, _inertia = kmeans(x, valid, init, torch.ones(2, 3, dtype=torch.bool), return_labels=True)
    c0, _, _i0 = kmeans(x[:1, :400], valid[:1, :400], init[:1], torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(c[0], c0[0], atol=1e-9, rtol=0)  # float64: padding changes only the sum's order
    assert bool((labels[0, 400:] == -1).all())


def test_control_from_video_masks():
    F, H, W = 5, 40, 60
    inst = torch.zeros(F, H, W, dtype=torch.int64)
    depth = torch.full((F, H, W), 0.5)
    for f in range(F):
        inst[f, 10:30, 5 + 5 * f: 25 + 5 * f] = 3  # a square moving right
        depth[f, 10:30, 5 + 5 * f: 25 + 5 * f] = 0.1
    inst[:, 0:5, :] = 7  # a static strip
    sig = control_from_masks(inst, depth, moved_ids=[3])
    assert sig.points.shape[0] == F and sig.height == H and sig.width == W
    assert sig.points_per_object() == {3: 8, 7: 6}  # 400 / 2400 * 50 = 8.3 -> 8; 300 / 2400 * 50 = 6.25 -> 6
    assert bool(sig.visible.all())
    assert torch.all(sig.depth[:, sig.instance == 3] == 10.0)  # round(1 / 0.1)
    assert torch.all(sig.depth[:, sig.instance == 7] == 2.0)
    # the points follow the square
    mean_x = sig.points[:, sig.instance == 3, 0].mean(1)
    torch.testing.assert_close(mean_x[1:] - mean_x[:-1], torch.full((F - 1,), 5.0), atol=0.6, rtol=0)


def test_small_masks_get_no_points_in_that_frame():
    inst = torch.zeros(2, 30, 30, dtype=torch.int64)
    inst[0, :10, :10] = 1
    inst[1, 0, 0:15] = 1  # 15 pixels -> 2 samples at stride 10 < K = 3
    sig = control_from_masks(inst, torch.full((2, 30, 30), 0.5), moved_ids=[1])
    assert sig.visible[0].all() and not sig.visible[1].any()
    assert torch.all(sig.depth[1] == 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(F, H, W\)"):
        control_from_masks(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="one shape"):
        control_from_masks(torch.zeros(2, 4, 4, dtype=torch.int64), torch.zeros(2, 4, 5))
    sig = control_from_masks(torch.zeros(2, 8, 8, dtype=torch.int64), torch.ones(2, 8, 8))
    assert sig.num_points == 0 and sig.points.shape == (2, 0, 2)


def test_k_rule_of_a_clip():
    image_area = 320 * 512
    assert KRule()([16384] * 3, image_area) == 5  # 16384 / 163840 * 50 = 5
    assert KRule(scale=0.25)([16384, 0, 100], image_area) == 1
    assert KRule(scale=2)([1000], image_area, moved=True) == 6


def test_compiled_kmeans_matches_torch():

    if not HAVE_NUMBA:
        pytest.skip("numba not installed: only the torch K-means runs")
    x = torch.from_numpy(np.stack([_blobs(s, 600) for s in range(3)]))
    valid = torch.ones(3, 600, dtype=torch.bool)
    valid[1, 450:] = False
    init = torch.stack([release_init(x[b][valid[b]], 5) for b in range(3)])
    kv = torch.ones(3, 5, dtype=torch.bool)
    kv[2, 3:] = False
    a = kmeans(x, valid, init, kv, use_kernel=True)
    b = kmeans(x, valid, init, kv, use_kernel=False)
    torch.testing.assert_close(a[2], b[2], rtol=1e-12, atol=0)
    torch.testing.assert_close(a[0][kv], b[0][kv], rtol=0, atol=1e-9)  # the same float64 steps, other sum orders
    # on pixel coordinates (whole numbers: every sum exact in any order) the two are bit-identical
    xi, ii = x.round(), init.round()
    a, b = kmeans(xi, valid, ii, kv, use_kernel=True), kmeans(xi, valid, ii, kv, use_kernel=False)
    assert torch.equal(a[0][kv], b[0][kv])


def test_cache_reuses_untouched_objects_and_gives_the_same_answer():
    """An edit that moves one object: with the engine's cache the others are reused, and every point is what
    a cold computation gives."""
    F, H, W = 6, 48, 64
    inst = torch.zeros(F, H, W, dtype=torch.int64)
    inst[:, :20, :] = 1  # a static "sky"
    inst[:, 30:44, 5:25] = 2  # a static box
    depth = torch.full((F, H, W), 0.5)

    def with_mover(dx: int) -> torch.Tensor:
        out = inst.clone()
        for f in range(F):
            out[f, 22:30, 30 + f * dx: 40 + f * dx] = 3
        return out

    cache: dict = {}
    first = control_from_masks(with_mover(2), depth, moved_ids=[3], cache=cache, sample_stride=1)
    if HAVE_NUMBA:  # the compiled path keeps whole tracks; the torch one first frames only
        assert any(isinstance(k, tuple) and k[0] == "track" for k in cache)
    assert cache
    second = control_from_masks(with_mover(3), depth, moved_ids=[3], cache=cache, sample_stride=1)
    cold = control_from_masks(with_mover(3), depth, moved_ids=[3], sample_stride=1)
    torch.testing.assert_close(second.points, cold.points, rtol=0, atol=0)
    torch.testing.assert_close(second.visible, cold.visible)
    static = second.instance < 3
    torch.testing.assert_close(second.points[:, static], first.points[:, static], rtol=0, atol=0)
    assert not torch.equal(second.points[:, ~static], first.points[:, ~static])  # the mover's points moved on




def test_every_empty_cluster_moves_in_order_to_the_farthest_sample_on_both_paths():
    """Two centres start far from every sample: both empty at once; each moves, in centre order, to the sample
    farthest from its centre (the torch path used to move only the first and keep the other in place)."""
    x = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [20.0, 20.0], [20.0, 21.0], [40.0, 0.0]]],
                     dtype=torch.float64)
    valid = torch.ones(1, 6, dtype=torch.bool)
    init = torch.tensor([[[1.0, 1.0], [900.0, 900.0], [950.0, 950.0]]], dtype=torch.float64)
    kv = torch.ones(1, 3, dtype=torch.bool)
    one = kmeans(x, valid, init, kv, max_iter=1, use_kernel=False)[0][0]  # after one step
    assert one.tolist() == [[x[0, :, 0].mean().item(), x[0, :, 1].mean().item()], [40.0, 0.0], [20.0, 21.0]]
    plain = kmeans(x, valid, init, kv, use_kernel=False)[0][0]
    assert plain.tolist() == [[1 / 3, 1 / 3], [40.0, 0.0], [20.0, 20.5]]
    if HAVE_NUMBA:
        assert torch.equal(kmeans(x, valid, init, kv, max_iter=1, use_kernel=True)[0][0], one)
        assert torch.equal(kmeans(x, valid, init, kv, use_kernel=True)[0][0], plain)
