"""The meta-device memory trace: counting rules, agreement with a real run, and the presets' predictions."""

import pytest
import torch

from levitor.generation.memtrace import (
    LiveBytes,
    MemoryTrace,
    fused_attention,
    predict_generation_memory,
    recommend_preset,
    trace_models,
)
from levitor.generation.pipeline import PRESETS
from levitor.testing.tiny import TINY_FRAMES, random_svd_xt_pipeline, tiny_pipeline, tiny_signal

MB = 1_000_000


def test_live_bytes_counts_new_storages_until_freed():
    with LiveBytes("cpu") as mode:
        a = torch.empty(MB, dtype=torch.uint8)
        view = a[10:].view(-1)              # a view: no new storage
        assert mode.live == MB
        b = a.float()                       # 4 MB more
        assert mode.live == 5 * MB
        del b
        assert mode.live == MB
        c = torch.empty(2 * MB, dtype=torch.uint8)
    assert mode.trace.peak_bytes == 5 * MB and mode.live == 3 * MB
    del a, view, c


def test_weights_count_only_through_the_residency():
    weight = torch.empty(MB, dtype=torch.uint8)
    with LiveBytes("cpu", resident_weights=lambda: 7 * MB) as mode:
        mode.ignore([weight])
        t = weight.view(1, -1)   # a view of a weight (as F.linear's transpose) is not new
        assert mode.live == 0
        _ = torch.empty(MB, dtype=torch.uint8)
    assert mode.trace.peak_bytes == 8 * MB and mode.trace.peak_weights_bytes == 7 * MB
    del t


def _model_inputs(pipe, device):
    frames, h, w = TINY_FRAMES, 8, 8
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, frames, 8, h, w, generator=g)
    hidden = torch.randn(2, 1, pipe.unet.config.cross_attention_dim, generator=g)
    time_ids = torch.tensor([[5.0, 100.0, 0.02]] * 2)
    cond = torch.rand(2, frames, 3, 64, 64, generator=g)
    return [x.to(device) for x in (sample, hidden, cond, time_ids)]


def _traced_forward(pipe, device_type: str) -> int:
    models = dict(unet=pipe.unet, controlnet=pipe.controlnet)
    sample, hidden, cond, time_ids = _model_inputs(pipe, device_type)
    with torch.no_grad(), fused_attention(), trace_models(models, None, device_type) as (mode, _):
        down, mid = pipe.controlnet(sample, 10.0, hidden, cond, time_ids, return_dict=False)
        out = pipe.unet(sample, 10.0, encoder_hidden_states=hidden, added_time_ids=time_ids,
                        down_block_additional_residuals=down, mid_block_additional_residual=mid,
                        return_dict=False)[0]
        assert out.shape == sample[:, :, :4].shape
    return mode.trace


def test_the_meta_trace_matches_a_real_run():
    """The premise: on the meta device the models allocate exactly what they allocate when they compute."""
    pipe = tiny_pipeline(seed=0)
    real = _traced_forward(pipe, "cpu")
    meta = _traced_forward(pipe.to("meta"), "meta")
    assert real.peak_bytes > 0
    assert meta.peak_bytes == real.peak_bytes and meta.by_model == real.by_model


def test_presets_predicted_for_the_tiny_pipeline():
    pipe = tiny_pipeline(seed=0).to("meta")
    default, moves = predict_generation_memory(pipe, "default", TINY_FRAMES, 64, 64)
    assert moves == []  # nothing moves: every model stays on the GPU
    low, moves = predict_generation_memory(pipe, "low_vram", TINY_FRAMES, 64, 64, control=tiny_signal())
    assert moves == ["image_encoder on", "vae on", "controlnet on", "image_encoder off", "unet on", "unet off"]
    assert set(default.by_model) >= {"image_encoder", "vae", "controlnet", "unet"}
    assert 0 < low.peak_bytes < default.peak_bytes
    assert default.peak_weights_bytes == sum(
        sum(t.nbytes for t in [*m.parameters(), *m.buffers()]) for m in
        (pipe.unet, pipe.controlnet, pipe.vae, pipe.image_encoder))
    assert pipe.unet.dtype == PRESETS["low_vram"].torch_dtype


def test_prediction_needs_a_meta_pipeline():
    with pytest.raises(ValueError, match="meta device"):
        predict_generation_memory(tiny_pipeline(seed=0), "default", TINY_FRAMES, 64, 64)


def test_low_vram_is_predicted_to_fit_a_t4_at_the_benchmark_size():
    """The real SVD-xt architecture (meta: no memory), 16x320x512, CFG: the issue's low_vram target (<= 14 GB)."""
    pipe = random_svd_xt_pipeline("meta", torch.float16)
    low, _ = predict_generation_memory(pipe, "low_vram", 16, 320, 512)
    assert low.peak_bytes <= 14e9
    assert 4.5e9 < low.peak_weights_bytes < 5e9  # UNet + ControlNet + VAE in fp16; CLIP has left


def test_recommended_preset_is_the_fastest_that_fits():
    traces = {"default": MemoryTrace(peak_bytes=int(8.9e9)), "low_vram": MemoryTrace(peak_bytes=int(5.8e9))}
    assert recommend_preset(int(80e9), traces)[0] == "default"
    preset, message = recommend_preset(int(8e9), traces)  # a T4 with the depth and SAM models loaded
    assert preset == "low_vram" and "5.8 GB" in message
    preset, message = recommend_preset(int(6e9), traces)  # 5.8 + 1 GB reserve does not fit
    assert preset is None and "fewer frames" in message



def test_training_free_guidance_is_predicted_without_controlnet_weights_and_with_the_reference_encode():
    """guidance 'ttm' on a pipeline without a ControlNet: its weights are not counted; the reference video's VAE
    encode runs (4 frames per call) and is no larger than the decode (all frames at once, default preset)."""
    with_controlnet = tiny_pipeline(seed=0).to("meta")
    controlnet_bytes = sum(t.nbytes for t in [*with_controlnet.controlnet.parameters(),
                                              *with_controlnet.controlnet.buffers()]) // 2  # counted in fp16
    plain, _ = predict_generation_memory(with_controlnet, "default", 8, 64, 64)
    both, _ = predict_generation_memory(with_controlnet, "default", 8, 64, 64, guidance="controlnet+ttm")
    with_controlnet.register_modules(controlnet=None)
    ttm, moves = predict_generation_memory(with_controlnet, "default", 8, 64, 64, guidance="ttm")
    assert "controlnet" not in ttm.by_model and moves == []
    assert ttm.peak_weights_bytes == plain.peak_weights_bytes - controlnet_bytes
    assert both.peak_bytes >= plain.peak_bytes and ttm.peak_bytes < plain.peak_bytes
    _, moves = predict_generation_memory(with_controlnet, "low_vram", 8, 64, 64, guidance="ttm")
    assert moves == ["image_encoder on", "vae on", "image_encoder off", "unet on", "unet off"]
