"""What a choice of weights and guidance means before any model loads: the rules its control is built by, and the
steps it samples with. ``levitor generate`` and the Studio both ask here, so the live view shows the points that
Generate sends and both run the same number of steps.

Light to import (no torch, no diffusers): the Studio asks on every change of its Generate menu.
"""

from __future__ import annotations

import json
from pathlib import Path

from levitor.defaults import NUM_INFERENCE_STEPS
from levitor.generation.guidance import DEFAULT_GUIDANCE, uses_controlnet

MINI = "mini"  # weights="mini": the shipped mini model (levitor/assets/mini)
MINI_WEIGHTS = Path(__file__).parents[1] / "assets" / "mini"  # the shipped model (see mini.load_mini_pipeline)
MINI_INFO = "mini.json"  # sizes, control radius and sampling defaults the model was trained with

LEVITOR_RULES, RELEASE_RULES = "levitor", "release"  # levitor.control.rules.RULE_SET_NAMES


def is_mini(weights: str | Path | None) -> bool:
    """True for ``"mini"`` and for a folder holding a mini model (its ``mini.json``)."""
    if weights is None:
        return False
    return str(weights) == MINI or (Path(weights) / MINI_INFO).is_file()


def mini_folder(weights: str | Path = MINI) -> Path:
    """The folder of a mini model: the shipped one for ``"mini"``."""
    return MINI_WEIGHTS if str(weights) == MINI else Path(weights)


def mini_info(folder: str | Path = MINI_WEIGHTS) -> dict:
    """The shipped model's facts: height, width, num_frames, patch_size, control_radius, steps, ..."""
    path = Path(folder) / MINI_INFO
    if not path.exists():
        raise FileNotFoundError(
            f"no mini model at {folder} ({MINI_INFO} missing). It ships inside the package; reinstall levitor, "
            "or train one with `levitor train configs/mini.yaml` and point `folder` at its export/ folder."
        )
    return json.loads(path.read_text())


def default_steps(weights: str | Path | None = None) -> int:
    """The denoising steps a generation runs unless told: the mini model's own (its mini.json's
    ``num_inference_steps``), :data:`~levitor.defaults.NUM_INFERENCE_STEPS` for SVD."""
    if is_mini(weights):
        return int(mini_info(mini_folder(weights))["num_inference_steps"])
    return NUM_INFERENCE_STEPS


def control_rules_of(weights: str | Path | None = None, guidance: str = DEFAULT_GUIDANCE, pipeline=None) -> str:
    """The rules ("levitor" or "release", :mod:`levitor.control.rules`) that build the control for these weights
    and guidance: the ones the ControlNet was trained with.

    weights: None (the released LeviTor weights: the release's rules), ``"mini"`` or a mini folder (levitor's),
        a ControlNet or saved-pipeline folder (its config's ``control_rules``; a release-layout config: the
        release's), or a hub id (the release's until it is downloaded and says otherwise).
    guidance: without a ControlNet (``"ttm"``) the points steer nothing; levitor's rules (per-pixel occlusion)
        render the warped reference video.
    pipeline: a loaded pipeline, whose ControlNet says it (``pipeline.control_rules``).
    """
    if is_mini(weights) or not uses_controlnet(guidance):
        return LEVITOR_RULES
    if pipeline is not None:
        return getattr(pipeline, "control_rules", LEVITOR_RULES)
    config = _controlnet_config(weights)
    if config is None:
        return RELEASE_RULES
    from levitor.models.convert import controlnet_config_from_official  # diffusers: only for a folder of weights

    return controlnet_config_from_official(config).get("control_rules", LEVITOR_RULES)


def _controlnet_config(weights: str | Path | None) -> dict | None:
    """The ControlNet's config.json in a local weights folder (release layout, ControlNet folder or saved
    pipeline); None for the default weights, a hub id or a folder without one."""
    if weights is None:
        return None
    folder = Path(weights)
    for candidate in (folder / "controlnet", folder):
        path = candidate / "config.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None
