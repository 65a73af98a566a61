"""The mini LeviTor: a small SVD-shaped model trained from scratch on the synthetic world, shipped in the package.

What it is: the LeviTor wiring at toy scale. A real :class:`~levitor.models.ControlledUNetSVD` (SVD's
spatio-temporal UNet, two blocks) and a real :class:`~levitor.models.ControlNetSVD` built with ``from_unet``,
run by the real :class:`~levitor.generation.pipeline.LeviTorPipeline` (EDM Euler sampler, v-prediction, image latents
concatenated to every frame), at 32x32 pixels and 8 frames, conditioned on the release's control layout.

What it is not: Stable Video Diffusion. Three honest departures, all forced by training on a 2-core CPU
without any pretrained weights:

- The "VAE" is fixed, not learnt: :class:`PatchVAE` is space-to-depth (pixel unshuffle) by 4, so the latent of
  a 32x32 image is its 4x4 pixel blocks stacked as 48 channels at 8x8. Lossless and parameter-free.
- The UNet is trained *together with* the ControlNet, from scratch (the paper freezes a pretrained SVD UNet and
  trains only the ControlNet; there is no pretrained UNet to freeze here).
- :class:`MiniControlNetSVD` multiplies the raw conditioning video by fixed per-channel scales
  (:data:`CONTROL_INPUT_SCALE`) before its conditioning stack, so a from-scratch network sees values near
  0..1. The data path and the pipeline still hand it the release's raw values (0..255 heatmap, ids, 0..255 depth).

It knows only the synthetic world: flat-ish backgrounds and a few coloured sprites. On a photo it produces
something that follows the control points only roughly. See docs/mini_model.md for its training log and numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

from levitor.defaults import (
    FPS,
    MINI_PATCH_SIZE,
    MINI_SIGMA_MAX,
    MINI_SIGMA_MIN,
    MOTION_BUCKET_ID,
    NOISE_AUG_STRENGTH,
    NUM_INFERENCE_STEPS,
)
from levitor.generation.guidance import DEFAULT_GUIDANCE, TSTRONG_FRACTION, TWEAK_FRACTION, uses_controlnet
from levitor.generation.model_choice import MINI_INFO, MINI_WEIGHTS, mini_info
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.unet_svd import ControlledUNetSVD

# raw control channels (0..255 heatmap, instance id, 0..255 depth) -> about 0..1 for the from-scratch ControlNet
CONTROL_INPUT_SCALE = (1.0 / 255.0, 1.0 / 8.0, 1.0 / 255.0)
_LOG_VAR_FIXED = -30.0  # the PatchVAE is deterministic: a vanishing posterior variance


class PatchVAE(ModelMixin, ConfigMixin):
    """A fixed, lossless stand-in for SVD's VAE: pixel unshuffle by ``patch_size`` (no weights).

    encode: (N, 3, H, W) in [-1, 1] -> latent (N, 3 * p * p, H / p, W / p), times ``scaling_factor``'s inverse
    at decode, as diffusers' VAEs. decode: the exact inverse. ``block_out_channels`` exists only so that
    diffusers' pipelines compute ``vae_scale_factor = 2 ** (len - 1) = patch_size``.
    """

    @register_to_config
    def __init__(self, patch_size: int = MINI_PATCH_SIZE, in_channels: int = 3, scaling_factor: float = 1.0,
                 force_upcast: bool = False, block_out_channels: tuple[int, ...] | None = None,
                 latent_channels: int | None = None):
        super().__init__()
        levels = int(round(math.log2(patch_size)))
        if 2 ** levels != patch_size:
            raise ValueError(f"patch_size must be a power of two (it is the VAE scale factor), got {patch_size}")
        expected_blocks = (in_channels * patch_size ** 2,) * (levels + 1)
        if block_out_channels is not None and len(block_out_channels) != levels + 1:
            raise ValueError(f"block_out_channels must have log2(patch_size) + 1 = {levels + 1} entries")
        self.register_to_config(block_out_channels=expected_blocks, latent_channels=in_channels * patch_size ** 2)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the model a dtype and device

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        z = F.pixel_unshuffle(x, self.config.patch_size)
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.full_like(z, _LOG_VAR_FIXED)], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, num_frames: int | None = None, return_dict: bool = True):
        x = F.pixel_shuffle(z, self.config.patch_size)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, num_frames: int | None = None, return_dict: bool = True):
        return self.decode(self.encode(sample).latent_dist.mode(), num_frames, return_dict)


class MiniControlNetSVD(ControlNetSVD):
    """:class:`ControlNetSVD` that scales the raw control video by :data:`CONTROL_INPUT_SCALE` first.

    Same modules and state-dict names as the parent; only the input scaling differs (a fixed constant, not a
    weight), because a network trained from scratch learns badly from inputs up to 255.
    """

    def embed_condition(self, controlnet_cond: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(CONTROL_INPUT_SCALE, dtype=controlnet_cond.dtype, device=controlnet_cond.device)
        shape = [1] * controlnet_cond.ndim
        shape[-3] = len(CONTROL_INPUT_SCALE)
        return super().embed_condition(controlnet_cond * scale.view(shape))


class MiniX0UNetSVD(ControlledUNetSVD):
    """:class:`ControlledUNetSVD` whose network outputs the clean latents (x0) and that hands the sampler the
    equivalent v-prediction, so the scheduler, the pipeline and the loss stay SVD's.

    Why: a v-predicting UNet's denoised estimate is ``c_skip * x + c_out * F``: the network must cancel the noise
    that the skip path carries, in all 48 patch channels, through 32-channel features. It cannot, and what it
    cannot cancel survives the sampler as grain (about the noise's full strength at the end). An x0-predicting
    network has no skip path: the estimate is its own output, smooth where it cannot resolve detail.
    """

    def forward(self, sample, timestep, encoder_hidden_states, added_time_ids, *args, return_dict: bool = True,
                **kwargs):
        x0 = super().forward(sample, timestep, encoder_hidden_states, added_time_ids, *args, return_dict=False,
                             **kwargs)[0]
        t = torch.as_tensor(timestep, dtype=x0.dtype, device=x0.device).reshape(-1, *([1] * (x0.ndim - 1)))
        sigma = torch.exp(4.0 * t)  # SVD's continuous timestep is 0.25 * log(sigma)
        scale = (sigma**2 + 1).sqrt()
        noisy = sample[:, :, : x0.shape[2]] * scale  # the pipeline feeds noisy / sqrt(sigma^2 + 1) first
        v = (noisy / scale**2 - x0) * scale / sigma  # the v whose denoised estimate is exactly x0
        return UNetSpatioTemporalConditionOutput(sample=v) if return_dict else (v,)


# ------------------------------------------------------------------------------------------- building


def mini_unet_config(num_frames: int = 8, patch_size: int = MINI_PATCH_SIZE, channels: tuple[int, ...] = (64, 96),
                     layers_per_block: int = 1, cross_attention_dim: int = 32, heads: tuple[int, ...] = (2, 4),
                     sample_size: int = 16) -> dict:
    """The mini UNet: SVD's block types at toy width. Latent channels = 3 * patch_size ** 2."""
    latent = 3 * patch_size ** 2
    n = len(channels)
    return dict(
        sample_size=sample_size, in_channels=2 * latent, out_channels=latent,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1),
        block_out_channels=tuple(channels), layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim, num_attention_heads=tuple(heads),
        addition_time_embed_dim=32, projection_class_embeddings_input_dim=96,  # 3 added-time ids x 32
        num_frames=num_frames,
    )


