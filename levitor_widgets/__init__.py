"""The notebook UI: widgets that edit a levitor Scene and call the engine.

``Studio(image_or_scene)`` is the one composite widget; the modules beside it each do one job:
``canvas`` (ipycanvas layers + mouse/keys), ``panels`` (objects, path, frames, scale), ``view3d`` (plotly),
``generate_panel`` (the threaded Generate button), ``compat`` (ipywidgets 7/8, Colab, the kernel's event loop),
``launch`` and ``commands`` (``levitor studio``). ``Studio`` is imported on first use, so the ``levitor`` command
does not load the widget stack.
"""

from levitor._util.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"Studio": ".studio"})
__all__ = ["Studio"]
