"""What is drawn is what will happen: an object's anchor lands on its path point (handle) at every depth; the
release's convention stays available, exactly, as paths in the release's terms."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from levitor.control.instances import assemble_instance_map
from levitor.engine import Engine, render_scene, scene_movers, scene_paths
from levitor.motion.handles import (
    anchor_depth,
    convert_points,
    handles_from_release_track,
    release_track_from_handles,
)
from levitor.motion.lift import interpolate_path, move, object_path_3d, project
from levitor.motion.release_raster import point_radius
from levitor.scene import Intrinsics, PathPoint, Scene
from tests.conftest import make_scene


def _anchor_pixel(scene, index, frame):
    """Where the renderers put the anchor (P1's pixel at the anchor depth) at ``frame``: its release-terms track
    through move(), the per-pixel formula every renderer uses."""
    obj = scene.objects[index]
    track = scene_paths(scene).mover_tracks[index]
    z_a = scene.anchor_depth(index)
    xy, z = move(torch.tensor([[obj.path[0].x, obj.path[0].y]], dtype=torch.float64),
                 torch.tensor([z_a], dtype=torch.float64), torch.as_tensor(track), scene.camera())
    return xy[frame, 0].numpy(), float(z[frame, 0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x0=st.floats(20, 100), y0=st.floats(15, 65), hx=st.floats(-40, 160), hy=st.floats(-30, 110),
       z0=st.floats(0.05, 1.0), nearer=st.floats(0.25, 8.0), fov=st.sampled_from([None, 40.0, 90.0]),
       off_mask=st.booleans())
def test_the_anchor_lands_on_the_handle_at_any_depth(x0, y0, hx, hy, z0, nearer, fov, off_mask):
    """Random handle positions and depths (levitor's rules; the release's camera and wide ones): the projected anchor
    is within 1 px of the handle (here 1e-6 px: the conversion is exact up to float rounding)."""
    s = make_scene(H=80, W=120, objects=[(int(x0) - 10, int(y0) - 8, int(x0) + 10, int(y0) + 8, z0)], depth=0.9,
                   num_frames=5)
    if fov is not None:
        s.intrinsics = Intrinsics.from_fov(s.width, s.height, fov)
    obj = s.select(0)
    if off_mask:  # P1 off the object: the anchor depth is then the mask's median depth
        obj.path[0] = PathPoint(x0 + 30, y0, z0)
    d = float(np.clip(obj.path[0].depth / nearer, 1 / 255, 1.0))
    obj.path.append(PathPoint(hx, hy, d))
    assert s.anchor_depth(0) == pytest.approx(z0, rel=1e-6)
    track = interpolate_path(obj.path, s.num_frames)
    for f in range(s.num_frames):
        xy, z = _anchor_pixel(s, 0, f)
        assert np.abs(xy - track[f, :2]).max() < 1e-6
        assert z == pytest.approx(max(z0 + track[f, 2] - track[0, 2], 1 / 255 / 4))
    # the 3D view's anchor path projects onto the handles too
    xyz = object_path_3d(track, s.camera(), s.anchor_depth(0))
    back, _ = project(torch.as_tensor(xyz), s.camera())
    np.testing.assert_allclose(back.numpy(), track[:, :2], atol=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cx=st.integers(30, 90), cy=st.integers(25, 55), dx=st.integers(-20, 20), dy=st.integers(-12, 12),
       nearer=st.sampled_from([0.6, 1.0, 1.5, 2.0, 3.0]), rules=st.sampled_from(["levitor", "release"]))
def test_a_flat_object_is_rendered_around_its_handle(cx, cy, dx, dy, nearer, rules):
    """A flat square selected at its centroid, moved and brought nearer or farther: its rendered centroid is the
    handle (within a pixel: the splat covers whole pixels), under either rule set."""
    # the release's rasteriser needs its demo's scale: below ~130 px on the short side its radius (0.011 NDC,
    # 0.011 x min(H, W) / 2 px) reaches no pixel centre; its radius also grows by the depth change
    H, W, grow = (90, 120, 0.0) if rules == "levitor" else (288, 384, point_radius(0.3 / nearer - 0.3) * 144)
    s = make_scene(H=H, W=W, objects=[(cx - 6, cy - 6, cx + 6, cy + 6, 0.3)], depth=0.9, num_frames=3)
    obj = s.select(0)
    hx, hy = obj.path[0].x + dx, obj.path[0].y + dy
    half = 6 * nearer + 2 + grow  # the grown square stays inside the picture (a clipped one has another centroid)
    assume(half <= hx <= s.width - 1 - half and half <= hy <= s.height - 1 - half)
    obj.path.append(PathPoint(hx, hy, obj.path[0].depth / nearer))
    res = Engine(s, rules=rules).update()
    ys, xs = torch.nonzero(res.instance[-1] == res.object_ids[0], as_tuple=True)
    assert len(xs) > 0
    assert float(xs.float().mean()) == pytest.approx(hx, abs=1.0)
    assert float(ys.float().mean()) == pytest.approx(hy, abs=1.0)


def test_the_issue_case_a_ball_made_2x_nearer_stays_on_its_handle(demo_scene):
    """Issue 23: a handle at (300, 228) made 2x nearer put the ball's centroid at (344, 276)."""
    s = demo_scene.copy()
    ball = s.objects[0]
    ball.path = [ball.path[0], PathPoint(300, 228, ball.path[0].depth / 2)]
    res = Engine(s).update()
    ys, xs = torch.nonzero(res.instance[-1] == res.object_ids[0], as_tuple=True)
    assert float(xs.float().mean()) == pytest.approx(300, abs=1.5) and float(ys.float().mean()) == pytest.approx(
        228, abs=1.5)
    s.path_terms = "release"  # the release's convention: about the image centre, as before
    res = Engine(s).update()
    ys, xs = torch.nonzero(res.instance[-1] == res.object_ids[0], as_tuple=True)
    assert float(xs.float().mean()) > 335 and float(ys.float().mean()) > 260


def test_anchor_depth_on_and_off_the_mask():
    depth = np.full((10, 12), 0.8, np.float32)
    mask = np.zeros((10, 12), bool)
    mask[2:6, 3:9] = True
    depth[mask] = np.linspace(0.1, 0.5, int(mask.sum()))
    assert anchor_depth(depth, mask, 4.4, 3.6) == pytest.approx(float(depth[4, 4]))  # P1's pixel, rounded
    assert anchor_depth(depth, mask, 10.0, 8.0) == pytest.approx(float(np.median(depth[mask])))  # off the mask
    assert anchor_depth(depth, mask, -5.0, 3.0) == pytest.approx(float(np.median(depth[mask])))  # off the image


def test_conversions_are_inverse_and_exact_at_frame_zero():
    rng = np.random.default_rng(0)
    t = np.column_stack([rng.uniform(-50, 600, 9), rng.uniform(-50, 400, 9), rng.uniform(0.01, 1.0, 9)])
    for z_a in (0.02, 0.3, 1.0):
        rel = release_track_from_handles(t, z_a, 256.0, 160.0)
        np.testing.assert_array_equal(rel[0], t[0])  # frame 0 is the photo
        np.testing.assert_array_equal(rel[:, 2], t[:, 2])  # depths are the same in both terms
        np.testing.assert_allclose(handles_from_release_track(rel, z_a, 256.0, 160.0), t, rtol=0, atol=1e-9)
    # the release's own numbers: a point 2x nearer at (226, 200) lands at c + 2 (p - c) = (196, 240)
    h = convert_points([(150, 228, 0.4), (226, 200, 0.2)], 0.4, 256.0, 160.0, "handle")
    assert h[0] == (150.0, 228.0, 0.4) and h[1][:2] == pytest.approx((196.0, 240.0))
    with pytest.raises(ValueError, match="path terms must be one of"):
        convert_points([(1, 2, 0.5)], 0.5, 0, 0, "pixels")


def _release_pipeline(scene, rules):
    """The control as levitor built it before handles: the interpolated paths straight into the renderers."""
    from levitor.control.rules import ControlRules

    r = ControlRules.named(rules)
    inst = assemble_instance_map(scene.masks, [o.mask_index for o in scene.objects], rule=r.instances)
    tracks = [interpolate_path(o.path, scene.num_frames, scene.interpolation) for o in scene.objects]
    movers = scene_movers(scene, inst, tracks, kept_only=r.render == "release")
    camera = interpolate_path(scene.camera_path, scene.num_frames, scene.interpolation) if scene.camera_path else None
    return render_scene(scene, inst, movers, camera, scene.num_frames, rules=r)


@pytest.mark.parametrize("rules", ["levitor", "release"])
def test_release_terms_paths_give_the_release_control_exactly(rules):
    """A path in the release's terms goes to the renderers untouched: the same renders (ints, bit for bit) as the raw
    interpolated tracks; the same scene in handle terms lands elsewhere."""
    from levitor._util.threads import torch_threads
    from levitor.bundled import bundled_scene

    s = bundled_scene(160, 256, num_frames=6)
    s.camera_path = [PathPoint(125, 30, 0.5), PathPoint(131, 30, 0.499)]
    s.path_terms = "release"
    res = Engine(s, rules=rules).update()
    with torch_threads(1):
        ref = _release_pipeline(s, rules)
    assert torch.equal(res.instance, ref.instance) and torch.equal(res.depth, ref.depth)
    assert torch.equal(res.color, ref.color)
    s.path_terms = "handle"
    assert not torch.equal(Engine(s, rules=rules).update().instance, ref.instance)


@pytest.mark.parametrize("rules", ["levitor", "release"])
def test_converting_release_paths_to_handles_keeps_the_object_where_it_was_at_every_point(demo_scene, rules):
    s = demo_scene.copy()
    s.num_frames = 7
    for obj in s.objects:
        for p, f in zip(obj.path, (0, 3, 6)):
            p.frame = f
    s.path_terms = "release"
    before = Engine(s, rules=rules).update()
    s.convert_paths("handle")
    assert s.path_terms == "handle" and s.objects[0].path[2].x != pytest.approx(226 * 0.5)
    after = Engine(s, rules=rules).update()
    for f in (0, 3, 6):  # at the points' own frames the conversion is exact (up to float rounding: a pixel or two)
        assert int((before.instance[f] != after.instance[f]).sum()) <= 4
    assert before.k == after.k


def test_scene_files_of_version_1_load_in_release_terms_and_give_the_same_control(tmp_path, demo_scene):
    """Schema 1 predates path_terms: its paths were made under the release's convention and keep meaning that."""
    s = demo_scene.copy()
    s.path_terms = "release"
    path = s.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == 2 and doc["path_terms"] == "release"
    doc["version"] = 1
    del doc["path_terms"]
    path.write_text(json.dumps(doc))
    old = Scene.load(path)
    assert old.path_terms == "release" and old.objects == s.objects
    a, b = Engine(old).update(), Engine(s).update()
    assert torch.equal(a.instance, b.instance) and torch.equal(a.signal.points, b.signal.points)
    fresh = Scene.load(demo_scene.save(tmp_path / "new.json"))
    assert fresh.path_terms == "handle"  # what levitor writes now
    doc["version"], doc["path_terms"] = 2, "pixels"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="path_terms must be one of handle, release, got 'pixels'"):
        Scene.load(path)


