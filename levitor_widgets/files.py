"""The Studio's files: which autosave a Studio opens, and saving, loading, renaming and autosaving its scene.

One autosave slot per scene (:mod:`levitor_widgets.autosave`), keyed by the photo and the scene's name:

- **the newest autosave of a photo wins**: ``Studio(photo)`` resumes the autosave of that photo written last,
  under whatever name (after ``rename("my cat")`` that is "my cat"), and names the older ones in its message;
  a name given explicitly (``Studio(photo, name="chelsea")``, or a scene file's own name) opens that slot, and
  the message names a newer one;
- **one Studio per slot**: a Studio holds its slot's lock (:mod:`levitor_widgets.autosave_lock`). A Studio in
  another kernel that finds the slot held edits a *copy* under a free name (``chelsea (2)``), starting from the
  slot's last autosave, and says so; both keep their work. A Studio of a re-run cell in the same kernel replaces
  the old one instead: the old one saves its last edit and stops;
- an autosave is written only after an edit, never by a Studio that was closed.

No widgets here: the Studio passes its editor, its redraw scheduler, its message line and a ``switch`` callback
that shows another scene.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from levitor._util.hashing import array_hash
from levitor.editing import SceneEditor
from levitor.scene import Scene
from levitor_widgets.autosave import AutosaveStore, image_key
from levitor_widgets.autosave_lock import SlotLock
from levitor_widgets.opening import Note

_LIVE: dict[str, weakref.ref] = {}  # out_dir|slot key -> the SceneFiles of the Studio editing it in this process

Say = Callable[..., None]  # the Studio's message line: say(text, details="", error=False, hold=False)


@dataclass
class Opening:
    """What a new Studio edits: the scene (resumed or as given), its name, and its slot's lock."""

    scene: Scene
    name: str
    resumed: bool = False
    notes: list[Note] = field(default_factory=list)
    lock: SlotLock | None = None


def open_scene(store: AutosaveStore | None, scene: Scene, name: str, *, resume: bool = True,
               name_given: bool = False) -> Opening:
    """Choose the slot a new Studio edits (see the module docstring) and resume its autosave. ``name_given``: the
    name was asked for (a ``name=`` or a scene file's), so the newest autosave of the photo does not replace it."""
    if store is None:
        return Opening(scene, name)
    image_hash = image_key(scene)
    for files in _live(store, image_hash):  # a Studio of this photo in this kernel: its last edit first
        files.flush()
    notes: list[Note] = []
    versions = store.versions(image_hash)
    newest = versions[0] if versions else None
    won = resume and not name_given and newest is not None and newest.name != name
    older = name if won and any(r.name == name for r in versions) else None  # the slot the newest one beat
    if won:
        name = newest.name
    newer = newest.name if resume and newest is not None and newest.name != name else None
    _close_live(store, AutosaveStore.key(name, image_hash))
    lock = SlotLock(store.folder(store.key(name, image_hash)))
    owner = lock.acquire()
    if owner is not None:  # another kernel edits this slot: edit a copy, never the same files
        copy = store.free_name(name, image_hash)
        saved = _read(store, name, image_hash) if resume else None
        lock = SlotLock(store.folder(store.key(copy, image_hash)))
        lock.acquire()
        notes.append(Note(f"'{name}' is open in another Studio ({owner.describe()}); this one edits a copy "
                          f"that autosaves as '{copy}'",
                          "Two Studios writing one autosave would lose one's edits. Close the other Studio (or its "
                          "kernel) to edit the original here; 'recent scenes' lists both."))
        return Opening(saved or scene, copy, saved is not None, notes, lock)
    if not resume:
        return Opening(scene, name, False, notes, lock)
    saved, msg = store.load(name, image_hash)
    lock.touch()  # a broken autosave was put aside with the lock in its folder: write the lock again
    if msg:  # the autosave was broken (or of another image) and was put aside
        notes.append(Note(msg, error=True))
    if saved is None:
        if newer:
            notes.append(Note(f"this photo has an autosave, '{newer}' ('recent scenes' opens it)"))
        return Opening(scene, name, False, notes, lock)
    if won:
        text = f"resumed '{name}', the newest autosave of this photo" + (
            f" ('{older}' is older: 'recent scenes' opens it)" if older else " (pass resume=False to start fresh)")
    elif newer:
        text = f"resumed the autosave of '{name}'; a newer one of this photo is '{newer}' ('recent scenes' opens it)"
    else:
        text = f"resumed the autosave of '{name}' (pass resume=False to start fresh)"
    notes.append(Note(text))
    return Opening(saved, name, True, notes, lock)


