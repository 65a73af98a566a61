"""The Studio edits only what the user edited: with a (fake) browser sending back what its views send back,
selecting, switching objects, changing modes, redrawing and displaying change nothing, record no undo step and
write no autosave; N changes no path depth; the depth table's range is what the scale reaches; a double click
does one thing; hints go at the next edit."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

pytest.importorskip("ipycanvas")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levitor.bundled import bundled_scene
from levitor.depth import MIN_DEPTH, nearness_from_depth, nearness_range
from levitor.perception.depth_choice import DepthChoice
from levitor.scene import ObjectTrack, PathPoint, Scene
from levitor_widgets import Studio
from tests.widgets.fake_browser import FakeBrowser

H, W, F = 160, 256, 8
SKY = (5.0, 5.0)


def _scene_bytes(scene: Scene, tmp_path) -> bytes:
    """The scene as its file says it (JSON with the masks) plus the depth map's bytes."""
    path = scene.save(tmp_path / "probe" / "scene.json")
    doc = json.loads(path.read_text())
    doc.pop("image_path", None)
    return json.dumps(doc, sort_keys=True).encode() + hashlib.sha256(scene.depth.tobytes()).digest()


def _autosaves(out) -> list[str]:
    return sorted(f.name for f in out.rglob("*") if f.is_file() and f.name != "lock.json")


def _open(tmp_path, monkeypatch, scene=None):
    browser = FakeBrowser(monkeypatch)
    s = Studio(scene if scene is not None else bundled_scene(H, W, num_frames=F), out_dir=tmp_path / "out",
               show_3d=False, strip_scales=(0.5, 4.0))
    browser.display(s.widget)
    return s, browser


def test_switching_the_active_object_changes_no_depth(tmp_path, monkeypatch):
    s, browser = _open(tmp_path, monkeypatch)
    box = [p.depth for p in s.scene.objects[1].path]
    before = _scene_bytes(s.scene, tmp_path)
    for i in (0, 1, 0, 1):  # the user clicks "ball", then "box" in the Objects panel, a few seconds apart
        browser.wait(2.0)
        s.objects_panel.buttons[i].click()
        browser.flush()
    assert [p.depth for p in s.scene.objects[1].path] == box
    assert _scene_bytes(s.scene, tmp_path) == before
    assert s.editor.undo_stack == [] and not s.editor.can_undo
    assert _autosaves(tmp_path / "out") == []


def test_first_render_records_no_step(tmp_path, monkeypatch):
    s, browser = _open(tmp_path, monkeypatch)
    browser.display(s.widget)  # a second view (a reload) renders every control again
    assert s.editor.undo_stack == []
    assert browser.sent  # the fake browser did send values back: they were not taken for edits


