"""Scene editing with undo and redo: every change a user makes to a :class:`~levitor.scene.Scene` is a command.

The Studio (and any script) edits a scene only through a :class:`SceneEditor`. Each operation (add a path point,
move it, set its depth, make a mask, choose a depth, ...) applies one :class:`Command` and keeps its inverse, so
one undo takes back exactly one thing the user did, and redo brings it back. What is *not* an edit never goes
through here: showing a scene, rebuilding a panel, a slider snapping to its step. An operation that would change
nothing records nothing.

A drag or a slider storm is one step: commands with the same ``key`` made within ``merge_s`` of each other, or
between :meth:`SceneEditor.begin_gesture` and :meth:`SceneEditor.end_gesture`, merge into the first one's undo.

Commands replace whole small values (a path, a mask, the depth map) rather than patching them, and never mutate
an array in place: the undo entry keeps the old array object, which costs nothing to hold.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from levitor.depth import MIN_DEPTH, depth_from_nearness, nearness_from_depth, nearness_range
from levitor.scene import ObjectTrack, PathPoint, Scene

CAMERA = "camera"  # the "object" whose path moves the camera (the background)
Who = int | str  # an index into scene.objects, or CAMERA
HISTORY = 200  # undo steps kept
MERGE_S = 1.0  # edits of the same thing this close together are one undo step (a slider drag)
SAME = 1e-9  # values closer than this are unchanged (a slider echo is never an edit)


# ====================================================================== commands
class Command:
    """One change to a scene. ``apply`` does it and returns the command that undoes it."""

    label = "edit"
    key: tuple | None = None  # commands with equal keys may merge into one undo step

    def apply(self, scene: Scene) -> Command:  # pragma: no cover - abstract
        raise NotImplementedError


def path_of(scene: Scene, who: Who) -> list[PathPoint]:
    if who == CAMERA:
        return scene.camera_path
    if not isinstance(who, (int, np.integer)) or not 0 <= who < len(scene.objects):
        raise ValueError(f"object {who!r} does not exist (the scene has {len(scene.objects)} objects)")
    return scene.objects[who].path


@dataclass
class SetPath(Command):
    """Replace the path of object ``who`` (or of the camera) by ``points``."""

    who: Who
    points: list[PathPoint]
    label: str = "edit the path"
    key: tuple | None = None

    def apply(self, scene: Scene) -> Command:
        old = path_of(scene, self.who)
        new = [replace(p) for p in self.points]
        if self.who == CAMERA:
            scene.camera_path = new
        else:
            scene.objects[self.who].path = new
        return SetPath(self.who, old, self.label, self.key)


@dataclass
class SetScale(Command):
    value: float
    label: str = "set the control-point scale"
    key: tuple | None = ("scale",)

    def apply(self, scene: Scene) -> Command:
        old, scene.scale = scene.scale, float(self.value)
        return SetScale(old, self.label, self.key)


@dataclass
class InsertObject(Command):
    position: int
    track: ObjectTrack
    label: str = "select an object"

    def apply(self, scene: Scene) -> Command:
        scene.objects.insert(self.position, copy.deepcopy(self.track))
        return RemoveObject(self.position, self.label)


@dataclass
class RemoveObject(Command):
    position: int
    label: str = "remove an object"

    def apply(self, scene: Scene) -> Command:
        track = scene.objects.pop(self.position)
        return InsertObject(self.position, track, self.label)


@dataclass
class AppendMask(Command):
    mask: np.ndarray
    source: str
    label: str = "add a mask"

    def apply(self, scene: Scene) -> Command:
        scene.add_mask(self.mask, self.source)
        return PopMask(self.label)


@dataclass
class PopMask(Command):
    """Remove the last mask (the undo of AppendMask; no object may use it)."""

    label: str = "remove a mask"

    def apply(self, scene: Scene) -> Command:
        i = len(scene.masks) - 1
        if any(o.mask_index == i for o in scene.objects):
            raise ValueError(f"mask {i} is used by an object; remove the object first")
        mask, source = scene.masks.pop(), scene.mask_sources.pop()
        return AppendMask(mask, source, self.label)


@dataclass
class SetMask(Command):
    index: int
    mask: np.ndarray
    source: str
    label: str = "edit a mask"

    def apply(self, scene: Scene) -> Command:
        old = SetMask(self.index, scene.masks[self.index], scene.mask_sources[self.index], self.label)
        m = np.asarray(self.mask, dtype=bool)
        if m.shape != scene.masks[self.index].shape:
            raise ValueError(f"the new mask has shape {m.shape}, the image is {scene.masks[self.index].shape}")
        scene.masks[self.index], scene.mask_sources[self.index] = m, self.source
        return old


@dataclass
class SetDepth(Command):
    depth: np.ndarray
    source: str
    label: str = "choose the depth"

    def apply(self, scene: Scene) -> Command:
        from levitor.depth import check_depth_map

        old = SetDepth(scene.depth, scene.depth_source, self.label)
        scene.depth, scene.depth_source = check_depth_map(self.depth, scene.image.shape[:2]), self.source
        return old


@dataclass
class SetFraming(Command):
    """The photo cropped elsewhere: the scene's image and where its window sits in the photo (``crop_offset``)."""

    image: np.ndarray
    offset: float
    label: str = "move the crop"

    def apply(self, scene: Scene) -> Command:
        if self.image.shape != scene.image.shape:
            raise ValueError(f"the new crop is {self.image.shape}, the scene {scene.image.shape}: crop to its size")
        old = SetFraming(scene.image, scene.crop_offset, self.label)
        scene.image, scene.crop_offset = self.image, float(self.offset)
        return old


