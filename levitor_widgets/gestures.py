"""What a click or a drag on the canvas means in each mode and with each mask tool.

The canvas's :class:`~levitor_widgets.pointer.PointerMachine` reports clicks and drags; this module turns them
into the Studio's edits and mask tools. It holds the state of a gesture in progress (a box being dragged, a
polygon's vertices, SAM's clicks) and draws its preview on the canvas's tool layer.

Gestures see the Studio only through :class:`GestureHost`: what the user is doing (mode, tool), the scene and the
view to look things up in, and the handful of edits a pointer can make. They never reach the editor, the canvas
or the presenter behind it, so a fake host tests them without widgets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from levitor.editing import CAMERA
from levitor_widgets.pointer import DRAG_START_PX, PointerEvent, PointerMachine

if TYPE_CHECKING:
    from levitor.scene import Scene
    from levitor_widgets.presenter import ViewState

HIT_RADIUS = 9.0  # px: a press this close to a path handle drags it instead of adding a point
BACKGROUND_FRACTION = 0.25  # a mask larger than this share of the image is ground/sky: path points go on it
TOOL_SOURCES = {"box": "grabcut", "lasso": "lasso", "brush": "brush", "eraser": "brush", "flood": "flood",
                "sam": "sam-click"}
REFINABLE = set(TOOL_SOURCES.values()) | {"user"}  # masks a tool may refine (not the bundled scene's synthetic ones)
DOUBLE_CLICK_S = 0.5  # a second click this soon at the same place is the second half of a double click
Who = int | str  # an object index or "camera"


class GestureHost(Protocol):
    """What gestures need from the Studio (it implements this; tests use a fake).

    Read: ``mode`` and ``tool`` (what a press means), ``brush_size``, ``scene`` and ``view`` (never written here:
    every change goes through a method below, which redraws and records it)."""

    mode: str
    tool: str
    brush_size: int
    scene: Scene
    view: ViewState

    def say(self, text: str, details: str = "", error: bool = False) -> None: ...
    def show_hint(self, x: float, y: float) -> None: ...  # the depth at (x, y) beside the pointer
    def preview(self, shapes: list[dict] | None) -> None: ...  # the tool layer (SceneCanvas.draw_tool's shapes)
    def press_feedback(self, mask_index: int | None) -> None: ...  # the mask a press would select (None: none)

    # selection and paths
    def select_mask(self, mask_index: int, mode: str = "path") -> int: ...
    def activate(self, index: Who) -> None: ...
    def remove_object(self, index: int) -> None: ...
    def add_point(self, x: float, y: float) -> int: ...
    def add_camera_point(self, x: float, y: float) -> int: ...
    def begin_move(self, who: Who, j: int) -> None: ...  # a handle drag starts: one undo step until end_move
    def move_point(self, who: Who, j: int, x: float, y: float) -> None: ...
    def end_move(self) -> None: ...

    # mask tools: "box" (x0, y0, x1, y1), "lasso" / "brush" / "eraser" points, "flood" / "sam" (x, y)
    def mask_tool(self, tool: str, geometry: Sequence, negative: bool = False) -> int | None: ...


@dataclass
class ToolState:
    """A mask gesture in progress."""

    box_start: tuple[float, float] | None = None
    stroke: list[tuple[float, float]] = field(default_factory=list)
    polygon: list[tuple[float, float]] = field(default_factory=list)
    sam_clicks: list[tuple[float, float, int]] = field(default_factory=list)
    sam_mask: int | None = None  # the mask SAM's clicks are refining
    new_object: bool = False  # the next mask starts a new object
    negative: bool = False


class Gestures:
    """Registered on ``pointer``; ``host`` gives the scene, the view and the edits (:class:`GestureHost`)."""

    def __init__(self, host: GestureHost, pointer: PointerMachine):
        self.s = host
        self.tool = ToolState()
        self.drag_handle: tuple[Who, int] | None = None
        self.clock = time.monotonic
        self._last_click: tuple[float, float, float] | None = None  # (time, x, y)
        pointer.on_click, pointer.on_drag_start, pointer.on_drag_move, pointer.on_drag_end = (
            self.click, self.drag_start, self.drag_move, self.drag_end)
        pointer.on_press, pointer.on_press_end = self.press, lambda: host.press_feedback(None)

    # ------------------------------------------------------------------ a press, before its release
    def press(self, p: PointerEvent) -> None:
        """Show at once the object a click here would select (its release does the selecting): the canvas answers
        the press, as a bare canvas does, instead of a round trip later."""
        self.s.press_feedback(self._would_select(p))

    def _would_select(self, p: PointerEvent) -> int | None:
        """The mask a click at p would make a new object (see _select_click and _path_click), else None. A press
        on a handle shows nothing: it is most likely the start of the handle's drag."""
        s = self.s
        if p.negative or not s.scene.masks or s.mode not in ("select", "path") or self._repeats_last(p, self.clock()):
            return None
        if s.mode == "select":
            idx = s.scene.mask_at(p.x, p.y)
        elif isinstance(s.view.active, int) and self.hit_handle(p.x, p.y) is None:
            idx = self._other_object_at(p)
        else:
            return None
        return None if idx is None or any(o.mask_index == idx for o in s.scene.objects) else idx

    # ------------------------------------------------------------------ dispatch
    def click(self, p: PointerEvent) -> None:
        s = self.s
        if self._second_of_double(p) and s.mode != "mask":
            return  # a double click does what its first click did, once (not: select the sky, then add a point)
        try:
            if s.mode == "mask":
                self._tool_click(p)
            elif s.mode == "select":
                self._select_click(p)
            elif s.mode == "path":
                self._path_click(p)
            elif s.mode == "camera":
                s.add_camera_point(p.x, p.y)
        except ValueError as e:
            s.say(f"can't do that: {e}", error=True)

    def _second_of_double(self, p: PointerEvent) -> bool:
        now = self.clock()
        second = self._repeats_last(p, now)
        self._last_click = (now, p.x, p.y)
        return second

    def _repeats_last(self, p: PointerEvent, now: float) -> bool:
        """A click at p now would be the second half of a double click."""
        last = self._last_click
        return (last is not None and now - last[0] < DOUBLE_CLICK_S
                and abs(p.x - last[1]) <= DRAG_START_PX and abs(p.y - last[2]) <= DRAG_START_PX)

    def drag_start(self, p: PointerEvent) -> None:
        s = self.s
        hit = None if s.mode == "mask" else self.hit_handle(p.x, p.y)
        if hit is not None and not p.negative:
            self.drag_handle = hit
            s.begin_move(*hit)
            return
        self.drag_handle = None
        if s.mode == "mask":
            t = self.tool
            t.negative = p.negative
            if s.tool == "box":
                t.box_start = (p.x, p.y)
            elif s.tool in ("lasso", "brush", "eraser"):
                t.stroke = [(p.x, p.y)]
                t.polygon = []

    def drag_move(self, p: PointerEvent) -> None:
        s = self.s
        if self.drag_handle is not None:
            s.move_point(*self.drag_handle, p.x, p.y)
            return
        if s.mode != "mask":
            return
        t = self.tool
        if s.tool == "box" and t.box_start is not None:
            s.preview([{"kind": "box", "xy": (*t.box_start, p.x, p.y), "negative": t.negative}])
        elif s.tool in ("lasso", "brush", "eraser") and t.stroke:
            t.stroke.append((p.x, p.y))
            if s.tool == "lasso":
                s.preview([{"kind": "line", "xy": t.stroke, "closed": True, "negative": t.negative}])
            else:
                s.preview([{"kind": "dots", "xy": _dense(t.stroke, s.brush_size / 2), "radius": s.brush_size,
                            "negative": t.negative or s.tool == "eraser"}])

    def drag_end(self, p: PointerEvent) -> None:
        s = self.s
        if self.drag_handle is not None:
            self.drag_handle = None
            s.end_move()
            return
        if s.mode == "path":  # a shaky click that moved a few pixels
            self.click(p)
            return
        if s.mode != "mask":
            return
        t = self.tool
        try:
            if s.tool == "box" and t.box_start is not None:
                start, t.box_start = t.box_start, None
                s.preview(None)
                s.mask_tool("box", (*start, p.x, p.y), t.negative)
            elif s.tool in ("lasso", "brush", "eraser") and t.stroke:
                stroke, t.stroke = t.stroke + [(p.x, p.y)], []
                s.preview(None)
                s.mask_tool(s.tool, stroke, t.negative)
        except ValueError as e:
            s.say(f"can't do that: {e}", error=True)

    # ------------------------------------------------------------------ modes
    def _select_click(self, p: PointerEvent) -> None:
        s = self.s
        if not s.scene.masks:
            s.say("this photo has no masks yet: press 'mask' and drag a box around an object")
            s.show_hint(p.x, p.y)
            return
        idx = s.scene.mask_at(p.x, p.y)
        if idx is None:
            s.say("no object mask here; click inside a coloured region")
            s.show_hint(p.x, p.y)
            return
        if p.negative:  # Shift/Alt-click on a selected object drops it
            for i, obj in enumerate(s.scene.objects):
                if obj.mask_index == idx:
                    s.remove_object(i)
                    break
        else:
            s.select_mask(idx)  # the selection shows first; the depth hint after it
        s.show_hint(p.x, p.y)

    def _path_click(self, p: PointerEvent) -> None:
        """On the active object or on the ground/sky: a path point. On another object: select it."""
        s = self.s
        if isinstance(s.view.active, int) and not p.negative:
            idx = self._other_object_at(p)
            if idx is not None:
                name = next((o.name for o in s.scene.objects if o.mask_index == idx), None)
                for i, obj in enumerate(s.scene.objects):
                    if obj.mask_index == idx:
                        s.activate(i)
                        s.say(f"selected {name}: click on the ground (or on {name}) to add its path points; "
                              "Shift-click adds a point anywhere")
                        return
                s.select_mask(idx, mode="path")
                return
        if not isinstance(s.view.active, int):
            if s.scene.masks:
                self._select_click(p)
            else:
                s.say("no object yet: press 'mask' and drag a box around one")
            return
        j = s.add_point(p.x, p.y)
        obj = s.scene.objects[s.view.active]
        on = f"on {obj.name}" if s.scene.masks[obj.mask_index][_pixel(s.scene, p)] else "on the background"
        s.say(f"P{j + 1} of {obj.name} added {on}; drag a point to move it, set its depth in the table below")

    def _other_object_at(self, p: PointerEvent) -> int | None:
        """In path mode, the mask under p when it is neither the active object's nor ground or sky: a click there
        selects that object instead of adding a path point."""
        s = self.s
        idx = s.scene.mask_at(p.x, p.y)
        own = s.scene.objects[s.view.active].mask_index
        return idx if idx is not None and idx != own and not self._is_background(idx) else None

    def _is_background(self, mask_index: int) -> bool:
        m = self.s.scene.masks[mask_index]
        return m.mean() > BACKGROUND_FRACTION

    def hit_handle(self, x: float, y: float) -> tuple[Who, int] | None:
        s = self.s
        best, best_d = None, HIT_RADIUS
        candidates = [(i, o.path) for i, o in enumerate(s.scene.objects) if i not in s.view.hidden]
        candidates.append((CAMERA, s.scene.camera_path))
        for who, path in candidates:
            for j, pt in enumerate(path):
                d = float(np.hypot(pt.x - x, pt.y - y))
                if d <= best_d:
                    best, best_d = (who, j), d
        return best

    # ------------------------------------------------------------------ mask tools
    def _tool_click(self, p: PointerEvent) -> None:
        s, t = self.s, self.tool
        if s.tool == "box":
            s.say("drag a box around the object (a click is not a box)")
        elif s.tool == "lasso":
            if len(t.polygon) >= 3 and np.hypot(p.x - t.polygon[0][0], p.y - t.polygon[0][1]) <= HIT_RADIUS:
                self.close_polygon()
                return
            if not t.polygon:
                t.negative = p.negative
            t.polygon.append((p.x, p.y))
            s.preview([{"kind": "line", "xy": t.polygon, "closed": False, "negative": t.negative}])
            s.say(f"polygon: {len(t.polygon)} points; click the first point (or press Enter) to close it, "
                  "Escape to drop it")
        elif s.tool in ("brush", "eraser"):
            s.mask_tool(s.tool, [(p.x, p.y)], p.negative)
        elif s.tool in ("flood", "sam"):
            s.mask_tool(s.tool, (p.x, p.y), p.negative)

    def close_polygon(self) -> None:
        t = self.tool
        pts, t.polygon = t.polygon, []
        self.s.preview(None)
        if len(pts) >= 3:
            self.s.mask_tool("lasso", pts, t.negative)

    def cancel(self) -> None:
        """Escape: drop the gesture in progress."""
        self.tool.polygon, self.tool.stroke, self.tool.box_start = [], [], None
        self.s.preview(None)


def _pixel(scene, p: PointerEvent) -> tuple[int, int]:
    return int(np.clip(round(p.y), 0, scene.height - 1)), int(np.clip(round(p.x), 0, scene.width - 1))


def _dense(points: list[tuple[float, float]], spacing: float) -> np.ndarray:
    """Points along a polyline every ``spacing`` pixels (the brush preview's dabs)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return pts
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.hypot(*(b - a)) / max(spacing, 1.0)))
        out.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
    return np.vstack(out)
