"""SVD's EDM training loss with the ControlNet in the loop."""

from __future__ import annotations

import torch

from levitor.training.config import TrainConfig


def edm_loss(pipe, unet, controlnet, batch: dict, config: TrainConfig, generator: torch.Generator | None = None):
    """SVD's EDM training loss of one batch (mean over everything), with the ControlNet in the loop.

    batch["frames"]: (B, F, 3, H, W) in [-1, 1]; batch["control"]: (B, F, 3, H, W) raw control values.
    """
    frames, control = batch["frames"], batch["control"]
    B, F = frames.shape[:2]
    device, dtype = frames.device, next(unet.parameters()).dtype
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(frames.flatten(0, 1).to(vae.dtype)).latent_dist.sample(generator)
        latents = (latents * vae.config.scaling_factor).unflatten(0, (B, F)).to(dtype)
        first = frames[:, 0]
        cond_image = first + config.noise_aug_strength * torch.randn(first.shape, generator=generator,
                                                                      device=device, dtype=first.dtype)
        image_latents = vae.encode(cond_image.to(vae.dtype)).latent_dist.mode().to(dtype)  # unscaled, as SVD
        image_latents = image_latents[:, None].expand(-1, F, -1, -1, -1)
        clip_input = pipe._clip_input(((first + 1) / 2).clamp(0, 1))  # resized to 224 as the pipeline does
        embeddings = pipe._encode_image(clip_input, device, 1, False).to(dtype)
        added_time_ids = torch.tensor([[config.fps - 1, config.motion_bucket_id, config.noise_aug_strength]],
                                      device=device, dtype=dtype).expand(B, -1)

    sigma = noise_levels(B, config, generator, device).to(dtype)
    s = sigma.view(B, 1, 1, 1, 1)
    noisy = latents + s * torch.randn(latents.shape, generator=generator, device=device, dtype=dtype)
    model_input = torch.cat([noisy / (s**2 + 1).sqrt(), image_latents], dim=2)
    t = 0.25 * sigma.log()  # the scheduler's continuous timestep for v-prediction
    down, mid = controlnet(model_input, t, embeddings, control.to(dtype), added_time_ids, return_dict=False)
    v = unet(model_input, t, embeddings, added_time_ids, down_block_additional_residuals=down,
             mid_block_additional_residual=mid).sample
    denoised = v * (-s / (s**2 + 1).sqrt()) + noisy / (s**2 + 1)
    weight = (1 + s**2) / s**2
    if config.loss_weight_cap > 0:
        weight = weight.clamp(max=config.loss_weight_cap)
    err = (denoised.float() - latents.float()) ** 2
    if config.motion_loss_weight:
        weight = weight * (1 + config.motion_loss_weight * motion_mask(frames, latents.shape[-2:]))
    return (weight.float() * err).mean()


def motion_mask(frames: torch.Tensor, size: tuple[int, int], threshold: float = 0.1) -> torch.Tensor:
    """(B, F, 1, h, w) 1 where a frame differs from the first one (what moved, or was uncovered), at latent size.

    Most of a clip is still background, so a plain loss is mostly learnt by copying the first frame;
    weighting the moving regions makes following the control pay (an option of the mini config)."""
    B, F = frames.shape[:2]
    moved = ((frames - frames[:, :1]).abs().amax(2, keepdim=True) > threshold).float()  # (B, F, 1, H, W)
    pooled = torch.nn.functional.adaptive_max_pool2d(moved.flatten(0, 1), tuple(size))
    return pooled.unflatten(0, (B, F))


def noise_levels(n: int, config: TrainConfig, generator: torch.Generator | None, device) -> torch.Tensor:
    """(n,) training noise levels: log-normal (p_mean, p_std), or a mixture with the low band (p_low_*) when
    p_low_fraction > 0: the high band is where the control decides the layout, the low band where the pixels
    are cleaned. One normal draw per sample first, so the plain case draws exactly what it always drew."""
    z = torch.randn(n, generator=generator, device=device)
    if config.p_low_fraction <= 0:
        return torch.exp(config.p_mean + config.p_std * z)
    low = torch.rand(n, generator=generator, device=device) < config.p_low_fraction
    mean = torch.where(low, config.p_low_mean, config.p_mean)
    std = torch.where(low, config.p_low_std, config.p_std)
    return torch.exp(mean + std * z)
