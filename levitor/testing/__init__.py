"""Test helpers: tiny random models with the real architectures (see :mod:`levitor.testing.tiny`)."""

from levitor.testing.tiny import (
    TINY_FRAMES,
    TINY_HEIGHT,
    TINY_WIDTH,
    perturb_zero_convs,
    save_tiny_pipeline,
    tiny_controlnet,
    tiny_image,
    tiny_pipeline,
    tiny_signal,
    tiny_unet,
)

__all__ = [
    "TINY_FRAMES", "TINY_HEIGHT", "TINY_WIDTH", "perturb_zero_convs", "save_tiny_pipeline", "tiny_controlnet",
    "tiny_image", "tiny_pipeline", "tiny_signal", "tiny_unet",
]
