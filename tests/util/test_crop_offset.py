"""The photo's crop can move: the pixels of a moved crop are the photo's window, the framing round-trips through
the scene file, and the editor moves it only before any mask (one undo step)."""

from __future__ import annotations

import numpy as np
import pytest

from levitor._util.images import center_crop_box, fit_image
from levitor.editing import SceneEditor
from levitor.scene import Scene


@pytest.fixture
def tall_photo():
    """512 wide x 512 tall: cropping to 320x512 cuts 192 rows, and needs no resize (so pixels compare exactly)."""
    return np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)


@pytest.mark.parametrize("offset, top", [(-1.0, 0), (0.0, 96), (1.0, 192), (-0.5, 48), (0.5, 144)])
def test_moved_crop_is_the_photos_window(tall_photo, offset, top):
    assert center_crop_box(512, 512, 320, 512, offset) == (top, 0, 320, 512)
    assert np.array_equal(fit_image(tall_photo, 320, 512, offset), tall_photo[top:top + 320])


def test_wide_photo_moves_left_and_right():
    assert center_crop_box(320, 1024, 320, 512, -1.0) == (0, 0, 320, 512)
    assert center_crop_box(320, 1024, 320, 512, 1.0) == (0, 512, 320, 512)
    assert center_crop_box(320, 1024, 320, 512) == (0, 256, 320, 512)  # the default stays the centre


@pytest.mark.parametrize("bad", [1.5, -2, "top", True, float("nan")])
def test_offset_outside_the_photo_is_refused(bad):
    with pytest.raises(ValueError, match="crop_offset must be a number in -1..1"):
        center_crop_box(512, 512, 320, 512, bad)


def test_framing_round_trips_through_the_scene_file(tmp_path, tall_photo):
    image = fit_image(tall_photo, 320, 512, -0.75)
    scene = Scene(image=image, depth=np.full((320, 512), 0.5, np.float32), crop_offset=-0.75)
    back = Scene.load(scene.save(tmp_path / "s.json"))
    assert back.crop_offset == -0.75
    assert np.array_equal(back.image, tall_photo[24:344])
    old = Scene.load(Scene(image=image, depth=scene.depth).save(tmp_path / "old.json"))
    assert old.crop_offset == 0.0


def test_editor_moves_the_crop_before_masks_only(tall_photo):
    depth = np.full((320, 512), 0.5, np.float32)
    scene = Scene(image=fit_image(tall_photo, 320, 512), depth=depth, depth_source="flat")
    ed = SceneEditor(scene)
    assert ed.set_framing(fit_image(tall_photo, 320, 512, -1.0), -1.0, depth, "flat")
    assert scene.crop_offset == -1.0 and np.array_equal(scene.image, tall_photo[:320])
    assert not ed.set_framing(scene.image, -1.0, depth, "flat")  # the same crop again changes nothing
    assert ed.undo() == "move the crop"
    assert scene.crop_offset == 0.0 and np.array_equal(scene.image, tall_photo[96:416])
    mask = np.zeros((320, 512), bool)
    mask[100:200, 100:200] = True
    ed.add_mask(mask, "user")
    with pytest.raises(ValueError, match="the crop is fixed once a mask exists"):
        ed.set_framing(fit_image(tall_photo, 320, 512, 1.0), 1.0, depth, "flat")
