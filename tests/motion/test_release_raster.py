"""The release's point rasteriser (levitor.motion.release_raster) and the release's renderer built on it, against a
slow reference written here from REFERENCE.md's semantics ("The release's point rasteriser"): per pixel, every
point, plain numpy, on tiny images. Integers and float32 results are compared bit for bit (the same float32
operations in the same order), for the compiled loop and the numpy fallback alike; pytorch3d itself where installed.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levitor._util.jit import HAVE_NUMBA
from levitor.motion import release_raster as rr
from levitor.motion.release_render import release_depth_map, render_release
from levitor.motion.render import Mover, StaticLayer, pixels_of, static_layer
from levitor.scene import Intrinsics

f32 = np.float32
KERNELS = [False, True] if HAVE_NUMBA else [False]


# ---------------------------------------------------------------------------------------------- the reference

def ref_centres(H, W):
    """Pixel centres in NDC: pytorch3d's PixToNonSquareNdc (float32) of the flipped index (+X left, +Y up)."""
    m = min(H, W)

    def one(i, s1, s2):
        rng = f32(f32(s1) * f32(2.0) / f32(s2)) if s1 > s2 else f32(2.0)
        off = f32(rng / f32(2.0))
        return f32(-off + f32(f32(f32(rng * f32(i)) + off) / f32(s1)))

    xc = [one(W - 1 - c, W, H) for c in range(W)]
    yc = [one(H - 1 - r, H, W) for r in range(H)]
    # the documented closed form, to within float32 rounding
    assert np.allclose(xc, [(W - 2 * c - 1) / m for c in range(W)], rtol=0, atol=4e-7 * max(W, H) / m)
    assert np.allclose(yc, [(H - 2 * r - 1) / m for r in range(H)], rtol=0, atol=4e-7 * max(W, H) / m)
    return xc, yc


def ref_rasterize(x, y, z, radius, H, W, K):
    """Per pixel, every point: hits d2 < r^2 (float32, strict), z < 0 dropped, the K smallest (z, index) kept."""
    xc, yc = ref_centres(H, W)
    r = f32(radius)
    r2 = f32(r * r)
    x, y, z = (np.asarray(a, np.float32) for a in (x, y, z))
    idx = np.full((H, W, K), -1, np.int64)
    zb = np.full((H, W, K), -1, np.float32)
    dd = np.full((H, W, K), -1, np.float32)
    for row in range(H):
        for col in range(W):
            dx = x - xc[col]  # float32, every point
            dy = y - yc[row]
            d2 = dx * dx + dy * dy
            hit = np.flatnonzero((d2 < r2) & ~(z < 0))
            keep = hit[np.lexsort((hit, z[hit]))][:K]  # by z, then by index
            n = keep.size
            idx[row, col, :n], zb[row, col, :n], dd[row, col, :n] = keep, z[keep], d2[keep]
    return idx, zb, dd


def ref_covered(idx, dd, radius, feature):
    """The alpha compositor per pixel (float32: out += (cum * w) * f; cum *= 1 - w), then round(out) != 0."""
    H, W, K = idx.shape
    r2w = f32(float(radius) * float(radius))
    out = np.zeros((H, W), bool)
    for row in range(H):
        for col in range(W):
            res, cum = f32(0), f32(1)
            for k in range(K):
                if idx[row, col, k] < 0:
                    continue
                w = f32(f32(1) - f32(dd[row, col, k] / r2w))
                res = f32(res + f32(f32(cum * w) * f32(feature)))
                cum = f32(cum * f32(f32(1) - w))
            out[row, col] = np.round(res) != 0
    return out