def conditioning_widths(patch_size: int, base: int = 16) -> tuple[int, ...]:
    """Widths of the ControlNet's conditioning stack: one stride-2 step per factor 2 of the patch size."""
    levels = int(round(math.log2(patch_size)))
    return tuple(base * 2 ** min(i, 2) for i in range(levels + 1))


def mini_scheduler(sigma_max: float = MINI_SIGMA_MAX, sigma_min: float = MINI_SIGMA_MIN):
    """SVD's EDM Euler scheduler with noise levels suited to the mini model (images in [-1, 1], 8x8 latents).

    The sampler's last step jumps from ``sigma_min`` to 0, i.e. returns the model's denoised estimate there: a
    ``sigma_min`` inside the trained noise range gives a clean (if soft) video from a model that never learnt
    to polish at very low noise."""
    from levitor.generation.svd_config import svd_scheduler

    return svd_scheduler(sigma_max=sigma_max, sigma_min=sigma_min)


def mini_image_encoder(seed: int = 2):
    """A frozen random tiny CLIP vision tower (SVD's pipeline always feeds 224x224; patch 32 -> 49 tokens)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from levitor.generation.pipeline import CLIP_SIZE

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, image_size=CLIP_SIZE, patch_size=32)
    return CLIPVisionModelWithProjection(config).eval().requires_grad_(False)


def build_mini_models(unet_config: dict, patch_size: int, seed: int = 0):
    """Fresh (vae, image_encoder, unet, controlnet) for training from scratch."""
    torch.manual_seed(seed)
    unet = ControlledUNetSVD(**unet_config)
    controlnet = MiniControlNetSVD.from_unet(unet, conditioning_channels=3,
                                             conditioning_embedding_out_channels=conditioning_widths(patch_size))
    return PatchVAE(patch_size=patch_size), mini_image_encoder(seed + 2), unet, controlnet


def make_pipeline(vae, image_encoder, unet, controlnet, scheduler=None):
    from levitor.generation.pipeline import LeviTorPipeline
    from levitor.generation.svd_config import svd_feature_extractor

    pipe = LeviTorPipeline(vae=vae, image_encoder=image_encoder, unet=unet, controlnet=controlnet,
                           scheduler=scheduler or mini_scheduler(), feature_extractor=svd_feature_extractor())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------- shipped model


def save_mini(folder: str | Path, unet, controlnet, info: dict, image_encoder=None) -> Path:
    """Write the inference weights: ``unet/``, ``controlnet/``, ``image_encoder/`` and ``mini.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    controlnet.save_pretrained(folder / "controlnet")
    (image_encoder or mini_image_encoder(info.get("seed", 0) + 2)).save_pretrained(folder / "image_encoder")
    (folder / MINI_INFO).write_text(json.dumps(info, indent=2))
    return folder


