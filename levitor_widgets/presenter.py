"""What the canvas shows, from the scene and the engine's result: the mask overlay, the paths, the control points
and the scale strip. Colours belong to masks, not to instance ids (which change with the selection order), so
selecting an object never recolours the others.

Lookups and drawing calls only: the geometry comes from the engine (``EngineResult``) and the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from levitor.viz.colors import mask_colors
from levitor_widgets.canvas import PathDrawing, SceneCanvas

MASK_ALPHA = 110  # overlay opacity (0..255) of the masks that are not moving objects
OBJECT_ALPHA = 170  # ... and of the user's selected (moved) objects
SELECT_FLASH_RGBA = (255, 235, 59, OBJECT_ALPHA)  # instant highlight of a new mask until the engine redraws


@dataclass
class ViewState:
    """What the user looks at (not part of the scene): the frame, hidden objects, the active path point."""

    frame: int = 0
    hidden: set[int] = field(default_factory=set)  # object indices hidden from the overlay
    show_preview: bool = False
    active: int | str | None = None  # an object index, "camera", or None
    active_point: int | None = None
    hint: tuple[float, float, str] | None = None  # (x, y, text) drawn near the last click


class Presenter:
    def __init__(self, canvas: SceneCanvas, view: ViewState):
        self.canvas, self.view = canvas, view
        self._mask_key: tuple | None = None  # what the mask layer shows, to skip resending it
        self._pressed: tuple[int, tuple[np.ndarray, int, int]] | None = None  # a press's highlight (press_flash)

    # ------------------------------------------------------------------ colours
    def object_colors(self, scene) -> list[tuple[int, int, int]]:
        pal = mask_colors(len(scene.masks))
        return [tuple(int(c) for c in pal[o.mask_index]) for o in scene.objects]

    def id_lut(self, scene, mask_of_id: dict[int, int], max_id: int, object_ids) -> np.ndarray:
        """(max_id + 1, 4) RGBA per instance id: its mask's colour, stronger for objects, clear when hidden."""
        pal = mask_colors(len(scene.masks))
        lut = np.zeros((max(max_id, max(mask_of_id, default=0)) + 1, 4), np.uint8)
        for i, mi in mask_of_id.items():
            lut[i, :3], lut[i, 3] = pal[mi], MASK_ALPHA
        objects = [i for i in object_ids if 0 < i < len(lut)]
        lut[objects, 3] = OBJECT_ALPHA
        hidden = [object_ids[i] for i in self.view.hidden if i < len(object_ids) and 0 < object_ids[i] < len(lut)]
        lut[hidden, 3] = 0
        return lut

    def overlay_rgba(self, scene, instance: np.ndarray, mask_of_id: dict[int, int], object_ids) -> np.ndarray:
        inst = np.asarray(instance)
        lut = self.id_lut(scene, mask_of_id, int(inst.max(initial=0)), object_ids)
        return lut[np.clip(inst, 0, None)]

    def frame_points(self, scene, signal, frame: int, mask_of_id, object_ids) -> tuple[np.ndarray, np.ndarray]:
        """Visible control points of a frame: (P, 2) pixels and (P, 3) colours (hidden objects left out)."""
        if signal is None or signal.num_points == 0:
            return np.zeros((0, 2)), np.zeros((0, 3), np.uint8)
        f = int(np.clip(frame, 0, signal.points.shape[0] - 1))
        vis = signal.visible[f].cpu().numpy().copy()
        ids = signal.instance.cpu().numpy()
        for i in self.view.hidden:
            if i < len(object_ids):
                vis &= ids != object_ids[i]
        lut = self.id_lut(scene, mask_of_id, int(ids.max(initial=0)), object_ids)
        return signal.points[f].cpu().numpy()[vis].astype(np.float64), lut[ids[vis], :3]

    # ------------------------------------------------------------------ drawing
    def draw(self, scene, result, mask_of_id, full: bool = False) -> None:
        """Every layer for the current frame (``result`` None: the photo alone, no masks yet)."""
        v, c = self.view, self.canvas
        self._pressed = None  # the mask layer is drawn again: nothing of a press's highlight to take back
        with c.batch():
            if result is not None and v.show_preview:
                c.draw_image(result.color[v.frame].cpu().numpy())
            elif c.shown["image"] is not scene.image or full:
                c.draw_image(scene.image)
            if result is None:
                c.draw_mask(None)
                self._mask_key = None
                c.draw_points(np.zeros((0, 2)), np.zeros((0, 3), np.uint8))
            else:
                key = (v.frame, frozenset(v.hidden), tuple(result.object_ids), id(result.instance), len(scene.masks))
                if key != self._mask_key or c.shown["mask"] is None or full:
                    c.draw_mask(self.overlay_rgba(scene, result.instance[v.frame].cpu().numpy(), mask_of_id,
                                                  result.object_ids), full=full)
                    self._mask_key = key
                c.draw_points(*self.frame_points(scene, result.signal, v.frame, mask_of_id, result.object_ids))
            self.draw_paths(scene)

    def draw_draft(self, scene, preview, mask_of_id, object_ids) -> None:
        """The engine's one-frame draft (a drag or slider in progress)."""
        c = self.canvas
        self._pressed = None
        with c.batch():
            if self.view.show_preview:
                c.draw_image(preview.color.cpu().numpy())
            c.draw_mask(self.overlay_rgba(scene, preview.instance.cpu().numpy(), mask_of_id, object_ids))
            self._mask_key = None  # the full update redraws it
            self.draw_paths(scene)
            c.draw_points(*self.frame_points(scene, preview.signal, 0, mask_of_id, object_ids))

    def flash(self, mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
        """Highlight a new mask at once, before the engine has re-rendered; only its bounding box is sent.
        Returns what the box showed before (for :meth:`unflash`), or None for an empty mask."""
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        if len(rows) == 0:
            return None
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        shown = self.canvas.shown["mask"]
        before = np.zeros((y1 - y0, x1 - x0, 4), np.uint8) if shown is None else shown[y0:y1, x0:x1].copy()
        self.canvas.fill_mask_runs(mask[y0:y1, x0:x1], x0, y0, SELECT_FLASH_RGBA)
        self._mask_key = None
        return before, x0, y0

    def press_flash(self, mask_index: int | None, mask: np.ndarray | None = None) -> None:
        """The highlight of the mask a press would select (``mask_index`` None: none), taken back by the next
        call unless :meth:`keep_flash` claims it first (the click selected that mask)."""
        if self._pressed is not None and self._pressed[0] == mask_index:
            return
        if self._pressed is not None:  # the press went elsewhere (Shift, a drag, no click): the box as it was
            before, x0, y0 = self._pressed[1]
            self._pressed = None
            self.canvas.draw_mask_patch(before, x0, y0)
        if mask_index is not None and mask is not None:
            saved = self.flash(mask)
            self._pressed = None if saved is None else (mask_index, saved)

    def keep_flash(self, mask_index: int) -> bool:
        """The press's highlight of ``mask_index`` stays (its click selected it); False when there is none."""
        if self._pressed is None or self._pressed[0] != mask_index:
            return False
        self._pressed = None
        return True

    def draw_paths(self, scene) -> None:
        v = self.view
        colors = self.object_colors(scene)
        paths = []
        for i, obj in enumerate(scene.objects):
            if i in v.hidden:
                continue
            xy = np.array([(p.x, p.y) for p in obj.path], dtype=np.float64).reshape(-1, 2)
            paths.append(PathDrawing(xy, colors[i], v.active_point if i == v.active else None, label=obj.name))
        if scene.camera_path:
            xy = np.array([(p.x, p.y) for p in scene.camera_path], dtype=np.float64)
            paths.append(PathDrawing(xy, (255, 255, 255), v.active_point if v.active == "camera" else None,
                                     dashed=True, label="camera"))
        self.canvas.draw_paths(paths, v.hint)

    def draw_strip(self, strip, scene, result, signals: dict, mask_of_id) -> None:
        """The scale strip: the current frame at each scale factor (thumbnail and points of that frame)."""
        from levitor_widgets.panels import STRIP_SHRINK

        frame = self.view.frame
        image = result.color[frame].cpu().numpy() if result is not None else scene.image
        thumb = np.ascontiguousarray(image[::STRIP_SHRINK, ::STRIP_SHRINK][: strip.th, : strip.tw])
        per_scale, counts = [], []
        for s in strip.scales:
            sig = signals[s]
            per_scale.append(self.frame_points(scene, sig, frame, mask_of_id, result.object_ids))
            counts.append(sig.num_points)
        strip.draw(thumb, per_scale, counts)
