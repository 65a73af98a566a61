"""The control signal: per-frame control points of every object, with instance ids and depth values.

This is the hand-off between the engine (which builds it from a scene or from video masks) and the model
(which sees it through :func:`levitor.control.encode.encode`). All sizes derive from the pipeline's height,
width and frame count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class ControlSignal:
    """Control points as P tracks over F frames.

    points: (F, P, 2) float, (x, y) in pixels of an image of ``height`` x ``width``.
    depth: (F, P) float, the value written into the depth channel: the release's 0..255 disparity scale,
        ``round(1 / scene_depth)`` with scene depth 1 -> 0 (see :mod:`levitor.depth`).
    instance: (P,) int64, the instance id of each track (ids >= 1; 0 is never a control point).
    visible: (F, P) bool, False where the object is fully hidden or out of frame (the point is not drawn).
    """

    points: torch.Tensor
    depth: torch.Tensor
    instance: torch.Tensor
    visible: torch.Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[-1] != 2:
            raise ValueError(f"points must be (F, P, 2), got {tuple(self.points.shape)}")
        f, p = self.points.shape[:2]
        if tuple(self.depth.shape) != (f, p):
            raise ValueError(f"depth must be (F, P) = {(f, p)}, got {tuple(self.depth.shape)}")
        if tuple(self.instance.shape) != (p,):
            raise ValueError(f"instance must be (P,) = {(p,)}, got {tuple(self.instance.shape)}")
        if tuple(self.visible.shape) != (f, p):
            raise ValueError(f"visible must be (F, P) = {(f, p)}, got {tuple(self.visible.shape)}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, got {self.height}x{self.width}")
        self.visible = self.visible.to(torch.bool)
        self.instance = self.instance.to(torch.int64)

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def to(self, device: torch.device | str) -> ControlSignal:
        return replace(self, points=self.points.to(device), depth=self.depth.to(device),
                       instance=self.instance.to(device), visible=self.visible.to(device))

    def without_depth(self) -> ControlSignal:
        """Ablation (paper Table 2): depth entries set to 0."""
        return replace(self, depth=torch.zeros_like(self.depth))

    def without_instance(self) -> ControlSignal:
        """Ablation (paper Table 2): instance entries set to 0."""
        return replace(self, instance=torch.zeros_like(self.instance))

    def points_per_object(self) -> dict[int, int]:
        ids, counts = torch.unique(self.instance, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    def select_frames(self, index: torch.Tensor) -> ControlSignal:
        """The control at the given frames only (a model with fewer frames: pick them evenly)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, points=self.points[index], depth=self.depth[index], visible=self.visible[index])

    def scaled_to(self, height: int, width: int) -> ControlSignal:
        """The same control for another resolution (points scaled; depth and ids unchanged)."""
        s = torch.tensor([width / self.width, height / self.height], dtype=self.points.dtype)
        return replace(self, points=self.points * s.to(self.points.device), height=height, width=width)
