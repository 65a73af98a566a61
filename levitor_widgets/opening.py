"""What the Studio opens: a Scene, a scene JSON, a photo (path, PIL, array) or the bundled scene; the scene's
name; the models it finds on this machine (never downloaded unless asked) and one short note about the rest.

A photo opens with no masks and a depth it can use at once: DepthAnythingV2 where its weights are here, else
"objects N x nearer than a flat background" (:mod:`levitor.perception.depth_choice`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from levitor._util.images import as_rgb_uint8, center_crop_box, fit_image
from levitor.defaults import DEFAULT_SIZE
from levitor.perception.depth_choice import MODEL_SOURCE, DepthChoice
from levitor.scene import Scene

DEPTH_MODEL = "large"  # DepthAnythingV2-Large, as the release
SAM_MODEL = "vit_b"  # the smallest SAM: a click is answered fast enough on a CPU


@dataclass
class Note:
    """A message for the user: one line, and the long part (what to download, tracebacks) behind a toggle."""

    text: str
    details: str = ""
    error: bool = False  # shown as an error (a broken autosave)


@dataclass
class Opened:
    scene: Scene
    name: str
    notes: list[Note] = field(default_factory=list)
    estimator: Any = None  # a DepthEstimator when its weights were found
    photo: np.ndarray | None = None  # the whole photo (H, W, 3) when one was opened: the crop can still move


def crop_window(photo: np.ndarray, offset: float) -> tuple[int, int, int, int] | None:
    """(y0, x0, h, w) of the part of ``photo`` the scene shows at ``offset``; None when nothing is cut away."""
    y0, x0, h, w = center_crop_box(photo.shape[0], photo.shape[1], DEFAULT_SIZE.height, DEFAULT_SIZE.width, offset)
    return None if (h, w) == photo.shape[:2] else (y0, x0, h, w)


def crop_photo(photo: np.ndarray, offset: float) -> np.ndarray:
    """``photo`` cropped at ``offset`` and resized to the generation size: the scene's image."""
    return fit_image(photo, DEFAULT_SIZE.height, DEFAULT_SIZE.width, offset)


def frame_photo(photo: np.ndarray, offset: float, depth_source: str, estimator: Any = None
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """(image, depth, depth source) of ``photo`` cropped at ``offset``, its depth chosen as ``depth_source`` says
    (a model's depth without the model, or the scene's own depth, falls back to the default guess)."""
    image = crop_photo(photo, offset)
    choice = DepthChoice.from_source(depth_source)
    if choice is None or (choice.kind == MODEL_SOURCE and estimator is None):
        choice = DepthChoice(MODEL_SOURCE) if estimator is not None else DepthChoice()
    return image, choice.depth(image, (), estimator), choice.source


def scene_name(x: Any, scene: Scene) -> str:
    if x is None:
        return "bundled"
    if isinstance(x, (str, os.PathLike)):
        return Path(x).stem
    if scene.image_path:
        return Path(scene.image_path).stem
    return "scene" if isinstance(x, Scene) else "photo"


def open_target(x: Any, allow_download: bool = False, name: str | None = None) -> Opened:
    """Scene, scene JSON, image (path / PIL / array), or None for the bundled scene."""
    if x is None:
        from levitor.bundled import bundled_scene

        scene = bundled_scene()
        return Opened(scene, name or scene_name(x, scene))
    if isinstance(x, Scene):
        return Opened(x, name or scene_name(x, x))
    if isinstance(x, (str, os.PathLike)) and str(x).endswith(".json"):
        scene = Scene.load(x)
        return Opened(scene, name or scene_name(x, scene))
    photo = as_rgb_uint8(x)
    estimator, note = depth_estimator(allow_download)
    rgb, depth, source = frame_photo(photo, 0.0, MODEL_SOURCE, estimator)  # centred, at the generation size
    path = str(x) if isinstance(x, (str, os.PathLike)) else None
    scene = Scene(image=rgb, depth=depth, depth_source=source, image_path=path)
    return Opened(scene, name or scene_name(x, scene), [note] if note else [], estimator, photo)


def depth_estimator(allow_download: bool = False) -> tuple[Any, Note | None]:
    """DepthAnythingV2 where its weights are on this machine (or may be downloaded); else (None, a note)."""
    try:
        from levitor.weights import resolve

        resolve(DEPTH_MODEL, allow_download=allow_download)  # cheap: fails before transformers is imported
        from levitor.perception.depth_estimator import DepthEstimator

        return DepthEstimator.load(DEPTH_MODEL, allow_download=allow_download), None
    except Exception as e:  # WeightsNotFoundError, or anything a half-installed model raises
        return None, Note("no depth model: the depth is a guess (see the 'depth' menu)", f"{type(e).__name__}: {e}")


def load_segmenter(image: np.ndarray, allow_download: bool = False) -> tuple[Any, Note | None]:
    """SAM (transformers) ready on ``image`` where its weights are here; else (None, a note)."""
    try:
        from levitor.weights import resolve

        resolve(SAM_MODEL, allow_download=allow_download)
        from levitor.perception.segmenter import Segmenter

        seg = Segmenter.load(SAM_MODEL, allow_download=allow_download)
        seg.set_image(image)
        return seg, None
    except Exception as e:  # MissingWeightsError and anything a half-installed model raises
        return None, Note("no SAM weights: make masks with box, lasso, brush or flood", f"{type(e).__name__}: {e}")
