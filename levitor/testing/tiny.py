"""Tiny random models with the real architectures, for tests, notebooks and CPU benchmarks.

Every factory is seeded, so the same call gives the same weights. These are **random weights**: they make
noise-like videos and exist only to exercise code paths; they are never a stand-in for the real model.

Sizes: images 64x64, 4 frames; the VAE downsamples by 8 like SVD's (8x8 latents), and the ControlNet's
conditioning stack has four widths like the release's, so the control path has the real shape.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from levitor.control.signal import ControlSignal
from levitor.generation.pipeline import CLIP_SIZE, LeviTorPipeline
from levitor.generation.svd_config import (
    svd_feature_extractor,
    svd_scheduler,
    svd_xt_architecture,
)
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.unet_svd import ControlledUNetSVD

TINY_HEIGHT = 64
TINY_WIDTH = 64
TINY_FRAMES = 4

TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    block_out_channels=(32, 64),  # GroupNorm(32) needs multiples of 32
    layers_per_block=2,
    cross_attention_dim=32,  # = the CLIP projection_dim
    num_attention_heads=(2, 4),  # one entry per block
    addition_time_embed_dim=32,
    projection_class_embeddings_input_dim=96,  # 3 added-time ids x addition_time_embed_dim
    num_frames=TINY_FRAMES,
)
TINY_VAE_CONFIG = dict(
    block_out_channels=(32, 32, 32, 32),  # four blocks: downsamples by 8, like SVD's VAE
    down_block_types=("DownEncoderBlock2D",) * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=1,
)
TINY_CONDITIONING_WIDTHS = (8, 8, 16, 16)  # four widths -> downsampling by 8, as (16, 32, 96, 256) does
def tiny_unet(seed: int = 0, cls: type = ControlledUNetSVD) -> UNetSpatioTemporalConditionModel:
    torch.manual_seed(seed)
    return cls(**TINY_UNET_CONFIG).eval()


def tiny_vae(seed: int = 1) -> AutoencoderKLTemporalDecoder:
    torch.manual_seed(seed)
    return AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG).eval()


def tiny_image_encoder(seed: int = 2) -> CLIPVisionModelWithProjection:
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37, image_size=CLIP_SIZE, patch_size=32)  # SVD feeds it 224x224
    return CLIPVisionModelWithProjection(config).eval()


def tiny_feature_extractor() -> CLIPImageProcessor:
    return svd_feature_extractor()


def tiny_scheduler() -> EulerDiscreteScheduler:
    return svd_scheduler()


def perturb_zero_convs(controlnet: ControlNetSVD, seed: int = 4, std: float = 0.05) -> ControlNetSVD:
    """Give the zero-initialised output convs random weights, as training would, so the control has an effect."""
    g = torch.Generator().manual_seed(seed)
    convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
             controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in convs:
            for p in conv.parameters():
                # drawn on the CPU (the generator's device), whatever device the model is built on
                p.copy_(torch.randn(p.shape, generator=g, device="cpu") * std)
    return controlnet


def tiny_controlnet(unet: UNetSpatioTemporalConditionModel | None = None, seed: int = 3,
                    zero_init: bool = False) -> ControlNetSVD:
    """A ControlNet built with ``from_unet``; unless ``zero_init``, its zero convs get random weights."""
    unet = unet if unet is not None else tiny_unet()
    torch.manual_seed(seed)
    controlnet = ControlNetSVD.from_unet(unet, conditioning_channels=3,
                                         conditioning_embedding_out_channels=TINY_CONDITIONING_WIDTHS)
    return controlnet.eval() if zero_init else perturb_zero_convs(controlnet, seed + 1).eval()


def tiny_pipeline(seed: int = 0, zero_init_controlnet: bool = False):
    """A LeviTorPipeline of tiny random models (CPU, float32)."""

    unet = tiny_unet(seed)
    pipe = LeviTorPipeline(
        vae=tiny_vae(seed + 1), image_encoder=tiny_image_encoder(seed + 2), unet=unet,
        controlnet=tiny_controlnet(unet, seed + 3, zero_init=zero_init_controlnet),
        scheduler=tiny_scheduler(), feature_extractor=tiny_feature_extractor(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_svd_xt_pipeline(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """:func:`levitor.generation.svd_config.svd_xt_architecture` (SVD-xt's architecture, random weights) with
    random ControlNet outputs, as training would leave them, so the control has an effect: for speed and memory
    measurements only; it generates noise."""
    pipe = svd_xt_architecture(device, torch.float32, seed)
    perturb_zero_convs(pipe.controlnet, seed + 1)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def tiny_signal(num_frames: int = TINY_FRAMES, height: int = TINY_HEIGHT, width: int = TINY_WIDTH,
                dx: float = 4.0) -> ControlSignal:
    """Two objects' points: one moving right by ``dx`` pixels per frame, one still and nearer."""
    t = torch.arange(num_frames, dtype=torch.float32)
    moving = torch.stack([0.25 * width + dx * t, torch.full_like(t, 0.5 * height)], dim=-1)
    still = torch.tensor([0.75 * width, 0.25 * height]).expand(num_frames, 2)
    points = torch.stack([moving, still], dim=1)  # (F, 2, 2)
    depth = torch.tensor([[60.0, 200.0]]).expand(num_frames, 2).clone()
    return ControlSignal(points=points, depth=depth, instance=torch.tensor([1, 2]),
                         visible=torch.ones(num_frames, 2, dtype=torch.bool), height=height, width=width)


def tiny_image(height: int = TINY_HEIGHT, width: int = TINY_WIDTH, seed: int = 0):
    """A smooth random RGB PIL image."""
    import numpy as np
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    small = torch.rand(3, 4, 4, generator=g)
    big = torch.nn.functional.interpolate(small[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return Image.fromarray((big.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


# ---------------------------------------------------------------- saved layouts

# What the release's controlnet/config.json has beyond our config (values as the release saves them).
OFFICIAL_EXTRA_CONFIG = {
    "_class_name": "ControlNetSVDModel",
    "_diffusers_version": "0.25.1",
    "out_channels": 4,
    "up_block_types": list(TINY_UNET_CONFIG["up_block_types"]),
    "with_id_feature": False,
    "feature_channels": 160,
    "feature_out_channels": [160, 160, 256, 256],
}


# Our ControlNet's config keys that the release's has not (the loader supplies the release's values for them).
LEVITOR_ONLY_CONFIG = ("temporal_context_order", "control_rules")


def save_official_controlnet(controlnet: ControlNetSVD, folder: str | Path, unet=None) -> Path:
    """Write ``controlnet`` the way the release folder holds it (accelerate save_state layout)."""
    folder = Path(folder)
    (folder / "controlnet").mkdir(parents=True, exist_ok=True)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in controlnet.config.items()
              if not k.startswith("_") and k not in LEVITOR_ONLY_CONFIG}
    config.update(OFFICIAL_EXTRA_CONFIG)
    (folder / "controlnet" / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, folder / "controlnet" / "diffusion_pytorch_model.safetensors")
    if unet is not None:
        unet.save_pretrained(folder / "unet")  # the release saves the (frozen) SVD UNet beside the ControlNet
    # training state the loader must ignore
    (folder / "random_states_0.pkl").write_bytes(pickle.dumps({"python": None}))
    torch.save({"scale": 65536.0}, folder / "scaler.pt")
    torch.save({"last_epoch": 0}, folder / "scheduler.bin")
    return folder


def save_tiny_pipeline(folder: str | Path, layout: str = "ours", seed: int = 0) -> dict[str, Path]:
    """Save a tiny pipeline to ``folder`` and return the paths to load it from.

    layout "ours": ``LeviTorPipeline.save_pretrained(folder)``; returns ``{"pipeline": folder}``.
    layout "official": ``folder/svd`` (a diffusers StableVideoDiffusionPipeline, fp16 variant files, as on the
    hub) and ``folder/LeviTor`` (the release layout); returns ``{"base": ..., "controlnet": ...}``.
    """
    folder = Path(folder)
    pipe = tiny_pipeline(seed)
    if layout == "ours":
        pipe.save_pretrained(folder)
        return {"pipeline": folder}
    if layout != "official":
        raise ValueError(f"layout must be 'ours' or 'official', got {layout!r}")

    plain_unet = UNetSpatioTemporalConditionModel.from_config(pipe.unet.svd_config)
    plain_unet.load_state_dict(pipe.unet.state_dict())
    svd = StableVideoDiffusionPipeline(vae=pipe.vae, image_encoder=pipe.image_encoder, unet=plain_unet,
                                       scheduler=pipe.scheduler, feature_extractor=pipe.feature_extractor)
    svd.save_pretrained(folder / "svd", variant="fp16")
    save_official_controlnet(pipe.controlnet, folder / "LeviTor", unet=plain_unet)
    return {"base": folder / "svd", "controlnet": folder / "LeviTor"}
