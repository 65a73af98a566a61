"""Defaults defined once, and the official release's constants (light to import: no torch).

Every default frame count, height and width in levitor (the bundled scene, the Studio's photo size, precompute,
evaluation, ``levitor vram``, training) comes from here, and so do the release demo's seed and camera and SVD's
sampling and conditioning values (generation, evaluation, training; the mini model's own are in its mini.json).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoSize:
    num_frames: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.num_frames}x{self.height}x{self.width}"


SIZES: dict[str, VideoSize] = {
    "default": VideoSize(16, 320, 512),  # landscape, SVD's aspect ratio at a size a 16 GB GPU runs comfortably
    "release-demo": VideoSize(16, 512, 288),  # the official Gradio demo: height 512, width 288 (portrait)
}
DEFAULT_SIZE = SIZES["default"]
RELEASE_DEMO_SIZE = SIZES["release-demo"]
NUM_FRAMES = DEFAULT_SIZE.num_frames  # the official checkpoint was trained on 16-frame clips
# The most frames a scene may ask for: renders, control and latents grow with the frame count, and SVD models are
# trained on 14-25 frames (LeviTor on 16); beyond this the engine would only run out of memory.
MAX_FRAMES = 256


def video_size(name: str) -> VideoSize:
    """A named size (see :data:`SIZES`); the error lists the names."""
    if name not in SIZES:
        raise ValueError(f"unknown size {name!r}; use one of {sorted(SIZES)}")
    return SIZES[name]


def nearest_multiple(value: int, multiple: int = 8) -> int:
    """The nearest positive multiple of ``multiple`` (what an error suggests for a size that is not one)."""
    return max(multiple, int(round(value / multiple)) * multiple)


# Stable Video Diffusion's sampling and conditioning, as the release generates with SVD-xt
NUM_INFERENCE_STEPS = 25  # Euler steps
FPS = 6  # the frame rate SVD is conditioned on (as fps - 1), and the one its videos play at
MOTION_BUCKET_ID = 100  # how much motion SVD is asked for (the release demo's value)
NOISE_AUG_STRENGTH = 0.02  # noise added to the conditioning image

# The mini model (levitor.generation.mini), trained from scratch: its recipe's defaults (training's TrainConfig) and
# what a mini.json without these keys means
MINI_PATCH_SIZE = 4  # PatchVAE's factor: latents are H/4 x W/4 x 48
MINI_SIGMA_MAX = 80.0  # its sampler starts here (SVD's 700 is for big latents)
MINI_SIGMA_MIN = 0.002  # ... and returns its denoised estimate at this noise level

RELEASE_SEED = 217113  # the release demo's seed
RELEASE_FX = 3866.378  # the release's fixed pinhole focal lengths (pixels); cx, cy are the image centre
RELEASE_FY = 4538.052
MAX_SEED = 2**63  # seeds are torch.Generator seeds: 0 <= seed < 2**63


def check_seed(seed: object) -> int:
    """A seed as an int, or a ValueError saying the valid range."""
    if isinstance(seed, bool) or not isinstance(seed, int) and not (hasattr(seed, "__index__")):
        raise ValueError(f"seed must be a whole number in 0..2**63-1, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be in 0..2**63-1 (a torch generator seed), got {seed}")
    return seed
