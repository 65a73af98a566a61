"""A scene on disk: ``scene.json`` and its two side files, committed together so that nothing is ever torn, by one
writer at a time.

Save, holding the scene's lock (``.<stem>.scene.lock`` beside it, :mod:`levitor._util.locks`; released by the
kernel when its holder dies, SIGKILL included):

1. the image and the depth map are written under names that carry their content hash
   (``scene.image-<hash>.png``, ``scene.depth-<hash>.npy``), each atomically (levitor._util.io); a side file
   whose content did not change is not written again (an autosave after a path edit writes only the JSON);
2. the JSON that names them is written atomically: this rename is the commit;
3. every side file of the scene that the new JSON does not name is removed: the previous commit's, and those a
   killed save left (written side files whose JSON never committed, temporary files). Files another scene
   document of the same stem names (``scene.bak`` beside ``scene.json``) are kept.

A save that fails before its commit removes the side files it wrote. Two processes saving one path therefore
take turns: none can remove a file the other's commit names, and the last commit wins, whole.

A kill at any instant leaves either the old JSON with its old side files, or the new JSON with its new ones.
Reading (:func:`load_committed`) checks every side file against what the JSON says (size, shape, dtype) and names
the file that is missing or torn; nothing is deleted on a failed read. Readers take no lock: one that finds a side
file gone because a newer scene was committed meanwhile reads again, so it returns one whole committed scene.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from levitor._util import locks
from levitor._util.files import check_not_special
from levitor._util.hashing import array_hash
from levitor._util.io import (
    TEMPORARY_TAG,
    atomic_path,
    explain_write_error,
    is_temporary_of,
    make_folder,
    write_text_atomic,
)

T = TypeVar("T")
HASH_CHARS = 16
MAX_SIDE = 8192  # a scene is at generation resolution; a file asking for more is refused before allocating
LOCK_TIMEOUT_S = 120.0  # a save holds the lock for well under a second; this long means the holder is stuck
MAX_READS = 50  # a reader outpaced by this many commits in a row gives up (it never happens in practice)
MAX_DOCUMENT_BYTES = 256 << 20  # a sibling file bigger than this is no scene document (not read for its names)


class SideFileMissingError(FileNotFoundError):
    """A side file the scene JSON names is not there (the message names it and what to do)."""


def side_file_names(stem: str, image: np.ndarray, depth: np.ndarray) -> tuple[str, str]:
    return (f"{stem}.image-{array_hash(image)[:HASH_CHARS]}.png",
            f"{stem}.depth-{array_hash(depth)[:HASH_CHARS]}.npy")


def _side_file_pattern(stem: str) -> re.Pattern:
    """Side files of scenes with this stem: hashed, legacy unhashed, and the temporary files of either."""
    hashed = rf"{re.escape(stem)}\.(image-[0-9a-f]{{{HASH_CHARS}}}\.png|depth-[0-9a-f]{{{HASH_CHARS}}}\.npy)"
    legacy = rf"{re.escape(stem)}\.(image\.png|depth\.npy)"
    temporary = rf"\.{re.escape(stem)}\.(image|depth)-[0-9a-f]{{{HASH_CHARS}}}\.{TEMPORARY_TAG.pattern}\.(png|npy)"
    return re.compile(f"{hashed}|{legacy}|{temporary}")


def lock_file(path: Path) -> Path:
    """The lock every writer of the scene at ``path`` holds (one per stem: the side files' names are per stem)."""
    return path.with_name(f".{path.stem}.scene.lock")


def _scene_lock(path: Path) -> contextlib.ExitStack:
    """The scene's lock, taken (a folder the lock file cannot be made in says so in words)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(locks.exclusive(lock_file(path), LOCK_TIMEOUT_S, f"saving {path}"))
    except OSError as err:
        explained = explain_write_error(err, path, path.parent)
        if explained is err:
            raise
        raise explained from None
    return stack


def write_scene_files(path: Path, image: np.ndarray, depth: np.ndarray, document: dict[str, Any]) -> Path:
    """Commit ``document`` (the scene's JSON fields, without the file names) with its side files at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder; give the scene a file name such as scene.json", str(path))
    make_folder(path.parent)
    image_name, depth_name = side_file_names(path.stem, image, depth)
    text = json.dumps({**document, "image_file": image_name, "depth_file": depth_name}, indent=1,
                      default=_json_number)  # first: a value JSON cannot hold fails before anything is written
    with _scene_lock(path):
        written = []
        try:
            if not (path.parent / image_name).is_file():
                with atomic_path(path.parent / image_name) as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")
                written.append(image_name)
            if not (path.parent / depth_name).is_file():
                with atomic_path(path.parent / depth_name) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, depth.astype(np.float32))
                written.append(depth_name)
            write_text_atomic(path, text)  # the commit
        except BaseException:
            committed = _named_side_files(path)  # an interrupt may land just after the commit: keep what it names
            for name in set(written) - committed:
                with contextlib.suppress(OSError):
                    os.unlink(path.parent / name)
            raise
        _remove_unnamed_side_files(path, keep={image_name, depth_name})
    return path


def _remove_unnamed_side_files(path: Path, keep: set[str]) -> None:
    """Step 3 of a save (the lock is held): every side file of ``path``'s stem that no scene document names.
    Temporary files of the JSON itself are a killed save's too (only a holder of the lock writes them)."""
    pattern = _side_file_pattern(path.stem)
    try:
        entries = [e.name for e in os.scandir(path.parent)]
    except OSError:
        return
    candidates = [n for n in entries if pattern.fullmatch(n) or is_temporary_of(n, path)]
    if not candidates:
        return
    for name in entries:  # other documents of this stem (scene.bak beside scene.json) keep their side files
        sibling = path.parent / name
        if name != path.name and Path(name).stem == path.stem and not pattern.fullmatch(name):
            keep = keep | _named_side_files(sibling)
    for name in set(candidates) - keep:
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)


