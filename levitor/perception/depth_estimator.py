"""Relative depth for a photo with DepthAnythingV2 (transformers' ``DepthAnythingForDepthEstimation``).

Convention (see :mod:`levitor.depth`): the model predicts relative *inverse* depth (larger = nearer). Like the
release, :meth:`DepthEstimator.estimate_disparity` min-max normalises it to uint8 0..255 (255 = the nearest pixel
of this photo, 0 = the farthest), and :meth:`DepthEstimator.estimate` returns the scene depth ``1 / disparity``
(0 -> 1): float32 in (0, 1], **smaller = nearer**, 1 = the farthest pixel.

Why that scale reads naturally on a depth slider: scene depth is proportional to true distance (up to the
unknown scale of a relative model), so an object at 0.02 moved to 0.01 is twice as near and appears twice as
large, and the farthest background sits at 1. Only ratios and changes matter, never absolute values.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from levitor._util.device import resolve_device
from levitor._util.hashing import array_hash
from levitor._util.images import as_rgb_uint8
from levitor._util.threads import flush_denormals
from levitor.depth import depth_from_disparity, disparity_u8_from_relative
from levitor.perception.cache import FeatureCache, default_cache
from levitor.weights import WeightsNotFoundError, load_once, resolve, weights_fingerprint

RELEASE_INPUT_SIZE = 512  # the release demo's DepthAnythingV2 input size (the model's own default is 518)
BATCH_SIZE = 16  # frames per network call in the batched paths (precompute: a GPU needs many frames to stay busy)
PATCH = 14  # DINOv2 patch size: the network input must be a multiple of it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_SOURCE = "depth-anything-v2"  # the Scene.depth_source this estimator writes


class DepthEstimator:
    """DepthAnythingV2 behind a cache: ``estimate(image)`` gives the scene depth at the image's resolution.

    >>> est = DepthEstimator.load("small")          # or "base", "large", a hub id, or a folder
    >>> depth = est.estimate(image)                 # (H, W) float32 in (0, 1], smaller = nearer
    >>> disparity = est.estimate_disparity(image)   # (H, W) uint8, 255 = nearest (what the release stores)
    """

    source = DEPTH_SOURCE

    def __init__(
        self,
        model: Any,
        input_size: int = RELEASE_INPUT_SIZE,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        cache: FeatureCache | None = None,
        model_key: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if input_size < PATCH:
            raise ValueError(
                f"input_size must be >= {PATCH} (one DINOv2 patch), got {input_size}; 518 or 512 are usual"
            )
        self.model = model
        self.input_size = int(input_size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.cache = cache if cache is not None else default_cache()
        self.model_key = model_key or f"mem-{id(model)}"  # an unsaved model never shares cache entries
        if device is not None and hasattr(model, "to"):
            model.to(device)

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike = "large",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        input_size: int = RELEASE_INPUT_SIZE,
        cache: FeatureCache | None = None,
        reuse: bool = True,
        allow_download: bool = True,
    ) -> DepthEstimator:
        """Load DepthAnythingV2 from a short name (``small``, ``base``, ``large``), a hub id, or a local folder.

        Weights are found (or downloaded) by :func:`levitor.weights.resolve`; missing ones raise
        :class:`~levitor.weights.WeightsNotFoundError` saying what to download and where. With ``reuse`` a model
        already loaded in this process (same weights, device and dtype) is returned at once, so re-running the cell
        is instant.
        """
        from transformers import DepthAnythingForDepthEstimation

        folder = resolve(name_or_path, what="DepthAnythingV2", allow_download=allow_download)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = dtype
        device = str(resolve_device(device))
        key = f"{folder}|{weights_fingerprint(folder)}|{dtype}"

        def load() -> Any:
            try:
                model = DepthAnythingForDepthEstimation.from_pretrained(folder, **kwargs)
            except (OSError, ValueError) as e:
                raise WeightsNotFoundError(f"DepthAnythingV2: {folder} holds no readable model ({e}); delete it "
                                           "and download it again") from None
            return model.eval().to(device)

        model = load_once(f"depth|{key}|{device}", load, reuse)
        mean, std = _processor_normalisation(folder)
        return cls(model, input_size, mean, std, cache, model_key=key)

    # ------------------------------------------------------------------ public API
    def estimate_relative(self, image: Any) -> np.ndarray:
        """The model's raw relative inverse depth (larger = nearer, arbitrary scale), (H, W) float32. Cached."""
        rgb = as_rgb_uint8(image)
        key = f"depth|{self.model_key}|{self.input_size}|{self.image_mean}|{self.image_std}|{array_hash(rgb)}"
        relative = self.cache.get_or_compute(key, lambda: self._infer(rgb))
        return relative.numpy()

    def estimate_disparity(self, image: Any) -> np.ndarray:
        """(H, W) uint8 disparity, min-max normalised as in the release: 255 = nearest pixel, 0 = farthest."""
        return disparity_u8_from_relative(self.estimate_relative(image))

    def estimate_disparity_batch(self, frames: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """(N, H, W, 3) uint8 frames of one size -> (N, H, W) uint8 disparity, each frame min-max normalised on
        its own as :meth:`estimate_disparity` does; the network runs on ``batch_size`` frames at a time and nothing
        is cached (precompute sees every frame once)."""
        relative = self.estimate_relative_batch(frames, batch_size)
        return np.stack([disparity_u8_from_relative(r) for r in relative]) if len(relative) else \
            np.zeros(relative.shape, np.uint8)

    def estimate_relative_batch(self, frames: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """(N, H, W, 3) uint8 frames of one size -> (N, H, W) float32 raw relative inverse depth, as
        :meth:`estimate_relative` per frame (up to float round-off of the batched matmuls), ``batch_size`` frames
        per network call, not cached."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts = [self._infer(frames[i : i + batch_size]).numpy() for i in range(0, len(frames), batch_size)]
        return np.concatenate(parts) if parts else np.zeros(frames.shape[:3], np.float32)

    def estimate(self, image: Any) -> np.ndarray:
        """(H, W) float32 scene depth in (0, 1], smaller = nearer: ``1 / disparity`` with 0 -> 1."""
        return depth_from_disparity(self.estimate_disparity(image)).astype(np.float32)

    __call__ = estimate

    # ------------------------------------------------------------------ internals
    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) the network sees: the image scaled so its *shorter* side reaches ``input_size``
        (aspect kept), each side rounded to a multiple of 14 and never below ``input_size``."""
        scale = max(self.input_size / height, self.input_size / width)
        return _multiple_of(height * scale, self.input_size), _multiple_of(width * scale, self.input_size)

    @torch.inference_mode()
    def _infer(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) -> (H, W), or a batch (N, H, W, 3) -> (N, H, W): relative inverse depth at the input size."""
        single = rgb.ndim == 3
        batch = rgb[None] if single else rgb
        height, width = batch.shape[1:3]
        param = next(iter(self.model.parameters()), None) if hasattr(self.model, "parameters") else None
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=self.network_size(height, width), mode="bicubic", align_corners=False)
        mean = torch.tensor(self.image_mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(dtype)
        with flush_denormals(device):
            out = self.model(pixel_values=x)
        pred = out.predicted_depth if hasattr(out, "predicted_depth") else out[0]  # (N, h, w)
        pred = pred.float().reshape(len(batch), 1, *pred.shape[-2:])
        # back to the photo's resolution, as the release does (bilinear, corners aligned)
        pred = F.interpolate(pred, size=(height, width), mode="bilinear", align_corners=True)
        return pred[0, 0].cpu() if single else pred[:, 0].cpu()


def _multiple_of(x: float, minimum: int) -> int:
    y = int(round(x / PATCH) * PATCH)
    if y < minimum:
        y = int(math.ceil(x / PATCH) * PATCH)
    return y


def _processor_normalisation(folder: Path) -> tuple[tuple, tuple]:
    """Mean/std from the checkpoint's preprocessor_config.json; ImageNet's when it has none (all V2 use those)."""
    try:
        import json

        cfg_path = Path(folder) / "preprocessor_config.json"
        if not cfg_path.is_file():
            return IMAGENET_MEAN, IMAGENET_STD
        cfg = json.loads(cfg_path.read_text())
        return tuple(cfg.get("image_mean", IMAGENET_MEAN)), tuple(cfg.get("image_std", IMAGENET_STD))
    except Exception:  # the config is optional; the network still works with ImageNet statistics
        return IMAGENET_MEAN, IMAGENET_STD
