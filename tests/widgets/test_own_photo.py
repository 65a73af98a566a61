"""Your own photo without any weights, end to end from Python: a real photo (scikit-image's chelsea, the cat),
no masks at first, a GrabCut box, refining tools, depth choices, a path, the preview video; and the 3D view."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ipycanvas")
pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from levitor_widgets import Studio
from levitor_widgets.view3d import REPLY, REQUEST, View3D

HEAD_BOX = (25, 2, 450, 318)  # around the cat's head in the 512x320 scene
NOSE, BACKGROUND = (300, 265), (490, 150)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    return path


@pytest.fixture
def cat(photo, tmp_path):
    return Studio(photo, out_dir=tmp_path / "out", segmenter=None)


def test_a_photo_opens_without_masks_with_an_empty_3d_view_and_a_short_note(cat):
    assert cat.scene.masks == [] and cat.scene.objects == [] and cat.result is None
    assert cat.mode == "mask" and cat.tool == "box"
    assert cat.scene.depth_source == "nearer:2"  # a flat background until there is an object to bring nearer
    assert cat.view3d is not None and 0 < cat.view3d.num_points <= 20_000
    assert "no objects yet" in cat.view3d.hint
    assert "\n" not in cat.messages.text and "huggingface" not in cat.messages.text
    assert "download" in cat.messages.detail_text  # the how-to is behind "details"


def test_generate_before_any_object_says_what_to_do_not_that_it_failed(cat):
    assert cat.generate(wait=True) is False
    panel = cat.generate_panel
    assert panel.error is None and panel.outcome is None and not panel.busy
    assert panel.summary.startswith("nothing to generate yet") and "mask" in panel.summary
    assert "failed" not in panel.status.value


def test_box_grabcut_refine_depth_path_and_preview(cat):
    cat.drag(*HEAD_BOX)  # the box tool: drag a box around the head
    assert len(cat.scene.masks) == 1 and cat.scene.mask_sources == ["grabcut"]
    mask = cat.scene.masks[0]
    assert mask[NOSE[1], NOSE[0]] and not mask[BACKGROUND[1], BACKGROUND[0]]
    assert 0.4 < mask.mean() < 0.9
    assert [o.name for o in cat.scene.objects] == ["object 1"] and cat.view.active == 0
    d = cat.scene.depth
    assert d[mask].max() == pytest.approx(d[~mask].min() / 2)  # nearer:2 follows the new mask
    assert cat.scene.objects[0].path[0].depth == pytest.approx(d[mask].max())
    cat.brush([(300, 300), (330, 300)], erase=True, size=8)  # the eraser takes a bite out of the chin
    assert cat.scene.masks[0].sum() < mask.sum() and not cat.scene.masks[0][300, 315]
    cat.lasso([(455, 40), (500, 40), (500, 90), (455, 90)])  # refine: a polygon added to the same mask
    assert cat.scene.masks[0][60, 480] and len(cat.scene.masks) == 1
    cat.undo()
    assert not cat.scene.masks[0][60, 480]
    cat.set_mode("path")
    cat.click(340, 250)
    cat.click(380, 230)
    assert len(cat.scene.objects[0].path) == 3
    assert cat.result is not None and cat.result.signal.num_points > 0
    assert cat.generate(wait=True)
    out = cat.generate_panel.outcome
    assert cat.generate_panel.error is None and out.video_path.exists() and out.video_path.stat().st_size > 0
    saved = json.loads(cat.autosave(force=True).read_text())
    assert saved["mask_sources"] == ["grabcut"] and saved["depth_source"] == "nearer:2"


def test_flood_with_a_tolerance_and_depth_choices(cat):
    small = cat.flood(*NOSE, tolerance=20)  # (tolerance 10 finds 131 px: too small for the engine, refused)
    n_small = int(cat.scene.masks[0].sum())
    cat.undo()
    cat.flood(*NOSE, tolerance=60)
    assert int(cat.scene.masks[0].sum()) > n_small and small == 0
    for kind in ("flat", "ground-plane", "nearer"):
        cat.set_depth(kind, 3.0)
        assert cat.scene.depth_source.startswith(kind)
        p1 = cat.scene.objects[0].path[0]
        assert p1.depth == pytest.approx(float(np.median(cat.scene.depth[cat.scene.masks[0]])))
    assert cat.scene.depth[cat.scene.masks[0]].max() == pytest.approx(cat.scene.depth.max() / 3)
    assert "depth-anything-v2" not in [v for _, v in cat.maskbar.depth.options]  # no weights here
    with pytest.raises(ValueError, match="weights"):
        cat.set_depth("depth-anything-v2")


def test_a_moved_object_at_depth_one_is_drawn_in_frame_0(cat):
    """Release-fidelity engine fix (levitor/motion): an object on the far plane (depth 1.0, the top of a
    ground-plane photo) must still be rendered by levitor's rules; it used to vanish. The release's rules (what the
    LeviTor weights get, and the live view shows with them chosen) never draw it: the Studio says so beside it."""
    cat.set_depth("ground-plane")
    cat.choose_model("mini")  # levitor's rules
    cat.lasso([(180, 5), (330, 5), (330, 60), (180, 60)])  # the forehead: above the horizon, depth 1.0
    obj = cat.scene.objects[0]
    assert obj.path[0].depth == pytest.approx(1.0)
    cat.set_mode("path")
    cat.click(300, 120)
    oid = cat.result.object_ids[0]
    assert oid > 0
    assert int((cat.result.instance[0] == oid).sum()) > 0.5 * cat.scene.masks[obj.mask_index].sum()
    assert cat.objects_panel.notes[0].value == ""
    cat.choose_model("levitor")  # the release's rules
    assert int((cat.result.instance[0] == oid).sum()) == 0
    assert "far_path_depth" in {w.reason for w in cat.result.warnings if w.object_index == 0}
    assert "path depth 1.0" in cat.objects_panel.notes[0].value


def test_two_photos_in_one_folder_keep_their_own_autosaves(photo, tmp_path):
    from PIL import Image

    coffee = tmp_path / "coffee.png"
    Image.fromarray(skdata.coffee()).save(coffee)
    out = tmp_path / "shared"
    a = Studio(photo, out_dir=out, segmenter=None, show_3d=False)
    a.drag(*HEAD_BOX)
    a.autosave()
    b = Studio(coffee, out_dir=out, segmenter=None, show_3d=False)
    b.drag(150, 20, 400, 250)
    b.drag(100, 200, 200, 300)
    b.autosave()
    a_again = Studio(photo, out_dir=out, segmenter=None, show_3d=False)
    assert a_again.resumed and len(a_again.scene.objects) == 1
    b_again = Studio(coffee, out_dir=out, segmenter=None, show_3d=False)
    assert b_again.resumed and len(b_again.scene.objects) == 2
    assert sorted(r.name for r in b_again.store.recent()) == ["chelsea", "coffee"]


def test_the_3d_view_state_is_complete_in_the_model(cat):
    plot = cat.view3d.plot
    if plot is None:
        pytest.skip("anywidget is not installed: the static fallback is tested below")
    cat.drag(*HEAD_BOX)
    cat.set_mode("path")
    cat.click(340, 250)
    cat._side_update()
    state = plot.get_state()
    traces = json.loads(state["traces"])
    names = [t["name"] for t in traces]
    assert "photo plane" in names and "camera frustum" in names and "object 1: path" in names
    assert len(plot.cloud_xyz) == 12 * cat.view3d.num_points and len(plot.cloud_rgb) == 3 * cat.view3d.num_points
    layout = json.loads(state["figure_layout"])
    assert layout["scene"]["yaxis"].get("type", "linear") == "linear"  # a linear depth axis
    assert plot.hint == ""
    sent = []
    plot.send = lambda content, buffers=None: sent.append((content, buffers))
    plot._on_msg(plot, {"type": REQUEST}, [])  # a page without Plotly asks the kernel for the bundle once
    assert sent[0][0] == {"type": REPLY} and b"plotly" in bytes(sent[0][1][0][:2000]).lower()


def test_the_static_3d_fallback(cat):
    view = View3D(backend="static")
    assert view.mode == "static"
    cat.view3d = view
    cat._side_update()
    assert view.num_points > 0 and len(view.figure["data"]) == 1 + view.num_traces
    assert view.figure["data"][0]["type"] == "scatter3d" and len(view.figure["data"][0]["x"]) == view.num_points
    # the figure is the Output's state (not a display captured by `with output:`): there even outside a kernel
    shown = [o for o in view.widget.outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1 and shown[0]["data"]["application/vnd.plotly.v1+json"] is view.figure
    cat._side_update()
    assert len(view.widget.outputs) == 1 + bool(view.hint)  # replaced, not appended


# ---------------------------------------------------------------------- tools tell the truth (issue 23, item 4)
DARK_BOX = (123, 178, 186, 214)  # a dark patch of the coffee photo: GrabCut finds 2 pixels there


@pytest.fixture(scope="module")
def coffee_photo(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("coffee") / "coffee.png"
    Image.fromarray(skdata.coffee()).save(path)
    return path


def _browser_drag(studio, points, shift=False, leave_at=None, back_at=None):
    """A drag as the browser sends it: ipycanvas' own press, moves, exit and release (canvas pixels), and
    ipyevents' Shift/Alt of the press and the held button on the way back. Press at points[0], move through the
    rest, release at the last; with ``leave_at`` the pointer leaves the canvas there before ``back_at`` (an index
    into points), and comes back with the button held."""
    if studio.canvas.events_backend != "ipyevents":
        pytest.skip("ipyevents is not installed")
    studio.canvas.move_throttle_ms = 0  # every move of the stroke (the browser's pace is not the test's)

    def canvas_msg(event, x, y):
        studio.canvas.widget._handle_custom_msg({"event": event, "x": x, "y": y}, [])

    def events_msg(kind, **fields):
        studio.canvas.events._handle_custom_msg({"type": kind, **fields}, [])

    canvas_msg("mouse_down", *points[0])
    events_msg("mousedown", shiftKey=shift, altKey=False, buttons=1)
    for i, (x, y) in enumerate(points[1:-1], start=1):
        if leave_at is not None and i == back_at:
            canvas_msg("mouse_out", *leave_at)
            assert "mouseenter" in studio.canvas.events.watched_events  # listened for only now
            events_msg("mouseenter", buttons=1)
        canvas_msg("mouse_move", x, y)
    canvas_msg("mouse_up", *points[-1])
    assert "mouseenter" not in studio.canvas.events.watched_events
    assert studio.canvas.errors == []


def test_a_grabcut_box_that_finds_two_pixels_makes_no_object_and_says_so(coffee_photo, tmp_path):
    from levitor._util.images import fit_image
    from levitor.perception.grabcut import grabcut_mask

    studio = Studio(coffee_photo, out_dir=tmp_path, segmenter=None, show_3d=False)
    assert int(grabcut_mask(studio.scene.image, DARK_BOX).sum()) == 2  # what GrabCut makes of the dark patch
    assert np.array_equal(studio.scene.image, fit_image(skdata.coffee(), 320, 512))
    studio.drag(*DARK_BOX)  # the box tool, as the mouse does it
    assert studio.scene.masks == [] and studio.scene.objects == [] and not studio.editor.can_undo
    text = studio.messages.text
    assert studio.messages.error and "mask made" not in text
    assert "GrabCut found only 2 px" in text and "164 px (0.1% of the image)" in text, text


def test_a_new_object_below_the_engines_minimum_is_refused(cat):
    small = [(100, 100), (110, 100), (110, 110), (100, 110)]  # 121 px; the engine keeps more than 163.84
    assert cat.lasso(small) is None
    assert cat.scene.masks == [] and not cat.editor.can_undo
    assert cat.messages.error and "the lasso found only 121 px" in cat.messages.text
    obj = cat.lasso([(100, 100), (120, 100), (120, 120), (100, 120)])  # 441 px: an object
    assert obj == 0 and int(cat.scene.masks[0].sum()) == 441
    assert "mask made by lasso (441 px)" in cat.messages.text
    steps = len(cat.editor.undo_stack)
    cat.brush([(100, 110), (120, 110)], erase=True, size=9)  # would leave fewer than 164 px: not done
    assert int(cat.scene.masks[0].sum()) == 441 and len(cat.editor.undo_stack) == steps
    assert cat.messages.error and "not done" in cat.messages.text and "164 px" in cat.messages.text
    cat.brush([(100, 100), (120, 100)], erase=True, size=3)  # a bite that leaves enough: done, with the count
    left = int(cat.scene.masks[0].sum())
    assert 164 <= left < 441 and f"{441 - left} px removed by eraser, {left} px now" in cat.messages.text
    oid = cat.result.object_ids[0]
    assert oid > 0 and int((cat.result.instance[0] == oid).sum()) > 0  # the engine keeps what the Studio made


def test_a_lasso_that_runs_past_the_image_edge_is_clipped_and_works(cat):
    from levitor.perception.manual import lasso_mask

    cat.drag(*HEAD_BOX)  # object 1 (GrabCut)
    cat.set_tool("lasso")
    before = cat.scene.masks[0].copy()
    # out through the right edge at y=60, back in at y=140 with the button held: the browser reports the point
    # where the pointer left (x=513) and nothing until it comes back
    stroke = [(440, 60), (460, 60), (480, 60), (500, 60), (510, 60), (509, 140), (480, 140), (440, 140)]
    _browser_drag(cat, stroke, leave_at=(513, 60), back_at=5)
    polygon = lasso_mask(stroke[:5] + [(513, 60)] + stroke[5:], (320, 512))
    assert polygon[:, 511].sum() > 30  # the clipped polygon reaches the last column (where it ran off)
    added = cat.scene.masks[0] & ~before
    assert np.array_equal(cat.scene.masks[0], before | polygon)
    n = int(added.sum())
    assert n > 2000 and f"object 1: {n:,} px added by lasso" in cat.messages.text, cat.messages.text
    # the same, Shift held: takes it away again
    _browser_drag(cat, stroke, shift=True, leave_at=(513, 60), back_at=5)
    assert np.array_equal(cat.scene.masks[0], before & ~polygon)
    removed = int((before & polygon).sum()) + n
    assert f"object 1: {removed:,} px removed by lasso" in cat.messages.text, cat.messages.text


def test_a_polygon_crossing_the_edge_is_clipped_and_says_what_it_did(cat):
    from levitor.perception.manual import lasso_mask

    cat.drag(*HEAD_BOX)
    before = cat.scene.masks[0].copy()
    outside = [(440, 200), (600, 200), (600, 260), (440, 260)]  # from Python: corners far off the image
    cat.lasso(outside)
    inside = lasso_mask([(440, 200), (511, 200), (511, 260), (440, 260)], (320, 512))
    assert np.array_equal(cat.scene.masks[0], before | inside)
    n = int((inside & ~before).sum())
    assert n > 1000 and f"{n:,} px added by lasso" in cat.messages.text
    cat.undo()
    cat.set_tool("lasso")  # the same by clicks: vertices on the last column, Enter closes it
    for x, y in [(440, 200), (511.8, 200), (511.8, 260), (440, 260)]:
        cat.click(x, y)
    cat.key("Enter")
    assert np.array_equal(cat.scene.masks[0], before | inside)
    assert f"{n:,} px added by lasso" in cat.messages.text
    cat.lasso([(520, 10), (600, 10), (600, 80)])  # wholly off the image: nothing, and why
    assert np.array_equal(cat.scene.masks[0], before | inside)
    assert "added nothing" in cat.messages.text and "no pixel of the image" in cat.messages.text
