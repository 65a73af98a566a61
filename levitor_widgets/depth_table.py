"""The path table's widget: a small anywidget (``depth_table.js``) with one row per path point.

Why not ipywidgets sliders: a browser sends a slider's value back whenever it redraws it (a new min or max
clamps it, a value snaps to the step), and those messages look exactly like a user's move; arriving after the
panel was rebuilt for another object they rewrote that object's depths. Here the kernel's state goes one way
(``rows``, ``subject``) and the browser reports only what the user did, as a custom message naming the subject
it showed (see :class:`levitor_widgets.panels.PathPanel` for how such a message is checked).

Works with anywidget 0.9 (Colab's, on ipywidgets 7) and later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

JS = Path(__file__).with_name("depth_table.js")
NEARNESS_STEP = 0.01  # the slider's step, in log2 of "x nearer" (the browser snaps to it)

_WIDGET_CLASS = None


@dataclass
class PointRow:
    """What one row shows (the kernel's side; the browser only draws it)."""

    name: str  # "P2"
    frame: int  # shown from 1
    frames: int  # the clip's length (the frame box's maximum)
    timed: bool  # the frame box is editable
    shown: float  # the "x nearer" the row shows (clamped into lo2..hi2)
    lo2: float  # the slider's range, log2 of "x nearer"
    hi2: float
    editable: bool  # P1 is the reference: 1x by definition
    deletable: bool
    active: bool
    note: str = ""  # a few words beside the point
    detail: str = ""  # the whole story (the note's tooltip)
    step: float = NEARNESS_STEP


def table_widget():
    """A new table widget (the class is built on first use: anywidget is imported only then)."""
    global _WIDGET_CLASS
    if _WIDGET_CLASS is None:
        try:
            import anywidget
        except ImportError as e:
            raise ImportError("the Studio's path table needs anywidget (pip install anywidget; it is part of "
                              "levitor[widgets])") from e
        import traitlets as T

        class DepthTable(anywidget.AnyWidget):
            _esm = T.Unicode(JS.read_text()).tag(sync=True)
            rows = T.Unicode("[]").tag(sync=True)  # JSON list of PointRow dicts
            subject = T.Int(0).tag(sync=True)  # which path the rows are (messages name it)

        _WIDGET_CLASS = DepthTable
    return _WIDGET_CLASS()


def rows_json(rows: list[PointRow]) -> str:
    return json.dumps([asdict(r) for r in rows])
