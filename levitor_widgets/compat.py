"""What differs between the places the Studio runs: ipywidgets 7 (Colab) vs 8, Colab's widget manager, a kernel
with or without a running event loop.

Everything version-dependent lives here so the other modules read the same everywhere.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab``)."""
    return "google.colab" in sys.modules


def enable_colab_widgets() -> None:
    """Colab needs its custom widget manager before any ipycanvas widget is displayed; a no-op elsewhere."""
    if in_colab():
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()


IPYWIDGETS_MAJOR = int(W.__version__.split(".")[0])


def tooltip(text: str) -> dict:
    """The keyword that gives a Checkbox, slider, Dropdown, ... a tooltip: ``tooltip`` in ipywidgets 8,
    ``description_tooltip`` in 7 (there such widgets have no ``tooltip``: the text was dropped with a warning).
    Buttons take ``tooltip=`` directly in both."""
    return {"description_tooltip" if IPYWIDGETS_MAJOR < 8 else "tooltip": text}


def px(n: int | float) -> str:
    return f"{int(round(n))}px"


def label_style() -> dict:
    """``description_width`` is the one style key that works the same in ipywidgets 7 and 8."""
    return {"description_width": "initial"}


def video_widget(width: int, height: int) -> W.Widget:
    """An inline video player that exists in ipywidgets 7 and 8, empty until :func:`show_video`.

    Empty means format "url" with no URL: the front ends of both make a ``blob:`` URL of any other format's
    bytes, and an empty blob makes the browser log ``ERR_REQUEST_RANGE_NOT_SATISFIABLE`` for every player.
    """
    return W.Video(value=b"", format="url", autoplay=True, loop=True, controls=True,
                   layout=W.Layout(width=px(width), height=px(height)))


def show_video(player: W.Widget, path: Path) -> None:
    """Play the video file ``path`` in a :func:`video_widget`: its format and bytes reach the browser in one
    message (the format alone would make it load the old bytes as the new format)."""
    with player.hold_sync():
        player.format = path.suffix.lstrip(".") or "mp4"
        player.value = path.read_bytes()


def call_soon(delay_s: float, fn: Callable[[], None]):
    """Run ``fn`` after ``delay_s`` on the kernel's event loop (coalescing bursts of widget events).

    Returns a handle with ``cancel()``, or None when there is no running loop (plain Python, tests): then ``fn``
    has already run synchronously.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None or not _in_kernel():  # a loop left set by other code (e.g. Playwright) is not ours
        fn()
        return None
    return loop.call_later(delay_s, fn)


def defers() -> bool:
    """Whether :func:`call_soon` waits (a kernel with a running loop) rather than running ``fn`` at once."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return _in_kernel()


def _in_kernel() -> bool:
    """True inside a Jupyter kernel, whose event loop delivers widget messages and our timers."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None
