"""The Studio's side panels: object list, path panel (depth sliders, frames, delete/undo), frame scrubber with
the control-point scale slider, and the strip of control points at several scale factors.

Panels show what they are given and report what the user asked for through callbacks; the Studio changes
the Scene and calls the engine. Widgets used here exist in ipywidgets 7.6+ and 8 (no Tab, no Accordion).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import ipywidgets as W
import numpy as np
from ipycanvas import Canvas

from levitor.viz.colors import css
from levitor_widgets.compat import label_style, px

NEARNESS_LOG2_RANGE = 2.0  # sliders span 2**-2 .. 2**2 = 0.25x .. 4x nearer
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
class ObjectPanel:
    """One row per selected object: colour, name (click: make active), show/hide, remove."""

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
        self._key: tuple | None = None

    def show(self, names: list[str], colors: list, visible: list[bool], active: int | None) -> None:
        """Rebuild the rows when the objects changed; otherwise only restyle them (no new widgets)."""
        key = (tuple(names), tuple(tuple(int(v) for v in c) for c in colors))
        if key == self._key:
            with self._quiet():
                for i, (b, c) in enumerate(zip(self.buttons, self.checks)):
                    b.button_style = "info" if i == active else ""
                    c.value = visible[i]
            return
        self._key = key
        rows, self.buttons, self.checks, self.removes = [], [], [], []
        for i, (name, rgb, vis) in enumerate(zip(names, colors, visible)):
            b = W.Button(description=name, layout=W.Layout(width="120px"),
                         button_style="info" if i == active else "")
            c = W.Checkbox(value=vis, description="show", indent=False, layout=W.Layout(width="60px"))
            r = W.Button(description="remove", layout=W.Layout(width="70px"))
            b.on_click(lambda _b, i=i: self.on_activate and self.on_activate(i))
            c.observe(lambda ch, i=i: (not self._quiet.quiet) and self.on_visible and self.on_visible(i, ch["new"]),
                      names="value")
            r.on_click(lambda _b, i=i: self.on_remove and self.on_remove(i))
            self.buttons.append(b)
            self.checks.append(c)
            self.removes.append(r)
            rows.append(W.HBox([W.HTML(swatch(rgb)), b, c, r]))
        self.rows.children = rows


# ====================================================================== path
class PathPanel:
    """The active object's path: per point a nearness slider ("x times nearer" than the first point), a frame
    index, delete; plus undo and the depth hint of the last click."""

    def __init__(self, num_frames: int):
        self.num_frames = num_frames
        self.on_nearness: Callable[[int, float], None] | None = None
        self.on_frame: Callable[[int, int], None] | None = None
        self.on_timed: Callable[[bool], None] | None = None
        self.on_delete: Callable[[int], None] | None = None
        self.on_undo: Callable[[], None] | None = None
        self._quiet = _Quiet()
        self.title = W.HTML("<b>Path</b>")
        self.hint = W.HTML("")
        self.timed = W.Checkbox(value=False, description="set a frame per point", indent=False)
        self.timed.observe(lambda ch: (not self._quiet.quiet) and self.on_timed and self.on_timed(ch["new"]),
                           names="value")
        self.undo = W.Button(description="undo", icon="undo", layout=W.Layout(width="80px"),
                             tooltip="undo the last edit (key: z)")
        self.undo.on_click(lambda _b: self.on_undo and self.on_undo())
        self.rows = W.VBox([])
        self.sliders: list[W.FloatLogSlider] = []
        self.frames: list[W.BoundedIntText] = []
        self.deletes: list[W.Button] = []
        self.widget = W.VBox([self.title, W.HBox([self.timed, self.undo]), self.rows, self.hint],
                             layout=W.Layout(min_width="360px"))
        self._shape: tuple | None = None

    def show(self, title: str, nearness: list[float], frames: list[int | None], active: int | None) -> None:
        """Rebuild the rows only when their number changes (rebuilding under a dragged slider would drop it)."""
        self.title.value = f"<b>Path</b> of {title}" if title else "<b>Path</b> <i>(no object selected)</i>"
        timed = bool(frames) and all(f is not None for f in frames)
        shape = (title, len(nearness))
        with self._quiet():
            self.timed.value = timed
            if shape != self._shape:
                self._build(len(nearness))
                self._shape = shape
            for j, (s, v) in enumerate(zip(self.sliders, nearness)):
                s.value = float(v)
                s.disabled = j == 0  # the first point is the reference: 1x by definition
            for t, f in zip(self.frames, frames):
                t.value = int(f) if f is not None else 0
                t.disabled = not timed
            for j, row in enumerate(self.rows.children):
                row.layout.border = "1px solid orange" if j == active else ""

    def _build(self, n: int) -> None:
        rows, self.sliders, self.frames, self.deletes = [], [], [], []
        for j in range(n):
            s = W.FloatLogSlider(value=1.0, base=2, min=-NEARNESS_LOG2_RANGE, max=NEARNESS_LOG2_RANGE, step=0.05,
                                 description=f"P{j + 1} x nearer", readout_format=".2f", continuous_update=True,
                                 style=label_style(), layout=W.Layout(width="260px"))
            t = W.BoundedIntText(value=0, min=0, max=self.num_frames - 1, description="frame",
                                 style=label_style(), layout=W.Layout(width="100px"))
            d = W.Button(description="x", tooltip="delete this path point (key: Delete)", layout=W.Layout(width="32px"))
            s.observe(lambda ch, j=j: self._slider(j, ch["new"]), names="value")
            t.observe(lambda ch, j=j: (not self._quiet.quiet) and self.on_frame and self.on_frame(j, int(ch["new"])),
                      names="value")
            d.on_click(lambda _b, j=j: self.on_delete and self.on_delete(j))
            self.sliders.append(s)
            self.frames.append(t)
            self.deletes.append(d)
            rows.append(W.HBox([s, t, d]))
        self.rows.children = rows

    def _slider(self, j: int, value: float) -> None:
        if not self._quiet.quiet and self.on_nearness is not None:
            self.on_nearness(j, float(value))


# ====================================================================== frames + scale
class ScrubberPanel:
    """Frame slider (with play), control-point scale slider, preview toggle, and the scale-factor strip."""

    def __init__(self, num_frames: int, width: int, height: int, strip_scales=STRIP_SCALES):
        self.on_frame: Callable[[int], None] | None = None
        self.on_scale: Callable[[float], None] | None = None
        self.on_preview: Callable[[bool], None] | None = None
        self.on_strip: Callable[[bool], None] | None = None
        self._quiet = _Quiet()
        self.frame = W.IntSlider(value=0, min=0, max=num_frames - 1, description="frame",
                                 continuous_update=True, style=label_style(), layout=W.Layout(width="250px"))
        self.play = W.Play(value=0, min=0, max=num_frames - 1, interval=160, description="play")
        W.jslink((self.play, "value"), (self.frame, "value"))
        self.scale = W.FloatLogSlider(value=1.0, base=2, min=SCALE_LOG2_MIN, max=SCALE_LOG2_MAX, step=0.25,
                                      description="control-point scale", readout_format=".2f",
                                      continuous_update=True, style=label_style(), layout=W.Layout(width="320px"))
        self.preview = W.Checkbox(value=False, description="preview frame", indent=False,
                                  layout=W.Layout(width="130px"))
        self.show_strip = W.Checkbox(value=False, description="compare scales", indent=False,
                                     layout=W.Layout(width="140px"))
        self.info = W.HTML("")
        self.frame.observe(lambda ch: self._fire(self.on_frame, int(ch["new"])), names="value")
        self.scale.observe(lambda ch: self._fire(self.on_scale, float(ch["new"])), names="value")
        self.preview.observe(lambda ch: self._fire(self.on_preview, bool(ch["new"])), names="value")
        self.show_strip.observe(lambda ch: self._fire(self.on_strip, bool(ch["new"])), names="value")
        self.strip = ScaleStrip(width, height, strip_scales)
        wrap = W.Layout(flex_flow="row wrap")
        self.widget = W.VBox([
            W.HBox([self.play, self.frame, self.preview], layout=wrap),
            W.HBox([self.scale, self.show_strip], layout=W.Layout(flex_flow="row wrap")),
            self.info,
            self.strip.widget,
        ])

    def _fire(self, cb, value) -> None:
        if not self._quiet.quiet and cb is not None:
            cb(value)

    def set_scale(self, value: float) -> None:
        with self._quiet():
            self.scale.value = float(value)


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

    def set_visible(self, visible: bool) -> None:
        self.widget.layout.display = "" if visible else "none"

    def draw(self, thumb: np.ndarray, per_scale: list[tuple[np.ndarray, np.ndarray]], counts: list[int]) -> None:
        """thumb: (th, tw, 3) uint8; per_scale: (xy (P, 2) in full-size pixels, colors (P, 3)) per scale."""
        from levitor_widgets.canvas import held_drawing

        self.shown = per_scale
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