GESTURES = st.one_of(
    st.tuples(st.just("activate"), st.integers(0, 1)),
    st.tuples(st.just("mode"), st.sampled_from(["select", "path", "camera", "mask"])),
    st.tuples(st.just("frame"), st.integers(0, F - 1)),
    st.tuples(st.just("visible"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("panels")),
    st.tuples(st.just("redraw")),
    st.tuples(st.just("resize")),
    st.tuples(st.just("display")),
    st.tuples(st.just("preview"), st.booleans()),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(GESTURES, min_size=1, max_size=8), st.sampled_from([1.0, 3.0]), st.sampled_from([None, 2.37]))
def test_non_edit_gestures_leave_the_scene_byte_identical(tmp_path_factory, monkeypatch, gestures, scale, n):
    tmp = tmp_path_factory.mktemp("gestures")
    scene = bundled_scene(H, W, num_frames=F)
    scene.scale = scale  # 3.0 is off the scale slider's steps: the browser snaps it
    if n is not None:  # a scene made with N = 2.37, off the N slider's steps
        choice = DepthChoice("nearer", n)
        scene.depth = choice.depth(scene.image, [scene.masks[o.mask_index] for o in scene.objects])
        scene.depth_source = choice.source
    with monkeypatch.context() as mp:
        s, browser = _open(tmp, mp, scene)
        before = _scene_bytes(s.scene, tmp)
        for g in gestures:
            browser.wait(2.0)
            if g[0] == "activate":
                s.objects_panel.buttons[g[1]].click()
            elif g[0] == "mode":
                s.modebar.on_mode(g[1]) if s.modebar.on_mode else s.set_mode(g[1])
            elif g[0] == "frame":
                s.scrubber.frame.value = g[1] + 1
            elif g[0] == "visible":
                s.objects_panel.checks[g[1]].value = g[2]
            elif g[0] == "panels":
                s.show_panels()
            elif g[0] == "redraw":
                s.canvas.redraw()  # what a reconnecting view asks for
            elif g[0] == "resize":
                s._side_update()
            elif g[0] == "display":
                browser.display(s.widget)
            elif g[0] == "preview":
                s.scrubber.preview.value = g[1]
            browser.flush()
        assert _scene_bytes(s.scene, tmp) == before, gestures
        assert s.editor.undo_stack == [], gestures
        assert _autosaves(tmp / "out") == []


# ---------------------------------------------------------------------- the table reports the user's moves
def test_a_slider_move_is_one_edit_and_its_echo_none(tmp_path, monkeypatch):
    s, browser = _open(tmp_path, monkeypatch)
    s.activate(0)
    browser.flush()
    s.path_panel.user_edit("nearness", 1, 1.25, via="slider")
    browser.flush()
    ball = s.scene.objects[0].path
    assert nearness_from_depth(ball[0].depth, ball[1].depth) == pytest.approx(1.25, rel=1e-6)
    assert [st.label for st in s.editor.undo_stack] == ["set a depth"]
    old_subject = s.path_panel.table.subject
    s.activate(1)
    s.path_panel._message(s.path_panel.table, {"type": "nearness", "subject": old_subject, "point": 1,
                                               "value": 3.0, "via": "slider"}, [])  # late, from the ball's table
    assert len(s.editor.undo_stack) == 1


# ---------------------------------------------------------------------- N and the range
def _nearer_studio(tmp_path, monkeypatch):
    s, browser = _open(tmp_path, monkeypatch)
    s.maskbar.depth.value = "nearer"  # the user picks "objects N x nearer than a flat background", N = 2
    browser.flush()
    assert s.scene.depth_source == "nearer:2"
    return s, browser


def test_two_x_nearer_is_settable_with_the_default_n(tmp_path, monkeypatch):
    s, browser = _nearer_studio(tmp_path, monkeypatch)
    s.activate(0)
    browser.flush()
    row = s.path_panel.rows[1]
    lo, hi = nearness_range(s.scene.objects[0].path[0].depth)
    assert (row.lo2, row.hi2) == pytest.approx((math.log2(lo), math.log2(hi)))  # the range is the scale's
    assert 2.0 ** row.hi2 >= 2.0
    s.path_panel.user_edit("nearness", 1, 2.0)
    p = s.scene.objects[0].path
    assert nearness_from_depth(p[0].depth, p[1].depth) == pytest.approx(2.0, rel=1e-6)
    assert "can't" not in s.messages.text


def test_changing_n_and_back_changes_no_path_depth(tmp_path, monkeypatch):
    s, browser = _nearer_studio(tmp_path, monkeypatch)
    s.activate(0)
    s.path_panel.user_edit("nearness", 1, 1.99)
    browser.flush()
    depths = [[p.depth for p in o.path] for o in s.scene.objects]
    p2 = s.scene.objects[0].path[1].depth
    s.maskbar.nearness.value = s.maskbar.nearness.max  # the user moves N to its maximum ...
    browser.flush()
    assert s.scene.objects[0].path[1].depth == p2  # N changes what "x nearer" means, not where P2 is
    s.maskbar.nearness.value = 2.0  # ... and back
    browser.flush()
    assert [[p.depth for p in o.path] for o in s.scene.objects] == depths


def test_a_point_beyond_the_scale_is_shown_at_its_end_with_a_note(tmp_path, monkeypatch):
    scene = bundled_scene(H, W, num_frames=F)
    ball = scene.objects[0]
    ball.path[1] = PathPoint(ball.path[1].x, ball.path[1].y, MIN_DEPTH / 3, None)  # nearer than 0..255 says
    s, _browser = _open(tmp_path, monkeypatch, scene)
    s.activate(0)
    row = s.path_panel.rows[1]
    assert 2.0 ** row.hi2 == pytest.approx(row.shown) and "beyond the scale" in row.note and "0..255" in row.detail


def test_following_the_ground_past_the_scale_is_clamped_with_a_note(tmp_path, monkeypatch):
    h, w = 64, 96
    depth = np.full((h, w), 0.5, np.float32)
    depth[50:, :] = 0.004  # something very near under the click (not a mask)
    mask = np.zeros((h, w), bool)
    mask[10:20, 40:60] = True
    depth[mask] = 0.1
    scene = Scene(image=np.full((h, w, 3), 90, np.uint8), depth=depth, masks=[mask], num_frames=F)
    scene.objects.append(ObjectTrack(0, [PathPoint(50.0, 15.0, 0.1, None)], "thing"))
    s, browser = _open(tmp_path, monkeypatch, scene)
    s.set_mode("path")
    s.click(50.0, 58.0)
    browser.flush()
    p = s.scene.objects[0].path
    assert p[1].depth == pytest.approx(MIN_DEPTH)  # asked 0.1 * 0.004 / 0.5 = 0.0008: clamped
    row = s.path_panel.rows[1]
    assert "clamped: the ground asks 125.00x" in row.note and row.shown == pytest.approx(2.0 ** row.hi2)
    assert s.editor.undo_stack[-1].label == "add a path point" and len(s.editor.undo_stack) == 1


# ---------------------------------------------------------------------- one thing per double click; hints
def test_a_double_click_does_one_thing(tmp_path, monkeypatch):
    s, _browser = _open(tmp_path, monkeypatch)
    s.set_mode("select")
    n = len(s.scene.objects)
    s.click(*SKY)
    s.click(*SKY)  # the second click of a double click
    assert len(s.scene.objects) == n + 1 and len(s.scene.objects[-1].path) == 1
    assert len(s.editor.undo_stack) == 1
    _browser.wait(2.0)  # later: a click is a click again
    s.click(*SKY)
    assert len(s.scene.objects[-1].path) == 2


def test_hints_go_at_the_next_edit(tmp_path, monkeypatch):
    s, browser = _open(tmp_path, monkeypatch)
    s.activate(0)
    ball = s.scene.objects[0]
    s.click(ball.path[0].x, ball.path[0].y + 30)
    browser.flush()
    j = len(ball.path) - 1
    assert f"P{j + 1}" in s.path_panel.hint.value and s.canvas.shown["paths"][1] is not None
    s.path_panel.user_edit("nearness", j, 1.25)
    browser.flush()
    assert s.path_panel.hint.value == "" and s.canvas.shown["paths"][1] is None


def test_a_point_where_the_engine_loses_the_object_says_so(tmp_path, monkeypatch):
    from levitor.control.lost import ControlWarning

    s, _browser = _open(tmp_path, monkeypatch)
    s.result.warnings = [ControlWarning(0, 1, (F - 1,), "left_view", "ball leaves the picture in frame 8")]
    s.activate(0)  # the ball's last point is reached at the last frame
    assert [r.note for r in s.path_panel.rows] == ["", "", "leaves the view here"]
    assert s.path_panel.rows[2].detail == "ball leaves the picture in frame 8"
    s.activate(1)
    assert all(r.note == "" for r in s.path_panel.rows)  # the box is not named
