import json

import numpy as np
import pytest
from PIL import Image

from levitor.scene import Intrinsics, ObjectTrack, PathPoint, Scene, decode_rle, encode_rle
from tests.conftest import make_scene


def test_json_round_trip_is_exact(tmp_path, demo_scene):
    s = demo_scene.copy()
    s.camera_path = [PathPoint(10, 20, 0.5), PathPoint(30, 20, 0.4, None)]
    s.intrinsics = Intrinsics.from_fov(s.width, s.height, 50.0)
    s.scale, s.lam, s.seed = 2.5, 40.0, 7
    path = s.save(tmp_path / "a" / "scene.json")
    t = Scene.load(path)
    np.testing.assert_array_equal(t.image, s.image)
    np.testing.assert_array_equal(t.depth, s.depth)
    assert len(t.masks) == len(s.masks) and all(np.array_equal(a, b) for a, b in zip(t.masks, s.masks))
    assert t.objects == s.objects and t.camera_path == s.camera_path and t.intrinsics == s.intrinsics
    assert (t.scale, t.lam, t.seed, t.num_frames, t.mask_sources) == (2.5, 40.0, 7, 16, s.mask_sources)
    # saving what was loaded gives the same JSON
    t.save(tmp_path / "b.json")
    a, b = json.loads(path.read_text()), json.loads((tmp_path / "b.json").read_text())
    a.pop("image_file"), a.pop("depth_file"), b.pop("image_file"), b.pop("depth_file")
    assert a == b


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (13, 2)])
def test_rle_round_trip(size):
    rng = np.random.default_rng(0)
    for m in (rng.random(size) > 0.5, np.ones(size, bool), np.zeros(size, bool)):
        np.testing.assert_array_equal(decode_rle(encode_rle(m), size), m)


def test_corrupt_files_name_the_field(tmp_path, demo_scene):
    path = demo_scene.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())

    def load_with(**changes):
        d = dict(doc, **changes)
        p = tmp_path / "x.json"
        p.write_text(json.dumps(d))
        return Scene.load(p)

    with pytest.raises(ValueError, match="'masks'"):
        load_with(masks=[{"size": [320, 512], "counts": [5, 6]}])
    with pytest.raises(ValueError, match=r"'objects\[0\]' must be an object with mask_index and path"):
        load_with(objects=[{"path": []}])
    with pytest.raises(ValueError, match="'version'.*newer"):
        load_with(version=99)
    with pytest.raises(ValueError, match="'version'.*older"):
        load_with(version=0)
    with pytest.raises(FileNotFoundError, match="'image_file'"):
        load_with(image_file="missing.png")
    with pytest.raises(ValueError, match="'image_file' must name a file beside the scene"):
        load_with(image_file="../../etc/passwd")
    with pytest.raises(ValueError, match="'format'"):
        load_with(format="something-else")
    with pytest.raises(ValueError, match=r"objects\[0\].path\[0\].depth"):
        bad = json.loads(json.dumps(doc))
        bad["objects"][0]["path"][0]["depth"] = -1
        load_with(**bad)
    (tmp_path / "trunc.json").write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match="not a valid scene file"):
        Scene.load(tmp_path / "trunc.json")
    with pytest.raises(FileNotFoundError):
        Scene.load(tmp_path / "nope.json")


