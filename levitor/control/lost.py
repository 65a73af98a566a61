"""Where the control signal loses an object, and why: no control point is dropped without a word.

An object gets K = 0 points in a frame when its rendered mask there is empty or too small for its points; the model
is then not told where it is. The engine reports every such case as a :class:`ControlWarning` on
``EngineResult.warnings`` (and on the one-frame draft); ``levitor generate`` and ``levitor preview`` print them, the
generation's JSON record keeps them, and the Studio shows them beside the object (and, through
:func:`levitor.motion.lift.path_point_times`, beside the path points whose frames they name).

Reasons, in the order they are decided for a frame:

- ``far_path_depth``: under the release's rules the object's path depth is 1.0 (the far end of the scale); the
  release draws a moved object only where the scene is strictly farther than its path depth, which nothing is, so
  it is never drawn, frame 0 included. That is the release's behaviour, kept; this says so.
- ``left_view``: none of its pixels lands inside the picture.
- ``hidden``: it is inside the picture but drawn nowhere: something nearer covers it.
- ``too_small``: its mask is at most 0.1% of the image, so the instance map dropped it (every frame), or in this
  frame it shows too few pixels for its K points (K-means samples every 10th pixel).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

REASONS = ("far_path_depth", "left_view", "hidden", "too_small")


@dataclass(frozen=True)
class ControlWarning:
    """An object that gets no control points in some frames."""

    object_index: int | None  # index in scene.objects; None for a static (unselected) instance
    instance_id: int  # its id in the instance map (0 when the map dropped it)
    frames: tuple[int, ...]  # frames (0-based) where this object has K = 0 (or is otherwise lost)
    reason: str  # one of REASONS
    message: str  # one plain line a user understands, with what to do

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"ControlWarning.reason must be one of {REASONS}, got {self.reason!r}")

    def to_dict(self) -> dict:
        """For JSON records: plain ints and strings, frames as a list."""
        d = asdict(self)
        d["frames"] = list(self.frames)
        return d


@dataclass
class Subject:
    """What the engine knows about one object's frames, for :func:`control_warnings`.

    All arrays are (F,) over the clip (or the frames given to :func:`control_warnings`)."""

    name: str  # how the user knows it: the object's name, or "mask N (not moved)"
    object_index: int | None
    instance_id: int  # 0: dropped by the instance map
    controlled: np.ndarray  # bool: it has control points in that frame
    area: np.ndarray  # int: its rendered pixel count
    in_view: np.ndarray  # bool: some of its pixels land inside the picture
    far: np.ndarray  # bool: the release's rules never draw it there (path depth >= 1.0)
    k: int = 0  # its number of control points (0 when it has none)
    mask_area: int = 0  # its first-frame mask area (for a dropped object)


def control_warnings(subjects: Iterable[Subject], frames: Sequence[int], num_frames: int,
                     min_area: float) -> list[ControlWarning]:
    """One warning per subject and reason, naming the frames (``frames``: the clip frames the arrays stand for;
    ``min_area``: the instance map's threshold in pixels)."""
    out = []
    frames = [int(f) for f in frames]
    for s in subjects:
        if s.instance_id == 0:
            out.append(ControlWarning(
                s.object_index, 0, tuple(frames), "too_small",
                f"{s.name} covers {s.mask_area} pixels, not more than 0.1% of the image ({int(min_area)} pixels): "
                "the instance map drops it, so it gets no control points and the model is not told to move it; "
                "select a larger mask or grow this one"))
            continue
        lost = {r: [] for r in REASONS}
        for j, f in enumerate(frames):
            if s.controlled[j]:
                continue
            if s.far[j]:
                lost["far_path_depth"].append(f)
            elif not s.in_view[j]:
                lost["left_view"].append(f)
            elif s.area[j] == 0:
                lost["hidden"].append(f)
            else:
                lost["too_small"].append(f)
        for reason, where in lost.items():
            if where:
                out.append(ControlWarning(s.object_index, s.instance_id, tuple(where), reason,
                                          _message(s, reason, where, num_frames)))
    return out


def _message(s: Subject, reason: str, frames: list[int], num_frames: int) -> str:
    when = frames_text(frames, num_frames)
    if reason == "far_path_depth":
        return (f"{s.name} is at path depth 1.0 (the farthest) {when}: the release's rules never draw an object that "
                "far, so it gets no control points there and will not move; give its path points a depth below 1.0 "
                "(nearer than the background)")
    if reason == "left_view":
        return (f"{s.name} is outside the picture {when}: it gets no control points there (the model is told it "
                "left); keep its path inside the image if it should stay in view")
    if reason == "hidden":
        return (f"{s.name} is hidden behind a nearer object {when}: it gets no control points there; give its path "
                "a smaller depth (nearer) or move it aside if it should stay visible")
    shown = max(int(s.area[i]) for i in range(len(s.area)) if not s.controlled[i] and s.area[i] > 0)
    return (f"{s.name} shows at most {shown} pixels {when}, too few for its {s.k} control points (about "
            f"{s.k * 10} needed): it gets no control points there; keep more of it in view, or lower the "
            "control-point scale")


def frames_text(frames: Sequence[int], num_frames: int) -> str:
    """"in frames 3-7, 12 (of 16)", 1-based as the Studio counts them; "in every frame" when all are named."""
    frames = sorted(int(f) for f in frames)
    if len(frames) == num_frames:
        return "in every frame"
    runs, start = [], frames[0]
    for a, b in zip(frames, frames[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start + 1}" if a == start else f"{start + 1}-{a + 1}")
            start = b
    word = "frame" if len(frames) == 1 else "frames"
    return f"in {word} {', '.join(runs)} (of {num_frames})"
