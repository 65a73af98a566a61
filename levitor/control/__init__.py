"""Control: control points from rendered (or video) masks, and their encoding for the ControlNet."""

from levitor._util.lazy import lazy_exports

# imported on first use: the scene and the Studio use this package's K rule without torch
__getattr__, __dir__ = lazy_exports(__name__, {"ControlSignal": ".signal", "ControlWarning": ".lost"})
__all__ = ["ControlSignal", "ControlWarning"]
