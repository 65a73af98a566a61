"""Time-to-Move's sampler mechanics on latents: the reference noised to a step's level, and the step-end callback
that pins the moved objects to it (the schedule and the modes: :mod:`levitor.generation.guidance`).

The pipeline (:class:`~levitor.generation.pipeline.LeviTorPipeline`) encodes the warped reference with its VAE,
starts sampling from :meth:`TTMGuidance.start_latents` at step ``schedule.start`` and runs the guidance as the first
step-end callback, before the user's (``callback_on_step_end``), so a user callback sees the pinned latents.

Noise levels follow SVD's EDM (Euler) scheduler: latents at step i are ``x0 + sigma_i * n``, with ``sigma_i =
scheduler.sigmas[i]`` and ``sigmas[num_steps] == 0``; so pinning after the last step puts the clean reference in.
The same fixed noise ``n`` noises the reference at every step (TTM's choice: the pinned region changes only by its
noise level from step to step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from levitor.generation.guidance import TTMSchedule

MASK_CELL_FRACTION = 0.5  # a latent cell is pinned when at least half of its pixels belong to a moved object
# frames per VAE call when encoding the reference: the encoder sees one frame at a time, so this only bounds the
# memory (SVD-xt's VAE encodes in float32, and 16 frames at 320x512 at once would be the generation's peak)
ENCODE_CHUNK = 4


def check_reference(reference, mask, num_frames: int, batch: int, guidance: str) -> None:
    """Raise ValueError unless ``reference`` (..., F, H, W, 3) and ``mask`` (..., F, H, W) are one render's frames and
    mask for ``num_frames`` frames and ``batch`` images (a batch dimension is optional: 1 serves every image)."""
    if reference is None or mask is None:
        raise ValueError(
            f"guidance {guidance!r} needs reference= (the warped frames, (F, H, W, 3)) and reference_mask= "
            "(the moved objects' pixels, (F, H, W) bool): frames, mask = "
            "levitor.generation.reference.warped_reference(Engine(scene).update())"
        )
    for name, value in (("reference", reference), ("reference_mask", mask)):
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise ValueError(f"{name} must be a numpy array or a tensor, got {type(value).__name__}")
    if reference.ndim not in (4, 5) or reference.shape[-1] != 3:
        raise ValueError(f"reference must be (F, H, W, 3) or (B, F, H, W, 3) frames (uint8 0..255 or float 0..1), "
                         f"got shape {tuple(reference.shape)}")
    if mask.ndim not in (3, 4):
        raise ValueError(f"reference_mask must be (F, H, W) or (B, F, H, W), got shape {tuple(mask.shape)}")
    if tuple(mask.shape[-3:]) != tuple(reference.shape[-4:-1]):
        ref_shape = "x".join(str(n) for n in reference.shape[-4:-1])
        mask_shape = "x".join(str(n) for n in mask.shape[-3:])
        raise ValueError(f"reference_mask is {mask_shape} (frames x height x width) but the reference is {ref_shape}: "
                         "make both from one engine result")
    if reference.shape[-4] != num_frames:
        raise ValueError(f"the reference has {reference.shape[-4]} frames but num_frames is {num_frames}: make it "
                         "from a render with the video's frame count (EngineResult.select_frames picks frames)")
    for name, value, ndim in (("reference", reference, 5), ("reference_mask", mask, 4)):
        if value.ndim == ndim and value.shape[0] not in (1, batch):
            raise ValueError(f"{name} has batch {value.shape[0]} but there are {batch} images")


def encode_reference(vae, reference: np.ndarray | torch.Tensor, height: int, width: int, device: torch.device,
                     dtype: torch.dtype, chunk_size: int) -> torch.Tensor:
    """The warped frames' VAE latents, (B, F, C, h, w), scaled as the denoised latents are (SVD's image latents
    are not: its quirk). The posterior's mode, as for the image (TTM samples it: a little more noise).

    reference: (F, H, W, 3) or (B, F, H, W, 3), uint8 0..255 or float 0..1, any size (resized to height x width).
    chunk_size: frames per VAE call (the encoder sees one frame at a time, so it changes nothing but the memory;
    at most :data:`ENCODE_CHUNK`).
    A float16 VAE that asks for it (``force_upcast``) encodes in float32, as the pipeline's image encode does.
    """
    frames = torch.as_tensor(reference)
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    frames = frames if frames.ndim == 5 else frames.unsqueeze(0)
    B, num_frames = frames.shape[:2]
    x = frames.flatten(0, 1).permute(0, 3, 1, 2)  # (B*F, 3, H, W)
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    x = x * 2.0 - 1.0
    upcast = vae.dtype == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(dtype=torch.float32)
    latents = torch.cat([vae.encode(chunk.to(device=device, dtype=vae.dtype)).latent_dist.mode()
                         for chunk in x.split(min(chunk_size, ENCODE_CHUNK))])
    if upcast:
        vae.to(dtype=torch.float16)
    latents = (latents * vae.config.scaling_factor).to(dtype)
    return latents.reshape(B, num_frames, *latents.shape[1:])


def latent_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A pixel mask on the latent grid.

    mask: (..., F, H, W) bool (or 0/1) at any size, True on the moved objects' pixels.
    Returns (..., F, 1, height, width) bool: a cell is in the mask when at least :data:`MASK_CELL_FRACTION` of
    its area is (the area average of the cell's pixels; TTM samples one pixel per cell instead).
    """
    lead, (H, W) = mask.shape[:-2], mask.shape[-2:]
    cover = F.interpolate(mask.reshape(-1, 1, H, W).float(), size=(height, width), mode="area")
    return (cover >= MASK_CELL_FRACTION).reshape(*lead, 1, height, width)


