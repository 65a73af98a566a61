"""Generated-object masks for mask IoU / box IoU, on hand-made videos whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from levitor.evaluation.masks import (
    PointMaskPropagator,
    SamMaskRefiner,
    fit_similarity,
    grid_points,
    load_mask_estimator,
    warp_mask,
)
from levitor.evaluation.metrics import box_iou, mask_iou
from levitor.evaluation.tracking import FallbackTracker

H, W, S, T, STEP = 96, 128, 40, 6, 2          # a 40 px textured square moving right by 2 px a frame


def _video(step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3), masks (T, 1, H, W)): a textured square on a textured background."""
    rng = np.random.default_rng(0)
    bg = ndimage.gaussian_filter(rng.normal(size=(H, W)), 1.5) * 80 + 110
    tex = ndimage.gaussian_filter(rng.normal(size=(S, S)), 1.0) * 80 + 140
    frames, masks = [], []
    for t in range(T):
        img, m = bg.copy(), np.zeros((H, W), bool)
        x0 = 20 + step * t
        img[28 : 28 + S, x0 : x0 + S] = tex
        m[28 : 28 + S, x0 : x0 + S] = True
        frames.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
        masks.append(m[None])
    return np.stack(frames), np.stack(masks)


def test_similarity_fit_and_warp_are_exact_on_exact_points():
    src = np.stack(np.meshgrid(np.arange(30, 70, 5.0), np.arange(20, 60, 5.0)), -1).reshape(-1, 2)
    angle, scale, shift = 0.2, 1.5, np.array([7.0, -3.0])
    a_true = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a, b = fit_similarity(src, src @ a_true.T + shift)
    np.testing.assert_allclose(a, a_true, atol=1e-9)
    np.testing.assert_allclose(b, shift, atol=1e-9)
    # an outlier (a point that lost its object) is dropped in the refit
    dst = src @ a_true.T + shift
    dst[0] += 40.0
    a2, _b2 = fit_similarity(src, dst)
    np.testing.assert_allclose(a2, a_true, atol=1e-9)
    # scale 2 about the origin: pixel (x, y) of the result is pixel (x/2, y/2) of the mask
    m = np.zeros((40, 40), bool)
    m[4:8, 6:10] = True
    big = warp_mask(m, 2 * np.eye(2), np.zeros(2))
    ys, xs = np.nonzero(big)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (11, 18, 7, 14)   # x/2 rounds to 6..9: x in 11..18
    assert big.sum() == 4 * m.sum()
    assert not warp_mask(m, np.zeros((2, 2)), np.zeros(2)).any()         # squashed to a line: nothing left
    # few points or points on one spot: the median shift only
    a3, b3 = fit_similarity(np.array([[5.0, 5.0], [6.0, 5.0]]), np.array([[8.0, 1.0], [9.0, 1.0]]))
    assert np.array_equal(a3, np.eye(2)) and np.allclose(b3, [3.0, -4.0])


def test_grid_points_sit_inside_the_eroded_mask():
    m = np.zeros((50, 60), bool)
    m[10:40, 5:45] = True
    pts = grid_points(m, 32, erode=4)
    assert 8 <= len(pts) <= 32
    xs, ys = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert xs.min() >= 9 and xs.max() <= 40 and ys.min() >= 14 and ys.max() <= 35
    sliver = np.zeros((20, 20), bool)
    sliver[7, 3:17] = True                       # erodes to nothing: the mask itself is used
    assert len(grid_points(sliver, 4)) == 4 and grid_points(np.zeros((5, 5), bool), 4).shape == (0, 2)
    np.testing.assert_array_equal(grid_points(m, 32, erode=4), pts)   # deterministic


def test_propagated_masks_follow_a_moving_object():
    frames, truth = _video()
    est = PointMaskPropagator(FallbackTracker()).masks(frames, truth[0])
    assert est.shape == truth.shape and est.dtype == bool
    np.testing.assert_array_equal(est[0], truth[0])
    assert mask_iou(est[1:], truth[1:]) > 0.97 and box_iou(est[1:], truth[1:]) > 0.97


