"""The one write path (levitor._util.io): a full disk names the file and leaves nothing behind; the temporary files
of killed writers are swept by the next write of the same target, those of live writers never are."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from collections import namedtuple

import numpy as np
import pytest

from levitor._util.io import DiskFullError, atomic_path, temporary_sibling
from levitor._util.scene_files import lock_file
from levitor.scene import Scene
from levitor.viz import video
from levitor.viz.video import write_video

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def full_disk(monkeypatch):
    """The disk has no space left (as after a short write): what shutil.disk_usage reports."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 0))


def _short_write(fh, array, *args, **kwargs):
    """numpy on a full disk: part of the array lands, then an OSError without an errno."""
    fh.write(b"\x93NUMPY" + b"\0" * 54234)
    raise OSError("163840 requested and 54240 written")


def test_a_full_disk_during_a_scene_save_names_the_file_and_keeps_the_old_scene(tmp_path, demo_scene,
                                                                               monkeypatch, full_disk):
    path = demo_scene.save(tmp_path / "s.json")
    before = sorted(os.listdir(tmp_path))
    scene = demo_scene.copy()
    scene.image = scene.image.copy()
    scene.image[:4] = 0
    scene.depth = scene.depth * 0.5
    monkeypatch.setattr(np, "save", _short_write)
    with pytest.raises(DiskFullError) as info:
        scene.save(path)
    message = str(info.value)  # the file is the new depth map's (its name carries the new content's hash)
    assert message.startswith(f"the disk is full: {tmp_path / 's.depth-'}") and "0 bytes free" in message
    assert info.value.errno == errno.ENOSPC and info.value.filename.startswith(str(tmp_path / "s.depth-"))
    assert sorted(os.listdir(tmp_path)) == before  # the new image side file is gone again, no temporary file
    monkeypatch.undo()
    assert int(Scene.load(path).image[:4].max()) > 0  # the old scene, whole


def test_a_full_disk_during_a_first_save_leaves_nothing_but_the_lock(tmp_path, demo_scene, monkeypatch,
                                                                     full_disk):
    monkeypatch.setattr(np, "save", _short_write)
    with pytest.raises(DiskFullError, match="the disk is full"):
        demo_scene.save(tmp_path / "s.json")
    assert os.listdir(tmp_path) == [lock_file(tmp_path / "s.json").name]  # the 276 kB image went with it


def test_enospc_from_a_video_writer_names_the_video(tmp_path, monkeypatch):
    def no_space(frames, path, fps):
        path.write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(video.VIDEO_WRITERS, ".mp4", no_space)
    with pytest.raises(DiskFullError, match=f"the disk is full: {tmp_path / 'v.mp4'} could not be written"):
        write_video(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "v.mp4")
    assert os.listdir(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_next_write_sweeps_killed_writers_temporary_files_and_only_those(tmp_path):
    target = tmp_path / "v.mp4"
    dead = tmp_path / f".v.{_dead_pid()}-0123abcd.tmp.mp4"  # a killed writer's: its pid is gone, no lock
    live = temporary_sibling(target)  # a writer at work in this process: it holds the lock on its file
    others = [tmp_path / ".w.1-0123abcd.tmp.mp4", tmp_path / ".v.notes.tmp.mp4", tmp_path / ".v.1-0123abcd.tmp.gif"]
    for path in (dead, live, *others):
        path.write_bytes(b"partial")
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        write_video(np.zeros((2, 16, 16, 3), np.uint8), target)
    finally:
        os.close(fd)
    assert not dead.exists() and live.exists() and all(p.exists() for p in others)


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ValueError, match="the writer failed"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("the writer failed")
    assert os.listdir(tmp_path) == ["a.txt"] and target.read_text() == "old"
