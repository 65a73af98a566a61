"""3D geometry: lift and project, approach, occlusion, leaving the frame, the z-buffer."""

import numpy as np
import pytest
import torch

from levitor.engine import Engine
from levitor.motion.lift import interpolate_path, lift, move, project
from levitor.motion.render import inpaint, splat
from levitor.scene import Intrinsics, PathPoint
from tests.conftest import make_scene


def test_interpolate_endpoints_and_single_point():
    path = [PathPoint(0, 0, 0.5), PathPoint(10, 20, 0.25), PathPoint(30, 20, 0.125)]
    for method in ("pchip", "linear", "catmull_rom"):
        t = interpolate_path(path, 16, method)
        assert t.shape == (16, 3)
        np.testing.assert_allclose(t[0], [0, 0, 0.5])
        np.testing.assert_allclose(t[-1], [30, 20, 0.125])
    still = interpolate_path([PathPoint(5, 6, 0.3)], 8)
    np.testing.assert_allclose(still, np.tile([5, 6, 0.3], (8, 1)))
    lin = interpolate_path(path[:2], 11, "linear")
    np.testing.assert_allclose(lin[5], [5, 10, 0.375])


def test_interpolate_frames_hold_and_monotone():
    path = [PathPoint(0, 0, 0.5, 4), PathPoint(10, 0, 0.5, 8), PathPoint(12, 0, 0.5, 12)]
    t = interpolate_path(path, 16, "pchip")
    np.testing.assert_allclose(t[:5, 0], 0)
    np.testing.assert_allclose(t[12:, 0], 12)
    assert np.all(np.diff(t[:, 0]) >= -1e-9)  # PCHIP does not overshoot
    assert t[8, 0] == pytest.approx(10)


def test_more_clicks_than_frames_and_bad_paths():
    many = [PathPoint(i, 0, 0.5) for i in range(40)]
    t = interpolate_path(many, 4)
    np.testing.assert_allclose(t[[0, -1], 0], [0, 39])
    with pytest.raises(ValueError, match="at least one point"):
        interpolate_path([], 4)
    with pytest.raises(ValueError, match="> 0"):
        interpolate_path([PathPoint(0, 0, -0.1)], 4)
    with pytest.raises(ValueError, match="increase"):
        interpolate_path([PathPoint(0, 0, 0.5, 3), PathPoint(1, 0, 0.5, 2)], 4)


def test_lift_project_round_trip():
    K = Intrinsics.release(512, 320)
    pix = torch.tensor([[0.0, 0.0], [256.0, 160.0], [511.0, 319.0]], dtype=torch.float64)
    z = torch.tensor([0.01, 0.5, 1.0], dtype=torch.float64)
    p3 = lift(pix, z, K)
    assert p3[1, 0] == 0 and p3[1, 1] == 0 and torch.equal(p3[:, 2], z)
    back, zz = project(p3, K)
    torch.testing.assert_close(back, pix)


def test_move_scales_about_the_image_centre():
    K = Intrinsics.release(100, 100)
    pix = torch.tensor([[60.0, 50.0], [70.0, 50.0]], dtype=torch.float64)
    z = torch.full((2,), 0.4, dtype=torch.float64)
    track = torch.tensor([[60.0, 50.0, 0.4], [60.0, 50.0, 0.2]], dtype=torch.float64)  # 2x nearer, no 2D shift
    xy, zz = move(pix, z, track, K)
    torch.testing.assert_close(xy[1], torch.tensor([[70.0, 50.0], [90.0, 50.0]], dtype=torch.float64))
    torch.testing.assert_close(zz[1], torch.full((2,), 0.2, dtype=torch.float64))


def test_splat_nearest_wins_and_ties_go_to_the_later_point():
    xy = torch.tensor([[1.0, 1.0], [1.2, 0.8], [3.0, 2.0], [3.0, 2.0]])
    z = torch.tensor([0.5, 0.2, 0.3, 0.3])
    zbuf, win = splat(xy, z, torch.zeros(4, dtype=torch.int64), 1, 4, 5).dense()
    assert win[0, 1, 1] == 1 and zbuf[0, 1, 1] == pytest.approx(0.2)
    assert win[0, 2, 3] == 3
    assert (win >= 0).sum() == 2 and torch.isinf(zbuf[0, 0, 0])
    # footprint 2 covers a 2x2 block; off-image parts are dropped
    one = torch.zeros(1, dtype=torch.int64)
    zb, w = splat(torch.tensor([[1.0, 1.0]]), torch.tensor([0.5]), one, 1, 3, 3, 2).dense()
    assert int((w >= 0).sum()) == 4
    zb, w = splat(torch.tensor([[-0.6, -0.6]]), torch.tensor([0.5]), one, 1, 3, 3, 2).dense()
    assert int((w >= 0).sum()) == 1 and w[0, 0, 0] == 0  # the block is (-1..0, -1..0): only (0, 0) is inside


