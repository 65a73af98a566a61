"""A fake front end: what a browser's widget views send back to the kernel, replayed without a browser.

It catches every message the kernel sends to a widget (``Widget._send``), keeps each model's state as the browser
holds it, and answers as a browser's views do:

- a slider (ipywidgets' noUiSlider views) clamps its value into a new min/max and snaps it to its step (from
  min, in log space for a log slider), and sends the result back whenever it differs from the model's value;
- the path table (``levitor_widgets/depth_table.js``) is played as a worse browser than the real one: when it
  has drawn the last rows it was sent, it sends every row's value back (the slider's snapped value, the number
  box's two decimals and the frame) under the subject it now shows, and after a change of subject also the old
  rows under the old subject (late). (Within one subject a stale value looks like a user's move; the real table
  sends none: a value set by script fires no input event.)

``display(root)`` renders a widget tree (every view starts: sliders snap their first value). ``flush()`` delivers
everything queued, including what the answers make the kernel send, until nothing moves. The kernel's
``time.monotonic`` is this browser's clock: ``wait()`` lets a user's pause pass (a browser's answer may come
seconds after the kernel's message, as on a busy machine or a page still loading).
"""

from __future__ import annotations

import math
import time

import ipywidgets as W

SLIDERS = (W.FloatSlider, W.FloatLogSlider, W.IntSlider)


def _is_table(widget) -> bool:
    return type(widget).__name__ == "DepthTable"


class FakeBrowser:
    def __init__(self, monkeypatch):
        self.now = 1000.0  # time.monotonic, as the kernel reads it: the user takes their time (see wait)
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        self.queue: list[tuple[W.Widget, dict]] = []
        self.models: dict[str, dict] = {}  # model id -> state as the browser has it
        self.sent: list[tuple[str, dict]] = []  # what the browser sent (model class name, content)

        def capture(widget, msg, buffers=None):
            if isinstance(widget, SLIDERS) or _is_table(widget):
                self.queue.append((widget, msg))

        monkeypatch.setattr(W.Widget, "_send", capture)

    def wait(self, seconds: float = 2.0) -> None:
        """Time passes (a user between two gestures; a page that takes a while to draw)."""
        self.now += seconds

    # ------------------------------------------------------------------ rendering
    def display(self, root: W.Widget, after_s: float = 2.0) -> None:
        """The views of ``root``'s tree render, ``after_s`` seconds after the kernel made them."""
        self.wait(after_s)
        for w in _walk(root):
            if isinstance(w, SLIDERS) or _is_table(w):
                self._render(w)
        self.flush()

    def _render(self, w: W.Widget) -> None:
        state = dict(w.get_state())
        self.models[w.model_id] = state
        self._react(w, state, previous=None)

    def flush(self, limit: int = 500) -> None:
        n = 0
        while self.queue:
            w, msg = self.queue.pop(0)
            n += 1
            assert n < limit, "the kernel and the browser keep answering each other"
            if msg.get("method") != "update":
                continue
            if w.model_id not in self.models:  # a view made for a widget the browser just learned of
                self._render(w)
                continue
            state = self.models[w.model_id]
            previous = dict(state)
            state.update(msg["state"])
            self._react(w, state, previous)

    # ------------------------------------------------------------------ views
    def _react(self, w, state: dict, previous: dict | None) -> None:
        if _is_table(w):
            self._table(w, state, previous)
        else:
            self._slider(w, state)

    def _slider(self, w, state: dict) -> None:
        lo, hi, step = float(state["min"]), float(state["max"]), float(state.get("step") or 0)
        log = isinstance(w, W.FloatLogSlider)
        base = float(state.get("base", 10))
        v = float(state["value"])
        x = math.log(v, base) if log else v
        x = min(max(x, lo), hi)
        if step > 0:
            x = min(max(lo + round((x - lo) / step) * step, lo), hi)
        shown = base ** x if log else x
        if isinstance(w, W.IntSlider):
            shown = int(round(shown))
        if shown != state["value"]:
            state["value"] = shown
            self._send(w, {"method": "update", "state": {"value": shown}, "buffer_paths": []})

    def _table(self, w, state: dict, previous: dict | None) -> None:
        import json

        if any(q is w for q, _ in self.queue):
            return  # newer rows are on their way: the table draws (and sends) once they are in
        stale = [previous] if previous and previous["subject"] != state["subject"] else []
        for source in stale + [state]:  # the table of the path shown before (late), then the new one
            for j, row in enumerate(json.loads(source["rows"])):
                lo2, hi2, step = row["lo2"], row["hi2"], row["step"]
                x = min(max(lo2 + round((math.log2(row["shown"]) - lo2) / step) * step, lo2), hi2)
                for via, value in (("slider", 2.0 ** x), ("number", round(row["shown"], 2))):
                    self._custom(w, {"type": "nearness", "subject": source["subject"], "point": j, "value": value,
                                     "via": via})
                self._custom(w, {"type": "frame", "subject": source["subject"], "point": j, "value": row["frame"],
                                 "via": ""})

    def _custom(self, w, content: dict) -> None:
        self._send(w, {"method": "custom", "content": content})

    def _send(self, w, data: dict) -> None:
        self.sent.append((type(w).__name__, data))
        w._handle_msg({"content": {"data": data}, "buffers": []})


def _walk(w):
    yield w
    for c in getattr(w, "children", ()) or ():
        yield from _walk(c)
