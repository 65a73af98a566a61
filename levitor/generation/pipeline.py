"""LeviTorPipeline: Stable Video Diffusion image-to-video, steered by a ControlNet that sees the control points.

It follows diffusers' :class:`StableVideoDiffusionPipeline` step for step (CLIP image embedding and VAE image
latents as conditioning, EDM Euler sampler, classifier-free guidance ramped linearly across frames, fps
conditioned as fps - 1) and reuses its helpers; the only new work per step is the ControlNet, whose residuals
go into :class:`~levitor.models.ControlledUNetSVD`. With ``guidance="ttm"`` it runs training-free instead, after
Time-to-Move: plain SVD (no ControlNet needed, none loaded with ``controlnet=None``) steered by the engine's warped
video of the image and the mask of the moved objects (:mod:`levitor.generation.guidance`, :mod:`.ttm`);
``guidance="controlnet+ttm"`` uses both.

```python
pipe = LeviTorPipeline.from_pretrained(torch_dtype=torch.float16)   # SVD-xt + hlwang06/LeviTor
pipe.apply_preset("low_vram")                                       # 16 GB cards (Colab T4)
out = pipe(image, control=signal, generator=torch.Generator().manual_seed(217113))
write_video(out.frames[0], "out.mp4", fps=6)          # levitor.viz.video

svd = LeviTorPipeline.from_pretrained(controlnet=None, torch_dtype=torch.float16)    # SVD-xt alone
frames, mask = warped_reference(Engine(scene).update())                         # levitor.generation.reference
out = svd(image, guidance="ttm", reference=frames, reference_mask=mask)
```

Choices worth knowing:
- Classifier-free guidance: the unconditional branch gets the same control as the conditional one (the release
  does the same); only the image conditioning (CLIP embedding and image latents) is zeroed there. The ControlNet
  runs once per step on the whole CFG batch, like the UNet.
- Sizes derive from the control: ``height``, ``width`` and ``num_frames`` default to the control's. A
  :class:`ControlSignal` made for another resolution is rescaled (``signal.scaled_to(height, width)``: points
  scale with the image, which is resized to ``height`` x ``width`` too); an already-encoded tensor cannot be, and
  a size mismatch is a ``ValueError``.
- Interrupting: a callback may set ``pipe._interrupt = True``; the loop stops after that step and the
  partly-denoised latents are decoded (diffusers' convention).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    StableVideoDiffusionPipelineOutput,
    _append_dims,
    _resize_with_antialiasing,
)
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from levitor._util.device import resolve_device
from levitor.control.signal import ControlSignal
from levitor.defaults import FPS, MOTION_BUCKET_ID, NOISE_AUG_STRENGTH, NUM_INFERENCE_STEPS
from levitor.generation.guidance import (
    DEFAULT_GUIDANCE,
    TSTRONG_FRACTION,
    TWEAK_FRACTION,
    TTMSchedule,
    check_guidance,
    uses_controlnet,
    uses_ttm,
)
from levitor.generation.inputs import (
    check_counts,
    check_has_controlnet,
    check_image,
    check_steering,
    check_video_size,
    image_batch_size,
    steering_size,
)
from levitor.generation.loading import (
    DtypeArg,
    component_dtype,
    dtype_kwargs,
    load_any_controlnet,
    resolve_base_and_controlnet,
    resolve_dtype,
    write_custom_pipeline_file,
)
from levitor.generation.presets import DEFAULT_PRESET, PRESETS, explain_oom, set_forward_chunking
from levitor.generation.ttm import TTMGuidance, encode_reference, latent_mask
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.convert import find_controlnet_folder
from levitor.models.unet_svd import ControlledUNetSVD
from levitor.weights import LEVITOR_ID, SVD_XT_ID, resolve

LeviTorPipelineOutput = StableVideoDiffusionPipelineOutput  # .frames: np (B, F, H, W, 3), pt (B, F, 3, H, W), PIL lists

@dataclass
class Conditioning:
    """What every denoising step is conditioned on, for the whole CFG batch (a step-end callback may replace it)."""

    image_embeddings: torch.Tensor  # CLIP's, the cross-attention context
    image_latents: torch.Tensor  # the VAE's of the noise-augmented image, beside every frame's latents
    added_time_ids: torch.Tensor  # fps - 1, motion bucket, noise augmentation
    controlnet_cond: torch.Tensor | None  # the encoded control (None: no ControlNet runs)
    do_cfg: bool  # the batch holds an unconditional half first
    cond_embedding: torch.Tensor | None = None  # the ControlNet's embedding of the control, made once a call

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """The tensors a step-end callback may ask for (besides the latents)."""
        return dict(image_latents=self.image_latents, image_embeddings=self.image_embeddings,
                    added_time_ids=self.added_time_ids, controlnet_cond=self.controlnet_cond)


CLIP_SIZE = 224  # SVD feeds CLIP a 224x224 image, whatever the video size
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class LeviTorPipeline(StableVideoDiffusionPipeline):
    """Image + control signal -> video. See the module docstring; components as in SVD plus ``controlnet`` (None for a
    pipeline that only runs ``guidance="ttm"``)."""

    # The ControlNet stays out of the offload chain (as in diffusers' ControlNet pipelines): in the chain, each
    # UNet call would send it back to the CPU and each step bring it back. Outside it, it moves to the GPU at its
    # first call and stays until the end-of-call cleanup.
    model_cpu_offload_seq = "image_encoder->unet->vae"
    _optional_components = ["controlnet"]
    _callback_tensor_inputs = ["latents", "image_latents", "image_embeddings", "added_time_ids", "controlnet_cond"]

    def __init__(
        self,
        vae: AutoencoderKLTemporalDecoder,
        image_encoder: CLIPVisionModelWithProjection,
        unet: ControlledUNetSVD,
        controlnet: ControlNetSVD | None,
        scheduler: EulerDiscreteScheduler,
        feature_extractor: CLIPImageProcessor,
    ):
        super().__init__(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                         feature_extractor=feature_extractor)
        self.register_modules(controlnet=controlnet)
        if not isinstance(unet, ControlledUNetSVD):
            raise TypeError(
                f"unet must be a ControlledUNetSVD (it takes the ControlNet's residuals), got {type(unet).__name__}. "
                "Load it with ControlledUNetSVD.from_pretrained(svd_id, subfolder='unet'): the weights are SVD's."
            )
        if controlnet is not None:
            self._check_controlnet(controlnet)
        self._preset_name = DEFAULT_PRESET
        self._preset_decode_chunk_size: int | None = None
        self._interrupt = False

    def _check_controlnet(self, controlnet: ControlNetSVD) -> None:
        """The ControlNet must fit this UNet and VAE; the UNet takes the ControlNet's temporal context order."""
        unet = self.unet
        if tuple(controlnet.config.block_out_channels) != tuple(unet.config.block_out_channels):
            raise ValueError(
                f"ControlNet block_out_channels {tuple(controlnet.config.block_out_channels)} do not match the "
                f"UNet's {tuple(unet.config.block_out_channels)}: this ControlNet was built for another base model."
            )
        if controlnet.downsampling_factor != self.vae_scale_factor:
            raise ValueError(
                f"The ControlNet's conditioning stack downsamples by {controlnet.downsampling_factor} but the VAE by "
                f"{self.vae_scale_factor}; they must agree (conditioning_embedding_out_channels has "
                f"{len(controlnet.config.conditioning_embedding_out_channels)} entries)."
            )
        order = controlnet.config.get("temporal_context_order", "diffusers")
        if unet.config.get("temporal_context_order", "diffusers") != order:
            unet.set_temporal_context_order(order)  # the UNet was trained (frozen) beside the ControlNet in its order

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path = SVD_XT_ID,
        controlnet: str | Path | ControlNetSVD | None = "auto",
        *,
        dtype: DtypeArg = None,
        torch_dtype: DtypeArg = None,
        variant: str | None = "auto",
        allow_download: bool = True,
        **kwargs: Any,
    ) -> LeviTorPipeline:
        """Load the pipeline from a base model and LeviTor ControlNet weights.

        pretrained_model_name_or_path: the SVD base (hub id or diffusers folder, default SVD-xt), or a folder
            written by :meth:`save_pretrained` (``model_index.json`` naming LeviTorPipeline), which holds everything.
        controlnet: the LeviTor weights: hub id or folder in the release layout (``controlnet/`` inside), a folder
            with the ControlNet's ``config.json`` itself, or a loaded :class:`ControlNetSVD`. "auto" means
            ``hlwang06/LeviTor`` for an SVD base, and the saved one for a saved pipeline. None loads no ControlNet
            (diffusers' way of leaving out a component): the pipeline then runs ``guidance="ttm"`` only, and needs
            nothing but the base's weights.
        dtype: every component's parameters (UNet, ControlNet, VAE, image encoder) in this dtype, or a dict by
            component as diffusers reads it (``{"unet": torch.bfloat16, "default": torch.float16}``: "default" for the
            rest, float32 for a component neither names); ``torch_dtype`` is its older name and works the same.
        variant: "auto" picks the base's ``fp16`` files when present (the hub layout); None loads plain files.
        allow_download: let :func:`levitor.weights.resolve` fetch missing weights from the Hub.
        Missing weights raise :class:`~levitor.weights.WeightsNotFoundError` with the expected folder layout.
        The UNet runs in the ControlNet's temporal context order (the release's for the released weights).
        """
        dtype = resolve_dtype(dtype, torch_dtype)
        wanted = None if controlnet == "auto" else controlnet
        base = resolve_base_and_controlnet(pretrained_model_name_or_path, wanted, allow_download,
                                           need_controlnet=controlnet is not None)
        index_path = base / "model_index.json"
        class_name = json.loads(index_path.read_text())["_class_name"]
        if variant == "auto":
            variant = "fp16" if any((base / "unet").glob("*.fp16.*")) else None

        if class_name == cls.__name__:  # our own save_pretrained layout: everything in one folder
            if controlnet != "auto":
                kwargs["controlnet"] = None if controlnet is None else load_any_controlnet(controlnet, dtype,
                                                                                           allow_download)
            return super().from_pretrained(base, variant=variant, **dtype_kwargs(dtype), **kwargs)

        # find the ControlNet before loading gigabytes of base model, so a missing one fails fast
        if controlnet is not None and not isinstance(controlnet, ControlNetSVD):
            source = LEVITOR_ID if controlnet == "auto" else controlnet
            controlnet = find_controlnet_folder(resolve(source, what="LeviTor ControlNet",
                                                        allow_download=allow_download))
        unet = ControlledUNetSVD.from_pretrained(base, subfolder="unet", variant=variant,
                                                 **dtype_kwargs(component_dtype(dtype, "unet")))
        svd = StableVideoDiffusionPipeline.from_pretrained(base, unet=unet, variant=variant, **dtype_kwargs(dtype),
                                                           **kwargs)
        if controlnet is not None:
            controlnet = load_any_controlnet(controlnet, dtype, allow_download)
        return cls(**svd.components, controlnet=controlnet)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """diffusers' save_pretrained, plus a one-line ``pipeline.py`` so that
        ``DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)`` loads it too
        (it imports the installed levitor; ``LeviTorPipeline.from_pretrained(folder)`` needs neither argument)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        write_custom_pipeline_file(save_directory)

    @property
    def control_rules(self) -> str:
        """How the control signal should be built for this ControlNet: the rules its weights were trained with
        ("release" for the released LeviTor weights, "levitor" for levitor-trained ones; levitor.control.rules)."""
        if self.controlnet is None:
            return "levitor"  # no ControlNet to match: levitor's rules (per-pixel occlusion) render the reference
        return self.controlnet.config.get("control_rules", "levitor")

    # ------------------------------------------------------------------ presets

    @property
    def preset(self) -> str:
        return self._preset_name

    def apply_preset(self, name: str, device: str | torch.device | None = None,
                     dtype: torch.dtype | None = None) -> LeviTorPipeline:
        """Apply a memory/speed preset from :data:`PRESETS` ("default" or "low_vram").

        device: where to generate; default CUDA when available, else CPU. On CPU the weights stay float32 and
            there is no offload (nothing to offload to); chunk sizes still apply.
        dtype: override the preset's dtype (e.g. torch.bfloat16 on Ampere and newer; T4 has no bf16).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[name]
        device = resolve_device(device)
        dtype = dtype or (preset.torch_dtype if device.type != "cpu" else torch.float32)

        self.remove_all_hooks()
        for model in self.components.values():
            # cast only what differs (a cast copies every weight)
            if isinstance(model, torch.nn.Module) and model.dtype != dtype:
                model.to(dtype=dtype)
        if preset.cpu_offload and device.type != "cpu":
            self.enable_model_cpu_offload(device=device)
        else:
            self.to(device)
        for model in (self.unet, self.controlnet):
            if model is not None:
                set_forward_chunking(model, preset.forward_chunking)
        self._preset_decode_chunk_size = preset.decode_chunk_size
        self._preset_name = name
        return self

    # ------------------------------------------------------------------ inputs

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def check_inputs(
        self,
        image: PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor,
        control: ControlSignal | torch.Tensor | None,
        height: int,
        width: int,
        num_frames: int,
        num_inference_steps: int = NUM_INFERENCE_STEPS,
        decode_chunk_size: int | None = None,
        output_type: str = "pil",
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        guidance: str = DEFAULT_GUIDANCE,
        reference: np.ndarray | torch.Tensor | None = None,
        reference_mask: np.ndarray | torch.Tensor | None = None,
        tweak_fraction: float = TWEAK_FRACTION,
        tstrong_fraction: float = TSTRONG_FRACTION,
        num_videos_per_prompt: int = 1,
    ) -> None:
        """Raise ValueError for anything that would fail later, before any model runs (:mod:`.inputs`)."""
        check_image(image)
        check_video_size(height, width, multiple=max(8, self.vae_scale_factor))
        check_counts(num_frames=num_frames, num_inference_steps=num_inference_steps,
                     decode_chunk_size=decode_chunk_size, num_videos_per_prompt=num_videos_per_prompt)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs has {sorted(unknown)}, which the pipeline does not expose; "
                f"choose from {self._callback_tensor_inputs}"
            )
        check_guidance(guidance, tweak_fraction, tstrong_fraction)
        check_has_controlnet(guidance, self.controlnet is not None)
        channels = None if self.controlnet is None else self.controlnet.config.conditioning_channels
        check_steering(control, reference, reference_mask, height, width, num_frames, image_batch_size(image),
                       guidance, channels)

    def encode_control(self, control: ControlSignal | torch.Tensor, height: int, width: int, batch_size: int,
                       device: torch.device, dtype: torch.dtype, do_classifier_free_guidance: bool,
                       num_videos_per_prompt: int = 1) -> torch.Tensor:
        """The ControlNet input for the whole CFG batch: (N or 2N, F, C, height, width), raw values, with
        N = batch_size * num_videos_per_prompt (each image's videos next to each other, as the image embeddings).

        A ControlSignal made for another size is rescaled first (points scale with the image).
        """
        if isinstance(control, ControlSignal):
            from levitor.control.encode import encode  # the encoder lives with the control stage

            if (control.height, control.width) != (height, width):
                control = control.scaled_to(height, width)
            control = encode(control, height, width)
        cond = control.to(device=device, dtype=dtype)
        if cond.ndim == 4:
            cond = cond.unsqueeze(0)
        cond = cond.expand(batch_size, *cond.shape[1:]).repeat_interleave(num_videos_per_prompt, dim=0)
        if do_classifier_free_guidance:
            cond = torch.cat([cond, cond])  # the unconditional branch keeps the control (as the release does)
        return cond

    def _embed_control(self, controlnet_cond: torch.Tensor, same_halves: bool) -> torch.Tensor:
        """The ControlNet's conditioning embedding. When both CFG halves carry the same control (as
        :meth:`encode_control` makes them), only the first half is embedded and kept; the ControlNet adds it to
        both."""
        controlnet_cond = controlnet_cond.to(self.controlnet.dtype)
        if same_halves:
            return self.controlnet.embed_condition(controlnet_cond[: controlnet_cond.shape[0] // 2])
        return self.controlnet.embed_condition(controlnet_cond)

    def prepare_ttm(self, reference, reference_mask, schedule: TTMSchedule, num_videos: int, height: int,
                    width: int, device: torch.device, dtype: torch.dtype, generator, noise: torch.Tensor | None,
                    chunk_size: int) -> TTMGuidance:
        """The TTM guidance for ``num_videos`` videos (each image's videos together): the reference latents, the mask
        on the latent grid, and the fixed noise (``noise``, the pipeline's ``latents`` argument, or drawn)."""
        ref = encode_reference(self.vae, reference, height, width, device, dtype, chunk_size)
        mask = torch.as_tensor(reference_mask).to(torch.bool)
        mask = mask if mask.ndim == 4 else mask.unsqueeze(0)
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        mask = latent_mask(mask, h, w).to(device)
        per_image = num_videos // max(ref.shape[0], mask.shape[0])
        ref = ref.expand(num_videos // per_image, *ref.shape[1:]).repeat_interleave(per_image, dim=0)
        mask = mask.expand(num_videos // per_image, *mask.shape[1:]).repeat_interleave(per_image, dim=0)
        if noise is None:
            noise = randn_tensor(tuple(ref.shape), generator=generator, device=device, dtype=dtype)
        elif tuple(noise.shape) != tuple(ref.shape):
            raise ValueError(f"latents (the fixed noise of TTM) must be {tuple(ref.shape)}, got {tuple(noise.shape)}")
        return TTMGuidance(ref, mask, noise.to(device=device, dtype=dtype), self.scheduler.sigmas, schedule)

    def _clip_input(self, image):
        """SVD resizes PIL input to 224 for CLIP inside _encode_image; give tensors the same treatment."""
        if not isinstance(image, torch.Tensor):
            return image
        image = image if image.ndim == 4 else image.unsqueeze(0)
        image = _resize_with_antialiasing(image.float() * 2.0 - 1.0, (CLIP_SIZE, CLIP_SIZE))
        return (image + 1.0) / 2.0

    def _image_latents(self, image, height: int, width: int, noise_aug_strength: float, generator,
                       device: torch.device, dtype: torch.dtype, videos: int, do_cfg: bool,
                       num_frames: int) -> torch.Tensor:
        """The VAE latents of the noise-augmented image, for every frame and the whole CFG batch (zeros for the
        unconditional half, as SVD): (N or 2N, F, C, h, w)."""
        image = image if not (isinstance(image, torch.Tensor) and image.ndim == 3) else image.unsqueeze(0)
        vae_input = self.video_processor.preprocess(image, height=height, width=width).to(device)
        noise = randn_tensor(vae_input.shape, generator=generator, device=device, dtype=vae_input.dtype)
        vae_input = vae_input + noise_aug_strength * noise
        needs_upcasting = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if needs_upcasting:
            self.vae.to(dtype=torch.float32)
        image_latents = self._encode_vae_image(vae_input, device, 1, False).to(dtype)
        if needs_upcasting:
            self.vae.to(dtype=torch.float16)
        image_latents = image_latents.repeat_interleave(videos, dim=0)  # in the image embeddings' order
        if do_cfg:
            image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
        return image_latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    @explain_oom
    def __call__(
        self,
        image: PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor,
        control: ControlSignal | torch.Tensor | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = NUM_INFERENCE_STEPS,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = FPS,
        motion_bucket_id: int = MOTION_BUCKET_ID,
        noise_aug_strength: float = NOISE_AUG_STRENGTH,
        controlnet_conditioning_scale: float = 1.0,
        guidance: str = DEFAULT_GUIDANCE,
        reference: np.ndarray | torch.Tensor | None = None,
        reference_mask: np.ndarray | torch.Tensor | None = None,
        tweak_fraction: float = TWEAK_FRACTION,
        tstrong_fraction: float = TSTRONG_FRACTION,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int | None = None,
        num_videos_per_prompt: int = 1,
        output_type: str = "pil",
        callback_on_step_end: Callable[[LeviTorPipeline, int, torch.Tensor, dict], dict | None] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
    ) -> LeviTorPipelineOutput | Any:
        """Generate a video from ``image`` that follows ``control`` (and/or, with TTM, the warped ``reference``).

        image: PIL image(s), or a (3, H, W) / (B, 3, H, W) tensor in [0, 1]; resized to height x width.
        control: a :class:`ControlSignal`, or its encoding (F, C, H, W) / (B, F, C, H, W) with raw values; needed by
            the ControlNet modes, left out for ``guidance="ttm"``.
        num_frames, height, width: default to the control's (the reference's without a control).
        fps: the playback rate to condition on (SVD was trained on fps - 1, which is what the UNet sees).
        controlnet_conditioning_scale: scales the ControlNet's residuals; 0 skips the ControlNet (plain SVD).
        guidance: "controlnet" (the release's), "ttm" (training-free, no ControlNet) or "controlnet+ttm"
            (:mod:`levitor.generation.guidance`).
        reference, reference_mask: for the TTM modes, the warped frames (F, H, W, 3) (uint8, or float in [0, 1])
            and the moved objects' pixels (F, H, W) bool, both from one render (``warped_reference``), optionally
            with a batch dimension; any size (resized).
        tweak_fraction, tstrong_fraction: TTM's schedule as fractions of the steps: sampling starts from the
            reference noised to step ``round(tweak_fraction * num_inference_steps)`` (fewer steps run); the latents
            inside the mask are pinned to the re-noised reference until step ``round(tstrong_fraction * ...)``.
        latents: the initial noise (standard normal, (N, F, 4, h, w)); with TTM, the fixed noise that noises the
            reference at every level.
        decode_chunk_size: frames per VAE decode call; default the preset's (``default``: all frames at once, as the
            release decodes; ``low_vram``: 2, which changes the video slightly: the temporal decoder mixes the frames
            within a call). The reference is encoded in chunks of at most this size (and of
            ``levitor.generation.ttm.ENCODE_CHUNK``).
        num_videos_per_prompt: videos per image (different noise, the same image and control), as in SVD.
        callback_on_step_end: called as ``f(pipe, i, t, tensors)`` after each step run (``i`` counts the steps run,
            from 0; TTM skips the first ones) with the tensors named in ``callback_on_step_end_tensor_inputs``
            (after TTM's pinning); may return a dict of replacements. Set ``pipe._interrupt = True`` inside it to
            stop early.
        Returns ``.frames``: (N, F, height, width, 3) floats in [0, 1] for "np", (N, F, 3, height, width) for
        "pt", N lists of PIL images for "pil", latents (N, F, 4, h, w) for "latent"; N = images x
        num_videos_per_prompt, each image's videos together.
        """
        # 1. Check inputs (nothing has touched the GPU yet); the size defaults to the control's
        check_guidance(guidance, tweak_fraction, tstrong_fraction)
        check_has_controlnet(guidance, self.controlnet is not None)
        height, width, num_frames = self._video_size(control, reference, reference_mask, guidance, height, width,
                                                     num_frames)
        callback_names = list(callback_on_step_end_tensor_inputs or (["latents"] if callback_on_step_end else []))
        self.check_inputs(image, control, height, width, num_frames, num_inference_steps, decode_chunk_size,
                          output_type, callback_names, guidance, reference, reference_mask, tweak_fraction,
                          tstrong_fraction, num_videos_per_prompt)
        decode_chunk_size = decode_chunk_size or self._preset_decode_chunk_size or num_frames
        batch_size, videos = image_batch_size(image), num_videos_per_prompt
        device = self._execution_device
        self._guidance_scale = max_guidance_scale  # a number until the ramp, so do_classifier_free_guidance works
        do_cfg = self.do_classifier_free_guidance
        self._interrupt = False

        # 2. Encode the image: CLIP embedding and noise-augmented VAE latents (zeros for the unconditional branch)
        image_embeddings, image_latents = self.encode_image_conditioning(
            image, height, width, num_frames, noise_aug_strength, generator, device, videos, do_cfg)
        dtype = image_embeddings.dtype

        # 3. Prepare the control (the ControlNet modes) and the added time ids: fps - 1, motion bucket, noise
        controlnet_cond = None
        if uses_controlnet(guidance):
            controlnet_cond = self.encode_control(control, height, width, batch_size, device, dtype, do_cfg, videos)
        added_time_ids = self._get_add_time_ids(fps - 1, motion_bucket_id, noise_aug_strength, dtype, batch_size,
                                                videos, do_cfg).to(device)
        cond = Conditioning(image_embeddings, image_latents, added_time_ids, controlnet_cond, do_cfg)

        # 4. Timesteps and initial latents: noise, or (TTM) the warped reference noised to the start step's level
        timesteps, latents, ttm = self.prepare_sampling(
            guidance, num_inference_steps, tweak_fraction, tstrong_fraction, reference, reference_mask,
            batch_size * videos, num_frames, height, width, device, dtype, generator, latents, decode_chunk_size)

        # 5. Guidance scale ramped from the first frame to the last (SVD's)
        guidance_scale = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames).to(device, dtype)
        self._guidance_scale = _append_dims(guidance_scale.unsqueeze(0).repeat(batch_size * videos, 1), latents.ndim)

        # 6. Denoise
        scale = controlnet_conditioning_scale if uses_controlnet(guidance) else 0
        latents = self.denoise(latents, timesteps, cond, scale, ttm, callback_on_step_end, callback_names)

        # 7. Decode
        frames = self.decode_video(latents, num_frames, decode_chunk_size, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return LeviTorPipelineOutput(frames=frames)

    def _video_size(self, control, reference, reference_mask, guidance: str, height: int | None, width: int | None,
                    num_frames: int | None) -> tuple[int, int, int]:
        """(height, width, num_frames) as asked, each defaulting to the control's (the reference's without one)."""
        default_h, default_w, default_f = steering_size(control, reference, reference_mask, guidance)
        return (default_h if height is None else height, default_w if width is None else width,
                default_f if num_frames is None else num_frames)

    def encode_image_conditioning(self, image, height: int, width: int, num_frames: int, noise_aug_strength: float,
                                  generator, device: torch.device, videos: int, do_cfg: bool
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image as SVD conditions on it, for the whole CFG batch: the CLIP embedding (cross-attention context)
        and the VAE latents of the noise-augmented image (concatenated to every frame's latents)."""
        image_embeddings = self._encode_image(self._clip_input(image), device, videos, do_cfg)
        image_latents = self._image_latents(image, height, width, noise_aug_strength, generator, device,
                                            image_embeddings.dtype, videos, do_cfg, num_frames)
        return image_embeddings, image_latents

    def prepare_sampling(self, guidance: str, num_inference_steps: int, tweak_fraction: float,
                         tstrong_fraction: float, reference, reference_mask, num_videos: int, num_frames: int,
                         height: int, width: int, device: torch.device, dtype: torch.dtype, generator,
                         latents: torch.Tensor | None, chunk_size: int
                         ) -> tuple[torch.Tensor, torch.Tensor, TTMGuidance | None]:
        """(timesteps to run, initial latents, TTM guidance or None). The timesteps are the EDM Euler sampler's
        (Karras sigmas from the scheduler config); TTM starts later, from the reference noised to that level."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if not uses_ttm(guidance):
            latents = self.prepare_latents(num_videos, num_frames, self.unet.config.in_channels, height, width, dtype,
                                           device, generator, latents)
            return timesteps, latents, None
        schedule = TTMSchedule.from_fractions(tweak_fraction, tstrong_fraction, num_inference_steps)
        ttm = self.prepare_ttm(reference, reference_mask, schedule, num_videos, height, width, device, dtype,
                               generator, latents, chunk_size)
        self.scheduler.set_begin_index(schedule.start)
        return timesteps[schedule.start:], ttm.start_latents(), ttm

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                controlnet_conditioning_scale: float, ttm: TTMGuidance | None = None,
                callback_on_step_end: Callable | None = None, callback_names: list[str] | None = None
                ) -> torch.Tensor:
        """The sampling loop: one UNet call per step (the ControlNet's beside it, unless its scale is 0), TTM's
        pinning, then the step-end callback; stops after a step that sets ``_interrupt``."""
        if controlnet_conditioning_scale != 0:  # it depends on the control alone: embedded once, not every step
            cond.cond_embedding = self._embed_control(cond.controlnet_cond, same_halves=cond.do_cfg)
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                noise_pred = self.predict_noise(latents, t, cond, controlnet_conditioning_scale)
                latents = self.scheduler.step(noise_pred, t, latents).prev_sample
                if ttm is not None:  # TTM's pinning is the first step-end callback
                    latents = ttm(self, i, t, {"latents": latents})["latents"]
                if callback_on_step_end is not None:
                    latents = self._step_end(callback_on_step_end, callback_names or [], i, t, latents, cond)
                progress_bar.update()
                if self.interrupt:
                    break
        cond.cond_embedding = None  # not needed for decoding
        return latents

    def predict_noise(self, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      controlnet_conditioning_scale: float) -> torch.Tensor:
        """The UNet's prediction at step ``t`` with the ControlNet's residuals and classifier-free guidance. Each
        model gets its inputs in its own dtype (a per-component dtype dict may give them different ones)."""
        model_input = torch.cat([latents] * 2) if cond.do_cfg else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        model_input = torch.cat([model_input, cond.image_latents], dim=2)
        unet_dtype = self.unet.dtype
        down_residuals = mid_residual = None
        if cond.cond_embedding is not None:
            dtype = self.controlnet.dtype
            down_residuals, mid_residual = self.controlnet(
                model_input.to(dtype), t, cond.image_embeddings.to(dtype), None, cond.added_time_ids.to(dtype),
                conditioning_scale=controlnet_conditioning_scale, return_dict=False,
                cond_embedding=cond.cond_embedding,
            )
            down_residuals = [r.to(unet_dtype) for r in down_residuals]
            mid_residual = mid_residual.to(unet_dtype)
        noise_pred = self.unet(
            model_input.to(unet_dtype), t, encoder_hidden_states=cond.image_embeddings.to(unet_dtype),
            added_time_ids=cond.added_time_ids.to(unet_dtype), down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual, return_dict=False,
        )[0].to(latents.dtype)
        if cond.do_cfg:
            uncond, conditional = noise_pred.chunk(2)
            noise_pred = uncond + self.guidance_scale * (conditional - uncond)
        return noise_pred

    def _step_end(self, callback: Callable, names: list[str], i: int, t: torch.Tensor, latents: torch.Tensor,
                  cond: Conditioning) -> torch.Tensor:
        """Run the step-end callback on the tensors it asked for; take what it returns in their place."""
        tensors = dict(latents=latents, **cond.tensors())
        replaced = callback(self, i, t, {k: tensors[k] for k in names}) or {}
        for name in ("image_latents", "image_embeddings", "added_time_ids"):
            setattr(cond, name, replaced.get(name, getattr(cond, name)))
        if "controlnet_cond" in replaced and cond.cond_embedding is not None:
            cond.controlnet_cond = replaced["controlnet_cond"]
            cond.cond_embedding = self._embed_control(cond.controlnet_cond, same_halves=False)
        return replaced.get("latents", latents)

    def decode_video(self, latents: torch.Tensor, num_frames: int, decode_chunk_size: int,
                     output_type: str) -> torch.Tensor | np.ndarray | list | Any:
        """The frames in ``output_type`` ("latent": the latents themselves)."""
        if output_type == "latent":
            return latents
        frames = self.decode_latents(latents.to(self.vae.dtype), num_frames, decode_chunk_size)
        return self.video_processor.postprocess_video(video=frames, output_type=output_type)