def load_mini_pipeline(folder: str | Path = MINI_WEIGHTS, device: str | torch.device = "cpu"):
    """The shipped mini model as a :class:`~levitor.generation.pipeline.LeviTorPipeline` (float32)."""
    from transformers import CLIPVisionModelWithProjection

    folder = Path(folder)
    info = mini_info(folder)
    unet_class = MiniX0UNetSVD if info.get("prediction_type") == "sample" else ControlledUNetSVD
    unet = unet_class.from_pretrained(folder / "unet").eval()
    controlnet = MiniControlNetSVD.from_pretrained(folder / "controlnet").eval()
    with _quiet_transformers_loading():                  # a 9 MB local load: a progress bar is only noise
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder").eval()
    pipe = make_pipeline(PatchVAE(patch_size=info["patch_size"]), image_encoder, unet, controlnet,
                         mini_scheduler(info.get("sigma_max", MINI_SIGMA_MAX), info.get("sigma_min", MINI_SIGMA_MIN)))
    pipe.mini_info = info
    return pipe.to(device)


@contextlib.contextmanager
def _quiet_transformers_loading():
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def encode_for_mini(signal, info: dict) -> torch.Tensor:
    """The (F, 3, H, W) raw conditioning video at the mini model's size and stamp radius."""
    from levitor.control.encode import encode

    return encode(signal, info["height"], info["width"], radius=info["control_radius"])


