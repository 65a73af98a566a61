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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from levitor._util.device import resolve_device
from levitor._util.hashing import array_hash
from levitor._util.images import as_rgb_uint8
from levitor.perception.cache import FeatureCache, default_cache
from levitor.weights import FILES, WeightsNotFoundError, load_once, resolve, resolve_file, weights_fingerprint

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's normalisation, on the 0..255 scale (ImageNet statistics)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
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


# ---------------------------------------------------------------------- transformers backend
class TransformersSam:
    """``SamModel`` / ``SamHQModel`` from transformers (no torchvision needed)."""

    name = "transformers"

    def __init__(
        self,
        model: torch.nn.Module,
        model_key: str | None = None,
        pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = SAM_PIXEL_STD,
    ) -> None:
        self.model = model.eval()
        self.model_key = model_key or f"mem-{id(model)}"  # an unsaved model never shares cache entries
        self.image_size = int(model.config.vision_config.image_size)
        self.pixel_mean = tuple(pixel_mean)
        self.pixel_std = tuple(pixel_std)
        self.is_hq = getattr(model.config, "model_type", "") == "sam_hq"

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        reuse: bool = True,
        allow_download: bool = True,
    ) -> TransformersSam:
        folder = resolve(name_or_path, what="SAM", allow_download=allow_download)
        key = f"{folder}|{weights_fingerprint(folder)}|{dtype}"
        model = load_once(f"sam|{key}|{device}", lambda: cls._load_model(folder, device, dtype), reuse)
        mean, std = _sam_normalisation(str(folder))
        return cls(model, key, mean, std)

    @staticmethod
    def _load_model(folder: Path, device: str | torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
        from transformers import AutoConfig

        kwargs: dict[str, Any] = {"local_files_only": True}
        try:
            config = AutoConfig.from_pretrained(folder, **kwargs)
            if config.model_type == "sam_hq":
                from transformers import SamHQModel as ModelClass
            elif config.model_type == "sam":
                from transformers import SamModel as ModelClass
            else:
                raise ValueError(
                    f"{folder} holds a {config.model_type!r} model, not SAM; pass a SAM checkpoint such as "
                    "'facebook/sam-vit-huge'"
                )
            if dtype is not None:
                kwargs["dtype"] = dtype
            model = ModelClass.from_pretrained(folder, **kwargs)
        except OSError as e:
            raise WeightsNotFoundError(f"SAM: {folder} holds no readable model ({e}); delete it and download it "
                                       "again") from None
        return model.eval().to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, pixel_values: torch.Tensor) -> dict[str, Any]:
        x = pixel_values.to(next(self.model.parameters()).dtype)
        if self.is_hq:
            embeddings, intermediate = self.model.get_image_embeddings(x)
            return {"embeddings": embeddings, "intermediate": list(intermediate)}
        return {"embeddings": self.model.get_image_embeddings(x)}

    @torch.inference_mode()
    def decode(self, features, points, labels, boxes, mask_input, multimask_output):
        dtype = next(self.model.parameters()).dtype
        kwargs: dict[str, Any] = {
            "image_embeddings": features["embeddings"],
            "multimask_output": multimask_output,
            # (N, P, 2) -> transformers' (image batch 1, prompt batch N, P, 2)
            "input_points": points[None].to(dtype) if points is not None else None,
            "input_labels": labels[None].long() if labels is not None else None,
            "input_boxes": boxes[None].to(dtype) if boxes is not None else None,
            "input_masks": mask_input.to(dtype) if mask_input is not None else None,
        }
        if self.is_hq:
            kwargs["intermediate_embeddings"] = features["intermediate"]
        out = self.model(**kwargs)
        return out.pred_masks[0].float(), out.iou_scores[0].float()


