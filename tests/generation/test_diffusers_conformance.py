"""LeviTorPipeline against the checks of diffusers' PipelineTesterMixin (tests/pipelines/test_pipelines_common.py in
the diffusers repository, which its StableVideoDiffusionPipeline passes), written here for the tiny random models.

diffusers does not ship its tests, so each check the mixin makes that applies to an image-to-video pipeline is
reproduced by name: call signature, components, dict/tuple outputs, save/load (with the optional ControlNet left
out too, and fp16 variants), per-component dtype dicts, ``to(dtype)``, batch-vs-single, videos per image, output
types, step-end callbacks, attention slicing and classifier-free guidance off. Those for text prompts, xformers and
CUDA-only offloading are left out (the GPU runs are in test_pipeline.py).
"""

import inspect

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from levitor.generation.pipeline import LeviTorPipeline
from levitor.testing.compare import assert_same_output
from levitor.testing.tiny import (
    TINY_FRAMES,
    save_tiny_pipeline,
    tiny_controlnet,
    tiny_feature_extractor,
    tiny_image,
    tiny_image_encoder,
    tiny_scheduler,
    tiny_signal,
    tiny_unet,
    tiny_vae,
)

STEPS = 2
MODULES = ("unet", "controlnet", "vae", "image_encoder")


def dummy_components(seed: int = 0) -> dict:
    unet = tiny_unet(seed)
    return dict(vae=tiny_vae(seed + 1), image_encoder=tiny_image_encoder(seed + 2), unet=unet,
                controlnet=tiny_controlnet(unet, seed + 3), scheduler=tiny_scheduler(),
                feature_extractor=tiny_feature_extractor())


def make_pipe(**overrides) -> LeviTorPipeline:
    pipe = LeviTorPipeline(**{**dummy_components(), **overrides})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dummy_inputs(seed: int = 0, **overrides) -> dict:
    return dict(image=tiny_image(), control=tiny_signal(), num_inference_steps=STEPS, output_type="np",
                generator=torch.Generator().manual_seed(seed)) | overrides


def ttm_inputs(seed: int = 0, **overrides) -> dict:
    """Inputs for a pipeline without a ControlNet: training-free guidance by a reference video."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (TINY_FRAMES, 64, 64, 3), dtype=np.uint8)
    mask = np.zeros((TINY_FRAMES, 64, 64), bool)
    mask[:, 16:48, 16:48] = True
    inputs = dummy_inputs(seed, guidance="ttm", reference=reference, reference_mask=mask, num_inference_steps=4)
    inputs.pop("control")
    return inputs | overrides


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


@pytest.fixture(scope="module")
def output(pipe):
    return pipe(**dummy_inputs()).frames


def test_pipeline_call_signature():
    """Every argument of SVD's __call__ is ours too (and optional), except ``sigmas`` (custom noise levels: TTM's
    schedule is in steps of the scheduler's own sigmas)."""
    ours = inspect.signature(LeviTorPipeline.__call__).parameters
    svd = inspect.signature(StableVideoDiffusionPipeline.__call__).parameters
    assert set(svd) - set(ours) == {"sigmas"}
    optional = {k for k, v in ours.items() if v.default is not inspect.Parameter.empty}
    assert set(ours) - optional == {"self", "image"}
    for name in ("num_inference_steps", "num_videos_per_prompt", "generator", "latents", "output_type",
                 "return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs"):
        assert name in optional


def test_components_function():
    components = dummy_components()
    assert set(LeviTorPipeline(**components).components) == set(components)


def test_dict_tuple_outputs_equivalent(pipe, output):
    (as_tuple,) = pipe(**dummy_inputs(), return_dict=False)
    assert np.array_equal(as_tuple, output)  # the same computation twice: bit-equal


def test_pt_np_pil_outputs_equivalent(pipe, output):
    pt = pipe(**dummy_inputs(output_type="pt")).frames
    pil = pipe(**dummy_inputs(output_type="pil")).frames
    assert_same_output(pt.permute(0, 1, 3, 4, 2).numpy(), output)
    assert np.abs(np.asarray(pil[0][0], np.float32) - (output[0, 0] * 255).round()).max() <= 1.0  # 8-bit rounding


def test_save_load_local(pipe, output, tmp_path):
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    loaded = LeviTorPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert set(loaded.components) == set(pipe.components)
    assert_same_output(loaded(**dummy_inputs()).frames, output)


def test_save_load_optional_components(tmp_path):
    """The ControlNet is optional: a pipeline without one saves, loads without one, and generates the same."""
    pipe = make_pipe(controlnet=None)
    before = pipe(**ttm_inputs()).frames
    pipe.save_pretrained(tmp_path)
    loaded = LeviTorPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.controlnet is None
    assert_same_output(loaded(**ttm_inputs()).frames, before)


def test_serialization_and_loading_with_variants(pipe, output, tmp_path):
    pipe.save_pretrained(tmp_path, variant="fp16")
    for name in MODULES:
        files = [p.name for p in (tmp_path / name).iterdir() if p.suffix in (".safetensors", ".bin")]
        assert files and all(".fp16." in f for f in files), (name, files)
    loaded = LeviTorPipeline.from_pretrained(tmp_path, variant="fp16")
    loaded.set_progress_bar_config(disable=True)
    assert_same_output(loaded(**dummy_inputs()).frames, output)  # the variant's name, the same float32 weights


