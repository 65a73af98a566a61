"""The 3D view: one small anywidget (``view3d.js``) that draws a :class:`~levitor.viz.scene3d.SceneView3D` with
Plotly.js, or a static plotly figure where anywidget is missing.

Why not plotly's ``FigureWidget``: it keeps the figure the kernel knows only as it was *built*
(``_widget_data``) and sends every later change as a one-off message that the browser applies to the plot it
has. A view created later (a page reload, a re-run cell, a second display) starts from the built figure, and
messages that arrive while a new view is still inside its asynchronous ``Plotly.newPlot`` hit a plot without
``data`` ("gd.data must be an array"): the blank 3D view after a re-run. Here the model *is* the state: the cloud
as two binary buffers, the other traces and the layout as JSON, and every view draws all of it. Importing
``FigureWidget`` also cost ~10-20 s (plotly.io -> nbformat -> jsonschema -> rfc3987_syntax compiles its
grammars); nothing of plotly's Python side is imported unless the static fallback is used.

Plotly.js itself is the plotly package's own ``plotly.min.js``, sent once per page load from the kernel when the
page has no Plotly (no CDN, nothing from the network).
"""

from __future__ import annotations

import json
from pathlib import Path

import ipywidgets as W
import numpy as np

from levitor.viz.scene3d import FIGURE_HEIGHT, FIGURE_WIDTH, SceneView3D
from levitor_widgets.compat import px

JS = Path(__file__).with_name("view3d.js")
REQUEST, REPLY = "levitor-plotly?", "levitor-plotly"


def plotly_js() -> bytes:
    """The plotly package's own Plotly.js bundle (read once)."""
    global _PLOTLY_JS
    if _PLOTLY_JS is None:
        import importlib.util

        spec = importlib.util.find_spec("plotly")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the 3D view needs plotly (pip install plotly; it is part of levitor[widgets])")
        path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
        _PLOTLY_JS = path.read_bytes()
    return _PLOTLY_JS


_PLOTLY_JS: bytes | None = None
_WIDGET_CLASS = None


def _widget_class():
    """The anywidget class, built on first use (anywidget is optional)."""
    global _WIDGET_CLASS
    if _WIDGET_CLASS is None:
        import anywidget
        import traitlets as T

        class Plot3D(anywidget.AnyWidget):
            _esm = T.Unicode(JS.read_text()).tag(sync=True)
            cloud_xyz = T.Bytes(b"").tag(sync=True)  # float32 (N, 3)
            cloud_rgb = T.Bytes(b"").tag(sync=True)  # uint8 (N, 3)
            traces = T.Unicode("[]").tag(sync=True)  # JSON list of plotly scatter3d dicts
            figure_layout = T.Unicode("{}").tag(sync=True)  # JSON plotly layout (not "layout": the widget's own)
            hint = T.Unicode("").tag(sync=True)
            point_size = T.Float(1.8).tag(sync=True)
            width = T.Int(FIGURE_WIDTH).tag(sync=True)
            height = T.Int(FIGURE_HEIGHT).tag(sync=True)

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.on_msg(self._on_msg)

            def _on_msg(self, _widget, content, _buffers):
                if isinstance(content, dict) and content.get("type") == REQUEST:
                    self.send({"type": REPLY}, buffers=[plotly_js()])

        _WIDGET_CLASS = Plot3D
    return _WIDGET_CLASS


class View3D:
    """``widget`` shows the view; :meth:`show` draws a :class:`SceneView3D` (the cloud is sent only when it
    changed: moving a path sends a few hundred numbers)."""

    def __init__(self, width: int = FIGURE_WIDTH, height: int = FIGURE_HEIGHT, backend: str = "auto"):
        if backend not in ("auto", "anywidget", "static"):
            raise ValueError(f"backend must be 'auto', 'anywidget' or 'static', got {backend!r}")
        self.width, self.height = int(width), int(height)
        self.plot = None
        if backend in ("auto", "anywidget"):
            try:
                self.plot = _widget_class()(width=self.width, height=self.height)
            except ImportError:
                if backend == "anywidget":
                    raise
        if self.plot is not None:
            self.mode = "anywidget"
            self.widget = self.plot
        else:
            self.mode = "static"
            self.widget = W.Output(layout=W.Layout(width=px(self.width + 10), min_height=px(self.height)))
        self.shown: SceneView3D | None = None
        self.figure: dict | None = None  # static mode: the plotly figure (JSON) last shown
        self.hint = ""
        self._cloud_id: tuple | None = None

    @property
    def num_points(self) -> int:
        return 0 if self.shown is None else self.shown.num_points

    @property
    def num_traces(self) -> int:
        """Traces drawn besides the cloud (frustum, photo plane, camera, 3 per object path)."""
        return 0 if self.shown is None else len(self.shown.traces)

    def show(self, view: SceneView3D, hint: str = "") -> None:
        self.shown, self.hint = view, hint
        if self.plot is None:
            self._rerender()
            return
        cloud = (id(view.points), view.num_points)
        with self.plot.hold_sync():
            if cloud != self._cloud_id:
                self.plot.cloud_xyz = np.ascontiguousarray(view.points, np.float32).tobytes()
                self.plot.cloud_rgb = np.ascontiguousarray(view.colors, np.uint8).tobytes()
                self._cloud_id = cloud
            self.plot.traces = json.dumps(view.traces)
            self.plot.figure_layout = json.dumps(view.layout)
            self.plot.hint = hint

    def _rerender(self) -> None:
        """Static mode: the figure as a plotly mime bundle in the Output (the notebook's own plotly renderer).

        Set as the Output's ``outputs`` (a synced trait in ipywidgets 7 and 8) rather than displayed inside
        ``with output:``: that capture routes display messages by the executing cell's message id, so it holds
        only on the kernel's main thread inside a cell; the state is the same from any thread, outside a kernel
        and in every front end.
        """
        view = self.shown
        cloud = {"type": "scatter3d", "mode": "markers", "hoverinfo": "skip", "showlegend": False,
                 "x": view.points[:, 0].tolist(), "y": view.points[:, 1].tolist(), "z": view.points[:, 2].tolist(),
                 "marker": {"size": 1.8, "color": [f"rgb({r},{g},{b})" for r, g, b in view.colors.tolist()]}}
        fig = {"data": [cloud, *view.traces], "layout": view.layout}
        self.figure = fig
        figure = {"output_type": "display_data", "metadata": {},
                  "data": {"application/vnd.plotly.v1+json": fig, "text/plain": "<3D view>"}}
        hint = [{"output_type": "stream", "name": "stdout", "text": self.hint + "\n"}] if self.hint else []
        self.widget.outputs = (*hint, figure)
