"""Hints that describe one click or one edit (the depth tag on the canvas, the path panel's line, a note beside a
path point): true when made, stale after the next edit, so they go at the next edit.

No widgets here: :class:`Hints` reads and clears what it is given; the Studio calls :meth:`Hints.check` before
every redraw with the editor's version (bumped by every edit, undo and redo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# what a ControlWarning (levitor.control.lost) means at a path point, in the few words its row has room for
WARNING_NOTES = {"left_view": "leaves the view here", "hidden": "hidden here", "too_small": "too small here",
                 "far_path_depth": "never drawn (depth 1)"}


@dataclass
class Hints:
    """``view.hint`` (the canvas tag), ``panel.hint.value`` (the path panel's line) and ``notes`` (per path
    point, keyed by (who, point index)): each is kept from the first redraw that shows it until the scene's
    version changes again."""

    view: Any
    panel: Any
    notes: dict[tuple[Any, int], str] = field(default_factory=dict)
    _seen: tuple = (None, "", ())
    _version: int = -1

    def check(self, version: int) -> bool:
        """Drop the hints made before the last edit; True if the canvas tag went (the paths layer needs a redraw)."""
        now = (self.view.hint, self.panel.hint.value, tuple(sorted(self.notes.items(), key=str)))
        if not _same(now, self._seen):  # a new hint: true as of this version
            self._seen, self._version = now, version
            return False
        if version == self._version or now == (None, "", ()):
            return False
        had_tag = self.view.hint is not None
        self.view.hint, self.panel.hint.value = None, ""
        self.notes.clear()
        self._seen, self._version = (None, "", ()), version
        return had_tag

    def point_notes(self, who: Any, path: Sequence[Any], num_frames: int, warnings: Sequence[Any]) -> dict[int, str]:
        """The notes beside ``who``'s path points: the engine's warnings (:func:`warning_notes`), and over them
        this session's notes about the last edit."""
        return {**warning_notes(path, num_frames, warnings, who),
                **{j: t for (w, j), t in self.notes.items() if w == who}}


def _same(a: tuple, b: tuple) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


def warning_notes(path: Sequence[Any], num_frames: int, warnings: Sequence[Any], who: Any) -> dict[int, str]:
    """Per path point of object ``who``, what the engine's warnings say about the frame the object reaches it
    (:func:`levitor.motion.lift.path_point_times`), as "few words|the warning's message" (see
    :meth:`levitor_widgets.panels.PathPanel.show`); empty for the camera."""
    warnings = [w for w in warnings if w.object_index == who]
    if not isinstance(who, int) or not path or not warnings:
        return {}
    from levitor.motion.lift import path_point_times  # torch: only once the engine has run (it gave the warnings)

    try:
        times = path_point_times(path, num_frames)
    except ValueError:  # frames that do not increase: the panel says so elsewhere
        return {}
    notes: dict[int, str] = {}
    for w in warnings:
        frames = set(w.frames)
        for j, t in enumerate(times):
            if int(round(float(t))) in frames and j not in notes:
                notes[j] = f"{WARNING_NOTES.get(w.reason, w.reason)}|{w.message}"
    return notes
