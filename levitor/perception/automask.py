"""Automatic masks for "all objects": a grid of single-click prompts, filtered and de-duplicated.

The release instances every SAM automatic mask (minus those of at most 0.1% of the image), so static objects
get control points and stay put. Computing them once per image also lets a click on the picture pick a
precomputed mask instantly (:meth:`AutoMaskResult.mask_at`).

Steps (SAM's automatic mask generator, written here in torch, no torchvision):
1. a ``points_per_side`` x ``points_per_side`` grid of clicks, decoded in batches (3 candidates per click);
2. keep candidates whose predicted IoU >= ``pred_iou_thresh`` and whose *stability* (IoU of the mask
   thresholded at +offset and at -offset) >= ``stability_score_thresh``. Both are measured on the low-res
   logits (4 image-encoder pixels per logit), which keeps this step cheap on a CPU;
3. greedy non-maximum suppression by box IoU (as SAM does) and/or by mask IoU, highest predicted IoU first;
4. survivors are upsampled to the image, masks of at most ``min_area_fraction`` of the image are dropped,
   and the rest are sorted by area, largest first.
Everything is deterministic: no sampling, stable sorts, ties broken by grid order.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from levitor._util.hashing import array_hash
from levitor._util.images import as_rgb_uint8
from levitor.control.instances import MIN_AREA_FRACTION
from levitor.perception.segmenter import MASK_THRESHOLD, Segmenter

NMS_MODES = ("box", "mask", "both")
RESULTS_KEPT = 4  # automatic-mask results remembered per generator (full-size bool masks are not small)


@dataclass
class AutoMaskConfig:
    """Knobs of the automatic mask generator; the defaults are SAM's own, which the release used."""

    points_per_side: int = 32  # 32x32 = 1024 clicks; on a 2-core CPU ~130 s of decoding, 16 is 4x cheaper
    points_per_batch: int = 64  # clicks decoded together; lower it if memory is tight
    pred_iou_thresh: float = 0.88  # the decoder's own quality estimate
    stability_score_thresh: float = 0.95  # masks that barely change when the threshold moves are real edges
    stability_score_offset: float = 1.0  # logit offset for the stability test
    nms_thresh: float = 0.7  # candidates overlapping a better one by more than this are duplicates
    nms: str = "box"  # "box" (SAM's choice), "mask" (exact overlap) or "both"
    min_area_fraction: float = MIN_AREA_FRACTION  # drop masks of at most this fraction of the image (the release's)
    multimask_output: bool = True  # 3 candidates per click (part, object, whole) give objects of every size

    def validate(self) -> AutoMaskConfig:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError(
                "points_per_side and points_per_batch must be >= 1, "
                f"got {self.points_per_side}, {self.points_per_batch}"
            )
        if self.nms not in NMS_MODES:
            raise ValueError(f"nms must be one of {NMS_MODES}, got {self.nms!r}")
        if not 0.0 <= self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh is an IoU in [0, 1], got {self.nms_thresh}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")
        return self


@dataclass
class AutoMask:
    """One automatic mask and why it was kept."""

    mask: np.ndarray  # (H, W) bool
    area: int  # pixels
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
    predicted_iou: float
    stability_score: float
    point: tuple[float, float]  # the grid click (x, y) that produced it


@dataclass
class AutoMaskResult:
    """Automatic masks sorted by area (largest first), with a pixel -> mask lookup for instant picking."""

    masks: list[AutoMask]
    image_size: tuple[int, int]  # (H, W)
    index_map: np.ndarray = field(init=False, repr=False)  # (H, W) int32: smallest mask covering each pixel, -1 none

    def __post_init__(self) -> None:
        index = np.full(self.image_size, -1, dtype=np.int32)
        for i, m in enumerate(self.masks):  # largest first, so smaller (more specific) masks overwrite
            index[m.mask] = i
        self.index_map = index

    def mask_at(self, x: float, y: float) -> int | None:
        """Index of the most specific (smallest) mask under pixel (x, y), or None: one array lookup."""
        col, row = int(round(x)), int(round(y))
        if not (0 <= row < self.image_size[0] and 0 <= col < self.image_size[1]):
            return None
        i = int(self.index_map[row, col])
        return None if i < 0 else i

    def arrays(self) -> list[np.ndarray]:
        return [m.mask for m in self.masks]

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> AutoMask:
        return self.masks[i]

    def __iter__(self) -> Iterator[AutoMask]:
        return iter(self.masks)


