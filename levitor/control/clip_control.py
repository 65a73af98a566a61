"""A video clip's masks -> its control signal: the one function (and parameter set) that precompute, training
and evaluation share, so a model is evaluated on the control it was trained with.

Inference from a photo builds the same signal from rendered masks instead (:class:`levitor.engine.Engine`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from levitor.control.krule import KRule
from levitor.control.points import INITS, SAMPLE_STRIDE, control_from_masks
from levitor.control.signal import ControlSignal

ABLATIONS = ("full", "no_depth", "no_instance", "center_point")  # the paper's Table 2


@dataclass(frozen=True)
class ClipControl:
    """How a clip's masks become control points."""

    rule: KRule = field(default_factory=KRule)
    sample_stride: int = SAMPLE_STRIDE  # K-means on every n-th mask pixel
    init: str = "warm"  # K-means init across frames (see control_from_masks)
    ablation: str = "full"  # full | no_depth | no_instance | center_point

    def __post_init__(self) -> None:
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.sample_stride < 1:
            raise ValueError(f"sample_stride must be >= 1, got {self.sample_stride}")

    def to_meta(self) -> dict[str, Any]:
        """How a record's control was made, as a precompute record stores it (``meta["control"]``): the K rule's
        lambda and cap, the sample stride and the K-means init (the ablation is the trainer's, not the record's)."""
        return {"lam": self.rule.lam, "k_max": self.rule.k_max, "sample_stride": self.sample_stride,
                "init": self.init}

    @classmethod
    def from_meta(cls, made: dict[str, Any], ablation: str = "full",
                  sample_stride: int = SAMPLE_STRIDE) -> ClipControl:
        """The inverse of :meth:`to_meta`. A key a record does not have takes the default; ``sample_stride``: the
        stride to assume for records written before it was stored."""
        return cls(rule=KRule(lam=made.get("lam", KRule().lam), k_max=made.get("k_max", KRule().k_max)),
                   sample_stride=made.get("sample_stride", sample_stride), init=made.get("init", "warm"),
                   ablation=ablation)


def clip_control(
    instance: np.ndarray | torch.Tensor,
    depth: np.ndarray | torch.Tensor,
    params: ClipControl | None = None,
    moved_ids: Iterable[int] = (),
    ids: Iterable[int] | None = None,
) -> ControlSignal:
    """The control signal of a clip.

    instance: (F, H, W) integer object ids per frame (0 = background); depth: (F, H, W) scene depth
    ((0, 1], smaller = nearer; convert 0..255 disparity with :func:`levitor.depth.depth_from_disparity`).
    moved_ids: objects that get at least ``rule.k_min`` points (in real videos every object may move: the K rule
    then decides from the areas alone). ids: the object ids (default: every id present; giving them saves a pass).
    """
    params = params or ClipControl()
    rule = KRule.single() if params.ablation == "center_point" else params.rule
    signal = control_from_masks(torch.as_tensor(np.asarray(instance), dtype=torch.int64),
                                torch.as_tensor(np.asarray(depth)), moved_ids=moved_ids, rule=rule,
                                init=params.init, sample_stride=params.sample_stride,
                                ids=None if ids is None else list(ids))
    if params.ablation == "no_depth":
        return signal.without_depth()
    if params.ablation == "no_instance":
        return signal.without_instance()
    return signal
