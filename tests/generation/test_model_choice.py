"""What a weights choice means before it loads (levitor.generation.model_choice): the rules its control is built by
and the steps it runs, the same answers for ``levitor generate`` and the Studio."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from levitor.defaults import NUM_INFERENCE_STEPS
from levitor.generation.guidance import CONTROLNET, CONTROLNET_TTM, TTM
from levitor.generation.model_choice import MINI, MINI_WEIGHTS, control_rules_of, default_steps, mini_info
from levitor.models.convert import RELEASE_CLASS_NAME


def _config(folder, **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("weights", "guidance", "rules"), [
    (None, CONTROLNET, "release"),  # the released LeviTor weights
    (None, CONTROLNET_TTM, "release"),
    (None, TTM, "levitor"),  # no ControlNet reads the points
    (MINI, CONTROLNET, "levitor"),
    (MINI, TTM, "levitor"),
])
def test_the_rules_of_the_default_and_the_mini_weights(weights, guidance, rules):
    assert control_rules_of(weights, guidance) == rules


def test_the_rules_of_a_weights_folder_are_its_controlnet_configs(tmp_path):
    _config(tmp_path / "release" / "controlnet", _class_name=RELEASE_CLASS_NAME)  # the release's layout
    assert control_rules_of(tmp_path / "release") == "release"
    _config(tmp_path / "trained", _class_name="ControlNetSVD", control_rules="levitor")  # levitor-trained
    assert control_rules_of(tmp_path / "trained") == "levitor"
    assert control_rules_of(tmp_path / "trained", TTM) == "levitor"
    saved = tmp_path / "saved"
    _config(saved / "controlnet", _class_name="ControlNetSVD", control_rules="release")
    (saved / "model_index.json").write_text(json.dumps({"_class_name": "LeviTorPipeline"}))
    assert control_rules_of(saved) == "release"
    assert control_rules_of("someone/LeviTor-finetune") == "release"  # not here yet: the release's layout
    assert control_rules_of(None, CONTROLNET, SimpleNamespace(control_rules="levitor")) == "levitor"  # loaded


def test_the_steps_of_a_choice_are_the_mini_models_own_or_svds(tmp_path):
    assert default_steps(None) == NUM_INFERENCE_STEPS
    assert default_steps(MINI) == mini_info()["num_inference_steps"] == json.loads(
        (MINI_WEIGHTS / "mini.json").read_text())["num_inference_steps"]
    other = tmp_path / "mini"
    other.mkdir()
    shutil.copyfile(MINI_WEIGHTS / "mini.json", other / "mini.json")
    info = json.loads((other / "mini.json").read_text())
    (other / "mini.json").write_text(json.dumps({**info, "num_inference_steps": 11}))
    assert default_steps(other) == 11
