"""The Studio driven from Python: simulated clicks, drags, slider moves and keys; assertions on the Scene and on
what each canvas layer was last given to draw (the browser test checks the real pixels)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipycanvas")
import levitor.engine  # noqa: E402,F401  (the project itself must import: a broken import fails, never skips)
from levitor.bundled import bundled_scene  # noqa: E402
from levitor.depth import depth_from_nearness, nearness_from_depth  # noqa: E402
from levitor_widgets import Studio  # noqa: E402
from levitor_widgets.studio import OBJECT_ALPHA  # noqa: E402
from levitor_widgets.view3d import View3D  # noqa: E402

# The bundled scene at half size keeps each engine update cheap; coordinates below are for 160 x 256.
H, W, F = 160, 256, 8
TREE = (210.0, 75.0)  # inside the tree's crown (mask 3), not selected in the bundled scene
BALL = (75.0, 114.0)  # the ball (mask 5), object 0 of the bundled scene
SKY = (128.0, 10.0)


@pytest.fixture
def scene():
    return bundled_scene(H, W, num_frames=F)


@pytest.fixture
def studio(scene, tmp_path):
    return Studio(scene, out_dir=tmp_path / "out", show_3d=False, strip_scales=(0.5, 4.0))


def _alpha_at(studio, x, y):
    return int(studio.canvas.shown["mask"][int(y), int(x), 3])


def test_click_selects_object_and_colours_overlay(studio):
    tree = studio.scene.mask_at(*TREE)
    assert _alpha_at(studio, *TREE) < OBJECT_ALPHA  # an unselected instance is drawn fainter
    studio.set_mode("select")
    studio.click(*TREE)
    assert [o.mask_index for o in studio.scene.objects][-1] == tree
    assert studio.active == 2 and studio.mode == "path"  # the next clicks draw its path
    assert _alpha_at(studio, *TREE) == OBJECT_ALPHA
    tree_id = studio.result.object_ids[2]
    np.testing.assert_array_equal(studio.canvas.shown["mask"][int(TREE[1]), int(TREE[0]), :3],
                                  studio.palette()[tree_id])
    assert "depth here" in studio.canvas.shown["paths"][1][2]  # the depth hint at the click


def test_path_points_depth_slider_and_points(studio):
    studio.set_mode("select")
    studio.click(*TREE)
    studio.click(180.0, 100.0)
    studio.click(150.0, 120.0)
    path = studio.scene.objects[-1].path
    assert [(round(p.x), round(p.y)) for p in path[1:]] == [(180, 100), (150, 120)]
    drawn_paths, _hint = studio.canvas.shown["paths"]
    np.testing.assert_allclose(drawn_paths[-1].xy[1:], [[180, 100], [150, 120]])
    assert len(studio.path_panel.sliders) == 3
    before = studio.canvas.shown["points"][0].copy()
    studio.scrubber.frame.value = F - 1  # look at the last frame, where the tree has arrived
    studio.path_panel.sliders[2].value = 1.5  # the browser's slider drag, as the widget sees it
    assert path[2].depth == pytest.approx(depth_from_nearness(path[0].depth, 1.5))
    tree_id = studio.result.object_ids[-1]
    ids = studio.result.signal.instance.numpy()
    pts = studio.result.signal.points[F - 1].numpy()[ids == tree_id]
    assert np.linalg.norm(pts.mean(0) - [150, 120]) < 25  # the tree's points follow the path
    assert not np.array_equal(before, studio.canvas.shown["points"][0])


def test_drag_moves_point_then_undo(studio):
    ball_path = studio.scene.objects[0].path
    x0, y0 = ball_path[1].x, ball_path[1].y
    studio.drag(x0, y0, x0 + 20, y0 - 10)
    assert (ball_path[1].x, ball_path[1].y) == pytest.approx((x0 + 20, y0 - 10))
    assert studio.undo()
    assert (studio.scene.objects[0].path[1].x, studio.scene.objects[0].path[1].y) == pytest.approx((x0, y0))


def test_scale_slider_changes_number_of_points(studio):
    n1 = studio.result.signal.num_points
    studio.scrubber.scale.value = 4.0
    assert studio.scene.scale == 4.0
    n4 = studio.result.signal.num_points
    assert n4 > n1
    xy, colors = studio.canvas.shown["points"]
    assert len(xy) == int(studio.result.signal.visible[studio.frame].sum()) and len(colors) == len(xy)
    studio.set_strip_visible(True)
    counts = [len(xy) for xy, _ in studio.scrubber.strip.shown]
    assert counts == sorted(counts) and counts[0] < counts[-1]  # more points at larger scale factors


def test_frame_scrubber_shows_rendered_masks(studio):
    ball_id = studio.result.object_ids[0]
    studio.scrubber.frame.value = F - 1
    shown = studio.canvas.shown["mask"]
    expected = studio.result.instance[F - 1].numpy() == ball_id
    assert np.array_equal(shown[..., 3] == OBJECT_ALPHA, np.isin(studio.result.instance[F - 1].numpy(),
                                                                  studio.result.object_ids))
    assert expected.sum() > (studio.result.instance[0].numpy() == ball_id).sum()  # the ball comes nearer: grows


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
    assert studio.frame == 1 and studio.scrubber.frame.value == 1
    studio.key("c")
    assert studio.mode == "camera"


def test_ipyevents_messages_map_to_canvas_pixels(studio):
    if studio.canvas.events_backend != "ipyevents":
        pytest.skip("ipyevents is not installed")
    studio.set_mode("select")
    # the canvas shown at twice its size: CSS pixels are halved back to canvas pixels
    ev = dict(relativeX=TREE[0] * 2, relativeY=TREE[1] * 2, boundingRectWidth=W * 2, boundingRectHeight=H * 2)
    studio.canvas._dom_event(dict(ev, type="mousedown"))
    studio.canvas._dom_event(dict(ev, type="mouseup"))
    assert studio.scene.objects[-1].mask_index == studio.scene.mask_at(*TREE)
    studio.canvas._dom_event({"type": "keydown", "key": "s"})
    assert studio.mode == "select"


def test_frames_must_increase(studio):
    studio.activate(0)
    studio.set_timed(0, True)
    assert [p.frame for p in studio.scene.objects[0].path] == [0, round((F - 1) / 2), F - 1]
    studio.set_point_frame(0, 1, F - 1)  # not increasing: refused, with a message
    assert studio.scene.objects[0].path[1].frame == round((F - 1) / 2)
    assert "increase" in studio.message.value


def test_save_load_and_autosave_resume(studio, scene, tmp_path):
    studio.set_mode("select")
    studio.click(*TREE)
    saved = studio.save(tmp_path / "s.json")
    studio.remove_object(2)
    studio.load(saved)
    assert len(studio.scene.objects) == 3
    studio._side_update()  # what the idle timer does in a live kernel
    again = Studio(scene, out_dir=tmp_path / "out", show_3d=False)
    assert again.resumed and [o.mask_index for o in again.scene.objects] == [o.mask_index for o in studio.scene.objects]


def test_generate_without_weights_shows_preview(studio):
    import levitor.generation.generate  # noqa: F401
    assert studio.generate(wait=True)
    panel = studio.generate_panel
    assert panel.error is None, panel.status.value
    out = panel.outcome
    assert out.video_path.exists() and out.video_path.stat().st_size > 0
    assert out.scene_path is not None and out.scene_path.exists()
    assert len(panel.video.value) > 0 and panel.result_box.layout.display == ""
    if not out.used_model:
        assert "download" in panel.status.value.lower() or "weights" in panel.status.value.lower()
        assert "<i>mini</i>" in panel.status.value  # it points at what does run here


def test_generate_with_the_mini_model_from_the_panel(studio):
    panel = studio.generate_panel
    assert panel.model.value == "levitor" and panel.steps.value == 25
    panel.model.value = "mini"
    assert panel.steps.value == 3  # the mini model's own sampler
    assert studio.generate(wait=True)
    assert panel.error is None, panel.status.value
    out = panel.outcome
    assert out.used_model and "mini model" in panel.status.value
    assert out.video_path.stat().st_size > 0 and out.overlay_path.stat().st_size > 0
    assert panel.progress.value == panel.progress.max == 3 and panel.progress.bar_style == "success"
    panel.model.value = "levitor"
    assert panel.steps.value == 25
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


def test_view3d_static_fallback():
    view = View3D(use_figure_widget=False)
    assert view.mode == "static"
    xyz = np.random.default_rng(0).random((30_000, 3))
    view.set_cloud(xyz, np.full((30_000, 3), 128, np.uint8))
    assert len(view.fig.data[0].x) == 20_000  # subsampled
    view.set_paths([np.zeros((4, 3)), np.ones((4, 3))], [(255, 0, 0), (0, 255, 0)], frame=2)
    assert len(view.fig.data) == 1 + 2 * 2
    view.set_paths([np.zeros((4, 3))], [(255, 0, 0)], frame=0)
    assert len(view.fig.data) == 1 + 2


def test_view3d_in_studio_follows_edits(scene, tmp_path):
    s = Studio(scene, out_dir=tmp_path, show_3d=True, autosave=False)
    if s.view3d.mode != "FigureWidget":
        pytest.skip("plotly FigureWidget needs anywidget")
    assert 0 < len(s.view3d.fig.data[0].x) <= 20_000
    before = np.array(s.view3d.fig.data[1].x)
    s.drag(*[(p.x, p.y) for p in s.scene.objects[0].path][-1], 40.0, 150.0)
    s._side_update()
    assert not np.allclose(before, np.array(s.view3d.fig.data[1].x))


def test_launcher_prepares_the_quickstart(tmp_path):
    from levitor_widgets.launch import free_port, launch_studio, prepare_root

    nb = prepare_root(tmp_path / "studio")
    assert nb.name == "01_quickstart.ipynb" and "LEVITOR_STUDIO_TARGET" in nb.read_text()
    nb.write_text(nb.read_text() + " ")  # an edited notebook is kept, not overwritten
    assert prepare_root(tmp_path / "studio").read_text().endswith(" ")
    assert 0 < free_port() < 65536
    with pytest.raises(FileNotFoundError, match="does not exist"):
        launch_studio(str(tmp_path / "missing.png"), open_browser=False, root_dir=tmp_path / "studio")


def test_slider_storm_in_a_kernel_drafts_the_frame_then_settles(studio, monkeypatch):
    """In a kernel the Studio draws a one-frame draft at once and runs the full update when edits pause."""
    import levitor_widgets.studio as studio_mod

    timers = []

    class Timer:
        def __init__(self, delay, fn):
            self.delay, self.fn, self.cancelled = delay, fn, False
            timers.append(self)

        def cancel(self):
            self.cancelled = True

    monkeypatch.setattr(studio_mod, "defers", lambda: True)
    monkeypatch.setattr(studio_mod, "call_soon", lambda delay, fn: Timer(delay, fn))
    studio.set_frame(F - 1)
    box = studio.result.object_ids[1]
    full_before = studio.result
    area_before = int((studio.result.instance[F - 1] == box).sum())
    path = studio.scene.objects[1].path
    now = nearness_from_depth(path[0].depth, path[2].depth)
    studio.set_nearness(1, 2, now * 1.5)  # the box's last point, nearer
    assert studio.timing_log[-1].get("draft") and studio.result is full_before  # drawn, not yet recomputed
    area_drafted = int((np.asarray(studio.canvas.shown["mask"][..., :3]) == studio.palette()[box]).all(-1).sum())
    assert area_drafted != area_before  # the canvas shows the edit at once
    assert "draft" in studio.scrubber.info.value
    studio.set_nearness(1, 2, now * 1.5)  # a second event within the burst: coalesced, not drawn yet
    pending = [t for t in timers if not t.cancelled]
    assert {"_run_draft", "_run_pending"} <= {t.fn.__name__ for t in pending}
    for t in sorted(pending, key=lambda t: t.delay):  # the loop runs the timers: the draft, then the full update
        t.fn()
    assert studio.result is not full_before and not studio.timing_log[-1].get("draft")
    assert int((studio.result.instance[F - 1] == box).sum()) == area_drafted  # the draft was right
    assert "draft" not in studio.scrubber.info.value


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
