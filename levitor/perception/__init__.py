"""Perception: a relative depth map and object masks for the user's photo.

With weights: :class:`DepthEstimator` (DepthAnythingV2) and :class:`Segmenter` (SAM, predictor pattern) plus
:class:`AutomaticMaskGenerator` for "all objects". Without any weights: box (GrabCut), lasso, brush and
flood-fill masks and a ground-plane, flat or "N x nearer" depth (:mod:`levitor.perception.manual`,
:mod:`~levitor.perception.grabcut`, :mod:`~levitor.perception.depth_choice`). :func:`perceive` runs whichever
the user has and says which source made each mask and the depth, as the :class:`~levitor.scene.Scene` records.
"""

from levitor._util.lazy import lazy_exports

# imported on first use: the Studio opens with the no-weights tools, before torch is imported
__getattr__, __dir__ = lazy_exports(__name__, {
    "AutoMaskConfig": ".automask", "AutomaticMaskGenerator": ".automask", "FeatureCache": ".cache",
    "DEPTH_KINDS": ".depth_choice", "DepthChoice": ".depth_choice", "RELEASE_INPUT_SIZE": ".depth_estimator",
    "DepthEstimator": ".depth_estimator", "grabcut_mask": ".grabcut", "brush_mask": ".manual",
    "constant_depth": ".manual", "flat_depth": ".manual", "flood_fill_mask": ".manual",
    "ground_plane_depth": ".manual", "lasso_mask": ".manual", "nearer_depth": ".manual",
    "threshold_mask": ".manual", "PerceptionResult": ".perceive", "perceive": ".perceive",
    "Segmenter": ".segmenter", "WeightsNotFoundError": "levitor.weights",
})
__all__ = [
    "AutoMaskConfig", "AutomaticMaskGenerator", "DEPTH_KINDS", "DepthChoice", "DepthEstimator", "FeatureCache",
    "PerceptionResult", "RELEASE_INPUT_SIZE", "Segmenter", "WeightsNotFoundError",
    "brush_mask", "constant_depth", "flat_depth", "flood_fill_mask", "grabcut_mask", "ground_plane_depth",
    "lasso_mask", "nearer_depth", "perceive", "threshold_mask",
]
