"""The mini model: its fixed VAE, its input scaling, and the shipped weights generating a video."""


import numpy as np
import pytest
import torch

from levitor.generation.mini import (
    CONTROL_INPUT_SCALE,
    MINI_WEIGHTS,
    MiniControlNetSVD,
    PatchVAE,
    generate_mini,
    load_mini_pipeline,
    mini_info,
    resample_frames,
)
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.testing.tiny import tiny_signal


def test_patch_vae_is_lossless_and_reports_its_scale():
    vae = PatchVAE(patch_size=4)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    z = vae.encode(x).latent_dist.mode()
    assert z.shape == (3, 48, 8, 8)
    torch.testing.assert_close(vae.decode(z, num_frames=3).sample, x)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 4  # what diffusers' pipelines read as the VAE scale


def test_mini_controlnet_only_rescales_the_raw_control():
    from levitor.testing.tiny import tiny_unet

    unet = tiny_unet()
    torch.manual_seed(0)
    mini = MiniControlNetSVD.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    plain = ControlNetSVD.from_config(mini.config)
    plain.load_state_dict(mini.state_dict())
    for conv in [*mini.controlnet_down_blocks, mini.controlnet_mid_block, mini.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(conv.weight, std=0.1)  # as if trained, so the control matters
    plain.load_state_dict(mini.state_dict())
    sample, emb = torch.randn(1, 2, 8, 8, 8), torch.randn(1, 1, 32)
    ids = torch.tensor([[5.0, 100.0, 0.02]])
    cond = torch.rand(1, 2, 3, 64, 64) * 255
    scaled = cond * torch.tensor(CONTROL_INPUT_SCALE).view(1, 1, 3, 1, 1)
    a = mini(sample, 1.0, emb, cond, ids, return_dict=False)
    b = plain(sample, 1.0, emb, scaled, ids, return_dict=False)
    torch.testing.assert_close(a[1], b[1])
    assert not torch.allclose(a[1], plain(sample, 1.0, emb, cond, ids, return_dict=False)[1])


def test_shipped_weights_are_small_and_complete():
    files = [p for p in MINI_WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50 * 2**20
    info = mini_info()
    assert info["trained_steps"] > 0 and (info["height"], info["width"]) == (32, 32)
    for sub in ("unet", "controlnet", "image_encoder"):
        assert (MINI_WEIGHTS / sub / "config.json").exists()


def test_shipped_model_generates_two_steps():
    pipe = load_mini_pipeline()
    info = pipe.mini_info
    signal = resample_frames(tiny_signal(num_frames=16, height=64, width=64), info["num_frames"])
    image = torch.rand(3, info["height"], info["width"])
    frames = generate_mini(pipe, image, signal, num_inference_steps=2)
    assert frames.shape == (info["num_frames"], info["height"], info["width"], 3)
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    zero = generate_mini(pipe, image, signal, num_inference_steps=2, conditioning_scale=0.0)
    assert np.abs(frames - zero).max() > 1e-3  # the ControlNet changes the video


def test_generate_with_mini_matches_the_scene_and_reports_progress(tmp_path):
    from levitor.bundled import bundled_scene
    from levitor.generation.generate import generate

    scene = bundled_scene(num_frames=16)
    calls = []
    res = generate(scene, tmp_path, weights="mini", device="cpu", callback=lambda s, t: calls.append((s, t)))
    info = mini_info()
    assert res.frames.shape == (info["num_frames"], scene.height, scene.width, 3)  # enlarged to the scene's size
    assert calls == [(s, info["num_inference_steps"]) for s in range(1, info["num_inference_steps"] + 1)]
    assert res.used_model and res.video_path.stat().st_size > 0
    # nearest-neighbour enlargement: each of the 32 model rows is a band of identical scene rows
    band = scene.height // info["height"]
    assert (res.frames[:, :band] == res.frames[:, :1]).all()
    with pytest.raises(ValueError, match="steps must be at least 1"):
        generate(scene, tmp_path, weights="mini", device="cpu", steps=0)


def test_x0_unet_hands_the_sampler_the_v_whose_denoised_estimate_is_its_output():
    """MiniX0UNetSVD: the scheduler's v-prediction formula, applied to what it returns, gives back exactly the
    network's own output (the clean latents), at every noise level."""
    from levitor.generation.mini import MiniX0UNetSVD, mini_unet_config
    from levitor.models.unet_svd import ControlledUNetSVD

    torch.manual_seed(0)
    unet = MiniX0UNetSVD(**mini_unet_config(num_frames=2, channels=(32, 32), heads=(2, 2), sample_size=8))
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.05)  # an output that is not all zeros
    noisy = torch.randn(1, 2, 48, 8, 8) * 3
    image_latents = torch.randn(1, 2, 48, 8, 8)
    emb, ids = torch.randn(1, 1, 32), torch.tensor([[5.0, 100.0, 0.02]])
    for sigma in (0.002, 0.5, 4.0, 40.0):
        s = torch.tensor(sigma)
        model_input = torch.cat([noisy / (s**2 + 1).sqrt(), image_latents], dim=2)
        t = 0.25 * s.log()
        v = unet(model_input, t, emb, ids).sample
        x0 = ControlledUNetSVD.forward(unet, model_input, t, emb, ids, return_dict=False)[0]
        denoised = v * (-s / (s**2 + 1).sqrt()) + noisy / (s**2 + 1)  # EulerDiscreteScheduler, v_prediction
        torch.testing.assert_close(denoised, x0, rtol=1e-4, atol=1e-4 * max(1.0, sigma))


def test_shipped_model_is_clean_its_video_does_not_carry_the_initial_noise():
    """The grain was the initial noise carried into the result: two seeds gave videos 23 grey levels apart and a
    grain (frame against its 3x3 median) of 13. The shipped x0 model, sampled down to sigma 0.002: 6.5 and 3.0."""
    from scipy.ndimage import median_filter

    from levitor.bundled import bundled_scene
    from levitor.engine import Engine
    from levitor.generation.mini import MiniX0UNetSVD, even_frames

    pipe = load_mini_pipeline()
    assert isinstance(pipe.unet, MiniX0UNetSVD) and pipe.mini_info["sigma_min"] <= 0.01
    scene = bundled_scene()
    signal = Engine(scene).update().select_frames(even_frames(scene.num_frames, pipe.mini_info["num_frames"])).signal
    from PIL import Image

    image = Image.fromarray(scene.image)
    a, b = (generate_mini(pipe, image, signal, seed=s) * 255 for s in (1, 2))
    assert np.abs(a - b).mean() < 10
    grain = np.abs(a - median_filter(a, size=(1, 3, 3, 1))).mean()
    assert grain < 5
