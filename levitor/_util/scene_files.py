"""A scene on disk: ``scene.json`` and its two side files, committed together so that nothing is ever torn.

Save, in this order:

1. the image and the depth map are written under names that carry their content hash
   (``scene.image-<hash>.png``, ``scene.depth-<hash>.npy``), each atomically (levitor._util.io); a side file
   whose content did not change is not written again (an autosave after a path edit writes only the JSON);
2. the JSON that names them is written atomically: this rename is the commit;
3. the side files the *previous* JSON named (and the unhashed names of older levitor versions) are removed,
   unless the new JSON names them too.

A kill at any instant therefore leaves either the old JSON with its old side files, or the new JSON with its
new ones. Reading checks every side file against what the JSON says (size, shape, dtype) and names the file
that is missing or torn; nothing is deleted on a failed read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from levitor._util.hashing import array_hash
from levitor._util.io import atomic_path, write_text_atomic

HASH_CHARS = 16
MAX_SIDE = 8192  # a scene is at generation resolution; a file asking for more is refused before allocating


def side_file_names(stem: str, image: np.ndarray, depth: np.ndarray) -> tuple[str, str]:
    return (f"{stem}.image-{array_hash(image)[:HASH_CHARS]}.png",
            f"{stem}.depth-{array_hash(depth)[:HASH_CHARS]}.npy")


def write_scene_files(path: Path, image: np.ndarray, depth: np.ndarray, document: dict[str, Any]) -> Path:
    """Commit ``document`` (the scene's JSON fields, without the file names) with its side files at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder; give the scene a file name such as scene.json", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    image_name, depth_name = side_file_names(path.stem, image, depth)
    if not (path.parent / image_name).is_file():
        with atomic_path(path.parent / image_name) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    if not (path.parent / depth_name).is_file():
        with atomic_path(path.parent / depth_name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, depth.astype(np.float32))
    previous = _named_side_files(path)
    doc = {**document, "image_file": image_name, "depth_file": depth_name}
    write_text_atomic(path, json.dumps(doc, indent=1, default=_json_number))  # the commit
    keep = {image_name, depth_name}
    legacy = {f"{path.stem}.image.png", f"{path.stem}.depth.npy"}
    for name in (previous | legacy) - keep:
        candidate = path.parent / name
        if candidate.is_file() and os.path.dirname(name) == "":  # only plain names beside the JSON
            candidate.unlink()
    return path


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
    """The side files the JSON at ``path`` names now (none if there is no readable one)."""
    try:
        doc = json.loads(path.read_text())
        return {str(doc["image_file"]), str(doc["depth_file"])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


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
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"{source}: its image file {image_path} is torn or not the scene's "
                         f"({type(e).__name__}: {e}); restore it or rebuild the scene") from None
    try:
        depth = np.load(depth_path, allow_pickle=False)
        if depth.shape != (h, w) or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"it holds a {depth.dtype} {depth.shape} array, the scene needs float ({h}, {w})")
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{source}: its depth file {depth_path} is torn or not the scene's "
                         f"({type(e).__name__}: {e}); restore it or rebuild the scene") from None
    return image, depth, h, w


def _side_path(doc: dict[str, Any], key: str, base_dir: Path, source: str) -> Path:
    name = doc.get(key)
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{source}: field '{key}' must name a file beside the scene, got {name!r}")
    path = base_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"{source}: its {key.split('_')[0]} file {path} (field '{key}') is missing; restore "
                                "it (a scene is its .json plus the two files it names) or rebuild the scene")
    return path
