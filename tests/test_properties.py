"""Property tests over random scenes: only clear ValueErrors, K within bounds, shapes always right."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levitor.control.encode import encode
from levitor.engine import Engine
from levitor.scene import ObjectTrack, PathPoint, Scene

coords = st.one_of(st.floats(min_value=-80, max_value=120), st.sampled_from([float("nan"), float("inf")]))
depths = st.one_of(st.floats(min_value=-0.5, max_value=1.5), st.sampled_from([float("nan"), -float("inf")]))


@st.composite
def scenes(draw):
    H = draw(st.integers(8, 40))
    W = draw(st.integers(8, 48))
    rng = np.random.default_rng(draw(st.integers(0, 10**6)))
    depth = rng.uniform(0.02, 1.0, (H, W)).astype(np.float32)
    masks = []
    for _ in range(draw(st.integers(1, 4))):
        m = np.zeros((H, W), bool)
        if draw(st.booleans()):  # sometimes empty
            x0, y0 = rng.integers(0, W), rng.integers(0, H)
            m[y0: y0 + rng.integers(1, H), x0: x0 + rng.integers(1, W)] = True
        masks.append(m)
    F = draw(st.integers(2, 6))
    scene = Scene(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8), depth=depth, masks=masks, num_frames=F,
                  scale=draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 8.0])),
                  interpolation=draw(st.sampled_from(["pchip", "linear", "catmull_rom"])))
    for i in draw(st.lists(st.integers(0, len(masks) - 1), max_size=3, unique=True)):
        n = draw(st.integers(1, 8))  # sometimes more clicks than frames
        path = [PathPoint(draw(coords), draw(coords), draw(depths)) for _ in range(n)]
        scene.objects.append(ObjectTrack(i, path))
    if draw(st.booleans()):
        scene.camera_path = [PathPoint(draw(coords), draw(coords), draw(depths)) for _ in range(2)]
    return scene


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_random_scenes_give_valid_signals_or_clear_errors(scene):
    try:
        res = Engine(scene).update()
    except ValueError as e:
        msg = str(e)
        assert any(w in msg for w in ("must", "empty", "not a mask", "give a frame")), msg
        return
    F, H, W = scene.num_frames, scene.height, scene.width
    assert res.instance.shape == (F, H, W) and res.depth.shape == (F, H, W) and res.color.shape == (F, H, W, 3)
    assert torch.isfinite(res.depth).all() and (res.depth > 0).all()
    sig = res.signal
    assert sig.points.shape[0] == F and sig.depth.shape == sig.visible.shape == sig.points.shape[:2]
    assert torch.isfinite(sig.points).all()
    vis_pts = sig.points[sig.visible]
    if vis_pts.numel():
        assert vis_pts[:, 0].min() >= 0 and vis_pts[:, 0].max() <= W - 1
        assert vis_pts[:, 1].min() >= 0 and vis_pts[:, 1].max() <= H - 1
    for k in res.k.values():
        assert 1 <= k <= max(scene.k_max, scene.k_min_moved) * max(scene.scale, 1)
    assert bool(((sig.depth >= 0) & (sig.depth <= 255)).all())
    cond = encode(sig)
    assert cond.shape == (F, 3, H, W) and cond[:, 0].max() <= 255


def test_scale_range_works(demo_scene):
    eng = Engine(demo_scene.copy())
    counts = []
    for scale in (0.25, 1, 8):
        sig = eng.signal_for_scale(scale)
        counts.append(sig.num_points)
    assert counts == sorted(counts) and counts[0] >= len(sig.points_per_object())
