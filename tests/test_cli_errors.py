"""Bad input through the CLI, as a careful user would try it: every expected failure is one line with exit
code 2 that names the file or argument, and nothing the user had is lost or rewritten."""

from __future__ import annotations

import contextlib
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


def test_a_missing_model_is_the_same_one_line_in_generate_and_eval(tmp_path, scene_file, capsys, monkeypatch):
    """One error policy: the same cause (the user's ControlNet is there, the SVD base is not) is the same one line
    in `levitor generate` and `levitor eval`, and names no flag the command lacks."""
    from levitor.testing.tiny import save_official_controlnet, tiny_controlnet

    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "home"))
    weights = save_official_controlnet(tiny_controlnet(), tmp_path / "LeviTor")
    capsys.readouterr()
    assert main(["generate", "--scene", str(scene_file), "--out", str(tmp_path / "gen"), "--weights", str(weights),
                 "--device", "cpu", "--no-download"]) == 2
    generate = _err(capsys)
    assert main(["eval", str(tmp_path / "DAVIS"), "--model", str(weights), "--device", "cpu",
                 "--out", str(tmp_path / "eval")]) == 2
    evaluate = _err(capsys).splitlines()[-1]
    assert len(generate.splitlines()) == 1 and generate.startswith("levitor generate: error: "), generate
    assert generate.removeprefix("levitor generate: error: ") == evaluate.removeprefix("levitor eval: error: ")
    assert f"{weights} holds the LeviTor ControlNet, but not the Stable Video Diffusion base" in generate
    assert "downloads are off" in generate and "hf download stabilityai/stable-video-diffusion-img2vid-xt" in generate
    assert "--no-download" not in evaluate


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


