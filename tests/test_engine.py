"""The engine: a scene's renders and control signal, and what an edit recomputes. Geometry of the renders
(approach, occlusion, leaving the frame, camera paths) as the user's scenes exercise it."""

import numpy as np
import pytest
import torch

from levitor.bundled import bundled_scene
from levitor.engine import Engine
from levitor.scene import PathPoint
from tests.conftest import make_scene


def _areas(res, ids):
    return np.array([[int((res.instance[f] == i).sum()) for i in ids] for f in range(res.instance.shape[0])])


def test_still_path_reproduces_the_first_frame():
    s = make_scene(objects=[(10, 10, 30, 40, 0.2), (50, 20, 70, 30, 0.3)])
    s.select(0)
    res = Engine(s).update()
    for f in range(s.num_frames):
        assert torch.equal(res.instance[f], res.instance[0])
    assert set(res.instance[0].unique().tolist()) == {0, 1, 2}
    assert int((res.instance[0] == 1).sum()) == 20 * 30

@pytest.mark.parametrize("terms", ["handle", "release"])
def test_approaching_object_grows_on_its_handle_or_drifts_outward_in_release_terms(terms):
    s = make_scene(H=80, W=120, objects=[(70, 30, 90, 50, 0.4)], depth=1.0, num_frames=5)
    s.path_terms = terms
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x, obj.path[0].y, 0.2))  # 2x nearer, no 2D motion
    res = Engine(s).update()
    a = _areas(res, [1])[:, 0]
    assert a[0] == 400
    assert np.all(np.diff(a) > 0) and 3.6 * 400 <= a[-1] <= 4.4 * 400  # ~4x the area at half the depth
    _ys, xs = torch.nonzero(res.instance[-1] == 1, as_tuple=True)
    cx0 = 79.5
    if terms == "handle":  # the object stays on its handle (its centroid, P1) as it grows
        assert float(xs.float().mean()) == pytest.approx(cx0, abs=1.0)
    else:  # the release's convention: scaled about the image centre cx = 60, drifting outward
        assert float(xs.float().mean()) - 60 == pytest.approx(2 * (cx0 - 60), abs=1.0)
    assert res.signal.depth[-1, 0] == 5.0 and res.signal.depth[0, 0] == 2.0  # round(1 / d_t)

def test_receding_object_passes_behind_a_nearer_one():
    # object 1 (moved, depth 0.5) slides right behind object 2 (static, depth 0.2)
    s = make_scene(H=60, W=120, objects=[(5, 20, 25, 40, 0.5), (50, 10, 80, 50, 0.2)], depth=1.0, num_frames=9)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 90, obj.path[0].y, 0.5))
    res = Engine(s).update()
    mid = 4  # moved 45 px: columns 50..70, fully behind object 2
    assert int((res.instance[mid] == 1).sum()) == 0
    assert int((res.instance[mid] == 2).sum()) == 30 * 40  # the occluder is untouched
    assert not bool(res.signal.visible[mid][res.signal.instance == 1].any())
    assert bool(res.signal.visible[-1][res.signal.instance == 1].all())  # out again at the end
    # the hole it left is controlled as part of its surroundings (the background here is uncontrolled: 0)
    assert int(res.instance[mid, 30, 10]) == 0

def test_approaching_object_covers_a_farther_one():
    s = make_scene(H=60, W=120, objects=[(5, 20, 25, 40, 0.1), (50, 10, 80, 50, 0.4)], depth=1.0, num_frames=9)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 90, obj.path[0].y, 0.1))
    res = Engine(s).update()
    assert int((res.instance[4] == 1).sum()) == 400
    assert int((res.instance[4] == 2).sum()) == 30 * 40 - 400

def test_object_leaving_the_frame_vanishes_and_gets_three_points():
    s = make_scene(H=60, W=100, objects=[(40, 20, 60, 40, 0.3)], depth=1.0, num_frames=6)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 200, obj.path[0].y, 0.3))
    res = Engine(s).update()
    a = _areas(res, [1])[:, 0]
    assert a[0] == 400 and a[-1] == 0
    sig = res.signal
    assert res.k[1] >= 3
    assert not bool(sig.visible[-1][sig.instance == 1].any()) and bool(sig.visible[0][sig.instance == 1].all())

