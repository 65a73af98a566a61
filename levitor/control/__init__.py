"""Control: control points from rendered (or video) masks, and their encoding for the ControlNet."""

from levitor.control.lost import ControlWarning
from levitor.control.signal import ControlSignal

__all__ = ["ControlSignal", "ControlWarning"]
