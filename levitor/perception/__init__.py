"""Perception: a relative depth map and object masks for the user's photo.

With weights: :class:`DepthEstimator` (DepthAnythingV2) and :class:`Segmenter` (SAM, predictor pattern) plus
:class:`AutomaticMaskGenerator` for "all objects". Without any weights: box (GrabCut), lasso, brush and
flood-fill masks and a ground-plane, flat or "N x nearer" depth (:mod:`levitor.perception.manual`,
:mod:`~levitor.perception.grabcut`, :mod:`~levitor.perception.depth_choice`). :func:`perceive` runs whichever
the user has and says which source made each mask and the depth, as the :class:`~levitor.scene.Scene` records.
"""

from levitor.perception.automask import AutoMaskConfig, AutomaticMaskGenerator
from levitor.perception.cache import FeatureCache
from levitor.perception.depth_choice import DEPTH_KINDS, DepthChoice
from levitor.perception.depth_estimator import RELEASE_INPUT_SIZE, DepthEstimator
from levitor.perception.grabcut import grabcut_mask
from levitor.perception.manual import (
    brush_mask,
    constant_depth,
    flat_depth,
    flood_fill_mask,
    ground_plane_depth,
    lasso_mask,
    nearer_depth,
    threshold_mask,
)
from levitor.perception.perceive import PerceptionResult, perceive
from levitor.perception.segmenter import Segmenter
from levitor.weights import WeightsNotFoundError

__all__ = [
    "AutoMaskConfig", "AutomaticMaskGenerator", "DEPTH_KINDS", "DepthChoice", "DepthEstimator", "FeatureCache",
    "PerceptionResult", "RELEASE_INPUT_SIZE", "Segmenter", "WeightsNotFoundError",
    "brush_mask", "constant_depth", "flat_depth", "flood_fill_mask", "grabcut_mask", "ground_plane_depth",
    "lasso_mask", "nearer_depth", "perceive", "threshold_mask",
]