@dataclass
class Batch(Command):
    """Several commands as one step (undone in reverse order)."""

    commands: list[Command]
    label: str = "edit"
    key: tuple | None = None

    def apply(self, scene: Scene) -> Command:
        done: list[Command] = []
        try:
            for c in self.commands:
                done.append(c.apply(scene))
        except Exception:
            for inverse in reversed(done):  # leave the scene as it was
                inverse.apply(scene)
            raise
        return Batch(list(reversed(done)), self.label, self.key)


# ====================================================================== depth rules
def background_depth_at(scene: Scene, x: float, y: float, exclude: np.ndarray | None = None, reach: int = 6) -> float:
    """The scene depth at (x, y) from pixels that are not in ``exclude`` (an object's own mask): the median of
    the nearest such pixels in the same row (what the object stands in front of), or the depth at (x, y)."""
    row = int(np.clip(round(y), 0, scene.height - 1))
    col = int(np.clip(round(x), 0, scene.width - 1))
    if exclude is None or not exclude[row, col]:
        return float(scene.depth[row, col])
    free = np.flatnonzero(~exclude[row])
    if len(free) == 0:
        return float(scene.depth[row, col])
    nearest = free[np.argsort(np.abs(free - col), kind="stable")[:reach]]
    return float(np.median(scene.depth[row, nearest]))


def ground_depth(scene: Scene, who: Who, x: float, y: float) -> float:
    """The depth the ground asks for a new path point at (x, y): the object's start depth times how much farther
    the background under the click is than the background under the start (moving down a ground plane comes
    nearer; on a flat background the depth stays). It may lie beyond the depth scale: see :func:`follow_depth`."""
    path = path_of(scene, who)
    start = path[0]
    own = scene.masks[scene.objects[who].mask_index] if who != CAMERA else None
    under_start = background_depth_at(scene, start.x, start.y, own)
    under_click = background_depth_at(scene, x, y, own)
    return float(start.depth * under_click / max(under_start, MIN_DEPTH))


def follow_depth(scene: Scene, who: Who, x: float, y: float) -> float:
    """The depth of a new path point at (x, y) that follows the scene: :func:`ground_depth` clamped to the depth
    scale [1/255, 1] (what the path table's slider reaches)."""
    return float(np.clip(ground_depth(scene, who, x, y), MIN_DEPTH, 1.0))


