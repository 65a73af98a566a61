"""The conditioning tensor must match the official release bit for bit (REFERENCE.md)."""

import numpy as np
import pytest
import torch

from levitor.control.encode import DEPTH, GAUSSIAN_RADIUS, HEATMAP, INSTANCE, encode, gaussian_template, stamp
from levitor.control.signal import ControlSignal


def signal_of(points, ids, depths, H=64, W=80, visible=None):
    pts = torch.tensor(points, dtype=torch.float32)[None]  # one frame
    vis = torch.ones(pts.shape[:2], dtype=torch.bool) if visible is None else torch.tensor([visible])
    return ControlSignal(pts, torch.tensor([depths], dtype=torch.float32), torch.tensor(ids), vis, H, W)


def reference_draw(points, ids, depths, H, W, r=GAUSSIAN_RADIUS):
    """The release's drawing, written naively with OpenCV (the library the release uses)."""
    cv2 = pytest.importorskip("cv2")
    out = np.zeros((3, H, W), np.float32)
    for (x, y), i, d in zip(points, ids, depths):
        x, y = int(x), int(y)
        if not (0 <= x < W and 0 <= y < H):
            continue
        c0, c1 = min(max(x - r, 1), W - 1), min(max(x + r, 1), W - 1)
        r0, r1 = min(max(y - r, 1), H - 1), min(max(y + r, 1), H - 1)
        if c1 <= c0 or r1 <= r0:
            continue
        st = cv2.resize(gaussian_template(), (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        out[0, r0:r1, c0:c1] = st
        out[1, r0:r1, c0:c1] = i * (st > 0)
        out[2, r0:r1, c0:c1] = d * (st > 0)
    return out


def test_template_facts():
    t = gaussian_template()
    assert t.shape == (200, 200) and t.dtype == np.uint8
    assert t[100, 100] == 255 and t[100, 0] == 11 and t[0, 0] == 0


def test_unclipped_stamp_matches_reference_facts():
    s = stamp(20, 20)
    assert s.max() == 251
    assert (s == 251)[9:11, 9:11].sum() >= 3 and s[9:11, 9:11].min() >= 250
    assert int((s == 0).sum()) == 80
    assert s[0, 0] == 0 and s[0, 9] > 0  # corners cut by the disc, edges kept


def test_all_clipped_stamps_match_opencv():
    cv2 = pytest.importorskip("cv2")
    for h in range(1, 21):
        for w in range(1, 21):
            ref = cv2.resize(gaussian_template(), (w, h), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(stamp(h, w), ref, err_msg=f"stamp {h}x{w}")


def test_single_point_exact_pixels():
    x, y = 30.7, 20.2  # truncated to (30, 20)
    enc = encode(signal_of([[x, y]], [3], [17.0]))
    assert enc.shape == (1, 3, 64, 80) and enc.dtype == torch.float32
    s = torch.from_numpy(stamp(20, 20).astype(np.float32))
    torch.testing.assert_close(enc[0, HEATMAP, 10:30, 20:40], s)
    assert enc[0, HEATMAP, 20, 30] == s[10, 10] == 251
    torch.testing.assert_close(enc[0, INSTANCE, 10:30, 20:40], 3.0 * (s > 0))
    torch.testing.assert_close(enc[0, DEPTH, 10:30, 20:40], 17.0 * (s > 0))
    outside = torch.ones(64, 80, dtype=torch.bool)
    outside[10:30, 20:40] = False
    assert enc[0][:, outside].abs().sum() == 0


def test_later_point_overwrites_whole_square_including_zeros():
    pts, ids, ds = [[30, 30], [35, 33]], [1, 2], [50.0, 90.0]
    enc = encode(signal_of(pts, ids, ds))
    ref = reference_draw(pts, ids, ds, 64, 80)
    np.testing.assert_array_equal(enc[0].numpy(), ref)
    # a corner pixel of the second square is 0 even though the first stamp was positive there
    assert ref[0, 23, 25] == 0 and enc[0, INSTANCE, 23, 25] == 0


@pytest.mark.parametrize("pts", [
    [[0, 0]], [[79, 63]], [[3, 40]], [[78, 2]], [[-1, 10]], [[80, 10]], [[10, 64]], [[40.9, 63.99]],
    [[5, 5], [6, 6], [77, 60], [40, 32], [41, 33]],
])
def test_border_squash_and_skip_match_reference(pts):
    ids = list(range(1, len(pts) + 1))
    ds = [10.0 * i for i in ids]
    enc = encode(signal_of(pts, ids, ds))
    np.testing.assert_array_equal(enc[0].numpy(), reference_draw(pts, ids, ds, 64, 80))


def test_hidden_points_are_not_drawn_and_frames_are_independent():
    pts = torch.tensor([[[20.0, 20.0], [50.0, 40.0]], [[22.0, 21.0], [52.0, 41.0]]])
    sig = ControlSignal(pts, torch.full((2, 2), 5.0), torch.tensor([1, 2]),
                        torch.tensor([[True, False], [True, True]]), 64, 80)
    enc = encode(sig)
    assert enc.shape == (2, 3, 64, 80)
    assert enc[0, INSTANCE].max() == 1 and enc[1, INSTANCE].max() == 2
    np.testing.assert_array_equal(enc[1].numpy(), reference_draw(pts[1].tolist(), [1, 2], [5.0, 5.0], 64, 80))


def test_resolution_change_rescales_points():
    sig = signal_of([[40, 32]], [1], [7.0])
    enc = encode(sig, height=128, width=160)
    assert enc.shape == (1, 3, 128, 160)
    assert enc[0, HEATMAP, 64, 80] == 251


def test_empty_signal():
    sig = ControlSignal(torch.zeros(4, 0, 2), torch.zeros(4, 0), torch.zeros(0, dtype=torch.int64),
                        torch.zeros(4, 0, dtype=torch.bool), 32, 32)
    assert encode(sig).abs().sum() == 0 and encode(sig).shape == (4, 3, 32, 32)


def test_nan_points_are_skipped_not_crashing():
    enc = encode(signal_of([[float("nan"), 5.0], [20, 20]], [1, 2], [3.0, 4.0]))
    assert enc[0, INSTANCE].max() == 2


def test_compiled_drawing_matches_torch():
    from levitor._util.jit import HAVE_NUMBA

    if not HAVE_NUMBA:
        pytest.skip("numba not installed: only the torch drawing runs")
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(3, 40, 2, generator=g) * torch.tensor([90.0, 70.0]) - 5
    sig = ControlSignal(pts, torch.randint(0, 256, (3, 40), generator=g).float(), torch.arange(1, 41),
                        torch.rand(3, 40, generator=g) > 0.2, 64, 80)
    for r in (10, 3):
        assert torch.equal(encode(sig, radius=r, use_kernel=True), encode(sig, radius=r, use_kernel=False))
