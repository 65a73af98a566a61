"""The evaluation harness end to end on synthetic clips with known motion."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy import ndimage

from levitor.data.clip import VideoClip
from levitor.evaluation.metrics import RandomConvFeatures
from levitor.evaluation.protocol import (
    PAPER_RESULTS,
    ClipResult,
    QualityStats,
    draw_result,
    draw_tracks,
    evaluate_clip,
    ground_truth_tracks,
    points_for_object,
    results_table,
)
from levitor.evaluation.tracking import FallbackTracker


def textured_clip(t: int = 8, h: int = 72, w: int = 96, size: int = 28, velocity=(2.0, 1.0), seed: int = 0
                  ) -> tuple[VideoClip, np.ndarray]:
    """Object 1: a textured square moving at ``velocity`` px/frame (integer, so no resampling); object 2: static."""
    rng = np.random.default_rng(seed)
    bg = ndimage.gaussian_filter(rng.normal(size=(h, w)), 2.0) * 120 + 128
    tex = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5) * 120 + 128
    frames, inst = [], []
    vx, vy = velocity
    for i in range(t):
        img, ids = bg.copy(), np.zeros((h, w), np.int64)
        ids[50:66, 70:90] = 2
        x0, y0 = 8 + int(vx * i), 8 + int(vy * i)
        img[y0 : y0 + size, x0 : x0 + size] = tex
        ids[y0 : y0 + size, x0 : x0 + size] = 1
        frames.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
        inst.append(ids)
    clip = VideoClip(np.stack(frames), np.stack(inst), [1, 2], fps=24.0, name="toy@0", source="test")
    motion = np.array([[vx * i, vy * i] for i in range(t)])
    return clip, motion


def test_points_for_object_rule():
    image = 100 * 200                                     # areas below are fractions 0.5, 0.001, 0.05, 0.9 of it
    assert points_for_object(10_000, image, "single") == 1
    assert points_for_object(20, image, "multi") == 1
    assert points_for_object(1_000, image, "multi") == 2    # round(0.05 * 50) = 2 (2.5 rounds to even)
    assert points_for_object(18_000, image, "multi") == 8   # capped
    with pytest.raises(ValueError, match="single"):
        points_for_object(2_000, image, "dense")


def test_ground_truth_tracks_follow_the_object():
    clip, motion = textured_clip()
    gt = ground_truth_tracks(clip, FallbackTracker(), "multi")
    p1 = gt.object_of_point == 1
    assert gt.tracks.shape == (8, len(gt.queries), 2) and set(gt.object_of_point.tolist()) == {1, 2}
    # object 1: 784 px of 6912 -> round(0.113 * 50) = 6 points; object 2: 320 px -> 2 points
    assert p1.sum() == 6 and (~p1).sum() == 2
    expected = gt.queries[None] + np.where(p1[None, :, None], motion[:, None], 0.0)
    err = np.linalg.norm(gt.tracks - expected, axis=-1)
    assert err.max() < 1.5 and err.mean() < 0.5     # LK patches straddling the object's edge lag a little
    single = ground_truth_tracks(clip, FallbackTracker(), "single")
    assert len(single.queries) == 2


def test_objmc_zero_for_the_real_video_and_known_for_a_frozen_one():
    clip, motion = textured_clip()
    tracker = FallbackTracker()
    gt = ground_truth_tracks(clip, tracker, "multi")
    same = evaluate_clip(clip, clip.frames.copy(), tracker, "multi", gt=gt)
    assert same.objmc < 0.05 and same.num_points == 8
    frozen = np.repeat(clip.frames[:1], clip.num_frames, axis=0)        # a "model" that ignores the control
    res = evaluate_clip(clip, frozen, tracker, "multi", gt=gt)
    moving = gt.object_of_point == 1
    expected = np.linalg.norm(motion, axis=1)[:, None] * moving[None]    # object 1 should have moved, 2 not
    assert res.objmc == pytest.approx(expected.mean(), abs=0.5)
    assert res.row()["points"] == 8 and res.tracker == "fallback-lk"


def test_evaluate_clip_checks_shapes():
    clip, _ = textured_clip(t=4)
    with pytest.raises(ValueError, match="center_crop_resize"):
        evaluate_clip(clip, clip.frames[:, :32], FallbackTracker())
    with pytest.raises(ValueError, match="uint8"):
        evaluate_clip(clip, clip.frames.astype(np.float32) / 255, FallbackTracker())


def _result(name: str, setting: str, value: float) -> ClipResult:
    z = np.zeros((2, 1, 2), np.float32)
    return ClipResult(name, setting, value, "fallback-lk", z, z, np.ones((2, 1), bool), np.array([1]))


def test_results_table_has_ours_beside_the_paper():
    results = [_result("a", "multi", 10.0), _result("b", "multi", 20.0), _result("c", "single", 7.0)]
    csv_text, md = results_table(results, "tiny", fid={"multi": 30.5}, fvd=200.0)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    ours = {r["setting"]: r for r in rows if r["source"] == "ours"}
    assert ours["multi"]["ObjMC"] == "15.00" and ours["multi"]["clips"] == "2" and ours["multi"]["FID"] == "30.50"
    assert ours["single"]["ObjMC"] == "7.00" and ours["single"]["FID"] == "" and ours["single"]["FVD"] == "200.00"
    paper = [r for r in rows if r["source"].startswith("paper")]
    assert len(paper) == len(PAPER_RESULTS)
    full = next(r for r in paper if "full" in r["model"])
    assert (full["FID"], full["FVD"], full["ObjMC"]) == ("25.41", "190.44", "25.97")
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].startswith("| model |") and "25.97" in md
    third = next(r for r in rows if r["source"].startswith("MagicMotion"))
    assert (third["M_IoU"], third["B_IoU"], third["FVD"]) == ("25.24", "31.42", "922.68")


def test_results_table_means_of_the_new_metrics_skip_nan():
    a, b = _result("a", "multi", 10.0), _result("b", "multi", 20.0)
    a.traj_err, a.mask_iou, a.box_iou = 0.02, 0.5, 0.75
    b.traj_err, b.mask_iou, b.box_iou = 0.04, float("nan"), 0.25      # b had no masks: its IoU does not count
    rows = list(csv.DictReader(io.StringIO(results_table([a, b.row()], "m", include_paper=False)[0])))
    assert len(rows) == 1
    assert (rows[0]["TrajErr"], rows[0]["M_IoU"], rows[0]["B_IoU"]) == ("3.00", "50.00", "50.00")   # in %


def test_evaluate_clip_scores_masks_and_traj_err():
    from levitor.evaluation.masks import PointMaskPropagator

    clip, _ = textured_clip(t=4)
    tracker = FallbackTracker()
    same = evaluate_clip(clip, clip.frames, tracker, "multi", masker=PointMaskPropagator(tracker))
    assert same.traj_err == 0.0 and same.masks.shape[0] == 4 and same.mask_iou > 0.9
    frozen = np.repeat(clip.frames[:1], 4, axis=0)
    moved = evaluate_clip(clip, frozen, tracker, "multi", masker=PointMaskPropagator(tracker))
    assert moved.traj_err == pytest.approx(moved.objmc / np.hypot(clip.height, clip.width))
    assert moved.mask_iou < same.mask_iou and np.isnan(evaluate_clip(clip, frozen, tracker).mask_iou)


def test_draw_tracks_marks_points_and_keeps_input():
    frames = np.zeros((3, 40, 50, 3), np.uint8)
    tracks = np.array([[[10, 10]], [[20, 15]], [[30, 20]]], float)
    out = draw_tracks(frames, tracks, colors=np.array([[255, 0, 0]]), radius=3)
    assert out.shape == frames.shape and frames.max() == 0
    assert out[2, 20, 30].tolist() == [255, 0, 0]          # the dot at the current position
    assert out[2, 15, 20].tolist() == [255, 0, 0]          # the trail passes through the previous position
    assert out[0, 30, 40].tolist() == [0, 0, 0]
    hidden = draw_tracks(frames, tracks, visible=np.array([[True], [True], [False]]), colors=[[0, 255, 0]])
    assert hidden[2, 20, 30].tolist() == [0, 0, 0]         # invisible: hollow ring, centre untouched


def test_quality_stats_with_test_extractors():
    rng = np.random.default_rng(0)
    img, vid = RandomConvFeatures(dim=4), RandomConvFeatures(dim=4, kind="video")
    a, b = QualityStats(img, vid), QualityStats(img, vid)
    clips = [rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8) for _ in range(6)]
    for i, c in enumerate(clips):
        (a if i < 3 else b).add(c, c)
    a.merge(b)
    assert a.real_frames.count == 24 and a.real_videos.count == 6
    assert a.fid() == pytest.approx(0.0, abs=1e-9) and a.fvd() == pytest.approx(0.0, abs=1e-9)
    c = QualityStats(img)
    for x in clips:
        c.add(x, 255 - x)
    assert c.fid() > 0
    with pytest.raises(ValueError, match="no video extractor"):
        c.fvd()


def test_draw_result_shows_requested_and_recovered():
    clip, _ = textured_clip(t=4)
    frozen = np.repeat(clip.frames[:1], 4, axis=0)
    res = evaluate_clip(clip, frozen, FallbackTracker(), "single")
    video = draw_result(frozen, res)
    assert video.shape == frozen.shape and not np.array_equal(video, frozen)
