"""The notebook UI: widgets that edit a levitor Scene and call the engine."""

from levitor_widgets.studio import Studio

__all__ = ["Studio"]
