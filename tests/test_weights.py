"""Weight resolution and loading, on tiny random models saved in both layouts (ours and the release's)."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from levitor.generation.pipeline import LeviTorPipeline
from levitor.models import ControlNetSVD
from levitor.models.convert import convert_official_checkpoint, load_controlnet
from levitor.testing.compare import assert_same_output
from levitor.testing.tiny import save_tiny_pipeline, tiny_image, tiny_pipeline, tiny_signal
from levitor.weights import LEVITOR_ID, SVD_XT_ID, WeightsNotFoundError, describe_expected_layout, resolve

COMPONENTS = ("unet", "controlnet", "vae", "image_encoder")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test here may touch the network or the user's real weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "levitor_home"))


@pytest.fixture(scope="module")
def reference():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("official"), layout="official")


def _assert_same_weights(a, b):
    for name in COMPONENTS:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_load_our_layout(tmp_path, reference):
    paths = save_tiny_pipeline(tmp_path / "ours", layout="ours")
    assert json.loads((paths["pipeline"] / "model_index.json").read_text())["_class_name"] == "LeviTorPipeline"
    pipe = LeviTorPipeline.from_pretrained(paths["pipeline"])
    _assert_same_weights(pipe, reference)


def test_load_official_layout(official, reference):
    layout = official["controlnet"]
    config = json.loads((layout / "controlnet" / "config.json").read_text())
    assert config["_class_name"] == "ControlNetSVDModel" and "up_block_types" in config
    assert (layout / "unet").is_dir() and (layout / "scaler.pt").is_file()
    assert any((official["base"] / "unet").glob("*.fp16.safetensors"))  # hub-style variant files

    pipe = LeviTorPipeline.from_pretrained(official["base"], official["controlnet"])
    _assert_same_weights(pipe, reference)
    # the bare controlnet/ folder works too
    pipe2 = LeviTorPipeline.from_pretrained(official["base"], layout / "controlnet")
    _assert_same_weights(pipe2, reference)


def _video(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(tiny_image(), control=tiny_signal(), num_inference_steps=1, output_type="np",
                generator=torch.Generator().manual_seed(217113), **kwargs).frames


def test_both_layouts_generate_the_same_video_in_the_same_temporal_order(tmp_path, official):
    ours = LeviTorPipeline.from_pretrained(save_tiny_pipeline(tmp_path / "ours")["pipeline"])
    theirs = LeviTorPipeline.from_pretrained(official["base"], official["controlnet"])
    # the release's weights run in the release's temporal context order, ours in diffusers': under CFG that differs
    ours_video, theirs_video = _video(ours), _video(theirs)
    assert np.abs(ours_video - theirs_video).max() > 1e-3
    for model in (ours.unet, ours.controlnet):
        model.set_temporal_context_order("release")
    assert_same_output(theirs_video, _video(ours))  # two separately loaded pipelines: equal up to float rounding


def test_release_layout_loads_in_the_release_order_and_rules_and_keeps_them(tmp_path, official):
    ours = LeviTorPipeline.from_pretrained(save_tiny_pipeline(tmp_path / "ours")["pipeline"])
    assert (ours.unet.config.temporal_context_order, ours.controlnet.config.temporal_context_order,
            ours.control_rules) == ("diffusers", "diffusers", "levitor")
    theirs = LeviTorPipeline.from_pretrained(official["base"], official["controlnet"])
    assert (theirs.unet.config.temporal_context_order, theirs.controlnet.config.temporal_context_order,
            theirs.control_rules) == ("release", "release", "release")
    theirs.save_pretrained(tmp_path / "resaved")
    for sub in ("unet", "controlnet"):
        config = json.loads((tmp_path / "resaved" / sub / "config.json").read_text())
        assert config["temporal_context_order"] == "release"
    again = LeviTorPipeline.from_pretrained(tmp_path / "resaved")
    assert again.unet.config.temporal_context_order == "release" and again.control_rules == "release"
    # a saved levitor pipeline given the release's ControlNet: the UNet follows the ControlNet's order
    swapped = LeviTorPipeline.from_pretrained(tmp_path / "ours", official["controlnet"])
    assert swapped.unet.config.temporal_context_order == "release" and swapped.control_rules == "release"
    converted = json.loads((convert_official_checkpoint(official["controlnet"], tmp_path / "conv") / "config.json")
                           .read_text())
    assert (converted["temporal_context_order"], converted["control_rules"]) == ("release", "release")


def _dtypes(pipe) -> dict[str, set]:
    return {n: {p.dtype for p in getattr(pipe, n).parameters()} for n in COMPONENTS}


@pytest.mark.parametrize("keyword", ["dtype", "torch_dtype"])
def test_dtype_and_torch_dtype_reach_every_parameter_in_every_loading_path(tmp_path, official, keyword):
    saved = save_tiny_pipeline(tmp_path / "ours")["pipeline"]
    want = {n: {torch.float16} for n in COMPONENTS}
    kw = {keyword: torch.float16}
    loads = {
        "release layout": lambda: LeviTorPipeline.from_pretrained(official["base"], official["controlnet"], **kw),
        "saved pipeline": lambda: LeviTorPipeline.from_pretrained(saved, **kw),
        "saved + release ControlNet": lambda: LeviTorPipeline.from_pretrained(saved, official["controlnet"], **kw),
        "saved + a loaded ControlNet": lambda: LeviTorPipeline.from_pretrained(
            saved, load_controlnet(official["controlnet"]), **kw),
        "base + a loaded ControlNet": lambda: LeviTorPipeline.from_pretrained(
            official["base"], load_controlnet(official["controlnet"]), **kw),
    }
    for name, load in loads.items():
        pipe = load()
        assert _dtypes(pipe) == want, name
    frames = _video(pipe, decode_chunk_size=2)  # fp16 kernels run on CPU in this torch: the dtypes fit together
    assert frames.shape == (1, 4, 64, 64, 3) and np.isfinite(frames).all()
    assert {p.dtype for p in load_controlnet(official["controlnet"], **kw).parameters()} == {torch.float16}
    with pytest.raises(ValueError, match="disagree"):
        LeviTorPipeline.from_pretrained(saved, dtype=torch.float16, torch_dtype=torch.float32)


def test_saved_pipeline_loads_through_diffusers_with_custom_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    saved = save_tiny_pipeline(tmp_path / "ours")["pipeline"]
    pipe = DiffusionPipeline.from_pretrained(saved, custom_pipeline=str(saved), trust_remote_code=True,
                                             dtype=torch.float16)
    assert type(pipe) is LeviTorPipeline  # levitor's own class, not a copy of its module
    assert _dtypes(pipe) == {n: {torch.float16} for n in COMPONENTS}
    with pytest.raises(AttributeError, match="LeviTorPipeline"):
        DiffusionPipeline.from_pretrained(saved)  # diffusers alone cannot know the class: docs/weights.md says so


def test_default_ids_resolve_under_levitor_home(tmp_path, monkeypatch, official, reference):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(official["base"], home / "models" / "stable-video-diffusion-img2vid-xt")
    shutil.copytree(official["controlnet"], home / "models" / "LeviTor")
    monkeypatch.setenv("LEVITOR_HOME", str(home))
    assert resolve(SVD_XT_ID, allow_download=False) == home / "models" / "stable-video-diffusion-img2vid-xt"
    pipe = LeviTorPipeline.from_pretrained(allow_download=False)  # both defaults
    _assert_same_weights(pipe, reference)


def test_missing_weights_name_the_models_and_the_layout(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        LeviTorPipeline.from_pretrained(allow_download=False)
    message = str(info.value)
    home = tmp_path / "levitor_home" / "models"
    # both missing models at once, each with the one command that downloads it to where resolve() looks
    assert f"hf download {SVD_XT_ID} --local-dir {home / 'stable-video-diffusion-img2vid-xt'}" in message
    assert f"hf download {LEVITOR_ID} --local-dir {home / 'LeviTor'} --include 'controlnet/*'" in message
    assert len(message.splitlines()) <= 8

    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        resolve("someone/missing-model", allow_download=False)
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        resolve("someone/missing-model", allow_download=True)  # offline: fails fast, no network
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve(tmp_path / "no" / "such" / "folder")


def test_missing_controlnet_names_release(official, monkeypatch):
    from levitor.models import ControlledUNetSVD

    def fail(*args, **kwargs):
        raise AssertionError("the base model was loaded before the ControlNet was found")

    monkeypatch.setattr(ControlledUNetSVD, "from_pretrained", fail)
    with pytest.raises(WeightsNotFoundError, match=LEVITOR_ID.replace("/", ".")):
        LeviTorPipeline.from_pretrained(official["base"], allow_download=False)
    with pytest.raises(WeightsNotFoundError, match="controlnet/config.json"):
        LeviTorPipeline.from_pretrained(official["base"], official["base"] / "unet" / "..")  # base has no controlnet


def test_base_without_model_index_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="model_index.json"):
        LeviTorPipeline.from_pretrained(tmp_path / "empty", allow_download=False)


def test_a_controlnet_folder_without_the_base_says_what_is_there_and_what_is_missing(official):
    """`--weights LeviTor/` with no SVD base anywhere: the user's folder is fine, the base is what to get."""
    with pytest.raises(WeightsNotFoundError) as info:
        LeviTorPipeline.from_pretrained(controlnet=official["controlnet"], allow_download=False)
    first, *rest = str(info.value).splitlines()
    assert first.startswith(f"{official['controlnet']} holds the LeviTor ControlNet, but not the Stable Video "
                            "Diffusion base")
    assert any(f"hf download {SVD_XT_ID}" in line for line in rest) and LEVITOR_ID not in str(info.value)