def mask_start(scene: Scene, mask: np.ndarray) -> tuple[float, float, float]:
    """Where a path over ``mask`` starts: its centroid and its median depth."""
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), float(np.median(scene.depth[mask]))


# ====================================================================== the editor
@dataclass
class Step:
    label: str
    command: Command  # what to apply to go back (undo) or forward again (redo)
    key: tuple | None
    time: float


@dataclass
class NearnessResult:
    """What :meth:`SceneEditor.set_nearness` did: the nearness it set and, if it had to stop, why."""

    nearness: float
    limited: str = ""


@dataclass
class SceneEditor:
    """Edits one scene with undo and redo. ``repaint_depth(scene) -> (depth, source) | None`` is called after
    every mask or object edit: a depth that depends on the masks (``nearer:N``) is repainted in the same step."""

    scene: Scene
    history: int = HISTORY
    merge_s: float = MERGE_S
    clock: Callable[[], float] = time.monotonic
    repaint_depth: Callable[[Scene], tuple[np.ndarray, str] | None] | None = None
    undo_stack: list[Step] = field(default_factory=list)
    redo_stack: list[Step] = field(default_factory=list)
    version: int = 0  # bumped on every change (do, undo, redo): the autosave compares it
    _gesture: tuple | None = None

    # ------------------------------------------------------------------ core
    def do(self, command: Command, key: tuple | None = None) -> bool:
        """Apply ``command`` as one undo step (merged with the last one if ``key`` matches within ``merge_s`` or
        inside the current gesture). Returns False (and records nothing) if it changed nothing."""
        before = self._fingerprint()
        inverse = command.apply(self.scene)
        if self._fingerprint() == before:
            return False
        key = key if key is not None else getattr(command, "key", None)
        now = self.clock()
        top = self.undo_stack[-1] if self.undo_stack else None
        gesture = self._gesture is not None and top is not None and top.key == ("gesture",) + self._gesture
        if top is not None and (gesture or (key is not None and top.key == key and now - top.time < self.merge_s)):
            top.time = now  # merged: the first command's inverse already restores the state before the burst
        else:
            step_key = ("gesture",) + self._gesture if self._gesture is not None else key
            self.undo_stack.append(Step(getattr(command, "label", "edit"), inverse, step_key, now))
            del self.undo_stack[:-self.history]
        self.redo_stack.clear()
        self.version += 1
        return True

    def undo(self) -> str | None:
        """Take back the last step; returns its label, or None when there is nothing to undo."""
        label = self._replay(self.undo_stack, self.redo_stack)
        if label is not None:
            self._gesture = None
        return label

    def redo(self) -> str | None:
        return self._replay(self.redo_stack, self.undo_stack)

    def _replay(self, source: list[Step], target: list[Step]) -> str | None:
        """Apply the last step of ``source`` and push its inverse onto ``target`` (undo and redo are mirrors)."""
        if not source:
            return None
        step = source.pop()
        inverse = step.command.apply(self.scene)
        target.append(Step(step.label, inverse, None, self.clock()))
        self.version += 1
        return step.label

    def begin_gesture(self, *key) -> None:
        """Everything until :meth:`end_gesture` is one undo step (a drag, a brush stroke)."""
        self._gesture = ("g", self.clock(), *key)

    def end_gesture(self) -> None:
        self._gesture = None

    can_undo = property(lambda self: bool(self.undo_stack))
    can_redo = property(lambda self: bool(self.redo_stack))

    def reset(self, scene: Scene) -> None:
        """Edit another scene from now on (a loaded file); the history is cleared."""
        self.scene, self.undo_stack, self.redo_stack = scene, [], []
        self.version += 1

    def _fingerprint(self) -> tuple:
        s = self.scene
        paths = tuple((o.mask_index, o.name, tuple((p.x, p.y, p.depth, p.frame) for p in o.path)) for o in s.objects)
        return (paths, tuple((p.x, p.y, p.depth, p.frame) for p in s.camera_path), s.scale,
                tuple(id(m) for m in s.masks), tuple(s.mask_sources), id(s.depth), s.depth_source, id(s.image),
                s.crop_offset)

    def _apply(self, commands: list[Command], label: str, restart: Sequence[int] = ()) -> bool:
        """Apply mask/object commands as one step, with what follows from them: objects over the masks in
        ``restart`` start at the new centroid, and a depth that depends on the masks (``nearer:N``) is repainted."""
        probe = _probe(self.scene)
        for c in commands:
            c.apply(probe)
        painted = self.repaint_depth(probe) if self.repaint_depth is not None else None
        if painted is not None and not np.array_equal(painted[0], self.scene.depth):
            commands = commands + self._depth_commands(probe, *painted)
        else:
            commands = commands + [SetPath(i, _restart(probe, o.path, probe.masks[o.mask_index]), label)
                                   for i, o in enumerate(probe.objects) if o.mask_index in restart]
        return self.do(Batch(commands, label))

    # ------------------------------------------------------------------ paths
    def add_point(self, who: Who, x: float, y: float, depth: float | None = None, follow: bool = True) -> int:
        """Append a path point at (x, y); its depth is ``depth``, or follows the scene (:func:`follow_depth`), or
        with ``follow=False`` keeps the previous point's. Returns its index."""
        path = path_of(self.scene, who)
        x, y = self._clip(x, y)
        if depth is None:
            if not path:
                depth = float(self.scene.depth_at(x, y))
            else:
                depth = follow_depth(self.scene, who, x, y) if follow else path[-1].depth
        new = [replace(p) for p in path] + [PathPoint(x, y, float(depth), None)]
        if path and path[0].frame is not None:
            _spread_frames(new, self.scene.num_frames)
        self.do(SetPath(who, new, "add a path point"))
        return len(new) - 1

    def move_point(self, who: Who, j: int, x: float, y: float) -> None:
        x, y = self._clip(x, y)
        new = [replace(p) for p in path_of(self.scene, who)]
        new[j].x, new[j].y = x, y
        self.do(SetPath(who, new, "move a path point"), key=("move", who, j))

    def delete_point(self, who: Who, j: int) -> None:
        """Delete path point j. An object's start point P1 is its reference (where the object is now) and stays."""
        path = path_of(self.scene, who)
        if not 0 <= j < len(path):
            raise ValueError(f"path point {j + 1} does not exist (the path has {len(path)} points)")
        if j == 0 and (who != CAMERA or len(path) > 1):
            raise ValueError("P1 is where the path starts (the object as it is in the photo) and can't be deleted; "
                             "use 'remove' to drop the object")
        new = [replace(p) for k, p in enumerate(path) if k != j]
        if new and new[0].frame is not None:
            _spread_frames(new, self.scene.num_frames)
        self.do(SetPath(who, new, "delete a path point"))

    def set_nearness(self, who: Who, j: int, nearness: float) -> NearnessResult:
        """Path point j's depth as "x times nearer" than P1 (1 = the same depth). Values the disparity scale can't
        express are clamped, and the result says so."""
        path = path_of(self.scene, who)
        if j == 0:
            return NearnessResult(1.0, "P1 is the reference: 1x by definition")
        if not (nearness > 0 and math.isfinite(nearness)):
            raise ValueError(f"nearness must be a positive number (2 means '2x nearer'), got {nearness}")
        lo, hi = nearness_range(path[0].depth)
        limited = ""
        if nearness > hi * (1 + 1e-6):
            limited = (f"P{j + 1} can't come nearer than {hi:.2f}x: {1 / 255:.4f} is the nearest depth the 0..255 "
                       "disparity scale expresses")
        elif nearness < lo * (1 - 1e-6):
            limited = f"P{j + 1} can't go farther than {lo:.2f}x: depth 1 is the farthest"
        nearness = float(np.clip(nearness, lo, hi))
        new = [replace(p) for p in path]
        new[j].depth = depth_from_nearness(path[0].depth, nearness)
        if abs(new[j].depth - path[j].depth) > SAME:
            self.do(SetPath(who, new, "set a depth"), key=("nearness", who, j))
        return NearnessResult(nearness, limited)

    def set_point_frame(self, who: Who, j: int, frame: int) -> None:
        path = path_of(self.scene, who)
        new = [replace(p) for p in path]
        new[j].frame = int(frame)
        frames = [p.frame for p in new]
        if any(f is None for f in frames) or any(b <= a for a, b in zip(frames, frames[1:])):
            raise ValueError(f"frames must increase along the path (got {frames}); pick a frame between its "
                             "neighbours")
        if not 0 <= frame < self.scene.num_frames:
            raise ValueError(f"frame must be in 1..{self.scene.num_frames}, got {frame + 1}")
        self.do(SetPath(who, new, "set a frame"), key=("frame", who, j))

    def set_timed(self, who: Who, on: bool) -> None:
        """Give every path point an explicit frame (spread evenly) or none (the engine spreads them)."""
        new = [replace(p) for p in path_of(self.scene, who)]
        if on:
            _spread_frames(new, self.scene.num_frames)
        else:
            for p in new:
                p.frame = None
        self.do(SetPath(who, new, "time the path" if on else "untime the path"))

    def set_scale(self, scale: float) -> None:
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale (control-point scale factor) must be > 0, got {scale!r}; try 0.25..8")
        if abs(float(scale) - self.scene.scale) > SAME * max(1.0, scale):
            self.do(SetScale(float(scale)))

    def add_camera_point(self, x: float, y: float) -> int:
        """Camera move: drag the background; the first click is where it starts."""
        return self.add_point(CAMERA, x, y, follow=False)

    # ------------------------------------------------------------------ objects and masks
    def select_mask(self, mask_index: int, name: str = "") -> int:
        """Select a mask as a moving object (its path starts at the mask's centroid); returns its object index.
        An already selected mask is not selected twice."""
        for i, obj in enumerate(self.scene.objects):
            if obj.mask_index == mask_index:
                return i
        mask = self.scene.masks[mask_index]
        if not mask.any():
            raise ValueError(f"mask {mask_index} is empty; pick another object or redraw its mask")
        x, y, d = mask_start(self.scene, mask)
        track = ObjectTrack(mask_index, [PathPoint(x, y, d, None)], name or _next_name(self.scene))
        self._apply([InsertObject(len(self.scene.objects), track)], "select an object")
        return len(self.scene.objects) - 1

    def add_mask(self, mask: np.ndarray, source: str, select: bool = True, name: str = "") -> tuple[int, int | None]:
        """Add a mask (from a tool) and, with ``select``, make it a moving object; one undo step.
        Returns (mask index, object index or None)."""
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            raise ValueError("the mask is empty; draw over the object")
        index = len(self.scene.masks)
        commands: list[Command] = [AppendMask(m, source)]
        if select:
            probe = _probe(self.scene)
            probe.add_mask(m, source)
            x, y, d = mask_start(probe, m)
            track = ObjectTrack(index, [PathPoint(x, y, d, None)], name or _next_name(self.scene))
            commands.append(InsertObject(len(self.scene.objects), track))
        self._apply(commands, "make a mask")
        return index, (len(self.scene.objects) - 1 if select else None)

    def set_mask(self, mask_index: int, mask: np.ndarray, source: str | None = None) -> None:
        """Replace a mask's pixels (a refining stroke). An object using it starts at the new centroid; its other
        path points keep their position and their "x nearer" relative to P1."""
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            raise ValueError("that would leave the mask empty; remove the object instead")
        if np.array_equal(m, self.scene.masks[mask_index]):
            return
        source = source or self.scene.mask_sources[mask_index]
        self._apply([SetMask(mask_index, m, source)], "edit a mask", restart=[mask_index])

    def remove_object(self, index: int) -> None:
        if not 0 <= index < len(self.scene.objects):
            raise ValueError(f"object {index} does not exist (the scene has {len(self.scene.objects)} objects)")
        self._apply([RemoveObject(index)], "remove an object")

    def set_depth(self, depth: np.ndarray, source: str) -> None:
        """Use another depth map. P1 moves to the new depth under its object. The other points keep their depth
        when only the parameter of the same kind of depth changes (``nearer:2`` -> ``nearer:4``: N changes what
        "x nearer" means, never where a point is, so N there and back leaves every path as it was); with another
        kind of depth (its own scale) they keep their "x nearer" relative to P1."""
        self.do(Batch(self._depth_commands(self.scene, depth, source), "choose the depth"))

    def set_framing(self, image: np.ndarray, offset: float, depth: np.ndarray, source: str) -> bool:
        """Crop the photo elsewhere (``image``, cut at ``offset``, with its ``depth``): only before any mask, which
        is drawn on the crop it was made on. False when nothing changed."""
        if self.scene.masks:
            raise ValueError("the crop is fixed once a mask exists (the masks were drawn on this crop); undo the "
                             "masks, or open the photo again, to move it")
        if float(offset) == self.scene.crop_offset and np.array_equal(image, self.scene.image):
            return False
        return self.do(Batch([SetFraming(image, offset)] + self._depth_commands(self.scene, depth, source),
                             "move the crop", key=("framing",)))

    def _depth_commands(self, scene: Scene, depth: np.ndarray, source: str) -> list[Command]:
        """SetDepth plus the paths that follow it, computed on ``scene`` (the state the depth applies to)."""
        probe = _probe(scene)
        SetDepth(depth, source).apply(probe)
        commands: list[Command] = [SetDepth(depth, source)]
        keep = same_kind(scene.depth_source, source)
        for i, obj in enumerate(probe.objects):
            commands.append(SetPath(i, _restart(probe, obj.path, probe.masks[obj.mask_index], keep),
                                    "choose the depth"))
        if probe.camera_path and not keep:
            c0 = probe.camera_path[0]
            ratio = probe.depth_at(c0.x, c0.y) / scene.depth_at(c0.x, c0.y)
            commands.append(SetPath(CAMERA, [replace(p, depth=float(np.clip(p.depth * ratio, MIN_DEPTH, 1.0)))
                                             for p in probe.camera_path]))
        return commands

    def _clip(self, x: float, y: float) -> tuple[float, float]:
        return float(np.clip(x, 0, self.scene.width - 1)), float(np.clip(y, 0, self.scene.height - 1))