def test_camera_path_moves_the_background():
    s = make_scene(H=40, W=60, objects=[(10, 10, 20, 20, 0.5), (30, 10, 40, 20, 0.5)], depth=0.9, num_frames=3)
    s.camera_path = [PathPoint(30, 20, 0.5), PathPoint(40, 20, 0.5)]  # everything unselected moves right 10 px
    res = Engine(s).update()
    _ys, _xs = torch.nonzero(res.instance[-1] == 2, as_tuple=True)  # mask 1 is unselected: id 2... or 1
    ids = set(res.instance[0].unique().tolist()) - {0}
    moved = [i for i in ids if float(torch.nonzero(res.instance[-1] == i)[:, 1].float().mean())
             - float(torch.nonzero(res.instance[0] == i)[:, 1].float().mean()) > 9]
    assert len(moved) == 2
    assert int((res.instance[-1] >= 0).sum()) == 40 * 60  # the uncovered strip is filled

def test_result_at_fewer_frames_keeps_frames_and_points_together():
    scene = make_scene(objects=[(10, 10, 30, 40, 0.2)])
    obj = scene.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 30, obj.path[0].y, 0.2))
    res = Engine(scene).update()
    idx = torch.tensor([0, scene.num_frames // 2, scene.num_frames - 1])
    sub = res.select_frames(idx)
    assert sub.instance.shape[0] == sub.color.shape[0] == sub.signal.num_frames == 3
    torch.testing.assert_close(sub.instance[1], res.instance[idx[1]])
    torch.testing.assert_close(sub.signal.points[2], res.signal.points[-1])
    assert not torch.equal(sub.signal.points[0], sub.signal.points[2])     # the object moved
    assert all(len(t) == 3 for t in sub.tracks) and sub.signal.num_points == res.signal.num_points

def test_warm_start_is_deterministic_and_stable():
    from levitor.bundled import bundled_scene
    from levitor.engine import Engine

    a = Engine(bundled_scene()).update().signal
    b = Engine(bundled_scene()).update().signal
    torch.testing.assert_close(a.points, b.points, atol=0, rtol=0)
    rel = Engine(bundled_scene(), init="even").update().signal
    ids = a.instance
    # warm-started tracks move less from frame to frame than independent per-frame clusterings
    jump_warm = (a.points[1:] - a.points[:-1]).norm(dim=-1)[:, ids == 4].mean()
    jump_rel = (rel.points[1:] - rel.points[:-1]).norm(dim=-1)[:, ids == 4].mean()
    assert float(jump_warm) <= float(jump_rel) + 1e-6

def test_engine_frame_preview_matches_the_full_update():
    from levitor.bundled import bundled_scene
    from levitor.engine import Engine

    scene = bundled_scene(160, 256, num_frames=8)
    engine = Engine(scene)
    full = engine.update()
    for f in (0, 5, 7):
        pv = engine.preview_frame(f)
        assert torch.equal(pv.instance, full.instance[f]) and torch.equal(pv.color, full.color[f])
        assert pv.num_points == full.signal.num_points  # K as the full update has it
        a = pv.signal.points[0][pv.signal.visible[0]]
        b = full.signal.points[f][full.signal.visible[f]]
        assert len(a) == len(b)
        near = torch.cdist(a, b).min(1).values
        assert float(near.median()) < 2.0  # a draft: the same points up to K-means' local optima
    scene.objects[0].path[-1].depth *= 0.7  # an edit: the preview follows it before any update
    pv = engine.preview_frame(7)
    assert torch.equal(pv.instance, engine.update().instance[7])


def test_scale_change_reclusters_without_re_rendering(demo_scene):
    scene = demo_scene.copy()
    engine = Engine(scene)
    first = engine.update()
    render_key = engine._render.key
    scene.scale = 2.0
    second = engine.update()
    assert engine._render.key == render_key  # the renders were reused
    assert second.instance is first.instance
    assert second.signal.num_points > first.signal.num_points


def test_path_edit_re_renders_and_moves_the_object(demo_scene):
    scene = demo_scene.copy()
    engine = Engine(scene)
    before = engine.update()
    ball = scene.objects[0]
    ball.path[-1] = PathPoint(ball.path[-1].x + 40, ball.path[-1].y, ball.path[-1].depth)
    after = engine.update()
    i = after.object_ids[0]
    x_before = torch.nonzero(before.instance[-1] == i)[:, 1].float().mean()
    x_after = torch.nonzero(after.instance[-1] == i)[:, 1].float().mean()
    assert float(x_after - x_before) > 20
    torch.testing.assert_close(after.instance[0], before.instance[0], atol=0, rtol=0)  # frame 0 is the photo


def test_signal_for_scale_leaves_the_scene_alone(demo_scene):
    scene = demo_scene.copy()
    engine = Engine(scene)
    base = engine.update().signal
    half = engine.signal_for_scale(0.25)
    assert scene.scale == 1.0 and half.num_points < base.num_points
    assert engine.update().signal.num_points == base.num_points


def test_cloud_and_3d_paths(demo_scene):
    engine = Engine(demo_scene)
    xyz, rgb, ids = engine.cloud(max_points=5000)
    assert xyz.shape == (5000, 3) and rgb.shape == (5000, 3) and ids.shape == (5000,)
    assert np.all(xyz[:, 2] > 0) and rgb.dtype == np.uint8
    paths = engine.object_paths_3d()
    assert len(paths) == 2 and paths[0].shape == (demo_scene.num_frames, 3)
    # the ball comes 2x nearer: its reference point's depth halves
    assert paths[0][-1, 2] == pytest.approx(paths[0][0, 2] / 2, rel=1e-6)


def test_same_scene_twice_gives_bit_identical_results():
    a, b = Engine(bundled_scene()).update(), Engine(bundled_scene()).update()
    assert torch.equal(a.instance, b.instance) and torch.equal(a.color, b.color)  # integers
    torch.testing.assert_close(a.signal.points, b.signal.points, atol=0, rtol=0)  # the same computation twice


# ---------------------------------------------------------------- no silent loss of control


def _no_python_warnings(fn):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    assert not [w for w in caught if "levitor" in str(w.filename)], [str(w.message) for w in caught]
    return out


def test_a_far_path_depth_under_the_release_rules_is_said_not_silent():
    """Issue 24: a moved object whose path depth is 1.0 is never drawn by the release's rules (K = 0 everywhere).
    That is kept, and said."""
    s = make_scene(H=60, W=80, objects=[(20, 20, 40, 40, 1.0)], depth=1.0, num_frames=4)
    s.add_mask(~s.masks[0])
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 10, obj.path[0].y, 1.0))
    res = Engine(s, rules="release").update()
    assert 1 not in res.k
    (w,) = res.warnings
    assert (w.object_index, w.instance_id, w.frames, w.reason) == (0, 1, (0, 1, 2, 3), "far_path_depth")
    assert "path depth 1.0" in w.message and "in every frame" in w.message and "below 1.0" in w.message
    assert Engine(s, rules="levitor").update().warnings == []  # levitor's rules draw it