# ---------------------------------------------------------------------- segment_anything backend
class SegmentAnythingSam:
    """Meta's ``segment_anything`` package with an official ``.pth`` checkpoint (needs torchvision)."""

    name = "segment_anything"

    def __init__(self, sam: torch.nn.Module, model_key: str | None = None) -> None:
        self.sam = sam.eval()
        self.model_key = model_key or f"mem-{id(sam)}"
        self.image_size = int(sam.image_encoder.img_size)
        self.pixel_mean = tuple(float(v) for v in sam.pixel_mean.flatten())
        self.pixel_std = tuple(float(v) for v in sam.pixel_std.flatten())

    @classmethod
    def load(
        cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu", reuse: bool = True,
        allow_download: bool = True,
    ) -> SegmentAnythingSam:
        path, arch = sam_checkpoint(name_or_path, allow_download=allow_download)
        registry = _import_segment_anything().sam_model_registry
        key = f"{path}|{weights_fingerprint(path)}"
        sam = load_once(
            f"segment_anything|{key}|{device}", lambda: registry[arch](checkpoint=str(path)).to(device), reuse
        )
        return cls(sam, key)

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @torch.inference_mode()
    def encode(self, pixel_values: torch.Tensor) -> dict[str, Any]:
        return {"embeddings": self.sam.image_encoder(pixel_values)}

    @torch.inference_mode()
    def decode(self, features, points, labels, boxes, mask_input, multimask_output):
        sparse, dense = self.sam.prompt_encoder(
            points=(points, labels.int()) if points is not None else None, boxes=boxes, masks=mask_input
        )
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=features["embeddings"],
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        return low_res.float(), iou.float()


def segment_anything_available() -> bool:
    """True when ``segment_anything`` (and the torchvision it imports) can be imported here."""
    try:
        _import_segment_anything()
    except ImportError:
        return False
    return True


def _import_segment_anything():
    try:
        import segment_anything
    except Exception as e:  # torchvision built for another torch fails with RuntimeError, not ImportError
        raise ImportError(
            "backend='segment_anything' needs the segment-anything package and a torchvision that matches your "
            f"torch ({torch.__version__}); importing it failed with {type(e).__name__}: {e}. Install both "
            "(pip install segment-anything torchvision), or use the default backend='transformers', which loads "
            "the same SAM weights from facebook/sam-vit-* without torchvision."
        ) from None
    return segment_anything


# ---------------------------------------------------------------------- helpers
def _flush_denormals_enabled() -> bool:
    """torch has no getter: with flush-to-zero on, a denormal input multiplies to exactly 0."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0)


@contextmanager
def flush_denormals(device: torch.device | str) -> Iterator[None]:
    """Treat denormal floats (< 1.2e-38) as zero during CPU inference, then restore the previous setting.

    Random-weight and real ViTs produce denormals (softmax and GELU tails); x86 CPUs handle them up to ~100x
    slower. Measured on SAM ViT-B at 1024 px, 1 thread: 122 s of CPU without, 13 s with. The numerical effect
    is nil (values below 1e-38 become 0). It applies to the calling thread, so it helps most with few threads.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = _flush_denormals_enabled()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore the previous count."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def _sam_normalisation(folder: str) -> tuple[tuple, tuple]:
    """Mean/std (0..255 scale) from a saved processor config; SAM's defaults when there is none."""
    import json
    cfg_path = Path(folder) / "preprocessor_config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
        mean = tuple(255.0 * float(v) for v in cfg["image_mean"])
        std = tuple(255.0 * float(v) for v in cfg["image_std"])
        return mean, std
    except (OSError, KeyError, ValueError, TypeError):
        return SAM_PIXEL_MEAN, SAM_PIXEL_STD


def sam_checkpoint(name_or_path: str | os.PathLike, allow_download: bool = True) -> tuple[Path, str]:
    """An official segment_anything ``.pth`` (a path, a file name, or an architecture ``vit_b|vit_l|vit_h``)
    found or downloaded by :func:`levitor.weights.resolve_file`, and its architecture (read from the name)."""
    text = str(name_or_path)
    name = Path(text).name.lower().replace("-", "_")
    arch = next((a for a in ("vit_b", "vit_l", "vit_h") if a in name), None)
    if arch is None:
        raise ValueError(
            f"cannot tell the SAM architecture of {text!r}; name the file like the official ones "
            f"({', '.join(FILES['sam_' + a].filename for a in ('vit_b', 'vit_l', 'vit_h'))}) or pass "
            "'vit_b', 'vit_l' or 'vit_h'"
        )
    path = Path(text).expanduser()
    if path.is_file():
        return path, arch
    spec = FILES[f"sam_{arch}"]
    return resolve_file(spec.filename if path.suffix != ".pth" or path.name == spec.filename else text,
                        allow_download=allow_download), arch
