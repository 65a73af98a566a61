"""The notebook UI: widgets that edit a levitor Scene and call the engine.

``Studio(image_or_scene)`` is the one composite widget; the modules beside it each do one job:
``canvas`` (ipycanvas layers + mouse/keys), ``panels`` (objects, path, frames, scale), ``view3d`` (plotly),
``generate_panel`` (the threaded Generate button), ``compat`` (ipywidgets 7/8, Colab, the kernel's event loop).
"""

from levitor_widgets.studio import Studio

__all__ = ["Studio"]