@dataclass
class TTMGuidance:
    """Pins the masked latents to the re-noised reference after each step before ``schedule.stop``.

    A step-end callback in diffusers' form, ``guidance(pipe, i, t, {"latents": ...}) -> {"latents": ...}``, with
    ``i`` the index within the steps run (diffusers' convention; global step ``schedule.start + i``).

    reference_latents: (N, F, C, h, w), the VAE latents of the warped frames, scaled as the denoised latents are.
    mask: (N, F, 1, h, w) bool, True where the latents are pinned (:func:`latent_mask`).
    noise: (N, F, C, h, w) standard normal, fixed for the whole run.
    sigmas: the scheduler's noise levels, ``num_steps + 1`` of them (the last is 0).
    """

    reference_latents: torch.Tensor
    mask: torch.Tensor
    noise: torch.Tensor
    sigmas: torch.Tensor
    schedule: TTMSchedule

    def __post_init__(self) -> None:
        if self.reference_latents.shape != self.noise.shape:
            raise ValueError(f"reference latents {tuple(self.reference_latents.shape)} and noise "
                             f"{tuple(self.noise.shape)} must have one shape")
        if len(self.sigmas) != self.schedule.num_steps + 1:
            raise ValueError(f"{len(self.sigmas)} sigmas for {self.schedule.num_steps} steps: the scheduler must be "
                             "set for the same number of steps (an EDM Euler scheduler has steps + 1 sigmas)")

    def noised_reference(self, step: int) -> torch.Tensor:
        """The reference at step ``step``'s noise level (``step == num_steps``: the clean reference)."""
        return self.reference_latents + self.noise * float(self.sigmas[step])

    def start_latents(self) -> torch.Tensor:
        """Where sampling starts: the reference noised to the level of ``schedule.start``."""
        return self.noised_reference(self.schedule.start)

    def __call__(self, pipe, i: int, t, tensors: dict) -> dict:
        step = self.schedule.start + i
        latents = tensors["latents"]
        if self.schedule.pins_after(step):
            latents = torch.where(self.mask, self.noised_reference(step + 1).to(latents.dtype), latents)
        return {"latents": latents}
