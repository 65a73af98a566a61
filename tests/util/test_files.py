"""A named pipe where levitor reads an image, a scene, a side file or weights is refused at once, by name (reading
one blocks until another process writes to it: the Studio and the CLI hung)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from levitor._util.files import NotARegularFileError, check_not_special, special_kind
from levitor._util.images import load_image
from levitor.scene import Scene

pytestmark = pytest.mark.timeout(60)  # without the check these reads wait forever


def test_kinds(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "file").write_bytes(b"x")
    os.symlink(tmp_path / "pipe", tmp_path / "link")
    assert special_kind(tmp_path / "pipe") == special_kind(tmp_path / "link") == "a named pipe (FIFO)"
    assert special_kind("/dev/null") == "a character device"
    assert special_kind(tmp_path / "file") is special_kind(tmp_path) is special_kind(tmp_path / "none") is None
    assert check_not_special(tmp_path / "file", "image file") == tmp_path / "file"


def test_an_image_that_is_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "cat.png")
    with pytest.raises(NotARegularFileError, match=r"image file .*cat.png is a named pipe \(FIFO\), not a regular"):
        load_image(tmp_path / "cat.png")
    with pytest.raises(NotARegularFileError, match="is a character device"):
        load_image("/dev/zero")  # endless bytes: it would fill memory


def test_a_scene_or_a_side_file_that_is_a_pipe(tmp_path, demo_scene):
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(NotARegularFileError, match="scene file .*pipe.json is a named pipe"):
        Scene.load(tmp_path / "pipe.json")
    path = demo_scene.save(tmp_path / "s.json")
    depth = tmp_path / json.loads(path.read_text())["depth_file"]
    depth.unlink()
    os.mkfifo(depth)
    with pytest.raises(NotARegularFileError, match=f"s.json: its depth file {depth} is a named pipe"):
        Scene.load(path)


def test_weights_that_are_pipes(tmp_path):
    from levitor.models.convert import load_controlnet
    from levitor.weights import resolve, resolve_file, verify_weights_folder

    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(NotARegularFileError, match="LeviTor ControlNet: .*model.safetensors is a named pipe"):
        resolve(tmp_path / "model.safetensors", what="LeviTor ControlNet")
    with pytest.raises(NotARegularFileError, match="weights file .*model.safetensors is a named pipe"):
        resolve_file(tmp_path / "model.safetensors")
    folder = tmp_path / "controlnet"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    os.mkfifo(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(NotARegularFileError, match="diffusion_pytorch_model.safetensors is a named pipe"):
        verify_weights_folder(tmp_path)
    with pytest.raises(NotARegularFileError, match="diffusion_pytorch_model.safetensors is a named pipe"):
        load_controlnet(folder)


def test_a_davis_frame_that_is_a_pipe(tmp_path):
    from levitor.data.clip import DataReadError
    from levitor.data.davis import DavisDataset, write_palette_png

    frames, masks = tmp_path / "JPEGImages" / "480p" / "cat", tmp_path / "Annotations" / "480p" / "cat"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frames / "00000.jpg")
    os.mkfifo(masks / "00000.png")
    with pytest.raises(DataReadError, match="00000.png is a named pipe"):
        DavisDataset(tmp_path, split="all").load_sequence("cat")
    (masks / "00000.png").unlink()
    write_palette_png(masks / "00000.png", np.zeros((16, 16), np.uint8))
    assert DavisDataset(tmp_path, split="all").load_sequence("cat").num_frames == 1
