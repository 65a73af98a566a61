"""The photo's crop, shown and movable: the whole photo small, the part the scene shows bright and the bands the
crop cuts away dimmed, with a slider that moves the crop along the axis that is cut.

A photo of another aspect than the scene's is cropped to it (centred unless moved). The crop moves only before the
first mask: masks are drawn on the crop they were made on, so from then on the panel says it is fixed.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import ipywidgets as W
import numpy as np
from PIL import Image

from levitor_widgets.compat import label_style

THUMB_W, THUMB_H = 240, 160  # the photo is shown at most this large
DIM = 0.3  # brightness of the cut-away bands
EDGE = (255, 235, 59)  # the kept window's outline: the canvas's tool colour
OFFSET_STEP = 0.05


def framing_picture(photo: np.ndarray, window: tuple[int, int, int, int], max_w: int = THUMB_W,
                    max_h: int = THUMB_H) -> np.ndarray:
    """The photo scaled to fit max_w x max_h, the parts outside ``window`` (y0, x0, h, w) dimmed and the window
    outlined: (h, w, 3) uint8."""
    H, W_ = photo.shape[:2]
    s = min(max_w / W_, max_h / H, 1.0)
    tw, th = max(1, round(W_ * s)), max(1, round(H * s))
    small = np.asarray(Image.fromarray(photo).resize((tw, th), Image.BILINEAR)).astype(np.float32)
    y0, x0, h, w = window
    r0, c0 = int(round(y0 * s)), int(round(x0 * s))
    r1, c1 = min(th, int(round((y0 + h) * s))), min(tw, int(round((x0 + w) * s)))
    out = small * DIM
    out[r0:r1, c0:c1] = small[r0:r1, c0:c1]
    out[r0:r0 + 2, c0:c1] = out[max(r0, r1 - 2):r1, c0:c1] = EDGE
    out[r0:r1, c0:c0 + 2] = out[r0:r1, max(c0, c1 - 2):c1] = EDGE
    return out.round().astype(np.uint8)


def offset_at(photo_shape: tuple[int, ...], window: tuple[int, int, int, int], fx: float, fy: float) -> float:
    """The crop offset that centres the window on the point at fractions (fx, fy) of the photo, clipped to the
    photo (a click near the top gives -1)."""
    H, W_ = photo_shape[:2]
    _, _, h, w = window
    if h < H:
        spare, start = H - h, fy * H - h / 2
    else:
        spare, start = W_ - w, fx * W_ - w / 2
    return float(np.clip(round((2 * start / spare - 1) / OFFSET_STEP) * OFFSET_STEP, -1.0, 1.0))


def crop_text(photo_shape: tuple[int, ...], window: tuple[int, int, int, int]) -> str:
    """What the crop cuts away, in the photo's pixels: "the top 96 px and the bottom 96 px of the photo"."""
    H, W_ = photo_shape[:2]
    y0, x0, h, w = window
    if h < H:
        a, b, names = y0, H - y0 - h, ("top", "bottom")
    else:
        a, b, names = x0, W_ - x0 - w, ("left", "right")
    cut = [f"the {n} {v} px" for n, v in zip(names, (a, b)) if v > 0]
    return " and ".join(cut) + " of the photo"


class FramingPanel:
    """The crop's picture, its slider and one line of text; hidden for a scene that has no photo to crop."""

    def __init__(self):
        self.on_offset: Callable[[float], None] | None = None
        self._quiet = False
        self.title = W.HTML("<b>Crop</b>")
        self.picture = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", width=f"{THUMB_W}px"))
        self.offset = W.FloatSlider(value=0.0, min=-1.0, max=1.0, step=OFFSET_STEP, description="move",
                                    readout_format="+.2f", continuous_update=False, style=label_style(),
                                    layout=W.Layout(width=f"{THUMB_W + 40}px", min_width=f"{THUMB_W + 40}px"))
        self.note = W.HTML("", layout=W.Layout(min_height="22px"))
        self.offset.observe(lambda ch: self._moved(float(ch["new"])), names="value")
        self._photo_shape: tuple[int, ...] | None = None
        self._wire_clicks()
        self.widget = W.VBox([self.title, self.picture, self.offset, self.note],
                             layout=W.Layout(display="none", margin="0 0 8px 0"))
        self.shown: tuple | None = None  # (window, offset, fixed) last drawn, so a redraw sends nothing new

    def _wire_clicks(self) -> None:
        """A click on the picture centres the crop there (with ipyevents; the slider works without it)."""
        try:
            from ipyevents import Event
        except ImportError:
            return
        self._clicks = Event(source=self.picture, watched_events=["click"], prevent_default_action=True)
        self._clicks.on_dom_event(self._clicked)

    def _clicked(self, ev: dict) -> None:
        if self.shown is None or self._photo_shape is None or self.offset.disabled:
            return
        try:
            fx = float(ev["relativeX"]) / float(ev.get("boundingRectWidth") or 1)
            fy = float(ev["relativeY"]) / float(ev.get("boundingRectHeight") or 1)
        except (KeyError, TypeError, ValueError):
            return
        self._moved(offset_at(self._photo_shape, self.shown[0], fx, fy))

    def _moved(self, value: float) -> None:
        if not self._quiet and self.on_offset is not None:
            self.on_offset(value)

    def show(self, photo: np.ndarray | None, window: tuple[int, int, int, int] | None, offset: float,
             fixed: bool) -> None:
        """Show the crop ``window`` of ``photo`` (None: nothing is cropped, the panel hides)."""
        if photo is None or window is None:
            self.widget.layout.display = "none"
            self.shown = None
            return
        self.widget.layout.display = ""
        self._photo_shape = photo.shape
        vertical = window[2] < photo.shape[0]
        state = (window, offset, fixed)
        if state != self.shown:
            buf = io.BytesIO()
            picture = framing_picture(photo, window)
            Image.fromarray(picture).save(buf, format="png")
            self.picture.value = buf.getvalue()
            self.picture.layout.width = f"{picture.shape[1]}px"  # 1:1, never stretched to the column
            self.shown = state
        self._quiet = True
        try:
            if abs(self.offset.value - offset) > 1e-9:
                self.offset.value = offset
        finally:
            self._quiet = False
        self.offset.disabled = fixed
        for w in (self.picture, self.offset):  # once fixed, one line says so and the panels below move up
            w.layout.display = "none" if fixed else ""
        self.offset.description = "up / down" if vertical else "left / right"
        cut = crop_text(photo.shape, window)
        ends = "-1: the top, +1: the bottom" if vertical else "-1: the left, +1: the right"
        self.note.value = (f"<div style='font-size:12px;line-height:16px'>the scene shows the bright part; {cut} "
                           f"{'are' if ' and ' in cut else 'is'} cut away. " + (
                               "Fixed now: the masks were drawn on this crop." if fixed else
                               f"Move it before making a mask: click the picture, or slide ({ends}).") + "</div>")
