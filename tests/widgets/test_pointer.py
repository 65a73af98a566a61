"""The canvas pointer state machine and the redraw scheduler, without a browser or widgets."""

from __future__ import annotations

import pytest

from levitor_widgets.pointer import PointerEvent, PointerMachine, State
from levitor_widgets.scheduler import DRAG_REFRESH_S, PANELS_AFTER_S, SETTLE_REFRESH_S, RedrawScheduler


@pytest.fixture
def machine():
    m = PointerMachine()
    m.log = []
    m.on_click = lambda p: m.log.append(("click", p.x, p.y))
    m.on_drag_start = lambda p: m.log.append(("start", p.x, p.y))
    m.on_drag_move = lambda p: m.log.append(("move", p.x, p.y))
    m.on_drag_end = lambda p: m.log.append(("end", p.x, p.y))
    return m


def P(x, y, **kw):
    return PointerEvent(x, y, **kw)


def test_click_is_press_and_release_without_moving(machine):
    machine.down(P(10, 10))
    assert machine.state is State.PRESSING
    machine.move(P(11, 11), buttons=1)  # within DRAG_START_PX: still a click
    machine.up(P(11, 11))
    assert machine.log == [("click", 10, 10)] and machine.state is State.IDLE


def test_drag_start_move_end(machine):
    machine.down(P(10, 10))
    machine.move(P(30, 10), buttons=1)
    machine.move(P(40, 12), buttons=1)
    assert machine.state is State.DRAGGING
    machine.up(P(42, 12))
    assert machine.log == [("start", 10, 10), ("move", 30, 10), ("move", 40, 12), ("end", 42, 12)]


@pytest.mark.parametrize("how", ["leave", "cancel", "buttons0", "new_press"])
def test_every_way_a_drag_can_end_ends_it_once(machine, how):
    machine.down(P(10, 10))
    machine.move(P(50, 50), buttons=1)
    if how == "leave":
        machine.leave(P(99, 99))
    elif how == "cancel":
        machine.cancel()
    elif how == "buttons0":  # released off the canvas, back on it with no button held
        machine.move(P(80, 80), buttons=0)
    else:
        machine.down(P(70, 70))
        machine.up(P(70, 70))  # the new press is a normal click
        assert machine.log[-1] == ("click", 70, 70)
    assert ("end", 50, 50) in machine.log  # ended where it was last seen, never at the leave point
    assert [e[0] for e in machine.log].count("end") == 1
    machine.move(P(90, 90), buttons=0)  # the handle no longer follows the mouse
    machine.move(P(95, 95), buttons=None)
    assert [e for e in machine.log if e[0] == "move"] == [("move", 50, 50)]
    machine.down(P(5, 5))
    machine.up(P(5, 5))
    assert machine.log[-1] == ("click", 5, 5)
    assert [e[0] for e in machine.log].count("click") == (2 if how == "new_press" else 1)


def test_a_press_whose_release_was_lost_is_no_click(machine):
    machine.down(P(10, 10))
    machine.leave(P(10, 10))
    machine.down(P(20, 20))
    machine.move(P(20, 20), buttons=0)
    machine.up(P(20, 20))  # a stray up in IDLE
    assert machine.log == [] and machine.state is State.IDLE


@pytest.mark.parametrize("how", ["back_and_up", "buttons0", "no_buttons_word", "cancel"])
def test_a_kept_drag_goes_on_off_the_canvas_until_the_button_is_seen_released(machine, how):
    """A mask stroke past the image's edge (keep_on_leave): the leave point is a move, the drag goes on when the
    pointer comes back with the button held, and ends at the first sign the button is up."""
    machine.keep_on_leave = lambda: True
    machine.down(P(10, 10))
    machine.move(P(50, 10), buttons=1)
    machine.leave(P(102, 10))  # off the canvas's right edge
    assert machine.state is State.OUTSIDE and machine.log[-1] == ("move", 102, 10)
    if how == "back_and_up":
        machine.move(P(98, 60), buttons=1)
        machine.up(P(60, 60))
        assert machine.log[-2:] == [("move", 98, 60), ("end", 60, 60)]
    elif how == "buttons0":  # released off the canvas: back with no button, the stroke ends where it left
        machine.move(P(90, 60), buttons=0)
        assert machine.log[-1] == ("end", 102, 10)
    elif how == "no_buttons_word":  # ipycanvas' own events say nothing about the button: never drag without one
        machine.move(P(90, 60), buttons=None)
        assert machine.log[-1] == ("end", 102, 10)
    else:
        machine.cancel()
        assert machine.log[-1] == ("end", 102, 10)
    assert machine.state is State.IDLE and [e[0] for e in machine.log].count("end") == 1


