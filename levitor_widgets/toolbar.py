"""The Studio's top rows: modes, undo/redo, the scene's name, save/load/recent; the mask tools with their sizes
and the depth choice; and the one-line message with its details behind a toggle.

Widgets only: they show what they are given and report what the user asked for through callbacks. Every row
has a fixed height, so a message or a tool change never moves the canvas.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from contextlib import contextmanager

import ipywidgets as W

from levitor_widgets.compat import label_style

MODES = {"select": "select", "path": "path", "camera": "camera", "mask": "mask"}
MODE_TIPS = ["select an object by clicking its mask (key s)",
             "click to add path points to the active object; click another object to select it (key p)",
             "click to move the background = the camera (key c)",
             "make or refine masks: box, lasso, brush, eraser, flood, SAM (key m)"]
TOOLS = {"box": "box", "lasso": "lasso", "brush": "brush", "eraser": "eraser", "flood": "flood", "sam": "SAM"}
TOOL_TIPS = {"box": "box (GrabCut): drag a box around an object and GrabCut cuts it out",
             "lasso": "drag around an object, or click its outline point by point (click P1 or Enter to close)",
             "brush": "paint the object (Shift/Alt: paint it away)", "eraser": "paint parts of the mask away",
             "flood": "click: the connected region of similar colour (tolerance below)",
             "sam": "click the object (Shift/Alt-click: a part that does not belong); needs SAM weights"}
DEPTHS = {"nearer": "objects N x nearer", "flat": "flat (one depth)",
          "ground-plane": "ground plane (floor to a horizon)", "depth-anything-v2": "DepthAnythingV2",
          "scene": "the scene's own depth"}


def row_layout() -> W.Layout:
    """A one-line row (36 px) that wraps onto a second line in a narrow output instead of squeezing its
    buttons to "s.." or cutting its menus (a 1024 px classic Notebook or Colab window). A new Layout each
    time: rows hide and show on their own (a shared Layout once hid the scene/save/load row with the mask
    tools in every mode but 'mask')."""
    return W.Layout(min_height="36px", flex_flow="row wrap", align_items="center", overflow="hidden")


LINE_CHARS = 100  # a longer message is cut in its line (ellipsis) and shown whole behind "details"
MESSAGE_LOG = 50  # messages kept in ``Messages.log``


class Messages:
    """The Studio's one message area: one line (never more, never moving the canvas) and a "details" toggle for
    the rest: a long message whole, tracebacks, what to download.

    An error, and what the Studio says when it opens (a resumed autosave, a broken one), is *held*: it stays until
    the user's next action (:meth:`action`), so a hint said on the way (a redraw, a panel) never replaces it; at
    that next action it is cleared. Everything said is kept in ``log`` (the newest last)."""

    def __init__(self):
        self.line = W.HTML("", layout=W.Layout(height="24px", overflow="hidden", flex="1 1 auto", min_width="0"))
        self.toggle = W.ToggleButton(value=False, description="details", layout=W.Layout(
            width="80px", min_width="80px", flex="0 0 auto", visibility="hidden"))  # never squeezed by a long line
        self.details = W.HTML("", layout=W.Layout(display="none", max_height="240px", overflow="auto"))
        self.toggle.observe(lambda ch: setattr(self.details.layout, "display", "" if ch["new"] else "none"),
                            names="value")
        self.widget = W.VBox([W.HBox([self.line, self.toggle], layout=W.Layout(height="28px", overflow="hidden",
                                                                             align_items="center")),
                              self.details])
        self.text, self.detail_text, self.error, self.held = "", "", False, False
        self.log: list[tuple[str, bool]] = []  # (text, error)
        self._depth = 0
        # how the widgets are written: at once, or (the Studio, in a kernel) just after the canvas has drawn
        self.later: Callable[[Callable[[], None]], None] = lambda write: write()

    @contextmanager
    def action(self):
        """A user action runs inside: at its start a held message is cleared (it was about what came before)."""
        if self._depth == 0 and self.held:
            self._show("", "", False)
            self.held = False
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def say(self, text: str, details: str = "", error: bool = False, hold: bool = False) -> None:
        """Plain text (escaped here); ``details`` (plain text, may be long) go behind the toggle. ``error`` (shown
        as one) and ``hold`` keep the message until the next action (and replace a held one); a plain message
        meanwhile is only logged."""
        if text:
            self.log.append((text, error))
            del self.log[:-MESSAGE_LOG]
        if self.held and not (error or hold):
            return
        self.held = bool(text) and (error or hold)
        self._show(text, details, error)

    def add(self, text: str, details: str = "") -> None:
        """Another part for the message shown now (``" | "`` between them), held if it was."""
        self.log.append((text, False))
        joined = f"{self.text} | {text}" if self.text else text
        self._show(joined, "\n\n".join(d for d in (self.detail_text, details) if d), self.error)

    def _show(self, text: str, details: str, error: bool) -> None:
        self.text, self.detail_text, self.error = text, details, error
        self.later(self._write)

    def _write(self) -> None:
        """The widgets show what :attr:`text`, :attr:`detail_text` and :attr:`error` say now."""
        text, details, error = self.text, self.detail_text, self.error
        if len(text) > LINE_CHARS:
            details = text + ("\n\n" + details if details else "")
        style = ("color:#a00;background:#fdecea;border-left:3px solid #c00;padding:0 6px" if error
                 else "color:#333;padding:0 2px")
        mark = "&#9888; " if error else ""
        kind = "levitor-message levitor-error" if error else "levitor-message"
        self.line.value = (f"<div class='{kind}' style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis;"
                           f"line-height:22px;{style}' title='{html.escape(text)}'>{mark}{html.escape(text)}</div>"
                           ) if text else ""
        self.details.value = (f"<pre style='font-size:11px;white-space:pre-wrap;margin:0'>{html.escape(details)}"
                              "</pre>") if details else ""
        self.toggle.layout.visibility = "visible" if details else "hidden"
        if not details:
            self.toggle.value = False


class ModeBar:
    """Modes and undo/redo (``widget``); the scene's name, save/load and the recent scenes (``files``)."""

    def __init__(self, name: str):
        self.on_mode: Callable[[str], None] | None = None
        self.on_undo: Callable[[], None] | None = None
        self.on_redo: Callable[[], None] | None = None
        self.on_save: Callable[[], None] | None = None
        self.on_load: Callable[[], None] | None = None
        self.on_rename: Callable[[str], None] | None = None
        self.on_recent: Callable[[str], None] | None = None
        self._quiet = False
        self.modes = W.ToggleButtons(options=list(MODES), value="select", tooltips=MODE_TIPS,
                                     style={"button_width": "70px"})  # "camera" in full, on one line
        self.undo = W.Button(description="undo", tooltip="undo the last edit (key z)", layout=W.Layout(width="58px"))
        self.redo = W.Button(description="redo", tooltip="redo (key y)", layout=W.Layout(width="58px"))
        self.name = W.Text(value=name, description="scene", style=label_style(), layout=W.Layout(width="200px"),
                           continuous_update=False)
        self.save = W.Button(description="save", layout=W.Layout(width="64px"),
                             tooltip="save the scene to the file named beside 'load' (default: out_dir/<scene>.json)")
        self.file = W.Text(value="", placeholder="scene .json", layout=W.Layout(width="200px"))
        self.load = W.Button(description="load", layout=W.Layout(width="64px"))
        self.recent = W.Dropdown(options=[("recent scenes ...", "")], value="", layout=W.Layout(width="260px"))
        self.modes.observe(lambda ch: self._fire(self.on_mode, ch["new"]), names="value")
        self.undo.on_click(lambda _b: self._fire(self.on_undo))
        self.redo.on_click(lambda _b: self._fire(self.on_redo))
        self.save.on_click(lambda _b: self._fire(self.on_save))
        self.load.on_click(lambda _b: self._fire(self.on_load))
        self.name.observe(lambda ch: self._fire(self.on_rename, ch["new"]), names="value")
        self.recent.observe(lambda ch: ch["new"] and self._fire(self.on_recent, ch["new"]), names="value")
        self.widget = W.HBox([self.modes, self.undo, self.redo], layout=W.Layout(flex="0 0 auto"))
        self.files = W.HBox([self.name, self.save, self.file, self.load, self.recent], layout=row_layout())

    def _fire(self, cb, *args) -> None:
        if not self._quiet and cb is not None:
            cb(*args)

    def show(self, mode: str, can_undo: bool, can_redo: bool, recent: list[tuple[str, str]] | None = None) -> None:
        self._quiet = True
        try:
            if self.modes.value != mode:
                self.modes.value = mode
            self.undo.disabled, self.redo.disabled = not can_undo, not can_redo
            if recent is not None:
                options = [("recent scenes ...", "")] + list(recent)
                if list(self.recent.options) != options:
                    self.recent.options = options
                self.recent.value = ""
        finally:
            self._quiet = False


