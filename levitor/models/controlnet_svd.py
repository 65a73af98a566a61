"""ControlNet for Stable Video Diffusion, wired as the LeviTor release wires it.

A trainable copy of the SVD UNet encoder (``conv_in``, time and added-time embeddings, down blocks, mid block)
plus a small conv stack that brings the (F, 3, H, W) control video down to latent resolution. Every skip
connection and the mid block leave through a zero-initialised 1x1 conv, so an untrained ControlNet changes
nothing. Attribute names equal the release's state-dict names (REFERENCE.md, "Model wiring"), so its
``controlnet/diffusion_pytorch_model.safetensors`` loads without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from levitor.control.rules import RULE_SET_NAMES
from levitor.models.temporal_order import DIFFUSERS_ORDER, TemporalOrderMixin
from levitor.models.unet_svd import embed_time, run_encoder

# Encoder knobs copied from the UNet's config by from_unet(); the names are the UNet's (and the release's).
_UNET_ENCODER_KEYS = (
    "sample_size", "in_channels", "down_block_types", "block_out_channels", "addition_time_embed_dim",
    "projection_class_embeddings_input_dim", "layers_per_block", "cross_attention_dim",
    "transformer_layers_per_block", "num_attention_heads", "num_frames",
)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _per_block(value, n: int) -> list:
    return [value] * n if isinstance(value, int) else list(value)


@dataclass
class ControlNetSVDOutput(BaseOutput):
    """down_block_res_samples: one (B*F, C_i, h_i, w_i) residual per UNet skip connection (12 for SVD).
    mid_block_res_sample: (B*F, C, h', w'), the mid-block residual. Both already scaled by conditioning_scale."""

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


class ControlNetConditioningEmbeddingSVD(nn.Module):
    """Control video (N, C, H, W), raw values -> (N, out_channels, H/2^k, W/2^k) features, k = len(widths) - 1.

    conv_in to widths[0]; for each next width a 3x3 conv keeping channels, then a 3x3 stride-2 conv to the next
    width (``blocks.0..5`` for the default widths); SiLU after each; a zero-initialised 3x3 ``conv_out``.
    """

    def __init__(self, conditioning_channels: int, out_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, widths[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            self.blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = _zero(nn.Conv2d(widths[-1], out_channels, kernel_size=3, padding=1))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(cond))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)


class ControlNetSVD(TemporalOrderMixin, ModelMixin, ConfigMixin):
    """ControlNet over SVD's UNet encoder. Build it with :meth:`from_unet`; call it before the UNet each step.

    ``conditioning_channels``: channels of the control video (3: heatmap, instance id, depth value).
    ``conditioning_embedding_out_channels``: widths of the conditioning conv stack; its downsampling factor
    (2^(len - 1) = 8 by default) must equal the VAE's.
    ``temporal_context_order``: "diffusers" or "release" (the official code's, which the released weights were
    trained with; :mod:`levitor.models.temporal_order`). The UNet this ControlNet feeds runs in the same order.
    ``control_rules``: which rules built the control signal the weights were trained with, "levitor" or "release"
    (:class:`levitor.control.rules.ControlRules`); generation with these weights builds its control the same way.
    All other arguments are the SVD UNet's and must match the UNet this ControlNet feeds.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int | tuple[int, ...] = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        temporal_context_order: str = DIFFUSERS_ORDER,
        control_rules: str = "levitor",
    ):
        super().__init__()
        if control_rules not in RULE_SET_NAMES:
            raise ValueError(f"control_rules must be one of {RULE_SET_NAMES}, got {control_rules!r}")
        n = len(down_block_types)
        if len(block_out_channels) != n:
            raise ValueError(f"block_out_channels needs one entry per down block ({n}), got {block_out_channels}")
        heads = _per_block(num_attention_heads, n)
        cross_dims = _per_block(cross_attention_dim, n)
        layers = _per_block(layers_per_block, n)
        transformer_layers = _per_block(transformer_layers_per_block, n)
        if not (len(heads) == len(cross_dims) == len(layers) == len(transformer_layers) == n):
            raise ValueError(f"per-block settings need {n} entries each (one per down block)")

        c0 = block_out_channels[0]
        time_embed_dim = c0 * 4
        self.conv_in = nn.Conv2d(in_channels, c0, kernel_size=3, padding=1)
        self.time_proj = Timesteps(c0, True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c0, time_embed_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_embed_dim)
        self.controlnet_cond_embedding = ControlNetConditioningEmbeddingSVD(
            conditioning_channels, c0, tuple(conditioning_embedding_out_channels))

        # one zero conv per skip connection, in the order the UNet consumes them: conv_in, then per block
        # its resnets and (all but the last block) its downsampler
        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([_zero(nn.Conv2d(c0, c0, kernel_size=1))])
        c_out = c0
        for i, block_type in enumerate(down_block_types):
            c_in, c_out = c_out, block_out_channels[i]
            is_last = i == n - 1
            self.down_blocks.append(get_down_block(
                block_type, num_layers=layers[i], transformer_layers_per_block=transformer_layers[i],
                in_channels=c_in, out_channels=c_out, temb_channels=time_embed_dim, add_downsample=not is_last,
                resnet_eps=1e-5, cross_attention_dim=cross_dims[i], num_attention_heads=heads[i],
                resnet_act_fn="silu",
            ))
            for _ in range(layers[i] + (0 if is_last else 1)):
                self.controlnet_down_blocks.append(_zero(nn.Conv2d(c_out, c_out, kernel_size=1)))

        self.mid_block = UNetMidBlockSpatioTemporal(
            block_out_channels[-1], temb_channels=time_embed_dim, transformer_layers_per_block=transformer_layers[-1],
            cross_attention_dim=cross_dims[-1], num_attention_heads=heads[-1],
        )
        self.controlnet_mid_block = _zero(nn.Conv2d(block_out_channels[-1], block_out_channels[-1], kernel_size=1))
        self._init_temporal_order(temporal_context_order)

    @property
    def downsampling_factor(self) -> int:
        """Pixels per latent pixel that the conditioning stack assumes (must equal the VAE scale factor)."""
        return 2 ** (len(self.config.conditioning_embedding_out_channels) - 1)

    @classmethod
    def from_unet(
        cls,
        unet: UNetSpatioTemporalConditionModel,
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        load_weights_from_unet: bool = True,
    ) -> ControlNetSVD:
        """A ControlNet with ``unet``'s encoder architecture, and (by default) a copy of its encoder weights.

        The conditioning stack and all zero convs start fresh (zero outputs), so the result adds nothing yet. The
        temporal context order is the UNet's.
        """
        config = {k: unet.config[k] for k in _UNET_ENCODER_KEYS}
        controlnet = cls(**config, conditioning_channels=conditioning_channels,
                         conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels),
                         temporal_context_order=unet.config.get("temporal_context_order", DIFFUSERS_ORDER))
        if load_weights_from_unet:
            for name in ("conv_in", "time_proj", "time_embedding", "add_time_proj", "add_embedding",
                         "down_blocks", "mid_block"):
                getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
        if (unet.device, unet.dtype) != (controlnet.device, controlnet.dtype):
            controlnet.to(device=unet.device, dtype=unet.dtype)
        return controlnet

    @apply_forward_hook  # under model CPU offload, brings the model to the GPU like a forward call
    def embed_condition(self, controlnet_cond: torch.Tensor) -> torch.Tensor:
        """The conditioning stack's output, (B*F, block_out_channels[0], h, w) for a (B, F, C, H, W) or
        (B*F, C, H, W) control video.

        It depends on the control alone, not on the step, so a sampler can embed once and pass the result to every
        step as ``cond_embedding`` (25 steps x 2 CFG branches of full-resolution convs saved).
        """
        if controlnet_cond.ndim == 5:
            controlnet_cond = controlnet_cond.flatten(0, 1)  # (B, F, C, H, W) -> (B*F, C, H, W)
        if controlnet_cond.ndim != 4 or controlnet_cond.shape[1] != self.config.conditioning_channels:
            raise ValueError(f"controlnet_cond must be (B, F, {self.config.conditioning_channels}, H, W) or "
                             f"(B*F, {self.config.conditioning_channels}, H, W), got {tuple(controlnet_cond.shape)}")
        return self.controlnet_cond_embedding(controlnet_cond.to(self.dtype))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor | None,
        added_time_ids: torch.Tensor,
        conditioning_scale: float = 1.0,
        return_dict: bool = True,
        *,
        cond_embedding: torch.Tensor | None = None,
    ) -> ControlNetSVDOutput | tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Residuals for the UNet's skip connections and mid block.

        sample: (B, F, in_channels, h, w), the same input the UNet gets (noisy latents + image latents).
        encoder_hidden_states: (B, 1, cross_attention_dim); added_time_ids: (B, 3).
        controlnet_cond: (B, F, C, H, W) or (B*F, C, H, W) control video, raw values (0..255 heatmap, integer
            instance ids, 0..255 depth; no normalisation), with H, W = h, w times :attr:`downsampling_factor`.
        cond_embedding: instead of ``controlnet_cond``, its :meth:`embed_condition` (computed once per video):
            (B*F, c, h, w), or the embedding of the first of k equal parts of the batch (CFG's two halves carry
            the same control), (B*F/k, c, h, w), added to each part.
        Returns (down residuals, mid residual), each scaled by ``conditioning_scale``.
        """
        batch_size, num_frames = sample.shape[:2]
        h, w = sample.shape[-2:]
        if cond_embedding is None:
            if controlnet_cond is None:
                raise ValueError("pass controlnet_cond (the control video) or cond_embedding (its embed_condition)")
            if controlnet_cond.ndim == 5:
                controlnet_cond = controlnet_cond.flatten(0, 1)  # (B, F, C, H, W) -> (B*F, C, H, W)
            expected = (batch_size * num_frames, self.config.conditioning_channels,
                        h * self.downsampling_factor, w * self.downsampling_factor)
            if tuple(controlnet_cond.shape) != expected:
                raise ValueError(
                    f"controlnet_cond must be (B*F, C, H, W) = {expected} for latents of shape "
                    f"{tuple(sample.shape)}, got {tuple(controlnet_cond.shape)}. Encode the control at the "
                    "pipeline's height, width and frame count."
                )
            cond_embedding = self.embed_condition(controlnet_cond)
        elif (tuple(cond_embedding.shape[1:]) != (self.conv_in.out_channels, h, w) or len(cond_embedding) == 0
              or len(cond_embedding) % num_frames or (batch_size * num_frames) % len(cond_embedding)):
            raise ValueError(f"cond_embedding must be (B*F, {self.conv_in.out_channels}, h, w) = "
                             f"{(batch_size * num_frames, self.conv_in.out_channels, h, w)} or (B*F/k, ...) for k "
                             f"equal parts of the batch, got {tuple(cond_embedding.shape)}")

        emb = embed_time(self, sample, timestep, added_time_ids)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        hidden = self.conv_in(sample.flatten(0, 1))
        parts = hidden.shape[0] // cond_embedding.shape[0]
        hidden = (hidden.unflatten(0, (parts, -1)) + cond_embedding).flatten(0, 1)

        hidden, skips = run_encoder(self, hidden, emb, encoder_hidden_states, batch_size, num_frames)

        down = tuple(conv(s) * conditioning_scale for conv, s in zip(self.controlnet_down_blocks, skips))
        mid = self.controlnet_mid_block(hidden) * conditioning_scale
        if not return_dict:
            return (down, mid)
        return ControlNetSVDOutput(down_block_res_samples=down, mid_block_res_sample=mid)