class AutomaticMaskGenerator:
    """All objects of an image with SAM: ``AutomaticMaskGenerator(segmenter).generate(image)``.

    Results are remembered per image (pixel hash) and config, so a re-run cell returns at once; the image
    embedding itself comes from the segmenter's cache.
    """

    def __init__(self, segmenter: Segmenter, config: AutoMaskConfig | None = None, **overrides: Any) -> None:
        config = config or AutoMaskConfig()
        unknown = set(overrides) - set(AutoMaskConfig.__dataclass_fields__)
        if unknown:
            known = sorted(AutoMaskConfig.__dataclass_fields__)
            raise TypeError(f"unknown AutoMaskConfig fields {sorted(unknown)}; known: {known}")
        for k, v in overrides.items():
            setattr(config, k, v)
        self.segmenter = segmenter
        self.config = config.validate()
        self._results: OrderedDict[str, AutoMaskResult] = OrderedDict()  # the last few images only

    def generate(self, image: Any, progress: bool = True) -> AutoMaskResult:
        """Masks of everything in ``image``, sorted by area (largest first)."""
        rgb = as_rgb_uint8(image)
        key = f"{array_hash(rgb)}|{self.config}|{self.segmenter.backend.model_key}"
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        self.segmenter.set_image(rgb)
        result = self._generate(rgb.shape[:2], progress)
        self._results[key] = result
        while len(self._results) > RESULTS_KEPT:
            self._results.popitem(last=False)
        return result

    __call__ = generate

    @torch.inference_mode()
    def _generate(self, size: tuple[int, int], progress: bool) -> AutoMaskResult:
        cfg, seg = self.config, self.segmenter
        height, width = size
        grid = point_grid(cfg.points_per_side, width, height)  # (N, 2) image pixels
        valid_rows, valid_cols = seg.low_res_valid_shape()
        # low-res pixel -> image pixel scale, for boxes measured on the low-res masks
        sx, sy = width / valid_cols, height / valid_rows

        kept_logits, kept_iou, kept_stab, kept_pts = [], [], [], []
        batches = range(0, len(grid), cfg.points_per_batch)
        for start in tqdm(batches, desc="automatic masks", unit="batch", disable=not progress, leave=False):
            pts = grid[start : start + cfg.points_per_batch]
            t_pts = seg.to_input_frame(torch.from_numpy(pts)[:, None, :]).to(seg.backend.device)  # (B, 1, 2)
            labels = torch.ones(t_pts.shape[:2], dtype=torch.long, device=t_pts.device)
            logits, iou = seg.decode(t_pts, labels, None, cfg.multimask_output)  # (B, M, 4e, 4e), (B, M)
            m = logits.shape[1]
            logits = logits.flatten(0, 1).float()
            valid = logits[..., :valid_rows, :valid_cols]  # the part that covers the image, not the padding
            iou = iou.flatten(0, 1).float()
            stab = stability_score(valid, MASK_THRESHOLD, cfg.stability_score_offset)
            keep = (iou >= cfg.pred_iou_thresh) & (stab >= cfg.stability_score_thresh)
            keep &= (valid > MASK_THRESHOLD).flatten(1).any(1)  # an empty mask is not an object
            if keep.any():
                kept_logits.append(logits[keep].cpu())
                kept_iou.append(iou[keep].cpu())
                kept_stab.append(stab[keep].cpu())
                kept_pts.append(torch.from_numpy(np.repeat(pts, m, axis=0))[keep.cpu()])
        if not kept_logits:
            return AutoMaskResult([], size)
        logits = torch.cat(kept_logits)
        iou, stab, pts = torch.cat(kept_iou), torch.cat(kept_stab), torch.cat(kept_pts)
        low_masks = logits[..., :valid_rows, :valid_cols] > MASK_THRESHOLD

        order = torch.arange(len(iou))
        if cfg.nms in ("box", "both"):
            boxes = masks_to_boxes(low_masks) * torch.tensor([sx, sy, sx, sy])
            order = order[box_nms(boxes[order], iou[order], cfg.nms_thresh)]
        if cfg.nms in ("mask", "both"):
            order = order[mask_nms(low_masks[order], iou[order], cfg.nms_thresh)]

        # survivors to full resolution, in chunks so a big image never holds every float mask at once
        min_area = cfg.min_area_fraction * height * width
        out: list[AutoMask] = []
        for chunk in order.split(16):
            full = seg.upscale(logits[chunk].to(seg.backend.device)).cpu() > MASK_THRESHOLD  # (c, H, W)
            areas = full.flatten(1).sum(1)
            boxes = masks_to_boxes(full)
            for j, i in enumerate(chunk.tolist()):
                if areas[j] <= min_area:
                    continue
                out.append(AutoMask(
                    mask=full[j].numpy(), area=int(areas[j]),
                    bbox=tuple(int(v) for v in boxes[j].tolist()),
                    predicted_iou=float(iou[i]), stability_score=float(stab[i]),
                    point=(float(pts[i, 0]), float(pts[i, 1])),
                ))
        out.sort(key=lambda a: -a.area)  # stable: equal areas keep the NMS (score) order
        return AutoMaskResult(out, size)


