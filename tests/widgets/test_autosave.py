"""Autosaves: one per scene (image hash + name), never one per folder; broken ones are kept aside with a message."""

from __future__ import annotations

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
