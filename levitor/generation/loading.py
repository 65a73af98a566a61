"""Finding and loading a LeviTor pipeline's parts: the base and ControlNet folders, the components' dtypes (one, or
one each as diffusers' dtype dicts),
and the file that lets ``DiffusionPipeline.from_pretrained`` find :class:`LeviTorPipeline` in a saved folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from levitor.generation.guidance import TTM_NEEDS
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.convert import find_controlnet_folder, load_controlnet
from levitor.weights import LEVITOR_ID, WeightsNotFoundError, describe_expected_layout, resolve

# Written into a saved pipeline folder: DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder,
# trust_remote_code=True) imports it and finds levitor's own class (not a copy of its module).
CUSTOM_PIPELINE_FILE = "pipeline.py"
CUSTOM_PIPELINE_SOURCE = (
    '"""Lets diffusers load this folder: DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, '
    'trust_remote_code=True).\nThe code is the installed levitor package\'s (pip install levitor); nothing else runs '
    'from here."""\n\nfrom levitor.generation.pipeline import LeviTorPipeline  # noqa: F401\n'
)


# The components a dtype dict may name (diffusers' per-component dtypes), besides "default" for the rest
MODEL_COMPONENTS = ("unet", "controlnet", "vae", "image_encoder")
DtypeArg = torch.dtype | dict[str, torch.dtype] | None


def resolve_dtype(dtype: DtypeArg, torch_dtype: DtypeArg) -> DtypeArg:
    """One dtype setting from diffusers' current keyword (``dtype``) and its older one (``torch_dtype``); both are
    accepted. A dict gives each component its own, as diffusers' from_pretrained reads it: component names and
    "default" for the rest (float32 for a component neither names)."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them (they are the same "
                         "setting: torch_dtype is its older name)")
    dtype = dtype if dtype is not None else torch_dtype
    if isinstance(dtype, dict):
        unknown = sorted(set(dtype) - {*MODEL_COMPONENTS, "default"})
        if unknown:
            raise ValueError(f"a dtype dict names components and 'default' (for the rest); {unknown} is not one of "
                             f"the pipeline's components {list(MODEL_COMPONENTS)}")
        for name, value in dtype.items():
            if not isinstance(value, torch.dtype):
                raise ValueError(f"dtype[{name!r}] must be a torch.dtype such as torch.float16, got {value!r}")
    elif dtype is not None and not isinstance(dtype, torch.dtype):
        raise ValueError("dtype must be a torch.dtype such as torch.float16, or a dict of them by component "
                         f"(e.g. {{'unet': torch.bfloat16, 'default': torch.float16}}), got {dtype!r}")
    return dtype


def component_dtype(dtype: DtypeArg, name: str, unnamed: torch.dtype | None = torch.float32) -> torch.dtype | None:
    """The dtype of component ``name``: a dict's entry for it, else its "default", else ``unnamed`` (diffusers'
    float32 for a component it loads; None leaves a module the caller passed in as it is)."""
    if isinstance(dtype, dict):
        return dtype.get(name, dtype.get("default", unnamed))
    return dtype


def _diffusers_takes_dtype() -> bool:
    """Whether this diffusers' from_pretrained takes ``dtype`` (newer releases deprecate ``torch_dtype``)."""
    from diffusers.utils import deprecation_utils

    return hasattr(deprecation_utils, "_resolve_dtype")


def dtype_kwargs(dtype: DtypeArg) -> dict[str, DtypeArg]:
    """The dtype (or dict of them) as the installed diffusers' from_pretrained wants it (no deprecation notice)."""
    if dtype is None:
        return {}
    return {"dtype": dtype} if _diffusers_takes_dtype() else {"torch_dtype": dtype}


def is_saved_pipeline(folder: Path) -> bool:
    """A folder written by LeviTorPipeline.save_pretrained (its model_index.json names LeviTorPipeline)."""
    index = folder / "model_index.json"
    return index.is_file() and json.loads(index.read_text()).get("_class_name") == "LeviTorPipeline"


def resolve_base_and_controlnet(base: str | Path, controlnet: Any, allow_download: bool,
                                need_controlnet: bool = True) -> Path:
    """The base's folder, checked; when both default models are missing, one error names both.

    A ControlNet the user named (``--weights``) is looked at first: when it is missing that is the one error (the
    user's typo, answered at once, not after a multi-gigabyte download of the base for a run that cannot start).
    ``need_controlnet=False`` (a pipeline for training-free guidance) checks the base alone, and a missing base says
    that it is all that is needed."""
    errors: list[str] = []
    found: list[Path] = []

    def check_controlnet(source: Any) -> None:
        try:
            found.append(resolve(source, what="LeviTor ControlNet", allow_download=allow_download))
        except WeightsNotFoundError as e:
            errors.append(str(e))

    if controlnet == LEVITOR_ID:
        controlnet = None  # the default, named: missing together with the base, one message for both
    if need_controlnet and controlnet is not None and not isinstance(controlnet, ControlNetSVD):
        check_controlnet(controlnet)
        if errors:
            raise WeightsNotFoundError(errors[0])
    folder = None
    try:
        folder = resolve(base, what="Stable Video Diffusion base", allow_download=allow_download)
        if not (folder / "model_index.json").is_file():
            errors.append(f"{folder} has no model_index.json, so it is neither a diffusers SVD folder nor a saved "
                          f"LeviTorPipeline.\n\n{describe_expected_layout()}")
    except WeightsNotFoundError as e:
        if found and _holds_controlnet(found[0]):  # the user's weights are there: say so, and what is missing
            errors.append(f"{found[0]} holds the LeviTor ControlNet, but not the Stable Video Diffusion base it "
                          "runs on (a generation needs both; a folder written by LeviTorPipeline.save_pretrained "
                          "holds both). Missing:")
        errors.append(str(e))
    if need_controlnet and controlnet is None and not (folder is not None and is_saved_pipeline(folder)):
        check_controlnet(LEVITOR_ID)
    if errors and not need_controlnet:
        errors.append(TTM_NEEDS)
    if errors:
        raise WeightsNotFoundError("\n".join(errors))
    return folder


def _holds_controlnet(folder: Path) -> bool:
    try:
        find_controlnet_folder(folder)
    except WeightsNotFoundError:
        return False
    return True


def load_any_controlnet(controlnet: str | Path | ControlNetSVD, dtype: DtypeArg,
                        allow_download: bool) -> ControlNetSVD:
    """A loaded ControlNet (cast to its dtype, when ``dtype`` gives it one), or one loaded from a hub id or folder
    in any layout we read."""
    if isinstance(controlnet, ControlNetSVD):
        dtype = component_dtype(dtype, "controlnet", unnamed=None)
        return controlnet if dtype is None or controlnet.dtype == dtype else controlnet.to(dtype=dtype)
    folder = resolve(controlnet, what="LeviTor ControlNet", allow_download=allow_download)
    return load_controlnet(folder, dtype=component_dtype(dtype, "controlnet"))


def write_custom_pipeline_file(folder: str | Path) -> Path:
    path = Path(folder) / CUSTOM_PIPELINE_FILE
    path.write_text(CUSTOM_PIPELINE_SOURCE)
    return path
