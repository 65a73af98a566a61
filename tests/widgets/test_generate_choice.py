"""What Generate will use, seen before pressing it: the live view's rules follow the model chosen in Generate, the
control warnings show beside the objects, the guidance modes run, and the Studio and ``levitor generate`` run the
mini model with the same steps (issues 24, 25, 26)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ipycanvas")
import levitor.generation.mini as mini_module
from levitor.bundled import bundled_scene
from levitor.cli import main
from levitor.engine import Engine
from levitor.generation.guidance import CONTROLNET, CONTROLNET_TTM, GUIDANCE_MODES, TTM, TTM_NEEDS
from levitor.generation.model_choice import mini_info
from levitor.generation.presets import DEFAULT_PRESET
from levitor.scene import PathPoint
from levitor.weights import SVD_XT_ID, WeightsNotFoundError
from levitor_widgets import Studio
from levitor_widgets.generate_panel import GenerateSettings, models_missing, run_generate
from tests.conftest import make_scene

H, W, F = 160, 256, 8


@pytest.fixture
def studio(tmp_path):
    return Studio(bundled_scene(H, W, num_frames=F), out_dir=tmp_path / "out", show_3d=False, strip_scales=(1.0,))


def far_scene():
    """A moved object whose path depth is 1.0: the release's rules never draw it (K = 0 in every frame)."""
    s = make_scene(H=60, W=80, objects=[(20, 20, 40, 40, 1.0)], depth=1.0, num_frames=4)
    s.add_mask(~s.masks[0])
    obj = s.select(0)
    obj.path.append(PathPoint(obj.path[0].x + 10, obj.path[0].y, 1.0))
    return s


def test_the_live_view_runs_the_rules_of_the_model_chosen_in_generate(studio):
    panel = studio.generate_panel
    assert panel.model.value == "levitor" and studio.control_rules == "release"  # the released LeviTor weights
    assert studio.engine.rules.name == "release" and "release's rules" in panel.rules.value
    want = Engine(studio.scene.copy(), rules="release").update().signal
    assert studio.result.signal.points.equal(want.points) and studio.result.k == Engine(
        studio.scene.copy(), rules="release").update().k  # the points Generate sends, exactly
    studio.choose_model("mini")
    assert studio.control_rules == "levitor" and studio.engine.rules.name == "levitor"
    assert "levitor's rules" in panel.rules.value and "mini model" in panel.rules.value
    assert studio.result.signal.points.equal(Engine(studio.scene.copy()).update().signal.points)
    studio.choose_model("levitor", TTM)  # no ControlNet reads the points: levitor's rules render the reference
    assert studio.control_rules == "levitor" and "training-free" in panel.rules.value
    studio.choose_model(guidance=CONTROLNET_TTM)
    assert studio.control_rules == "release"
    assert [v for _, v in panel.guidance.options] == list(GUIDANCE_MODES)


def test_an_object_that_gets_no_points_is_marked_beside_it_and_said(tmp_path):
    studio = Studio(far_scene(), out_dir=tmp_path, show_3d=False, strip_scales=(1.0,))
    assert studio.control_rules == "release"
    (w,) = studio.result.warnings
    assert (w.object_index, w.reason) == (0, "far_path_depth")
    note = studio.objects_panel.notes[0].value
    assert "levitor-control-warning" in note and "path depth 1.0" in note and "in every frame" in note  # tooltip
    assert studio.messages.text.startswith("no control: ") and "path depth 1.0" in studio.messages.text
    studio.choose_model("mini")  # levitor's rules draw it: fixed, and the mark and the line go
    assert studio.result.warnings == [] and studio.objects_panel.notes[0].value == ""
    assert studio.messages.text == ""
    studio.choose_model("levitor")  # back: said again
    assert "path depth 1.0" in studio.objects_panel.notes[0].value and "path depth 1.0" in studio.messages.text
    studio.say("something else")  # a newer message is not cleared by a fix
    studio.choose_model("mini")
    assert studio.objects_panel.notes[0].value == "" and studio.messages.text == "something else"


def test_training_free_guidance_without_svd_xt_says_what_to_download(monkeypatch):
    import levitor.weights as weights

    def missing(name, **_kw):
        raise WeightsNotFoundError(f"{name} is missing: run `levitor download svd-xt` (into ~/models)")

    monkeypatch.setattr(weights, "resolve", missing)
    why = models_missing(False, None, False, TTM)
    assert SVD_XT_ID in why and "levitor download svd-xt" in why and TTM_NEEDS in why
    assert "training-free" not in models_missing(False, None, False, CONTROLNET).split("\n")[-1]


def test_training_free_preview_names_what_is_missing(tmp_path, monkeypatch):
    import levitor_widgets.generate_panel as gp

    monkeypatch.setattr(gp, "models_missing", lambda *a: f"SVD-xt is missing\n{TTM_NEEDS}")
    out = run_generate(bundled_scene(H, W, num_frames=F), GenerateSettings("cpu", DEFAULT_PRESET, 2, 1, "levitor", TTM),
                       lambda *a: None, __import__("threading").Event(), out_dir=tmp_path)
    assert not out.used_model and "no SVD-xt weights here" in out.message
    assert out.details.startswith("For SVD-xt, training-free") and TTM_NEEDS in out.details


def test_the_mini_model_runs_training_free_from_the_menu_and_the_record_says_so(studio):
    studio.choose_model("mini", TTM)
    assert studio.generate(wait=True)
    panel = studio.generate_panel
    assert panel.error is None, panel.status.value
    out = panel.outcome
    assert out.used_model and out.video_path.stat().st_size > 0 and "guidance ttm" in panel.status.value
    record = json.loads(out.record_path.read_text())
    assert record["guidance"] == TTM and record["weights"] == "mini" and record["control_rules"] == "levitor"
    assert record["ttm"]["num_steps"] == mini_info()["num_inference_steps"]


def test_the_studio_and_the_cli_run_the_mini_model_with_the_same_steps(studio, tmp_path, monkeypatch):
    asked = []
    real = mini_module.generate_mini

    def spy(*args, **kwargs):
        asked.append(kwargs["num_inference_steps"])
        return real(*args, **kwargs)

    monkeypatch.setattr(mini_module, "generate_mini", spy)
    studio.choose_model("mini")
    assert studio.generate(wait=True) and studio.generate_panel.error is None, studio.generate_panel.status.value
    scene_path = studio.scene.save(tmp_path / "scene.json")
    assert main(["generate", "--scene", str(scene_path), "--out", str(tmp_path / "cli.mp4"), "--weights", "mini",
                 "--device", "cpu"]) == 0
    steps = mini_info()["num_inference_steps"]  # the mini model's own, in its mini.json
    assert asked == [steps, steps]
    studio_record = json.loads(studio.generate_panel.outcome.record_path.read_text())
    cli_record = json.loads((tmp_path / "cli.json").read_text())
    assert studio_record["steps"] == cli_record["steps"] == steps
