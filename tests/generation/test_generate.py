"""generate(): the control is built by the rules the weights were trained with, and a named size can be asked for."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from levitor.control.rules import ControlRules
from levitor.defaults import SIZES, VideoSize
from levitor.engine import Engine
from levitor.generation.generate import generate
from levitor.testing.tiny import tiny_pipeline
from tests.conftest import make_scene


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


def _scene():
    s = make_scene(H=64, W=64, objects=[(10, 10, 30, 30, 0.4), (36, 20, 60, 44, 0.6)], depth=0.8, num_frames=4)
    s.add_mask(~(s.masks[0] | s.masks[1]))
    obj = s.select(1)  # the farther box moves left, in front of the other one: the rules differ there
    obj.path.append(type(obj.path[0])(obj.path[0].x - 30, obj.path[0].y - 10, 0.3))
    return s


def _captured_control(pipe, monkeypatch):
    seen = {}
    call = type(pipe).__call__

    def spy(self, image, control=None, **kwargs):
        seen["control"] = control
        seen["size"] = (kwargs.get("height"), kwargs.get("width"))
        kwargs["num_inference_steps"] = 1
        return call(self, image, control=control, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    return seen


@pytest.mark.parametrize("trained_with", ["levitor", "release"])
def test_generate_builds_the_control_by_the_rules_of_the_weights(pipe, tmp_path, monkeypatch, trained_with):
    pipe.controlnet.register_to_config(control_rules=trained_with)
    assert pipe.control_rules == trained_with
    seen = _captured_control(pipe, monkeypatch)
    scene = _scene()
    res = generate(scene, tmp_path, pipeline=pipe, steps=1, name="v")
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["control_rules"] == trained_with and trained_with in meta["control"]
    want = Engine(scene.copy(), rules=trained_with).update().signal
    assert torch.equal(seen["control"].points, want.points) and torch.equal(seen["control"].depth, want.depth)
    other = Engine(scene.copy(), rules="release" if trained_with == "levitor" else "levitor").update().signal
    assert not (torch.equal(other.points, want.points) and torch.equal(other.depth, want.depth))
    assert res.frames.shape == (4, 64, 64, 3)
    pipe.controlnet.register_to_config(control_rules="levitor")


def test_generate_rules_override_and_named_size(pipe, tmp_path, monkeypatch):
    seen = _captured_control(pipe, monkeypatch)
    res = generate(_scene(), tmp_path, pipeline=pipe, steps=1, name="v", rules=ControlRules.named("release"),
                   size=VideoSize(4, 48, 80))
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["control_rules"] == "release" and meta["size"] == "4x48x80"
    assert seen["size"] == (48, 80) and res.frames.shape == (4, 48, 80, 3)
    assert SIZES["release-demo"] == VideoSize(16, 512, 288) and SIZES["default"] == VideoSize(16, 320, 512)
    with pytest.raises(ValueError, match="unknown size"):
        generate(_scene(), tmp_path, pipeline=pipe, steps=1, size="huge")
    assert np.isfinite(res.frames).all()


def test_levitor_generate_shows_one_progress_bar(tmp_path):
    """`levitor generate` in a fresh process (the ControlNet path, a saved tiny pipeline): stderr holds one bar for
    the denoising (the CLI's, in steps); the pipeline's own (diffusers', no description, in iterations) stays off.
    Loading bars (diffusers' and transformers' "Loading ...") are not the generation's and are left out."""
    import os
    import re
    import subprocess
    import sys

    from levitor.testing.tiny import save_tiny_pipeline
    weights = save_tiny_pipeline(tmp_path / "pipe")["pipeline"]
    scene = _scene().save(tmp_path / "s.json")
    env = {**os.environ, "LEVITOR_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "levitor", "generate", "--scene", str(scene), "--out",
                          str(tmp_path / "v.mp4"), "--weights", str(weights), "--steps", "3", "--device", "cpu",
                          "--no-download"], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2], env=env)
    assert res.returncode == 0, res.stderr
    # every state a tqdm bar printed: "<desc>: <pct>%|<bar>| n/total [<times>, <rate>]" between \r and \n, the rate
    # "?step/s", "3.28step/s" or (slow steps) "11.79s/step"
    states = re.findall(r"([^\r\n]*?)\s*\d+%\|[^|\r\n]*\| \d+/(\d+) \[[^\]]*, ([^\]]+)\]", res.stderr)
    generation = {(desc, total, re.sub(r"^[\d.?]+(s/)?|/s$", "", rate.strip())) for desc, total, rate in states
                  if not desc.startswith("Loading")}
    assert generation == {("denoising:", "3", "step")}, states
