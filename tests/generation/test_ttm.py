"""Training-free guidance (Time-to-Move) on tiny random SVD weights with no ControlNet, and on the mini model: the
start from the noised reference, the pinning inside the mask, plain sampling after tstrong, the inputs' checks, the
warped reference from the engine, and `levitor generate --guidance ttm` as a user runs it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel

from levitor.engine import Engine
from levitor.generation.guidance import TSTRONG_FRACTION, TWEAK_FRACTION, TTMSchedule, schedule_index
from levitor.generation.pipeline import LeviTorPipeline
from levitor.generation.reference import warped_reference
from levitor.generation.ttm import MASK_CELL_FRACTION, latent_mask
from levitor.testing.compare import assert_same_output
from levitor.testing.tiny import TINY_FRAMES, save_tiny_pipeline, tiny_image, tiny_scheduler, tiny_signal
from levitor.weights import WeightsNotFoundError
from tests.conftest import make_scene

REPO = Path(__file__).resolve().parents[2]
STEPS = 6
TWEAK, TSTRONG = 2 / 6, 5 / 6  # start at step 2, pin after steps 2, 3 and 4, step 5 free
START, STOP = 2, 5


@pytest.fixture(scope="module")
def svd_folder(tmp_path_factory):
    """A tiny random SVD in the hub's layout, and no LeviTor ControlNet anywhere."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny"), layout="official")["base"]