def _probe(scene: Scene) -> Scene:
    """A copy to try commands on: its own lists and paths, the same (never mutated) arrays."""
    probe = copy.copy(scene)
    probe.objects, probe.camera_path = copy.deepcopy(scene.objects), copy.deepcopy(scene.camera_path)
    probe.masks, probe.mask_sources = list(scene.masks), list(scene.mask_sources)
    return probe


def _restart(scene: Scene, path: Sequence[PathPoint], mask: np.ndarray, keep_depths: bool = False) -> list[PathPoint]:
    """``path`` with P1 moved to the mask's centroid and median depth, the others keeping their depth
    (``keep_depths``) or their nearness relative to P1."""
    x, y, d = mask_start(scene, mask)
    old = path[0].depth
    out = [replace(path[0], x=x, y=y, depth=d)]
    for p in path[1:]:
        out.append(replace(p) if keep_depths else
                   replace(p, depth=depth_from_nearness(d, nearness_from_depth(old, p.depth))))
    return out


def same_kind(source: str, other: str) -> bool:
    """Whether two depth sources are one kind with other parameters (``nearer:2`` and ``nearer:4``)."""
    return ":" in source and source.split(":", 1)[0] == other.split(":", 1)[0]


def _spread_frames(path: list[PathPoint], num_frames: int) -> None:
    if len(path) > num_frames:
        raise ValueError(f"{len(path)} path points don't fit in {num_frames} frames with one frame each")
    frames = np.round(np.linspace(0, num_frames - 1, len(path))).astype(int) if len(path) > 1 else [0]
    for p, f in zip(path, frames):
        p.frame = int(f)


def _next_name(scene: Scene) -> str:
    taken = {o.name for o in scene.objects}
    n = len(scene.objects) + 1
    while f"object {n}" in taken:
        n += 1
    return f"object {n}"