def test_a_model_index_without_a_class_says_so_in_words(tmp_path):
    from levitor.weights import CorruptWeightsError, verify_weights_folder

    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet"]}))
    with pytest.raises(CorruptWeightsError) as info:
        verify_weights_folder(tmp_path, "Stable Video Diffusion base")
    assert f"{tmp_path / 'model_index.json'} is not a pipeline index: it names no pipeline class" in str(info.value)
    assert " is it " not in str(info.value)


def test_describe_expected_layout_mentions_everything():
    text = describe_expected_layout()
    for needle in (SVD_XT_ID, LEVITOR_ID, "LEVITOR_HOME", "diffusion_pytorch_model.safetensors",
                   "model_index.json", "hf download"):
        assert needle in text


# ---------------------------------------------------------------- the release's ControlNet


def _copy_official(official, tmp_path):
    import shutil

    dst = tmp_path / "LeviTor"
    shutil.copytree(official["controlnet"], dst)
    return dst


def test_load_controlnet_tolerates_release_config_and_wrapper_prefixes(official, reference, tmp_path):
    folder = _copy_official(official, tmp_path)
    weights = folder / "controlnet" / "diffusion_pytorch_model.safetensors"
    save_file({f"module.{k}": v for k, v in load_file(weights).items()}, weights)  # as a DDP-wrapped save
    controlnet = load_controlnet(folder)
    sa, sb = controlnet.state_dict(), reference.controlnet.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(p.is_meta for p in controlnet.parameters())


