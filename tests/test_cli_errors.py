"""Bad input through the CLI, as a careful user would try it: every expected failure is one line with exit
code 2 that names the file or argument, and nothing the user had is lost or rewritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from levitor._util.io import PAUSE_ENV
from levitor.cli import main
from levitor.viz.video import write_video

REPO = Path(__file__).resolve().parents[1]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


@pytest.fixture
def scene_file(tmp_path, demo_scene):
    return demo_scene.save(tmp_path / "scene.json")


def test_scene_path_that_is_a_folder(tmp_path, capsys):
    assert main(["preview", str(tmp_path)]) == 2
    err = _err(capsys)
    assert len(err.splitlines()) == 1 and str(tmp_path) in err


def test_out_into_a_file_that_is_not_a_folder(tmp_path, scene_file, capsys):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    assert main(["preview", str(scene_file), "--out", str(tmp_path / "blocker" / "p.mp4")]) == 2
    assert "blocker" in _err(capsys)


def test_out_that_is_a_folder_writes_inside_it(tmp_path, scene_file):
    (tmp_path / "videos").mkdir()
    assert main(["preview", str(scene_file), "--out", str(tmp_path / "videos")]) == 0
    assert (tmp_path / "videos" / "preview.mp4").stat().st_size > 0


def test_unsupported_video_suffix_names_the_supported_ones(tmp_path, scene_file, capsys):
    assert main(["preview", str(scene_file), "--out", str(tmp_path / "p.avi")]) == 2
    err = _err(capsys)
    assert ".mp4" in err and ".gif" in err and "p.avi" in err


def test_generate_out_gif_writes_a_gif(tmp_path, scene_file):
    rc = main(["generate", "--scene", str(scene_file), "--out", str(tmp_path / "clip.gif"), "--weights", "mini",
               "--device", "cpu", "--steps", "1"])
    assert rc == 0
    assert Image.open(tmp_path / "clip.gif").format == "GIF" and not (tmp_path / "clip.mp4").exists()


@pytest.mark.parametrize("seed", ["abc", "1e30", "-1", str(2**63), "1.5"])
def test_bad_seeds_are_usage_errors(scene_file, seed, capsys):
    with pytest.raises(SystemExit) as done:
        main(["generate", "--scene", str(scene_file), "--weights", "mini", "--seed", seed])
    assert done.value.code == 2 and "--seed" in _err(capsys)


@pytest.mark.parametrize("device", ["bogus", "mps", "cuda:7"])
def test_bad_devices_name_what_is_available(tmp_path, scene_file, device, capsys):
    rc = main(["generate", "--scene", str(scene_file), "--out", str(tmp_path / "v.mp4"), "--weights", "mini",
               "--device", device])
    err = _err(capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "'cpu'" in err and device in err


def _tiny_pipeline_dir(tmp_path) -> Path:
    from levitor.testing.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path / "pipe")["pipeline"]


def test_broken_weights_folders_name_the_file(tmp_path, scene_file, capsys):
    folder = _tiny_pipeline_dir(tmp_path)
    capsys.readouterr()  # saving the fixture prints progress bars
    weights = next((folder / "unet").glob("*.safetensors"))
    good = weights.read_bytes()
    cases = {
        "truncated": lambda: weights.write_bytes(good[: len(good) // 2]),
        "garbage": lambda: weights.write_bytes(b"\xff" * 64),
        "no class": lambda: (folder / "model_index.json").write_text(json.dumps({"unet": ["x", "y"]})),
        "bad json": lambda: (folder / "vae" / "config.json").write_text("{'not': json"),
    }
    index = (folder / "model_index.json").read_text()
    vae_config = (folder / "vae" / "config.json").read_text()
    for name, damage in cases.items():
        damage()
        rc = main(["generate", "--scene", str(scene_file), "--out", str(tmp_path / "v.mp4"), "--weights",
                   str(folder), "--device", "cpu", "--steps", "1", "--no-download"])
        err = _err(capsys)
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and "download it again" in err, (name, err)
        assert ("safetensors" in err) if name in ("truncated", "garbage") else (".json" in err), (name, err)
        weights.write_bytes(good)
        (folder / "model_index.json").write_text(index)
        (folder / "vae" / "config.json").write_text(vae_config)


def test_demo_refuses_bad_arguments_before_touching_the_users_scene(tmp_path, scene_file, capsys):
    before = scene_file.read_bytes()
    for extra, field in ((["--scale", "0"], "scale"), (["--scale", "-1"], "scale"), (["--frames", "1"], "num_frames")):
        rc = main(["demo", "--scene", str(scene_file), "--out", str(tmp_path), "--no-mini", *extra])
        assert rc == 2, extra
        assert field in _err(capsys)
        assert scene_file.read_bytes() == before  # the user's scene still loads, unchanged


def test_studio_refuses_an_unreadable_photo_before_starting_jupyter(tmp_path, capsys):
    img = tmp_path / "cat.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    img.write_bytes(img.read_bytes()[:40])  # torn
    assert main(["studio", str(img), "--no-browser"]) == 2
    err = _err(capsys)
    assert "cat.png" in err and "not a readable image" in err


def _kill_before_rename(command: list[str], folder, temporary: str) -> None:
    """Run ``command`` with the atomic writer paused before its rename, SIGKILL it once a temporary file
    matching ``temporary`` is in ``folder`` (the write is done, the rename is not)."""
    proc = subprocess.Popen(command, env={**os.environ, PAUSE_ENV: "30"}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(folder.glob(temporary)):
        time.sleep(0.1)
    assert list(folder.glob(temporary)), "the writer never reached its rename"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_kill_during_a_video_write_keeps_the_old_video(tmp_path, scene_file):
    out = tmp_path / "p.mp4"
    write_video(np.zeros((96, 32, 32, 3), np.uint8), out, fps=8)
    old = out.read_bytes()
    _kill_before_rename([sys.executable, "-m", "levitor", "preview", str(scene_file), "--out", str(out)],
                        tmp_path, ".p.*.tmp.mp4")
    assert out.read_bytes() == old  # the old video, whole; the torn one never took its name


def test_a_real_kill_during_a_scene_save_keeps_the_old_scene(tmp_path, scene_file):
    from levitor.scene import Scene

    code = ("import sys; from levitor.scene import Scene; s = Scene.load(sys.argv[1]); "
            "s.image = s.image.copy(); s.image[:4] = 0; s.objects[0].path[-1].x += 7; s.save(sys.argv[1])")
    _kill_before_rename([sys.executable, "-c", code, str(scene_file)], tmp_path, ".*.tmp.*")
    before = Scene.load(scene_file)  # the old scene, whole
    assert int(before.image[:4].max()) > 0
