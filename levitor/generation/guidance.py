"""How a generation is steered, defined once: the guidance modes and Time-to-Move's schedule (light to import: no
torch, so the CLI lists the modes without loading a model).

- ``"controlnet"``: LeviTor as released: the ControlNet reads the control points at every step.
- ``"ttm"``: training-free, after Time-to-Move (Singer et al., ICLR 2026): plain SVD, no ControlNet, steered by the
  engine's warped video of the image (the moved objects re-rendered with their occlusion) and the mask of the
  moved objects' pixels (:mod:`levitor.generation.reference`, :mod:`levitor.generation.ttm`).
- ``"controlnet+ttm"``: both at once.

TTM's two moments are fractions of the denoising schedule, so one setting serves any step count: sampling starts
at step ``round(tweak_fraction * steps)`` from the reference noised to that step's level (the steps before are
skipped), and the latents inside the mask are replaced by the re-noised reference after every step before
``round(tstrong_fraction * steps)``; after that the model is free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONTROLNET = "controlnet"
TTM = "ttm"
CONTROLNET_TTM = "controlnet+ttm"
GUIDANCE_MODES = (CONTROLNET, TTM, CONTROLNET_TTM)
DEFAULT_GUIDANCE = CONTROLNET  # the release's behaviour
GUIDANCE_LABELS = {  # what a menu says about each mode, beside the model it runs on (SVD-xt or the mini model)
    CONTROLNET: "ControlNet (points + depth)",
    TTM: "training-free (warped video, no ControlNet)",
    CONTROLNET_TTM: "ControlNet + warped video",
}

# TTM's published SVD setting: start at step 16 of 50 (sigma 74.5 on SVD-xt's schedule), pin the masked latents
# until step 21 of 50 (sigma 31). docs/ttm.md compares other settings on the mini model's held-out clips.
TWEAK_FRACTION = 0.32
TSTRONG_FRACTION = 0.42

# what a missing base says when no ControlNet is wanted
TTM_NEEDS = ("Training-free guidance (guidance 'ttm') needs only these Stable Video Diffusion weights: no LeviTor "
             "ControlNet.")


def uses_controlnet(guidance: str) -> bool:
    return guidance in (CONTROLNET, CONTROLNET_TTM)


def uses_ttm(guidance: str) -> bool:
    return guidance in (TTM, CONTROLNET_TTM)


def check_guidance(guidance: str, tweak_fraction: float = TWEAK_FRACTION,
                   tstrong_fraction: float = TSTRONG_FRACTION) -> None:
    """Raise ValueError for an unknown mode or fractions outside 0 <= tweak <= tstrong <= 1."""
    if guidance not in GUIDANCE_MODES:
        raise ValueError(f"guidance must be one of {', '.join(GUIDANCE_MODES)}, got {guidance!r}")
    for name, value in (("tweak_fraction", tweak_fraction), ("tstrong_fraction", tstrong_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1] (a fraction of the denoising steps), got {value!r}")
    if tweak_fraction > tstrong_fraction:
        raise ValueError(
            f"tweak_fraction ({tweak_fraction:g}) must not exceed tstrong_fraction ({tstrong_fraction:g}): sampling "
            f"starts at the first and the moved objects are pinned until the second (TTM's SVD setting: "
            f"{TWEAK_FRACTION:g} and {TSTRONG_FRACTION:g})"
        )


def schedule_index(fraction: float, num_steps: int) -> int:
    """The step at ``fraction`` of ``num_steps``, rounded half up (0.42 of 25 steps -> step 11)."""
    return min(num_steps, int(math.floor(fraction * num_steps + 0.5)))


@dataclass(frozen=True)
class TTMSchedule:
    """TTM's two moments as step indices of one run of ``num_steps`` steps.

    start: the first step run (TTM's tweak index); the steps before it are skipped.
    stop: after each step ``i < stop`` the masked latents are replaced by the reference re-noised to step i + 1's
        level (TTM's tstrong index); ``stop == start`` pins nothing (the reference only starts the sampling).
    """

    start: int
    stop: int
    num_steps: int

    @classmethod
    def from_fractions(cls, tweak_fraction: float, tstrong_fraction: float, num_steps: int) -> TTMSchedule:
        check_guidance(TTM, tweak_fraction, tstrong_fraction)
        start = schedule_index(tweak_fraction, num_steps)
        if start >= num_steps:
            start = num_steps - 1  # at least one step runs: the last one lands on the clean latents
        return cls(start, max(start, schedule_index(tstrong_fraction, num_steps)), num_steps)

    @property
    def steps_run(self) -> int:
        return self.num_steps - self.start

    def pins_after(self, step: int) -> bool:
        """Whether the masked latents are replaced after global step ``step``."""
        return self.start <= step < self.stop

    def to_meta(self) -> dict:
        return {"start_step": self.start, "stop_step": self.stop, "num_steps": self.num_steps}
