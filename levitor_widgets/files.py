"""The Studio's files: save and load a scene, reopen a recent one, rename it, and the autosave.

One autosave per scene (:mod:`levitor_widgets.autosave`), written only after an edit, never by a Studio that a
newer one of the same scene (a re-run cell) has replaced: the old one saves its last edit and stops first.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from levitor._util.hashing import array_hash
from levitor.scene import Scene
from levitor_widgets.autosave import AutosaveStore, image_key

_LIVE: dict[str, weakref.ref] = {}  # out_dir|autosave key -> the Studio editing that scene


class SceneFiles:
    """Mixed into :class:`~levitor_widgets.studio.Studio`."""

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Save the scene (JSON + image PNG + depth .npy beside it); default ``out_dir/<name>.json``."""
        out = self.scene.save(Path(path) if path else self.out_dir / f"{self.name}.json")
        self.say(f"saved {out}")
        return out

    def load(self, path: str | os.PathLike) -> None:
        """Load a scene of the same size into this Studio (a new size needs a new Studio)."""
        self._replace(Scene.load(path), f"loaded {path}", name=Path(path).stem)

    def open_recent(self, key: str) -> None:
        """Reopen an autosaved scene (the 'recent scenes' menu)."""
        scene = self.store.open(key)
        entry = next((r for r in self.store.recent(100) if r.key == key), None)
        self._replace(scene, f"opened the recent scene {entry.name if entry else key}",
                      name=entry.name if entry else None)

    def _replace(self, scene: Scene, message: str, name: str | None = None) -> None:
        if (scene.height, scene.width, scene.num_frames) != (self.scene.height, self.scene.width,
                                                              self.scene.num_frames):
            s = self.scene
            raise ValueError(f"that scene is {scene.width}x{scene.height}, {scene.num_frames} frames; this Studio is "
                             f"{s.width}x{s.height}, {s.num_frames}: open it with Studio(...)")
        self.scheduler.flush()
        self.autosave()  # what was being edited is kept under its own name first
        _LIVE.pop(self._live_key(), None)
        self.scene, self.image_hash, self._saved, self._cloud = scene, image_key(scene), None, None
        self._own_depth = (scene.depth, scene.depth_source)
        self.name = name or self.name
        self.modebar.name.value = self.name
        self.editor.reset(scene)
        self.engine = self._make_engine(scene)
        self.view.active = len(scene.objects) - 1 if scene.objects else None
        self.view.active_point, self.view.hidden = None, set()
        self.canvas.draw_image(scene.image)
        self.scrubber.set_scale(scene.scale)
        self.refresh()
        self._side_update()
        self._register()
        self.say(message)

    def rename(self, name: str) -> None:
        """Call the scene ``name``: its autosave continues under that name (the old one stays in the recent list)."""
        name = name.strip()
        if name and name != self.name:
            _LIVE.pop(self._live_key(), None)
            self.name, self._saved = name, None
            self._register()
            self.autosave(force=True)

    def autosave(self, force: bool = False) -> Path | None:
        """Write the scene to its own autosave if it changed since the last write (a scene that was only shown
        is not written)."""
        if self.store is None or self.closed:
            return None
        depth = array_hash(self.scene.depth)
        state = (self.editor.version, self.name, depth)
        if not force and (state == self._saved or (self._saved is None and self.editor.version == 0)):
            return None
        arrays = force or self._saved is None or self._saved[2] != depth
        out = self.store.save(self.scene, self.name, self.image_hash, arrays=arrays)
        self._saved = state
        return out

    @property
    def autosave_path(self) -> Path | None:
        return None if self.store is None else self.store.scene_path(self.store.key(self.name, self.image_hash))

    def _live_key(self) -> str:
        return f"{self.out_dir.resolve()}|{AutosaveStore.key(self.name, self.image_hash)}"

    def _register(self) -> None:
        """Become the Studio of this scene; the one before it (a re-run cell) saves its last edit and stops."""
        if self.store is None:
            return
        key = self._live_key()
        ref = _LIVE.get(key)
        old = ref() if ref is not None else None
        if old is not None and old is not self:
            old.close()
        _LIVE[key] = weakref.ref(self)

    def close(self) -> None:
        """Save the last edit and stop autosaving (a newer Studio of the same scene takes over)."""
        if not self.closed:
            self.scheduler.flush()
            self.autosave()
            self.scheduler.close()
            self.closed = True
            self.say("this Studio was closed: a newer one (a re-run cell) edits this scene now")
