"""What the user built: image, depth, masks, selected objects and their 3D paths.

A :class:`Scene` is plain data. It round-trips through a JSON file (``scene.json``) with the image as PNG and
the depth map as ``.npy`` beside it; masks are run-length encoded inside the JSON. Every function of the
engine takes a scene (or pieces of it) and returns new values; nothing here computes motion or control.

Conventions (the same everywhere in levitor):
- pixels are (x, y): x to the right, y down, in pixels of the scene image;
- depth is the release's scale: (0, 1], smaller = nearer (see :mod:`levitor.depth`);
- a path point is a handle: the object's anchor (its P1 lifted) is seen at (x, y) when the path is there, at any
  depth (``path_terms = "handle"``; :mod:`levitor.motion.handles`). ``path_terms = "release"`` reads paths in the
  release's terms instead (the 2D shift before the depth change: an object brought nearer drifts about the image
  centre), which gives the release's control for the release's inputs.

Schema versions: 2 adds ``path_terms``. A version-1 file was made when every path was in the release's terms, so it
loads with ``path_terms = "release"``: it gives exactly the control it gave before (:meth:`Scene.convert_paths`
turns it into handles, exact at every path point).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from levitor._util.images import as_rgb_uint8, check_crop_offset
from levitor._util.scene_files import load_committed, read_side_files, write_scene_files
from levitor.control.krule import K_MAX, K_MIN, LAMBDA, MAX_K, KRule, check_scale
from levitor.defaults import MAX_FRAMES, NUM_FRAMES, RELEASE_FX, RELEASE_FY, RELEASE_SEED
from levitor.depth import check_depth_map
from levitor.motion.handles import anchor_depth, convert_points

SCHEMA_VERSION = 2
PATH_TERMS = ("handle", "release")  # what a path point means (levitor.motion.handles); one list, re-exported there


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
                raise ValueError(f"Intrinsics.{name} must be a finite number of pixels, got {_plain(v)}; use "
                                 "Intrinsics.release(width, height) for the release's camera")
        for name in ("fx", "fy"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Intrinsics.{name} (focal length, pixels) must be > 0, got "
                                 f"{_plain(getattr(self, name))}; the release uses fx=3866.378, fy=4538.052 "
                                 "(Intrinsics.release)")

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
    path_terms: str = "handle"  # "handle": objects land on their path points; "release": the release's convention
    seed: int = RELEASE_SEED
    image_path: str | None = None  # where the image came from, for the record
    crop_offset: float = 0.0  # where the photo was cropped to the scene's aspect: -1 top/left, 0 centre, 1 bottom/right
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

    def anchor_depth(self, index: int) -> float:
        """The anchor depth z_a of ``objects[index]`` (:func:`levitor.motion.handles.anchor_depth`): the scene depth
        at its P1's pixel when that is on its mask, else the mask's median depth."""

        obj = self.objects[index]
        return anchor_depth(self.depth, self.masks[obj.mask_index], obj.path[0].x, obj.path[0].y)

    def camera_anchor_depth(self) -> float:
        """The camera path's anchor depth: the scene depth at its P1's pixel (the whole image moves with it)."""

        p = self.camera_path[0]
        return anchor_depth(self.depth, np.ones(self.depth.shape, bool), p.x, p.y)

    def convert_paths(self, to: str) -> Scene:
        """Rewrite every path (objects and camera) in the terms ``to`` ("handle" or "release") and set
        ``path_terms``; returns self. Exact at each path point: the object is where it was at every point's frame
        (between points the interpolation of the new points can differ slightly, the map being non-linear)."""

        if to not in PATH_TERMS:
            raise ValueError(f"path terms must be one of {PATH_TERMS}, got {to!r}")
        if to == self.path_terms:
            return self
        K = self.camera()
        paths = [(o.path, self.anchor_depth(i)) for i, o in enumerate(self.objects) if o.path]
        if self.camera_path:
            paths.append((self.camera_path, self.camera_anchor_depth()))
        for path, z_a in paths:
            new = convert_points([(p.x, p.y, p.depth) for p in path], z_a, K.cx, K.cy, to)
            for p, (x, y, _) in zip(path, new):
                p.x, p.y = x, y
        self.path_terms = to
        return self

    # ---------------------------------------------------------------- checks
    def validate(self) -> Scene:
        """Raise ValueError naming the first bad field, the rule and the fix; return self so calls chain.

        This is the engine's own check: a scene that passes builds a control signal (possibly empty: a scene with
        no masks or no objects is a valid thing to save while editing), and everything that passes saves and loads
        back (numpy numbers included: they are written as JSON numbers)."""
        self._check_settings()
        self._check_arrays()
        self._check_mask_sources()
        self._check_objects()
        _check_path(self.camera_path, "camera_path", self.num_frames, allow_empty=True)
        return self

    def _check_settings(self) -> None:
        """The numbers and names: frame count, the K rule's settings, seed, camera, notes, path conventions."""
        if not _is_int(self.num_frames) or not 2 <= self.num_frames <= MAX_FRAMES:
            raise ValueError(f"num_frames must be a whole number of frames in 2..{MAX_FRAMES}, got "
                             f"{_plain(self.num_frames)}; the release generates 16")
        if not (_is_number(self.lam) and self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam (the K rule's points per image area) must be a positive number, got "
                             f"{_plain(self.lam)}; the release uses {LAMBDA:g}")
        for name, default in (("k_max", K_MAX), ("k_min_moved", K_MIN)):
            v = getattr(self, name)
            if not _is_int(v) or not 1 <= v <= MAX_K:
                raise ValueError(f"{name} (control points per object) must be a whole number in 1..{MAX_K}, got "
                                 f"{_plain(v)}; the release uses {default}")
        check_scale(self.scale)
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a whole number in 0..2**63-1, got {_plain(self.seed)}; the release's "
                             f"demo uses {RELEASE_SEED}")
        if self.intrinsics is not None:
            if not isinstance(self.intrinsics, Intrinsics):
                raise ValueError(f"intrinsics must be an Intrinsics or None (the release's camera), got "
                                 f"{type(self.intrinsics).__name__}; use Intrinsics.release(width, height)")
            self.intrinsics.__post_init__()  # fields may have been set after construction
        for name in ("image_path", "depth_source"):
            v = getattr(self, name)
            if not (isinstance(v, str) or (v is None and name == "image_path")):
                raise ValueError(f"{name} must be a string (it is only a note for the record), got {_plain(v)}; "
                                 f"set it to {'None' if name == 'image_path' else repr('unknown')} if unsure")
        check_crop_offset(self.crop_offset)
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                             f"{_plain(self.interpolation)}; pchip is the release's")
        if self.path_terms not in PATH_TERMS:
            raise ValueError(f"path_terms must be one of {', '.join(PATH_TERMS)}, got {_plain(self.path_terms)}; "
                             "'handle' (objects land on their path points) unless the paths are the release's")

    def _check_mask_sources(self) -> None:
        if len(self.mask_sources) != len(self.masks):
            raise ValueError(f"mask_sources has {len(self.mask_sources)} entries for {len(self.masks)} masks; give "
                             "one per mask (e.g. 'user')")
        if not all(isinstance(m, str) for m in self.mask_sources):
            raise ValueError("mask_sources must be strings naming the tool that made each mask (e.g. 'user'), got "
                             f"{[_plain(m) for m in self.mask_sources]}")

    def _check_objects(self) -> None:
        """Each selected object: a track of a non-empty mask, selected once, with a valid path."""
        seen = set()
        for i, obj in enumerate(self.objects):
            if not isinstance(obj, ObjectTrack):
                raise ValueError(f"objects[{i}] must be an ObjectTrack, got {type(obj).__name__}; use "
                                 "Scene.select(mask_index)")
            self._check_mask_index(obj.mask_index, f"objects[{i}].mask_index")
            if not isinstance(obj.name, str):
                raise ValueError(f"objects[{i}].name must be a string, got {_plain(obj.name)}; give it a name such "
                                 "as 'ball'")
            if obj.mask_index in seen:
                raise ValueError(f"objects[{i}]: mask {obj.mask_index} is selected twice; remove one of them")
            seen.add(obj.mask_index)
            if not self.masks[obj.mask_index].any():
                raise ValueError(f"objects[{i}] uses mask {obj.mask_index}, which is empty; reselect the object")
            _check_path(obj.path, f"objects[{i}].path", self.num_frames, allow_empty=False)

    def _check_arrays(self) -> None:
        """Image, depth map and masks as the engine reads them (they may have been replaced after construction)."""
        img = self.image
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got "
                             f"{getattr(img, 'shape', type(img).__name__)} {getattr(img, 'dtype', '')}; build the "
                             "scene with Scene(image=...) (it converts) or use levitor._util.images.as_rgb_uint8")
        H, W = img.shape[:2]
        if not isinstance(self.depth, np.ndarray) or self.depth.dtype != np.float32:
            raise ValueError("depth must be an (H, W) float32 array in (0, 1]; set it through Scene(depth=...) or "
                             "levitor.depth.check_depth_map(depth, (H, W))")
        check_depth_map(self.depth, (H, W))
        if not isinstance(self.masks, list):
            raise ValueError(f"masks must be a list of (H, W) bool arrays, got {type(self.masks).__name__}; use "
                             "Scene.add_mask(mask)")
        for i, m in enumerate(self.masks):
            if not isinstance(m, np.ndarray) or m.shape != (H, W) or m.dtype != np.bool_:
                raise ValueError(f"masks[{i}] must be an ({H}, {W}) bool array like the image, got "
                                 f"{getattr(m, 'shape', type(m).__name__)} {getattr(m, 'dtype', '')}; add masks "
                                 "with Scene.add_mask(mask), which converts them")

    def _check_mask_index(self, index: int, name: str) -> None:
        if not _is_int(index) or not 0 <= index < len(self.masks):
            n = len(self.masks)
            have = (f"the scene has {n} mask{'' if n == 1 else 's'} (indices 0..{n - 1})" if n
                    else "the scene has no masks yet")
            raise ValueError(f"{name} = {_plain(index)} is not a mask index: {have}; pick an existing mask, or add "
                             "the mask first (Scene.add_mask)")

    # ---------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON) with the image and depth map beside it, all committed together
        (:mod:`levitor._util.scene_files`: a kill at any instant leaves the old scene or the new one). The scene is
        validated first, so a file that :meth:`load` refuses is never written; side files are written only when their
        content changed."""
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
            "path_terms": self.path_terms,
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
        if version < 1:
            raise ValueError(
                f"{source}: field 'version' is {version}, an older scene schema that this levitor cannot migrate "
                f"(current: {SCHEMA_VERSION}); rebuild the scene or load it with the levitor that wrote it"
            )
        image, depth, h, w = read_side_files(doc, Path(base_dir), source)
        field_name = "masks"
        try:
            masks = [decode_rle(r, (h, w)) for r in doc["masks"]]
            field_name = "objects"
            objects = [_object_track(o, f"objects[{i}]") for i, o in enumerate(_list(doc["objects"], "objects"))]
            field_name = "camera_path"
            camera_path = [_path_point(p, f"camera_path[{j}]")
                           for j, p in enumerate(_list(doc.get("camera_path", []), "camera_path"))]
            field_name = "intrinsics"
            intr = doc.get("intrinsics")
            intrinsics = Intrinsics(**intr) if intr else None
            field_name = "mask_sources"
            mask_sources = [str(s) for s in doc.get("mask_sources", [])] or ["user"] * len(masks)
            scalars = {}
            for k, kind in _SCALAR_FIELDS.items():
                field_name = k
                if k in doc:
                    scalars[k] = _scalar(doc[k], k, kind)
            # version 1 predates path_terms: its paths were made in the release's terms, and keep meaning that
            scalars["path_terms"] = _scalar(doc["path_terms"], "path_terms", str) if version >= 2 else "release"
        except _FieldError as e:
            raise ValueError(f"{source}: {e}") from None
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


class _FieldError(ValueError):
    """A field of a scene file with the wrong kind of value; the message names the field and the fix."""


def _whole(value: Any, name: str = "value") -> int:
    """An integer field: 4 and 4.0 are 4; 4.7 is an error (truncating it would silently mean something else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or float(value) != int(value):
        raise _FieldError(f"field '{name}' must be a whole number, got {_plain(value)}; a fraction would be "
                          "truncated to another value, so fix the file")
    return int(value)


def _scalar(value: Any, name: str, kind: type) -> Any:
    """A scalar field of a scene file, of its kind (int: a whole number; float: any number; str: a string)."""
    if kind is int:
        return _whole(value, name)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _FieldError(f"field '{name}' must be a number, got {_plain(value)}")
        return float(value)
    if value is None and name == "image_path":
        return None
    if not isinstance(value, str):
        raise _FieldError(f"field '{name}' must be a string, got {_plain(value)}")
    return value


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise _FieldError(f"field '{name}' must be a list, got {type(value).__name__}")
    return value


def _path_point(d: Any, name: str) -> PathPoint:
    if not isinstance(d, dict):
        raise _FieldError(f"field '{name}' must be an object with x, y, depth and frame, got {_plain(d)}")
    unknown = set(d) - {"x", "y", "depth", "frame"}
    if unknown or not {"x", "y", "depth"} <= set(d):
        raise _FieldError(f"field '{name}' must have x, y, depth (and optionally frame), got keys {sorted(d)}")
    for k in ("x", "y", "depth"):
        _scalar(d[k], f"{name}.{k}", float)
    frame = d.get("frame")
    return PathPoint(d["x"], d["y"], d["depth"], None if frame is None else _whole(frame, f"{name}.frame"))


def _object_track(d: Any, name: str) -> ObjectTrack:
    if not isinstance(d, dict) or "mask_index" not in d or "path" not in d:
        raise _FieldError(f"field '{name}' must be an object with mask_index and path, got "
                          f"{sorted(d) if isinstance(d, dict) else _plain(d)}")
    path = [_path_point(p, f"{name}.path[{j}]") for j, p in enumerate(_list(d["path"], f"{name}.path"))]
    return ObjectTrack(_whole(d["mask_index"], f"{name}.mask_index"), path, str(d.get("name", "")))


_SCALAR_FIELDS: dict[str, type] = {
    "num_frames": int, "lam": float, "k_max": int, "k_min_moved": int, "scale": float,
    "interpolation": str, "seed": int, "image_path": str, "depth_source": str, "crop_offset": float,
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
    if not isinstance(path, list):
        raise ValueError(f"{name} must be a list of PathPoint, got {type(path).__name__}; build it as "
                         "[PathPoint(x, y, depth), ...]")
    if not path:
        if allow_empty:
            return
        raise ValueError(f"{name} is empty; an object needs at least one path point (its start, P1: "
                         "Scene.select puts it at the mask's centroid)")
    frames = []
    for j, p in enumerate(path):
        if not isinstance(p, PathPoint):
            raise ValueError(f"{name}[{j}] must be a PathPoint(x, y, depth), got {type(p).__name__}; use "
                             "PathPoint(x, y, depth)")
        for attr in ("x", "y", "depth"):
            v = getattr(p, attr)
            if not _is_number(v) or not math.isfinite(v):
                raise ValueError(f"{name}[{j}].{attr} must be a finite number, got {_plain(v)}; give x and y in "
                                 "pixels of the image and depth in (0, 1]")
        if not 0 < p.depth <= 1:
            raise ValueError(
                f"{name}[{j}].depth must be in (0, 1], got {_plain(p.depth)}: scene depth is 1 / disparity on the "
                "release's 0..255 scale (smaller = nearer, 1 = the farthest, 1/255 the nearest the control can "
                "tell). To move an object 2x nearer, halve its depth (levitor.depth.depth_from_nearness)"
            )
        if p.frame is not None:
            if not _is_int(p.frame):
                raise ValueError(f"{name}[{j}].frame must be a whole frame index in 0..{num_frames - 1} or None "
                                 f"(spread evenly), got {_plain(p.frame)}; use a whole frame index")
            if not 0 <= int(p.frame) < num_frames:
                raise ValueError(f"{name}[{j}].frame = {int(p.frame)} is outside the clip's frames 0.."
                                 f"{num_frames - 1}; set it to a frame in that range, or raise num_frames")
            frames.append(int(p.frame))
    if frames and (len(frames) != len(path)):
        raise ValueError(f"{name}: {len(frames)} of {len(path)} path points have a frame; give a frame for every "
                         "path point or for none (then they are spread evenly over the clip)")
    if frames and any(b <= a for a, b in zip(frames, frames[1:])):
        raise ValueError(f"{name}: path point frames must strictly increase along the path, got {frames}; give each "
                         "later point a later frame (or clear the frames to spread the points evenly)")


def _plain(v: Any) -> str:
    """A value for a message: numpy numbers as plain numbers (8, not np.int64(8)), strings quoted."""
    if isinstance(v, np.generic):
        v = v.item()
    return repr(v) if isinstance(v, str) else str(v)


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
