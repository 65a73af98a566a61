"""The Studio's panels: object list, path panel (a table: depth, frame, delete per point), frame scrubber with the
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
from levitor_widgets.compat import label_style, px, tooltip
from levitor_widgets.depth_table import NEARNESS_STEP, PointRow, rows_json, table_widget

SCALE_LOG2_MIN, SCALE_LOG2_MAX = -2.0, 3.0  # control-point scale factor 0.25 .. 8
STRIP_SCALES = (0.5, 1.0, 2.0, 4.0)
STRIP_SHRINK = 3  # thumbnails are 1/3 of the canvas


def swatch(rgb) -> str:
    return (f"<span style='display:inline-block;width:14px;height:14px;border-radius:3px;"
            f"background:{css(rgb)};border:1px solid #333'></span>")


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
    """The active object's path: a table with per point its frame, its "x nearer" than P1 (a number and a slider
    whose range is what the depth scale reaches from P1), a note and delete; whether the points are timed and
    whether new points follow the ground; the depth hint of the last click.

    Only what the user did is reported. The table (:mod:`levitor_widgets.depth_table`) sends a message per user
    action naming the path it showed; a message about another path (sent before the new rows arrived) and a value
    within half a step of the one shown (a browser snapping what it was given) are dropped."""

    def __init__(self, num_frames: int):
        self.num_frames = num_frames
        self.on_nearness: Callable[[int, float], None] | None = None
        self.on_frame: Callable[[int, int], None] | None = None  # (point, 0-based frame)
        self.on_timed: Callable[[bool], None] | None = None
        self.on_delete: Callable[[int], None] | None = None
        self._quiet = _Quiet()
        self.title = W.HTML("<b>Path</b>")
        self.hint = W.HTML("", layout=W.Layout(height="20px", overflow="hidden"))
        self.timed = W.Checkbox(value=False, description="a frame per point", indent=False,
                                layout=W.Layout(width="150px"))
        self.follow = W.Checkbox(value=True, description="new points follow the ground", indent=False,
                                 layout=W.Layout(width="220px"),
                                 **tooltip("a new point takes the depth under the click, relative to the object's "
                                           "start; off: it keeps the previous point's depth"))
        self.timed.observe(lambda ch: (not self._quiet.quiet) and self.on_timed and self.on_timed(ch["new"]),
                           names="value")
        self.table = table_widget()
        self.table.on_msg(self._message)
        self.rows: list[PointRow] = []
        self._subject: object = None
        self.widget = W.VBox([W.HBox([self.title, self.timed, self.follow],
                                     layout=W.Layout(flex_flow="row wrap", align_items="center")),
                              self.table, self.hint], layout=W.Layout(min_width="420px"))

    count = property(lambda self: len(self.rows))  # rows shown

    def show(self, title: str, nearness: list[float], frames: list[int | None], active: int | None,
             ranges: list[tuple[float, float]] | None = None, subject: object = None,
             notes: dict[int, str] | None = None) -> None:
        """Show one row per path point. ranges: per point the (lowest, highest) reachable nearness (a point
        beyond its range is shown at the end with a note); subject: which path this is (default: the title);
        notes: per point "a few words|the whole story" shown beside it (the story as its tooltip)."""
        self.title.value = f"<b>Path</b> of {title}" if title else "<b>Path</b> <i>(no object selected)</i>"
        timed = bool(frames) and all(f is not None for f in frames)
        ranges = ranges if ranges is not None else [(v, v) for v in nearness]  # no range given: nothing to slide
        notes = notes or {}
        rows = []
        for j, (v, (lo, hi), f) in enumerate(zip(nearness, ranges, frames)):
            shown = float(np.clip(v, lo, hi))
            note, _, detail = notes.get(j, "").partition("|")
            if not note and abs(np.log2(v / shown)) > NEARNESS_STEP / 2:
                note, detail = f"{v:.2f}x: beyond the scale", (f"P{j + 1} is {v:.2f}x nearer than P1, beyond what the "
                                                               f"0..255 depth scale reaches: shown at {shown:.2f}x")
            rows.append(PointRow(f"P{j + 1}", int(f) + 1 if f is not None else 1, self.num_frames, timed, shown,
                                 float(np.log2(lo)), max(float(np.log2(hi)), float(np.log2(lo)) + NEARNESS_STEP),
                                 editable=j > 0, deletable=j > 0, active=j == active, note=note, detail=detail))
        self.rows = rows
        key = subject if subject is not None else title
        with self._quiet():
            self.timed.value = timed
        text = rows_json(rows)
        with self.table.hold_sync():
            if key != self._subject:
                self._subject = key
                self.table.subject = self.table.subject + 1
            if text != self.table.rows:
                self.table.rows = text

    def user_edit(self, kind: str, j: int, value: float, via: str = "number") -> None:
        """What the browser sends when the user edits P(j+1): ``kind`` "nearness" (``via`` "slider" or "number"),
        "frame" (shown from 1) or "delete" (how the tests and scripts drive the table)."""
        self._message(self.table, {"type": kind, "subject": self.table.subject, "point": j, "value": value,
                                   "via": via}, [])

    def _message(self, _widget, content, _buffers) -> None:
        """A message from the table: reported if it is about the path shown and changes what it shows."""
        if not isinstance(content, dict) or content.get("subject") != self.table.subject:
            return  # about a path shown before (or not the table's)
        j, kind = content.get("point"), content.get("type")
        if not isinstance(j, int) or not 0 <= j < len(self.rows):
            return
        row = self.rows[j]
        try:
            value = float(content.get("value"))
        except (TypeError, ValueError):
            return
        if kind == "nearness" and row.editable and value > 0 and np.isfinite(value):
            if content.get("via") == "slider":
                echo = abs(np.log2(value) - np.log2(row.shown)) <= row.step / 2 + 1e-9
            else:  # the number box shows two decimals
                echo = abs(value - round(row.shown, 2)) <= 1e-9 or abs(value - row.shown) <= 1e-9
            if not echo and self.on_nearness is not None:
                self.on_nearness(j, value)
        elif kind == "frame" and row.timed and int(value) != row.frame and self.on_frame is not None:
            self.on_frame(j, int(value) - 1)
        elif kind == "delete" and row.deletable and self.on_delete is not None:
            self.on_delete(j)


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
        self._shown_scale = float(self.scale.value)  # what the kernel last showed (the browser snaps it)
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
        if abs(np.log2(value) - np.log2(self._shown_scale)) <= self.scale.step / 2 + 1e-9:
            return  # the browser snapping the value shown to its step (whenever it draws it): not a move
        self._fire(self.on_scale, value)

    def set_scale(self, value: float) -> None:
        with self._quiet():
            self.scale.value = self._shown_scale = float(value)

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
