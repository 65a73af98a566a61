"""The SAM implementations behind :class:`~levitor.perception.segmenter.Segmenter`: transformers' ``SamModel``
(the default; also SAM-HQ) and Meta's ``segment_anything`` package with the official ``.pth`` checkpoints (it
imports torchvision, which CPU-only torch 2.13 machines cannot have, so it stays optional)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from levitor.weights import FILES, WeightsNotFoundError, load_once, resolve, resolve_file, weights_fingerprint

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's normalisation, on the 0..255 scale (ImageNet statistics)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


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