def test_leaving_the_view_and_hiding_behind_a_nearer_object_are_named_by_frame():
    s = make_scene(H=60, W=120, objects=[(5, 20, 25, 40, 0.5), (50, 10, 80, 50, 0.2)], depth=1.0, num_frames=9)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 90, obj.path[0].y, 0.5))  # behind object 2, then out again
    hidden, partly = Engine(s).update().warnings  # areas 400, 400, 380, 220, 0, 20, 260, 400, 400
    assert (hidden.object_index, hidden.reason, hidden.frames) == (0, "hidden", (4,))
    assert "frame 5 (of 9)" in hidden.message  # the Studio counts frames from 1
    assert (partly.reason, partly.frames) == ("too_small", (5,))  # 20 px: 2 samples for 3 points
    assert "shows at most 20 pixels in frame 6 (of 9), too few for its 3 control points" in partly.message
    obj.path[-1] = PathPoint(obj.path[0].x + 300, obj.path[0].y, 0.5)
    res = Engine(s).update()
    (left,) = res.warnings
    assert left.reason == "left_view" and left.frames[-1] == 8 and left.frames[0] >= 3
    assert all(not bool(res.signal.visible[f][res.signal.instance == 1].any()) for f in left.frames)
    assert bool(res.signal.visible[left.frames[0] - 1][res.signal.instance == 1].any())


def test_a_mask_under_the_minimum_area_is_a_warning_not_a_python_warning():
    s = make_scene(H=100, W=100, objects=[(10, 10, 13, 13, 0.3), (40, 40, 70, 70, 0.5)], num_frames=3)
    s.select(0).name = "speck"  # 9 px: at most 0.1% of 10,000
    res = _no_python_warnings(lambda: Engine(s).update())
    (w,) = res.warnings
    assert (w.object_index, w.instance_id, w.reason, w.frames) == (0, 0, "too_small", (0, 1, 2))
    assert "'speck' covers 9 pixels" in w.message and "(10 pixels)" in w.message and "larger mask" in w.message
    assert res.object_ids == [0]


def test_a_static_object_covered_by_a_moved_one_is_named():
    s = make_scene(H=60, W=120, objects=[(5, 20, 25, 40, 0.1), (50, 25, 60, 35, 0.4)], depth=1.0, num_frames=9)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 90, obj.path[0].y, 0.1))  # passes in front of the small box
    res = Engine(s).update()
    static = [w for w in res.warnings if w.object_index is None]
    assert static and static[0].instance_id == 2 and static[0].reason == "hidden"
    assert "mask 1 (not moved)" in static[0].message


