"""Which batch's image embedding each position sees in the temporal cross-attention of SVD's transformers.

SVD's spatio-temporal transformer gives its temporal blocks the first frame's CLIP embedding as context, one row
per (video, pixel) pair. The hidden states are flattened video-major, row ``b * h * w + p``. Current diffusers (and
Stability's SVD code) give that row video ``b``'s context: the **"diffusers"** order. The official LeviTor release
runs its own copy of the transformer, which broadcasts the context pixel-major, so row ``r`` gets the context of
video ``r mod B``: the **"release"** order. With one video per batch the two agree; under classifier-free guidance
(B = 2: unconditional, conditional) half of the positions of each branch see the other branch's context, in every
temporal block of the UNet and the ControlNet. The released LeviTor ControlNet was trained and evaluated that way,
so levitor runs it (and the UNet beside it) in the release's order; plain SVD and levitor-trained models keep
diffusers' order.

The switch is a forward pre-hook on each temporal block that reorders the context rows diffusers prepared; no
weights or module names change, so state dicts are the same in both orders.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from torch import nn

TEMPORAL_CONTEXT_ORDERS = ("diffusers", "release")
DIFFUSERS_ORDER, RELEASE_ORDER = TEMPORAL_CONTEXT_ORDERS


def check_order(order: str) -> str:
    if order not in TEMPORAL_CONTEXT_ORDERS:
        raise ValueError(
            f"temporal_context_order must be one of {TEMPORAL_CONTEXT_ORDERS}, got {order!r}: 'release' for the "
            "official LeviTor weights (what they were trained with), 'diffusers' for plain SVD and levitor's models"
        )
    return order


def release_context(context: torch.Tensor, batch_size: int) -> torch.Tensor:
    """diffusers' temporal context (B * P, L, C), row b * P + p holding video b's, -> the release's: row r holding
    video r mod B's."""
    if batch_size == 1:
        return context
    positions = context.shape[0] // batch_size
    per_video = context.unflatten(0, (batch_size, positions))[:, 0]  # (B, L, C)
    return per_video.repeat(positions, 1, 1)  # row p * B + b = video b, i.e. row r -> video r mod B


def _release_order_hook(module: nn.Module, args: tuple, kwargs: dict):
    context = kwargs.get("encoder_hidden_states")
    if context is None:
        return None
    hidden = args[0] if args else kwargs["hidden_states"]
    num_frames = kwargs["num_frames"] if "num_frames" in kwargs else args[1]
    kwargs["encoder_hidden_states"] = release_context(context, hidden.shape[0] // num_frames)
    return args, kwargs


def apply_temporal_context_order(model: nn.Module, order: str) -> list:
    """Put every temporal block of ``model`` in ``order``; returns the hook handles (empty for "diffusers").

    Callers keep the handles and remove them before switching again (see the models' ``set_temporal_context_order``).
    """
    check_order(order)
    if order == DIFFUSERS_ORDER:
        return []
    handles = []
    for module in model.modules():
        if isinstance(module, TransformerSpatioTemporalModel):
            for block in module.temporal_transformer_blocks:
                handles.append(block.register_forward_pre_hook(_release_order_hook, with_kwargs=True))
    return handles


class TemporalOrderMixin:
    """``set_temporal_context_order`` for the levitor models (a ConfigMixin whose config has the order)."""

    def _init_temporal_order(self, order: str) -> None:
        self._order_hooks = apply_temporal_context_order(self, check_order(order))

    def set_temporal_context_order(self, order: str) -> None:
        """Switch the temporal context order and record it in the config, so save_pretrained keeps it."""
        check_order(order)
        for handle in self._order_hooks:
            handle.remove()
        self._order_hooks = apply_temporal_context_order(self, order)
        self.register_to_config(temporal_context_order=order)