class MaskBar:
    """The mask tools (shown in mask mode), their size and tolerance (``tools_row``), and the depth choice
    (``depth_row``, always shown)."""

    def __init__(self, tools: list[str], depths: list[str], depth: str, nearness: float, max_nearness: float):
        self.on_tool: Callable[[str], None] | None = None
        self.on_new_object: Callable[[], None] | None = None
        self.on_depth: Callable[[str, float], None] | None = None
        self._quiet = False
        self.tool = W.ToggleButtons(options=[(TOOLS[t], t) for t in tools], value=tools[0],
                                    tooltips=[TOOL_TIPS[t] for t in tools], style={"button_width": "66px"})
        self.size = W.IntSlider(value=10, min=2, max=60, description="size", style=label_style(),
                                layout=W.Layout(width="170px"), readout_format="d")
        self.tolerance = W.IntSlider(value=24, min=2, max=120, description="tolerance", style=label_style(),
                                     layout=W.Layout(width="200px"))
        self.new_object = W.Button(description="new object", icon="plus", layout=W.Layout(width="110px"),
                                   tooltip="the next mask becomes a new object (instead of refining the active one)")
        self.depth = W.Dropdown(options=[(DEPTHS[d], d) for d in depths], value=depth, description="depth",
                                style=label_style(), layout=W.Layout(width="270px", min_width="270px"))
        self.nearness = W.FloatSlider(value=nearness, min=1.0, max=round(max_nearness, 2), step=0.05,
                                      description="N", style=label_style(), readout_format=".2f",
                                      continuous_update=False, layout=W.Layout(width="230px", min_width="230px"))
        self.tool.observe(lambda ch: self._fire(self.on_tool, ch["new"]), names="value")
        self.new_object.on_click(lambda _b: self._fire(self.on_new_object))
        self.depth.observe(lambda ch: self._depth_changed(), names="value")
        self._shown_nearness = float(nearness)  # N as the kernel last showed it (the browser snaps it to the step)
        self.nearness.observe(lambda ch: self._nearness_moved(float(ch["new"])), names="value")
        self.tools_row = W.HBox([self.tool, self.size, self.tolerance, self.new_object], layout=row_layout())
        self.depth_row = W.HBox([self.depth, self.nearness], layout=W.Layout(flex="0 0 auto", margin="0 0 0 12px"))
        self._show_nearness()

    def _fire(self, cb, *args) -> None:
        if not self._quiet and cb is not None:
            cb(*args)

    def _snap_of_shown(self, value: float) -> bool:
        return abs(value - self._shown_nearness) <= self.nearness.step / 2 + 1e-9

    def _nearness_moved(self, value: float) -> None:
        if not self._snap_of_shown(value):  # else the browser drawing N = 2.37 at its step (2.35): not a move
            self._depth_changed()

    def _depth_changed(self) -> None:
        self._show_nearness()
        n = float(self.nearness.value)
        self._fire(self.on_depth, self.depth.value, self._shown_nearness if self._snap_of_shown(n) else n)

    def _show_nearness(self) -> None:
        self.nearness.layout.visibility = "visible" if self.depth.value == "nearer" else "hidden"

    def show(self, mode: str, tool: str, depth: str, nearness: float) -> None:
        self._quiet = True
        try:
            self.tools_row.layout.visibility = "visible" if mode == "mask" else "hidden"  # keeps its height
            if self.tool.value != tool:
                self.tool.value = tool
            # "visible" on a child shows it even inside a hidden row: only in mask mode
            self.size.layout.visibility = "visible" if mode == "mask" and tool in ("brush", "eraser") else "hidden"
            self.tolerance.layout.visibility = "visible" if mode == "mask" and tool == "flood" else "hidden"
            if depth in [v for _, v in self.depth.options] and self.depth.value != depth:
                self.depth.value = depth
            if abs(self.nearness.value - nearness) > 1e-6:
                self.nearness.value = nearness
            self._shown_nearness = float(nearness)
            self._show_nearness()
        finally:
            self._quiet = False
