"""Stable Video Diffusion img2vid-xt as configuration: the scheduler LeviTor samples with, and the architecture of
its UNet, VAE and CLIP image encoder (``stabilityai/stable-video-diffusion-img2vid-xt``: ``*/config.json``).

The architecture serves what needs the real shapes without the weights: ``levitor vram`` traces a generation on
the meta device, and the GPU benchmarks time it with random weights.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from levitor.generation.pipeline import CLIP_SIZE, LeviTorPipeline
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.unet_svd import ControlledUNetSVD

# SVD-xt's scheduler config (EDM Euler, v-prediction, Karras sigmas)
SVD_SCHEDULER_CONFIG = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
    prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
    timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True, interpolation_type="linear",
)
SVD_XT_UNET_CONFIG = dict(
    sample_size=96, in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280), addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768, layers_per_block=2, cross_attention_dim=1024,
    transformer_layers_per_block=1, num_attention_heads=(5, 10, 20, 20), num_frames=25,
)
SVD_XT_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=768,
    scaling_factor=0.18215, force_upcast=True,
)
SVD_XT_CLIP_CONFIG = dict(  # OpenCLIP ViT-H/14 vision tower
    hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32, patch_size=14,
    image_size=CLIP_SIZE, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5,
)


def svd_scheduler(**overrides) -> EulerDiscreteScheduler:
    """SVD-xt's sampler (diffusers' EulerDiscreteScheduler with its config); ``overrides`` replace config keys."""
    return EulerDiscreteScheduler(**{**SVD_SCHEDULER_CONFIG, **overrides})


def svd_feature_extractor() -> CLIPImageProcessor:
    """The CLIP image processor in front of the image encoder (resize and centre-crop to CLIP_SIZE)."""
    return CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE})


def svd_xt_architecture(device: str | torch.device = "meta", dtype: torch.dtype = torch.float32,
                        seed: int = 0) -> LeviTorPipeline:
    """A LeviTorPipeline with SVD-xt's architecture (about 2.9 G parameters) and RANDOM weights, built directly on
    ``device`` (``"meta"``: the shapes only, no memory). Its ControlNet is fresh from the UNet (zero outputs)."""
    torch.manual_seed(seed)
    with torch.device(device):
        unet = ControlledUNetSVD(**SVD_XT_UNET_CONFIG).eval()
        vae = AutoencoderKLTemporalDecoder(**SVD_XT_VAE_CONFIG).eval()
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_XT_CLIP_CONFIG)).eval()
        controlnet = ControlNetSVD.from_unet(unet, conditioning_channels=3).eval()
    # diffusers' AlphaBlender makes its mix_factor with the legacy torch.Tensor([...]), which ignores the device
    # context and lands on the CPU: move the stragglers, or the first forward on the GPU fails
    vae, image_encoder, unet, controlnet = (m.to(device) for m in (vae, image_encoder, unet, controlnet))
    pipe = LeviTorPipeline(vae=vae, image_encoder=image_encoder, unet=unet, controlnet=controlnet,
                           scheduler=svd_scheduler(), feature_extractor=svd_feature_extractor())
    pipe.set_progress_bar_config(disable=True)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
