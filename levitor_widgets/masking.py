"""The Studio's mask tools and depth choice: ``box`` (GrabCut), ``lasso`` (polygon), ``brush`` / eraser,
``flood`` (with a tolerance), ``sam_click``, and ``set_depth``. The masks and depth maps come from
:mod:`levitor.perception`; every change goes through the scene editor as one undoable step.

A stroke refines the active object's mask when a tool made it (Shift/Alt or the eraser take pixels away);
otherwise, or after "new object", it makes a new object. A box always makes a new object (Shift: it cuts the
box's object out of the active mask). Strokes may run past the image's edge: they are clipped to it.

Every tool says what it did: how many pixels it added or took away, or that it did nothing and why. An object the
engine would drop (at most ``MIN_AREA_FRACTION`` of the image, :mod:`levitor.control.instances`) is never made:
a new one that small is refused, and a stroke that would shrink one that far is not applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from levitor.editing import SceneEditor
from levitor.perception.depth_choice import DepthChoice
from levitor.perception.grabcut import grabcut_mask
from levitor.perception.manual import brush_mask, flood_fill_mask, lasso_mask
from levitor.scene import Scene
from levitor_widgets.gestures import REFINABLE, TOOL_SOURCES, ToolState
from levitor_widgets.presenter import ViewState

Say = Callable[..., None]  # the Studio's message line: say(text, details="", error=False)


def min_area_fraction() -> float:
    """The engine's rule: it drops masks of at most this fraction of the image."""
    from levitor.control.instances import MIN_AREA_FRACTION  # imported here: opening a Studio never loads torch

    return MIN_AREA_FRACTION


def min_object_pixels(height: int, width: int) -> int:
    """The fewest pixels an object's mask needs for the engine to keep it."""
    return int(np.floor(min_area_fraction() * height * width)) + 1