@pytest.fixture(scope="module")
def pipe(svd_folder):
    pipe = LeviTorPipeline.from_pretrained(svd_folder, controlnet=None, allow_download=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def inputs():
    """The image, a warped reference (random frames: any content is pinned alike) and a mask that covers whole
    latent cells (8x8 pixels), at another place in every frame."""
    g = np.random.default_rng(0)
    reference = g.integers(0, 256, (TINY_FRAMES, 64, 64, 3), dtype=np.uint8)
    mask = np.zeros((TINY_FRAMES, 64, 64), bool)
    cells = np.zeros((TINY_FRAMES, 8, 8), bool)
    for f in range(TINY_FRAMES):
        mask[f, 16:40, 8 + 8 * f:32 + 8 * f] = True
        cells[f, 2:5, 1 + f:4 + f] = True
    noise = torch.randn(1, TINY_FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    return tiny_image(), reference, mask, torch.from_numpy(cells)[None, :, None], noise


def _reference_latents(vae, reference: np.ndarray) -> torch.Tensor:
    """The reference's latents computed here, from the VAE: (1, F, 4, 8, 8)."""
    x = torch.from_numpy(reference).permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
    with torch.no_grad():
        return (vae.encode(x).latent_dist.mode() * vae.config.scaling_factor)[None]


def _sigmas(steps: int = STEPS) -> torch.Tensor:
    scheduler = tiny_scheduler()
    scheduler.set_timesteps(steps)
    return scheduler.sigmas


def _ttm_run(pipe, inputs, guidance="ttm", **kwargs):
    """Run TTM and record what the UNet saw first, the sampler's own result of every step (before pinning) and the
    latents after each step (after pinning, as a user callback sees them)."""
    image, reference, mask, _, noise = inputs
    unet_inputs, stepped, after = [], [], []
    unet, scheduler = pipe.unet, pipe.scheduler
    unet_forward, step = unet.forward, scheduler.step

    def unet_spy(sample, timestep, *args, **kw):
        unet_inputs.append((sample.clone(), float(timestep)))
        return unet_forward(sample, timestep, *args, **kw)

    def step_spy(*args, **kw):
        out = step(*args, **kw)
        stepped.append(out.prev_sample.clone())
        return out

    unet.forward, scheduler.step = unet_spy, step_spy
    try:
        latents = pipe(image, guidance=guidance, reference=reference, reference_mask=mask, latents=noise.clone(),
                       tweak_fraction=TWEAK, tstrong_fraction=TSTRONG, num_inference_steps=STEPS,
                       output_type="latent", generator=torch.Generator().manual_seed(0),
                       callback_on_step_end=lambda p, i, t, tensors: after.append(tensors["latents"].clone()) or {},
                       **kwargs).frames
    finally:
        del unet.forward, scheduler.step  # back to the class's methods
    return unet_inputs, stepped, after, latents


@pytest.fixture(scope="module")
def ttm_run(pipe, inputs):
    return _ttm_run(pipe, inputs)


def test_sampling_starts_from_the_reference_noised_to_the_tweak_level(pipe, inputs, ttm_run):
    unet_inputs, _, after, _ = ttm_run
    sigmas = _sigmas()
    expected = _reference_latents(pipe.vae, inputs[1]) + inputs[4] * sigmas[START]
    first, t = unet_inputs[0]
    assert t == pytest.approx(0.25 * np.log(float(sigmas[START])), abs=1e-5)  # SVD's timestep is 0.25 log sigma
    assert len(unet_inputs) == len(after) == STEPS - START  # the steps before tweak are skipped
    scale = (sigmas[START] ** 2 + 1) ** 0.5  # the Euler sampler's input scaling
    for half in first[:, :, :4].chunk(2):  # both CFG halves see the same latents
        assert_same_output(half * scale, expected, rtol=1e-5, atol=1e-4)  # |values| ~ 70: 1e-4 is rounding


def test_masked_latents_are_the_renoised_reference_until_tstrong_and_the_models_elsewhere(pipe, inputs, ttm_run):
    _, stepped, after, latents = ttm_run
    cells = inputs[3].expand_as(after[0])
    ref, noise, sigmas = _reference_latents(pipe.vae, inputs[1]), inputs[4], _sigmas()
    for i, (model, pinned) in enumerate(zip(stepped, after)):
        step = START + i
        if step < STOP:
            assert_same_output(pinned[cells], (ref + noise * sigmas[step + 1])[cells], rtol=1e-5, atol=1e-5)
            assert not torch.allclose(model[cells], pinned[cells], atol=1e-2)  # the model alone went elsewhere
        else:
            assert torch.equal(pinned[cells], model[cells])  # free after tstrong
        assert torch.equal(pinned[~cells], model[~cells])  # outside the mask: the sampler's own result, untouched
    assert torch.equal(latents, after[-1])


def test_after_tstrong_the_steps_are_plain_svds(pipe, inputs, ttm_run):
    """diffusers' own SVD pipeline, the same weights, handed TTM's latents after the last pinned step, samples on
    to the same video."""
    _, _, after, latents = ttm_run
    plain_unet = UNetSpatioTemporalConditionModel.from_config(pipe.unet.svd_config).eval()
    plain_unet.load_state_dict(pipe.unet.state_dict())
    svd = StableVideoDiffusionPipeline(vae=pipe.vae, image_encoder=pipe.image_encoder, unet=plain_unet,
                                       scheduler=tiny_scheduler(), feature_extractor=pipe.feature_extractor)
    svd.set_progress_bar_config(disable=True)
    handed = after[STOP - 1 - START]  # at sigma_STOP, the last pinned latents

    def hand_over(p, i, t, tensors):
        return {"latents": handed.clone()} if i == STOP - 1 else {}

    expected = svd(inputs[0], height=64, width=64, num_frames=TINY_FRAMES, num_inference_steps=STEPS, fps=6,
                   motion_bucket_id=100, noise_aug_strength=0.02, output_type="latent",
                   generator=torch.Generator().manual_seed(0), callback_on_step_end=hand_over).frames
    # two UNet classes with one state dict, one step apart from the hand-over: rounding only
    assert_same_output(latents, expected, rtol=1e-4, atol=1e-4)


def test_pipeline_without_controlnet_loads_from_an_svd_folder_and_saves(pipe, svd_folder, tmp_path, inputs):
    assert pipe.controlnet is None and pipe.control_rules == "levitor"
    pipe.save_pretrained(tmp_path / "saved")
    again = LeviTorPipeline.from_pretrained(tmp_path / "saved", allow_download=False)
    assert again.controlnet is None
    again.set_progress_bar_config(disable=True)
    image, reference, mask, _, noise = inputs
    kwargs = dict(guidance="ttm", reference=reference, reference_mask=mask, num_inference_steps=3,
                  output_type="latent")
    assert_same_output(again(image, latents=noise.clone(), generator=torch.Generator().manual_seed(0), **kwargs).frames,
                       pipe(image, latents=noise.clone(), generator=torch.Generator().manual_seed(0), **kwargs).frames)
    with pytest.raises(ValueError, match="needs a ControlNet, and this pipeline has none"):
        pipe(image, control=tiny_signal())


def test_missing_base_says_ttm_needs_only_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsNotFoundError, match="needs only these Stable Video Diffusion weights") as info:
        LeviTorPipeline.from_pretrained(tmp_path / "no_svd", controlnet=None, allow_download=False)
    assert "LeviTor ControlNet" not in str(info.value).split("needs only")[0]  # only the base is asked for


def test_controlnet_and_ttm_together(inputs, monkeypatch):
    """With a ControlNet, the ControlNet runs every step and the pinning works as without it."""
    from levitor.testing.tiny import tiny_pipeline

    both = tiny_pipeline(seed=0)
    calls = []
    forward = both.controlnet.forward
    monkeypatch.setattr(both.controlnet, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    _, _, after, _ = _ttm_run(both, inputs, guidance="controlnet+ttm", control=tiny_signal())
    assert len(calls) == STEPS - START
    cells = inputs[3].expand_as(after[0])
    noised = _reference_latents(both.vae, inputs[1]) + inputs[4] * _sigmas()[START + 1]
    assert_same_output(after[0][cells], noised[cells], rtol=1e-5, atol=1e-5)


def test_mini_model_pins_its_patch_latents():
    """The mini model without its ControlNet: its patch VAE's latents are the pixels themselves (x4 space-to-depth),
    its UNet predicts x0."""
    from levitor.generation.mini import load_mini_pipeline

    mini = load_mini_pipeline()
    info = mini.mini_info
    F_, H, W = info["num_frames"], info["height"], info["width"]
    g = np.random.default_rng(1)
    reference = g.integers(0, 256, (F_, H, W, 3), dtype=np.uint8)
    mask = np.zeros((F_, H, W), bool)
    mask[:, 8:20, 4:16] = True  # latent cells (4x4 pixels) rows 2..4, columns 1..3
    noise = torch.randn(1, F_, 48, H // 4, W // 4, generator=torch.Generator().manual_seed(2))
    seen = []
    frames = mini(torch.rand(3, H, W, generator=torch.Generator().manual_seed(3)), guidance="ttm",
                  reference=reference, reference_mask=mask, latents=noise.clone(), num_inference_steps=STEPS,
                  tweak_fraction=TWEAK, tstrong_fraction=1.0, min_guidance_scale=1.0, max_guidance_scale=1.0,
                  callback_on_step_end=lambda p, i, t, tensors: seen.append(tensors["latents"].clone()) or {},
                  output_type="np").frames[0]
    pixels = torch.nn.functional.pixel_unshuffle(torch.from_numpy(reference).permute(0, 3, 1, 2).float() / 127.5 - 1,
                                                 4)[None]
    cells = torch.zeros(1, F_, 1, H // 4, W // 4, dtype=torch.bool)
    cells[..., 2:5, 1:4] = True
    cells = cells.expand_as(noise)
    sigmas = mini.scheduler.sigmas
    assert len(seen) == STEPS - START
    for i, latents in enumerate(seen):
        assert_same_output(latents[cells], (pixels + noise * sigmas[START + i + 1])[cells], rtol=1e-5, atol=1e-5)
    # pinned to the end (tstrong 1.0), the masked pixels are the reference's, exactly as the patch VAE decodes them
    np.testing.assert_allclose(frames[:, 8:20, 4:16] * 255, reference[:, 8:20, 4:16], atol=0.01)


def test_schedule_fractions_give_ttms_svd_steps():
    fifty = TTMSchedule.from_fractions(TWEAK_FRACTION, TSTRONG_FRACTION, 50)
    assert (fifty.start, fifty.stop, fifty.steps_run) == (16, 21, 34)  # TTM's published SVD setting
    assert float(_sigmas(50)[fifty.start]) == pytest.approx(74.5, abs=0.1)  # as on SVD-xt's schedule
    assert float(_sigmas(50)[fifty.stop]) == pytest.approx(31.0, abs=0.1)
    assert (schedule_index(0.42, 25), schedule_index(0.32, 25)) == (11, 8)  # rounded half up
    whole = TTMSchedule.from_fractions(1.0, 1.0, 4)
    assert (whole.start, whole.stop) == (3, 4)  # at least one step runs, pinned to the clean reference after it
    assert TTMSchedule.from_fractions(0.0, 0.0, 4).pins_after(0) is False  # tweak == tstrong: nothing pinned


def test_latent_mask_pins_a_cell_from_half_its_area():
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, :8, :4] = True  # half of cell (0, 0)
    mask[0, 8:, 8:11] = True  # 3/8 of cell (1, 1)
    cells = latent_mask(mask, 2, 2)
    assert MASK_CELL_FRACTION == 0.5
    assert cells.shape == (1, 1, 2, 2) and cells[0, 0].tolist() == [[True, False], [False, False]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(guidance="tmm"), "guidance must be one of controlnet, ttm, controlnet\\+ttm"),
        (dict(tweak_fraction=0.6, tstrong_fraction=0.5), "must not exceed tstrong_fraction"),
        (dict(tstrong_fraction=1.5), "tstrong_fraction must be a number in \\[0, 1\\]"),
        (dict(reference=None), "needs reference="),
        (dict(reference_mask="everywhere"), "reference_mask must be a numpy array"),
        (dict(reference=np.zeros((TINY_FRAMES, 64, 64), np.uint8)), "reference must be \\(F, H, W, 3\\)"),
        (dict(reference_mask=np.zeros((TINY_FRAMES, 32, 64), bool)), "reference_mask is 4x32x64 .* the reference is "
                                                                     "4x64x64"),
        (dict(num_frames=2), "the reference has 4 frames but num_frames is 2"),
        (dict(control=tiny_signal()), "runs no ControlNet, so control= would be ignored"),
        (dict(guidance="controlnet+ttm", control=tiny_signal()), "needs a ControlNet, and this pipeline has none"),
        (dict(guidance="controlnet", reference=None, reference_mask=None), "needs a ControlNet"),
    ],
)
def test_bad_inputs_raise_before_any_model_runs(pipe, inputs, monkeypatch, kwargs, match):
    def fail(*args, **kw):
        raise AssertionError("a model ran before the inputs were checked")

    monkeypatch.setattr(pipe.image_encoder, "forward", fail)
    settings = {"guidance": "ttm", "reference": inputs[1], "reference_mask": inputs[2], **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(inputs[0], **settings)


def test_reference_given_without_ttm_is_an_error():
    from levitor.testing.tiny import tiny_pipeline

    with pytest.raises(ValueError, match="steer only guidance 'ttm'"):
        tiny_pipeline()(tiny_image(), control=tiny_signal(), reference=np.zeros((4, 64, 64, 3), np.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("preset", ["default", "low_vram"])
def test_ttm_on_gpu_fp16(svd_folder, inputs, preset):
    """fp16 on CUDA, the VAE upcast for the reference encode, offload under low_vram: the pinned latents still
    equal the re-noised reference (fp16 rounding: 1e-2 of values up to ~30)."""
    gpu = LeviTorPipeline.from_pretrained(svd_folder, controlnet=None, allow_download=False).apply_preset(preset,
                                                                                                      device="cuda")
    gpu.set_progress_bar_config(disable=True)
    _, _, after, latents = _ttm_run(gpu, inputs)
    assert torch.isfinite(latents).all() and gpu.unet.dtype == torch.float16
    cells = inputs[3].expand_as(after[0]).cuda()
    noised = _reference_latents(gpu.vae.float().cpu(), inputs[1]) + inputs[4] * _sigmas()[START + 1]
    torch.testing.assert_close(after[0][cells].float().cpu(), noised[cells.cpu()], rtol=1e-2, atol=3e-2)


# ---------------------------------------------------------------- the warped reference from the engine


def _moving_scene():
    scene = make_scene(H=64, W=64, objects=[(8, 8, 24, 24, 0.4), (36, 30, 52, 46, 0.6)], depth=0.8, num_frames=4)
    for index, dx in ((0, 24.0), (1, -20.0)):
        obj = scene.select(index)
        obj.path.append(type(obj.path[0])(obj.path[0].x + dx, obj.path[0].y + 4, obj.path[0].depth))
    return scene


def test_warped_reference_is_the_engines_render_and_the_moved_objects_pixels():
    result = Engine(_moving_scene()).update()
    frames, mask = warped_reference(result)
    assert frames.dtype == np.uint8 and frames.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(frames, result.color.numpy())
    ids = [i for i in result.object_ids if i]
    np.testing.assert_array_equal(mask, np.isin(result.instance.numpy(), ids))
    assert mask[0].sum() == 2 * 16 * 16  # frame 0: both objects where they are
    assert not mask[-1, 8:24, 8:20].any()  # the first object has left its place: the hole is not pinned
    one = warped_reference(result, object_ids=[ids[0]])[1]
    assert 0 < one.sum() < mask.sum() and not one[0, 30:46, 36:52].any()  # the other object is free
    grown = warped_reference(result, dilate=2)[1]
    assert grown.sum() > mask.sum() and grown[0, 6:26, 6:26].all() and not grown[0, :5].any()
    with pytest.raises(ValueError, match="dilate must be a whole number"):
        warped_reference(result, dilate=-1)


def test_a_synthetic_clip_as_a_scene_rewarps_to_the_clip():
    """SyntheticClip.to_scene is what the evaluation's TTM rows steer by: frame 0 is the clip's, and the sprites'
    paths carry them where the clip has them (sprites crossing at a near-constant depth: IoU of the moved pixels
    with the clip's sprites, every frame)."""
    from levitor.data.synthetic import SyntheticConfig, generate_clip

    clip = generate_clip(5, SyntheticConfig(height=32, width=32, num_frames=8, min_sprites=2, max_sprites=3,
                                            sprite_size=(0.12, 0.2), background_instances=True, camera_pan_prob=0,
                                            pass_behind_prob=0.0))
    scene = clip.to_scene()
    assert len(scene.objects) == len(clip.sprites) and len(scene.masks) == len(clip.sprites) + 2  # + ground, wall
    frames, mask = warped_reference(Engine(scene).update())
    truth = np.isin(clip.instance, clip.object_ids)
    np.testing.assert_array_equal(frames[0], clip.frames[0])
    np.testing.assert_array_equal(mask[0], truth[0])
    iou = [(mask[f] & truth[f]).sum() / (mask[f] | truth[f]).sum() for f in range(clip.num_frames)]
    assert min(iou) > 0.7, iou  # 0.75-0.91 (a splatted, rounded warp of 32x32 sprites)


def test_generate_with_ttm_records_the_mode_and_shows_one_progress_bar(pipe, tmp_path):
    from levitor.generation.generate import generate

    totals, disabled = [], []

    def progress(step, total):
        totals.append((step, total))
        disabled.append(pipe._progress_bar_config.get("disable"))

    pipe.set_progress_bar_config(leave=False)  # shown, as load_pipeline leaves it
    res = generate(_moving_scene(), tmp_path, pipeline=pipe, steps=4, name="v", guidance="ttm", callback=progress)
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["guidance"] == "ttm" and meta["weights"].startswith("none")
    assert meta["ttm"] == {"tweak_fraction": TWEAK_FRACTION, "tstrong_fraction": TSTRONG_FRACTION,
                           "start_step": 1, "stop_step": 2, "num_steps": 4}
    assert totals == [(1, 3), (2, 3), (3, 3)]  # the steps TTM runs (it starts at step 1 of 4)
    assert disabled == [True] * 3 and pipe._progress_bar_config == {"leave": False}  # its own bar was off meanwhile
    pipe.set_progress_bar_config(disable=True)
    assert res.frames.shape == (4, 64, 64, 3)
    with pytest.raises(ValueError, match="runs no ControlNet, so the weights"):
        generate(_moving_scene(), tmp_path, weights=tmp_path / "LeviTor", guidance="ttm")


# ---------------------------------------------------------------- the command


def _levitor(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEVITOR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "levitor", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)


@pytest.mark.parametrize("model", ["tiny-svd", "mini"])
def test_levitor_generate_guidance_ttm(model, svd_folder, tmp_path):
    scene = _moving_scene().save(tmp_path / "s.json")
    weights = ["--base", str(svd_folder)] if model == "tiny-svd" else ["--weights", "mini"]
    res = _levitor("generate", "--scene", str(scene), "--out", str(tmp_path / "v.mp4"), "--guidance", "ttm",
                   "--steps", "3", "--device", "cpu", "--no-download", *weights, home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "v.mp4").stat().st_size > 0
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["guidance"] == "ttm" and meta["ttm"]["num_steps"] == 3
    assert meta["weights"] == ("mini" if model == "mini" else "none (training-free: no ControlNet)")
    # one bar per generation: the CLI's (in steps), not the pipeline's (in iterations, 2 of them) beside it
    assert "denoising" in res.stderr and not re.search(r"\b2/2 \[[^\]]*it", res.stderr)


def test_levitor_generate_ttm_without_weights_says_what_it_needs(tmp_path, capsys, monkeypatch):
    from levitor.cli import main

    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "home"))
    scene = _moving_scene().save(tmp_path / "s.json")
    rc = main(["generate", "--scene", str(scene), "--out", str(tmp_path / "v.mp4"), "--guidance", "ttm",
               "--no-download"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "stable-video-diffusion-img2vid-xt" in err and "needs only these Stable Video Diffusion" in err
    assert "hlwang06/LeviTor" not in err
    rc = main(["generate", "--scene", str(scene), "--out", str(tmp_path / "v.mp4"), "--no-download"])
    assert rc == 2 and "--guidance ttm" in capsys.readouterr().err  # the ControlNet mode names the way without it