def test_validation_messages():
    s = make_scene(objects=[(10, 10, 30, 30, 0.3)])
    s.objects = [ObjectTrack(0, [PathPoint(20, 20, 0.3), PathPoint(40, 20, float("nan"))])]
    with pytest.raises(ValueError, match=r"path\[1\].depth must be a finite number"):
        s.validate()
    for bad in (0.0, -0.1, 1.0001, 255.0, 1e300):
        s.objects = [ObjectTrack(0, [PathPoint(20, 20, bad)])]
        with pytest.raises(ValueError, match=r"path\[0\].depth must be in \(0, 1\].*1 / disparity.*0\.\.255"):
            s.validate()
    s.objects = [ObjectTrack(3, [PathPoint(20, 20, 0.3)])]
    with pytest.raises(ValueError, match="not a mask index"):
        s.validate()
    s.objects = [ObjectTrack(0, [PathPoint(20, 20, 0.3, 0), PathPoint(20, 20, 0.3, 99)])]
    with pytest.raises(ValueError, match=r"frame = 99 is outside the clip's frames 0\.\.5; set it to a frame in"):
        s.validate()
    s.masks.append(np.zeros((64, 96), bool))
    s.mask_sources.append("brush")
    with pytest.raises(ValueError, match="empty"):
        s.select(1)
    with pytest.raises(ValueError, match="scale"):
        s.objects, s.scale = [], 0.0
        s.validate()


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "F", "P", "1"])
def test_image_modes_become_rgb(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    s = Scene(image=img, depth=np.full((30, 40), 0.5, np.float32))
    assert s.image.shape == (30, 40, 3) and s.image.dtype == np.uint8


def test_bad_images_and_depths():
    with pytest.raises(ValueError, match="at least 8x8"):
        Scene(image=np.zeros((4, 4, 3), np.uint8), depth=np.ones((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        Scene(image=np.zeros((20, 20, 2), np.uint8), depth=np.ones((20, 20)))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Scene(image=np.zeros((20, 20, 3), np.uint8), depth=np.zeros((20, 20)))
    with pytest.raises(ValueError, match="NaN"):
        d = np.ones((20, 20))
        d[3, 3] = np.nan
        Scene(image=np.zeros((20, 20, 3), np.uint8), depth=d)
    with pytest.raises(ValueError, match="depth map has shape"):
        Scene(image=np.zeros((20, 20, 3), np.uint8), depth=np.ones((21, 20)))
    with pytest.raises(ValueError, match="masks must match"):
        Scene(image=np.zeros((20, 20, 3), np.uint8), depth=np.ones((20, 20)), masks=[np.ones((5, 5), bool)])


def test_select_starts_at_centroid_and_median_depth():
    s = make_scene(objects=[(10, 20, 30, 40, 0.25)])
    obj = s.select(0)
    assert obj.path[0].x == pytest.approx(19.5) and obj.path[0].y == pytest.approx(29.5)
    assert obj.path[0].depth == pytest.approx(0.25)
    assert s.select(0) is obj  # selecting twice does not duplicate
    assert s.mask_at(15, 25) == 0 and s.mask_at(1, 1) is None and s.depth_at(15, 25) == pytest.approx(0.25)


def test_release_intrinsics():
    k = Intrinsics.release(512, 320)
    assert (k.fx, k.fy, k.cx, k.cy) == (3866.378, 4538.052, 256.0, 160.0)


def test_save_accepts_what_validate_accepts_numpy_numbers_included(tmp_path):
    s = make_scene(objects=[(10, 10, 30, 30, 0.3), (40, 20, 60, 40, 0.6)])
    areas = np.array([m.sum() for m in s.masks])
    obj = s.select(np.argmax(areas))  # a numpy integer mask index
    obj.path.append(PathPoint(np.float32(50.5), np.int64(30), np.float64(0.25)))
    s.scale, s.lam, s.k_max, s.seed = np.float32(2.0), np.float64(40.0), np.int32(6), np.uint32(7)
    s.intrinsics = Intrinsics(np.float32(100.0), 120.0, np.int64(48), 32.0)
    path = s.save(tmp_path / "numpy.json")
    doc = json.loads(path.read_text())
    assert doc["objects"][0]["mask_index"] == int(np.argmax(areas)) and doc["scale"] == 2.0 and doc["k_max"] == 6
    back = Scene.load(path)
    assert back.objects[0].path[1] == PathPoint(50.5, 30, 0.25) and back.seed == 7 and back.intrinsics.fx == 100.0


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    s = make_scene(objects=[(10, 10, 30, 30, 0.3)])
    s.select(0).path.append(PathPoint(40, 20, 255.0))  # a 0..255 disparity typed as a depth
    with pytest.raises(ValueError, match=r"depth must be in \(0, 1\]"):
        s.save(tmp_path / "bad.json")
    assert not list(tmp_path.iterdir())  # no JSON, no image, no depth file
    s.objects[0].path[1].depth = 0.2
    s.k_max = 3.5  # load would read int(3.5): a different scene
    with pytest.raises(ValueError, match=r"k_max .* must be a whole number in 1\.\.64, got 3\.5; the release uses 8"):
        s.save(tmp_path / "bad.json")
    s.k_max = 8
    s.objects[0].path[1].frame = 2.5
    with pytest.raises(ValueError, match=r"frame must be a whole frame index in 0\.\.5 or None"):
        s.validate()


@pytest.mark.parametrize("field, value, match", [
    ("scale", 1e9, r"scale .* must be in \(0, 64\]"),
    ("scale", 0.0, r"scale .* must be in \(0, 64\]"),
    ("k_max", 100, r"k_max .* must be a whole number in 1\.\.64, got 100; the release uses 8"),
    ("k_min_moved", 0, r"k_min_moved .* must be a whole number in 1\.\.64, got 0; the release uses 3"),
    ("num_frames", 10_000, r"num_frames must be a whole number of frames in 2\.\.256, got 10000; the release"),
    ("num_frames", True, "num_frames must be a whole number of frames in 2..256, got True"),
    ("seed", -1, r"seed must be a whole number in 0\.\.2\*\*63-1, got -1"),
])
def test_bounded_fields(field, value, match):
    s = make_scene(objects=[(10, 10, 30, 30, 0.3)])
    setattr(s, field, value)
    with pytest.raises(ValueError, match=match):
        s.validate()


@pytest.mark.parametrize("fx, fy, cx, cy, match", [
    (0.0, 100.0, 48, 32, r"fx \(focal length, pixels\) must be > 0"),
    (100.0, -5.0, 48, 32, r"fy \(focal length, pixels\) must be > 0"),
    (float("nan"), 100.0, 48, 32, "fx must be a finite number"),
    (100.0, 100.0, float("inf"), 32, "cx must be a finite number"),
])
def test_intrinsics_must_be_positive_and_finite(fx, fy, cx, cy, match):
    with pytest.raises(ValueError, match=match):
        Intrinsics(fx, fy, cx, cy)
    s = make_scene(objects=[(10, 10, 30, 30, 0.3)])
    s.intrinsics = Intrinsics(100.0, 100.0, 48, 32)
    s.intrinsics.fx, s.intrinsics.fy, s.intrinsics.cx, s.intrinsics.cy = fx, fy, cx, cy  # set after construction
    with pytest.raises(ValueError, match=match):
        s.validate()


def test_random_scenes_with_numpy_values_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for n in range(40):
        s = make_scene(objects=[(10, 10, 30, 30, 0.3), (40, 20, 60, 40, 0.6)], num_frames=int(rng.integers(2, 8)))
        obj = s.select(rng.integers(0, 2))
        for _ in range(int(rng.integers(0, 3))):
            obj.path.append(PathPoint(rng.uniform(0, 96), rng.uniform(0, 64), rng.uniform(0.01, 1.0)))
        s.scale = rng.choice([0.5, 1.0, 2.0])
        Scene.load(s.save(tmp_path / f"s{n}.json"))
# ------------------------------------------------------------------------------ commit protocol, torn files
def _side_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".png", ".npy"))


def test_save_commits_side_files_by_content_and_removes_superseded_ones(tmp_path, demo_scene):
    scene = demo_scene.copy()
    path = scene.save(tmp_path / "s.json")
    first = _side_files(tmp_path)
    assert len(first) == 2 and all("-" in n for n in first)  # content-hash names
    scene.objects[0].path[-1].x += 5  # a path edit: only the JSON changes
    scene.save(path)
    assert _side_files(tmp_path) == first
    scene.image = scene.image.copy()
    scene.image[0, 0] = 0  # new pixels: a new image file, the old one removed after the commit
    scene.save(path)
    now = _side_files(tmp_path)
    assert len(now) == 2 and now != first and [n for n in now if n.endswith(".npy")] == [n for n in first
                                                                                        if n.endswith(".npy")]
    assert Scene.load(path).image[0, 0].tolist() == [0, 0, 0]


def test_legacy_unhashed_side_files_still_load_and_are_replaced(tmp_path, demo_scene):
    from PIL import Image

    path = demo_scene.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    (tmp_path / doc["image_file"]).rename(tmp_path / "s.image.png")
    (tmp_path / doc["depth_file"]).rename(tmp_path / "s.depth.npy")
    path.write_text(json.dumps({**doc, "image_file": "s.image.png", "depth_file": "s.depth.npy"}))
    old = Scene.load(path)  # what an older levitor wrote
    np.testing.assert_array_equal(old.image, np.asarray(Image.open(tmp_path / "s.image.png")))
    old.save(path)
    assert "s.image.png" not in _side_files(tmp_path) and len(_side_files(tmp_path)) == 2


def test_numpy_scalars_save_as_json_numbers(tmp_path, demo_scene):
    scene = demo_scene.copy()
    scene.objects[0].path.append(PathPoint(np.float32(300.5), np.int64(150), np.float64(0.01)))
    scene.seed = np.int64(7)
    back = Scene.load(scene.save(tmp_path / "s.json"))
    assert back.objects[0].path[-1].x == pytest.approx(300.5) and back.seed == 7


def test_torn_or_missing_side_files_are_named_and_nothing_is_deleted(tmp_path, demo_scene):
    path = demo_scene.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    image, depth = tmp_path / doc["image_file"], tmp_path / doc["depth_file"]
    good_depth = depth.read_bytes()
    depth.write_bytes(good_depth[: len(good_depth) // 3])
    with pytest.raises(ValueError, match=f"depth file {depth}.*torn"):
        Scene.load(path)
    depth.write_bytes(good_depth)
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"image file {image}.*torn"):
        Scene.load(path)
    assert image.exists() and depth.exists() and path.exists()  # a failed read removes nothing
    image.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        Scene.load(path)


def test_huge_sizes_and_fractional_indices_are_refused_before_allocating(tmp_path, demo_scene):
    path = demo_scene.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    p = tmp_path / "x.json"
    p.write_text(json.dumps({**doc, "size": [100_000, 100_000],
                             "masks": [{"size": [100_000, 100_000], "counts": [10**10]}]}))
    with pytest.raises(ValueError, match="at most 8192 pixels a side"):
        Scene.load(p)
    bad = json.loads(json.dumps(doc))
    bad["objects"][0]["mask_index"] = 4.7
    p.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"field 'objects\[0\]\.mask_index' must be a whole number, got 4\.7"):
        Scene.load(p)


def test_save_refuses_what_load_would_refuse_and_leaves_the_old_file(tmp_path, demo_scene):
    path = demo_scene.save(tmp_path / "s.json")
    before = path.read_bytes()
    scene = demo_scene.copy()
    scene.scale = 0
    with pytest.raises(ValueError, match="scale"):
        scene.save(path)
    assert path.read_bytes() == before
    with pytest.raises(IsADirectoryError):
        demo_scene.save(tmp_path)


class _Killed(BaseException):
    """Stands in for SIGKILL: raised from inside a save, it skips every except Exception on its way out."""


def _same_scene(a, b) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert [o.path for o in a.objects] == [o.path for o in b.objects] and a.scale == b.scale


def test_save_kill_load_sequences_always_load_the_last_committed_scene(tmp_path, demo_scene, monkeypatch):
    """Random edits and saves, each save cut short at a random file operation (image, depth, JSON, clean-up):
    loading always gives the scene of the last save whose JSON rename happened, exactly."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    runs = iter(range(10**9))

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["path", "image", "depth", "scale"]), st.integers(0, 8)),
                    min_size=1, max_size=6))
    def run(steps):
        folder = tmp_path / f"run{next(runs)}"
        folder.mkdir()
        path = folder / "scene.json"
        scene = demo_scene.copy()
        committed = Scene.load(scene.save(path))
        for n, (edit, kill_at) in enumerate(steps):
            if edit == "path":
                scene.objects[0].path[-1].x = float(100 + 10 * n)
            elif edit == "image":
                scene.image = scene.image.copy()
                scene.image[n, n] = (n * 37) % 256
            elif edit == "depth":
                scene.depth = scene.depth.copy()
                scene.depth[n, 0] = 0.5 + 0.01 * n
            else:
                scene.scale = 1.0 + n
            if _save_killed_at(scene, path, kill_at, monkeypatch):
                committed = scene.copy()
            _same_scene(Scene.load(path), committed)

    run()


def _save_killed_at(scene, path, kill_at: int, monkeypatch) -> bool:
    """Save, "killed" at the kill_at-th rename or clean-up deletion (0: not killed); True if the JSON committed."""
    import os

    import levitor._util.io as io_mod

    real_replace, real_unlink = os.replace, os.unlink
    calls = {"n": 0}
    done = {"json": False}

    def count():
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise _Killed

    def replace(src, dst):
        count()
        real_replace(src, dst)
        if str(dst) == str(path):
            done["json"] = True

    def unlink(p, *a, **k):
        if ".tmp." not in str(p):  # the clean-up of old side files, not a writer removing its own temporary file
            count()
        real_unlink(p, *a, **k)

    monkeypatch.setattr(io_mod.os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    try:
        scene.save(path)
    except _Killed:
        pass
    finally:
        monkeypatch.setattr(io_mod.os, "replace", real_replace)
        monkeypatch.setattr(os, "unlink", real_unlink)
    return done["json"]


@pytest.mark.parametrize("key, value, match", [
    ("num_frames", 16.9, r"field 'num_frames' must be a whole number, got 16\.9"),
    ("seed", 7.5, r"field 'seed' must be a whole number, got 7\.5"),
    ("k_max", "8", r"field 'k_max' must be a whole number, got '8'"),
    ("scale", "2", r"field 'scale' must be a number, got '2'"),
    ("interpolation", 3, r"field 'interpolation' must be a string, got 3"),
])
def test_scene_files_refuse_fractions_and_wrong_kinds_naming_the_field(tmp_path, demo_scene, key, value, match):
    """Issue 27: num_frames 16.9 used to load as 16, mask_index 4.7 said "field 'objects' is missing or corrupt"."""
    doc = json.loads(demo_scene.save(tmp_path / "s.json").read_text())
    doc[key] = value
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match) as e:
        Scene.load(tmp_path / "x.json")
    assert len(str(e.value).splitlines()) == 1


def test_whole_floats_in_scene_files_are_their_integers_and_path_frames_are_checked(tmp_path, demo_scene):
    s = demo_scene.copy()
    for p, f in zip(s.objects[0].path, (0, 5, 15)):
        p.frame = f
    doc = json.loads(s.save(tmp_path / "s.json").read_text())
    doc["num_frames"], doc["objects"][0]["path"][1]["frame"] = 16.0, 5.0  # what some JSON writers produce
    (tmp_path / "x.json").write_text(json.dumps(doc))
    back = Scene.load(tmp_path / "x.json")
    assert back.num_frames == 16 and back.objects[0].path[1].frame == 5 and isinstance(back.num_frames, int)
    doc["objects"][0]["path"][1]["frame"] = 2.5
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"field 'objects\[0\]\.path\[1\]\.frame' must be a whole number, got 2\.5"):
        Scene.load(tmp_path / "x.json")
    doc["objects"][0]["path"][1] = {"x": 1, "y": 2, "z": 0.5}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"'objects\[0\]\.path\[1\]' must have x, y, depth.*got keys \['x', 'y', 'z'"):
        Scene.load(tmp_path / "x.json")


def test_refusals_say_the_rule_and_the_fix_in_plain_numbers():
    s = make_scene(objects=[(10, 10, 30, 30, 0.3)])
    s.objects = [ObjectTrack(np.int64(8), [PathPoint(20, 20, 0.3)])]
    with pytest.raises(ValueError) as e:
        s.validate()
    assert str(e.value) == ("objects[0].mask_index = 8 is not a mask index: the scene has 1 mask (indices 0..0); "
                            "pick an existing mask, or add the mask first (Scene.add_mask)")
    s.objects = [ObjectTrack(0, [PathPoint(20, 20, 0.3, 3), PathPoint(30, 20, 0.3, 2)])]
    with pytest.raises(ValueError, match=r"frames must strictly increase along the path, got \[3, 2\]; give each "
                                         r"later point a later frame"):
        s.validate()
    s.objects = []
    s.masks.append(np.ones((3, 3), bool))  # a mask appended by hand, of the wrong size
    s.mask_sources.append("user")
    with pytest.raises(ValueError, match=r"masks\[1\] must be an \(64, 96\) bool array like the image.*add_mask"):
        s.validate()
