"""The Studio's side panels: object list, path panel (depth sliders, frames, delete), frame scrubber with the
control-point scale slider, and the strip of control points at several scale factors.

Panels show what they are given and report what the user asked for through callbacks; the Studio changes
the Scene and calls the engine. Widgets used here exist in ipywidgets 7.6+ and 8 (no Tab, no Accordion).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import ipywidgets as W
import numpy as np
from ipycanvas import Canvas

from levitor.control.lost import ControlWarning
from levitor.viz.colors import css
from levitor_widgets.compat import label_style, px

NEARNESS_LOG2_RANGE = 2.0  # sliders span 2**-2 .. 2**2 = 0.25x .. 4x nearer
SCALE_LOG2_MIN, SCALE_LOG2_MAX = -2.0, 3.0  # control-point scale factor 0.25 .. 8
STRIP_SCALES = (0.5, 1.0, 2.0, 4.0)
STRIP_SHRINK = 3  # thumbnails are 1/3 of the canvas


def swatch(rgb) -> str:
    return (f"<span style='display:inline-block;width:14px;height:14px;border-radius:3px;"
            f"background:{css(rgb)};border:1px solid #333'></span>")


ECHO_S = 1.0  # a value the panel set comes back from the browser within this time: never an edit


class _Echoes:
    """The values a panel set on its widgets lately. The browser sends a widget's value back when it renders or
    snaps it to the step, sometimes after a newer value was set; such a value is an echo, not an edit."""

    def __init__(self, clock=None):
        import time

        self.clock = clock or time.monotonic
        self._set: dict[object, list[tuple[float, float]]] = {}

    def note(self, key, value: float) -> None:
        now = self.clock()
        kept = [(v, t) for v, t in self._set.get(key, []) if now - t < ECHO_S]
        self._set[key] = kept[-2:] + [(float(value), now)]

    def is_echo(self, key, value: float, tolerance: float) -> bool:
        now = self.clock()
        return any(abs(value - v) <= tolerance and now - t < ECHO_S for v, t in self._set.get(key, []))

    def last(self, key) -> float | None:
        values = self._set.get(key)
        return values[-1][0] if values else None


class _Quiet:
    """Lets a panel set widget values without its own observers reacting."""

    def __init__(self):
        self.quiet = False

    @contextmanager
    def __call__(self):
        old, self.quiet = self.quiet, True
        try:
            yield
        finally:
            self.quiet = old


# ====================================================================== objects
# beside an object that gets no control points somewhere (levitor.control.lost), why, in a few words
WARNING_WORDS = {"far_path_depth": "path depth 1.0", "left_view": "out of view", "hidden": "hidden",
                 "too_small": "too small"}
NOTE_STYLE = "color:#b45309;white-space:nowrap;overflow:hidden;text-overflow:ellipsis"


def warning_note(warnings: Sequence[ControlWarning]) -> str:
    """The HTML beside an object: a warning mark and the reasons, the full messages (with the frames) as its
    tooltip; "" when it has its points everywhere."""
    if not warnings:
        return ""
    words = ", ".join(dict.fromkeys(WARNING_WORDS[w.reason] for w in warnings))
    title = html.escape(" | ".join(w.message for w in warnings), quote=True)
    return (f"<div class='levitor-control-warning' title=\"{title}\" style='{NOTE_STYLE}'>&#9888; "
            f"{html.escape(words)}</div>")


class ObjectPanel:
    """One row per selected object: colour, name (click: make active), show/hide, remove, and a warning mark
    when the object gets no control points in some frames (why: its tooltip)."""

    def __init__(self):
        self.on_activate: Callable[[int], None] | None = None
        self.on_visible: Callable[[int, bool], None] | None = None
        self.on_remove: Callable[[int], None] | None = None
        self.title = W.HTML("<b>Objects</b> <i>(click an object on the image)</i>")
        self.rows = W.VBox([])
        self.widget = W.VBox([self.title, self.rows], layout=W.Layout(min_width="260px"))
        self._quiet = _Quiet()
        self.buttons: list[W.Button] = []
        self.checks: list[W.Checkbox] = []
        self.removes: list[W.Button] = []
        self.swatches: list[W.HTML] = []
        self.notes: list[W.HTML] = []  # the control warning beside each object ("" when it has its points)

    def show(self, names: list[str], colors: list, visible: list[bool], active: int | None,
             warnings: list[list[ControlWarning]] | None = None) -> None:
        """Show one row per object (``warnings[i]``: object i's control warnings). Rows are made once and then
        reused (hidden when not needed): a widget that is dropped is closed, and a browser still drawing the old
        rows would then look for a model that is gone."""
        while len(self.buttons) < len(names):
            self._add_row()
        with self._quiet():
            for i, row in enumerate(self.rows.children):
                here = i < len(names)
                row.layout.display = "" if here else "none"
                if not here:
                    continue
                self.swatches[i].value = swatch(colors[i])
                self.buttons[i].description = names[i]
                self.buttons[i].button_style = "info" if i == active else ""
                self.checks[i].value = bool(visible[i])
                self.notes[i].value = warning_note(warnings[i] if warnings else [])

    def _add_row(self) -> None:
        i = len(self.buttons)
        b = W.Button(description="", layout=W.Layout(width="120px", flex="0 0 auto"))
        c = W.Checkbox(value=True, description="show", indent=False, layout=W.Layout(width="60px", flex="0 0 auto"))
        r = W.Button(description="remove", layout=W.Layout(width="70px", flex="0 0 auto"))
        sw = W.HTML("")
        note = W.HTML("", layout=W.Layout(flex="1 1 auto", min_width="0", overflow="hidden"))  # gives way first
        b.on_click(lambda _b, i=i: self.on_activate and self.on_activate(i))
        c.observe(lambda ch, i=i: (not self._quiet.quiet) and self.on_visible and self.on_visible(i, ch["new"]),
                  names="value")
        r.on_click(lambda _b, i=i: self.on_remove and self.on_remove(i))
        self.buttons.append(b)
        self.checks.append(c)
        self.removes.append(r)
        self.swatches.append(sw)
        self.notes.append(note)
        self.rows.children = (*self.rows.children, W.HBox([sw, b, c, r, note]))


# ====================================================================== path
class PathPanel:
    """The active object's path: per point a nearness slider ("x times nearer" than P1) whose range is what the
    depth scale can reach, a frame number, delete; whether new points follow the ground; the depth hint.

    A value the panel set itself and the browser sends back (a slider snapping to its step) is never reported:
    only a value the user moved away from the shown one is an edit."""

    def __init__(self, num_frames: int):
        self.num_frames = num_frames
        self.on_nearness: Callable[[int, float], None] | None = None
        self.on_frame: Callable[[int, int], None] | None = None  # (point, 0-based frame)
        self.on_timed: Callable[[bool], None] | None = None
        self.on_delete: Callable[[int], None] | None = None
        self._quiet = _Quiet()
        self.title = W.HTML("<b>Path</b>")
        self.hint = W.HTML("", layout=W.Layout(height="40px", overflow="hidden"))
        self.timed = W.Checkbox(value=False, description="a frame per point", indent=False,
                                layout=W.Layout(width="150px"))
        self.follow = W.Checkbox(value=True, description="new points follow the ground", indent=False,
                                 layout=W.Layout(width="220px"),
                                 tooltip="a new point takes the depth under the click, relative to the object's "
                                         "start; off: it keeps the previous point's depth")
        self.timed.observe(lambda ch: (not self._quiet.quiet) and self.on_timed and self.on_timed(ch["new"]),
                           names="value")
        self.rows = W.VBox([])
        self.sliders: list[W.FloatLogSlider] = []
        self.frames: list[W.BoundedIntText] = []
        self.deletes: list[W.Button] = []
        self.limits: list[W.HTML] = []
        self.echoes = _Echoes()
        self.widget = W.VBox([self.title, W.HBox([self.timed, self.follow]), self.rows, self.hint],
                             layout=W.Layout(min_width="380px"))
        self.count = 0  # rows in use (the others are hidden, kept for later)

    def show(self, title: str, nearness: list[float], frames: list[int | None], active: int | None,
             ranges: list[tuple[float, float]] | None = None) -> None:
        """Show one row per path point; rows are reused, never rebuilt under a dragged slider.
        ranges: per point the (lowest, highest) reachable nearness."""
        self.title.value = f"<b>Path</b> of {title}" if title else "<b>Path</b> <i>(no object selected)</i>"
        timed = bool(frames) and all(f is not None for f in frames)
        ranges = ranges or [(2.0 ** -NEARNESS_LOG2_RANGE, 2.0 ** NEARNESS_LOG2_RANGE)] * len(nearness)
        bounds = [(max(-NEARNESS_LOG2_RANGE, float(np.log2(lo))), min(NEARNESS_LOG2_RANGE, float(np.log2(hi))))
                  for lo, hi in ranges]
        bounds = [(lo2, max(hi2, lo2 + 0.05)) for lo2, hi2 in bounds]
        values = [float(np.clip(v, 2.0 ** lo2, 2.0 ** hi2)) for v, (lo2, hi2) in zip(nearness, bounds)]
        shown = [int(f) + 1 if f is not None else 1 for f in frames]
        while len(self.sliders) < len(values):
            self._add_row(len(self.sliders), values[len(self.sliders)], bounds[len(self.sliders)])
        self.count = len(values)
        with self._quiet():
            self.timed.value = timed
            for j, row in enumerate(self.rows.children):
                row.layout.display = "" if j < self.count else "none"
            for j, (v, (lo2, hi2), (_lo, hi)) in enumerate(zip(values, bounds, ranges)):
                s = self.sliders[j]
                if (s.min, s.max) != (lo2, hi2):
                    s.min, s.max = -NEARNESS_LOG2_RANGE, NEARNESS_LOG2_RANGE  # widen first: min/max never cross
                    s.min, s.max = lo2, hi2
                s.value = v
                self.echoes.note(("near", j), float(np.log2(s.value)))
                s.disabled = j == 0  # P1 is the reference: 1x by definition
                stop = hi < 2.0 ** NEARNESS_LOG2_RANGE and j > 0
                self.limits[j].value = (f"<small style='white-space:nowrap' title='the 0..255 disparity scale "
                                        f"ends here'>max {hi:.2f}x</small>" if stop else "")
            for j, f in enumerate(shown):
                t = self.frames[j]
                t.value = f
                self.echoes.note(("frame", j), f)
                t.disabled = not timed
                self.deletes[j].disabled = j == 0  # P1 is where the object is: it stays
            for j, row in enumerate(self.rows.children):
                row.layout.border = "1px solid orange" if j == active and j < self.count else ""

    def _add_row(self, j: int, value: float, bounds: tuple[float, float]) -> None:
        """Rows are made once and reused (see ObjectPanel.show); a new one starts at its first value."""
        s = W.FloatLogSlider(value=value, base=2, min=bounds[0], max=bounds[1], step=0.01,
                             description=f"P{j + 1} x nearer", readout_format=".2f", continuous_update=True,
                             style=label_style(), layout=W.Layout(width="250px"))
        self.echoes.note(("near", j), float(np.log2(s.value)))
        t = W.BoundedIntText(value=1, min=1, max=self.num_frames, description="frame",
                             style=label_style(), layout=W.Layout(width="96px"))
        d = W.Button(description="x", tooltip="delete this path point (key Delete)", layout=W.Layout(width="32px"))
        lim = W.HTML("", layout=W.Layout(width="72px", flex="0 0 auto"))
        s.observe(lambda ch, j=j: self._slider(j, ch["new"]), names="value")
        t.observe(lambda ch, j=j: self._frame(j, int(ch["new"])), names="value")
        d.on_click(lambda _b, j=j: self.on_delete and self.on_delete(j))
        self.sliders.append(s)
        self.frames.append(t)
        self.deletes.append(d)
        self.limits.append(lim)
        self.rows.children = (*self.rows.children, W.HBox([s, lim, t, d]))

    def _frame(self, j: int, shown_frame: int) -> None:
        """A frame number typed by the user (shown from 1; reported 0-based)."""
        if self._quiet.quiet or self.on_frame is None or not self.timed.value:
            return
        if self.echoes.is_echo(("frame", j), shown_frame, 0):
            return
        self.on_frame(j, shown_frame - 1)

    def _slider(self, j: int, value: float) -> None:
        if self._quiet.quiet or self.on_nearness is None:
            return
        step = self.sliders[j].step if j < len(self.sliders) else 0.01
        if self.echoes.is_echo(("near", j), float(np.log2(max(value, 1e-12))), step / 2 + 1e-9):
            return  # the browser sending back (or snapping) a value the panel set: not an edit
        self.on_nearness(j, float(value))


# ====================================================================== frames + scale
class ScrubberPanel:
    """Frame slider (with play; frames count from 1 here as everywhere the user reads them), control-point scale
    slider, preview toggle, and the scale-factor strip."""

    def __init__(self, num_frames: int, width: int, height: int, strip_scales=STRIP_SCALES):
        self.on_frame: Callable[[int], None] | None = None  # 0-based
        self.on_scale: Callable[[float], None] | None = None
        self.on_preview: Callable[[bool], None] | None = None
        self.on_strip: Callable[[bool], None] | None = None
        self._quiet = _Quiet()
        self.frame = W.IntSlider(value=1, min=1, max=num_frames, description="frame",
                                 continuous_update=True, style=label_style(), layout=W.Layout(width="250px"))
        self.play = W.Play(value=1, min=1, max=num_frames, interval=160, description="play")
        W.jslink((self.play, "value"), (self.frame, "value"))
        self.scale = W.FloatLogSlider(value=1.0, base=2, min=SCALE_LOG2_MIN, max=SCALE_LOG2_MAX, step=0.05,
                                      description="control-point scale", readout_format=".2f",
                                      continuous_update=True, style=label_style(), layout=W.Layout(width="320px"))
        self.preview = W.Checkbox(value=False, description="preview frame", indent=False,
                                  layout=W.Layout(width="130px"))
        self.show_strip = W.Checkbox(value=False, description="compare scales", indent=False,
                                     layout=W.Layout(width="140px"))
        self.info = W.HTML("", layout=W.Layout(height="22px", overflow="hidden"))
        self.echoes = _Echoes()
        self.frame.observe(lambda ch: self._fire(self.on_frame, int(ch["new"]) - 1), names="value")
        self.scale.observe(lambda ch: self._scale(float(ch["new"])), names="value")
        self.preview.observe(lambda ch: self._fire(self.on_preview, bool(ch["new"])), names="value")
        self.show_strip.observe(lambda ch: self._fire(self.on_strip, bool(ch["new"])), names="value")
        self.strip = ScaleStrip(width, height, strip_scales)
        nowrap = W.Layout(flex_flow="row nowrap")
        self.widget = W.VBox([
            W.HBox([self.play, self.frame, self.preview], layout=nowrap),
            W.HBox([self.scale, self.show_strip], layout=nowrap),
            self.info,
            self.strip.widget,
        ])

    def _fire(self, cb, value) -> None:
        if not self._quiet.quiet and cb is not None:
            cb(value)

    def _scale(self, value: float) -> None:
        if self.echoes.is_echo("scale", float(np.log2(value)), self.scale.step / 2 + 1e-9):
            return  # an echo of a value set here
        self._fire(self.on_scale, value)

    def set_scale(self, value: float) -> None:
        with self._quiet():
            self.scale.value = float(value)
            self.echoes.note("scale", float(np.log2(self.scale.value)))

    def set_frame(self, frame: int) -> None:
        """Show frame ``frame`` (0-based) without reporting it back."""
        with self._quiet():
            self.frame.value = int(frame) + 1


class ScaleStrip:
    """Side-by-side thumbnails of one frame's control points at several scale factors."""

    def __init__(self, width: int, height: int, scales=STRIP_SCALES):
        self.scales = tuple(scales)
        self.tw, self.th = width // STRIP_SHRINK, height // STRIP_SHRINK
        self.canvases = []
        self.labels = []
        boxes = []
        for s in self.scales:
            c = Canvas(width=self.tw, height=self.th, layout=W.Layout(width=px(self.tw), height=px(self.th)))
            lab = W.HTML(f"scale {s:g}")
            self.canvases.append(c)
            self.labels.append(lab)
            boxes.append(W.VBox([lab, c]))
        self.widget = W.HBox(boxes, layout=W.Layout(display="none", flex_flow="row wrap"))
        self.shown: list | None = None
        self.thumb: np.ndarray | None = None

    def set_visible(self, visible: bool) -> None:
        self.widget.layout.display = "" if visible else "none"

    def draw(self, thumb: np.ndarray, per_scale: list[tuple[np.ndarray, np.ndarray]], counts: list[int]) -> None:
        """thumb: (th, tw, 3) uint8; per_scale: (xy (P, 2) in full-size pixels, colors (P, 3)) per scale."""
        from levitor_widgets.canvas import held_drawing

        self.shown, self.thumb = per_scale, thumb
        with held_drawing():
            for c, lab, s, (xy, colors), n in zip(self.canvases, self.labels, self.scales, per_scale, counts):
                c.clear()
                c.put_image_data(np.ascontiguousarray(thumb), 0, 0)
                if len(xy):
                    small = xy / STRIP_SHRINK
                    c.fill_styled_circles(small[:, 0], small[:, 1], 3, colors.astype(np.int64), alpha=1)
                    c.stroke_style = "black"
                    c.stroke_circles(small[:, 0], small[:, 1], 3)
                lab.value = f"scale {s:g}: {n} points"