def test_a_frozen_video_scores_the_overlap_of_the_unmoved_mask():
    frames, truth = _video()
    frozen = np.repeat(frames[:1], T, axis=0)
    est = PointMaskPropagator(FallbackTracker()).masks(frozen, truth[0])
    np.testing.assert_array_equal(est, np.repeat(truth[:1], T, axis=0))   # nothing moved, nothing tracked away
    # two S x S squares shifted by d: IoU = (S - d) S / ((S + d) S); boxes are the squares themselves
    expected = np.mean([(S - STEP * t) / (S + STEP * t) for t in range(1, T)])
    assert mask_iou(est[1:], truth[1:]) == pytest.approx(expected, abs=1e-12)
    assert box_iou(est[1:], truth[1:]) == pytest.approx(expected, abs=1e-12)


class _LostAfterFrame2:
    name = "lost"

    def track(self, frames, queries):
        t = len(frames)
        tracks = np.repeat(queries[None].astype(np.float32), t, axis=0)
        visible = np.ones((t, len(queries)), bool)
        visible[3:] = False
        return tracks, visible


def test_a_lost_object_gets_empty_masks_and_counts_zero():
    frames, truth = _video(step=0)
    est = PointMaskPropagator(_LostAfterFrame2()).masks(frames, truth[0])
    assert est[1:3].all(axis=(2, 3)).sum() == 0 and est[1:3].sum() == 2 * S * S and not est[3:].any()
    assert mask_iou(est[1:], truth[1:]) == pytest.approx(2 / 5)       # frames 1, 2 perfect; 3, 4, 5 empty
    assert box_iou(est[1:], truth[1:]) == pytest.approx(2 / 5)


class _BoxSam:
    """A stand-in for SAM: the mask is the prompt box (inclusive corners), and every call is recorded."""

    def __init__(self):
        self.calls = []

    def set_image(self, image):
        self.calls.append(("image", image.shape))
        self.shape = image.shape[:2]

    def predict(self, points=None, box=None, multimask_output=True):
        self.calls.append(("predict", len(points), tuple(box)))
        m = np.zeros(self.shape, bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        m[y0 : y1 + 1, x0 : x1 + 1] = True
        return m[None], np.ones(1, np.float32)


def test_sam_is_prompted_with_the_propagated_box_and_tracked_points():
    frames, truth = _video()
    sam = _BoxSam()
    est = SamMaskRefiner(sam, PointMaskPropagator(FallbackTracker())).masks(frames, truth[0])
    assert sum(c[0] == "image" for c in sam.calls) == T - 1                 # one embedding per generated frame
    prompts = [c for c in sam.calls if c[0] == "predict"]
    assert len(prompts) == T - 1 and all(c[1] > 0 for c in prompts)
    assert mask_iou(est[1:], truth[1:]) > 0.97                              # box of a square = the square


def test_load_mask_estimator_kinds(tmp_path):
    tracker = FallbackTracker()
    assert load_mask_estimator("none", tracker) is None
    assert isinstance(load_mask_estimator("propagate", tracker), PointMaskPropagator)
    with pytest.raises(ValueError, match="masks must be"):
        load_mask_estimator("sam2", tracker)
    from levitor.weights import WeightsNotFoundError

    with pytest.raises((WeightsNotFoundError, FileNotFoundError)):
        load_mask_estimator("sam", tracker, sam=str(tmp_path / "no-sam"))


def test_sam_estimator_runs_with_tiny_weights(tmp_path):
    from levitor.testing.tiny_perception import save_tiny_sam

    frames, truth = _video()
    est = load_mask_estimator("sam", FallbackTracker(), sam=str(save_tiny_sam(tmp_path / "tiny-sam")))
    out = est.masks(frames[:3], truth[0])
    assert out.shape == (3, 1, H, W) and out.dtype == bool       # random weights: only the plumbing is checked