def ref_project(u, v, z0, delta, K, H, W):
    """The release's camera: back-projection in float32 as its code (u + dx added in float64), depth change added in
    float32, projection x = -X (fx / s) / Z, s = min(H, W) / 2 (principal point at the image centre)."""
    dx, dy, dz = delta
    inv_s = f32(f32(1) / f32(min(H, W) / 2))
    out = []
    for ui, vi, zi in zip(u, v, z0):
        X = f32(f32(f32(f32(ui + dx) - f32(K.cx)) * f32(zi)) / f32(K.fx))
        Y = f32(f32(f32(f32(vi + dy) - f32(K.cy)) * f32(zi)) / f32(K.fy))
        Z = f32(f32(zi) + f32(dz))
        if Z == 0:
            out.append((np.inf, np.inf, Z))
            continue
        out.append((f32(f32(-X * f32(f32(K.fx) * inv_s)) / Z), f32(f32(-Y * f32(f32(K.fy) * inv_s)) / Z), Z))
    a = np.array(out, np.float64).reshape(-1, 3)
    return a[:, 0].astype(np.float32), a[:, 1].astype(np.float32), a[:, 2].astype(np.float32)


# ---------------------------------------------------------------------------------------------- rasteriser

@st.composite
def clouds(draw):
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    n = draw(st.integers(0, 24))
    m = min(H, W)
    reach = float(f32(1.6 * max(H, W) / m))
    pos = st.one_of(st.floats(-reach, reach, width=32),
                    st.sampled_from([0.0, 1.0 / m, -1.0 / m, 5.0, float("inf"), float("nan")]))
    zs = st.sampled_from([-0.25, -1e-7, 0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 2.0])  # ties and z = 0 on purpose
    x = np.array([draw(pos) for _ in range(n)], np.float32)
    y = np.array([draw(pos) for _ in range(n)], np.float32)
    if n and draw(st.booleans()):  # points on the pixel grid, half a pixel off (where the release puts them)
        x = ((W - 2 * np.array([draw(st.integers(0, W - 1)) for _ in range(n)])) / m).astype(np.float32)
    z = np.array([draw(zs) for _ in range(n)], np.float32)
    radius = draw(st.sampled_from([rr.BASE_RADIUS, 0.2, 1.0 / m, 0.6, 1.5]))
    return x, y, z, radius, H, W, draw(st.sampled_from([1, 3, rr.POINTS_PER_PIXEL]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clouds(), st.sampled_from([1, 2, 3]))
def test_rasterize_and_coverage_match_the_per_pixel_reference(cloud, feature):
    x, y, z, radius, H, W, K = cloud
    want = ref_rasterize(x, y, z, radius, H, W, K)
    covered = ref_covered(want[0], want[2], radius, feature)
    for kernel in KERNELS:
        got = rr.rasterize(x, y, z, radius, H, W, K, use_kernel=kernel)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and np.array_equal(g, w)  # ids, depths, distances: bit for bit
        pix, near = rr.coverage(x, y, z, rr.depth_order(z), radius, feature, H, W, K, use_kernel=kernel)
        assert np.array_equal(pix, np.flatnonzero(covered))
        assert np.array_equal(near, want[0].reshape(H * W, K)[pix, 0])  # the nearest kept point
        image = rr.composite(got[0], got[2], radius, np.full(len(x), feature))
        assert np.array_equal(np.round(image) != 0, covered)


def test_ties_in_z_keep_the_lower_index_and_z_zero_is_kept_but_negative_z_dropped():
    n = 14
    x = np.zeros(n, np.float32)  # all on the one pixel centre of a 1x1 image
    y = np.zeros(n, np.float32)
    z = np.full(n, 0.5, np.float32)
    z[[3, 7]] = 0.0  # kept, and nearest
    z[[1, 2]] = -1e-7  # culled
    idx, zbuf, dists = rr.rasterize(x, y, z, 0.5, 1, 1)
    assert idx[0, 0].tolist() == [3, 7, 0, 4, 5, 6, 8, 9, 10, 11]  # z ascending, then the lower index
    assert zbuf[0, 0, :2].tolist() == [0.0, 0.0] and (dists[0, 0] == 0).all()


def test_points_off_the_image_hit_only_what_their_radius_reaches():
    H, W = 4, 6  # m = 4: one pixel is 0.5 in NDC; x spans [-1.5, 1.5], y [-1, 1]
    x = np.array([1.5 + 0.2, -1.5 - 0.2, 0.0, 9.0, np.inf], np.float32)  # left of column 0, right of column 5
    y = np.array([0.75, -0.75, 1.0 + 0.1, 0.0, 0.0], np.float32)  # row 0, row 3; above row 0
    idx, _, _ = rr.rasterize(x, y, np.full(5, 0.5, np.float32), 0.5, H, W, 1)
    hit = {(int(r), int(c)): int(idx[r, c, 0]) for r, c in zip(*np.nonzero(idx[..., 0] >= 0))}
    # point 0 at x = 1.7: column 0's centre is at 1.25 (0.45 away), column 1 at 0.75 (too far); point 2, 0.1 above
    # the top edge, reaches the centres of columns 2 and 3 in row 0 (0.25 across and 0.35 down: d2 = 0.185 < 0.25)
    assert hit == {(0, 0): 0, (3, 5): 1, (0, 2): 2, (0, 3): 2}


def test_unmoved_pixels_land_half_a_pixel_up_and_left_of_their_centres():
    H, W = 512, 288
    K = Intrinsics.release(W, H)
    u = np.array([0.0, 100.0, 287.0])
    v = np.array([0.0, 200.0, 511.0])
    x, y, z = rr.project(u, v, np.full(3, 0.5, np.float32), (0.0, 0.0, 0.0), rr.ReleaseCamera.of(K, H, W))
    np.testing.assert_allclose(x, (W - 2 * u) / 288, rtol=0, atol=2e-7)  # the pixel centre is (W - 2u - 1) / m
    np.testing.assert_allclose(y, (H - 2 * v) / 288, rtol=0, atol=4e-7)
    np.testing.assert_allclose(rr.pixel_to_ndc(u, v, H, W), np.stack([x, y], 1), rtol=0, atol=4e-7)
    assert z.tolist() == [0.5] * 3


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_example_unmoved_40x30_mask_at_512x288(kernel):
    # REFERENCE.md: 1271 px, rows 199-239, columns 99-129 (one pixel more up and left than the mask)
    H, W = 512, 288
    rows, cols = np.mgrid[200:240, 100:130]
    cam = rr.ReleaseCamera.of(Intrinsics.release(W, H), H, W)
    x, y, z = rr.project(cols.ravel().astype(float), rows.ravel().astype(float), np.full(1200, 0.5, np.float32),
                         (0.0, 0.0, 0.0), cam)
    pix, _ = rr.coverage(x, y, z, rr.depth_order(z), rr.point_radius(0.0), 1, H, W, use_kernel=kernel)
    assert pix.size == 1271
    assert (pix // W).min() == 199 and (pix // W).max() == 239 and (pix % W).min() == 99 and (pix % W).max() == 129


def test_the_threshold_depends_on_the_id_on_sparse_points():
    # points 4 px apart at m = 288 (radius 1.58 px), moved by (0.3, 0.2) px: a pixel is covered where
    # id x (1 - d2 / r^2) > 0.5 for its one point, so id 3 reaches farther (d < 1.45 px) than id 1 (d < 1.12 px)
    H, W = 288, 320
    cols, rows = np.meshgrid(np.arange(20, 60, 4), np.arange(20, 44, 4))
    x, y, z = rr.project(cols.ravel().astype(float), rows.ravel().astype(float), np.full(cols.size, 0.5, np.float32),
                         (0.3, 0.2, 0.0), rr.ReleaseCamera.of(Intrinsics.release(W, H), H, W))
    r = rr.point_radius(0.0) * 144  # pixels
    pc, pr = np.meshgrid(np.arange(W), np.arange(H))
    # an unmoved point sits half a pixel up and left of its pixel's centre
    dist = np.min([np.hypot(pc - (c - 0.2), pr - (q - 0.3)) for c, q in zip(cols.ravel(), rows.ravel())], axis=0)
    for feature, reach in ((1, r / np.sqrt(2)), (3, r * np.sqrt(5 / 6))):
        for kernel in KERNELS:
            pix, _ = rr.coverage(x, y, z, rr.depth_order(z), rr.point_radius(0.0), feature, H, W, use_kernel=kernel)
            assert np.array_equal(pix, np.flatnonzero(dist < reach))
            assert pix.size == cols.size * (4 if feature == 1 else 7)


def test_the_radius_grows_as_the_object_approaches():
    assert rr.point_radius(0.0) == rr.point_radius(0.3) == 0.011
    assert rr.point_radius(-0.1) == pytest.approx(0.111)
    # one point on a 9x9 image: unmoved (radius 0.011 = 0.05 px) it reaches no centre; 0.2 nearer, 0.211 = 0.95 px
    H = W = 9
    K = Intrinsics(3866.378, 4538.052, 4.5, 4.5)
    cam = rr.ReleaseCamera.of(K, H, W)
    areas = []
    for dz in (0.0, -0.2, -0.4):
        x, y, z = rr.project(np.array([4.0]), np.array([4.0]), np.array([0.5], np.float32), (0.0, 0.0, dz), cam)
        want = ref_covered(*ref_rasterize(x, y, z, rr.point_radius(dz), H, W, 10)[::2], rr.point_radius(dz), 1)
        pix, _ = rr.coverage(x, y, z, rr.depth_order(z), rr.point_radius(dz), 1, H, W)
        assert np.array_equal(pix, np.flatnonzero(want))
        areas.append(pix.size)
    assert areas[0] == 0 and 0 < areas[1] < areas[2]


def test_project_matches_the_reference_camera():
    rng = np.random.default_rng(0)
    H, W = 37, 53
    K = Intrinsics.release(W, H)
    u, v = rng.integers(0, W, 200).astype(float), rng.integers(0, H, 200).astype(float)
    z0 = (1.0 / rng.integers(1, 256, 200)).astype(np.float32)
    for delta in ((0.0, 0.0, 0.0), (3.25, -7.5, -0.01), (0.1, 0.2, 0.3), (1.0, 1.0, -z0.max())):
        got = rr.project(u, v, z0, delta, rr.ReleaseCamera.of(K, H, W))
        want = ref_project(u, v, z0, delta, K, H, W)
        for g, w in zip(got, want):
            finite = np.isfinite(w)
            assert np.array_equal(g[finite], w[finite]) and not np.isfinite(g[~finite]).any()


# ---------------------------------------------------------------------------------------------- release render

def ref_render(ids0, depth, movers, num_selected, K, F):
    """The release's per-frame compositing (REFERENCE.md) over the reference rasteriser: (F, H, W) ids and depth."""
    H, W = ids0.shape
    fillable = ids0 <= num_selected
    base = np.where(fillable, 0, ids0)
    dmap0 = np.where(fillable, 1.0, 1.0 / np.rint(1.0 / depth.astype(np.float64)))  # the release: float64 1/k
    fills = []
    for mv in movers:
        x0, y0 = int(mv.pixels[0, 0]), int(mv.pixels[0, 1])  # the first pixel in raster order
        col = base[max(y0 - 5, 0):y0, max(x0 - 5, 0)]
        fills.append(None if col.size == 0 else int(np.argmax(np.bincount(col))))
    out_ids, out_depth = np.zeros((F, H, W), np.int64), np.zeros((F, H, W), np.float32)
    for f in range(F):
        ids, dmap = base.copy(), dmap0.copy()
        for mv, fill in zip(movers, fills):
            track = mv.track.numpy()
            delta = tuple(float(d) for d in track[f] - track[0])
            x, y, z = ref_project(mv.pixels[:, 0].numpy(), mv.pixels[:, 1].numpy(), mv.depth.numpy(), delta, K, H, W)
            radius = max(0.011 - delta[2], 0.011)
            idx, _, dd = ref_rasterize(x, y, z, radius, H, W, 10)
            i = int(mv.instance[0])
            draw = ref_covered(idx, dd, radius, i) & (dmap > float(track[f, 2]))
            ids[draw], dmap[draw] = i, float(track[f, 2])
            if fill is not None:
                ids[fillable & (ids == 0)] = fill
        out_ids[f], out_depth[f] = ids, dmap
    return out_ids, out_depth


def _static(depth, ids):
    """render_release's first arguments, with a plain static layer (its colours only matter for the preview)."""
    H, W = ids.shape
    image = torch.zeros(H, W, 3, dtype=torch.uint8)
    inst, d = torch.from_numpy(ids), torch.from_numpy(depth)
    return image, d, inst, StaticLayer(inst, d, image)


def _mover(mask, depth, image, i, track):
    pix = pixels_of(mask)
    r, c = pix[:, 1].long(), pix[:, 0].long()
    return Mover(pixels=pix, depth=torch.from_numpy(depth)[r, c].double(), instance=torch.full((len(pix),), i),
                 color=torch.from_numpy(image)[r, c], track=torch.as_tensor(track, dtype=torch.float64))


@st.composite
def tiny_scenes(draw):
    """Tiny scenes whose moved objects come nearer by up to 0.4 (on 3 to 9 px the base radius, 0.011 x m / 2 px,
    reaches no pixel centre; the grown one does), slide by fractions of a pixel, and meet path depths equal to the
    scene's (on the disparity grid, as from a depth map). Some points reach z = 0 or behind the camera."""
    H, W = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    rng = np.random.default_rng(draw(st.integers(0, 10**6)))
    depth = (1.0 / rng.integers(1, 9, (H, W))).astype(np.float32)
    ids = rng.integers(0, 5, (H, W))
    M = draw(st.integers(1, 3))
    F = draw(st.integers(2, 3))
    grid = [1.0 / k for k in range(1, 9)]
    movers = []
    for i in range(1, M + 1):
        if not (ids == i).any():
            continue
        path = np.zeros((F, 3))
        path[:, :2] = np.cumsum(rng.uniform(-1.5, 1.5, (F, 2)) * (np.arange(F) > 0)[:, None], axis=0)
        path[0, 2] = draw(st.sampled_from(grid[:4]))
        depth[ids == i] = path[0, 2]  # the object at its first path depth, as the user's click reads it
        d0 = path[0, 2]
        for f in range(1, F):  # a depth on the grid, or the first one moved by dz
            dz = draw(st.sampled_from([-0.4, -0.25, -0.1, 0.0, 0.1]))
            path[f, 2] = draw(st.sampled_from(grid)) if draw(st.booleans()) else d0 + dz
        path[:, 2] = np.maximum(path[:, 2], 0.02)
        movers.append(_mover(ids == i, depth, np.zeros((H, W, 3), np.uint8), i, path))
    return depth, ids, movers, M, F


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_scenes())
def test_release_render_matches_the_reference_on_random_tiny_scenes(scene):
    depth, ids, movers, M, F = scene
    H, W = ids.shape
    K = Intrinsics.release(W, H)
    want_ids, want_depth = ref_render(ids, depth, movers, M, K, F)
    image, d, inst, static = _static(depth, ids)
    for kernel in KERNELS:
        got = render_release(image, d, inst, movers, M, K, F, static=static, use_kernel=kernel)
        assert np.array_equal(got.instance.numpy(), want_ids)
        assert np.array_equal(got.depth.numpy(), want_depth)


@pytest.mark.skipif(not HAVE_NUMBA, reason="compares the compiled loop with the numpy fallback")
def test_compiled_and_numpy_release_render_agree_on_the_bundled_scene_and_with_a_camera_path(demo_scene):
    from levitor.engine import Engine, scene_movers, scene_paths
    from levitor.scene import PathPoint

    s = demo_scene.copy()
    s.objects[0].path[-1].depth *= 0.25  # the ball comes 8x nearer instead of 2x
    for camera in (None, [PathPoint(0.0, 0.0, 1.0), PathPoint(6.0, -3.0, 1.0)]):
        s.camera_path = camera or []
        s.num_frames = 3 if camera else 16  # levitor's camera render (inpainting per frame) is the slow part
        eng = Engine(s, rules="release")
        inst = eng.instance_map()
        movers = scene_movers(s, inst, kept_only=True)  # the release-terms tracks of the scene's paths
        cam = torch.as_tensor(scene_paths(s).camera) if camera else None
        image, depth, ids = torch.from_numpy(s.image), torch.from_numpy(s.depth), torch.from_numpy(inst.ids)
        args = (image, depth, ids, movers, len(s.objects), s.camera(), s.num_frames, cam)
        static = static_layer(image, depth, ids, movers)
        a, b = (render_release(*args, static=static, use_kernel=k) for k in (True, False))
        assert torch.equal(a.instance, b.instance) and torch.equal(a.depth, b.depth) and torch.equal(a.color, b.color)
        if camera is None:  # the ball, 8x nearer, spreads wide (clipped by the picture)
            ball = inst.id_of_mask[s.objects[0].mask_index]
            first, last = (torch.nonzero(a.instance[f] == ball)[:, 1] for f in (0, -1))
            assert int(last.max() - last.min()) > 3 * int(first.max() - first.min())


@pytest.mark.skipif(not HAVE_NUMBA, reason="the coverage cache belongs to the compiled path")
def test_an_edit_rasterises_only_the_object_it_moved_and_renders_the_same(demo_scene, monkeypatch):
    from levitor.engine import Engine, scene_movers

    s = demo_scene.copy()
    calls = []
    real = rr.frame_coverage
    monkeypatch.setattr(rr, "frame_coverage", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    cache = {}
    for end_x in (230.0, 236.0):  # drag the ball's end point: the box keeps its path
        s.objects[0].path[-1].x = end_x
        inst = Engine(s, rules="release").instance_map()
        movers = scene_movers(s, inst, kept_only=True)
        args = (torch.from_numpy(s.image), torch.from_numpy(s.depth), torch.from_numpy(inst.ids), movers,
                len(s.objects), s.camera(), s.num_frames)
        static = static_layer(*args[:4])
        calls.clear()
        a = render_release(*args, static=static, cache=cache)
        cached_calls = sorted(calls)
        b = render_release(*args, static=static)
        assert torch.equal(a.instance, b.instance) and torch.equal(a.depth, b.depth) and torch.equal(a.color, b.color)
    ball = int(movers[0].instance[0])
    # the second edit rasterised the ball's frames 1..15 only: its frame 0 (not moved yet) and the box from the cache
    assert cached_calls == [ball] * (s.num_frames - 1)


def test_release_rules_end_to_end_the_draft_renders_what_the_update_renders(demo_scene):
    from levitor.engine import Engine

    engine = Engine(demo_scene.copy(), rules="release")
    full = engine.update()
    for f in (0, 7, demo_scene.num_frames - 1):
        draft = engine.preview_frame(f)
        assert torch.equal(draft.instance, full.instance[f]) and torch.equal(draft.depth, full.depth[f])
    ball = full.object_ids[0]
    assert int((full.instance[-1] == ball).sum()) > 3.8 * int((full.instance[0] == ball).sum())  # 2x nearer


def test_release_depth_map_is_the_float64_reciprocal_of_the_disparity():
    k = np.arange(1, 256)
    from levitor.depth import depth_from_disparity

    d32 = depth_from_disparity(k.astype(np.uint8))
    assert np.array_equal(release_depth_map(d32), 1.0 / k)  # the release divides 1.0 by the uint8 map
    odd = np.array([0.3, 0.77, 1e-3], np.float32)  # not reciprocals of integers: widened
    assert np.array_equal(release_depth_map(odd), odd.astype(np.float64))


def test_a_path_depth_equal_to_the_scene_depth_is_not_farther_in_float64():
    # an object at depth 1/40 comes nearer to path depth 1/48 (a Python float, as the release's), 1.2x larger, over a
    # static object at the scene depth float32(1/48): the release compares 1/48 > 1/48 in float64, false, so it is
    # drawn only over its own place (depth 1.0); the float32 1/48 widened to float64 would be farther, and drawn
    H = W = 144  # m = 144: radius 0.011 + 1/40 - 1/48 = 0.0152 NDC, 1.09 px
    ids = np.full((H, W), 2)
    ids[67:77, 67:77] = 1
    depth = np.full((H, W), np.float32(1 / 48), np.float32)
    depth[ids == 1] = np.float32(1 / 40)
    track = [[72.0, 72.0, 1 / 40], [72.0, 72.0, 1 / 48]]
    mv = _mover(ids == 1, depth, np.zeros((H, W, 3), np.uint8), 1, track)
    image, d, inst, static = _static(depth, ids)
    res = render_release(image, d, inst, [mv], 1, Intrinsics.release(W, H), 2, static=static)
    last = res.instance[1].numpy()
    assert (last[ids == 1] == 1).sum() > 50 and not (last[ids == 2] == 1).any()
    dz = 1 / 48 - 1 / 40
    x, y, z = rr.project(mv.pixels[:, 0].numpy(), mv.pixels[:, 1].numpy(), mv.depth.numpy().astype(np.float32),
                         (0.0, 0.0, dz), rr.ReleaseCamera.of(Intrinsics.release(W, H), H, W))
    pix, _ = rr.coverage(x, y, z, rr.depth_order(z), rr.point_radius(dz), 1, H, W)
    assert (ids.reshape(-1)[pix] == 2).sum() > 30  # where float32 depths would have drawn it
    assert np.float64(np.float32(1 / 48)) > 1 / 48


# ---------------------------------------------------------------------------------------------- pytorch3d itself

def test_rasterize_is_pytorch3ds_cpu_rasterizer_where_installed():
    p3d = pytest.importorskip("pytorch3d")  # not installable on the development machine
    from pytorch3d.renderer.points import rasterize_points
    from pytorch3d.structures import Pointclouds

    del p3d
    rng = np.random.default_rng(1)
    for H, W, n, radius in ((7, 11, 40, 0.3), (32, 20, 300, 0.011 * 8), (16, 16, 80, 0.05)):
        x = rng.uniform(-1.3, 1.3, n).astype(np.float32)
        y = rng.uniform(-1.3, 1.3, n).astype(np.float32)
        z = rng.choice([-0.1, 0.0, 0.2, 0.5], n).astype(np.float32)
        pts = torch.from_numpy(np.stack([x, y, z], 1))
        want = rasterize_points(Pointclouds(points=[pts]), image_size=(H, W), radius=radius, points_per_pixel=10,
                                bin_size=0)
        got = rr.rasterize(x, y, z, radius, H, W)
        assert np.array_equal(got[0], want[0][0].numpy().astype(np.int64))
        assert np.array_equal(got[1], want[1][0].numpy()) and np.array_equal(got[2], want[2][0].numpy())


def test_coverage_is_the_releases_pytorch3d_render_where_installed():
    pytest.importorskip("pytorch3d")
    from pytorch3d.renderer import (
        AlphaCompositor,
        PerspectiveCameras,
        PointsRasterizationSettings,
        PointsRasterizer,
        PointsRenderer,
    )
    from pytorch3d.structures import Pointclouds

    H, W = 96, 144  # the release's camera, as its gradio_run.py builds it
    K = Intrinsics.release(W, H)
    R = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))[None]
    cameras = PerspectiveCameras(focal_length=((K.fx, K.fy),), principal_point=((W / 2, H / 2),), in_ndc=False,
                                 image_size=((H, W),), R=R, T=torch.zeros(1, 3))
    rows, cols = np.mgrid[30:60, 40:80]
    u, v = cols.ravel().astype(np.float64), rows.ravel().astype(np.float64)
    z0 = np.full(u.size, 1 / 40, np.float32)
    for delta, feature in (((0.0, 0.0, 0.0), 1), ((3.4, -2.2, -0.05), 2), ((10.0, 5.0, 0.02), 3)):
        pts = np.stack([(u + delta[0]).astype(np.float32), (v + delta[1]).astype(np.float32), z0], 1)
        pts = torch.from_numpy(pts)
        pts[:, 0] = (pts[:, 0] - W / 2) * pts[:, 2] / K.fx  # the release's back-projection, float32
        pts[:, 1] = (pts[:, 1] - H / 2) * pts[:, 2] / K.fy
        pts[:, 2] += torch.tensor(delta[2], dtype=torch.float64)
        radius = max(0.011 - delta[2], 0.011)
        renderer = PointsRenderer(
            rasterizer=PointsRasterizer(cameras=cameras, raster_settings=PointsRasterizationSettings(
                image_size=(H, W), radius=radius, points_per_pixel=10)),
            compositor=AlphaCompositor())
        image = renderer(Pointclouds(points=[pts], features=[torch.full((u.size, 1), float(feature))]))
        want = np.flatnonzero(image[0, ..., 0].numpy().round() != 0)
        x, y, z = rr.project(u, v, z0, delta, rr.ReleaseCamera.of(K, H, W))
        got, _ = rr.coverage(x, y, z, rr.depth_order(z), radius, feature, H, W)
        assert np.array_equal(got, want)
