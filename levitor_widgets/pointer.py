"""The canvas pointer as a small explicit state machine: idle -> pressing -> dragging -> idle.

Browser events arrive one by one and some never arrive: a button released off the canvas sends no mouseup to it.
So every way a press can end ends it: pointer-up, pointer-leave, a lost pointer capture, a move that reports no
button held, or a new press while one is still open. Whatever ended it, the handlers see at most one of
``on_click`` (a press and a heard release without moving) or ``on_drag_start`` ... ``on_drag_end`` per press,
never a drag that goes on without a button; a press whose release was never heard is no click (no phantom
edits).

A drag may outlive a trip off the canvas where ``keep_on_leave()`` says so (the Studio: a mask stroke, so that a
lasso or a box that runs past the image's edge goes on when the pointer comes back with the button held): the
point where it left is passed on as a move (off the image: the tools clip it), and the drag ends at the first
event that shows the button is no longer held.

No widgets here: the canvas feeds events in, the Studio registers the handlers, and the tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

DRAG_START_PX = 3.0  # a press that moves farther than this (canvas pixels) is a drag, not a click


@dataclass
class PointerEvent:
    """A pointer event in canvas pixels: (x, y), x right, y down; Shift / Alt held."""

    x: float
    y: float
    shift: bool = False
    alt: bool = False

    @property
    def negative(self) -> bool:
        """Shift or Alt: "not this" (a negative click or stroke)."""
        return self.shift or self.alt


class State(Enum):
    IDLE = "idle"
    PRESSING = "pressing"
    DRAGGING = "dragging"
    OUTSIDE = "outside"  # a kept drag whose pointer is off the canvas


Handler = Callable[[PointerEvent], None]


class PointerMachine:
    """Turns raw down/move/up/leave/cancel events into clicks and drags (see the module docstring)."""

    def __init__(self, drag_start_px: float = DRAG_START_PX):
        self.drag_start_px = float(drag_start_px)
        self.state = State.IDLE
        self.start: PointerEvent | None = None  # where the press began
        self.last: PointerEvent | None = None  # the last position seen during the press
        self.on_click: Handler | None = None
        self.on_drag_start: Handler | None = None  # called with the press position
        self.on_drag_move: Handler | None = None
        self.on_drag_end: Handler | None = None  # called with the last position seen
        self.on_hover: Handler | None = None  # moves with no button held (tool previews)
        # a press in progress, for feedback before the release (what a click here would do): called at the press
        # and again when its Shift/Alt become known; on_press_end when the press ends in any way (after on_click)
        self.on_press: Handler | None = None
        self.on_press_end: Callable[[], None] | None = None
        self.keep_on_leave: Callable[[], bool] | None = None  # asked when a drag leaves the canvas

    @property
    def dragging(self) -> bool:
        return self.state is State.DRAGGING

    # ------------------------------------------------------------------ events
    def down(self, p: PointerEvent) -> None:
        if self.state is not State.IDLE:  # the release of the last press never came: end it where it was
            self._end(self.last, click=False)
        self.state, self.start, self.last = State.PRESSING, p, p
        self._call(self.on_press, p)

    def move(self, p: PointerEvent, buttons: int | None = None) -> None:
        """A move; ``buttons`` is the browser's bit mask of held buttons (None: not reported)."""
        if self.state is State.IDLE:
            self._call(self.on_hover, p)
            return
        if buttons == 0:  # the button was released somewhere we did not hear about
            self._end(self.last, click=False)
            self._call(self.on_hover, p)
            return
        p = self._carry(p)
        if self.state is State.OUTSIDE:
            if buttons is None:  # no word on the button (ipycanvas' own events): end it, never drag without one
                self._end(self.last, click=False)
                self._call(self.on_hover, p)
                return
            self.state = State.DRAGGING  # back on the canvas with the button held: the drag goes on
        self.last = p
        if self.state is State.PRESSING:
            if abs(p.x - self.start.x) <= self.drag_start_px and abs(p.y - self.start.y) <= self.drag_start_px:
                return
            self.state = State.DRAGGING
            self._press_ended()
            self._call(self.on_drag_start, self.start)
        self._call(self.on_drag_move, p)

    def up(self, p: PointerEvent) -> None:
        if self.state is State.IDLE:
            return
        p = self._carry(p)
        if self.state in (State.DRAGGING, State.OUTSIDE):
            self.last = p
        self._end(p)

    def leave(self, p: PointerEvent | None = None) -> None:
        """The pointer left the canvas: a drag ends where it was last seen on it (or, kept, goes on off the canvas:
        see the module docstring); a press without a move is dropped (nobody clicks by leaving)."""
        if self.state is State.DRAGGING and p is not None and self.keep_on_leave is not None and self.keep_on_leave():
            self.state, self.last = State.OUTSIDE, p
            self._call(self.on_drag_move, p)
        elif self.state in (State.DRAGGING, State.OUTSIDE):
            self._end(self.last)
        else:
            self._reset()
            self._press_ended()

    def modifiers(self, shift: bool, alt: bool) -> None:
        """Shift/Alt of the press in progress, told apart from its position (the canvas's own press event has no
        modifier keys; a second source reports them before the press is released or moves)."""
        if self.state is State.PRESSING and self.start is not None:
            changed = (shift, alt) != (self.start.shift, self.start.alt)
            self.start = PointerEvent(self.start.x, self.start.y, shift, alt)
            self.last = PointerEvent(self.last.x, self.last.y, shift, alt) if self.last is not None else self.start
            if changed:
                self._call(self.on_press, self.start)

    def enter(self, buttons: int | None) -> None:
        """The pointer came back onto the canvas; ``buttons``: the browser's bit mask of held buttons. A kept drag
        goes on if the button is still held, else it ends where it left (the release happened off the canvas)."""
        if self.state is not State.OUTSIDE or buttons is None:
            return
        if int(buttons) & 1:
            self.state = State.DRAGGING
        else:
            self._end(self.last, click=False)

    def cancel(self) -> None:
        """Lost pointer capture / pointercancel / the canvas went away: the drag ends where it was last seen."""
        if self.state in (State.DRAGGING, State.OUTSIDE):
            self._end(self.last)
        else:
            self._reset()
            self._press_ended()

    # ------------------------------------------------------------------ internals
    def _end(self, p: PointerEvent | None, click: bool = True) -> None:
        state, start = self.state, self.start
        p = p or self.last or start
        self._reset()
        if state in (State.DRAGGING, State.OUTSIDE):
            self._call(self.on_drag_end, p)
        elif state is State.PRESSING and click and p is not None:
            self._call(self.on_click, PointerEvent(start.x, start.y, start.shift, start.alt))
        if state is State.PRESSING:
            self._press_ended()

    def _press_ended(self) -> None:
        if self.on_press_end is not None:
            self.on_press_end()

    def _carry(self, p: PointerEvent) -> PointerEvent:
        """The press's Shift/Alt on a later event of it that reports none (a canvas event without modifiers)."""
        s = self.start
        if s is None or p.shift or p.alt or not (s.shift or s.alt):
            return p
        return PointerEvent(p.x, p.y, s.shift, s.alt)

    def _reset(self) -> None:
        self.state, self.start, self.last = State.IDLE, None, None

    @staticmethod
    def _call(handler: Handler | None, p: PointerEvent) -> None:
        if handler is not None:
            handler(p)
