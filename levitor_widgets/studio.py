"""LeviTor Studio: one composite widget that edits a :class:`~levitor.scene.Scene` and shows what the engine
makes of it.

The Studio holds the scene and an :class:`~levitor.engine.Engine`; every user action is a small edit of the
scene (select a mask, add/move/delete a path point, set a depth, a frame, the scale factor) followed by
``engine.update()`` and a redraw. It does no geometry itself: masks, control points, the 3D cloud and the
videos all come from the engine.

Everything a mouse or a slider can do is also a method (``click``, ``drag``, ``release``, ``set_nearness``,
``set_scale``, ``set_frame``, ``undo``, ...), which is how the tests drive it.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from levitor._util.images import fit_image
from levitor.defaults import DEFAULT_SIZE
from levitor.depth import depth_from_nearness, nearness_from_depth
from levitor.generation.generate import MINI, is_mini
from levitor.scene import PathPoint, Scene
from levitor_widgets.canvas import PathDrawing, PointerEvent, SceneCanvas
from levitor_widgets.compat import call_soon, defers, enable_colab_widgets, label_style
from levitor_widgets.generate_panel import GenerateOutcome, GeneratePanel, GenerateSettings
from levitor_widgets.panels import STRIP_SCALES, STRIP_SHRINK, ObjectPanel, PathPanel, ScrubberPanel
from levitor_widgets.view3d import MAX_CLOUD_POINTS, View3D

MODES = ("select", "path", "camera")
MODE_LABELS = {"select object": "select", "draw path": "path", "move camera": "camera"}
HIT_RADIUS = 9.0  # px: a press this close to a path handle drags it instead of adding a point
DRAG_REFRESH_S = 0.03  # during a slider/drag burst: at most one one-frame draft per ~30 ms ...
SETTLE_REFRESH_S = 0.12  # ... and the full update once the burst has paused this long
SIDE_REFRESH_S = 0.3  # 3D view, scale strip and autosave follow edits after a short pause
UNDO_MERGE_S = 1.0  # repeated edits of the same thing within this time are one undo step
UNDO_DEPTH = 100
MASK_ALPHA = 110  # overlay opacity (0..255) of controlled instances
OBJECT_ALPHA = 170  # ... and of the user's selected (moved) objects
SELECT_FLASH_RGBA = (255, 235, 59, OBJECT_ALPHA)  # instant highlight of a new selection until the engine redraws


class Studio:
    """``Studio(image_or_scene)``: display it in a notebook cell.

    image_or_scene: a :class:`Scene`, a scene JSON path, an image (path, PIL, array), or None for the bundled
        scene.
    out_dir: where videos, saved scenes and the autosave go.
    autosave: write the scene to ``out_dir/autosave.json`` after every edit (a kernel restart loses nothing);
        ``resume`` reopens that file when it holds the same image.
    engine: an engine object (or factory ``scene -> engine``) to use instead of :class:`levitor.engine.Engine`.
    segmenter: a click segmenter (:class:`levitor.perception.Segmenter`, after ``set_image``); with it, clicks in
        select mode make a new mask (Shift/Alt-click adds a negative point) instead of picking one. "auto": SAM
        where its weights are found, for scenes without masks; without one, such clicks use the flood fill.
    weights: passed to :func:`levitor.generation.generate.generate`; ``allow_download`` lets it fetch missing
        weights from the hub (off by default: Generate never starts a multi-GB download by itself). ``"mini"``
        starts with the shipped toy model chosen (32x32, trained on synthetic sprites; it runs on any CPU); the panel's
        model menu switches between it and the real one at any time.
    strip_scales: the scale factors compared side by side in the strip.
    """

    def __init__(self, image_or_scene: Any = None, *, out_dir: str | os.PathLike = "levitor_out",
                 autosave: bool = True, resume: bool = True, engine: Any = None, segmenter: Any = "auto",
                 weights: Any = None, show_3d: bool = True, use_ipyevents: bool = True,
                 strip_scales: tuple[float, ...] = STRIP_SCALES, allow_download: bool = False):
        enable_colab_widgets()
        self.out_dir = Path(out_dir)
        self.autosave_path = self.out_dir / "autosave.json" if autosave else None
        scene, note = _coerce_scene(image_or_scene)
        self.resumed = False
        if resume and self.autosave_path is not None and self.autosave_path.exists():
            try:
                saved = Scene.load(self.autosave_path)
                if saved.image.shape == scene.image.shape and np.array_equal(saved.image, scene.image):
                    scene, self.resumed = saved, True
            except (ValueError, OSError):
                pass  # a broken autosave never blocks starting; it is overwritten by the next edit
        self.scene: Scene = scene.validate()
        self._engine_factory = engine
        self.engine = self._make_engine(self.scene)
        if isinstance(segmenter, str) and segmenter == "auto":
            segmenter, seg_note = (load_segmenter(self.scene.image) if not self.scene.masks else (None, ""))
            note = " ".join(n for n in (note, seg_note) if n)
        self.segmenter = segmenter
        self._click_source = "sam-click" if segmenter is not None else "flood"
        self.weights = weights
        self.allow_download = allow_download
        self.result = None
        self.mode = "select"
        self.active: int | None = (len(scene.objects) - 1) if scene.objects else None
        self.active_point: int | None = None
        self.frame = 0
        self.hidden: set[int] = set()  # object indices hidden from the overlay
        self.show_preview = False
        self.hint: tuple[float, float, str] | None = None
        self.timings: dict[str, float] = {}  # the last refresh: engine_ms, draw_ms
        self.timing_log: list[dict[str, float]] = []  # the last 50 refreshes
        self._undo: list[tuple[Any, ...]] = []
        self._last_undo_key: tuple | None = None
        self._last_undo_time = 0.0
        self._drag: tuple[str | int, int] | None = None
        self._sam_points: list[tuple[float, float, int]] = []
        self._sam_mask: int | None = None
        self._pending = None
        self._side_pending = None
        self._draft_pending = None
        self._last_draft = float("-inf")  # perf_counter() when the last one-frame draft was drawn
        self._strip_cache: dict[float, Any] | None = None
        self._palette: np.ndarray | None = None
        self._mask_key: tuple | None = None  # what the mask layer shows (see _draw)
        self._mask_src = None  # ... and the rendered instance maps it came from
        self._mask_edits = 0  # bumped when a mask's pixels change (the autosave compares scene keys)
        self._autosaved_key: str | None = None
        self._autosaved_arrays: tuple[str, str] | None = None  # hashes of the image and depth last written

        h, w = self.scene.height, self.scene.width
        self.canvas = SceneCanvas(w, h, use_ipyevents=use_ipyevents)
        self.canvas.on_press = self._on_press
        self.canvas.on_drag = self._on_drag
        self.canvas.on_release = self._on_release
        self.canvas.on_key = self.key
        self.canvas.on_error = lambda tb: self._say(f"<b>internal error</b> (please report):<pre>{_html(tb)}</pre>",
                                                    error=True)
        self.objects_panel = ObjectPanel()
        self.objects_panel.on_activate = self.activate
        self.objects_panel.on_visible = self.set_visible
        self.objects_panel.on_remove = self.remove_object
        self.path_panel = PathPanel(self.scene.num_frames)
        self.path_panel.on_nearness = lambda j, v: self.set_nearness(self.active, j, v)
        self.path_panel.on_frame = lambda j, f: self.set_point_frame(self.active, j, f)
        self.path_panel.on_timed = lambda on: self.set_timed(self.active, on)
        self.path_panel.on_delete = lambda j: self.delete_point(self.active, j)
        self.path_panel.on_undo = self.undo
        self.scrubber = ScrubberPanel(self.scene.num_frames, w, h, strip_scales)
        self.scrubber.on_frame = self.set_frame
        self.scrubber.on_scale = self.set_scale
        self.scrubber.on_preview = self.set_preview
        self.scrubber.on_strip = self.set_strip_visible
        self.scrubber.set_scale(self.scene.scale)
        self.mode_buttons = W.ToggleButtons(options=list(MODE_LABELS), value="select object",
                                            tooltips=["pick an object mask (key: s)",
                                                      "click to add path points to the active object (key: p)",
                                                      "click to move the background = the camera (key: c)"])
        self.mode_buttons.observe(lambda ch: self.set_mode(MODE_LABELS[ch["new"]]), names="value")
        self.message = W.HTML("")
        self.scene_file = W.Text(value=str(self.out_dir / "scene.json"), description="scene file",
                                 style=label_style(), layout=W.Layout(width="360px"))
        self.save_button = W.Button(description="save", icon="save")
        self.load_button = W.Button(description="load", icon="folder-open")
        self.save_button.on_click(lambda _b: self._safe(self.save, self.scene_file.value))
        self.load_button.on_click(lambda _b: self._safe(self.load, self.scene_file.value))
        self.view3d = View3D() if show_3d else None
        self.generate_panel = GeneratePanel(self._generate_job, seed=self.scene.seed, width=w, height=h,
                                            model=MINI if is_mini(weights) else "levitor")
        self.generate_panel.snapshot = self._snapshot

        self.widget = W.VBox([
            W.HBox([self.mode_buttons, self.scene_file, self.save_button, self.load_button]),
            self.message,
            # the canvas column never shrinks (a squeezed column lets the side panel cover the canvas)
            W.HBox([W.VBox([self.canvas.widget, self.scrubber.widget],
                           layout=W.Layout(width=f"{max(w, 540) + 4}px", flex="0 0 auto")),
                    W.VBox([self.objects_panel.widget, self.path_panel.widget],
                           layout=W.Layout(flex="1 1 auto", overflow="hidden", margin="0 0 0 12px"))]),
            *([self.view3d.widget] if self.view3d is not None else []),
            W.HTML("<b>Generate</b> <small>(the video's control points follow the rules its weights were trained "
                   "with: the release's K-means and compositing for the LeviTor weights, levitor's warm-started "
                   "ones, as shown here, for the mini model)</small>"),
            self.generate_panel.widget,
        ])
        self.widget.add_class("levitor-studio")

        with self.canvas.batch():
            self.canvas.draw_image(self.scene.image)
        self.refresh()
        if self.view3d is not None:
            xyz, rgb, _ = self.engine.cloud(max_points=MAX_CLOUD_POINTS)
            self.view3d.set_cloud(xyz, rgb)
        self._side_update()
        if note:
            self._say(note)
        if self.resumed:
            self._say(f"resumed the autosaved scene from <code>{self.autosave_path}</code> "
                      "(pass <code>resume=False</code> to start fresh)")
        if self.mode == "select" and self.scene.objects:
            self.set_mode("path")

    # ================================================================ display
    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ================================================================ engine
    def _make_engine(self, scene: Scene):
        if self._engine_factory is None:
            from levitor.engine import Engine

            return Engine(scene)
        if isinstance(self._engine_factory, type) or not hasattr(self._engine_factory, "update"):
            return self._engine_factory(scene)
        return self._engine_factory

    def refresh(self) -> None:
        """Recompute (only what changed, the engine decides) and redraw the canvas and panels now."""
        for name in ("_pending", "_draft_pending"):  # this update supersedes what was scheduled
            handle = getattr(self, name)
            if handle is not None:
                handle.cancel()
                setattr(self, name, None)
        t0 = time.perf_counter()
        try:
            self.result = self.engine.update()
        except ValueError as e:  # a scene the engine can't use (e.g. a path point outside the image)
            self._say(f"<b>can't update</b>: {e}", error=True)
            return
        t1 = time.perf_counter()
        self._strip_cache = None
        self._palette = None
        self._draw()
        self._show_panels()
        t2 = time.perf_counter()
        self.timings = {"engine_ms": (t1 - t0) * 1e3, "draw_ms": (t2 - t1) * 1e3,
                        **{f"engine_{k}_ms": v for k, v in self.result.timings.items()}}
        self.timing_log.append(self.timings)
        del self.timing_log[:-50]
        self._show_info()
        self._request_side()

    def _request_refresh(self) -> None:
        """Refresh for drags and slider storms. In a kernel, the shown frame is drafted at once (the engine's
        one-frame preview, a few ms), later edits within DRAG_REFRESH_S are coalesced into the next draft, and
        the full update runs once the edits pause for SETTLE_REFRESH_S. Elsewhere (scripts, tests): at once."""
        preview = getattr(self.engine, "preview_frame", None)
        if not defers() or preview is None:
            self.refresh()
            return
        if self._draft_pending is None:
            wait = DRAG_REFRESH_S - (time.perf_counter() - self._last_draft)
            if wait <= 0:
                self._draft()
            else:
                self._draft_pending = call_soon(wait, self._run_draft)
        if self._pending is not None:
            self._pending.cancel()
        self._pending = call_soon(SETTLE_REFRESH_S, self._run_pending)

    def _run_pending(self) -> None:
        self._pending = None
        self.refresh()

    def _run_draft(self) -> None:
        self._draft_pending = None
        self._draft()

    def _draft(self) -> None:
        """Draw the engine's one-frame preview of the scene as it is now: masks, points, paths, point count."""
        t0 = time.perf_counter()
        try:
            pv = self.engine.preview_frame(self.frame)
        except ValueError as e:
            self._say(f"<b>can't update</b>: {e}", error=True)
            return
        t1 = time.perf_counter()
        with self.canvas.batch():
            if self.show_preview:
                self.canvas.draw_image(pv.color.cpu().numpy())
            self.canvas.draw_mask(self.overlay_rgba(instance=pv.instance))
            self._mask_key = None  # the full update redraws it
            self._draw_paths()
            xy, colors = self.frame_points(0, pv.signal)
            self.canvas.draw_points(xy, colors)
        t2 = time.perf_counter()
        self.timings = {"engine_ms": (t1 - t0) * 1e3, "draw_ms": (t2 - t1) * 1e3, "draft": True,
                        **{f"engine_{k}_ms": v for k, v in pv.timings.items()}}
        self.timing_log.append(self.timings)
        del self.timing_log[:-50]
        self._show_info(num_points=pv.num_points, draft=True)
        self._last_draft = time.perf_counter()

    def _request_side(self) -> None:
        if self._side_pending is None:
            self._side_pending = call_soon(SIDE_REFRESH_S, self._run_side)

    def _run_side(self) -> None:
        self._side_pending = None
        self._side_update()

    def _side_update(self) -> None:
        """The slower followers of an edit: 3D paths, the scale strip, the autosave."""
        try:
            if self.view3d is not None:
                self.view3d.set_paths(self.engine.object_paths_3d(), self.object_colors(), self.frame)
            if self.scrubber.show_strip.value:
                self._draw_strip()
            self.autosave()
        except Exception as e:  # never let a follower break editing; say what happened
            self._say(f"<b>side update failed</b>: {type(e).__name__}: {e}", error=True)

    # ================================================================ colours and drawing
    def palette(self) -> np.ndarray:
        """(N, 3) uint8 colour per instance id (row 0: uncontrolled), from levitor.viz.pictures; cached per update."""
        if self._palette is None:
            from levitor.viz.pictures import instance_colors

            n = len(self.scene.masks) + 1
            if self.result is not None:
                n = max(n, int(self.result.instance.max()) + 1)
                if self.result.signal.num_points:
                    n = max(n, int(self.result.signal.instance.max()) + 1)
            self._palette = np.asarray(instance_colors(n), dtype=np.uint8)[:, :3]
        return self._palette

    def object_colors(self) -> list[tuple[int, int, int]]:
        pal = self.palette()
        ids = self.result.object_ids if self.result is not None else []
        return [tuple(int(c) for c in pal[i % len(pal)]) for i in ids]

    def _hidden_ids(self) -> set[int]:
        ids = self.result.object_ids
        return {ids[i] for i in self.hidden if i < len(ids)}

    def overlay_rgba(self, frame: int | None = None, instance=None) -> np.ndarray:
        """The mask layer for a frame (or for a given (H, W) instance map): instance colours, transparent
        where uncontrolled or hidden."""
        f = self.frame if frame is None else frame
        inst = (self.result.instance[f] if instance is None else instance).cpu().numpy()
        pal = self.palette()
        n = max(len(pal), int(inst.max()) + 1)
        lut = np.zeros((n, 4), np.uint8)
        lut[: len(pal), :3] = pal
        lut[1:, 3] = MASK_ALPHA
        lut[[i for i in self.result.object_ids if i < n], 3] = OBJECT_ALPHA
        lut[[i for i in self._hidden_ids() if i < n], 3] = 0
        return lut[inst]

    def frame_points(self, frame: int | None = None, signal=None) -> tuple[np.ndarray, np.ndarray]:
        """Visible control points of a frame: (P, 2) pixels and (P, 3) colours (hidden objects left out)."""
        f = self.frame if frame is None else frame
        sig = self.result.signal if signal is None else signal
        if sig.num_points == 0:
            return np.zeros((0, 2)), np.zeros((0, 3), np.uint8)
        vis = sig.visible[f].cpu().numpy().copy()
        ids = sig.instance.cpu().numpy()
        for hid in self._hidden_ids():
            vis &= ids != hid
        pal = self.palette()
        return sig.points[f].cpu().numpy()[vis].astype(np.float64), pal[ids[vis] % len(pal)]

    def _draw(self) -> None:
        with self.canvas.batch():
            if self.show_preview:
                self.canvas.draw_image(self.result.color[self.frame].cpu().numpy())
            elif self.canvas.shown["image"] is not self.scene.image:
                self.canvas.draw_image(self.scene.image)
            # the mask layer is the biggest message: skip it when only the points changed (a scale edit)
            key = (self.frame, frozenset(self.hidden), self.show_preview, tuple(self.result.object_ids))
            if (key != self._mask_key or self._mask_src is not self.result.instance
                    or self.canvas.shown["mask"] is None):
                self.canvas.draw_mask(self.overlay_rgba())
                self._mask_key, self._mask_src = key, self.result.instance
            self._draw_paths()
            xy, colors = self.frame_points()
            self.canvas.draw_points(xy, colors)

    def _flash(self, mask: np.ndarray) -> None:
        """Highlight a just-selected mask at once, before the engine has re-rendered (slow engines, big images).
        Only the mask's bounding box is sent."""
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        if len(rows) == 0:
            return
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        shown = self.canvas.shown["mask"]
        patch = (np.zeros((y1 - y0, x1 - x0, 4), np.uint8) if shown is None else shown[y0:y1, x0:x1].copy())
        patch[mask[y0:y1, x0:x1]] = SELECT_FLASH_RGBA
        with self.canvas.batch():
            self.canvas.draw_mask_patch(patch, x0, y0)
        self._mask_key = None

    def _draw_paths(self) -> None:
        colors = self.object_colors()
        paths = []
        for i, obj in enumerate(self.scene.objects):
            if i in self.hidden:
                continue
            xy = np.array([(p.x, p.y) for p in obj.path], dtype=np.float64).reshape(-1, 2)
            paths.append(PathDrawing(xy, colors[i] if i < len(colors) else (255, 255, 255),
                                     self.active_point if i == self.active else None, label=obj.name))
        if self.scene.camera_path:
            xy = np.array([(p.x, p.y) for p in self.scene.camera_path], dtype=np.float64)
            paths.append(PathDrawing(xy, (255, 255, 255), self.active_point if self.active == "camera" else None,
                                     dashed=True, label="camera"))
        self.canvas.draw_paths(paths, self.hint)

    def _draw_strip(self) -> None:
        strip = self.scrubber.strip
        if self._strip_cache is None:
            self._strip_cache = {s: self.engine.signal_for_scale(s) for s in strip.scales}
        thumb = self.scene.image[::STRIP_SHRINK, ::STRIP_SHRINK][: strip.th, : strip.tw]
        per_scale, counts = [], []
        for s in strip.scales:
            sig = self._strip_cache[s]
            per_scale.append(self.frame_points(self.frame, sig))
            counts.append(sig.num_points)
        strip.draw(thumb, per_scale, counts)

    # ================================================================ panels
    def _show_panels(self) -> None:
        objs = self.scene.objects
        self.objects_panel.show([o.name or f"object {i + 1}" for i, o in enumerate(objs)], self.object_colors(),
                                [i not in self.hidden for i in range(len(objs))],
                                self.active if isinstance(self.active, int) else None)
        path = self._active_path()
        if path:
            ref = path[0].depth
            title = "the camera" if self.active == "camera" else (objs[self.active].name or f"object {self.active + 1}")
            self.path_panel.show(title, [nearness_from_depth(ref, p.depth) for p in path],
                                 [p.frame for p in path], self.active_point)
        else:
            self.path_panel.show("", [], [], None)

    def _show_info(self, num_points: int | None = None, draft: bool = False) -> None:
        k = {} if draft else (getattr(self.result, "k", {}) or {})
        ks = ", ".join(f"#{i}: {n}" for i, n in sorted(k.items()))
        n = self.result.signal.num_points if num_points is None else num_points
        self.scrubber.info.value = (
            f"<small>frame {self.frame + 1}/{self.scene.num_frames}, {n} control points"
            f"{' (K per instance ' + ks + ')' if ks else ''}{' (draft of this frame)' if draft else ''}; "
            f"update {self.timings.get('engine_ms', 0):.0f} ms, draw {self.timings.get('draw_ms', 0):.0f} ms</small>")

    def _say(self, html: str, error: bool = False) -> None:
        self.message.value = f"<span style='color:{'#b00' if error else '#333'}'>{html}</span>" if html else ""

    def _safe(self, fn, *args):
        try:
            return fn(*args)
        except (ValueError, OSError) as e:
            self._say(f"<b>{type(e).__name__}</b>: {e}", error=True)
            return None

    # ================================================================ undo
    def _push_undo(self, key: tuple | None = None) -> None:
        now = time.monotonic()
        if key is not None and key == self._last_undo_key and now - self._last_undo_time < UNDO_MERGE_S:
            self._last_undo_time = now
            return
        self._last_undo_key, self._last_undo_time = key, now
        state = (copy.deepcopy(self.scene.objects), copy.deepcopy(self.scene.camera_path), self.scene.scale,
                 self.active, self.active_point, set(self.hidden))
        self._undo.append(state)
        del self._undo[:-UNDO_DEPTH]

    def undo(self) -> bool:
        """Go back one edit; False when there is nothing to undo."""
        if not self._undo:
            self._say("nothing to undo")
            return False
        objs, cam, scale, active, point, hidden = self._undo.pop()
        self._last_undo_key = None
        self.scene.objects, self.scene.camera_path, self.scene.scale = objs, cam, scale
        self.active, self.active_point, self.hidden = active, point, hidden
        self.scrubber.set_scale(scale)
        self.refresh()
        return True

    # ================================================================ mouse
    def click(self, x: float, y: float, shift: bool = False, alt: bool = False) -> None:
        """A click at canvas pixel (x, y): press and release at the same place."""
        self._on_press(PointerEvent(x, y, shift, alt))
        self._on_release(PointerEvent(x, y, shift, alt))

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 4) -> None:
        """Press at (x0, y0), move to (x1, y1) in ``steps`` moves, release."""
        self._on_press(PointerEvent(x0, y0))
        for t in np.linspace(0, 1, steps + 1)[1:]:
            self._on_drag(PointerEvent(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
        self._on_release(PointerEvent(x1, y1))

    def _on_press(self, p: PointerEvent) -> None:
        try:
            hit = self._hit_handle(p.x, p.y)
            if hit is not None and not (p.shift or p.alt):
                self.active, self.active_point = hit
                self._drag = hit
                self._push_undo(("drag",) + hit)
                self._draw_paths()
                self._show_panels()
                return
            if self.mode == "select" or self.active is None and self.mode == "path":
                self._select_at(p)
            elif self.mode == "path":
                self.add_point(p.x, p.y)
            elif self.mode == "camera":
                self.add_camera_point(p.x, p.y)
        except ValueError as e:
            self._say(f"<b>can't do that</b>: {e}", error=True)

    def _on_drag(self, p: PointerEvent) -> None:
        if self._drag is None:
            return
        who, j = self._drag
        pt = self._path_of(who)[j]
        pt.x, pt.y = self._clip(p.x, p.y)
        self.hint = (pt.x, pt.y, f"depth here {self.scene.depth_at(pt.x, pt.y):.3g}")
        with self.canvas.batch():
            self._draw_paths()  # the handle follows the mouse at once; the engine catches up (throttled)
        self._request_refresh()

    def _on_release(self, p: PointerEvent) -> None:
        if self._drag is None:
            return
        self._drag = None
        self.refresh()

    def _hit_handle(self, x: float, y: float) -> tuple[str | int, int] | None:
        best, best_d = None, HIT_RADIUS
        candidates = [(i, o.path) for i, o in enumerate(self.scene.objects) if i not in self.hidden]
        candidates.append(("camera", self.scene.camera_path))
        for who, path in candidates:
            for j, pt in enumerate(path):
                d = float(np.hypot(pt.x - x, pt.y - y))
                if d <= best_d:
                    best, best_d = (who, j), d
        return best

    def _clip(self, x: float, y: float) -> tuple[float, float]:
        return float(np.clip(x, 0, self.scene.width - 1)), float(np.clip(y, 0, self.scene.height - 1))

    def _path_of(self, who) -> list[PathPoint]:
        return self.scene.camera_path if who == "camera" else self.scene.objects[who].path

    def _active_path(self) -> list[PathPoint]:
        if self.active is None:
            return []
        if self.active != "camera" and self.active >= len(self.scene.objects):
            return []
        return self._path_of(self.active)

    # ================================================================ editing (public)
    def _select_at(self, p: PointerEvent) -> None:
        if self.segmenter is not None or not self.scene.masks or self._sam_mask is not None:
            self._sam_click(p)
            return
        idx = self.scene.mask_at(p.x, p.y)
        self.hint = (p.x, p.y, f"depth here {self.scene.depth_at(p.x, p.y):.3g}")
        if idx is None:
            self._say("no object mask here; click inside a coloured region")
            self._draw_paths()
            return
        if p.shift or p.alt:  # negative click without a segmenter: drop the object under the cursor
            for i, obj in enumerate(self.scene.objects):
                if obj.mask_index == idx:
                    self.remove_object(i)
                    return
            return
        self.select_mask(idx)

    def select_mask(self, mask_index: int) -> int:
        """Select a mask as a moving object (or activate it if already selected); returns its object index."""
        for i, obj in enumerate(self.scene.objects):
            if obj.mask_index == mask_index:
                self.activate(i)
                return i
        self._push_undo()
        self.scene.select(mask_index)
        self._flash(self.scene.masks[mask_index])
        self.active, self.active_point = len(self.scene.objects) - 1, 0
        self._say(f"selected mask {mask_index} as {self.scene.objects[-1].name}: "
                  "now click on the image to draw its path")
        self.set_mode("path")
        self.refresh()
        return self.active

    def _sam_click(self, p: PointerEvent) -> None:
        """Make (or refine) a mask from clicks: SAM where a segmenter is given, the flood fill otherwise.
        Shift/Alt-click adds a negative point (a part that does not belong)."""
        label = 0 if (p.shift or p.alt) else 1
        if self._sam_mask is None and label == 0:
            return
        self._sam_points.append((float(p.x), float(p.y), label))
        mask = self._click_mask(self._sam_points)
        if not mask.any():
            self._sam_points.pop()
            self._say("that click gave an empty mask; click inside the object")
            return
        self._push_undo(("sam", self._sam_mask))
        self._flash(mask)
        if self._sam_mask is None:
            self._sam_mask = self.scene.add_mask(mask, source=self._click_source)
            self.scene.select(self._sam_mask)
            self.active, self.active_point = len(self.scene.objects) - 1, 0
        else:
            self.scene.masks[self._sam_mask] = mask
            self._mask_edits += 1
            obj = self.scene.objects[self.active] if isinstance(self.active, int) else None
            if obj is not None and obj.mask_index == self._sam_mask:
                ys, xs = np.nonzero(mask)  # the path starts where the (new) mask is
                obj.path[0].x, obj.path[0].y = float(xs.mean()), float(ys.mean())
        self._say("mask made: Shift/Alt-click to remove a part, click again to add one, "
                  "then press 'draw path' (key: p)")
        self.refresh()

    def _click_mask(self, clicks: list[tuple[float, float, int]]) -> np.ndarray:
        if self.segmenter is not None:
            out = self.segmenter.predict(points=[(x, y) for x, y, _ in clicks],
                                         labels=[lab for _, _, lab in clicks], multimask_output=False)
            masks = out[0] if isinstance(out, tuple) else out
            masks = np.asarray(masks, dtype=bool)
            return masks[0] if masks.ndim == 3 else masks
        from levitor.perception import flood_fill_mask

        mask = np.zeros((self.scene.height, self.scene.width), bool)
        for x, y, lab in clicks:
            region = flood_fill_mask(self.scene.image, (x, y))
            mask = (mask | region) if lab else (mask & ~region)
        return mask

    def activate(self, index: int | str) -> None:
        """Make an object (index into scene.objects) or "camera" the one whose path is edited."""
        self.active = index
        path = self._active_path()
        self.active_point = len(path) - 1 if path else None
        self._draw_paths()
        self._show_panels()

    def remove_object(self, index: int) -> None:
        self._push_undo()
        del self.scene.objects[index]
        self.hidden = {i if i < index else i - 1 for i in self.hidden if i != index}
        if isinstance(self.active, int):
            self.active = None if not self.scene.objects else min(self.active, len(self.scene.objects) - 1)
        self.active_point = None
        self.refresh()

    def set_visible(self, index: int, visible: bool) -> None:
        """Show or hide an object's overlay, path and points (display only; the scene is unchanged)."""
        (self.hidden.discard if visible else self.hidden.add)(index)
        self._draw()

    def add_point(self, x: float, y: float) -> int:
        """Append a path point to the active object at (x, y), at the depth of its previous point."""
        if not isinstance(self.active, int):
            raise ValueError("no active object: click an object first (mode 'select object')")
        path = self.scene.objects[self.active].path
        self._push_undo()
        x, y = self._clip(x, y)
        path.append(PathPoint(x, y, path[-1].depth, None))
        if path[0].frame is not None:
            self._spread_frames(path)
        self.active_point = len(path) - 1
        here = self.scene.depth_at(x, y)
        self.hint = (x, y, f"depth here {here:.3g}")
        with self.canvas.batch():
            self._draw_paths()  # the new handle shows at once; masks and points follow from the engine
        self.path_panel.hint.value = (
            f"<small>depth under the click: {here:.3f} "
            f"({nearness_from_depth(path[0].depth, here):.2f}x nearer than the object's start); "
            f"the new point keeps the previous depth: move its slider to change it</small>")
        self.refresh()
        return self.active_point

    def add_camera_point(self, x: float, y: float) -> int:
        """Camera move: drag the background; the first click is where it starts."""
        self._push_undo()
        x, y = self._clip(x, y)
        d = self.scene.depth_at(x, y)
        self.scene.camera_path.append(PathPoint(x, y, d if not self.scene.camera_path
                                                else self.scene.camera_path[-1].depth, None))
        self.active, self.active_point = "camera", len(self.scene.camera_path) - 1
        self.refresh()
        return self.active_point

    def delete_point(self, who: int | str | None, j: int | None) -> None:
        """Delete path point j; an object keeps at least its start point (remove the object instead)."""
        if who is None or j is None:
            return
        path = self._path_of(who)
        if who != "camera" and len(path) <= 1:
            self._say("an object keeps its start point; use 'remove' to drop the object")
            return
        self._push_undo()
        del path[j]
        if path and path[0].frame is not None:
            self._spread_frames(path)
        self.active_point = min(j, len(path) - 1) if path else None
        self.refresh()

    def set_nearness(self, who: int | str | None, j: int, nearness: float) -> None:
        """Path point j's depth as "x times nearer" than the path's first point (1 = same depth)."""
        if who is None:
            return
        path = self._path_of(who)
        if j == 0:
            return  # the first point is the reference
        self._push_undo(("nearness", who, j))
        path[j].depth = depth_from_nearness(path[0].depth, float(nearness))
        self.active_point = j
        self._request_refresh()

    def set_timed(self, who: int | str | None, on: bool) -> None:
        """Give every path point an explicit frame (spread evenly) or none (the engine spreads them)."""
        if who is None:
            return
        path = self._path_of(who)
        self._push_undo()
        if on:
            self._spread_frames(path)
        else:
            for p in path:
                p.frame = None
        self.refresh()

    def set_point_frame(self, who: int | str | None, j: int, frame: int) -> None:
        if who is None:
            return
        path = self._path_of(who)
        old = [p.frame for p in path]
        self._push_undo(("frame", who, j))
        path[j].frame = int(frame)
        frames = [p.frame for p in path]
        if any(f is None for f in frames) or any(b <= a for a, b in zip(frames, frames[1:])):
            for p, f in zip(path, old):
                p.frame = f
            self._say(f"frames must increase along the path (got {frames}); pick a frame between its neighbours",
                      error=True)
            self._show_panels()
            return
        self._say("")
        self.refresh()

    def _spread_frames(self, path: list[PathPoint]) -> None:
        f = self.scene.num_frames
        if len(path) > f:
            raise ValueError(f"{len(path)} path points don't fit in {f} frames with one frame each")
        frames = np.round(np.linspace(0, f - 1, len(path))).astype(int) if len(path) > 1 else [0]
        for p, fr in zip(path, frames):
            p.frame = int(fr)

    def set_scale(self, scale: float) -> None:
        """The control-point scale factor (only K-means reruns)."""
        self._push_undo(("scale",))
        self.scene.scale = float(scale)
        self.scrubber.set_scale(scale)
        self._request_refresh()

    def set_frame(self, frame: int) -> None:
        """Show another frame (no engine work: the rendered masks and points are cached)."""
        self.frame = int(np.clip(frame, 0, self.scene.num_frames - 1))
        if self.scrubber.frame.value != self.frame:
            self.scrubber.frame.value = self.frame
        self._draw()
        self._show_info()
        self._request_side()

    def set_preview(self, on: bool) -> None:
        self.show_preview = bool(on)
        if not on:
            self.canvas.draw_image(self.scene.image)
        self._draw()

    def set_strip_visible(self, on: bool) -> None:
        self.scrubber.strip.set_visible(on)
        if on:
            self._draw_strip()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        label = {v: k for k, v in MODE_LABELS.items()}[mode]
        if self.mode_buttons.value != label:
            self.mode_buttons.value = label
        self._sam_points, self._sam_mask = [], None  # the next click in select mode starts a new mask
        if mode == "camera" and self.scene.camera_path:
            self.activate("camera")

    def key(self, key: str, shift: bool = False) -> None:
        """Keyboard shortcuts on the canvas: s/p/c modes, z undo, Delete point, arrows frames, g generate."""
        k = key.lower() if len(key) == 1 else key
        if k == "s" or k == "Escape":
            self.set_mode("select")
        elif k == "p":
            self.set_mode("path")
        elif k == "c":
            self.set_mode("camera")
        elif k == "z":
            self.undo()
        elif k in ("Delete", "Backspace"):
            self.delete_point(self.active, self.active_point)
        elif k == "ArrowRight":
            self.set_frame(self.frame + 1)
        elif k == "ArrowLeft":
            self.set_frame(self.frame - 1)
        elif k == "g":
            self.generate()

    # ================================================================ files
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Save the scene (JSON + image PNG + depth .npy beside it)."""
        path = Path(path) if path else self.out_dir / "scene.json"
        out = self.scene.save(path)
        self._say(f"saved <code>{out}</code>")
        return out

    def load(self, path: str | os.PathLike) -> None:
        """Load a scene of the same size into this Studio (a new size needs a new Studio)."""
        scene = Scene.load(path)
        if (scene.height, scene.width, scene.num_frames) != (self.scene.height, self.scene.width,
                                                              self.scene.num_frames):
            raise ValueError(
                f"{path} is {scene.width}x{scene.height}, {scene.num_frames} frames; this Studio is "
                f"{self.scene.width}x{self.scene.height}, {self.scene.num_frames} frames. "
                f"Open it with Studio('{path}')")
        self._push_undo()
        self.scene = scene
        self.engine = self._make_engine(scene)
        self._undo.clear()
        self._mask_edits += 1
        self.active = len(scene.objects) - 1 if scene.objects else None
        self.active_point, self.hidden = None, set()
        self.canvas.draw_image(scene.image)
        self.scrubber.set_scale(scene.scale)
        self.refresh()
        if self.view3d is not None:
            xyz, rgb, _ = self.engine.cloud(max_points=MAX_CLOUD_POINTS)
            self.view3d.set_cloud(xyz, rgb)
        self._say(f"loaded <code>{path}</code>")

    def autosave(self, force: bool = False) -> Path | None:
        """Write the scene to the autosave file if it changed since the last write."""
        if self.autosave_path is None:
            return None
        key = repr((self.scene.objects, self.scene.camera_path, self.scene.scale, self.scene.lam, self.scene.k_max,
                    self.scene.k_min_moved, self.scene.interpolation, self.scene.seed, self.scene.num_frames,
                    self.scene.mask_sources, self._mask_edits))
        if not force and key == self._autosaved_key and self.autosave_path.exists():
            return self.autosave_path
        from levitor._util.hashing import array_hash

        arrays = (array_hash(self.scene.image), array_hash(self.scene.depth))  # PNG-encoding is the slow part
        out = self.scene.save(self.autosave_path, arrays=force or arrays != self._autosaved_arrays)
        self._autosaved_key, self._autosaved_arrays = key, arrays
        return out

    # ================================================================ generate
    def generate(self, wait: bool = False) -> bool:
        """Press Generate: the model where weights are found, the instant preview otherwise."""
        return self.generate_panel.start(wait=wait)

    def _snapshot(self) -> Scene:
        return self.scene.copy()

    def _generate_job(self, scene: Scene, settings: GenerateSettings, progress, cancel: threading.Event
                      ) -> GenerateOutcome:
        """Runs on the generate thread with a copy of the scene: no widget state is read here."""
        from levitor.generation.generate import WeightsNotFoundError, generate

        run_dir = self.out_dir / time.strftime("run_%Y%m%d_%H%M%S")
        n = 1
        while run_dir.exists():  # two runs in one second get their own folders
            n += 1
            run_dir = run_dir.with_name(time.strftime("run_%Y%m%d_%H%M%S") + f"_{n}")
        if settings.seed is not None:
            scene.seed = int(settings.seed)
        mini = settings.model == "mini"
        weights = self._weights_for(mini)
        try:
            out = generate(scene, run_dir, weights=weights, device=settings.device, steps=settings.steps,
                           preset=settings.preset, seed=settings.seed, callback=progress, cancel=cancel,
                           allow_download=self.allow_download)
            message = "" if out.used_model else "generated the preview (no diffusion model was used)"
            if mini:
                message = ("made by the <b>mini model</b>: a 32x32 toy trained on synthetic sprites, enlarged; "
                           "it shows the control at work, not LeviTor's quality (docs/mini_model.md)")
            if cancel.is_set():
                message = "cancelled: the partly denoised video was saved"
            return GenerateOutcome(Path(out.video_path), Path(out.control_path), Path(out.scene_path),
                                   bool(out.used_model), message)
        except WeightsNotFoundError as e:
            return self._preview_outcome(scene, run_dir, str(e))

    def _weights_for(self, mini: bool) -> Any:
        """What ``generate`` gets for the chosen model: ``Studio(weights=...)`` names one model, the menu the other."""
        given_mini = is_mini(self.weights)
        if mini:
            return self.weights if given_mini else MINI
        return None if given_mini else self.weights

    def _preview_outcome(self, scene: Scene, run_dir: Path, why: str) -> GenerateOutcome:
        """No weights: the engine's instant preview, its control overlay, and the scene beside them."""
        from levitor.viz.pictures import overlay
        from levitor.viz.video import write_video

        run_dir.mkdir(parents=True, exist_ok=True)
        from levitor.engine import Engine

        f = self._engine_factory  # a shared engine instance belongs to the live scene: make a fresh one here
        engine = f(scene) if f is not None and (isinstance(f, type) or not hasattr(f, "update")) else Engine(scene)
        res = engine.update()
        video = Path(engine.write_preview(run_dir / "preview.mp4"))
        frames = np.stack([overlay(res.color[f], res.instance[f], res.signal, f) for f in range(scene.num_frames)])
        overlay_path = Path(write_video(frames, run_dir / "preview_control.mp4"))
        scene_path = scene.save(run_dir / "scene.json")
        message = ("<b>No model weights found</b>, so this is the instant preview (what moves where), "
                   "not a diffusion video. For a diffusion video on this machine now, choose the model "
                   "<i>mini</i> (a 32x32 toy trained on synthetic sprites). For LeviTor itself:<br>"
                   f"{_html(why)}")
        return GenerateOutcome(video, overlay_path, Path(scene_path), False, message)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


def _coerce_scene(x: Any) -> tuple[Scene, str]:
    """Scene, scene JSON, image (path / PIL / array), or None for the bundled scene -> (scene, note)."""
    if x is None:
        from levitor.bundled import bundled_scene

        return bundled_scene(), ""
    if isinstance(x, Scene):
        return x, ""
    if isinstance(x, (str, os.PathLike)) and str(x).endswith(".json"):
        return Scene.load(x), ""
    return _scene_from_image(x)


def _scene_from_image(image: Any) -> tuple[Scene, str]:
    """A photo -> a scene: DepthAnythingV2 depth where its weights are found, a ground plane otherwise; masks
    come later from clicks (SAM or the flood fill)."""
    from levitor.perception import DepthEstimator, MissingWeightsError, perceive

    rgb = fit_image(image, DEFAULT_SIZE.height, DEFAULT_SIZE.width)  # the generation size
    note = ""
    try:
        depth: Any = DepthEstimator.load()
    except (MissingWeightsError, OSError, ImportError) as e:
        depth = "ground-plane"
        note = (f"No depth model weights: using a ground-plane depth (the bottom is near, the horizon far). "
                f"{_html(str(e))}")
    result = perceive(rgb, depth=depth, segmenter=None, progress=False)
    path = str(image) if isinstance(image, (str, os.PathLike)) else None
    return result.to_scene(rgb, image_path=path), note


def load_segmenter(image: np.ndarray) -> tuple[Any, str]:
    """SAM (transformers) ready on ``image`` where its weights are found; else (None, what to download)."""
    try:
        from levitor.perception import Segmenter

        seg = Segmenter.load("vit_b")
        seg.set_image(image)
        return seg, ""
    except Exception as e:  # MissingWeightsError and anything a half-installed model raises
        return None, f"No SAM weights ({type(e).__name__}): clicks use the flood fill. {_html(str(e))}"
