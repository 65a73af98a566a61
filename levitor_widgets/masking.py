"""The Studio's mask tools and depth choice, as methods (the canvas gestures call them; so can scripts):
``box`` (GrabCut), ``lasso`` (polygon), ``brush`` / eraser, ``flood`` (with a tolerance), ``sam_click``, and
``set_depth``. The masks and depth maps come from :mod:`levitor.perception`; every change goes through the
scene editor as one undoable step.

A stroke refines the active object's mask when a tool made it (Shift/Alt or the eraser take pixels away);
otherwise, or after "new object", it makes a new object. A box always makes a new object (Shift: it cuts the
box's object out of the active mask).
"""

from __future__ import annotations

import numpy as np

from levitor.perception.depth_choice import DepthChoice
from levitor.perception.grabcut import grabcut_mask
from levitor.perception.manual import brush_mask, flood_fill_mask, lasso_mask
from levitor.scene import Scene
from levitor_widgets.gestures import TOOL_SOURCES


class MaskTools:
    """Mixed into :class:`~levitor_widgets.studio.Studio` (it uses its scene, editor, gestures and views)."""

    last_tool: tuple | None = None  # the last tool call, (tool, its geometry): what a gesture became

    def set_tool(self, tool: str) -> None:
        if tool not in TOOL_SOURCES:
            raise ValueError(f"tool must be one of {tuple(TOOL_SOURCES)}, got {tool!r}")
        if tool == "sam" and self.segmenter is None:
            raise ValueError("the SAM tool needs SAM's weights (see the 'details' of the first message)")
        self.tool = tool
        self.gestures.cancel()
        if self.mode != "mask":
            self.set_mode("mask")
        self.maskbar.show(self.mode, tool, self._depth_kind(), self._depth_nearness())

    @property
    def brush_size(self) -> int:
        return int(self.maskbar.size.value)

    def new_object(self) -> None:
        """The next mask makes a new object instead of refining the active one."""
        t = self.gestures.tool
        t.new_object, t.sam_clicks, t.sam_mask = True, [], None
        self.say("the next mask makes a new object")

    # ------------------------------------------------------------------ tools
    def box(self, x0: float, y0: float, x1: float, y1: float, negative: bool = False) -> int | None:
        """GrabCut inside the box: a new object (returns its index); ``negative`` cuts it out of the active one."""
        self.last_tool = ("box", (x0, y0, x1, y1))
        region = grabcut_mask(self.scene.image, (x0, y0, x1, y1))
        return self._use_region(region, "box", negative, "GrabCut")

    def lasso(self, points, negative: bool = False) -> int | None:
        """The polygon through ``points`` ((x, y) pixels), added to (or, ``negative``, cut from) the mask."""
        region = lasso_mask(points, (self.scene.height, self.scene.width))
        return self._use_region(region, "lasso", negative, "lasso")

    def brush(self, points, erase: bool = False, size: int | None = None) -> int | None:
        """A brush stroke through ``points`` of radius ``size`` (default the slider's); ``erase`` paints away."""
        radius = float(size if size is not None else self.brush_size)
        region = brush_mask([list(map(tuple, np.asarray(points, float).reshape(-1, 2)))], radius,
                            (self.scene.height, self.scene.width))
        return self._use_region(region, "brush", erase, "eraser" if erase else "brush")

    def flood(self, x: float, y: float, negative: bool = False, tolerance: float | None = None) -> int | None:
        """The connected region of similar colour around (x, y) (``tolerance``: the slider's by default)."""
        tol = float(tolerance if tolerance is not None else self.maskbar.tolerance.value)
        return self._use_region(flood_fill_mask(self.scene.image, (x, y), tolerance=tol), "flood", negative,
                                f"flood fill (tolerance {tol:g})")

    def sam_click(self, x: float, y: float, negative: bool = False) -> int | None:
        """A SAM click (``negative``: a part that does not belong); the clicks since the last new object make one
        mask together."""
        if self.segmenter is None:
            raise ValueError("no SAM weights here: use the box, lasso, brush or flood tools")
        t = self.gestures.tool
        if t.sam_mask is None and negative:
            self.say("click the object first; Shift/Alt-clicks then take parts away")
            return None
        t.sam_clicks.append((float(x), float(y), 0 if negative else 1))
        out = self.segmenter.predict(points=[(a, b) for a, b, _ in t.sam_clicks],
                                     labels=[lab for _, _, lab in t.sam_clicks], multimask_output=False)
        masks = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=bool)
        mask = masks[0] if masks.ndim == 3 else masks
        if not mask.any():
            t.sam_clicks.pop()
            self.say("that click gave an empty mask; click inside the object")
            return None
        if t.sam_mask is None:
            t.new_object = True
            obj = self._use_region(mask, "sam", False, "SAM")
            t.sam_mask = self.scene.objects[obj].mask_index
            return obj
        self.editor.set_mask(t.sam_mask, mask, TOOL_SOURCES["sam"])
        self.presenter.flash(mask)
        self.refresh()
        return self.view.active

    def _use_region(self, region: np.ndarray, tool: str, negative: bool, what: str) -> int | None:
        """Add ``region`` to the target mask (or cut it out), or make it a new object. Returns the object index."""
        t = self.gestures.tool
        target = self.gestures.target_mask(tool)
        if tool == "box" and negative and isinstance(self.view.active, int):
            target = self.scene.objects[self.view.active].mask_index
        if target is None:
            if negative:
                self.say("nothing to take away from: make a mask first (a box around the object)")
                return None
            if not region.any():
                raise ValueError(f"the {what} found nothing there; try again around the object")
            _, obj = self.editor.add_mask(region, TOOL_SOURCES[tool])
            t.new_object = False
            self.presenter.flash(region)
            self.view.active, self.view.active_point = obj, 0
            name = self.scene.objects[obj].name
            self.say(f"{name}: mask made by {what}; refine it (brush, eraser, Shift to remove) or press 'path' "
                     "(key p) to draw its path")
        else:
            old = self.scene.masks[target]
            new = (old & ~region) if negative else (old | region)
            self.editor.set_mask(target, new, self.scene.mask_sources[target])
            obj = next((i for i, o in enumerate(self.scene.objects) if o.mask_index == target), None)
            self.say(f"{'removed from' if negative else 'added to'} the mask by {what}")
        self.refresh()
        return obj

    # ------------------------------------------------------------------ depth
    def _depth_kind(self) -> str:
        c = DepthChoice.from_source(self.scene.depth_source)
        return c.kind if c is not None else "scene"

    def _depth_nearness(self) -> float:
        c = DepthChoice.from_source(self.scene.depth_source)
        return c.nearness if c is not None and c.kind == "nearer" else 2.0

    def set_depth(self, kind: str, nearness: float = 2.0) -> None:
        """The depth choice: "nearer" (objects ``nearness`` x nearer than a flat background), "flat",
        "ground-plane", "depth-anything-v2" (with its weights), or "scene" (the depth the scene came with).
        Paths keep their shape: P1 takes the new depth under the object, the others their "x nearer"."""
        if kind == "scene":
            depth, source = self._own_depth
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