class MaskTools:
    """The mask tools on the scene ``editor`` edits.

    view: the Studio's view state (the active object; a new object becomes the active one).
    state: the gesture state shared with the canvas gestures ("new object" asked for, SAM's clicks so far).
    say: the message line. flash(mask): show a new mask at once. refresh(): recompute and redraw after an edit.
    segmenter: SAM after ``set_image`` (or None); estimator: DepthAnythingV2 (or None).
    own_depth: (depth, source) the scene came with, "the scene's own" in the depth menu.
    """

    def __init__(self, editor: SceneEditor, view: ViewState, state: ToolState, *, say: Say,
                 flash: Callable[[np.ndarray], None], refresh: Callable[[], None], segmenter: Any = None,
                 estimator: Any = None, own_depth: tuple[np.ndarray, str] | None = None):
        self.editor, self.view, self.state = editor, view, state
        self.say, self.flash, self.refresh = say, flash, refresh
        self.segmenter, self.estimator = segmenter, estimator
        self.own_depth = own_depth if own_depth is not None else (editor.scene.depth, editor.scene.depth_source)
        self.last_tool: tuple | None = None  # the last tool call, (tool, its geometry): what a gesture became

    @property
    def scene(self) -> Scene:
        return self.editor.scene

    def check_tool(self, tool: str) -> None:
        if tool not in TOOL_SOURCES:
            raise ValueError(f"tool must be one of {tuple(TOOL_SOURCES)}, got {tool!r}")
        if tool == "sam" and self.segmenter is None:
            raise ValueError("the SAM tool needs SAM's weights (see the 'details' of the first message)")

    def new_object(self) -> None:
        """The next mask makes a new object instead of refining the active one."""
        self.state.new_object, self.state.sam_clicks, self.state.sam_mask = True, [], None
        self.say("the next mask makes a new object")

    def target_mask(self, tool: str) -> int | None:
        """The mask a refining tool edits: the active object's, if a tool made it and no new object is asked
        for; else None (the stroke makes a new object)."""
        if self.state.new_object or not isinstance(self.view.active, int) or tool == "box":
            return None
        mi = self.scene.objects[self.view.active].mask_index
        return mi if self.scene.mask_sources[mi] in REFINABLE else None

    # ------------------------------------------------------------------ tools
    def box(self, x0: float, y0: float, x1: float, y1: float, negative: bool = False) -> int | None:
        """GrabCut inside the box: a new object (returns its index); ``negative`` cuts it out of the active one."""
        self.last_tool = ("box", (x0, y0, x1, y1))
        try:
            region = grabcut_mask(self.scene.image, (x0, y0, x1, y1))
        except ValueError as e:  # a box too small, or nothing found in it
            self.say(str(e), error=True)
            return None
        return self._use_region(region, "box", negative, "GrabCut")

    def lasso(self, points, negative: bool = False) -> int | None:
        """The polygon through ``points`` ((x, y) pixels, clipped to the image), added to (or, ``negative``, cut
        from) the mask."""
        self.last_tool = ("lasso", [tuple(map(float, p)) for p in np.asarray(points, float).reshape(-1, 2)])
        try:
            region = lasso_mask(points, (self.scene.height, self.scene.width))
        except ValueError as e:
            self.say(str(e), error=True)
            return None
        return self._use_region(region, "lasso", negative, "lasso")

    def brush(self, points, radius: float, erase: bool = False) -> int | None:
        """A brush stroke through ``points`` of ``radius`` pixels; ``erase`` paints away."""
        pts = [tuple(p) for p in np.asarray(points, float).reshape(-1, 2)]
        self.last_tool = ("eraser" if erase else "brush", pts)
        region = brush_mask([pts], float(radius), (self.scene.height, self.scene.width))
        return self._use_region(region, "brush", erase, "eraser" if erase else "brush")

    def flood(self, x: float, y: float, tolerance: float, negative: bool = False) -> int | None:
        """The connected region of similar colour around (x, y), within ``tolerance`` (0..255 colour distance)."""
        self.last_tool = ("flood", (x, y))
        tol = float(tolerance)
        return self._use_region(flood_fill_mask(self.scene.image, (x, y), tolerance=tol), "flood", negative,
                                f"flood fill (tolerance {tol:g})")

    def sam_click(self, x: float, y: float, negative: bool = False) -> int | None:
        """A SAM click (``negative``: a part that does not belong); the clicks since the last new object make one
        mask together."""
        if self.segmenter is None:
            raise ValueError("no SAM weights here: use the box, lasso, brush or flood tools")
        self.last_tool = ("sam", (x, y))
        t = self.state
        if t.sam_mask is None and negative:
            self.say("click the object first; Shift/Alt-clicks then take parts away")
            return None
        t.sam_clicks.append((float(x), float(y), 0 if negative else 1))
        out = self.segmenter.predict(points=[(a, b) for a, b, _ in t.sam_clicks],
                                     labels=[lab for _, _, lab in t.sam_clicks], multimask_output=False)
        masks = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=bool)
        mask = masks[0] if masks.ndim == 3 else masks
        need = min_object_pixels(self.scene.height, self.scene.width)
        if int(mask.sum()) < need:
            t.sam_clicks.pop()
            self.say(f"SAM found {_px(int(mask.sum()))} there, {self._too_small(need)}; click inside the object",
                     error=True)
            return None
        if t.sam_mask is None:
            t.new_object = True
            obj = self._use_region(mask, "sam", False, "SAM")
            t.sam_mask = self.scene.objects[obj].mask_index if obj is not None else None
            return obj
        before = int(self.scene.masks[t.sam_mask].sum())
        self.editor.set_mask(t.sam_mask, mask, TOOL_SOURCES["sam"])
        self.flash(mask)
        self.say(f"SAM: the mask is now {_px(int(mask.sum()))} (was {_px(before)})")
        self.refresh()
        return self.view.active

    def _use_region(self, region: np.ndarray, tool: str, negative: bool, what: str) -> int | None:
        """Add ``region`` to the target mask (or cut it out), or make it a new object; say what happened.
        Returns the object index (None when nothing was made)."""
        scene = self.scene
        need = min_object_pixels(scene.height, scene.width)
        target = self.target_mask(tool)
        if tool == "box" and negative and isinstance(self.view.active, int):
            target = scene.objects[self.view.active].mask_index
        size = int(region.sum())
        if target is None:
            if negative:
                self.say("nothing to take away from: make a mask first (a box around the object)")
                return None
            if size < need:
                found = "nothing" if size == 0 else f"only {_px(size)}"
                self.say(f"the {what} found {found} there, {self._too_small(need)}; try again around a larger "
                         "object", error=True)
                return None
            _, obj = self.editor.add_mask(region, TOOL_SOURCES[tool])
            self.state.new_object = False
            self.flash(region)
            self.view.active, self.view.active_point = obj, 0
            self.say(f"{scene.objects[obj].name}: mask made by {what} ({_px(size)}); refine it (brush, eraser, "
                     "Shift to remove) or press 'path' (key p) to draw its path")
            self.refresh()
            return obj
        obj = next((i for i, o in enumerate(scene.objects) if o.mask_index == target), None)
        name = scene.objects[obj].name if obj is not None else f"mask {target}"
        old = scene.masks[target]
        new = (old & ~region) if negative else (old | region)
        changed, left = int((old != new).sum()), int(new.sum())
        if changed == 0:
            why = ("it covers no pixel of the image" if size == 0 else f"{name} has no pixel inside it" if negative
                   else f"all of it is in {name}'s mask already")
            self.say(f"the {what} {'took nothing from' if negative else 'added nothing to'} {name}: {why}")
            return obj
        if negative and left < need:
            self.say(f"not done: the {what} would leave {name} with {_px(left)}, {self._too_small(need)}; "
                     "remove the object instead (x in the objects list)", error=True)
            return obj
        self.editor.set_mask(target, new, scene.mask_sources[target])
        self.say(f"{name}: {_px(changed)} {'removed' if negative else 'added'} by {what}, {_px(left)} now"
                 + ("" if left >= need else f" (still {self._too_small(need)}: add more)"))
        self.refresh()
        return obj

    @staticmethod
    def _too_small(need: int) -> str:
        return f"fewer than the {need:,} px ({min_area_fraction():.1%} of the image) an object needs to move"

    # ------------------------------------------------------------------ depth
    def depth_kind(self) -> str:
        c = DepthChoice.from_source(self.scene.depth_source)
        return c.kind if c is not None else "scene"

    def depth_nearness(self) -> float:
        c = DepthChoice.from_source(self.scene.depth_source)
        return c.nearness if c is not None and c.kind == "nearer" else 2.0

    def set_depth(self, kind: str, nearness: float = 2.0) -> None:
        """The depth choice: "nearer" (objects ``nearness`` x nearer than a flat background), "flat",
        "ground-plane", "depth-anything-v2" (with its weights), or "scene" (the depth the scene came with).
        Paths keep their shape: P1 takes the new depth under the object, the others their "x nearer"."""
        if kind == "scene":
            depth, source = self.own_depth
        else:
            choice = DepthChoice(kind, float(nearness))
            depth = choice.depth(self.scene.image, [self.scene.masks[o.mask_index] for o in self.scene.objects],
                                 self.estimator)
            source = choice.source
        self.editor.set_depth(depth, source)
        self.say(f"depth: {source}")
        self.refresh()


def repaint_depth(scene: Scene):
    """The editor's hook: a depth that follows the selected objects' masks (``nearer:N``) is repainted."""
    choice = DepthChoice.from_source(scene.depth_source)
    if choice is None or not choice.uses_masks:
        return None
    return choice.depth(scene.image, [scene.masks[o.mask_index] for o in scene.objects]), choice.source


def _px(n: int) -> str:
    return f"{n:,} px"