def _kill_before_rename(command: list[str], folder, temporary: str, pause: str = "30") -> None:
    """Run ``command`` with the atomic writer paused before its rename, SIGKILL it once a temporary file
    matching ``temporary`` is in ``folder`` (the write is done, the rename is not). ``pause``: PAUSE_ENV's value
    ("30:.json" pauses only the JSON's rename)."""
    proc = subprocess.Popen(command, env={**os.environ, PAUSE_ENV: pause}, cwd=REPO,
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
    assert len(list(tmp_path.glob(".p.*.tmp.mp4"))) == 1  # the killed writer's temporary file...
    write_video(np.zeros((4, 32, 32, 3), np.uint8), out, fps=8)
    assert list(tmp_path.glob(".p.*.tmp.mp4")) == []  # ...is swept by the next write of that video


def test_a_real_kill_during_a_scene_save_keeps_the_old_scene(tmp_path, scene_file):
    from levitor.scene import Scene

    code = ("import sys; from levitor.scene import Scene; s = Scene.load(sys.argv[1]); "
            "s.image = s.image.copy(); s.image[:4] = 0; s.objects[0].path[-1].x += 7; s.save(sys.argv[1])")
    _kill_before_rename([sys.executable, "-c", code, str(scene_file)], tmp_path, ".*.tmp.*")
    before = Scene.load(scene_file)  # the old scene, whole
    assert int(before.image[:4].max()) > 0


def test_a_kill_at_the_json_step_leaves_orphans_that_the_next_save_sweeps(tmp_path, scene_file):
    """Killed after both new side files are in place and before the JSON rename: the old scene loads, and the
    next save leaves only the scene, the two side files it names and the lock."""
    from levitor.scene import Scene

    code = ("import sys; from levitor.scene import Scene; s = Scene.load(sys.argv[1]); "
            "s.image = s.image.copy(); s.image[:4] = 0; s.depth = s.depth * 0.5; s.save(sys.argv[1])")
    old_files = sorted(os.listdir(tmp_path))
    _kill_before_rename([sys.executable, "-c", code, str(scene_file)], tmp_path, ".scene.*.tmp.json",
                        pause="30:.json")
    assert len(os.listdir(tmp_path)) == len(old_files) + 3  # two new side files and the JSON's temporary file
    scene = Scene.load(scene_file)  # the old scene, whole
    assert int(scene.image[:4].max()) > 0
    scene.objects[0].path[-1].x += 1
    scene.save(scene_file)
    named = {n for n in os.listdir(tmp_path) if n in scene_file.read_text() and n != scene_file.name}
    assert len(named) == 2
    assert {n for n in os.listdir(tmp_path) if not n.endswith(".lock")} == {scene_file.name, *named}


# ------------------------------------------------------------------ issue 27 (round two): run as a user runs them
def _levitor(*args, timeout: float = 180) -> tuple[int, str]:
    """``levitor ARGS`` in a fresh process: (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "levitor", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return proc.returncode, proc.stderr.strip()


def _the_error_line(err: str) -> str:
    """The one line a refusal prints (progress bars of a load before it may precede it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and err.splitlines()[-1] == lines[0], err
    return lines[0]


def test_demo_never_rewrites_the_scene_it_was_given(tmp_path, demo_scene):
    """`levitor demo --scene my/scene.json --out my --scale 2`: the help says the scene is not modified."""
    from levitor.scene import Scene

    folder = tmp_path / "my"
    scene = demo_scene.save(folder / "scene.json")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rc, err = _levitor("demo", "--scene", scene, "--out", folder, "--scale", "2", "--no-mini")
    assert rc == 0, err
    assert {name: (folder / name).read_bytes() for name in before} == before  # the scene and its side files
    assert Scene.load(scene).scale == demo_scene.scale
    assert Scene.load(folder / "demo_scene.json").scale == 2.0  # the demo's scene, beside it


def test_size_with_the_mini_model_is_refused_in_one_line(tmp_path, scene_file):
    rc, err = _levitor("generate", "--scene", scene_file, "--weights", "mini", "--size", "release-demo",
                       "--out", tmp_path / "v.mp4", "--device", "cpu", "--steps", "1")
    line = _the_error_line(err)
    assert rc == 2 and "'release-demo'" in line and "32x32, 8 frames" in line and "leave --size out" in line
    assert not (tmp_path / "v.mp4").exists()


def test_a_wrong_shaped_tensor_names_the_tensor_both_shapes_and_the_download(tmp_path, scene_file):
    import torch
    from safetensors.torch import load_file, save_file

    from levitor.testing.tiny import save_tiny_pipeline

    folders = save_tiny_pipeline(tmp_path / "weights", layout="official")
    weights = folders["controlnet"] / "controlnet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    name = "controlnet_mid_block.weight"
    want = tuple(state[name].shape)
    got = (want[0] + 1, *want[1:])
    save_file({**state, name: torch.zeros(got)}, weights)
    rc, err = _levitor("generate", "--scene", scene_file, "--weights", folders["controlnet"], "--base",
                       folders["base"], "--out", tmp_path / "v.mp4", "--device", "cpu", "--steps", "1",
                       "--no-download")
    line = _the_error_line(err)
    assert rc == 2 and f"{name} is {got} in the file, the config builds {want}" in line
    assert "hf download hlwang06/LeviTor" in line


def test_named_pipes_are_refused_at_once(tmp_path, scene_file):
    """`levitor studio pipe.png` hung; a pipe as the scene is refused the same way (tests/util/test_files.py:
    every other place a path is opened)."""
    os.mkfifo(tmp_path / "pipe.png")
    rc, err = _levitor("studio", tmp_path / "pipe.png", "--no-browser", timeout=60)
    line = _the_error_line(err)
    assert rc == 2 and f"{tmp_path / 'pipe.png'} is a named pipe (FIFO)" in line
    os.mkfifo(tmp_path / "pipe.json")
    rc, err = _levitor("preview", tmp_path / "pipe.json", "--out", tmp_path / "p.mp4", timeout=60)
    assert rc == 2 and "pipe.json is a named pipe (FIFO)" in _the_error_line(err)


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    """A tmpfs mounted on ``folder`` for the block (root only: the test is skipped where mounting is refused)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_real_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    """A 400 kB disk: the demo's scene does not fit (its image is 276 kB, its depth 655 kB)."""
    with _tmpfs(tmp_path / "small", "size=400k") as small:
        rc, err = _levitor("demo", "--out", small, "--no-mini")
        line = _the_error_line(err)
        assert rc == 2 and "the disk is full" in line and f"{small}/scene." in line
        assert [n for n in os.listdir(small) if not n.endswith(".lock")] == []  # no orphan, no temporary file


def test_out_into_a_read_only_folder_names_it_and_says_what_to_do(tmp_path, scene_file, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:  # root writes through permissions: a read-only file system instead
            stack.enter_context(_tmpfs(folder, "ro,size=64k"))
        else:
            folder.chmod(0o555)
            stack.callback(folder.chmod, 0o755)
        for args in (["preview", scene_file, "--out", folder / "p.mp4"],  # a video
                     ["demo", "--scene", scene_file, "--out", folder, "--no-mini"]):  # a scene first
            rc, err = _levitor(*args)
            line = _the_error_line(err)
            assert rc == 2 and f"{folder} is not writable" in line and "choose a folder you can write to" in line
        assert main(["demo", "--scene", str(scene_file), "--out", str(folder / "sub"), "--no-mini"]) == 2
        assert f"{folder} is not writable" in _err(capsys)  # a folder to make inside it
