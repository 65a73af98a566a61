"""The Studio driven from Python: simulated clicks, drags, slider moves and keys; assertions on the Scene and on
what each canvas layer was last given to draw (the browser tests check the real pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ipycanvas")
import levitor.engine  # noqa: F401  (the project itself must import: a broken import fails, never skips)
from levitor.bundled import bundled_scene
from levitor.defaults import NUM_INFERENCE_STEPS
from levitor.depth import depth_from_nearness, nearness_from_depth
from levitor.generation.model_choice import mini_info
from levitor_widgets import Studio
from levitor_widgets.pointer import PointerEvent
from levitor_widgets.presenter import OBJECT_ALPHA, mask_colors

# The bundled scene at half size keeps each engine update cheap; coordinates below are for 160 x 256.
H, W, F = 160, 256, 8
TREE = (210.0, 75.0)  # inside the tree's crown (mask 3), not selected in the bundled scene
BALL = (75.0, 114.0)  # the ball (mask 5), object 0 of the bundled scene
GROUND = (40.0, 150.0)


@pytest.fixture
def scene():
    return bundled_scene(H, W, num_frames=F)


@pytest.fixture
def studio(scene, tmp_path):
    return Studio(scene, out_dir=tmp_path / "out", show_3d=False, strip_scales=(0.5, 4.0))


def _alpha_at(studio, x, y):
    return int(studio.canvas.shown["mask"][int(y), int(x), 3])


def _scene_json(scene):
    return json.dumps([[(o.mask_index, o.name, [(p.x, p.y, p.depth, p.frame) for p in o.path]) for o in scene.objects],
                       scene.scale, [int(m.sum()) for m in scene.masks], float(scene.depth.sum())])


def test_displaying_a_scene_never_changes_it_nor_writes_an_autosave(scene, tmp_path):
    before = _scene_json(scene)
    s = Studio(scene, out_dir=tmp_path, show_3d=True)
    for j, row in enumerate(s.path_panel.rows):  # as if the table sent its values back, snapped to its step
        snapped = row.lo2 + round((np.log2(row.shown) - row.lo2) / row.step) * row.step
        s.path_panel.user_edit("nearness", j, 2.0 ** snapped, "slider")
    s.scrubber.scale.value = 2.0 ** (round(np.log2(s.scrubber.scale.value) / 0.05) * 0.05)
    s.activate(1)
    s._side_update()
    assert _scene_json(s.scene) == before and not s.editor.can_undo
    # no autosave: the only file is the slot's lock, which says who edits it (levitor_widgets/autosave_lock.py)
    assert [f.name for f in tmp_path.rglob("*") if f.is_file()] == ["lock.json"]


def test_click_selects_object_and_colours_stay_with_their_masks(studio):
    sky_before = studio.canvas.shown["mask"][5, 5].copy()
    tree = studio.scene.mask_at(*TREE)
    assert _alpha_at(studio, *TREE) < OBJECT_ALPHA  # an unselected instance is drawn fainter
    studio.set_mode("select")
    studio.click(*TREE)
    assert [o.mask_index for o in studio.scene.objects][-1] == tree
    assert studio.view.active == 2 and studio.mode == "path"  # the next clicks draw its path
    assert _alpha_at(studio, *TREE) == OBJECT_ALPHA
    np.testing.assert_array_equal(studio.canvas.shown["mask"][int(TREE[1]), int(TREE[0]), :3],
                                  mask_colors(len(studio.scene.masks))[tree])
    np.testing.assert_array_equal(studio.canvas.shown["mask"][5, 5], sky_before)  # the sky kept its colour
    assert "depth" in studio.canvas.shown["paths"][1][2]  # the depth hint at the click


def test_a_press_highlights_the_object_at_once_and_a_press_that_is_no_click_leaves_the_overlay_as_it_was(studio):
    """The canvas answers the press (a bare canvas's speed); the release selects. A press that becomes a drag or
    leaves the canvas puts the overlay back exactly and selects nothing."""
    from levitor_widgets.presenter import SELECT_FLASH_RGBA

    studio.set_mode("select")
    before = studio.canvas.shown["mask"].copy()
    x, y = int(TREE[0]), int(TREE[1])
    studio.canvas._down(PointerEvent(*TREE))
    np.testing.assert_array_equal(studio.canvas.shown["mask"][y, x], SELECT_FLASH_RGBA)
    assert len(studio.scene.objects) == 2 and not studio.editor.can_undo  # shown, not done
    studio.canvas._out(PointerEvent(*TREE))  # left the canvas: no click
    np.testing.assert_array_equal(studio.canvas.shown["mask"], before)
    assert len(studio.scene.objects) == 2
    studio.canvas._down(PointerEvent(*TREE))
    studio.canvas._up(PointerEvent(*TREE))  # the click: selected, the overlay follows the engine
    assert studio.scene.objects[-1].mask_index == studio.scene.mask_at(*TREE)
    assert _alpha_at(studio, *TREE) == OBJECT_ALPHA


def test_each_drawing_is_one_message_and_a_batch_joins_them(monkeypatch):
    """A layer's drawing reaches the browser as one message (dozens of commands one by one held back the paint of
    a slider's draft); a batch of several layers is one message too, not one per nested drawing."""
    import ipywidgets as W

    from levitor_widgets.canvas import PathDrawing, SceneCanvas

    canvas = SceneCanvas(64, 48, use_ipyevents=False)
    sent = []
    monkeypatch.setattr(W.Widget, "_send", lambda self, msg, buffers=None: sent.append(type(self).__name__))
    paths = [PathDrawing(np.array([[5.0, 5.0], [30.0, 20.0], [50.0, 40.0]]), (200, 30, 30), 1, label="a")]
    canvas.draw_paths(paths, (30.0, 20.0, "depth 0.5"))
    assert sent == ["_CanvasManager"]
    sent.clear()
    with canvas.batch():
        canvas.draw_points(np.array([[10.0, 10.0], [20.0, 30.0]]), np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
        canvas.draw_tool([{"kind": "box", "xy": (1, 2, 30, 40)}])
        canvas.draw_paths(paths, None)
        assert sent == []  # held until the batch ends
    assert sent == ["_CanvasManager"]


def test_the_press_highlight_travels_as_rectangles_that_cover_exactly_the_mask():
    """One rectangle per horizontal run (drawn at once by the browser, no image to decode): together exactly the
    mask's pixels, and the layer's record says what they show."""
    from levitor_widgets.canvas import SceneCanvas

    rng = np.random.default_rng(0)
    mask = rng.random((23, 31)) < 0.4
    mask[5] = True  # a full row: one run edge to edge
    canvas = SceneCanvas(64, 48, use_ipyevents=False)
    drawn = []
    layer = canvas.layers["mask"]
    layer.fill_rects = lambda x, y, w, h: drawn.append((np.asarray(x), np.asarray(y), np.asarray(w), h))
    canvas.fill_mask_runs(mask, 7, 9, (10, 20, 30, 200))
    assert len(drawn) == 2  # cleared, then filled: the same rectangles
    x, y, w, h = drawn[1]
    assert h == 1 and all(np.array_equal(a, b) for a, b in zip(drawn[0][:3], drawn[1][:3]))
    covered = np.zeros((48, 64), int)
    for xi, yi, wi in zip(x, y, w):
        covered[yi, xi:xi + wi] += 1
    expect = np.zeros((48, 64), int)
    expect[9:32, 7:38] = mask
    np.testing.assert_array_equal(covered, expect)  # every pixel once, nothing outside
    np.testing.assert_array_equal(canvas.shown["mask"][9:32, 7:38][mask], np.tile((10, 20, 30, 200), (mask.sum(), 1)))


def test_in_path_mode_a_click_on_another_object_selects_it(studio):
    assert studio.mode == "path" and studio.view.active == 1  # the box
    n_box = len(studio.scene.objects[1].path)
    studio.click(*BALL)  # object 0: activated, no point added anywhere
    assert studio.view.active == 0 and len(studio.scene.objects[1].path) == n_box
    assert "selected ball" in studio.messages.text
    studio.click(*TREE)  # an unselected object: selected
    assert studio.view.active == 2 and studio.scene.objects[2].mask_index == studio.scene.mask_at(*TREE)
    studio.click(*GROUND)  # the ground is background: a path point
    assert len(studio.scene.objects[2].path) == 2 and "background" in studio.messages.text


def test_one_undo_removes_one_point_and_redo_restores_it(studio):
    studio.activate(0)
    n = len(studio.scene.objects[0].path)
    studio.click(*GROUND)
    studio.click(GROUND[0] + 20, GROUND[1] - 5)
    assert len(studio.scene.objects[0].path) == n + 2
    assert studio.undo()
    assert len(studio.scene.objects[0].path) == n + 1
    assert len(studio.canvas.shown["paths"][0][0].xy) == n + 1  # the canvas follows
    assert studio.redo()
    assert len(studio.scene.objects[0].path) == n + 2
    studio.key("z")
    studio.key("y")
    assert len(studio.scene.objects[0].path) == n + 2


def test_path_points_depth_slider_and_points(studio):
    studio.set_mode("select")
    studio.click(*TREE)
    studio.path_panel.follow.value = False  # the old behaviour: a new point keeps the previous depth
    studio.click(200.0, 140.0)  # on the ground (a click on another object would select it)
    studio.click(150.0, 130.0)
    path = studio.scene.objects[-1].path
    assert [(round(p.x), round(p.y)) for p in path[1:]] == [(200, 140), (150, 130)]
    assert path[1].depth == path[0].depth
    np.testing.assert_allclose(studio.canvas.shown["paths"][0][-1].xy[1:], [[200, 140], [150, 130]])
    assert studio.path_panel.count == 3
    before = studio.canvas.shown["points"][0].copy()
    studio.scrubber.frame.value = F  # the last frame (the slider counts from 1), where the tree has arrived
    assert studio.view.frame == F - 1
    studio.path_panel.user_edit("nearness", 2, 1.25, via="slider")  # the browser's slider drag, as it arrives
    path = studio.scene.objects[-1].path  # edits replace the path (each one is an undoable command)
    assert path[2].depth == pytest.approx(depth_from_nearness(path[0].depth, 1.25))
    tree_id = studio.result.object_ids[-1]
    ids = studio.result.signal.instance.numpy()
    pts = studio.result.signal.points[F - 1].numpy()[ids == tree_id]
    assert np.linalg.norm(pts.mean(0) - [150, 130]) < 25  # the tree's points follow the path
    assert not np.array_equal(before, studio.canvas.shown["points"][0])


def test_nearness_slider_shows_the_reachable_range_and_says_why_it_stops(studio):
    studio.activate(0)  # the ball: its start is near already, so it can't come 4x nearer
    row = studio.path_panel.rows[1]
    ref = studio.scene.objects[0].path[0].depth
    assert 2.0 ** row.hi2 == pytest.approx(ref * 255, rel=1e-6) and 2.0 ** row.lo2 == pytest.approx(ref, rel=1e-6)
    studio.set_nearness(0, 1, 3.9)
    assert "can't come nearer" in studio.messages.text
    assert studio.scene.objects[0].path[1].depth == pytest.approx(1 / 255)


def test_p1_cannot_be_deleted(studio):
    n = len(studio.scene.objects[0].path)
    studio.delete_point(0, 0)
    assert len(studio.scene.objects[0].path) == n and "P1" in studio.messages.text
    assert not studio.path_panel.rows[0].deletable or studio.view.active != 0


def test_new_point_follows_the_ground(studio):
    studio.activate(0)
    ball = studio.scene.objects[0]
    studio.click(ball.path[0].x, ball.path[0].y + 30)  # lower on the ground: nearer
    assert ball.path[-1].depth < ball.path[0].depth
    assert "follows the ground" in studio.path_panel.hint.value


def test_drag_moves_point_then_one_undo(studio):
    ball_path = studio.scene.objects[0].path
    x0, y0 = ball_path[1].x, ball_path[1].y
    studio.drag(x0, y0, x0 + 20, y0 - 10)
    assert (studio.scene.objects[0].path[1].x, studio.scene.objects[0].path[1].y) == pytest.approx((x0 + 20, y0 - 10))
    assert studio.undo()
    assert (studio.scene.objects[0].path[1].x, studio.scene.objects[0].path[1].y) == pytest.approx((x0, y0))
    assert not studio.editor.can_undo


def test_a_drag_that_leaves_the_canvas_ends_there(studio):
    p = studio.scene.objects[0].path[1]
    x0, y0 = p.x, p.y
    studio.drag(x0, y0, x0 + 30, y0 + 5, release=False)  # the button is released off the canvas
    moved = (studio.scene.objects[0].path[1].x, studio.scene.objects[0].path[1].y)
    assert moved == pytest.approx((x0 + 30, y0 + 5))
    studio.canvas.widget._handle_custom_msg({"event": "mouse_move", "x": 10, "y": 10}, [])  # back, no button
    assert (studio.scene.objects[0].path[1].x, studio.scene.objects[0].path[1].y) == pytest.approx(moved)
    n = len(studio.scene.objects[1].path)
    studio.activate(1)
    studio.click(*GROUND)  # the next click adds exactly one point
    assert len(studio.scene.objects[1].path) == n + 1
    assert len(studio.editor.undo_stack) == 2  # the drag and the click


def test_scale_slider_changes_number_of_points_and_strip_shows_the_frame(studio):
    n1 = studio.result.signal.num_points
    studio.scrubber.scale.value = 4.0
    assert studio.scene.scale == 4.0
    assert studio.result.signal.num_points > n1
    xy, colors = studio.canvas.shown["points"]
    assert len(xy) == int(studio.result.signal.visible[studio.view.frame].sum()) and len(colors) == len(xy)
    studio.set_frame(F - 1)
    studio.set_strip_visible(True)
    counts = [len(xy) for xy, _ in studio.scrubber.strip.shown]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    thumb = studio.scrubber.strip.thumb
    np.testing.assert_array_equal(thumb, studio.result.color[F - 1].numpy()[::3, ::3][:thumb.shape[0], :thumb.shape[1]])


def test_frame_scrubber_shows_rendered_masks(studio):
    ball_id = studio.result.object_ids[0]
    studio.scrubber.frame.value = F
    shown = studio.canvas.shown["mask"]
    assert np.array_equal(shown[..., 3] == OBJECT_ALPHA, np.isin(studio.result.instance[F - 1].numpy(),
                                                                  studio.result.object_ids))
    grown = (studio.result.instance[F - 1].numpy() == ball_id).sum()
    assert grown > (studio.result.instance[0].numpy() == ball_id).sum()  # the ball comes nearer: grows
    assert f"frame {F}/{F}" in studio.scrubber.info.value


def test_hide_and_remove_object(studio):
    ball_id = studio.result.object_ids[0]
    studio.objects_panel.checks[0].value = False
    assert not (studio.canvas.shown["mask"][..., 3][studio.result.instance[0].numpy() == ball_id]).any()
    studio.objects_panel.removes[1].click()
    assert [o.name for o in studio.scene.objects] == ["ball"]


def test_negative_click_and_keys(studio):
    studio.set_mode("select")
    studio.click(*BALL, shift=True)  # shift-click on a selected object drops it
    assert [o.name for o in studio.scene.objects] == ["box"]
    studio.key("z")
    assert [o.name for o in studio.scene.objects] == ["ball", "box"]
    studio.key("ArrowRight")
    assert studio.view.frame == 1 and studio.scrubber.frame.value == 2
    studio.key("c")
    assert studio.mode == "camera"


def test_browser_messages_one_per_event_with_modifiers_from_ipyevents(studio):
    """What the browser sends for a Shift-click on the canvas: ipycanvas' press and release (canvas pixels) and
    ipyevents' Shift of the press; a key through ipyevents. Nothing listens to a second copy of the positions."""
    if studio.canvas.events_backend != "ipyevents":
        pytest.skip("ipyevents is not installed")
    assert set(studio.canvas.events.watched_events) == {"mousedown", "keydown", "touchcancel"}
    studio.set_mode("select")
    ball = studio.scene.objects[0].mask_index
    x, y = BALL
    studio.canvas.widget._handle_custom_msg({"event": "mouse_down", "x": x, "y": y}, [])
    studio.canvas.events._handle_custom_msg({"type": "mousedown", "shiftKey": True, "altKey": False}, [])
    studio.canvas.widget._handle_custom_msg({"event": "mouse_up", "x": x, "y": y}, [])
    assert ball not in [o.mask_index for o in studio.scene.objects]  # Shift-click dropped the ball
    studio.canvas.widget._handle_custom_msg({"event": "mouse_down", "x": TREE[0], "y": TREE[1]}, [])
    studio.canvas.events._handle_custom_msg({"type": "mousedown", "shiftKey": False, "altKey": False}, [])
    studio.canvas.widget._handle_custom_msg({"event": "mouse_up", "x": TREE[0], "y": TREE[1]}, [])
    assert studio.scene.objects[-1].mask_index == studio.scene.mask_at(*TREE)  # a plain click selects
    studio.canvas.events._handle_custom_msg({"type": "keydown", "key": "s"}, [])
    assert studio.mode == "select"
    assert studio.canvas.errors == []


def test_frames_must_increase(studio):
    studio.activate(0)
    studio.set_timed(0, True)
    assert [p.frame for p in studio.scene.objects[0].path] == [0, round((F - 1) / 2), F - 1]
    assert [r.frame for r in studio.path_panel.rows] == [1, round((F - 1) / 2) + 1, F]  # shown from 1
    studio.set_point_frame(0, 1, F - 1)  # not increasing: refused, with a message
    assert studio.scene.objects[0].path[1].frame == round((F - 1) / 2)
    assert "increase" in studio.messages.text


def test_reconnecting_view_gets_every_layer_in_full(studio):
    studio.set_mode("select")
    studio.click(*TREE)  # the selection flash sends a patch of the mask layer only
    calls = []
    layer = studio.canvas.layers["mask"]
    original = layer.put_image_data
    layer.put_image_data = lambda data, x=0, y=0: (calls.append((data.shape, x, y)), original(data, x, y))
    studio.canvas.redraw()  # what ipycanvas' client_ready (a reload) triggers
    assert calls == [((H, W, 4), 0, 0)]


def test_save_load_and_autosave_resume(studio, scene, tmp_path):
    studio.set_mode("select")
    studio.click(*TREE)
    saved = studio.save(tmp_path / "s.json")
    studio.remove_object(2)
    studio.load(saved)
    assert len(studio.scene.objects) == 3
    studio._side_update()  # what the idle timer does in a live kernel
    assert studio.autosave_path.exists() and studio.autosave_path.parent.name.startswith("s-")
    again = Studio(saved, out_dir=tmp_path / "out", show_3d=False)
    assert again.resumed and [o.mask_index for o in again.scene.objects] == [o.mask_index for o in studio.scene.objects]
    assert studio.closed  # the older Studio of the same scene handed over
    assert sorted(r.name for r in again.store.recent()) == ["s", "scene"]  # the edits before load were kept


def test_generate_takes_the_scene_loaded_last(studio, tmp_path):
    other = bundled_scene(H, W, num_frames=F)
    other.objects = other.objects[:1]
    studio.load(other.save(tmp_path / "one_object.json"))
    snap = studio.generate_panel.snapshot()  # what the Generate thread works on
    assert snap is not studio.scene and [o.name for o in snap.objects] == ["ball"]


def test_the_scene_files_row_stays_visible_in_every_mode(studio):
    for mode in ("mask", "select", "path", "camera", "select"):
        studio.set_mode(mode)
        assert studio.modebar.files.layout.visibility in (None, "", "visible"), mode  # save/load/recent
        assert studio.maskbar.tools_row.layout.visibility == ("visible" if mode == "mask" else "hidden")
    assert studio.modebar.files.layout is not studio.maskbar.tools_row.layout


def test_the_preview_overlay_uses_the_studio_colours(studio):
    from levitor.viz.pictures import overlay
    from levitor_widgets.generate_panel import studio_colors

    table = studio_colors(studio.scene, studio.engine)
    pal = mask_colors(len(studio.scene.masks))
    mask_of_id = studio.engine.instance_map().mask_of_id
    assert all(table[i].tolist() == pal[m].tolist() for i, m in mask_of_id.items())
    res, (x, y) = studio.result, (int(BALL[0]), int(BALL[1]))
    ball = studio.scene.mask_at(x, y)
    shown = overlay(res.color[0], res.instance[0], colors=table)[y, x].astype(float)
    want = res.color[0].numpy()[y, x] * 0.55 + pal[ball] * 0.45  # the ball in its Studio colour, as on the canvas
    assert np.abs(shown - want).max() <= 1.0


def test_generate_without_weights_shows_preview(studio):
    assert studio.generate(wait=True)
    panel = studio.generate_panel
    assert panel.error is None, panel.status.value
    out = panel.outcome
    assert out.video_path.exists() and out.video_path.stat().st_size > 0
    assert out.scene_path is not None and out.scene_path.exists()
    assert len(panel.video.value) > 0 and panel.result_box.layout.display == ""
    if not out.used_model:
        assert "mini" in panel.status.value and "<" not in out.message  # one line of plain text
        assert "download" in out.details.lower()  # the how-to is behind "details"
        assert "preview" in str(out)


def test_generate_with_the_mini_model_from_the_panel(studio):
    panel = studio.generate_panel
    assert panel.model.value == "levitor" and panel.steps.value == NUM_INFERENCE_STEPS
    panel.model.value = "mini"
    steps = mini_info()["num_inference_steps"]
    assert panel.steps.value == steps  # the mini model's own sampler, as its mini.json says
    assert studio.generate(wait=True)
    assert panel.error is None, panel.status.value
    out = panel.outcome
    assert out.used_model and "mini model" in panel.status.value
    assert out.video_path.stat().st_size > 0 and out.overlay_path.stat().st_size > 0
    assert panel.progress.value == panel.progress.max == steps and panel.progress.bar_style == "success"
    panel.model.value = "levitor"
    assert panel.steps.value == NUM_INFERENCE_STEPS
    chosen = Studio(studio.scene, out_dir=studio.out_dir, show_3d=False, weights="mini")
    assert chosen.generate_panel.model.value == "mini"


def test_every_preset_the_panel_offers_is_one_the_pipeline_applies(studio):
    from levitor.generation.pipeline import PRESETS
    from levitor.testing.tiny import tiny_pipeline

    offered = [value for _, value in studio.generate_panel.preset.options]
    assert offered == list(PRESETS)  # the fastest first, as the pipeline lists them
    pipe = tiny_pipeline()
    for value in offered:
        assert pipe.apply_preset(value, device="cpu").preset == value


def test_launcher_prepares_the_quickstart(tmp_path):
    from levitor_widgets.launch import free_port, launch_studio, prepare_root

    nb = prepare_root(tmp_path / "studio")
    assert nb.name == "01_quickstart.ipynb" and "LEVITOR_STUDIO_TARGET" in nb.read_text()
    nb.write_text(nb.read_text() + " ")  # an edited notebook is kept, not overwritten
    assert prepare_root(tmp_path / "studio").read_text().endswith(" ")
    assert 0 < free_port() < 65536
    with pytest.raises(FileNotFoundError, match="does not exist"):
        launch_studio(str(tmp_path / "missing.png"), open_browser=False, root_dir=tmp_path / "studio")


def test_slider_storm_in_a_kernel_drafts_the_frame_then_settles(studio):
    """In a kernel the Studio draws a one-frame draft at once and runs the full update when edits pause."""
    timers = []

    class Timer:
        def __init__(self, delay, fn):
            self.delay, self.fn, self.cancelled = delay, fn, False
            timers.append(self)

        def cancel(self):
            self.cancelled = True

    studio.scheduler._defers = lambda: True
    studio.scheduler._call_soon = lambda delay, fn: Timer(delay, fn)
    studio.set_frame(F - 1)
    box = studio.result.object_ids[1]
    box_color = mask_colors(len(studio.scene.masks))[studio.scene.objects[1].mask_index]
    full_before = studio.result
    area_before = int((studio.result.instance[F - 1] == box).sum())
    path = studio.scene.objects[1].path
    now = nearness_from_depth(path[0].depth, path[2].depth)
    studio.set_nearness(1, 2, now * 1.5)  # the box's last point, nearer
    assert studio.timing_log[-1].get("draft") and studio.result is full_before  # drawn, not yet recomputed
    area_drafted = int((np.asarray(studio.canvas.shown["mask"][..., :3]) == box_color).all(-1).sum())
    assert area_drafted != area_before  # the canvas shows the edit at once
    assert "draft" in studio.scrubber.info.value
    studio.set_nearness(1, 2, now * 1.6)  # a second event within the burst: coalesced, not drawn yet
    pending = [t for t in timers if not t.cancelled]
    assert {"_run_draft", "_run_full"} <= {t.fn.__name__ for t in pending}
    for t in sorted(pending, key=lambda t: t.delay):  # the loop runs the timers: the draft, then the full update
        if not t.cancelled:
            t.fn()
    assert studio.result is not full_before and not studio.timing_log[-1].get("draft")
    assert "draft" not in studio.scrubber.info.value
    assert len(studio.editor.undo_stack) == 1  # the storm is one undo step


def test_canvas_batch_flushes_and_stops_holding_even_when_drawing_raises(studio):
    import ipycanvas.canvas as ipc  # the manager whose caching flag hold_canvas sets (it has no try/finally)

    canvas = studio.canvas
    sent = []
    manager = ipc._CANVAS_MANAGER
    original = manager.flush

    def flush():
        sent.append(True)
        original()

    manager.flush = flush
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with canvas.batch():
                canvas.draw_image(studio.scene.image)
                raise RuntimeError("boom")
        assert sent, "the drawing before the error was not flushed"
        assert manager._caching is False  # later drawing goes out at once again
    finally:
        manager.flush = original


def test_a_layer_that_already_shows_the_drawing_is_not_sent_again(studio):
    import ipycanvas.canvas as ipc  # every drawing command leaves through the canvas manager's _send_custom

    manager, sent = ipc._CANVAS_MANAGER, []
    original = manager._send_custom
    manager._send_custom = lambda *a, **k: (sent.append(a), original(*a, **k))[1]
    try:
        studio.set_frame(2)
        n = len(sent)
        assert n > 0
        studio.set_frame(2)  # the same frame again: image, mask, paths and points are all on the canvas already
        assert len(sent) == n
        studio.canvas.redraw()  # a browser view (re)connected: every layer goes out again, in full
        assert len(sent) > n
    finally:
        manager._send_custom = original