class FakeLoop:
    def __init__(self):
        self.t = 0.0
        self.timers = []

    def call_soon(self, delay, fn):
        loop = self

        class Handle:
            cancelled = False

            def cancel(self):
                self.cancelled = True
                loop.timers.remove(self)

        h = Handle()
        h.when, h.fn = self.t + delay, fn
        self.timers.append(h)
        return h

    def run_until(self, t):
        while self.timers and min(h.when for h in self.timers) <= t:
            h = min(self.timers, key=lambda h: h.when)
            self.timers.remove(h)
            self.t = h.when
            h.fn()
        self.t = t


def test_scheduler_drafts_a_burst_then_settles_and_follows():
    loop, log = FakeLoop(), []
    s = RedrawScheduler(lambda: log.append("draft"), lambda: (log.append("full"), s.side()), lambda: log.append("side"),
                        call_soon=loop.call_soon, defers=lambda: True, clock=lambda: loop.t)
    s.burst()
    assert log == ["draft"]  # the first event of a burst is drawn at once
    for _ in range(5):  # a storm within the draft interval: coalesced
        loop.run_until(loop.t + DRAG_REFRESH_S / 4)
        s.burst()
    assert log.count("draft") <= 3 and "full" not in log
    loop.run_until(loop.t + SETTLE_REFRESH_S + 1.0)
    assert log.count("full") == 1 and log[-1] == "side" and s.idle


def test_panels_and_messages_follow_the_canvas_once_each():
    """In a kernel the widget updates wait PANELS_AFTER_S (the canvas's drawing goes out alone), the newest of each
    kind once; without a loop they run at once; close runs what waits."""
    loop, log = FakeLoop(), []
    s = RedrawScheduler(lambda: None, lambda: None, lambda: None, panels=lambda: log.append("panels"),
                        call_soon=loop.call_soon, defers=lambda: True, clock=lambda: loop.t)
    s.panels()
    s.after_canvas("messages", lambda: log.append("old message"))
    s.panels()
    s.after_canvas("messages", lambda: log.append("new message"))
    assert log == [] and not s.idle
    loop.run_until(PANELS_AFTER_S / 2)
    assert log == []
    loop.run_until(PANELS_AFTER_S * 1.01)
    assert log == ["panels", "new message"] and s.idle
    s.panels()
    s.close()
    assert log[-1] == "panels"
    log.clear()
    s = RedrawScheduler(lambda: None, lambda: None, lambda: None, panels=lambda: log.append("panels"),
                        defers=lambda: False)
    s.panels()
    assert log == ["panels"] and s.idle


def test_scheduler_without_a_loop_runs_at_once_and_close_flushes():
    log = []
    s = RedrawScheduler(lambda: log.append("draft"), lambda: log.append("full"), lambda: log.append("side"),
                        defers=lambda: False)
    s.burst()
    s.side()
    assert log == ["full", "side"] and s.idle
    loop = FakeLoop()
    s = RedrawScheduler(lambda: log.append("draft"), lambda: log.append("full"), lambda: log.append("side"),
                        call_soon=loop.call_soon, defers=lambda: True, clock=lambda: loop.t)
    log.clear()
    s.side()
    s.close()  # the waiting autosave happens before the Studio stops
    assert log == ["side"] and s.closed
    s.full()
    s.side()
    assert log == ["side"]


def test_modifiers_told_after_the_press_reach_its_click_and_its_drag(machine):
    machine.down(P(10, 10))
    machine.modifiers(shift=True, alt=False)  # the canvas's own press has none; ipyevents tells them next
    machine.up(P(10, 10))
    clicks = []
    machine.on_click = clicks.append
    machine.down(P(20, 20))
    machine.modifiers(shift=False, alt=True)
    machine.up(P(20, 20))
    assert clicks[0].alt and not clicks[0].shift
    ends = []
    machine.on_drag_end = ends.append
    machine.down(P(0, 0))
    machine.modifiers(shift=True, alt=False)
    machine.move(P(30, 0))
    machine.up(P(40, 0))  # a release event without modifiers: the press's are carried
    assert ends[0].shift and ends[0].x == 40


@pytest.mark.parametrize("buttons, goes_on", [(1, True), (0, False)])
def test_a_kept_drag_goes_on_when_it_comes_back_with_the_button_held(machine, buttons, goes_on):
    machine.keep_on_leave = lambda: True
    machine.down(P(10, 10))
    machine.move(P(40, 10))
    machine.leave(P(60, 10))
    assert machine.state is State.OUTSIDE
    machine.enter(buttons)
    machine.move(P(45, 20))  # ipycanvas' move: no word on the button
    kinds = [e[0] for e in machine.log]
    if goes_on:
        assert machine.state is State.DRAGGING and machine.log[-1] == ("move", 45, 20) and "end" not in kinds
    else:
        assert machine.state is State.IDLE and kinds.count("end") == 1 and machine.log[-1] == ("end", 60, 10)
