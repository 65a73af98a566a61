"""Click-to-mask with SAM, in segment-anything's predictor pattern.

``set_image(image)`` runs the heavy ViT image encoder once (and caches its output by the pixels' hash);
``predict(points, labels, box)`` runs only the small prompt encoder and mask decoder, so it is cheap enough to
call on every click. Positive clicks (label 1) add to the object, negative clicks (label 0) cut away from it.

Backends:
- ``"transformers"`` (default): ``SamModel`` / ``SamHQModel`` from a hub id (``facebook/sam-vit-huge``, ...) or a
  folder saved with ``save_pretrained``. Needs no torchvision.
- ``"segment_anything"`` (optional): Meta's package with the official ``.pth`` checkpoints
  (``sam_vit_h_4b8939.pth``, as the release uses). That package imports torchvision, so it is only usable where a
  torchvision matching torch is installed.

Coordinates are (x, y) in pixels of the image given to ``set_image``, x to the right, y down. Masks come back
at that image's resolution as bool arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from levitor._util.device import resolve_device
from levitor._util.hashing import array_hash
from levitor._util.images import as_rgb_uint8
from levitor._util.threads import flush_denormals, torch_threads
from levitor.perception.cache import FeatureCache, default_cache
from levitor.perception.sam_backends import SegmentAnythingSam, TransformersSam

MASK_THRESHOLD = 0.0  # SAM's logits are thresholded at 0 to give a binary mask
BACKENDS = ("transformers", "segment_anything")


class SamBackend(Protocol):
    """What :class:`Segmenter` needs from a SAM implementation. Coordinates are in the *resized* input frame
    (the image scaled so its longest side is ``image_size``), before the backend's own +0.5 pixel-centre shift."""

    name: str
    model_key: str  # identifies the weights in cache keys
    image_size: int  # square encoder input, e.g. 1024
    pixel_mean: tuple[float, float, float]  # 0..255 scale
    pixel_std: tuple[float, float, float]

    def encode(self, pixel_values: torch.Tensor) -> dict[str, Any]: ...

    def decode(
        self,
        features: dict[str, Any],
        points: torch.Tensor | None,  # (N, P, 2) float, resized-frame pixels
        labels: torch.Tensor | None,  # (N, P) long: 1 positive, 0 negative
        boxes: torch.Tensor | None,  # (N, 4) float, x0 y0 x1 y1, resized-frame pixels
        mask_input: torch.Tensor | None,  # (1, 1, 4*e, 4*e) low-res logits from an earlier predict
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...  # low-res logits (N, M, 4*e, 4*e), predicted IoU (N, M)

    @property
    def device(self) -> torch.device: ...


@dataclass
class ImageState:
    """What ``set_image`` leaves behind: the encoder's features and the geometry to map coordinates and masks."""

    key: str  # the cache key (model + pixel hash)
    features: dict[str, Any]  # on the backend's device
    original_size: tuple[int, int]  # (H, W) of the user's image
    input_size: tuple[int, int]  # (h, w) after resizing the longest side to the encoder size, before padding
    cache_hit: bool = False


@dataclass
class Prediction:
    """Everything one ``predict`` call produced (``predict`` itself returns just ``masks, scores``)."""

    masks: np.ndarray  # (M, H, W) bool, best first
    scores: np.ndarray  # (M,) float32 predicted IoU, descending
    low_res_logits: np.ndarray  # (M, 4*e, 4*e) float32: feed one back as mask_input to refine
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None


class Segmenter:
    """SAM in the predictor pattern: ``set_image`` once, then cheap ``predict`` per click.

    >>> seg = Segmenter.load("vit_b")             # facebook/sam-vit-base, from a local folder or the HF cache
    >>> seg.set_image(image)                      # the ViT encoder runs here, once (cached by pixel hash)
    >>> masks, scores = seg.predict(points=[(120.0, 80.0)])          # 3 candidates, best first
    >>> masks, scores = seg.predict([(120, 80), (150, 60)], labels=[1, 0], multimask_output=False)
    """

    def __init__(
        self, backend: SamBackend, cache: FeatureCache | None = None, cpu_decode_threads: int | None = 1
    ) -> None:
        self.backend = backend
        self.cache = cache if cache is not None else default_cache()
        # The mask decoder is small: on CPU one thread is barely slower than two on an idle machine, and far
        # steadier when other processes share the cores (2-core machine under load: ~0.2 s vs 0.6-5 s per click,
        # as OpenMP threads wait for each other). None keeps torch's thread setting.
        self.cpu_decode_threads = cpu_decode_threads
        self._state: ImageState | None = None
        self.last_prediction: Prediction | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike = "vit_h",
        backend: str = "transformers",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        cache: FeatureCache | None = None,
        reuse: bool = True,
        allow_download: bool = True,
    ) -> Segmenter:
        """Load SAM by short name (``vit_b``, ``vit_l``, ``vit_h``, ``hq_vit_b``, ...), hub id, folder or ``.pth``.

        ``backend="segment_anything"`` (chosen automatically for a ``.pth`` path) takes the official checkpoints
        (``sam_vit_h_4b8939.pth``); it needs the ``segment-anything`` package and a working torchvision. Missing
        weights raise :class:`~levitor.weights.WeightsNotFoundError` naming what to download and where it goes
        (found or downloaded by :mod:`levitor.weights`).
        With ``reuse`` a model already loaded in this process (same weights, device, dtype) is returned at once.
        """

        device = str(resolve_device(device))
        if str(name_or_path).endswith((".pth", ".pt")):
            backend = "segment_anything"  # official checkpoints are only readable by Meta's package
        if backend == "transformers":
            impl: SamBackend = TransformersSam.load(name_or_path, device=device, dtype=dtype, reuse=reuse,
                                                    allow_download=allow_download)
        elif backend == "segment_anything":
            impl = SegmentAnythingSam.load(name_or_path, device=device, reuse=reuse, allow_download=allow_download)
        else:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        return cls(impl, cache)

    # ------------------------------------------------------------------ the expensive part
    def set_image(self, image: Any) -> None:
        """Compute (or fetch from the cache) the image embedding; every later ``predict`` reuses it."""
        rgb = as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        input_size = resized_shape(height, width, self.backend.image_size)
        key = f"sam|{self.backend.name}|{self.backend.model_key}|{array_hash(rgb)}"
        features = self.cache.get(key)
        hit = features is not None
        if not hit:
            with flush_denormals(self.backend.device):
                features = self.backend.encode(self.preprocess(rgb))
            self.cache.put(key, features)
        features = _to_device(features, self.backend.device)
        self._state = ImageState(key, features, (height, width), input_size, cache_hit=hit)
        self.last_prediction = None

    def reset_image(self) -> None:
        """Forget the current image (the cache keeps its embedding)."""
        self._state = None
        self.last_prediction = None

    @property
    def is_image_set(self) -> bool:
        return self._state is not None

    @property
    def state(self) -> ImageState:
        if self._state is None:
            raise RuntimeError("call Segmenter.set_image(image) before predict()")
        return self._state

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, S, S) normalised, longest side resized to S, zero-padded bottom/right."""
        size = self.backend.image_size
        h, w = resized_shape(rgb.shape[0], rgb.shape[1], size)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        # antialiased bilinear: close to the PIL resize that both official and transformers preprocessors use
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.backend.pixel_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.backend.pixel_std).view(1, 3, 1, 1)
        x = (x - mean) / std
        x = F.pad(x, (0, size - w, 0, size - h))  # padding after normalisation, as SAM was trained
        return x.to(self.backend.device)

    # ------------------------------------------------------------------ the cheap part
    @torch.inference_mode()
    def predict(
        self,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        multimask_output: bool = True,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks for one object from clicks and/or a box.

        points: (P, 2) (x, y) image pixels. labels: (P,) 1 = part of the object, 0 = not (default: all 1).
        box: (x0, y0, x1, y1) image pixels. mask_input: (4*e, 4*e) low-res logits of an earlier prediction
        (``self.last_prediction.low_res_logits[0]``) to refine instead of starting over.
        Returns ``masks`` (M, H, W) bool and ``scores`` (M,) float32, best first; M = 3 with
        ``multimask_output`` (useful for a single ambiguous click), else 1.
        """
        state = self.state
        pts, lbl = _check_points(points, labels, state.original_size)
        bx = _check_box(box, state.original_size)
        if pts is None and bx is None:
            raise ValueError("give at least one click (points=[(x, y)]) or a box=(x0, y0, x1, y1) to predict a mask")
        device = self.backend.device
        t_points = self.to_input_frame(torch.from_numpy(pts)[None]).to(device) if pts is not None else None
        t_labels = torch.from_numpy(lbl)[None].to(device) if lbl is not None else None
        t_box = None
        if bx is not None:
            t_box = self.to_input_frame(torch.from_numpy(bx).view(1, 2, 2)).view(1, 4).to(device)
        t_mask = None
        if mask_input is not None:
            m = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
            expected = 4 * _embedding_side(state.features)
            if m.shape[-2:] != (expected, expected):
                raise ValueError(
                    f"mask_input must be the {expected}x{expected} low-res logits of an earlier prediction "
                    f"(last_prediction.low_res_logits[i]), got shape {tuple(m.shape)}"
                )
            t_mask = m.reshape(1, 1, expected, expected).to(device)
        logits, scores = self.decode(t_points, t_labels, t_box, multimask_output, t_mask)
        logits, scores = logits[0], scores[0]  # one prompt set
        order = torch.argsort(scores, descending=True, stable=True)
        logits, scores = logits[order], scores[order]
        with torch_threads(self._cpu_threads()):
            masks = self.upscale(logits) > MASK_THRESHOLD
        prediction = Prediction(
            masks.cpu().numpy(), scores.float().cpu().numpy(), logits.float().cpu().numpy(),
            pts if pts is not None else np.zeros((0, 2), np.float32),
            lbl if lbl is not None else np.zeros((0,), np.int64), bx,
        )
        self.last_prediction = prediction
        return prediction.masks, prediction.scores

    @torch.inference_mode()
    def decode(
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        multimask_output: bool = True,
        mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched prompts in the *input frame* -> low-res logits (N, M, 4e, 4e) and scores (N, M), on device.

        The building block of :meth:`predict` and of automatic masks; the image encoder never runs here.
        """
        device = self.backend.device
        with flush_denormals(device), torch_threads(self._cpu_threads()):
            return self.backend.decode(self.state.features, points, labels, boxes, mask_input, multimask_output)

    def _cpu_threads(self) -> int | None:
        return self.cpu_decode_threads if self.backend.device.type == "cpu" else None

    def to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        """Image pixels (..., 2) (x, y) -> the resized encoder frame, as SAM's prompt encoder expects."""
        (height, width), (h, w) = self.state.original_size, self.state.input_size
        scale = torch.tensor([w / width, h / height], dtype=torch.float32)
        return xy.float() * scale

    def upscale(self, low_res_logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Low-res logits (..., 4e, 4e) -> logits at the image resolution (..., H, W), as SAM post-processes:
        up to the padded encoder square, crop the padding, then to the original size (both bilinear)."""
        state = self.state
        size = size or state.original_size
        s = self.backend.image_size
        lead = low_res_logits.shape[:-2]
        x = low_res_logits.reshape(-1, 1, *low_res_logits.shape[-2:]).float()
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        x = x[..., : state.input_size[0], : state.input_size[1]]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x.reshape(*lead, *size)

    def low_res_valid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the low-res logits that cover the image (the rest covers the padding)."""
        side = 4 * _embedding_side(self.state.features)
        s = self.backend.image_size
        h, w = self.state.input_size
        return max(1, int(np.ceil(h * side / s))), max(1, int(np.ceil(w * side / s)))






# ---------------------------------------------------------------------- helpers


def resized_shape(height: int, width: int, longest: int) -> tuple[int, int]:
    """(h, w) with the longest side scaled to ``longest`` (rounded half up, as SAM's ResizeLongestSide)."""
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _embedding_side(features: dict[str, Any]) -> int:
    return int(features["embeddings"].shape[-1])


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _check_points(points, labels, size: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    if points is None or len(points) == 0:
        if labels is not None and len(labels) > 0:
            raise ValueError(f"got {len(labels)} labels but no points; pass points=[(x, y), ...] with them")
        return None, None
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape == (2,):
        pts = pts[None]  # a single (x, y) click
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (P, 2) (x, y) pixels, got shape {np.shape(points)}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be finite numbers, got {pts.tolist()}")
    height, width = size
    outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
    if outside.any():
        raise ValueError(
            f"clicks {pts[outside].tolist()} are outside the {width}x{height} image; points are (x, y) pixels, "
            "x to the right, y down (did you swap x and y?)"
        )
    if labels is None:
        lbl = np.ones(len(pts), dtype=np.int64)
    else:
        lbl = np.asarray(labels).astype(np.int64).reshape(-1)
        if lbl.shape[0] != pts.shape[0]:
            raise ValueError(f"got {pts.shape[0]} points but {lbl.shape[0]} labels; give one label per click")
        if not np.isin(lbl, (0, 1)).all():
            raise ValueError(f"labels must be 1 (part of the object) or 0 (not part of it), got {lbl.tolist()}")
    return pts, lbl


def _check_box(box, size: tuple[int, int]) -> np.ndarray | None:
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float32).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise ValueError(f"box must be (x0, y0, x1, y1) in pixels, got {box!r}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must have x1 > x0 and y1 > y0 (top-left, then bottom-right corner), got {b.tolist()}")
    height, width = size
    return np.clip(b, 0, [width, height, width, height]).astype(np.float32)


