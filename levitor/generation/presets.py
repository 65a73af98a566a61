"""Generation presets, defined once: memory/speed settings applied together by
:meth:`levitor.generation.pipeline.LeviTorPipeline.apply_preset`. Light to import (the CLI lists the names)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from levitor.defaults import DEFAULT_SIZE, RELEASE_DEMO_SIZE


@dataclass(frozen=True)
class Preset:
    """Memory/speed settings applied together by :meth:`LeviTorPipeline.apply_preset`."""

    dtype: str                  # weights and activations on the GPU (on CPU the pipeline stays float32)
    cpu_offload: bool           # keep models in CPU RAM, move each to the GPU only while it runs
    decode_chunk_size: int | None  # frames per temporal-VAE decode call (None: all at once): the decoder's only
    # memory knob. The temporal decoder mixes the frames within a call, so chunking changes the video slightly
    forward_chunking: bool      # run transformer feed-forwards one frame at a time (exact; lower peak memory)
    label: str = ""              # what a menu says about it

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


PRESETS = {
    # everything resident on the GPU: fastest; all frames decoded in one call, as the release decodes (so the
    # released weights give the release's video); `levitor vram` predicts the memory (docs/weights.md)
    "default": Preset(dtype="float16", cpu_offload=False, decode_chunk_size=None, forward_chunking=False,
                      label="fastest"),
    # a 16 GB Colab T4: models wait in CPU RAM (UNet + ControlNet stay on the GPU through the denoising loop),
    # 2-frame VAE decode (the video differs slightly from an all-frames decode), chunked feed-forwards; slower
    # (offload transfers, smaller kernels)
    "low_vram": Preset(dtype="float16", cpu_offload=True, decode_chunk_size=2, forward_chunking=True,
                       label="16 GB GPU"),
}


def set_forward_chunking(model, enabled: bool) -> None:
    """Feed-forward chunking over the batch-of-frames dimension, one frame per chunk (always divides).

    Chunking a feed-forward splits a pointwise op, so results equal the unchunked ones up to float rounding.
    """
    for module in model.modules():
        if hasattr(module, "set_chunk_feed_forward"):
            module.set_chunk_feed_forward(1 if enabled else None, dim=0)


PRESET_NAMES = tuple(PRESETS)  # fastest first
DEFAULT_PRESET = "default"
LOW_MEMORY_PRESET = "low_vram"  # what an out-of-memory error suggests


def explain_oom(call: Callable) -> Callable:
    """Decorates a pipeline's __call__: CUDA out-of-memory becomes an error that says which preset or size to try."""

    @functools.wraps(call)
    def wrapper(self, *args, **kwargs):
        import torch

        try:
            return call(self, *args, **kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise RuntimeError(
                f"CUDA ran out of memory generating with preset '{self.preset}' ({exc}). Try "
                f"pipe.apply_preset({LOW_MEMORY_PRESET!r}) (fp16, model CPU offload, 2-frame VAE decode, chunked "
                f"feed-forwards), a smaller height/width (e.g. {DEFAULT_SIZE.height}x{DEFAULT_SIZE.width} or the "
                f"release's {RELEASE_DEMO_SIZE.height}x{RELEASE_DEMO_SIZE.width}), fewer frames, "
                "or a smaller decode_chunk_size; and move depth/segmentation models off the GPU first. "
                "`levitor vram --frames F --height H --width W` predicts what each preset needs."
            ) from exc

    return wrapper