@pytest.mark.parametrize("specified", MODULES)
def test_torch_dtype_dict(pipe, tmp_path, specified):
    """diffusers' per-component dtypes: the named component in bfloat16, "default" for the others."""
    pipe.save_pretrained(tmp_path)
    dtypes = {specified: torch.bfloat16, "default": torch.float16}
    loaded = LeviTorPipeline.from_pretrained(tmp_path, torch_dtype=dtypes)
    got = {name: m.dtype for name, m in loaded.components.items() if isinstance(m, torch.nn.Module)}
    assert got == {name: dtypes.get(name, torch.float16) for name in MODULES}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("official"), layout="official")


def test_dtype_dict_loads_the_release_layout_and_generates(official):
    """The issue's example on an SVD base plus release-layout ControlNet; a component neither names is float32
    (diffusers' rule); the mixed-dtype pipeline generates (each model gets its inputs in its dtype)."""
    loaded = LeviTorPipeline.from_pretrained(official["base"], controlnet=official["controlnet"],
                                             dtype={"unet": torch.bfloat16, "default": torch.float16})
    assert (loaded.unet.dtype, loaded.controlnet.dtype, loaded.vae.dtype, loaded.image_encoder.dtype) == (
        torch.bfloat16, torch.float16, torch.float16, torch.float16)
    loaded.set_progress_bar_config(disable=True)
    frames = loaded(**dummy_inputs(output_type="pt")).frames
    assert frames.shape == (1, TINY_FRAMES, 3, 64, 64) and torch.isfinite(frames).all()
    partial = LeviTorPipeline.from_pretrained(official["base"], controlnet=official["controlnet"],
                                              dtype={"controlnet": torch.float16})
    assert (partial.controlnet.dtype, partial.unet.dtype, partial.vae.dtype) == (
        torch.float16, torch.float32, torch.float32)


@pytest.mark.parametrize("dtype, match", [
    ({"transformer": torch.bfloat16}, r"\['transformer'\] is not one of the pipeline's components"),
    ({"unet": "bf16"}, r"dtype\['unet'\] must be a torch.dtype"),
    ("float16", "dtype must be a torch.dtype .* or a dict of them by component"),
])
def test_a_bad_dtype_dict_says_what_it_takes(official, dtype, match):
    with pytest.raises(ValueError, match=match):
        LeviTorPipeline.from_pretrained(official["base"], controlnet=official["controlnet"], dtype=dtype)


def test_to_dtype():
    pipe = make_pipe()
    assert {m.dtype for m in pipe.components.values() if isinstance(m, torch.nn.Module)} == {torch.float32}
    pipe.to(dtype=torch.float16)
    assert {m.dtype for m in pipe.components.values() if isinstance(m, torch.nn.Module)} == {torch.float16}


def test_inference_batch_single_identical(pipe, output):
    """Two images with one generator each: the first video is the single call's with the first generator (a
    batch of two takes other CPU kernel paths; two steps amplify the rounding to ~1e-4)."""
    inputs = dummy_inputs(image=[tiny_image(), tiny_image(seed=1)],
                          generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    batch = pipe(**inputs).frames
    assert batch.shape == (2, *output.shape[1:])
    assert np.abs(batch[0] - output[0]).max() < 1e-3
    assert np.abs(batch[1] - output[0]).max() > 1e-2  # another image and noise: another video


@pytest.mark.parametrize("images, videos", [(1, 2), (2, 1), (2, 2)])
def test_num_videos_per_prompt(pipe, images, videos):
    image = tiny_image() if images == 1 else [tiny_image(), tiny_image(seed=1)]
    latents = pipe(**dummy_inputs(image=image, num_videos_per_prompt=videos, output_type="latent")).frames
    assert latents.shape == (images * videos, TINY_FRAMES, 4, 8, 8)


def test_callback_inputs(pipe):
    """The callback gets exactly the tensors it asks for, each the pipeline's own; what it returns is used."""
    names = pipe._callback_tensor_inputs
    seen = []

    def check_and_zero_last(p, i, t, tensors):
        seen.append(set(tensors))
        for name in ("latents", "image_latents", "image_embeddings", "added_time_ids", "controlnet_cond"):
            assert isinstance(tensors[name], torch.Tensor), name
        return {"latents": torch.zeros_like(tensors["latents"])} if i == p.num_timesteps - 1 else {}

    latents = pipe(**dummy_inputs(output_type="latent"), callback_on_step_end=check_and_zero_last,
                   callback_on_step_end_tensor_inputs=names).frames
    assert seen == [set(names)] * STEPS
    assert latents.abs().max() == 0  # the replaced last latents are the result

    only = []
    pipe(**dummy_inputs(output_type="latent"), callback_on_step_end=lambda p, i, t, d: only.append(set(d)),
         callback_on_step_end_tensor_inputs=["latents"])
    assert only == [{"latents"}] * STEPS


def test_attention_slicing_forward_pass(output):
    sliced = make_pipe()
    sliced.enable_attention_slicing(slice_size=1)
    assert np.abs(sliced(**dummy_inputs()).frames - output).max() < 1e-3


def test_cfg_off_when_max_guidance_scale_is_one(pipe, output):
    """SVD's rule: guidance scales up to 1 run one (conditional) branch, a batch half the size."""
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        plain = pipe(**dummy_inputs(max_guidance_scale=1.0)).frames
        pipe(**dummy_inputs())
    finally:
        hook.remove()
    assert batches == [1] * STEPS + [2] * STEPS
    assert plain.shape == output.shape and np.abs(plain - output).max() > 1e-3