def _json_number(value: Any) -> Any:
    """numpy scalars (a path point made from ``np.argmax``, a depth read from an array) as JSON numbers."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not a number a scene file can hold")


def _named_side_files(path: Path) -> set[str]:
    """The side files the scene document at ``path`` names now (none if there is no readable one)."""
    try:
        if check_not_special(path, "scene file").stat().st_size > MAX_DOCUMENT_BYTES:
            return set()
        with open(path, "rb") as fh:
            if fh.read(1) != b"{":
                return set()
            doc = json.loads(b"{" + fh.read())
        return {str(doc["image_file"]), str(doc["depth_file"])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


# ------------------------------------------------------------------------------------------------ reading
def read_scene_text(path: Path) -> str:
    """The JSON text of the scene file at ``path``; a missing, special or undecodable file says so."""
    check_not_special(path, "scene file")
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"scene file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a valid scene file (not JSON: {e}); was it truncated?") from None


def _parse(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a valid scene file (not JSON: {e}); was it truncated?") from None


def load_committed(path: str | os.PathLike, build: Callable[[Any], T]) -> T:
    """``build(document)`` for the scene JSON at ``path``, read so that it sees one whole committed scene: when a
    side file the JSON names is gone because another process committed a newer scene (and removed the old files)
    meanwhile, the JSON is read again. A side file that stays missing while the JSON stays the same is an error."""
    path = Path(path)
    text = read_scene_text(path)
    for attempt in range(MAX_READS):
        try:
            return build(_parse(text, path))
        except SideFileMissingError:
            again = read_scene_text(path)
            if attempt == MAX_READS - 1 or (again == text and attempt > 0):  # once more: the same scene may have
                raise                                                        # been committed again meanwhile
            text = again
    raise AssertionError("unreachable")


def read_side_files(doc: dict[str, Any], base_dir: Path, source: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The image, depth map and (h, w) a scene document names, each checked; errors name the file."""
    try:
        h, w = (int(v) for v in doc["size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}: field 'size' is missing or corrupt ({type(e).__name__}: {e})") from None
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"{source}: field 'size' is {h}x{w}; a scene is at most {MAX_SIDE} pixels a side")
    image_path, depth_path = (_side_path(doc, key, base_dir, source) for key in ("image_file", "depth_file"))
    try:
        with Image.open(image_path) as im:
            if im.size != (w, h):
                raise ValueError(f"it is {im.size[0]}x{im.size[1]}, the scene says {w}x{h}")
            image = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise _missing(source, "image_file", image_path) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"{source}: its image file {image_path} is torn or not the scene's "
                         f"({type(e).__name__}: {e}); restore it or rebuild the scene") from None
    try:
        depth = np.load(depth_path, allow_pickle=False)
        if depth.shape != (h, w) or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"it holds a {depth.dtype} {depth.shape} array, the scene needs float ({h}, {w})")
    except FileNotFoundError:
        raise _missing(source, "depth_file", depth_path) from None
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{source}: its depth file {depth_path} is torn or not the scene's "
                         f"({type(e).__name__}: {e}); restore it or rebuild the scene") from None
    return image, depth, h, w


def _side_path(doc: dict[str, Any], key: str, base_dir: Path, source: str) -> Path:
    name = doc.get(key)
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{source}: field '{key}' must name a file beside the scene, got {name!r}")
    path = check_not_special(base_dir / name, f"{source}: its {key.split('_')[0]} file")
    if not path.is_file():
        raise _missing(source, key, path)
    return path


def _missing(source: str, key: str, path: Path) -> SideFileMissingError:
    return SideFileMissingError(f"{source}: its {key.split('_')[0]} file {path} (field '{key}') is missing; restore "
                                "it (a scene is its .json plus the two files it names) or rebuild the scene")
