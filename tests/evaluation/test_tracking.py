"""Trackers on synthetic clips with known motion; CoTracker wrapper conventions with a stand-in predictor."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from levitor.evaluation.tracking import CoTrackerTracker, FallbackTracker, Tracker, gt_query_points


def texture(x: np.ndarray, y: np.ndarray, phase: float) -> np.ndarray:
    """A smooth analytic texture, so sub-pixel shifts are rendered exactly (no resampling error in the fixture)."""
    return (128 + 45 * np.sin(0.31 * x + 0.17 * y + phase) + 35 * np.cos(0.23 * y - 0.11 * x + 2 * phase)
            + 25 * np.sin(0.41 * x) * np.cos(0.37 * y + phase))


def moving_square_clip(t: int = 10, h: int = 96, w: int = 128, size: int = 40, start=(20.0, 30.0),
                       velocity=(2.6, -1.3)) -> tuple[np.ndarray, np.ndarray]:
    """A textured square translating at ``velocity`` px/frame over a different static texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    bg = texture(xx, yy, 1.3)
    frames, origins = [], []
    for i in range(t):
        ox, oy = start[0] + velocity[0] * i, start[1] + velocity[1] * i
        u, v = xx - ox, yy - oy
        inside = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        img = np.where(inside, texture(u, v, 0.0), bg)
        frames.append(np.repeat(np.clip(img, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2))
        origins.append((ox, oy))
    return np.stack(frames), np.array(origins)


def test_fallback_tracks_translating_square_within_1_5_px():
    frames, origins = moving_square_clip()
    queries = origins[0] + np.array([[20.0, 20.0], [12.0, 14.0], [28.0, 25.0], [15.0, 27.0]])
    tracker = FallbackTracker()
    assert isinstance(tracker, Tracker)
    tracks, visible = tracker.track(frames, queries)
    assert tracks.shape == (10, 4, 2) and visible.shape == (10, 4) and tracks.dtype == np.float32
    expected = queries[None] + (origins - origins[0])[:, None]
    err = np.linalg.norm(tracks - expected, axis=-1)
    assert err.max() < 1.5, err.max()
    assert visible.all()


def test_fallback_static_video_and_points_leaving_the_frame():
    frames, _ = moving_square_clip(t=4, velocity=(0.0, 0.0))
    q = np.array([[40.0, 50.0], [100.0, 20.0]])
    tracks, visible = FallbackTracker().track(frames, q)
    assert np.abs(tracks - q[None]).max() < 0.05 and visible.all()
    frames, origins = moving_square_clip(t=12, w=96, start=(40.0, 30.0), velocity=(6.0, 0.0))
    tracks, visible = FallbackTracker().track(frames, origins[0] + np.array([[30.0, 20.0]]))
    assert visible[0, 0] and not visible[-1, 0]         # x = 70 + 66 is outside a 96 px wide frame


def test_fallback_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        FallbackTracker().track(np.zeros((2, 8, 8, 3), np.float32), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="odd"):
        FallbackTracker(window=8)


def test_gt_query_points_single_multi_and_snapping():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:30] = True
    np.testing.assert_allclose(gt_query_points(mask, 1), [[19.5, 14.5]])
    pts = gt_query_points(mask, 8)
    assert pts.shape == (8, 2) and all(mask[int(round(y)), int(round(x))] for x, y in pts)
    np.testing.assert_array_equal(pts, gt_query_points(mask, 8))     # fixed seed: deterministic
    ring = np.zeros((41, 41), bool)
    yy, xx = np.mgrid[0:41, 0:41]
    ring[(np.hypot(xx - 20, yy - 20) > 12) & (np.hypot(xx - 20, yy - 20) < 16)] = True
    (x, y), = gt_query_points(ring, 1)
    assert ring[int(y), int(x)]                                       # the ring's centre is empty: snapped
    tiny = np.zeros((5, 5), bool)
    tiny[1, 1] = tiny[3, 3] = True
    assert gt_query_points(tiny, 8).shape == (2, 2)                  # never more points than pixels
    with pytest.raises(ValueError, match="empty"):
        gt_query_points(np.zeros((5, 5), bool), 1)


def test_cotracker_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cotracker", None)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", None)
    with pytest.raises(ImportError, match="co-tracker.*FallbackTracker"):
        CoTrackerTracker.load()


def test_cotracker_wrapper_conventions(monkeypatch, tmp_path):
    calls = {}

    class FakePredictor(torch.nn.Module):
        def __init__(self, checkpoint: str = "", offline: bool = False, window_len: int = 16):
            super().__init__()
            calls["init"] = (checkpoint, offline, window_len)

        def forward(self, video, queries=None):
            calls["video"], calls["queries"] = video, queries
            b, t = video.shape[:2]
            tracks = queries[:, None, :, 1:].repeat(1, t, 1, 1) + torch.arange(t)[None, :, None, None]
            return tracks, torch.ones(b, t, queries.shape[1], dtype=torch.bool)

    pkg, mod = types.ModuleType("cotracker"), types.ModuleType("cotracker.predictor")
    mod.CoTrackerPredictor = FakePredictor
    monkeypatch.setitem(sys.modules, "cotracker", pkg)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", mod)
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scaled_offline.pth"):
        CoTrackerTracker.load()
    ckpt = tmp_path / "models" / "cotracker" / "scaled_offline.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    tracker = CoTrackerTracker.load()
    assert calls["init"] == (str(ckpt), True, 60)
    frames = np.full((3, 8, 10, 3), 7, np.uint8)
    tracks, visible = tracker.track(frames, np.array([[1.0, 2.0]]))
    assert calls["video"].shape == (1, 3, 3, 8, 10) and float(calls["video"].max()) == 7.0   # 0..255 floats
    assert calls["queries"].tolist() == [[[0.0, 1.0, 2.0]]]                                  # (t, x, y)
    assert tracks.shape == (3, 1, 2) and tracks[2, 0].tolist() == [3.0, 4.0] and visible.all()