def test_the_3d_view_draws_the_anchor_path(demo_scene):
    from levitor.viz.scene3d import path_points_3d, track_3d

    s = demo_scene
    K = s.camera()
    res = Engine(s).update()
    for i, obj in enumerate(s.objects):
        z_a = s.anchor_depth(i)
        line = track_3d(res.tracks[i], K, z_a, s.path_terms)
        back, _ = project(torch.as_tensor(line), K)
        np.testing.assert_allclose(back.numpy(), res.tracks[i][:, :2], atol=1e-6)  # on the handles
        clicks = path_points_3d(obj.path, K, z_a, s.path_terms)
        back, _ = project(torch.as_tensor(clicks), K)
        np.testing.assert_allclose(back.numpy(), [(p.x, p.y) for p in obj.path], atol=1e-6)
    paths = Engine(s).object_paths_3d()
    np.testing.assert_allclose(paths[0], track_3d(res.tracks[0], K, s.anchor_depth(0), s.path_terms))


def test_path_point_times_place_a_warning_at_its_points():
    from levitor.motion.lift import path_point_times

    spread = [PathPoint(0, 0, 0.5), PathPoint(5, 0, 0.5), PathPoint(9, 0, 0.5)]
    np.testing.assert_allclose(path_point_times(spread, 16), [0, 7.5, 15])
    assert path_point_times(spread[:1], 16).tolist() == [0.0]
    timed = [PathPoint(0, 0, 0.5, 2), PathPoint(5, 0, 0.5, 9)]
    assert path_point_times(timed, 16).tolist() == [2.0, 9.0]
    with pytest.raises(ValueError, match="for every path point or for none"):
        path_point_times([PathPoint(0, 0, 0.5, 2), PathPoint(5, 0, 0.5)], 16)


def test_the_camera_path_is_a_handle_too():
    """Moving the background: the scene point under the camera path's P1 is seen at each camera path point."""
    s = make_scene(H=60, W=90, objects=[(10, 10, 30, 30, 0.3)], depth=0.6, num_frames=4)
    s.camera_path = [PathPoint(70, 40, 0.6), PathPoint(60, 45, 0.3)]  # 2x nearer and to the left
    cam = scene_paths(s).camera
    xy, _ = move(torch.tensor([[70.0, 40.0]], dtype=torch.float64), torch.tensor([0.6], dtype=torch.float64),
                 torch.as_tensor(cam), s.camera())
    np.testing.assert_allclose(xy[:, 0].numpy(), interpolate_path(s.camera_path, 4)[:, :2], atol=1e-6)
