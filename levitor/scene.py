"""What the user built: image, depth, masks, selected objects and their 3D paths.

A :class:`Scene` is plain data. It round-trips through a JSON file (``scene.json``) with the image as PNG and
the depth map as ``.npy`` beside it; masks are run-length encoded inside the JSON. Every function of the
engine takes a scene (or pieces of it) and returns new values; nothing here computes motion or control.

Conventions (the same everywhere in levitor):
- pixels are (x, y): x to the right, y down, in pixels of the scene image;
- depth is the release's scale: (0, 1], smaller = nearer (see :mod:`levitor.depth`).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from levitor._util.images import as_rgb_uint8
from levitor._util.scene_files import load_committed, read_side_files, write_scene_files
from levitor.control.krule import K_MAX, K_MIN, LAMBDA, MAX_K, KRule, check_scale
from levitor.defaults import MAX_FRAMES, NUM_FRAMES, RELEASE_FX, RELEASE_FY, RELEASE_SEED
from levitor.depth import check_depth_map

SCHEMA_VERSION = 1


MASK_SOURCES = ("sam-auto", "sam-click", "grabcut", "brush", "lasso", "flood", "synthetic", "video", "user")
INTERPOLATIONS = ("pchip", "linear", "catmull_rom")


@dataclass
class Intrinsics:
    """Pinhole camera (pixels). The camera is still: identity rotation, zero translation, in every frame."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"Intrinsics.{name} must be a finite number of pixels, got {v!r}")
        for name in ("fx", "fy"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Intrinsics.{name} (focal length, pixels) must be > 0, got {getattr(self, name)!r}; "
                                 "the release uses fx=3866.378, fy=4538.052 (Intrinsics.release)")

    @classmethod
    def release(cls, width: int, height: int) -> Intrinsics:
        """The fixed intrinsics of the official LeviTor demo."""
        return cls(RELEASE_FX, RELEASE_FY, width / 2.0, height / 2.0)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float = 60.0) -> Intrinsics:
        """Square pixels, horizontal field of view ``fov_deg``."""
        if not 0 < fov_deg < 180:
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
        f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0)


@dataclass
class PathPoint:
    """One click of a path: where the object's reference point should be, at which depth, and (optionally) when."""

    x: float
    y: float
    depth: float
    frame: int | None = None  # None: spread evenly over the clip


@dataclass
class ObjectTrack:
    """A selected object: which mask it is and the path the user drew for it."""

    mask_index: int
    path: list[PathPoint] = field(default_factory=list)
    name: str = ""


