"""Autosaves that never lose work: one per scene, keyed by the image's content hash and a scene name.

``out_dir/autosaves/<name>-<hash>/`` holds ``scene.json`` (with its image and depth files, written by
:meth:`Scene.save`, atomically), ``meta.json`` (name, hash, time, objects) for the recent-scenes list, and while a
Studio edits it ``lock.json`` (:mod:`levitor_widgets.autosave_lock`). Opening another image uses another folder,
so it never touches this one. An autosave that can't be read is renamed aside
(``<folder>.broken-<time>``) and the caller gets a message saying so; nothing is deleted or silently dropped.

No widgets here: the Studio calls it, the tests drive it directly.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from levitor._util.hashing import array_hash
from levitor._util.io import write_text_atomic
from levitor.scene import Scene

FOLDER = "autosaves"
SCENE_FILE = "scene.json"
META_FILE = "meta.json"
LEGACY_FILE = "autosave.json"  # one per output folder, as levitor wrote before: read, never written or deleted
HASH_CHARS = 12
MAX_SLUG = 40  # characters of a scene name in its folder's name


def image_key(scene: Scene) -> str:
    """The content hash that identifies a scene's photo: of its centred crop (a crop moved later stays in the slot
    the centred one chose, so the photo reopens it)."""
    return array_hash(scene.image)


def slug(name: str) -> str:
    """A scene name as a folder name: letters, digits, '-', '_' and '.'; at most MAX_SLUG characters."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.")
    return (s or "scene")[:MAX_SLUG]


@dataclass
class RecentScene:
    """One entry of the recent-scenes list."""

    key: str
    name: str
    image_hash: str
    saved_at: float
    objects: int
    folder: Path

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        return f"{self.name} ({self.objects} object{'s' if self.objects != 1 else ''}, {when})"


class AutosaveStore:
    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / FOLDER

    @staticmethod
    def key(name: str, image_hash: str) -> str:
        return f"{slug(name)}-{image_hash[:HASH_CHARS]}"

    def folder(self, key: str) -> Path:
        return self.root / key

    def scene_path(self, key: str) -> Path:
        return self.folder(key) / SCENE_FILE

    # ------------------------------------------------------------------ read
    def load(self, name: str, image_hash: str) -> tuple[Scene | None, str]:
        """The autosave of (name, image) or None, and a message for the user ("" when there is nothing to say).
        A broken autosave is renamed aside and the message says where it went."""
        key = self.key(name, image_hash)
        path = self.scene_path(key)
        if not path.exists():
            return self._legacy(image_hash)
        try:
            scene = Scene.load(path)
        except (ValueError, OSError) as e:
            aside = self.put_aside(key)
            return None, (f"the autosave of '{name}' could not be read ({_first_line(e)}); it was kept as {aside} "
                          "and the Studio starts afresh")
        if image_key(scene) != image_hash and scene.crop_offset == 0:  # a moved crop keeps its centred crop's slot
            aside = self.put_aside(key)
            return None, (f"the autosave of '{name}' holds another image; it was kept as {aside} and the Studio "
                          "starts afresh")
        return scene, ""

    def open(self, key: str) -> Scene:
        """A recent scene by its key (raises ValueError/OSError like :meth:`Scene.load`)."""
        return Scene.load(self.scene_path(key))

    def versions(self, image_hash: str) -> list[RecentScene]:
        """Every autosave of one image (under any name), newest first."""
        return [r for r in self.recent(None) if r.image_hash == image_hash]

    def free_name(self, name: str, image_hash: str) -> str:
        """``name (2)``, ``name (3)``, ...: the first name whose slot for this image was never used."""
        n = 2
        while True:
            suffix = f" ({n})"
            candidate = name.strip()[: MAX_SLUG - len(suffix)] + suffix  # a long name is cut, never the number
            if not self.folder(self.key(candidate, image_hash)).exists():
                return candidate
            n += 1

    def recent(self, limit: int | None = 12) -> list[RecentScene]:
        """The autosaved scenes, newest first (unreadable entries are left out here, reported by :meth:`load`)."""
        out = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            meta = folder / META_FILE
            if not folder.is_dir() or ".broken-" in folder.name or not meta.exists():
                continue
            try:
                doc = json.loads(meta.read_text())
                out.append(RecentScene(folder.name, str(doc["name"]), str(doc["image_hash"]),
                                       float(doc["saved_at"]), int(doc["objects"]), folder))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        out.sort(key=lambda r: r.saved_at, reverse=True)
        return out[:limit]

    # ------------------------------------------------------------------ write
    def save(self, scene: Scene, name: str, image_hash: str) -> Path:
        """Write the scene (atomically, through :meth:`Scene.save`) and its entry in the recent list."""
        key = self.key(name, image_hash)
        path = scene.save(self.scene_path(key))
        meta = {"format": "levitor-autosave", "name": name, "image_hash": image_hash, "saved_at": time.time(),
                "objects": len(scene.objects), "image_path": scene.image_path}
        write_text_atomic(self.folder(key) / META_FILE, json.dumps(meta, indent=1))
        return path

    def put_aside(self, key: str) -> Path:
        """Rename an autosave folder to ``<key>.broken-<time>`` (kept for the user to look at)."""
        src = self.folder(key)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = src.with_name(f"{key}.broken-{stamp}")
        n = 1
        while dest.exists():
            n += 1
            dest = src.with_name(f"{key}.broken-{stamp}-{n}")
        os.rename(src, dest)
        return dest

    # ------------------------------------------------------------------ the old layout
    def _legacy(self, image_hash: str) -> tuple[Scene | None, str]:
        """An ``autosave.json`` left by an older levitor in this folder, if it holds this image (read only)."""
        path = self.out_dir / LEGACY_FILE
        if not path.exists():
            return None, ""
        try:
            scene = Scene.load(path)
        except (ValueError, OSError):
            return None, ""  # it belongs to no scene we know of; it stays where it is, untouched
        if image_key(scene) != image_hash and scene.crop_offset == 0:  # a moved crop keeps its centred crop's slot
            return None, ""
        return scene, f"resumed from the old autosave {path} (from now on this scene autosaves on its own)"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]
