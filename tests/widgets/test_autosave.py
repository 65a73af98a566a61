"""Autosaves: one per scene (image hash + name), never one per folder; broken ones are kept aside with a message."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from levitor.bundled import bundled_scene
from levitor.scene import PathPoint, Scene
from levitor_widgets.autosave import AutosaveStore, image_key, slug


def _photo(seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    return Scene(image=rng.integers(0, 255, (40, 64, 3), dtype=np.uint8), depth=np.full((40, 64), 0.5, np.float32))


def test_two_images_in_one_folder_keep_their_own_autosaves(tmp_path):
    store = AutosaveStore(tmp_path)
    a, b = bundled_scene(80, 128, num_frames=4), _photo(1)
    a.objects[0].path.append(PathPoint(10, 10, 0.01))
    store.save(a, "bundled", image_key(a))
    store.save(b, "cat", image_key(b))
    store.save(b, "cat", image_key(b))  # editing the cat again never touches the bundled scene's file
    again, msg = store.load("bundled", image_key(a))
    assert msg == "" and len(again.objects[0].path) == len(a.objects[0].path)
    assert store.load("cat", image_key(b))[0] is not None
    assert store.load("bundled", image_key(b)) == (None, "")  # another image under the same name: its own slot
    assert sorted(r.name for r in store.recent()) == ["bundled", "cat"]
    assert store.recent()[0].name == "cat" and "object" in store.recent()[0].label


def test_a_broken_autosave_is_renamed_aside_with_a_message(tmp_path):
    store = AutosaveStore(tmp_path)
    s = _photo(2)
    path = store.save(s, "cat", image_key(s))
    path.write_text(path.read_text()[:50])  # torn
    scene, msg = store.load("cat", image_key(s))
    assert scene is None and "could not be read" in msg and ".broken-" in msg
    aside = [p for p in store.root.iterdir() if ".broken-" in p.name]
    assert len(aside) == 1 and len((aside[0] / "scene.json").read_text()) == 50  # kept as it was, for the user
    assert not store.scene_path(store.key("cat", image_key(s))).exists()
    assert [r.name for r in store.recent()] == []  # the broken one is not offered as a recent scene


def test_an_old_per_folder_autosave_is_read_but_never_overwritten(tmp_path):
    s = _photo(3)
    s.save(tmp_path / "autosave.json")
    before = (tmp_path / "autosave.json").read_text()
    store = AutosaveStore(tmp_path)
    scene, msg = store.load("photo", image_key(s))
    assert scene is not None and "old autosave" in msg
    store.save(scene, "photo", image_key(s))
    assert (tmp_path / "autosave.json").read_text() == before
    assert store.load("other", image_key(_photo(4))) == (None, "")


@pytest.mark.parametrize("name,want", [("chelsea", "chelsea"), ("my cat / 2", "my-cat-2"), ("", "scene"),
                                       ("..", "scene")])
def test_scene_names_become_safe_folder_names(name, want):
    assert slug(name) == want


def test_the_studio_says_when_its_autosave_was_broken_and_starts_afresh(tmp_path):
    pytest.importorskip("ipycanvas")
    from levitor_widgets import Studio

    scene = bundled_scene(80, 128, num_frames=4)
    first = Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)
    first.set_mode("path")
    first.add_point(100.0, 70.0)
    first.autosave()
    path = first.autosave_path
    first.close()
    path.write_text('{"format": "levitor-scene", "objects": 5}')  # readable JSON, not a scene
    again = Studio(scene, out_dir=tmp_path, name="garden", show_3d=False)
    assert not again.resumed and len(again.scene.objects[0].path) == len(scene.objects[0].path)
    text = again.messages.text
    assert "could not be read" in text and ".broken-" in text and "garden" in text
    aside = [p for p in (tmp_path / "autosaves").iterdir() if ".broken-" in p.name]
    assert len(aside) == 1 and (aside[0] / "scene.json").read_text() == '{"format": "levitor-scene", "objects": 5}'
    again.add_point(90.0, 60.0)
    again.autosave()  # the fresh scene autosaves in the slot again; the broken copy stays as it was
    assert again.autosave_path.exists() and len(list((tmp_path / "autosaves").iterdir())) == 2


# ---------------------------------------------------------------------- one Studio per slot, the newest wins
SECOND_STUDIO = """
import json, sys
from levitor.bundled import bundled_scene
from levitor_widgets import Studio
s = Studio(bundled_scene(80, 128, num_frames=4), out_dir=sys.argv[1], show_3d=False)
s.set_mode("path")
s.add_point(100.0, 70.0)
s.autosave()
print(json.dumps({"name": s.name, "text": s.messages.text}), flush=True)
sys.stdin.readline()  # hold the Studio open until the test says
s.add_point(60.0, 20.0)  # one more edit; the process then exits (its lock goes with it)
s.autosave()
"""


def _studio(out, **kw):
    pytest.importorskip("ipycanvas")
    from levitor_widgets import Studio

    return Studio(bundled_scene(80, 128, num_frames=4), out_dir=out, show_3d=False, **kw)


def _points(scene) -> list[tuple[float, float]]:
    """Every path point of a scene, (x, y)."""
    return [(p.x, p.y) for o in scene.objects for p in o.path]


def test_two_studios_in_two_processes_never_share_an_autosave(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("ipycanvas")
    start = _points(_studio(tmp_path / "probe", autosave=False).scene)  # the bundled scene's paths
    other = subprocess.Popen([sys.executable, "-c", SECOND_STUDIO, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = json.loads(other.stdout.readline())
        assert line["name"] == "scene" and "another" not in line["text"]
        here = _studio(tmp_path)  # this kernel opens the same scene while the other edits it
        assert here.name == "scene (2)" and here.resumed  # a copy, starting from the other's last autosave
        assert _points(here.scene) == start + [(100.0, 70.0)]
        text = here.messages.text
        assert f"'scene' is open in another Studio (process {other.pid} on " in text and "'scene (2)'" in text
        here.set_mode("path")
        here.add_point(20.0, 20.0)
        here.autosave()
        assert here.autosave_path.parent.name == "scene-2-" + here.image_hash[:12]
        other.stdin.write("go\n")
        other.stdin.flush()
        assert other.wait(60) == 0
    finally:
        if other.poll() is None:
            other.kill()
    here.close()
    store = AutosaveStore(tmp_path)
    theirs, _ = store.load("scene", here.image_hash)
    mine, _ = store.load("scene (2)", here.image_hash)
    assert _points(theirs) == start + [(100.0, 70.0), (60.0, 20.0)]  # both kept every edit
    assert _points(mine) == start + [(100.0, 70.0), (20.0, 20.0)]
    assert not list(store.root.glob("*/lock.json"))  # both let go of their slots
    again = _studio(tmp_path)  # a restart: the newest autosave ("scene", written last) wins, the copy is named
    assert again.name == "scene" and _points(again.scene) == _points(theirs)
    assert "resumed the autosave of 'scene'" in again.messages.text


def _hold_lock(folder: Path, pid: int, started: float | None):
    from levitor_widgets.autosave_lock import LOCK_FILE

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": started,
                                                "kernel": "abcdef0123"}))


def test_a_live_owner_is_respected_and_a_dead_or_reused_pid_is_taken_over_silently(tmp_path):
    import subprocess
    import sys

    from levitor_widgets.autosave_lock import process_start_time

    first = _studio(tmp_path)
    first.set_mode("path")
    first.add_point(100.0, 70.0)
    first.close()
    slot = first.autosave_path.parent
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _hold_lock(slot, sleeper.pid, process_start_time(sleeper.pid))  # a live kernel holds it
        copy = _studio(tmp_path)
        assert copy.name == "scene (2)" and copy.resumed and "kernel abcdef01" in copy.messages.text
        copy.close()
        _hold_lock(slot, sleeper.pid, process_start_time(sleeper.pid) - 3600)  # its pid, reused by a newer process
        reused = _studio(tmp_path)
        assert reused.name == "scene" and reused.resumed and "another" not in reused.messages.text
        reused.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    _hold_lock(slot, sleeper.pid, None)  # a dead process
    taken = _studio(tmp_path)
    assert taken.name == "scene" and taken.resumed and "another" not in taken.messages.text
    assert json.loads((slot / "lock.json").read_text())["pid"] == os.getpid()
    taken.close()
    assert not (slot / "lock.json").exists()


def test_after_a_rename_the_newest_autosave_wins_and_the_other_is_named(tmp_path):
    a = _studio(tmp_path)
    start = _points(a.scene)
    a.set_mode("path")
    a.add_point(100.0, 70.0)
    a.autosave()
    a.rename("my cat")
    a.add_point(60.0, 20.0)
    a.close()
    again = _studio(tmp_path)  # the scene's default name is "scene"; "my cat" was written last
    assert again.name == "my cat" and _points(again.scene) == start + [(100.0, 70.0), (60.0, 20.0)]
    assert "resumed 'my cat', the newest autosave of this photo ('scene' is older" in again.messages.text
    again.close()
    named = _studio(tmp_path, name="scene")  # asked for by name: that one, and the newer one is named
    assert named.name == "scene" and _points(named.scene) == start + [(100.0, 70.0)]
    assert "a newer one of this photo is 'my cat'" in named.messages.text
    named.save(tmp_path / "kept.json")
    named.close()
    from levitor_widgets import Studio

    opened = Studio(str(tmp_path / "kept.json"), out_dir=tmp_path, show_3d=False)  # a scene file: its own name
    assert opened.name == "kept" and not opened.resumed and _points(opened.scene) == start + [(100.0, 70.0)]
    assert "this photo has an autosave, 'my cat'" in opened.messages.text
    opened.close()
    fresh = _studio(tmp_path, resume=False)
    assert fresh.name == "scene" and not fresh.resumed and _points(fresh.scene) == start


def test_a_name_another_process_edits_is_refused_on_rename(tmp_path):
    import subprocess
    import sys

    from levitor_widgets.autosave_lock import process_start_time

    s = _studio(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _hold_lock(AutosaveStore(tmp_path).folder(AutosaveStore.key("garden", s.image_hash)), sleeper.pid,
                   process_start_time(sleeper.pid))
        s.rename("garden")
        assert s.name == "scene" and s.messages.error and "'garden' is open in another Studio" in s.messages.text
        assert s.modebar.name.value == "scene"
    finally:
        sleeper.kill()
        sleeper.wait()