@dataclass
class Scene:
    """Everything needed to rebuild the control signal (and the video) for one image."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, at the generation resolution
    depth: np.ndarray  # (H, W) float32 in (0, 1], smaller = nearer
    masks: list[np.ndarray] = field(default_factory=list)  # (H, W) bool instance masks
    objects: list[ObjectTrack] = field(default_factory=list)  # selected (moved) objects, in selection order
    camera_path: list[PathPoint] = field(default_factory=list)  # moving the background moves the camera
    num_frames: int = NUM_FRAMES
    intrinsics: Intrinsics | None = None  # None: the release's fixed focal, centred
    lam: float = LAMBDA  # the K rule's lambda, cap and minimum (levitor.control.krule)
    k_max: int = K_MAX
    k_min_moved: int = K_MIN
    scale: float = 1.0  # the user's control-point scale factor, applied after the cap
    interpolation: str = "pchip"  # how path clicks become per-frame positions
    seed: int = RELEASE_SEED
    image_path: str | None = None  # where the image came from, for the record
    mask_sources: list[str] = field(default_factory=list)  # per mask: which tool made it
    depth_source: str = "unknown"  # "depth-anything-v2", "ground-plane", "constant", "synthetic", ...

    def __post_init__(self) -> None:
        self.image = as_rgb_uint8(self.image)
        self.depth = check_depth_map(self.depth, self.image.shape[:2])
        self.masks = [_as_mask(m, self.image.shape[:2], f"masks[{i}]") for i, m in enumerate(self.masks)]
        if not self.mask_sources:
            self.mask_sources = ["user"] * len(self.masks)

    # ---------------------------------------------------------------- derived
    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def camera(self) -> Intrinsics:
        return self.intrinsics or Intrinsics.release(self.width, self.height)

    def depth_at(self, x: float, y: float) -> float:
        """The scene depth under a click (the hint the Studio shows)."""
        col = int(np.clip(round(x), 0, self.width - 1))
        row = int(np.clip(round(y), 0, self.height - 1))
        return float(self.depth[row, col])

    def mask_at(self, x: float, y: float) -> int | None:
        """Index of the smallest mask under the pixel (the most specific object), or None."""
        col, row = int(round(x)), int(round(y))
        if not (0 <= col < self.width and 0 <= row < self.height):
            return None
        hits = [i for i, m in enumerate(self.masks) if m[row, col]]
        return min(hits, key=lambda i: int(self.masks[i].sum())) if hits else None

    def rule(self, scale: float | None = None) -> KRule:
        """The K rule with this scene's settings (and its scale factor, unless another is given)."""
        return KRule(lam=self.lam, k_max=self.k_max, k_min=self.k_min_moved,
                     scale=self.scale if scale is None else scale)

    def copy(self) -> Scene:
        return copy.deepcopy(self)

    # ---------------------------------------------------------------- editing
    def add_mask(self, mask: np.ndarray, source: str = "user") -> int:
        """Append an instance mask and return its index."""
        self.masks.append(_as_mask(mask, self.image.shape[:2], "mask"))
        self.mask_sources.append(source)
        return len(self.masks) - 1

    def select(self, mask_index: int, name: str = "") -> ObjectTrack:
        """Select a mask as a moving object; its path starts at the mask's centroid, at its median depth."""
        self._check_mask_index(mask_index, "mask_index")
        for obj in self.objects:
            if obj.mask_index == mask_index:
                return obj
        m = self.masks[mask_index]
        if not m.any():
            raise ValueError(f"mask {mask_index} is empty; pick another object or redraw its mask")
        ys, xs = np.nonzero(m)
        start = PathPoint(float(xs.mean()), float(ys.mean()), float(np.median(self.depth[m])), None)
        obj = ObjectTrack(mask_index, [start], name or f"object {len(self.objects) + 1}")
        self.objects.append(obj)
        return obj

    # ---------------------------------------------------------------- checks
    def validate(self) -> Scene:
        """Raise ValueError naming the first bad field; return self so calls chain.

        Everything that passes saves and loads back (numpy numbers included: they are written as JSON numbers)."""
        if not _is_int(self.num_frames) or not 2 <= self.num_frames <= MAX_FRAMES:
            raise ValueError(f"num_frames must be an int in 2..{MAX_FRAMES}, got {self.num_frames!r}")
        if not (_is_number(self.lam) and self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a positive number, got {self.lam!r}")
        for name in ("k_max", "k_min_moved"):
            v = getattr(self, name)
            if not _is_int(v) or not 1 <= v <= MAX_K:
                raise ValueError(f"{name} must be an int in 1..{MAX_K} (control points per object), got {v!r}")
        check_scale(self.scale)
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an int in 0..2**63-1, got {self.seed!r}")
        if self.intrinsics is not None:
            if not isinstance(self.intrinsics, Intrinsics):
                raise ValueError(f"intrinsics must be an Intrinsics or None, got {type(self.intrinsics).__name__}")
            self.intrinsics.__post_init__()  # fields may have been set after construction
        for name in ("image_path", "depth_source"):
            v = getattr(self, name)
            if not (isinstance(v, str) or (v is None and name == "image_path")):
                raise ValueError(f"{name} must be a string, got {v!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.mask_sources) != len(self.masks):
            raise ValueError(f"mask_sources has {len(self.mask_sources)} entries for {len(self.masks)} masks")
        if not all(isinstance(m, str) for m in self.mask_sources):
            raise ValueError(f"mask_sources must be strings, got {self.mask_sources!r}")
        seen = set()
        for i, obj in enumerate(self.objects):
            self._check_mask_index(obj.mask_index, f"objects[{i}].mask_index")
            if not isinstance(obj.name, str):
                raise ValueError(f"objects[{i}].name must be a string, got {obj.name!r}")
            if obj.mask_index in seen:
                raise ValueError(f"objects[{i}]: mask {obj.mask_index} is selected twice; remove one of them")
            seen.add(obj.mask_index)
            if not self.masks[obj.mask_index].any():
                raise ValueError(f"objects[{i}] uses mask {obj.mask_index}, which is empty; reselect the object")
            _check_path(obj.path, f"objects[{i}].path", self.num_frames, allow_empty=False)
        _check_path(self.camera_path, "camera_path", self.num_frames, allow_empty=True)
        return self

    def _check_mask_index(self, index: int, name: str) -> None:
        if not _is_int(index) or not 0 <= index < len(self.masks):
            raise ValueError(f"{name} = {index!r} is not a mask index (the scene has {len(self.masks)} masks)")

    # ---------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike, arrays: bool = True) -> Path:
        """Write ``path`` (JSON) with the image and depth map beside it, all committed together
        (:mod:`levitor._util.scene_files`: a kill at any instant leaves the old scene or the new one). The scene is
        validated first, so a file that :meth:`load` refuses is never written.

        ``arrays`` is kept for old callers: side files are written only when their content changed anyway."""
        self.validate()
        doc = {
            "format": "levitor-scene",
            "version": SCHEMA_VERSION,
            "size": [self.height, self.width],
            "masks": [encode_rle(m) for m in self.masks],
            "mask_sources": list(self.mask_sources),
            "objects": [asdict(o) for o in self.objects],
            "camera_path": [asdict(p) for p in self.camera_path],
            "intrinsics": asdict(self.intrinsics) if self.intrinsics else None,
            **{k: getattr(self, k) for k in _SCALAR_FIELDS},
        }
        return write_scene_files(Path(path), self.image, self.depth, doc)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Scene:
        """The scene committed at ``path``, whole, even while another process saves it
        (:func:`levitor._util.scene_files.load_committed`)."""
        path = Path(path)
        return load_committed(path, lambda doc: cls.from_dict(doc, base_dir=path.parent, source=str(path)))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], base_dir: str | os.PathLike = ".", source: str = "scene") -> Scene:
        if not isinstance(doc, dict) or doc.get("format") != "levitor-scene":
            raise ValueError(f"{source}: field 'format' must be 'levitor-scene'; this is not a levitor scene file")
        version = doc.get("version")
        if not isinstance(version, int):
            raise ValueError(f"{source}: field 'version' is missing or not an integer")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"{source}: field 'version' is {version}, newer than this levitor understands "
                f"({SCHEMA_VERSION}); upgrade levitor"
            )
        if version < SCHEMA_VERSION:
            raise ValueError(
                f"{source}: field 'version' is {version}, an older scene schema that this levitor cannot migrate "
                f"(current: {SCHEMA_VERSION}); rebuild the scene or load it with the levitor that wrote it"
            )
        image, depth, h, w = read_side_files(doc, Path(base_dir), source)
        field_name = "masks"
        try:
            masks = [decode_rle(r, (h, w)) for r in doc["masks"]]
            field_name = "objects"
            objects = [
                ObjectTrack(_whole(o["mask_index"]), [PathPoint(**p) for p in o["path"]], str(o.get("name", "")))
                for o in doc["objects"]
            ]
            field_name = "camera_path"
            camera_path = [PathPoint(**p) for p in doc.get("camera_path", [])]
            field_name = "intrinsics"
            intr = doc.get("intrinsics")
            intrinsics = Intrinsics(**intr) if intr else None
            field_name = "mask_sources"
            mask_sources = [str(s) for s in doc.get("mask_sources", [])] or ["user"] * len(masks)
            scalars = {}
            for k, typ in _SCALAR_FIELDS.items():
                field_name = k
                if k in doc:
                    scalars[k] = None if doc[k] is None and k == "image_path" else typ(doc[k])
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise ValueError(
                f"{source}: field '{field_name}' is missing or corrupt ({type(e).__name__}: {e})"
            ) from None
        scene = cls(image=image, depth=depth, masks=masks, objects=objects, camera_path=camera_path,
                    intrinsics=intrinsics, mask_sources=mask_sources, **scalars)
        try:
            return scene.validate()
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None