def generate_mini(pipe, image, signal=None, num_inference_steps: int | None = None, seed: int = 0,
                  conditioning_scale: float = 1.0, callback_on_step_end=None, guidance: str = DEFAULT_GUIDANCE,
                  reference=None, reference_mask=None, tweak_fraction: float = TWEAK_FRACTION,
                  tstrong_fraction: float = TSTRONG_FRACTION):
    """Generate with the mini model: ``image`` (PIL or (3, H, W) in [0, 1]) at its size, ``signal`` a
    ControlSignal at any size (rescaled; not needed for ``guidance="ttm"``). Returns (F, H, W, 3) floats in [0, 1].

    guidance, reference, reference_mask, tweak_fraction, tstrong_fraction: as
    :meth:`~levitor.generation.pipeline.LeviTorPipeline.__call__` (the warped frames at any size: resized to the
    model's). ``"ttm"`` runs the UNet without its ControlNet, which
    it was trained beside: docs/ttm.md measures what that costs."""
    from PIL import Image

    info = pipe.mini_info
    H, W = info["height"], info["width"]
    if isinstance(image, Image.Image):
        image = image.convert("RGB").resize((W, H), Image.BILINEAR)
    cond = encode_for_mini(signal, info) if uses_controlnet(guidance) and signal is not None else None
    out = pipe(image, control=cond, height=H, width=W,  # frames: the control's (or the reference's)
               num_inference_steps=num_inference_steps or info.get("num_inference_steps", NUM_INFERENCE_STEPS),
               min_guidance_scale=1.0, max_guidance_scale=1.0,  # trained without condition dropout: no CFG
               fps=info.get("fps", FPS), motion_bucket_id=info.get("motion_bucket_id", MOTION_BUCKET_ID),
               noise_aug_strength=info.get("noise_aug_strength", NOISE_AUG_STRENGTH),
               controlnet_conditioning_scale=conditioning_scale, guidance=guidance, reference=reference,
               reference_mask=reference_mask, tweak_fraction=tweak_fraction, tstrong_fraction=tstrong_fraction,
               generator=torch.Generator().manual_seed(seed), output_type="np",
               callback_on_step_end=callback_on_step_end)
    return out.frames[0]


def resample_frames(signal, num_frames: int):
    """The same control at ``num_frames`` frames, picked evenly from first to last (the mini model has 8)."""
    if signal.num_frames == num_frames:
        return signal
    return signal.select_frames(even_frames(signal.num_frames, num_frames))


def even_frames(total: int, count: int) -> torch.Tensor:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    return torch.linspace(0, total - 1, count).round().long()


UPSCALE = 8  # the demo's videos show the 32x32 frames enlarged 8x (nearest neighbour: the pixels stay visible)


def demo(scene=None, out: str | Path | None = "demo_out", steps: int | None = None, seed: int | None = None,
         pipe=None) -> dict:
    """Generate the mini model's controlled video of ``scene`` (default: the bundled scene), no download.

    The scene's control signal (its engine output) is resampled to the mini model's 8 frames and squeezed to
    its 32x32 frames, the first image likewise; writes ``mini_video.gif``/``.mp4`` (enlarged) and
    ``mini_frames.png`` (rows: the engine's preview, the generated video) to ``out``.
    Returns {"frames": (F, h, w, 3) uint8, "seconds": ..., "paths": [...]}.
    """
    import time

    import numpy as np
    from PIL import Image

    from levitor.engine import Engine

    t0 = time.time()
    if scene is None:
        from levitor.bundled import bundled_scene

        scene = bundled_scene()
    pipe = pipe or load_mini_pipeline()
    info = pipe.mini_info
    result = Engine(scene).update().select_frames(even_frames(scene.num_frames, info["num_frames"]))
    image = Image.fromarray(np.asarray(scene.image)).convert("RGB")
    frames = generate_mini(pipe, image, result.signal, num_inference_steps=steps,
                           seed=scene.seed if seed is None else seed)
    frames = (np.asarray(frames) * 255).round().clip(0, 255).astype(np.uint8)
    paths = []
    if out is not None:
        from levitor.viz.video import write_video

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        big = frames.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)
        preview = np.stack([np.asarray(Image.fromarray(color.numpy()).resize(
            (big.shape[2], big.shape[1]), Image.BILINEAR)) for color in result.color])
        strip = np.concatenate([np.concatenate(list(preview), 1), np.concatenate(list(big), 1)], 0)
        Image.fromarray(strip).save(out / "mini_frames.png")
        paths.append(out / "mini_frames.png")
        for suffix in (".gif", ".mp4"):
            try:
                paths.append(write_video(big, out / f"mini_video{suffix}", fps=info.get("fps", 6)))
            except Exception as err:  # a missing video codec must not cost the picture
                print(f"could not write mini_video{suffix}: {err}")
    return {"frames": frames, "seconds": time.time() - t0, "paths": paths}
