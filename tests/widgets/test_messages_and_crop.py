"""The Studio's message area and its photo crop, driven through the Studio's Python methods (as the browser's
widgets call them):

- an error, and what the Studio says when it opens, stay until the user's next action; a broken autosave is said
  as an error, whole behind "details"; hints go stale with the next edit; the brush size shows in mask mode only;
- a photo of another aspect shows its crop, which moves (one undo step) until the first mask, and is autosaved.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipycanvas")

from levitor.bundled import bundled_scene
from levitor_widgets import Studio
from levitor_widgets.toolbar import LINE_CHARS


@pytest.fixture
def garden(tmp_path):
    return Studio(bundled_scene(80, 128, num_frames=4), out_dir=tmp_path, name="garden", show_3d=False)


@pytest.fixture(scope="module")
def tall_photo():
    """512 x 512: the 512x320 scene is its rows 96..416 when centred, and needs no resize (exact pixels)."""
    y, x = np.mgrid[0:512, 0:512]
    rgb = np.stack([y // 2, x // 2, (y + x) // 4], -1).astype(np.uint8)
    rgb[200:300, 200:300] = (250, 30, 30)  # an object to box later
    return rgb


# ---------------------------------------------------------------------- messages
def test_an_error_stays_until_the_next_action(garden):
    garden.set_point_frame(0, 0, 99)  # a frame past the clip's end: refused
    assert garden.messages.error and garden.messages.held
    error = garden.messages.text
    garden.refresh()  # redraws and the hints they bring never replace it
    garden.say("P1 is the reference: 1x by definition")
    assert garden.messages.text == error and garden.messages.error
    assert garden.messages.log[-1] == ("P1 is the reference: 1x by definition", False)  # said, kept in the log
    garden.set_mode("select")  # the next action: the error was about what came before
    assert garden.messages.text == "" and not garden.messages.held
    garden.say("a hint")
    assert garden.messages.text == "a hint"


def test_a_newer_error_replaces_a_held_one_and_is_styled_as_one(garden):
    garden.say("first", error=True)
    garden.say("second", error=True)
    assert garden.messages.text == "second"
    assert "levitor-error" in garden.messages.line.value and "#a00" in garden.messages.line.value


def _reopened(tmp_path):
    """The scene "garden" edited and closed, then opened again: the second Studio resumes its autosave."""
    scene = bundled_scene(80, 128, num_frames=4)
    first = Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)
    first.set_mode("path")
    first.add_point(100.0, 70.0)
    first.close()
    return scene, Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)


def test_the_resumed_autosave_note_is_not_replaced_by_a_hint(tmp_path):
    _, again = _reopened(tmp_path)
    assert again.resumed and again.messages.text.startswith("resumed the autosave of 'garden'")
    again.show_panels()
    again.say("P1 is the reference: 1x by definition")  # what a browser's first echo used to say
    assert again.messages.text.startswith("resumed the autosave") and not again.messages.error
    again.set_frame(1)
    assert again.messages.text == ""


def test_a_corrupt_autosave_is_an_error_shown_whole_behind_details(tmp_path):
    scene = bundled_scene(80, 128, num_frames=4)
    first = Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)
    first.set_mode("path")
    first.add_point(100.0, 70.0)
    path = first.autosave_path
    first.close()
    path.write_text("{ not json")
    again = Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)
    m = again.messages
    assert m.error and m.held and "could not be read" in m.text
    assert len(m.text) > LINE_CHARS  # too long for its line: all of it behind "details"
    assert "could not be read" in m.details.value and "starts afresh" in m.details.value
    assert m.toggle.layout.visibility == "visible"
    m.toggle.value = True
    assert m.details.layout.display == ""


def test_hints_go_stale_with_the_next_edit(garden):
    garden.set_mode("path")
    j = garden.add_point(100.0, 60.0)
    assert garden.view.hint is not None and garden.canvas.shown["paths"][1] is not None
    assert f"P{j + 1}:" in garden.path_panel.hint.value
    garden.refresh()  # a redraw with no edit keeps them
    assert garden.view.hint is not None and garden.path_panel.hint.value
    garden.set_nearness(garden.view.active, j, 1.5)
    garden.scheduler.flush()
    assert garden.view.hint is None and garden.canvas.shown["paths"][1] is None
    assert garden.path_panel.hint.value == ""


def test_the_brush_size_shows_in_mask_mode_only(garden):
    garden.set_tool("brush")
    assert garden.maskbar.size.layout.visibility == "visible"
    garden.set_mode("path")
    assert garden.maskbar.size.layout.visibility == "hidden"
    assert garden.maskbar.tools_row.layout.visibility == "hidden"
    garden.set_tool("flood")
    garden.set_mode("select")
    assert garden.maskbar.tolerance.layout.visibility == "hidden"


# ---------------------------------------------------------------------- the photo's crop
def test_a_cropped_photo_says_so_and_shows_the_cut_away_bands(tall_photo, tmp_path):
    s = Studio(tall_photo, out_dir=tmp_path, segmenter=None, show_3d=False)
    assert "the photo is cropped to the scene's 512x320" in s.messages.text
    assert "the top 96 px and the bottom 96 px of the photo" in s.messages.text
    assert np.array_equal(s.scene.image, tall_photo[96:416])
    f = s.framing
    assert f.widget.layout.display == "" and not f.offset.disabled and f.offset.description == "up / down"
    import io

    from PIL import Image

    pic = np.asarray(Image.open(io.BytesIO(f.picture.value)).convert("RGB")).astype(int)
    assert pic.shape[:2] == (160, 160)  # the whole photo, scaled to the panel (512 -> 160)
    band, kept = pic[10, 50], pic[80, 50]  # row 10 is cut away (dimmed), row 80 is in the crop
    src_band, src_kept = tall_photo[32, 160], tall_photo[256, 160]
    assert np.all(band <= src_band * 0.3 + 3)
    assert np.all(np.abs(kept - src_kept) <= 6)


def test_the_crop_moves_before_any_mask_and_reopens_with_the_photo(tall_photo, tmp_path):
    s = Studio(tall_photo, out_dir=tmp_path, segmenter=None, show_3d=False, name="tall")
    s.set_crop(-1.0)
    assert np.array_equal(s.scene.image, tall_photo[:320]) and s.scene.crop_offset == -1.0
    assert s.canvas.shown["image"] is s.scene.image  # the canvas shows the new crop
    assert "crop moved to -1.00" in s.messages.text and "the bottom 192 px" in s.messages.text
    assert s.framing.offset.value == -1.0
    assert s.undo() and s.scene.crop_offset == 0.0 and np.array_equal(s.scene.image, tall_photo[96:416])
    assert s.redo() and s.scene.crop_offset == -1.0
    s.close()
    again = Studio(tall_photo, out_dir=tmp_path, segmenter=None, show_3d=False, name="tall")
    assert again.resumed and again.scene.crop_offset == -1.0 and np.array_equal(again.scene.image, tall_photo[:320])
    saved = again.save(tmp_path / "tall.json")
    from levitor.scene import Scene

    assert Scene.load(saved).crop_offset == -1.0
    again.box(190, 90, 310, 210)  # the red square, now at rows 200..300 of the photo = 200..300 of the scene
    assert again.scene.masks
    assert again.framing.offset.disabled and "Fixed now" in again.framing.note.value
    assert again.framing.picture.layout.display == "none"  # one line says so
    with pytest.raises(ValueError, match="the crop is fixed once a mask exists"):
        again.set_crop(0.5)
    again.framing.on_offset(0.5)  # the slider (disabled in the browser): said as an error
    assert again.messages.error and "the crop is fixed once a mask exists" in again.messages.text
    assert again.scene.crop_offset == -1.0


def test_a_photo_of_the_scenes_aspect_has_no_crop_panel(tmp_path):
    rgb = np.zeros((320, 512, 3), np.uint8)
    s = Studio(rgb, out_dir=tmp_path, segmenter=None, show_3d=False)
    assert s.framing.widget.layout.display == "none" and "cropped" not in s.messages.text
    with pytest.raises(ValueError, match="no photo to crop again"):
        s.set_crop(0.5)


def test_a_warning_is_said_in_the_message_area_not_printed(garden, recwarn):
    import warnings

    def noisy():
        warnings.warn("an engine warning", UserWarning, stacklevel=1)

    garden._said(noisy)()  # a redraw job that warns
    assert garden.messages.text == "warning: an engine warning"
    assert "UserWarning at" in garden.messages.detail_text
    assert not [w for w in recwarn if "an engine warning" in str(w.message)]  # nothing printed above the Studio


def test_a_warning_while_opening_joins_the_opening_message(tmp_path, monkeypatch, recwarn):
    import warnings

    import levitor_widgets.opening as opening

    real = opening.open_target

    def warn_then_open(*args, **kwargs):
        warnings.warn("photo.jpg is 9000x9000 pixels; downscaled", UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr("levitor_widgets.studio.open_target", warn_then_open)
    s = Studio(np.zeros((320, 512, 3), np.uint8), out_dir=tmp_path, segmenter=None, show_3d=False)
    assert "warning: photo.jpg is 9000x9000 pixels; downscaled" in s.messages.text
    assert not [w for w in recwarn if "downscaled" in str(w.message)]


def test_a_click_on_the_crop_picture_centres_the_crop_there(tall_photo, tmp_path):
    from levitor_widgets.framing import offset_at

    window = (96, 0, 320, 512)
    assert offset_at((512, 512), window, 0.5, 0.5) == 0.0
    assert offset_at((512, 512), window, 0.5, 0.05) == -1.0  # near the top: as high as it goes
    assert offset_at((512, 512), window, 0.5, 0.99) == 1.0
    assert offset_at((512, 512), window, 0.5, (48 + 160) / 512) == -0.5  # the window from row 48
    assert offset_at((320, 1024), (0, 256, 320, 512), 0.25, 0.5) == -1.0  # a wide photo moves left-right
    s = Studio(tall_photo, out_dir=tmp_path, segmenter=None, show_3d=False)
    s.framing._clicked({"relativeX": 80, "relativeY": 8, "boundingRectWidth": 160, "boundingRectHeight": 160})
    assert s.scene.crop_offset == -1.0 and np.array_equal(s.scene.image, tall_photo[:320])


def test_a_closed_studio_says_so_over_its_held_opening_note(tmp_path):
    scene, old = _reopened(tmp_path)
    assert old.messages.held and old.messages.text.startswith("resumed")
    Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)  # the cell is run again
    assert old.closed and old.messages.text.startswith("this Studio was closed")