class SceneFiles:
    """Save, load, rename and autosave the scene that ``editor`` edits, in the slot ``opening`` chose.

    scheduler: flushed before a file is written (a pending edit lands first) and closed with the Studio.
    say: the message line. switch(scene): show another scene (after a load or a recent scene was opened).
    """

    def __init__(self, store: AutosaveStore | None, out_dir: str | os.PathLike, opening: Opening,
                 editor: SceneEditor, scheduler, say: Say, switch: Callable[[Scene], None]):
        self.store, self.out_dir = store, Path(out_dir)
        self.name, self.image_hash, self.lock = opening.name, image_key(opening.scene), opening.lock
        self.editor, self.scheduler, self.say, self.switch = editor, scheduler, say, switch
        self.closed = False
        self._saved: tuple | None = None  # (editor version, name, depth hash) last autosaved
        self._register()

    @property
    def scene(self) -> Scene:
        return self.editor.scene

    # ------------------------------------------------------------------ files the user names
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
        entry = next((r for r in self.store.recent(None) if r.key == key), None)
        self._replace(scene, f"opened the recent scene {entry.name if entry else key}",
                      name=entry.name if entry else None)

    def rename(self, name: str) -> None:
        """Call the scene ``name``: its autosave continues under that name (the old one stays in the recent list).
        A name another kernel's Studio is editing is refused."""
        name = name.strip()
        if not name or name == self.name:
            return
        if self.store is not None:
            lock = SlotLock(self.store.folder(self.store.key(name, self.image_hash)))
            owner = lock.acquire()
            if owner is not None:
                self.say(f"'{name}' is open in another Studio ({owner.describe()}); pick another name", error=True)
                return
            self._unregister()
            self.lock, old = lock, self.lock
            if old is not None:
                old.release()
        self.name, self._saved = name, None
        self._register()
        self.autosave(force=True)

    # ------------------------------------------------------------------ the autosave
    def autosave(self, force: bool = False) -> Path | None:
        """Write the scene to its own autosave if it changed since the last write (a scene that was only shown
        is not written)."""
        if self.store is None or self.closed:
            return None
        depth = array_hash(self.scene.depth)
        state = (self.editor.version, self.name, depth)
        if not force and (state == self._saved or (self._saved is None and self.editor.version == 0)):
            return None
        out = self.store.save(self.scene, self.name, self.image_hash)
        self._saved = state
        if self.lock is not None:
            self.lock.touch()
        return out

    @property
    def autosave_path(self) -> Path | None:
        return None if self.store is None else self.store.scene_path(self.store.key(self.name, self.image_hash))

    def flush(self) -> None:
        """Land a pending edit and autosave it now."""
        if not self.closed:
            self.scheduler.flush()
            self.autosave()

    def close(self) -> None:
        """Save the last edit, stop autosaving and let go of the slot (a newer Studio of it takes over)."""
        if self.closed:
            return
        self.flush()
        self.scheduler.close()
        self.closed = True
        if self.lock is not None:
            self.lock.release()
        self.say("this Studio was closed: a newer one (a re-run cell) edits this scene now", hold=True)

    # ------------------------------------------------------------------ internals
    def _replace(self, scene: Scene, message: str, name: str | None = None) -> None:
        s = self.scene
        if (scene.height, scene.width, scene.num_frames) != (s.height, s.width, s.num_frames):
            raise ValueError(f"that scene is {scene.width}x{scene.height}, {scene.num_frames} frames; this Studio is "
                             f"{s.width}x{s.height}, {s.num_frames}: open it with Studio(...)")
        self.flush()  # what was being edited is kept under its own name first
        self._unregister()
        name, note = self._claim(name or self.name, image_key(scene))
        self.name, self.image_hash, self._saved = name, image_key(scene), None
        self.switch(scene)
        self._register()
        self.say(message + (f"; {note}" if note else ""))

    def _claim(self, name: str, image_hash: str) -> tuple[str, str]:
        """Hold the slot of (name, image), or of a copy's name when another kernel holds it; (name, a note)."""
        if self.store is None:
            return name, ""
        old, note = self.lock, ""
        _close_live(self.store, AutosaveStore.key(name, image_hash), keep=self)
        self.lock = SlotLock(self.store.folder(self.store.key(name, image_hash)))
        owner = self.lock.acquire()
        if owner is not None:
            copy = self.store.free_name(name, image_hash)
            note = f"'{name}' is open in another Studio ({owner.describe()}): editing a copy, '{copy}'"
            name, self.lock = copy, SlotLock(self.store.folder(self.store.key(copy, image_hash)))
            self.lock.acquire()
        if old is not None:
            old.release()
        return name, note

    def _live_key(self) -> str:
        return _live_key(self.store, AutosaveStore.key(self.name, self.image_hash))

    def _register(self) -> None:
        """Become the Studio of this slot in this process; the one before it (a re-run cell) saves and stops."""
        if self.store is None:
            return
        _close_live(self.store, AutosaveStore.key(self.name, self.image_hash), keep=self)
        _LIVE[self._live_key()] = weakref.ref(self)

    def _unregister(self) -> None:
        if self.store is not None:
            ref = _LIVE.get(self._live_key())
            if ref is not None and ref() is self:
                del _LIVE[self._live_key()]


def _live_key(store: AutosaveStore, key: str) -> str:
    return f"{store.out_dir.resolve()}|{key}"


def _live(store: AutosaveStore, image_hash: str) -> list[SceneFiles]:
    """The open SceneFiles of this process on any slot of this photo in this folder."""
    prefix, out = f"{store.out_dir.resolve()}|", []
    for k, ref in list(_LIVE.items()):
        files = ref()
        if files is not None and k.startswith(prefix) and files.image_hash == image_hash:
            out.append(files)
    return out


def _close_live(store: AutosaveStore, key: str, keep: SceneFiles | None = None) -> None:
    ref = _LIVE.get(_live_key(store, key))
    old = ref() if ref is not None else None
    if old is not None and old is not keep:
        old.close()


def _read(store: AutosaveStore, name: str, image_hash: str) -> Scene | None:
    """The last autosave of a slot another Studio holds: read only (a broken one is left where it is)."""
    try:
        return store.open(store.key(name, image_hash))
    except (ValueError, OSError):
        return None
