"""levitor: 3D-trajectory-controlled image-to-video (LeviTor), notebook first.

The layers, in the order data flows::

    perception/   depth (DepthAnythingV2) and masks (SAM) for a photo, or the no-weights tools
    scene         what the user built: image, depth, masks, selected objects and their 3D paths
    motion/       lift the selected pixels to 3D, move them along their paths, re-render with a z-buffer
    control/      the instance map, the K rule, K-means control points, the conditioning video
    engine        Scene -> renders + control signal, recomputing only what an edit changed
    generation/   LeviTorPipeline (SVD + ControlNet), generate(), the shipped mini model
    models/       the ControlNet and the UNet that takes its residuals (diffusers ModelMixin)
    data/ training/ evaluation/   datasets, ControlNet training, DAVIS metrics
    viz/          pictures and videos;  weights: where every model's weights come from;  cli: ``levitor``

The names of the README's first example are here (imported on first use, so ``import levitor`` stays fast)::

    import levitor
    scene = levitor.bundled_scene()
    result = levitor.Engine(scene).update()
    cond = levitor.encode(result.signal)
"""

from levitor._util import notices  # noqa: F401  (drops two library notices that are only noise here)
from levitor._util.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {
    "Scene": ".scene", "ObjectTrack": ".scene", "PathPoint": ".scene", "Intrinsics": ".scene",
    "Engine": ".engine", "EngineResult": ".engine",
    "ControlSignal": ".control.signal", "ControlWarning": ".control.lost", "encode": ".control.encode",
    "bundled_scene": ".bundled",
    "LeviTorPipeline": ".generation.pipeline", "generate": ".generation.generate",
    "perceive": ".perception.perceive",
})
__all__ = ["__version__", "Scene", "ObjectTrack", "PathPoint", "Intrinsics", "Engine", "EngineResult",
           "ControlSignal", "ControlWarning", "encode", "bundled_scene", "LeviTorPipeline", "generate", "perceive"]
