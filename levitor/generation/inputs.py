"""What LeviTorPipeline checks of its inputs before any model runs, and the sizes it reads off them: each bad input
is a ValueError that says what to pass instead."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from levitor.control.signal import ControlSignal
from levitor.defaults import nearest_multiple
from levitor.generation.guidance import CONTROLNET, TTM, uses_controlnet, uses_ttm
from levitor.generation.ttm import check_reference
from levitor.weights import LEVITOR_ID


def image_batch_size(image: PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor) -> int:
    """How many images: a list's length, a (B, 3, H, W) tensor's B, else 1."""
    if isinstance(image, list):
        return len(image)
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        return image.shape[0]
    return 1


def steering_size(control: ControlSignal | torch.Tensor | None, reference=None, reference_mask=None,
                  guidance: str = CONTROLNET) -> tuple[int, int, int]:
    """(height, width, num_frames) the control was made for, else the reference's."""
    if isinstance(control, ControlSignal):
        return control.height, control.width, control.num_frames
    if isinstance(control, torch.Tensor) and control.ndim in (4, 5):
        return int(control.shape[-2]), int(control.shape[-1]), int(control.shape[-4])
    if control is None and isinstance(reference, (np.ndarray, torch.Tensor)) and reference.ndim in (4, 5):
        return int(reference.shape[-3]), int(reference.shape[-2]), int(reference.shape[-4])
    if control is None and uses_ttm(guidance):
        check_reference(reference, reference_mask, 0, 1, guidance)  # raises: no usable reference
    raise _unusable_control(control, guidance)


def _unusable_control(control, guidance: str) -> ValueError:
    if control is None:
        return ValueError(f"guidance {guidance!r} needs control= (a ControlSignal, e.g. Engine(scene).update()"
                          ".signal, or its encoding)")
    return ValueError(f"control must be a ControlSignal or an encoded (F, C, H, W) tensor, got "
                      f"{type(control).__name__}")


def check_image(image) -> None:
    if isinstance(image, torch.Tensor):
        if image.ndim not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"an image tensor must be (3, H, W) or (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
    elif isinstance(image, list):
        if not image or not all(isinstance(im, PIL.Image.Image) for im in image):
            raise ValueError("an image list must be a non-empty list of PIL images")
    elif not isinstance(image, PIL.Image.Image):
        raise ValueError(f"image must be a PIL image, a list of them or a tensor, got {type(image).__name__}")


def check_video_size(height: int, width: int, multiple: int) -> None:
    if height < multiple or width < multiple or height % multiple or width % multiple:
        raise ValueError(
            f"height and width must be positive multiples of {multiple}, got {height}x{width}: use "
            f"{nearest_multiple(height, multiple)}x{nearest_multiple(width, multiple)} (the release runs at "
            "512x288, height x width)"
        )


def check_counts(**counts: int | None) -> None:
    """Each count (frames, steps, ...) at least 1; None means "the default" and passes."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def check_has_controlnet(guidance: str, has_controlnet: bool) -> None:
    if uses_controlnet(guidance) and not has_controlnet:
        raise ValueError(
            f"guidance {guidance!r} needs a ControlNet, and this pipeline has none (it was loaded with "
            f"controlnet=None). Use guidance '{TTM}' (training-free: plain SVD steered by the warped reference "
            f"video), or load the LeviTor weights: LeviTorPipeline.from_pretrained(base, controlnet='{LEVITOR_ID}')"
        )


def check_steering(control, reference, reference_mask, height: int, width: int, num_frames: int, batch: int,
                   guidance: str, channels: int | None) -> None:
    """The control for the ControlNet modes (``channels``: the ControlNet's), the reference for the TTM modes, and
    neither where it would be ignored."""
    if uses_controlnet(guidance):
        check_control(control, height, width, num_frames, batch, guidance, channels)
    elif control is not None:
        raise ValueError(f"guidance {guidance!r} runs no ControlNet, so control= would be ignored: leave it out, "
                         f"or use guidance '{CONTROLNET}+{TTM}' to steer with both")
    if uses_ttm(guidance):
        check_reference(reference, reference_mask, num_frames, batch, guidance)
    elif reference is not None or reference_mask is not None:
        raise ValueError(f"reference= and reference_mask= steer only guidance '{TTM}' or '{CONTROLNET}+{TTM}'; "
                         f"with guidance {guidance!r} they would be ignored")


def check_control(control, height: int, width: int, num_frames: int, batch: int, guidance: str,
                  channels: int | None) -> None:
    if isinstance(control, ControlSignal):
        if control.num_frames != num_frames:
            raise ValueError(
                f"the control signal has {control.num_frames} frames but num_frames is {num_frames}. "
                "Build the control for the same frame count (or leave num_frames out to use the control's)."
            )
    elif isinstance(control, torch.Tensor):
        _check_encoded_control(control, height, width, num_frames, batch, channels)
    else:
        raise _unusable_control(control, guidance)


def _check_encoded_control(control: torch.Tensor, height: int, width: int, num_frames: int, batch: int,
                           channels: int | None) -> None:
    if control.ndim not in (4, 5) or control.shape[-3] != channels:
        raise ValueError(f"an encoded control must be (F, {channels}, H, W) or (B, F, {channels}, H, W), "
                         f"got {tuple(control.shape)}")
    if control.shape[-4] != num_frames:
        raise ValueError(f"the encoded control has {control.shape[-4]} frames but num_frames is {num_frames}")
    if tuple(control.shape[-2:]) != (height, width):
        raise ValueError(
            f"the encoded control is {control.shape[-2]}x{control.shape[-1]} but the video is "
            f"{height}x{width}. Pass the ControlSignal instead (it is rescaled) or encode it at this size."
        )
    if control.ndim == 5 and control.shape[0] not in (1, batch):
        raise ValueError(f"the encoded control has batch {control.shape[0]} but there are {batch} images")