def test_load_controlnet_warns_on_unknown_keys_and_refuses_extra_modules(official, tmp_path, caplog):
    folder = _copy_official(official, tmp_path)
    config_path = folder / "controlnet" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "some_future_flag": 1}))
    with caplog.at_level(logging.WARNING, logger="levitor.models.convert"):
        load_controlnet(folder)
    assert "some_future_flag" in caplog.text

    config_path.write_text(json.dumps({**config, "with_id_feature": True}))
    with pytest.raises(ValueError, match="with_id_feature"):
        load_controlnet(folder)


def test_load_controlnet_rejects_weights_that_do_not_fit(official, tmp_path):
    folder = _copy_official(official, tmp_path)
    weights = folder / "controlnet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("controlnet_mid_block.weight")
    save_file(state, weights)
    expected = r"config.json: 1 of \d+ weights missing \(e.g. controlnet_mid_block.weight\)\. The two files come from"
    with pytest.raises(ValueError, match=expected):
        load_controlnet(folder)
    weights.unlink()
    with pytest.raises(WeightsNotFoundError, match="no weights"):
        load_controlnet(folder)


def test_a_wrong_shaped_tensor_is_named_with_both_shapes_and_what_to_download(official, tmp_path):
    from levitor.weights import CorruptWeightsError

    folder = _copy_official(official, tmp_path)
    weights = folder / "controlnet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    want = tuple(state["controlnet_mid_block.weight"].shape)
    state["controlnet_mid_block.weight"] = torch.zeros(want[0], want[1] + 3, *want[2:])
    save_file(state, weights)
    with pytest.raises(CorruptWeightsError) as info:
        load_controlnet(folder)
    message = str(info.value)
    assert f"controlnet_mid_block.weight is {(want[0], want[1] + 3, *want[2:])} in the file, the config builds " \
           f"{want}. The two files come from different models" in message
    home = tmp_path / "levitor_home" / "models"
    assert f"hf download {LEVITOR_ID} --local-dir {home / 'LeviTor'} --include 'controlnet/*'" in message
    assert len(message.splitlines()) == 1