def test_the_draft_carries_the_warnings_of_its_frame():
    s = make_scene(H=60, W=120, objects=[(5, 20, 25, 40, 0.5), (50, 10, 80, 50, 0.2)], depth=1.0, num_frames=9)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 90, obj.path[0].y, 0.5))
    eng = Engine(s)
    eng.update()
    (w,) = eng.preview_frame(4).warnings
    assert (w.reason, w.frames) == ("hidden", (4,))
    assert eng.preview_frame(0).warnings == []


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("rules", ["levitor", "release"])
def test_the_draft_is_the_update_at_its_frame(rules, backend):
    """preview_frame runs update's stages on [0, frame]: the same render with a camera path, under both rule sets."""
    scene = bundled_scene(96, 160, num_frames=6)
    scene.camera_path = [PathPoint(80, 20, 0.5), PathPoint(84, 21, 0.5)]
    engine = Engine(scene, rules=rules, backend=backend)
    full = engine.update()
    for f in (0, 3, 5):
        pv = engine.preview_frame(f)
        assert torch.equal(pv.instance, full.instance[f]) and torch.equal(pv.depth, full.depth[f])
        assert torch.equal(pv.color, full.color[f]) and pv.num_points == full.signal.num_points
        want = sorted((w.object_index or -1, w.instance_id, w.reason) for w in full.warnings if f in w.frames)
        assert sorted((w.object_index or -1, w.instance_id, w.reason) for w in pv.warnings) == want
        assert all(w.frames == (f,) for w in pv.warnings)
    assert full.warnings  # the box behind the tree, at the last frame


def test_an_empty_scene_builds_an_empty_control():
    from levitor.scene import Scene

    s = Scene(image=np.zeros((24, 32, 3), np.uint8), depth=np.full((24, 32), 0.5, np.float32), num_frames=3)
    res = Engine(s).update()
    assert res.signal.points.shape == (3, 0, 2) and res.instance.shape == (3, 24, 32) and res.warnings == []
    assert int(res.instance.abs().sum()) == 0
    assert Engine(s).preview_frame(1).signal.num_points == 0


def test_backend_numba_without_numba_is_a_clear_error(monkeypatch):
    import levitor.engine as engine_module

    monkeypatch.setattr(engine_module, "HAVE_NUMBA", False)
    with pytest.raises(ValueError, match="backend 'numba' needs numba.*backend='auto' or 'torch'"):
        Engine(bundled_scene(), backend="numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        Engine(bundled_scene(), backend="opengl")


def _identical(a, b) -> None:
    assert torch.equal(a.instance, b.instance) and torch.equal(a.depth, b.depth) and torch.equal(a.color, b.color)
    sa, sb = a.signal, b.signal
    assert torch.equal(sa.points, sb.points) and torch.equal(sa.depth, sb.depth)
    assert torch.equal(sa.instance, sb.instance) and torch.equal(sa.visible, sb.visible)


@pytest.mark.parametrize("seed", range(3))
def test_release_rules_across_edits_are_a_fresh_build_bit_for_bit(seed):
    """Issue 24 (speed): what the release's rules keep between edits (each cloud's coverage, depth order and key;
    the depth map; every K-means fit, compared in place by frame; an untouched object's whole track) and the
    compositing and fits spread over the worker threads change nothing: after each edit of a random run (drags,
    depth changes, some back to an earlier place) the result equals a fresh engine's, ids, depths, colours and
    points bit for bit; at the end also the pure-torch reference's (no compiled loop, no thread, no cache)."""
    rng = np.random.default_rng(seed)
    scene = bundled_scene(96, 160, num_frames=6)
    engine = Engine(scene, rules="release")
    engine.update()
    earlier = []
    for _ in range(6):
        p = scene.objects[int(rng.integers(len(scene.objects)))].path[-1]
        if earlier and rng.random() < 0.3:
            p.x, p.y, p.depth = earlier[int(rng.integers(len(earlier)))]
        else:
            p.x, p.y = p.x + rng.uniform(-6, 6), p.y + rng.uniform(-4, 4)
            p.depth *= float(rng.choice([1.0, rng.uniform(0.7, 1.2)]))
        earlier.append((p.x, p.y, p.depth))
        _identical(engine.update(), Engine(scene, rules="release").update())
    _identical(engine.update(), Engine(scene, rules="release", backend="torch").update())
