"""Generation presets, defined once: memory/speed settings applied together by
:meth:`levitor.generation.pipeline.LeviTorPipeline.apply_preset`. Light to import (the CLI lists the names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Memory/speed settings applied together by :meth:`LeviTorPipeline.apply_preset`."""

    dtype: str                  # weights and activations on the GPU (on CPU the pipeline stays float32)
    cpu_offload: bool           # keep models in CPU RAM, move each to the GPU only while it runs
    decode_chunk_size: int      # frames per temporal-VAE decode call: the decoder's only memory knob
    forward_chunking: bool      # run transformer feed-forwards one frame at a time (exact; lower peak memory)
    label: str = ""              # what a menu says about it

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


PRESETS = {
    # everything resident on the GPU: fastest; 8.9 GB at 16x320x512 (predicted: `levitor vram`, docs/weights.md)
    "default": Preset(dtype="float16", cpu_offload=False, decode_chunk_size=8, forward_chunking=False,
                      label="fastest"),
    # a 16 GB Colab T4: models wait in CPU RAM (UNet + ControlNet stay on the GPU through the denoising loop),
    # 2-frame VAE decode, chunked feed-forwards; slower (offload transfers, smaller kernels); 5.8 GB predicted
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