# ---------------------------------------------------------------------- building blocks (pure torch)
def point_grid(points_per_side: int, width: int, height: int) -> np.ndarray:
    """(n*n, 2) float32 (x, y) pixel clicks at the centres of an n x n grid of cells, row by row."""
    n = int(points_per_side)
    ticks = (np.arange(n, dtype=np.float64) + 0.5) / n
    xs, ys = np.meshgrid(ticks * width, ticks * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the mask thresholded at ``threshold + offset`` and at ``threshold - offset``, per mask.

    logits: (N, h, w). The high-threshold mask is inside the low one, so IoU = |high| / |low|; an empty
    low mask scores 0.
    """
    high = (logits > threshold + offset).flatten(1).sum(1).float()
    low = (logits > threshold - offset).flatten(1).sum(1).float()
    return torch.where(low > 0, high / low.clamp(min=1), torch.zeros_like(low))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, h, w) bool -> (N, 4) float boxes x0, y0, x1, y1 with x1/y1 exclusive; an empty mask gives zeros."""
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4))
    rows = masks.any(dim=2)  # (N, h)
    cols = masks.any(dim=1)  # (N, w)
    h, w = masks.shape[-2:]
    r_idx = torch.arange(h, device=masks.device)
    c_idx = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, r_idx, h).amin(1)
    y1 = torch.where(rows, r_idx, -1).amax(1) + 1
    x0 = torch.where(cols, c_idx, w).amin(1)
    x1 = torch.where(cols, c_idx, -1).amax(1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~rows.any(1)
    boxes[empty] = 0.0
    return boxes


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) x (M, 4) boxes (x0, y0, x1, y1) -> (N, M) IoU; boxes of zero area have IoU 0 with everything."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, h, w) x (M, h, w) bool masks -> (N, M) IoU (a matrix product of the flattened masks)."""
    fa = a.flatten(1).float()
    fb = b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: indices of kept boxes, best score first. A box is dropped when its IoU with an
    already-kept box is > ``iou_threshold``. Equal scores keep the earlier index first."""
    return _greedy_nms(box_iou(boxes.float(), boxes.float()), scores, iou_threshold)


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS on mask IoU (exact overlap, not boxes); same contract as :func:`box_nms`."""
    return _greedy_nms(mask_iou(masks.bool(), masks.bool()), scores, iou_threshold)


def _greedy_nms(iou: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    n = scores.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores.float(), descending=True, stable=True)
    iou = iou[order][:, order]
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    over = (iou > iou_threshold).cpu()
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long)]