def _whole(value: Any) -> int:
    """An integer field: 4 and 4.0 are 4; 4.7 is an error (it would be truncated to another object)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


_SCALAR_FIELDS: dict[str, type] = {
    "num_frames": int, "lam": float, "k_max": int, "k_min_moved": int, "scale": float,
    "interpolation": str, "seed": int, "image_path": str, "depth_source": str,
}


# -------------------------------------------------------------------- helpers
def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _as_mask(mask: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} has shape {m.shape} but the image is {tuple(shape)}; masks must match the image")
    return m.astype(bool)


def _check_path(path: list[PathPoint], name: str, num_frames: int, allow_empty: bool) -> None:
    if not path:
        if allow_empty:
            return
        raise ValueError(f"{name} is empty; an object needs at least one path point")
    frames = []
    for j, p in enumerate(path):
        for attr in ("x", "y", "depth"):
            v = getattr(p, attr)
            if not _is_number(v) or not math.isfinite(v):
                raise ValueError(f"{name}[{j}].{attr} must be a finite number, got {v!r}")
        if not 0 < p.depth <= 1:
            raise ValueError(
                f"{name}[{j}].depth must be in (0, 1], got {p.depth!r}: scene depth is 1 / disparity on the release's "
                "0..255 scale (smaller = nearer, 1 = the farthest, 1/255 the nearest the control can tell). To move "
                "an object 2x nearer, halve its depth (levitor.depth.depth_from_nearness)"
            )
        if p.frame is not None:
            if not _is_int(p.frame):
                raise ValueError(f"{name}[{j}].frame must be an int frame index or None, got {p.frame!r}")
            if not 0 <= int(p.frame) < num_frames:
                raise ValueError(f"{name}[{j}].frame = {p.frame} is outside 0..{num_frames - 1}")
            frames.append(int(p.frame))
    if frames and (len(frames) != len(path)):
        raise ValueError(f"{name}: give a frame for every path point or for none")
    if frames and any(b <= a for a, b in zip(frames, frames[1:])):
        raise ValueError(f"{name}: path point frames must increase, got {frames}")


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Row-major run lengths, starting with a run of False."""
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def decode_rle(rle: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if tuple(rle["size"]) != tuple(shape):
        raise ValueError(f"mask size {rle['size']} differs from the scene size {list(shape)}")
    if counts.sum() != shape[0] * shape[1] or (counts < 0).any():
        raise ValueError(f"run lengths sum to {counts.sum()}, expected {shape[0] * shape[1]}")
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(shape)