def test_convert_official_checkpoint_to_our_layout(official, reference, tmp_path):
    dst = convert_official_checkpoint(official["controlnet"], tmp_path / "converted")
    assert json.loads((dst / "config.json").read_text())["_class_name"] == "ControlNetSVD"
    controlnet = ControlNetSVD.from_pretrained(dst)
    sa, sb = controlnet.state_dict(), reference.controlnet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
    pipe = LeviTorPipeline.from_pretrained(official["base"], dst)  # and it loads as a plain ControlNet folder
    assert isinstance(pipe.controlnet, ControlNetSVD)


def test_saved_pipeline_with_a_different_controlnet(tmp_path, official):
    ours = save_tiny_pipeline(tmp_path / "ours", seed=5)["pipeline"]
    pipe = LeviTorPipeline.from_pretrained(ours, official["controlnet"])
    reference_cn = load_controlnet(official["controlnet"])
    assert torch.equal(pipe.controlnet.controlnet_mid_block.weight, reference_cn.controlnet_mid_block.weight)


def test_download_commands_in_the_docs_put_weights_where_resolve_looks(tmp_path, monkeypatch):
    """Every `hf download ... --local-dir DIR` a user can copy (README, docs, notebooks) must land where
    resolve() finds the model without any path argument."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LEVITOR_HOME", raising=False)
    texts = [p.read_text() for p in [root / "README.md", *(root / "docs").glob("*.md"),
                                     *(root / "notebooks").glob("*.ipynb")]]
    commands = [m for text in texts for m in re.findall(r"hf download (\S+)[\s\\\\]+--local-dir (\S+)",
                                                        text.replace('\\n",\n    "', "\n"))]
    assert {model for model, _ in commands} == {SVD_XT_ID, LEVITOR_ID}
    for model, local_dir in commands:
        folder = Path(local_dir.replace("~", str(tmp_path)))
        folder.mkdir(parents=True, exist_ok=True)
        assert resolve(model, allow_download=False) == folder, (model, local_dir)


def test_a_missing_weights_folder_is_the_one_error_and_nothing_is_downloaded(tmp_path, monkeypatch):
    """`levitor generate --weights typo/`: the user's folder is what to fix, said at once (not after a try at
    downloading the 4.5 GB base first)."""
    import levitor.weights as weights

    def no_download(*args, **kwargs):
        raise AssertionError("a download was tried for a run that cannot start")

    monkeypatch.setattr(weights, "_download", no_download)
    with pytest.raises(WeightsNotFoundError) as info:
        LeviTorPipeline.from_pretrained(controlnet=tmp_path / "typo", allow_download=True)
    message = str(info.value)
    assert message.startswith("LeviTor ControlNet:") and str(tmp_path / "typo") in message
    assert "Stable Video Diffusion" not in message and len(message.splitlines()) == 1
