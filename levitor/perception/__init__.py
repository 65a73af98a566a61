"""Perception: a relative depth map and object masks for the user's photo.

With weights: :class:`DepthEstimator` (DepthAnythingV2) and :class:`Segmenter` (SAM, predictor pattern) plus
:class:`AutomaticMaskGenerator` for "all objects". Without any weights: lasso/brush/flood-fill masks and a
ground-plane or constant-per-object depth (:mod:`levitor.perception.manual`). :func:`perceive` runs whichever
the user has and says which source made each mask and the depth, as the :class:`~levitor.scene.Scene` records.
"""

from levitor.perception.automask import AutoMaskConfig, AutomaticMaskGenerator
from levitor.perception.cache import FeatureCache
from levitor.perception.depth_estimator import RELEASE_INPUT_SIZE, DepthEstimator
from levitor.perception.manual import (
    brush_mask,
    constant_depth,
    flood_fill_mask,
    ground_plane_depth,
    lasso_mask,
    threshold_mask,
)
from levitor.perception.perceive import PerceptionResult, perceive
from levitor.perception.segmenter import Segmenter
from levitor.weights import MissingWeightsError, WeightsNotFoundError

__all__ = [
    "AutoMaskConfig", "AutomaticMaskGenerator", "DepthEstimator", "FeatureCache", "MissingWeightsError",
    "PerceptionResult", "RELEASE_INPUT_SIZE", "Segmenter", "WeightsNotFoundError", "brush_mask", "constant_depth",
    "flood_fill_mask", "ground_plane_depth", "lasso_mask", "perceive", "threshold_mask",
]
