"""3D view: the lifted frame-0 point cloud (coloured from the image) and each object's 3D path.

A ``go.FigureWidget`` (needs ``anywidget``) is updated in place: the cloud is sent once, only the small path
traces change with edits. Where FigureWidget can't be built (plotly without anywidget, some Colab setups) a
static ``go.Figure`` is re-rendered into an ``Output`` instead.

Camera space is (X right, Y down, Z = depth away from the camera); the plot shows (X, Z, -Y) so that "up" is up
and depth goes into the screen.
"""

from __future__ import annotations

import contextlib

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from levitor.viz.colors import css
from levitor_widgets.compat import make_figure_widget, px

MAX_CLOUD_POINTS = 20_000  # FigureWidget updates cost ~0.5 s per 10k points in the browser
FAR_DEPTH = 0.999  # depth 1 is "at infinity" (disparity 0, e.g. the sky): shown, it would dwarf the scene


def _plot_xyz(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return xyz[:, 0], xyz[:, 2], -xyz[:, 1]


def _rgb_strings(rgb: np.ndarray) -> list[str]:
    return [css(c) for c in np.asarray(rgb, dtype=np.int64).reshape(-1, 3)]


class View3D:
    """``widget`` shows the figure; ``set_cloud`` once, ``set_paths`` on every edit."""

    def __init__(self, width: int = 520, height: int = 420, use_figure_widget: bool = True):
        self.figure = go.Figure(layout=go.Layout(
            width=width, height=height, margin=dict(l=0, r=0, t=24, b=0), showlegend=False,
            title=dict(text="lifted point cloud and 3D paths", font=dict(size=12)),
            # depth spans ~1/255..1: a log axis keeps the near objects from collapsing onto the camera
            scene=dict(aspectmode="cube", xaxis_title="x", yaxis=dict(title="depth (log)", type="log"),
                       zaxis_title="up",
                       camera=dict(eye=dict(x=0.0, y=-2.0, z=0.6))),
        ))
        self.figure.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="markers", marker=dict(size=1.5),
                                           hoverinfo="skip", name="cloud"))
        self.fig_widget = make_figure_widget(self.figure) if use_figure_widget else None
        self.output = None
        if self.fig_widget is not None:
            self.widget = self.fig_widget
            self.mode = "FigureWidget"
        else:
            self.output = W.Output(layout=W.Layout(width=px(width + 10), min_height=px(height)))
            self.widget = self.output
            self.mode = "static"
        self.num_path_traces = 0

    @property
    def fig(self):
        """The figure being shown (the FigureWidget itself, or the static figure)."""
        return self.fig_widget if self.fig_widget is not None else self.figure

    def set_cloud(self, xyz: np.ndarray, rgb: np.ndarray, hide_far: bool = True) -> None:
        """xyz: (N, 3) camera-space points, rgb: (N, 3) uint8; subsampled to MAX_CLOUD_POINTS. ``hide_far``
        leaves out points at the far plane (depth >= FAR_DEPTH), whose huge X/Y would squash the rest."""
        xyz, rgb = np.asarray(xyz), np.asarray(rgb)
        if hide_far:
            keep = xyz[:, 2] < FAR_DEPTH
            if keep.any():
                xyz, rgb = xyz[keep], rgb[keep]
        if len(xyz) > MAX_CLOUD_POINTS:
            keep = np.linspace(0, len(xyz) - 1, MAX_CLOUD_POINTS).astype(np.int64)
            xyz, rgb = xyz[keep], np.asarray(rgb)[keep]
        x, y, z = _plot_xyz(xyz)
        fig = self.fig
        fig.data[0].x, fig.data[0].y, fig.data[0].z = x, y, z
        fig.data[0].marker.color = _rgb_strings(rgb)

    def set_paths(self, paths: list[np.ndarray], colors: list, frame: int) -> None:
        """paths: one (F, 3) camera-space array per object; a big marker shows the object at ``frame``."""
        fig = self.fig
        traces = []
        for path, rgb in zip(paths, colors):
            x, y, z = _plot_xyz(path)
            color = css(rgb)
            f = int(np.clip(frame, 0, len(x) - 1)) if len(x) else 0
            traces.append(dict(x=x, y=y, z=z, mode="lines+markers", line=dict(color=color, width=6),
                               marker=dict(size=3, color=color), hoverinfo="skip"))
            traces.append(dict(x=x[f:f + 1], y=y[f:f + 1], z=z[f:f + 1], mode="markers",
                               marker=dict(size=8, color=color, line=dict(color="black", width=1)), hoverinfo="skip"))
        batch = fig.batch_update() if self.fig_widget is not None else contextlib.nullcontext()
        with batch:
            old = list(fig.data[1:])
            if len(old) == len(traces):
                for t, new in zip(old, traces):  # in-place: only the small path arrays travel
                    t.update(new)
            else:
                fig.data = fig.data[:1]
                for new in traces:
                    fig.add_trace(go.Scatter3d(**new))
        self.num_path_traces = len(traces)
        if self.output is not None:
            self.rerender()

    def rerender(self) -> None:
        """Static mode: show the figure again (call from the main thread only)."""
        if self.output is None:
            return
        from IPython.display import display

        self.output.clear_output(wait=True)
        with self.output:
            display(self.figure)  # the notebook's plotly renderer (never fig.show(), which may open a browser)
