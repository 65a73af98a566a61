"""The SVD UNet, taught to accept ControlNet residuals.

diffusers' :class:`UNetSpatioTemporalConditionModel` has no way to take ControlNet residuals. This subclass adds
``down_block_additional_residuals`` and ``mid_block_additional_residual`` to ``forward`` and changes nothing else:
same ``__init__``, same modules, same state dict, so the public SVD(-xt) ``unet/`` weights load unchanged.

The helpers :func:`embed_time` and :func:`run_encoder` are shared with :class:`~levitor.models.ControlNetSVD`, whose
encoder is a copy of this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 -- DiffusionPipeline.from_pretrained finds
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionModel,
    UNetSpatioTemporalConditionOutput,
)

# a custom component's loader by looking base-class names up in its module, so ModelMixin must be visible here
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device
from torch import nn

from levitor.models.temporal_order import DIFFUSERS_ORDER, TemporalOrderMixin


def embed_time(model: nn.Module, sample: torch.Tensor, timestep: torch.Tensor | float | int,
               added_time_ids: torch.Tensor) -> torch.Tensor:
    """Timestep embedding plus the added-time (fps, motion bucket, noise aug) embedding, one row per frame.

    model: anything with SVD's ``time_proj``, ``time_embedding``, ``add_time_proj`` and ``add_embedding``.
    sample: (B, F, C, h, w) latents (only its shape, dtype and device are used).
    added_time_ids: (B, 3).
    Returns (B*F, time_embed_dim), frame-major within each batch item, matching ``sample.flatten(0, 1)``.
    """
    batch_size, num_frames = sample.shape[:2]
    if not torch.is_tensor(timestep):
        # same dtype choice as diffusers' UNet, so a Python-number timestep gives the same embedding
        dtype = maybe_adjust_dtype_for_device(torch.float64 if isinstance(timestep, float) else torch.int64,
                                              sample.device)
        timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(sample.device)
    timestep = timestep.expand(batch_size)

    # Timesteps has no weights and always returns float32; the embedding MLP may run in fp16
    emb = model.time_embedding(model.time_proj(timestep).to(sample.dtype))
    added = model.add_time_proj(added_time_ids.flatten()).reshape(batch_size, -1).to(emb.dtype)
    emb = emb + model.add_embedding(added)
    return emb.repeat_interleave(num_frames, dim=0)


def run_encoder(model: nn.Module, hidden: torch.Tensor, emb: torch.Tensor, encoder_hidden_states: torch.Tensor,
                batch_size: int, num_frames: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Down blocks and mid block of an SVD UNet (or its ControlNet copy).

    hidden: (B*F, C0, h, w), the output of ``conv_in`` (plus the control embedding for the ControlNet).
    emb: (B*F, D) from :func:`embed_time`; encoder_hidden_states: (B*F, 1, cross_attention_dim).
    Returns the mid-block output and every skip connection, the ``conv_in`` output first (12 for SVD).
    """
    image_only_indicator = torch.zeros(batch_size, num_frames, dtype=hidden.dtype, device=hidden.device)
    skips: tuple[torch.Tensor, ...] = (hidden,)
    for block in model.down_blocks:
        kwargs = dict(hidden_states=hidden, temb=emb, image_only_indicator=image_only_indicator)
        if getattr(block, "has_cross_attention", False):
            kwargs["encoder_hidden_states"] = encoder_hidden_states
        hidden, block_skips = block(**kwargs)
        skips += tuple(block_skips)
    hidden = model.mid_block(hidden_states=hidden, temb=emb, encoder_hidden_states=encoder_hidden_states,
                             image_only_indicator=image_only_indicator)
    return hidden, skips


class ControlledUNetSVD(TemporalOrderMixin, UNetSpatioTemporalConditionModel):
    """SVD's spatio-temporal UNet whose skip connections and middle block take ControlNet residuals.

    Load it exactly like the plain UNet: ``ControlledUNetSVD.from_pretrained(svd_id, subfolder="unet")``.
    Without residuals (and in diffusers' temporal context order) its output equals
    :class:`UNetSpatioTemporalConditionModel`'s.

    ``temporal_context_order``: "diffusers" (plain SVD's) or "release" (the official LeviTor code's, which the
    released ControlNet was trained beside; see :mod:`levitor.models.temporal_order`). Saved in the config; the
    other arguments are diffusers' UNet's, with its defaults.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        up_block_types: tuple[str, ...] = (
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int] = 2,
        cross_attention_dim: int | tuple[int] = 1024,
        transformer_layers_per_block: int | tuple[int, tuple[tuple]] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
        temporal_context_order: str = DIFFUSERS_ORDER,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=down_block_types, up_block_types=up_block_types, block_out_channels=block_out_channels,
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block, num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        self._init_temporal_order(temporal_context_order)

    @property
    def svd_config(self) -> dict:
        """The config as diffusers' plain :class:`UNetSpatioTemporalConditionModel` takes it (no levitor keys)."""
        return {k: v for k, v in self.config.items() if k != "temporal_context_order"}

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
        return_dict: bool = True,
    ) -> UNetSpatioTemporalConditionOutput | tuple[torch.Tensor]:
        """Predict the denoiser output for a batch of videos.

        sample: (B, F, in_channels, h, w): noisy latents concatenated with the image latents.
        encoder_hidden_states: (B, 1, cross_attention_dim), the CLIP image embedding.
        added_time_ids: (B, 3): fps - 1, motion_bucket_id, noise_aug_strength.
        down_block_additional_residuals: one (B*F, C_i, h_i, w_i) tensor per skip connection (12 for SVD), as
            returned by :class:`~levitor.models.ControlNetSVD`; mid_block_additional_residual: (B*F, C, h', w').
        conditioning_scale: multiplies both residuals (on top of the ControlNet's own scale).
        Returns (B, F, out_channels, h, w).
        """
        batch_size, num_frames = sample.shape[:2]
        # when the latent size is not a multiple of the total downsampling, the up blocks are told their size
        up_factor = 2 ** self.num_upsamplers
        force_upsample_size = any(s % up_factor != 0 for s in sample.shape[-2:])

        emb = embed_time(self, sample, timestep, added_time_ids)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        hidden = self.conv_in(sample.flatten(0, 1))  # (B, F, C, h, w) -> (B*F, C, h, w)

        hidden, skips = run_encoder(self, hidden, emb, encoder_hidden_states, batch_size, num_frames)

        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(
                    f"expected {len(skips)} down-block residuals (one per skip connection), "
                    f"got {len(down_block_additional_residuals)}. Was the ControlNet built from this UNet's config?"
                )
            skips = tuple(s + conditioning_scale * r for s, r in zip(skips, down_block_additional_residuals))
        if mid_block_additional_residual is not None:
            hidden = hidden + conditioning_scale * mid_block_additional_residual

        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=hidden.dtype, device=hidden.device)
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            upsample_size = skips[-1].shape[2:] if force_upsample_size and i < len(self.up_blocks) - 1 else None
            kwargs = dict(hidden_states=hidden, temb=emb, res_hidden_states_tuple=block_skips,
                          upsample_size=upsample_size, image_only_indicator=image_only_indicator)
            if getattr(block, "has_cross_attention", False):
                kwargs["encoder_hidden_states"] = encoder_hidden_states
            hidden = block(**kwargs)

        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        out = hidden.reshape(batch_size, num_frames, *hidden.shape[1:])
        if not return_dict:
            return (out,)
        return UNetSpatioTemporalConditionOutput(sample=out)
