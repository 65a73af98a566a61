"""Canvas gestures against a fake GestureHost: what each click and drag asks the Studio to do, with no widgets,
no editor and no engine behind it (levitor_widgets.gestures)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from levitor.scene import PathPoint, Scene
from levitor_widgets.gestures import GestureHost, Gestures
from levitor_widgets.pointer import PointerEvent, PointerMachine
from levitor_widgets.presenter import ViewState

H, W = 40, 60


class FakeHost:
    """Records the calls; the scene has a ball (mask 0), a box (mask 1) and the ground (mask 2, the rest)."""

    def __init__(self, mode="select", tool="box"):
        ball, box = np.zeros((H, W), bool), np.zeros((H, W), bool)
        ball[5:15, 5:15] = True
        box[5:15, 40:50] = True
        image = np.zeros((H, W, 3), np.uint8)
        self.scene = Scene(image=image, depth=np.full((H, W), 0.5, np.float32), masks=[ball, box, ~(ball | box)])
        self.scene.select(0)
        self.view = ViewState(active=0, active_point=0)
        self.mode, self.tool, self.brush_size = mode, tool, 6
        self.calls: list[tuple] = []
        self.pressed: list[int | None] = []  # press_feedback's calls (feedback, not edits: kept apart)

    def __getattr__(self, name):  # every method of the protocol: record the call
        if name.startswith("_") or name not in _PROTOCOL_METHODS:
            raise AttributeError(name)

        def call(*args, **kw):
            if name == "press_feedback":
                self.pressed.append(args[0])
                return None
            self.calls.append((name, *args, *kw.values()))
            if name == "add_point":
                self.scene.objects[self.view.active].path.append(PathPoint(args[0], args[1], 0.5))
                return len(self.scene.objects[self.view.active].path) - 1
            return None
        return call


_PROTOCOL_METHODS = {n for n, v in vars(GestureHost).items() if callable(v) and not n.startswith("_")}


def _gestures(host):
    pointer = PointerMachine()
    return Gestures(host, pointer), pointer


def _click(pointer, x, y, **kw):
    pointer.down(PointerEvent(x, y, **kw))
    pointer.up(PointerEvent(x, y, **kw))


def _drag(pointer, x0, y0, x1, y1, **kw):
    pointer.down(PointerEvent(x0, y0, **kw))
    for t in (0.5, 1.0):
        pointer.move(PointerEvent(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, **kw), 1)
    pointer.up(PointerEvent(x1, y1, **kw))


def names(host):
    return [c[0] for c in host.calls]


def test_the_protocol_is_narrow_and_the_studio_implements_it():
    assert len(_PROTOCOL_METHODS) <= 14, sorted(_PROTOCOL_METHODS)
    from levitor_widgets.studio import Studio

    assert [n for n in _PROTOCOL_METHODS | {"brush_size"} if not hasattr(Studio, n)] == []


def test_gestures_never_reach_behind_the_host():
    """No attribute of the host outside the protocol (no editor, canvas, presenter, private member)."""
    allowed = _PROTOCOL_METHODS | {"mode", "tool", "brush_size", "scene", "view"}
    src = Path(__file__).resolve().parents[2] / "levitor_widgets" / "gestures.py"
    used = {n.attr for n in ast.walk(ast.parse(src.read_text()))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "s"
            or isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "s"}
    assert used <= allowed, used - allowed


def test_select_click_selects_the_mask_under_it_and_shift_click_drops_it():
    host = FakeHost("select")
    _, pointer = _gestures(host)
    _click(pointer, 45, 10)
    assert host.calls[0] == ("select_mask", 1) and names(host)[-1] == "show_hint"
    host.calls.clear()
    _click(pointer, 10, 10, shift=True)  # the ball is object 0
    assert names(host)[0] == "remove_object" and host.calls[0][1] == 0


def test_a_press_shows_what_its_click_would_select_and_takes_it_back_otherwise():
    """The press answers at once (the release does the selecting); Shift, a drag, an object already selected, the
    ground in path mode and the second half of a double click show nothing."""
    host = FakeHost("select")
    g, pointer = _gestures(host)
    pointer.down(PointerEvent(45, 10))
    assert host.pressed == [1] and host.calls == []  # shown before the release, nothing edited yet
    pointer.up(PointerEvent(45, 10))
    assert host.calls[0] == ("select_mask", 1) and host.pressed == [1, None]  # the click claimed it first
    host.pressed.clear()
    pointer.down(PointerEvent(45, 10))  # the second half of a double click selects nothing: no highlight
    assert host.pressed == [None]
    pointer.up(PointerEvent(45, 10))
    assert ("select_mask", 1) not in host.calls[1:]
    g.clock = lambda: 1e9  # much later
    host.pressed.clear()
    pointer.down(PointerEvent(45, 10))
    pointer.modifiers(True, False)  # Shift: a Shift-click never selects
    assert host.pressed == [1, None]
    pointer.up(PointerEvent(45, 10, shift=True))
    host.pressed.clear()
    g.clock, before = (lambda: 1.5e9), len(host.calls)
    _drag(pointer, 45, 10, 58, 30)  # a drag is no click: the highlight goes when the drag starts
    assert host.pressed[:2] == [1, None] and "select_mask" not in names(host)[before:]
    host.pressed.clear()
    pointer.down(PointerEvent(10, 10))  # the ball is already an object
    assert host.pressed == [None]
    pointer.up(PointerEvent(10, 10))
    host.mode, host.pressed = "path", []
    g.clock = lambda: 2e9
    pointer.down(PointerEvent(30, 30))  # the ground in path mode: a path point, not a selection
    pointer.up(PointerEvent(30, 30))
    assert host.pressed == [None, None] and "add_point" in names(host)[-3:]


def test_path_click_on_the_ground_adds_a_point_and_on_another_object_selects_it():
    host = FakeHost("path")
    _, pointer = _gestures(host)
    _click(pointer, 30, 30)  # the ground: a background mask
    assert host.calls[0] == ("add_point", 30, 30) and "P2 of" in host.calls[-1][1]
    host.calls.clear()
    _click(pointer, 45, 10)  # the box is a mask, not yet an object
    assert host.calls == [("select_mask", 1, "path")]


def test_dragging_a_handle_moves_that_point_as_one_gesture():
    host = FakeHost("path")
    start = host.scene.objects[0].path[0]
    _, pointer = _gestures(host)
    _drag(pointer, start.x, start.y, start.x + 10, start.y + 6)
    assert names(host) == ["begin_move", "move_point", "move_point", "end_move"]
    assert host.calls[0] == ("begin_move", 0, 0) and host.calls[-2][1:] == (0, 0, start.x + 10, start.y + 6)


@pytest.mark.parametrize("tool, kind", [("box", "box"), ("lasso", "line"), ("brush", "dots"), ("eraser", "dots")])
def test_mask_tool_drags_preview_then_apply_the_tool_once(tool, kind):
    host = FakeHost("mask", tool)
    _, pointer = _gestures(host)
    _drag(pointer, 20, 20, 35, 30, alt=True)
    previews = [c for c in host.calls if c[0] == "preview"]
    assert previews[0][1][0]["kind"] == kind and previews[-1] == ("preview", None)
    applied = [c for c in host.calls if c[0] == "mask_tool"]
    assert len(applied) == 1 and applied[0][1] == tool and applied[0][3] is True  # alt: take away
    if tool == "box":
        assert applied[0][2] == (20, 20, 35, 30)


def test_polygon_clicks_close_on_the_first_vertex_and_escape_drops_it():
    host = FakeHost("mask", "lasso")
    g, pointer = _gestures(host)
    for x, y in [(10, 10), (30, 10), (30, 30), (10.5, 10.5)]:
        _click(pointer, x, y)
    applied = [c for c in host.calls if c[0] == "mask_tool"]
    assert applied == [("mask_tool", "lasso", [(10, 10), (30, 10), (30, 30)], False)]
    host.calls.clear()
    _click(pointer, 5, 5)
    g.cancel()
    assert g.tool.polygon == [] and host.calls[-1] == ("preview", None)
    assert not [c for c in host.calls if c[0] == "mask_tool"]


def test_a_refused_edit_is_said_not_raised():
    host = FakeHost("camera")

    def refuse(x, y):
        raise ValueError("outside the image")

    host.add_camera_point = refuse
    _, pointer = _gestures(host)
    _click(pointer, 5, 5)
    assert host.calls[-1][0] == "say" and "outside the image" in host.calls[-1][1] and host.calls[-1][-1] is True
