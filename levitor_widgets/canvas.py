"""The scene canvas: five ipycanvas layers (image, mask overlay, paths, control points, tool previews) and its
mouse/keys.

It only draws arrays it is given and feeds browser events into its :class:`~levitor_widgets.pointer.PointerMachine`
(``pointer``: the Studio registers click/drag handlers there) and ``on_key``; it knows nothing about scenes or the
engine. Positions come from ipycanvas' own mouse events (the browser sends them anyway: listening to a second
source would double every message); ipyevents, where installed, adds Shift/Alt, the held buttons and the keys.

It remembers what each layer shows (``shown``: layer name -> the last arrays drawn), for tests and to redraw every
layer in full when a browser view (re)connects: a reload, a re-displayed cell.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from ipycanvas import MultiCanvas, hold_canvas

from levitor.viz.colors import POINT_RADIUS, css
from levitor_widgets.compat import px
from levitor_widgets.pointer import PointerEvent, PointerMachine, State

LAYERS = ("image", "mask", "paths", "points", "tool")
DRAG_THROTTLE_MS = 40  # a drag's moves handled at most this often (the browser sends every one)
HANDLE_RADIUS = 5.0
WATCHED = ("mousedown", "keydown", "touchcancel")  # ipyevents' events (and "mouseenter": SceneCanvas._watch_return)
PATCH_MAX_FRACTION = 0.6  # redraw only the changed box of the mask layer when it is smaller than this


_holding = [0]  # nested held_drawing blocks open now (ipycanvas' hold is global: so is this count)


@contextmanager
def held_drawing():
    """ipycanvas' ``hold_canvas`` with a ``finally`` (it has none, so one exception inside it would leave every
    canvas holding back its drawing for the rest of the session), nestable: only the outermost block sends what
    was drawn, as one message (a nested ``hold_canvas`` sends the outer block's drawing so far when it ends)."""
    if _holding[0]:
        yield
        return
    held = hold_canvas()
    held.__enter__()
    _holding[0] += 1
    try:
        yield
    finally:
        _holding[0] -= 1
        held.__exit__(None, None, None)  # flush what was drawn and stop holding


def _one_message(draw):
    """A drawing method whose commands reach the browser as one message (with an enclosing batch's, in it)."""
    @functools.wraps(draw)
    def run(self, *args, **kwargs):
        with held_drawing():
            return draw(self, *args, **kwargs)
    return run


@dataclass
class PathDrawing:
    """One path to draw: the clicked points, its colour, and which point (if any) is highlighted."""

    xy: np.ndarray  # (N, 2) float, (x, y) pixels
    color: tuple[int, int, int]
    active: int | None = None
    dashed: bool = False
    label: str = ""


class SceneCanvas:
    """A ``MultiCanvas`` with one layer per kind of drawing, sized 1:1 to the scene image."""

    def __init__(self, width: int, height: int, use_ipyevents: bool = True):
        self.width, self.height = int(width), int(height)
        self.widget = MultiCanvas(len(LAYERS), width=self.width, height=self.height)
        # Without an explicit size the canvas stretches to the cell width (mouse mapping still works, but
        # 1 canvas pixel = 1 screen pixel keeps the drawing sharp and the hit radius predictable).
        self.widget.layout.width = px(self.width)
        self.widget.layout.height = px(self.height)
        self.layers = {name: self.widget[i] for i, name in enumerate(LAYERS)}
        self.shown: dict[str, object] = {name: None for name in LAYERS}
        self.pointer = PointerMachine()
        self.on_key: Callable[[str, bool], None] | None = None
        self.redraws = 0  # full redraws for a (re)connected view
        self.errors: list[str] = []  # tracebacks of handler errors (the browser would only log them)
        self.on_error: Callable[[str], None] | None = None
        self.events: object | None = None  # the ipyevents Event (modifier keys, held buttons, keys), if installed
        self.move_throttle_ms = DRAG_THROTTLE_MS
        self._last_move = float("-inf")
        self._held_move: PointerEvent | None = None  # a throttled move, passed on before the release
        self.on_ready: Callable[[], None] | None = None  # called when a browser view has connected and been drawn
        self._wire_ipycanvas()
        if use_ipyevents:
            self._wire_ipyevents()
        self.widget.on_client_ready(self._client_ready)

    def _client_ready(self) -> None:
        self.redraw()
        if self.on_ready is not None:
            self._guard(self.on_ready)

    @property
    def events_backend(self) -> str:
        """"ipyevents" (Shift/Alt, held buttons and keys known) or "ipycanvas" (positions only)."""
        return "ipyevents" if self.events is not None else "ipycanvas"

    # ------------------------------------------------------------------ events
    # The browser sends ipycanvas' mouse events whether or not anyone listens, so they carry the positions: one
    # message per press, release, move and exit, as for a bare canvas. ipyevents adds only what they lack, once
    # per press (Shift/Alt), once per return onto the canvas (is the button still held?) and per key.
    def _wire_ipycanvas(self) -> None:
        w = self.widget
        w.on_mouse_down(lambda x, y: self._guard(self._down, PointerEvent(x, y)))
        w.on_mouse_move(lambda x, y: self._guard(self._move, PointerEvent(x, y)))
        w.on_mouse_up(lambda x, y: self._guard(self._up, PointerEvent(x, y)))
        w.on_mouse_out(lambda x, y: self._guard(self._out, PointerEvent(x, y)))

    def _wire_ipyevents(self) -> None:
        try:
            from ipyevents import Event
        except ImportError:
            return
        self.events = Event(source=self.widget, watched_events=list(WATCHED), prevent_default_action=True)
        self.events.on_dom_event(lambda ev: self._guard(self._dom_event, ev))

    def _watch_return(self) -> None:
        """Listen for the pointer coming back (is the button still held?) only while a kept drag is off the
        canvas: no message otherwise, and none from a view whose kernel went away (a dialog closing over it)."""
        if self.events is None:
            return
        want = list(WATCHED) + (["mouseenter"] if self.pointer.state is State.OUTSIDE else [])
        if list(self.events.watched_events) != want:
            self.events.watched_events = want

    def _down(self, p: PointerEvent) -> None:
        self._held_move = None
        self.pointer.down(p)
        self._watch_return()

    def _move(self, p: PointerEvent) -> None:
        """Moves of a drag at most every DRAG_THROTTLE_MS (the last one held back is passed on at the release);
        the others at once (a press becomes a drag on its first move past the threshold)."""
        now = time.perf_counter()
        if self.pointer.dragging and (now - self._last_move) * 1e3 < self.move_throttle_ms:
            self._held_move = p
            return
        self._held_move, self._last_move = None, now
        self.pointer.move(p)
        self._watch_return()

    def _up(self, p: PointerEvent) -> None:
        if self._held_move is not None:
            held, self._held_move = self._held_move, None
            self.pointer.move(held)
        self.pointer.up(p)
        self._watch_return()

    def _out(self, p: PointerEvent) -> None:
        self._held_move = None
        self.pointer.leave(p)
        self._watch_return()

    def _dom_event(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "keydown":
            if self.on_key is not None:
                self.on_key(str(ev.get("key", "")), bool(ev.get("shiftKey", False)))
        elif kind == "mousedown":  # arrives right after ipycanvas' own press, before its release or any move
            self.pointer.modifiers(bool(ev.get("shiftKey", False)), bool(ev.get("altKey", False)))
        elif kind == "mouseenter":
            self.pointer.enter(ev.get("buttons"))
            self._watch_return()
        elif kind == "touchcancel":
            self.pointer.cancel()

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a handler bug must not silently eat the click: keep it for the UI and the tests
            import traceback

            self.errors.append(traceback.format_exc())
            del self.errors[:-20]
            if self.on_error is not None:
                self.on_error(self.errors[-1])

    # ------------------------------------------------------------------ drawing
    @contextmanager
    def batch(self):
        """All drawing inside goes to the browser as one message, flushed even when the drawing raises (each
        drawing method is one message of its own; a batch joins several layers' into one)."""
        with held_drawing():
            yield

    @_one_message
    def draw_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB."""
        self.shown["image"] = image
        layer = self.layers["image"]
        layer.clear()
        layer.put_image_data(np.ascontiguousarray(image), 0, 0)

    @_one_message
    def draw_mask(self, rgba: np.ndarray | None, full: bool = False) -> None:
        """rgba: (H, W, 4) uint8, alpha 0 where nothing is overlaid; None clears the layer.

        Only the bounding box of what changed since the last draw is sent (an edit to one path changes the
        pixels along that object's track): the layer travels as a PNG, so fewer pixels draw sooner. ``full``
        sends the whole layer (a view that just connected has none of it)."""
        old = self.shown["mask"]
        if not full and rgba is not None and old is not None and old.shape == rgba.shape:
            changed = (old != rgba).any(-1)
            rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
            if len(rows) == 0:
                return
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            if (y1 - y0) * (x1 - x0) < PATCH_MAX_FRACTION * rgba.shape[0] * rgba.shape[1]:
                self.shown["mask"] = rgba.copy()  # patches write into the shown copy, never the caller's array
                layer = self.layers["mask"]
                layer.clear_rect(x0, y0, x1 - x0, y1 - y0)
                layer.put_image_data(np.ascontiguousarray(rgba[y0:y1, x0:x1]), x0, y0)
                return
        self.shown["mask"] = None if rgba is None else rgba.copy()
        layer = self.layers["mask"]
        layer.clear()
        if rgba is not None:
            layer.put_image_data(np.ascontiguousarray(rgba), 0, 0)

    @_one_message
    def draw_mask_patch(self, rgba_patch: np.ndarray, x0: int, y0: int) -> None:
        """Replace a rectangle of the mask layer (a small image travels faster than the whole layer)."""
        h, w = rgba_patch.shape[:2]
        if self.shown["mask"] is None:
            self.shown["mask"] = np.zeros((self.height, self.width, 4), np.uint8)
        self.shown["mask"][y0:y0 + h, x0:x0 + w] = rgba_patch
        layer = self.layers["mask"]
        layer.clear_rect(x0, y0, w, h)
        layer.put_image_data(np.ascontiguousarray(rgba_patch), x0, y0)

    @_one_message
    def fill_mask_runs(self, mask: np.ndarray, x0: int, y0: int, rgba: tuple[int, int, int, int]) -> None:
        """Set the mask layer's pixels under ``mask`` (a boolean patch at (x0, y0)) to ``rgba``, sent as one
        rectangle per horizontal run: the browser draws rectangles at once, where an image patch waits for its
        decode (a highlight that answers a press must not)."""
        h, w = mask.shape
        if self.shown["mask"] is None:
            self.shown["mask"] = np.zeros((self.height, self.width, 4), np.uint8)
        self.shown["mask"][y0:y0 + h, x0:x0 + w][mask] = rgba
        edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        rows, starts = np.nonzero(edges == 1)  # row-major: each run's start pairs with its end
        ends = np.nonzero(edges == -1)[1]
        if len(rows) == 0:
            return
        x, y, width = (starts + x0).astype(np.int32), (rows + y0).astype(np.int32), (ends - starts).astype(np.int32)
        layer = self.layers["mask"]
        layer.global_composite_operation = "destination-out"  # clear the runs first: the colour replaces, not blends
        layer.fill_style = "#000"
        layer.fill_rects(x, y, width, 1)
        layer.global_composite_operation = "source-over"
        r, g, b, a = (int(c) for c in rgba)
        layer.fill_style = f"rgba({r},{g},{b},{a / 255:.4f})"
        layer.fill_rects(x, y, width, 1)

    @_one_message
    def draw_paths(self, paths: list[PathDrawing], hint: tuple[float, float, str] | None = None) -> None:
        """Polylines through each path's clicks with a handle per click; ``hint`` = (x, y, text) near a click.
        Nothing is sent when the layer shows exactly this already."""
        if self.shown["paths"] is not None and _same_paths(self.shown["paths"], (paths, hint)):
            return
        self.shown["paths"] = (paths, hint)
        layer = self.layers["paths"]
        layer.clear()
        for path in paths:
            if len(path.xy) == 0:
                continue
            color = css(path.color)
            layer.line_width = 2
            layer.stroke_style = color
            layer.set_line_dash([6, 4] if path.dashed else [])
            if len(path.xy) > 1:
                layer.stroke_lines(path.xy.tolist())
            layer.set_line_dash([])
            layer.fill_style = color
            layer.fill_circles(path.xy[:, 0], path.xy[:, 1], HANDLE_RADIUS)
            layer.stroke_style = "white"
            layer.line_width = 1.5
            layer.stroke_circles(path.xy[:, 0], path.xy[:, 1], HANDLE_RADIUS)
            if path.active is not None and 0 <= path.active < len(path.xy):
                ax, ay = path.xy[path.active]
                layer.stroke_style = "yellow"
                layer.line_width = 2.5
                layer.stroke_circle(float(ax), float(ay), HANDLE_RADIUS + 3)
            if path.label:
                layer.fill_style = "white"
                layer.font = "11px sans-serif"
                layer.fill_text(path.label, float(path.xy[0, 0]) + 8, float(path.xy[0, 1]) - 8)
        if hint is not None:
            x, y, text = hint
            layer.font = "12px sans-serif"
            layer.fill_style = "rgba(0,0,0,0.6)"
            box_w = 8 + 7 * len(text)  # 12px sans-serif: under 7 px per character
            tx = float(min(max(x + 10, 2), self.width - box_w - 2))
            ty = float(min(max(y + 10, 2), self.height - 20))
            layer.fill_rect(tx, ty, box_w, 18)
            layer.fill_style = "white"
            layer.fill_text(text, tx + 4, ty + 13)

    @_one_message
    def draw_points(self, xy: np.ndarray, colors: np.ndarray) -> None:
        """Control points of one frame: xy (P, 2) float pixels, colors (P, 3) uint8; one vectorised call each.
        Nothing is sent when the layer shows exactly these already."""
        old = self.shown["points"]
        if old is not None and np.array_equal(old[0], xy) and np.array_equal(old[1], colors):
            return
        self.shown["points"] = (xy, colors)
        layer = self.layers["points"]
        layer.clear()
        if len(xy) == 0:
            return
        layer.fill_styled_circles(xy[:, 0], xy[:, 1], POINT_RADIUS, colors.astype(np.int64), alpha=1)
        layer.stroke_style = "black"
        layer.line_width = 1
        layer.stroke_circles(xy[:, 0], xy[:, 1], POINT_RADIUS)

    @_one_message
    def draw_tool(self, shapes: list[dict] | None) -> None:
        """Previews of the gesture in progress: ``{"kind": "box", "xy": (x0, y0, x1, y1)}``,
        ``{"kind": "line", "xy": (N, 2), "closed": bool}``, ``{"kind": "dots", "xy": (N, 2), "radius": r}``;
        each with an optional ``"negative": True`` (drawn red). None clears the layer."""
        if not shapes and not self.shown["tool"]:
            return  # nothing shown, nothing to show: no message
        self.shown["tool"] = shapes
        layer = self.layers["tool"]
        layer.clear()
        for shape in shapes or ():
            color = css((230, 40, 40)) if shape.get("negative") else css((255, 235, 59))
            layer.stroke_style, layer.fill_style = color, color
            layer.line_width = 2
            xy = np.asarray(shape["xy"], dtype=np.float64)
            if shape["kind"] == "box":
                x0, y0, x1, y1 = xy.tolist()
                layer.set_line_dash([5, 3])
                layer.stroke_rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
                layer.set_line_dash([])
            elif shape["kind"] == "line" and len(xy) > 0:
                pts = np.vstack([xy, xy[:1]]) if shape.get("closed") and len(xy) > 2 else xy
                if len(pts) > 1:
                    layer.stroke_lines(pts.tolist())
                layer.fill_circles(xy[:, 0], xy[:, 1], 3)
            elif shape["kind"] == "dots" and len(xy) > 0:
                layer.global_alpha = 0.5
                layer.fill_circles(xy[:, 0], xy[:, 1], float(shape.get("radius", 4)))
                layer.global_alpha = 1.0

    def redraw(self) -> None:
        """Draw every layer again, in full, from what it last showed (a browser view (re)connected)."""
        self.redraws += 1
        self.pointer.cancel()  # a press that was open when the view went away will never be released
        with self.batch():
            if self.shown["image"] is not None:
                self.draw_image(self.shown["image"])
            self.draw_mask(self.shown["mask"], full=True)
            paths, self.shown["paths"] = self.shown["paths"], None  # drawn again, in full
            if paths is not None:
                self.draw_paths(*paths)
            points, self.shown["points"] = self.shown["points"], None
            if points is not None:
                self.draw_points(*points)
            self.draw_tool(self.shown["tool"])


def _same_paths(a: tuple[list[PathDrawing], object], b: tuple[list[PathDrawing], object]) -> bool:
    (pa, ha), (pb, hb) = a, b
    return ha == hb and len(pa) == len(pb) and all(
        np.array_equal(x.xy, y.xy) and (x.color, x.active, x.dashed, x.label) == (y.color, y.active, y.dashed, y.label)
        for x, y in zip(pa, pb))