def test_inpaint_fills_holes_from_surroundings():
    v = torch.zeros(1, 8, 8)
    v[:, :, :4], v[:, :, 4:] = 1.0, 3.0
    valid = torch.ones(8, 8, dtype=torch.bool)
    valid[3:5, 3:5] = False
    out = inpaint(v, valid)
    assert torch.equal(out[:, valid], v[:, valid])
    assert 1.0 <= float(out[0, 3, 3]) <= 3.0 and 1.0 <= float(out[0, 4, 4]) <= 3.0


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


def test_approaching_object_grows_and_drifts_outward():
    s = make_scene(H=80, W=120, objects=[(70, 30, 90, 50, 0.4)], depth=1.0, num_frames=5)
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x, obj.path[0].y, 0.2))  # 2x nearer, no 2D motion
    res = Engine(s).update()
    a = _areas(res, [1])[:, 0]
    assert a[0] == 400
    assert np.all(np.diff(a) > 0) and 3.6 * 400 <= a[-1] <= 4.4 * 400  # ~4x the area at half the depth
    ys, xs = torch.nonzero(res.instance[-1] == 1, as_tuple=True)
    cx0 = 79.5
    assert float(xs.float().mean()) - 60 == pytest.approx(2 * (cx0 - 60), abs=1.0)  # scaled about cx = 60
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
    ys, xs = torch.nonzero(res.instance[-1] == 2, as_tuple=True)  # mask 1 is unselected: id 2... or 1
    ids = set(res.instance[0].unique().tolist()) - {0}
    moved = [i for i in ids if float(torch.nonzero(res.instance[-1] == i)[:, 1].float().mean())
             - float(torch.nonzero(res.instance[0] == i)[:, 1].float().mean()) > 9]
    assert len(moved) == 2
    assert int((res.instance[-1] >= 0).sum()) == 40 * 60  # the uncovered strip is filled


def test_compiled_zbuffer_matches_torch():
    from levitor._util.jit import HAVE_NUMBA

    if not HAVE_NUMBA:
        pytest.skip("numba not installed: only the torch z-buffer runs")
    g = torch.Generator().manual_seed(0)
    m = 5000
    xy = torch.rand(m, 2, generator=g) * torch.tensor([70.0, 50.0]) - 5
    z = torch.randint(1, 30, (m,), generator=g).float() / 30  # many exact ties
    z[::97] = -1.0  # behind the camera: skipped
    frame = torch.randint(0, 3, (m,), generator=g)
    fp = torch.randint(1, 4, (m,), generator=g)
    a = splat(xy, z, frame, 3, 40, 60, fp, use_kernel=True).dense()
    b = splat(xy, z, frame, 3, 40, 60, fp, use_kernel=False).dense()
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_compiled_render_matches_torch(demo_scene):
    from levitor._util.jit import HAVE_NUMBA
    from levitor.control.instances import assemble_instance_map
    from levitor.engine import scene_movers
    from levitor.motion.lift import interpolate_path
    from levitor.motion.render import render

    if not HAVE_NUMBA:
        pytest.skip("numba not installed: only the torch renderer runs")
    s = demo_scene
    inst = assemble_instance_map(s.masks, [o.mask_index for o in s.objects])
    tracks = [interpolate_path(o.path, s.num_frames) for o in s.objects]
    movers = scene_movers(s, inst, tracks)
    args = (torch.from_numpy(s.image), torch.from_numpy(s.depth), torch.from_numpy(inst.ids), movers, s.camera(),
            s.num_frames)
    a = render(*args, backend="numba")
    b = render(*args, backend="torch")
    differ = (a.instance != b.instance).sum().item()
    assert differ <= 1e-5 * a.instance.numel()  # float rounding may flip a boundary pixel, nothing more
    assert (a.instance == b.instance).float().mean() > 0.99999


def test_pytorch3d_backend_agrees_where_installed(demo_scene):
    pytest.importorskip("pytorch3d")
    from levitor.control.instances import assemble_instance_map
    from levitor.engine import scene_movers
    from levitor.motion.lift import interpolate_path
    from levitor.motion.render import render

    s = demo_scene
    inst = assemble_instance_map(s.masks, [o.mask_index for o in s.objects])
    movers = scene_movers(s, inst, [interpolate_path(o.path, s.num_frames) for o in s.objects])
    args = (torch.from_numpy(s.image), torch.from_numpy(s.depth), torch.from_numpy(inst.ids), movers, s.camera(),
            s.num_frames)
    a, b = render(*args, backend="pytorch3d"), render(*args, backend="torch")
    for i in inst.id_of_mask:
        area_a, area_b = (a.instance == i).sum((1, 2)).float(), (b.instance == i).sum((1, 2)).float()
        assert torch.all((area_a - area_b).abs() <= 0.15 * area_b + 50)  # the release's radius is a bit larger


def test_unknown_backend_is_a_clear_error(demo_scene):
    from levitor.motion.render import render

    with pytest.raises(ValueError, match="backend must be one of"):
        render(torch.zeros(8, 8, 3, dtype=torch.uint8), torch.ones(8, 8), torch.zeros(8, 8, dtype=torch.int64), [],
               demo_scene.camera(), 2, backend="opengl")


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
