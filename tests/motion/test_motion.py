"""3D geometry: lift and project, approach, occlusion, leaving the frame, the z-buffer."""

import numpy as np
import pytest
import torch

from levitor.motion.lift import interpolate_path, lift, move, project
from levitor.motion.render import inpaint, splat
from levitor.scene import Intrinsics, PathPoint


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
    back, _zz = project(p3, K)
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
    _zb, w = splat(torch.tensor([[1.0, 1.0]]), torch.tensor([0.5]), one, 1, 3, 3, 2).dense()
    assert int((w >= 0).sum()) == 4
    _zb, w = splat(torch.tensor([[-0.6, -0.6]]), torch.tensor([0.5]), one, 1, 3, 3, 2).dense()
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
    # the same float32 operations in the same order: the same pixels, ids, depths and colours
    assert torch.equal(a.instance, b.instance) and torch.equal(a.depth, b.depth) and torch.equal(a.color, b.color)


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


def test_inpaint_fills_a_last_column_that_the_top_of_its_pyramid_does_not_reach():
    """16 x 17 with the last column unknown: the pyramid stops at 1 x 2, whose second cell knew nothing and
    used to give 0 (a column of depth 0 after a sideways camera pan)."""
    rng = np.random.default_rng(1)
    values = torch.as_tensor(rng.uniform(0.2, 0.9, (2, 16, 17)), dtype=torch.float32)
    valid = torch.ones(16, 17, dtype=torch.bool)
    valid[:, 16] = False
    out = inpaint(values, valid)
    torch.testing.assert_close(out[:, valid], values[:, valid], rtol=0, atol=0)  # known pixels kept
    filled = out[:, ~valid]
    assert bool((filled >= 0.2).all()) and bool((filled <= 0.9).all())  # within the known values' range
