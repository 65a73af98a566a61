"""The `levitor` command as a newcomer uses it."""

import json

import numpy as np
import pytest
from PIL import Image

from levitor.cli import main


def test_demo_writes_pictures_video_and_scene(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--frames", "8"]) == 0
    for name in ("scene.json", "input.png", "depth.png", "instances.png", "frames.png", "conditioning.png",
                 "scale_strip.png", "preview.mp4", "preview.gif", "control_overlay.mp4", "control.npz",
                 "mini_video.mp4", "mini_frames.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert Image.open(tmp_path / "frames.png").size[0] > 1000
    ctrl = np.load(tmp_path / "control.npz")
    assert ctrl["conditioning"].shape == (8, 3, 320, 512) and ctrl["conditioning"][:, 0].max() == 251
    assert json.loads((tmp_path / "scene.json").read_text())["num_frames"] == 8


def test_preview_of_a_saved_scene(tmp_path, demo_scene):
    path = demo_scene.save(tmp_path / "s.json")
    assert main(["preview", str(path), "--out", str(tmp_path / "p.gif")]) == 0
    assert Image.open(tmp_path / "p.gif").n_frames == demo_scene.num_frames


def test_generate_without_weights_says_what_to_download(tmp_path, demo_scene, capsys, monkeypatch):
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "home"))
    path = demo_scene.save(tmp_path / "s.json")
    rc = main(["generate", "--scene", str(path), "--out", str(tmp_path / "v.mp4"), "--no-download",
               "--device", "cpu", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in err and "LeviTor" in err
    assert (tmp_path / "levitor.scene.json").exists() or (tmp_path / "v.scene.json").exists()


def test_generate_with_the_shipped_mini_model_needs_no_download(tmp_path, demo_scene, capsys):
    path = demo_scene.save(tmp_path / "s.json")
    rc = main(["generate", "--scene", str(path), "--out", str(tmp_path / "v.mp4"), "--weights", "mini",
               "--device", "cpu", "--steps", "2"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "v.mp4").stat().st_size > 0 and (tmp_path / "v_control.mp4").stat().st_size > 0
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["weights"] == "mini" and meta["steps"] == 2 and "no SVD" in meta["base"]


def test_bad_scene_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["preview", str(tmp_path / "bad.json")]) == 2
    assert "not a valid scene file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["precompute", "eval", "train", "precompute-synthetic"])
def test_delegated_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def _vram_peaks(out: str) -> dict[tuple[str, str], float]:
    """(guidance, preset) -> predicted GB, from `levitor vram`'s output."""
    peaks, mode = {}, None
    for line in out.splitlines():
        if line.startswith(" guidance "):
            mode = line.split()[1]
        elif line.strip().startswith(("default", "low_vram")):
            peaks[mode, line.split(":")[0].strip()] = float(line.split(":")[1].split("GB")[0])
    return peaks


def test_vram_predicts_both_presets_and_each_guidance_without_a_gpu(tmp_path, demo_scene, capsys):
    small = demo_scene.save(tmp_path / "s.json")
    size = ["--scene", str(small), "--frames", "2", "--height", "64", "--width", "64"]
    assert main(["vram", *size, "--guidance", "controlnet"]) == 0
    out = capsys.readouterr().out
    assert "2 frames 64x64" in out
    peaks = _vram_peaks(out)
    assert set(peaks) == {("controlnet", "default"), ("controlnet", "low_vram")}
    assert 4.5 < peaks["controlnet", "low_vram"] < peaks["controlnet", "default"] < 8  # fp16 weights 5.9 GB in all
    assert main(["vram", *size, "--guidance", "ttm", "--preset", "default"]) == 0
    # training-free: no ControlNet weights (1.5 GB in fp16), about the same activations at this size
    assert 0.9 < peaks["controlnet", "default"] - _vram_peaks(capsys.readouterr().out)["ttm", "default"] < 1.6

    assert main(["vram", "--height", "300", "--preset", "default"]) == 2
    assert "multiples of 8, got 300x512: use 304x512" in capsys.readouterr().err


def test_named_sizes_reach_the_commands(capsys, monkeypatch):
    from levitor.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["generate", "--scene", "s.json", "--size", "release-demo", "--rules", "release"])
    assert (args.size, args.rules) == ("release-demo", "release")
    assert parser.parse_args(["generate", "--scene", "s.json"]).rules == "auto"  # the weights' own rules
    seen = {}

    def fake(frames, height, width, presets, guidance="controlnet"):
        seen["size"] = (frames, height, width)
        return {}

    import levitor.generation.memtrace as memtrace

    monkeypatch.setattr(memtrace, "predict_svd_xt_memory", fake)
    assert main(["vram", "--size", "release-demo"]) == 0
    assert seen["size"] == (16, 512, 288) and "16 frames 512x288" in capsys.readouterr().out
    assert main(["vram", "--size", "release-demo", "--frames", "8"]) == 0
    assert seen["size"] == (8, 512, 288)
    from levitor.training.commands import precompute_config

    cfg = precompute_config(parser.parse_args(["precompute", "x", "--out", "y", "--size", "release-demo"]))
    assert (cfg.height, cfg.width, cfg.num_frames) == (512, 288, 16)


def _leaving_scene(path):
    """A small scene whose moved object leaves the picture from about frame 3 on."""
    from levitor.scene import PathPoint
    from tests.conftest import make_scene

    s = make_scene(H=64, W=96, objects=[(10, 20, 30, 40, 0.4)], depth=0.8, num_frames=4)
    s.add_mask(~s.masks[0])
    obj = s.select(0)
    obj.name = "ball"
    obj.path.append(PathPoint(obj.path[0].x + 160, obj.path[0].y, 0.4))
    return s.save(path)


def test_preview_and_generate_print_lost_control_and_generate_records_it(tmp_path):
    """Subprocesses, as a user runs them: one warning line on stderr, exit code 0, the record keeps the warning."""
    import subprocess
    import sys

    scene = _leaving_scene(tmp_path / "s.json")
    run = [sys.executable, "-m", "levitor"]
    pv = subprocess.run([*run, "preview", str(scene), "--out", str(tmp_path / "p.gif")], capture_output=True,
                        text=True, timeout=300)
    assert pv.returncode == 0, pv.stderr
    lines = [x for x in pv.stderr.splitlines() if "warning" in x]
    assert lines == ["levitor preview: warning: 'ball' is outside the picture in frames 3-4 (of 4): it gets no "
                     "control points there (the model is told it left); keep its path inside the image if it should "
                     "stay in view"]
    gen = subprocess.run([*run, "generate", "--scene", str(scene), "--out", str(tmp_path / "v.mp4"), "--weights",
                          "mini", "--device", "cpu", "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert [x for x in gen.stderr.splitlines() if "warning" in x] == [lines[0].replace("preview", "generate")]
    (w,) = json.loads((tmp_path / "v.json").read_text())["warnings"]
    assert (w["object_index"], w["instance_id"], w["frames"], w["reason"]) == (0, 1, [2, 3], "left_view")


def test_generate_a_scene_without_masks_says_what_to_do(tmp_path, capsys):
    from levitor.scene import Scene

    path = Scene(image=np.zeros((32, 32, 3), np.uint8), depth=np.full((32, 32), 0.5, np.float32),
                 num_frames=4).save(tmp_path / "empty.json")
    assert main(["generate", "--scene", str(path), "--out", str(tmp_path / "v.mp4"), "--weights", "mini"]) == 2
    err = capsys.readouterr().err
    assert "the scene has no masks" in err and "levitor studio" in err and len(err.strip().splitlines()) == 1
