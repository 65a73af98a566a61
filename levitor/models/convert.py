"""Loading the LeviTor release's ControlNet (and converting it to our layout).

The release (``hlwang06/LeviTor``) is an accelerate ``save_state`` folder::

    controlnet/config.json                          _class_name "ControlNetSVDModel", extra keys (see below)
    controlnet/diffusion_pytorch_model.safetensors  state-dict names equal ours
    unet/...                                        SVD's UNet, frozen in training (not needed)
    random_states_0.pkl, scaler.pt, scheduler.bin   training state (ignored)

Their config carries keys our :class:`ControlNetSVD` does not take (decoder settings it never builds, and an
unused point-feature adapter). :func:`load_controlnet` drops those, refuses configs that would need modules we
do not have, and loads the weights strictly, so a wrong checkpoint fails loudly instead of half-loading.

A release ControlNet (``_class_name`` "ControlNetSVDModel") is loaded in the release's computation: the release's
temporal context order (:mod:`levitor.models.temporal_order`) and ``control_rules="release"`` (generation builds
its control signal as the release does, :mod:`levitor.control.rules`). Both are written into its config, so a
converted or re-saved copy keeps them.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from levitor._util.files import check_not_special
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.weights import (
    MODELS,
    CorruptWeightsError,
    WeightsNotFoundError,
    describe_expected_layout,
    download_command,
    models_dir,
)

logger = logging.getLogger(__name__)

# Keys of the release's config.json that describe nothing our ControlNet builds.
_IGNORED_KEYS = {
    "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values",
    "out_channels", "up_block_types",  # the decoder half, which a ControlNet does not have
    "feature_channels", "feature_out_channels",  # sizes of the point-feature adapter, used only if enabled
}
# Keys whose value must be the given one (anything else adds modules the weights would need).
_REQUIRED_VALUES = {"with_id_feature": False}
# Prefixes that wrappers add to parameter names (DDP / accelerate, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
RELEASE_CLASS_NAME = "ControlNetSVDModel"  # the release's ControlNet class, as its config.json names it
# What the release's code computes, for configs written by it (they carry no such keys)
_RELEASE_DEFAULTS = {"temporal_context_order": "release", "control_rules": "release"}
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin")


def find_controlnet_folder(folder: str | Path) -> Path:
    """The folder holding the ControlNet's config.json: ``folder/controlnet`` (release layout) or ``folder``."""
    folder = Path(folder)
    for candidate in (folder / "controlnet", folder):
        if (candidate / "config.json").is_file():
            return candidate
    raise WeightsNotFoundError(
        f"No ControlNet in {folder}: expected {folder}/controlnet/config.json (release layout) or "
        f"{folder}/config.json.\n\n{describe_expected_layout()}"
    )


def controlnet_config_from_official(config: dict) -> dict:
    """Keyword arguments for :class:`ControlNetSVD` from a release (or our own) config.json.

    A release config gets the release's temporal context order and control rules (unless it names others)."""
    accepted = set(inspect.signature(ControlNetSVD.__init__).parameters) - {"self"}
    kwargs, unknown = {}, []
    if config.get("_class_name") == RELEASE_CLASS_NAME:
        kwargs.update(_RELEASE_DEFAULTS)
    for key, value in config.items():
        if key in _REQUIRED_VALUES:
            if value != _REQUIRED_VALUES[key]:
                raise ValueError(
                    f"this ControlNet config sets {key}={value!r}; only {_REQUIRED_VALUES[key]!r} is supported "
                    "(the released LeviTor model does not use it)"
                )
        elif key in accepted:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        elif key not in _IGNORED_KEYS:
            unknown.append(key)
    if unknown:
        logger.warning("ignoring unknown ControlNet config keys %s", sorted(unknown))
    return kwargs


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release parameter names -> ours. They are equal by design; only wrapper prefixes are stripped."""
    out = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in _WEIGHT_FILES:
        path = check_not_special(folder / name, "ControlNet weights file")
        if path.is_file():
            if path.suffix == ".safetensors":
                return load_file(path)
            return torch.load(path, map_location="cpu", weights_only=True)
    raise WeightsNotFoundError(
        f"{folder} has config.json but no weights (looked for {', '.join(_WEIGHT_FILES)}).\n\n"
        f"{describe_expected_layout()}"
    )


def load_controlnet(folder: str | Path, torch_dtype: torch.dtype | None = None, *,
                    dtype: torch.dtype | None = None) -> ControlNetSVD:
    """Load a ControlNet from the release layout, a folder written by ``ControlNetSVD.save_pretrained``, or a
    folder holding a release ``controlnet/`` folder's files directly. Missing or extra weights raise ValueError.

    ``dtype`` (or its older name ``torch_dtype``) casts every parameter."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them")
    torch_dtype = dtype if dtype is not None else torch_dtype
    folder = find_controlnet_folder(folder)
    config = json.loads(check_not_special(folder / "config.json", "ControlNet config").read_text())
    try:
        kwargs = controlnet_config_from_official(config)
        with torch.device("meta"):  # no random init of ~700M parameters only to overwrite them
            model = ControlNetSVD(**kwargs)
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptWeightsError(f"{folder / 'config.json'} is not a ControlNet config ({type(err).__name__}: "
                                  f"{err}); download the LeviTor folder again") from None
    state_dict = convert_official_state_dict(_read_weights(folder))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        parts = [f"{len(missing)} of {len(expected)} weights missing (e.g. {', '.join(missing[:2])})"] * bool(missing)
        parts += [f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})"] * bool(unexpected)
        raise CorruptWeightsError(
            f"the weights in {folder} do not match its config.json: {' and '.join(parts)}. The two files come "
            "from different models, or the download is partial: download the folder again"
        )
    _check_shapes(model, state_dict, folder)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.eval()
    if torch_dtype is not None:
        model.to(dtype=torch_dtype)
    return model


def _check_shapes(model: ControlNetSVD, state_dict: dict[str, torch.Tensor], folder: Path) -> None:
    """Every tensor has the shape the config builds; the first one that does not is named with both shapes."""
    wrong = [(name, tuple(state_dict[name].shape), tuple(p.shape)) for name, p in model.state_dict().items()
             if tuple(state_dict[name].shape) != tuple(p.shape)]
    if wrong:
        name, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        spec = MODELS["levitor"]
        raise CorruptWeightsError(
            f"the weights in {folder} do not fit its config.json: {name} is {got} in the file, the config builds "
            f"{want}{more}. The two files come from different models, or the file is damaged: download the "
            f"LeviTor ControlNet again ({download_command(spec, models_dir() / spec.folder)}), or save your own "
            "ControlNet again with ControlNetSVD.save_pretrained"
        )


def convert_official_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write the release's ControlNet (``src``, release layout) as ``ControlNetSVD.save_pretrained(dst)``."""
    model = load_controlnet(src)
    model.save_pretrained(dst)
    return Path(dst)
