"""LeviTor Studio: one composite widget that edits a :class:`~levitor.scene.Scene` and shows what the engine
makes of it. This module is layout and wiring only; each job has its own home:

- edits, undo and redo: :class:`levitor.editing.SceneEditor` (engine layer, no widgets);
- what a click or a drag means: :mod:`levitor_widgets.gestures` on the canvas's pointer state machine
  (:mod:`levitor_widgets.pointer`);
- when to redraw: :mod:`levitor_widgets.scheduler`; the engine's updates off the event loop:
  :mod:`levitor_widgets.worker`; what to draw: :mod:`levitor_widgets.presenter`;
- masks and depth: :mod:`levitor.perception`; the 3D view's geometry: :mod:`levitor.viz.scene3d`;
- mask tools: :class:`levitor_widgets.masking.MaskTools`; files and autosaves: :class:`levitor_widgets.files.SceneFiles`
  (:mod:`levitor_widgets.autosave`); what to open: :mod:`levitor_widgets.opening`; the photo's crop:
  :mod:`levitor_widgets.framing`; the message area: :class:`levitor_widgets.toolbar.Messages`.

Everything a mouse or a slider can do is a method here too (``click``, ``drag``, ``box``, ``brush``,
``set_nearness``, ``set_depth``, ``undo``, ``redo``, ...), which is how the tests and scripts drive it, and all
of it lands in the scene JSON.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from levitor._util.hashing import array_hash
from levitor.depth import nearness_from_depth, nearness_range
from levitor.editing import CAMERA, SceneEditor, ground_depth
from levitor.generation.guidance import DEFAULT_GUIDANCE
from levitor.generation.model_choice import MINI, control_rules_of, is_mini
from levitor.perception.depth_choice import MODEL_SOURCE, DepthChoice
from levitor.perception.manual import max_nearness
from levitor.scene import Scene
from levitor.viz.scene3d import cloud_points, scene_view_3d
from levitor_widgets.autosave import AutosaveStore
from levitor_widgets.canvas import SceneCanvas
from levitor_widgets.compat import call_soon, enable_colab_widgets
from levitor_widgets.files import SceneFiles, open_scene
from levitor_widgets.framing import FramingPanel, crop_text
from levitor_widgets.generate_panel import LEVITOR, GeneratePanel, run_generate, weights_for
from levitor_widgets.gestures import TOOL_SOURCES, Gestures
from levitor_widgets.hints import Hints
from levitor_widgets.masking import MaskTools, repaint_depth
from levitor_widgets.opening import Note, crop_photo, crop_window, frame_photo, load_segmenter, open_target
from levitor_widgets.panels import STRIP_SCALES, ObjectPanel, PathPanel, ScrubberPanel
from levitor_widgets.pointer import PointerEvent
from levitor_widgets.presenter import Presenter, ViewState
from levitor_widgets.scheduler import RedrawScheduler
from levitor_widgets.toolbar import MaskBar, Messages, ModeBar, row_layout
from levitor_widgets.view3d import View3D
from levitor_widgets.worker import EngineSlot, UpdateWorker

MODES = ("select", "path", "camera", "mask")
SIDE_MIN_W = 290  # the side column (crop, objects) below this goes under the canvas: its rows need 280-290 px
FIRST_UPDATE_WAIT_S = 2.0  # in a kernel, the engine's first update starts once the canvas is drawn, or after this
CAUGHT_WARNINGS_MAX = 20  # distinct warnings said per action (the first ones: the rest repeat a loop's)
NOTHING_TO_GENERATE = "nothing to generate yet: make an object first (mode 'mask': drag a box around it)"
# Scoped to the Studio. A player shrinks with its column instead of overflowing it (two 512 px videos side by side
# in a narrower output got a horizontal scrollbar each from their 2 px margins).
STUDIO_CSS = """
.levitor-studio video { max-width: calc(100% - 4px); height: auto !important; }
"""
EMPTY_3D_HINT = "no objects yet: the photo's pixels at their depth. Make a mask (mode 'mask') and draw a path."


class Studio:
    """``Studio(image_or_scene)``: display it in a notebook cell.

    image_or_scene: a :class:`Scene`, a scene JSON path, a photo (path, PIL, array), or None for the bundled scene.
    out_dir: where videos, saved scenes and the autosaves (``out_dir/autosaves/<name>-<image hash>/``) go.
    name: the scene's name (default: the file's name, "bundled"); with the image's content hash it keys the
        autosave, so two photos in one folder never share one.
    autosave / resume: write the scene after every edit / reopen this scene's autosave.
    engine: an engine object (or factory ``scene -> engine``) instead of :class:`levitor.engine.Engine`.
    segmenter: a click segmenter (after ``set_image``) for the "SAM clicks" tool; "auto": SAM where its weights
        are here, for a photo without masks.
    weights: passed to :func:`levitor.generation.generate.generate` (``"mini"`` starts with the toy model
        chosen); ``allow_download`` lets the Studio fetch missing weights (off: it never starts a download).
        The live view builds the control by the rules of the model chosen in Generate (``control_rules``: the
        release's for the released LeviTor weights), so its points are the ones Generate sends.
    """

    def __init__(self, image_or_scene: Any = None, *, out_dir: str | os.PathLike = "levitor_out",
                 name: str | None = None, autosave: bool = True, resume: bool = True, engine: Any = None,
                 segmenter: Any = "auto", weights: Any = None, show_3d: bool = True, use_ipyevents: bool = True,
                 strip_scales: tuple[float, ...] = STRIP_SCALES, allow_download: bool = False):
        enable_colab_widgets()
        self.out_dir = Path(out_dir)
        opened = open_target(image_or_scene, allow_download, name)
        self.estimator = opened.estimator
        own_depth = (opened.scene.depth, opened.scene.depth_source)  # "the scene's own" in the depth menu
        store = AutosaveStore(self.out_dir) if autosave else None
        named = name is not None or str(image_or_scene).endswith(".json")  # a scene file opens its own autosave
        start = open_scene(store, opened.scene, opened.name, resume=resume, name_given=named)
        notes: list[Note] = list(start.notes)  # what happened to the user's work first, then the crop, the models
        self.resumed = start.resumed
        self.scene: Scene = start.scene.validate()
        photo = opened.photo  # the whole photo, while its crop can still move
        self._photo = photo if photo is not None and crop_window(photo, 0.0) is not None else None
        if self._photo is not None and not self.scene.masks:
            notes.append(Note(f"the photo is cropped to the scene's {self.scene.width}x{self.scene.height}: "
                              f"{crop_text(photo.shape, crop_window(photo, self.scene.crop_offset))} cut away "
                              "(dimmed under 'Crop'; move it there before making a mask)"))
        notes += opened.notes
        self.editor = SceneEditor(self.scene, repaint_depth=repaint_depth)
        self._engine_factory = engine
        model = MINI if is_mini(weights) else LEVITOR
        self.control_rules = control_rules_of(weights_for(model, weights), DEFAULT_GUIDANCE)
        self.worker = UpdateWorker()  # the engine's updates, on a thread in a kernel
        self._new_engine()
        if isinstance(segmenter, str) and segmenter == "auto":
            segmenter, note = load_segmenter(self.scene.image, allow_download) if not self.scene.masks else (None,
                                                                                                           None)
            notes += [note] if note else []
        self.segmenter, self.weights, self.allow_download = segmenter, weights, allow_download
        self._result = None  # the engine's last full update shown (``result`` waits for a newer one)
        self.mode, self.tool = "select", "box"
        self.view = ViewState(active=(len(self.scene.objects) - 1) if self.scene.objects else None)
        self.timings: dict[str, Any] = {}
        self.timing_log: list[dict[str, Any]] = []  # the last 50 updates
        self._strip_cache, self._cloud = None, None
        self._result_mask_of_id: dict[int, int] = {}  # the instance ids of the shown result -> mask indices

        h, w = self.scene.height, self.scene.width
        self.messages = Messages()
        self.canvas = SceneCanvas(w, h, use_ipyevents=use_ipyevents)
        self.canvas.on_key = self.key
        self.canvas.on_error = lambda tb: self.say("internal error (please report it)", tb, error=True)
        self.presenter = Presenter(self.canvas, self.view)
        self.gestures = Gestures(self, self.canvas.pointer)  # self is its GestureHost
        ptr = self.canvas.pointer  # what the browser's mouse does is a user action (messages: see Messages.action)
        ptr.on_click, ptr.on_drag_start, ptr.on_drag_move, ptr.on_drag_end = (
            self._acting(ptr.on_click), self._acting(ptr.on_drag_start), self._acting(ptr.on_drag_move),
            self._acting(ptr.on_drag_end))
        self.canvas.pointer.keep_on_leave = lambda: self.mode == "mask"  # a stroke past the image's edge goes on
        self.masks = MaskTools(self.editor, self.view, self.gestures.tool, say=self.say, flash=self.presenter.flash,
                               refresh=self.refresh, segmenter=segmenter, estimator=self.estimator,
                               own_depth=own_depth)
        self.scheduler = RedrawScheduler(self._said(self._draft), self._said(self._full), self._said(self._side_update),
                                         panels=self._said(self.show_panels), busy=lambda: not self.worker.idle,
                                         can_draft=lambda: self._result is not None and hasattr(self.engine,
                                                                                               "preview_frame"))
        self.messages.later = lambda write: self.scheduler.after_canvas("messages", write)
        self.files = SceneFiles(store, self.out_dir, start, self.editor, self.scheduler, self.say, self._show_scene)
        self.modebar = ModeBar(self.name)
        self.modebar.on_mode, self.modebar.on_undo, self.modebar.on_redo = self.set_mode, self.undo, self.redo
        self.modebar.on_save = lambda: self._safe(self.save, self.modebar.file.value or None)
        self.modebar.on_load = lambda: self._safe(self.load, self.modebar.file.value)
        self.modebar.on_rename, self.modebar.on_recent = self.rename, lambda key: self._safe(self.open_recent, key)
        tools = ["box", "lasso", "brush", "eraser", "flood"] + (["sam"] if self.segmenter is not None else [])
        depths = ["nearer", "flat", "ground-plane"] + ([MODEL_SOURCE] if self.estimator is not None else [])
        self.maskbar = MaskBar(tools, depths + ([] if DepthChoice.from_source(own_depth[1]) else ["scene"]),
                               self.masks.depth_kind(), self.masks.depth_nearness(), max_nearness())
        self.maskbar.on_tool, self.maskbar.on_new_object = self.set_tool, self.new_object
        self.maskbar.on_depth = lambda kind, n: self._safe(self.set_depth, kind, n)
        self.objects_panel = ObjectPanel()
        self.objects_panel.on_activate, self.objects_panel.on_visible = self.activate, self.set_visible
        self.objects_panel.on_remove = self.remove_object
        self.path_panel = PathPanel(self.scene.num_frames)
        self.path_panel.on_nearness = lambda j, v: self.set_nearness(self.view.active, j, v)
        self.path_panel.on_frame = lambda j, f: self.set_point_frame(self.view.active, j, f)
        self.path_panel.on_timed = lambda on: self.set_timed(self.view.active, on)
        self.path_panel.on_delete = lambda j: self.delete_point(self.view.active, j)
        self.hints = Hints(self.view, self.path_panel)
        self.framing = FramingPanel()
        self.framing.on_offset = lambda v: self._safe(self.set_crop, v)
        self.scrubber = ScrubberPanel(self.scene.num_frames, w, h, strip_scales)
        self.scrubber.on_frame, self.scrubber.on_scale = self.set_frame, self.set_scale
        self.scrubber.on_preview, self.scrubber.on_strip = self.set_preview, self.set_strip_visible
        self.scrubber.set_scale(self.scene.scale)
        self.scrubber.info.layout = W.Layout(height="34px", overflow="hidden")  # two lines: never cut mid-way
        self.view3d = View3D() if show_3d else None
        self.generate_panel = GeneratePanel(self._generate_job, seed=self.scene.seed, width=w, height=h,
                                            model=model, weights=weights)
        self.generate_panel.on_choice = self._generate_choice
        self.generate_panel.show_rules(self.control_rules)
        self._warned: tuple = ((), "")  # the control warnings last said, and the line that said them
        self.generate_panel.snapshot = lambda: self.scene.copy()
        self.generate_panel.precheck = lambda: "" if self.scene.objects else NOTHING_TO_GENERATE
        self.widget = W.VBox([
            W.HBox([self.modebar.widget, self.maskbar.depth_row], layout=row_layout()),
            self.maskbar.tools_row, self.messages.widget,
            # the canvas column never shrinks (a squeezed column lets the side panel cover the canvas); where
            # the output is too narrow for both, the side panel goes below it whole instead of being cut (it
            # wraps by its basis, SIDE_MIN_W, not by the one-line width of its text)
            W.HBox([W.VBox([self.canvas.widget, self.path_panel.widget, self.scrubber.widget],
                           layout=W.Layout(width=f"{max(w, 540) + 4}px", flex="0 0 auto")),
                    W.VBox([self.framing.widget, self.objects_panel.widget],
                           layout=W.Layout(flex=f"1 1 {SIDE_MIN_W}px", min_width=f"{SIDE_MIN_W}px",
                                           overflow="hidden", margin="0 0 0 12px"))],
                   layout=W.Layout(flex_flow="row wrap")),
            self.modebar.files,
            *([self.view3d.widget] if self.view3d is not None else []),
            W.HTML("<b>Generate</b>"),
            self.generate_panel.widget,
            W.HTML(f"<style>{STUDIO_CSS}</style>", layout=W.Layout(display="none")),
        ])
        self.widget.add_class("levitor-studio")
        # clear of JupyterLab's output-prompt column (a click there collapses the output into a scroll box)
        self.widget.layout.padding = "0 0 0 16px"

        if not self.scene.masks:  # load the compiled kernels while the user draws the first mask
            import threading

            threading.Thread(target=_warm_up, daemon=True, name="levitor-warm-up").start()
        self.canvas.draw_image(self.scene.image)
        self.set_mode("mask" if not self.scene.masks else ("path" if self.scene.objects else "select"))
        self._first_pending = self.worker.threaded()
        if self._first_pending:  # in a kernel the first update waits for the browser to draw the Studio (on 2 cores
            self.canvas.on_ready = self._first_update  # the two would share them), FIRST_UPDATE_WAIT_S at most
            call_soon(FIRST_UPDATE_WAIT_S, self._first_update)
            self.show_panels()
        else:
            self.refresh()
            self._side_update()
        if notes:  # held until the user's first action: a hint on the way never replaces it
            self.say(" | ".join(n.text for n in notes), "\n\n".join(n.details for n in notes if n.details),
                     error=any(n.error for n in notes), hold=True)

    @property
    def result(self):
        """The engine's result for the scene as it is now (None without masks); in a kernel it waits for an
        update still being computed (the Studio's own drawing never waits: it uses what was shown last)."""
        self._first_update()
        self.worker.flush()
        return self._result

    def _first_update(self) -> None:
        if self._first_pending:
            self._first_pending = False
            self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ================================================================ mask tools (levitor_widgets.masking)
    def set_tool(self, tool: str) -> None:
        self.masks.check_tool(tool)
        self.tool = tool
        self.gestures.cancel()
        if self.mode != "mask":
            self.set_mode("mask")
        self.maskbar.show(self.mode, tool, self.masks.depth_kind(), self.masks.depth_nearness())

    @property
    def brush_size(self) -> int:
        return int(self.maskbar.size.value)

    last_tool = property(lambda self: self.masks.last_tool)

    def box(self, x0: float, y0: float, x1: float, y1: float, negative: bool = False) -> int | None:
        return self.masks.box(x0, y0, x1, y1, negative)

    def lasso(self, points, negative: bool = False) -> int | None:
        return self.masks.lasso(points, negative)

    def brush(self, points, erase: bool = False, size: float | None = None) -> int | None:
        """``size``: the brush radius in pixels (default: the slider's)."""
        return self.masks.brush(points, size if size is not None else self.brush_size, erase)

    def flood(self, x: float, y: float, negative: bool = False, tolerance: float | None = None) -> int | None:
        """``tolerance``: the colour distance (default: the slider's)."""
        tol = tolerance if tolerance is not None else self.maskbar.tolerance.value
        return self.masks.flood(x, y, float(tol), negative)

    def sam_click(self, x: float, y: float, negative: bool = False) -> int | None:
        return self.masks.sam_click(x, y, negative)

    def new_object(self) -> None:
        self.masks.new_object()

    def mask_tool(self, tool: str, geometry, negative: bool = False) -> int | None:
        """A mask tool by name (what a canvas gesture made): "box" (x0, y0, x1, y1); "lasso", "brush", "eraser"
        points; "flood", "sam" (x, y). ``negative``: take away (the eraser always does)."""
        if tool == "box":
            return self.box(*geometry, negative=negative)
        if tool == "lasso":
            return self.lasso(geometry, negative=negative)
        if tool in ("brush", "eraser"):
            return self.brush(geometry, erase=negative or tool == "eraser")
        if tool == "flood":
            return self.flood(*geometry, negative=negative)
        if tool == "sam":
            return self.sam_click(*geometry, negative=negative)
        raise ValueError(f"tool must be one of {tuple(TOOL_SOURCES)}, got {tool!r}")

    def set_depth(self, kind: str, nearness: float = 2.0) -> None:
        self.masks.set_depth(kind, nearness)

    # ================================================================ files and autosave (levitor_widgets.files)
    name = property(lambda self: self.files.name)
    image_hash = property(lambda self: self.files.image_hash)
    store = property(lambda self: self.files.store)
    closed = property(lambda self: self.files.closed)
    autosave_path = property(lambda self: self.files.autosave_path)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        return self.files.save(path)

    def load(self, path: str | os.PathLike) -> None:
        self.files.load(path)

    def open_recent(self, key: str) -> None:
        self.files.open_recent(key)

    def rename(self, name: str) -> None:
        self.files.rename(name)
        self.modebar.name.value = self.name  # a refused name goes back

    def autosave(self, force: bool = False) -> Path | None:
        return self.files.autosave(force)

    def close(self) -> None:
        self.files.close()
        self.worker.close()

    def _show_scene(self, scene: Scene) -> None:
        """Edit another scene from now on (a loaded file, a recent scene): the views start afresh."""
        self.scene, self._cloud = scene, None
        if self._photo is not None and not np.array_equal(crop_photo(self._photo, scene.crop_offset), scene.image):
            self._photo = None  # another photo's scene: its crop can't move from here
        self._result, self._result_mask_of_id = None, {}  # the last scene's: never drawn over this one
        self.masks.own_depth = (scene.depth, scene.depth_source)
        self.modebar.name.value = self.name
        self.editor.reset(scene)
        self._new_engine()
        self.view.active = len(scene.objects) - 1 if scene.objects else None
        self.view.active_point, self.view.hidden = None, set()
        self.canvas.draw_image(scene.image)
        self.scrubber.set_scale(scene.scale)
        self.refresh()
        self._side_update()

    # ================================================================ the photo's crop (levitor_widgets.framing)
    def set_crop(self, offset: float) -> None:
        """Move the photo's crop along the axis it cuts: -1 the top (or left) edge, 0 the centre, 1 the bottom
        (right). Only before the first mask (masks are drawn on their crop); one undo step; saved with the scene."""
        if self._photo is None:
            raise ValueError("this scene has no photo to crop again: open the photo itself, Studio('photo.jpg'), "
                             "to move its crop")
        image, depth, source = frame_photo(self._photo, float(offset), self.scene.depth_source, self.estimator)
        if self.editor.set_framing(image, float(offset), depth, source):
            self._cloud = None
            window = crop_window(self._photo, self.scene.crop_offset)
            self.say(f"crop moved to {self.scene.crop_offset:+.2f}: {crop_text(self._photo.shape, window)} cut away")
        self.refresh()

    # ================================================================ engine and redraws
    @property
    def engine(self):
        """The engine of the live view (:class:`levitor.engine.Engine` unless the Studio was given another)."""
        return self._engine_slot.get(self.scene)

    def _new_engine(self) -> None:
        """An engine for the scene and rules as they are now: made at once outside a kernel; in a kernel by the
        first engine job, on the worker's thread (see EngineSlot)."""
        self._engine_slot = EngineSlot(self._make_engine)
        if not self.worker.threaded():
            self._engine_slot.get(self.scene)

    def _make_engine(self, scene: Scene):
        f = self._engine_factory
        if f is None:
            from levitor.engine import Engine

            return Engine(scene, rules=self.control_rules)
        return f(scene) if isinstance(f, type) or not hasattr(f, "update") else f

    def refresh(self) -> None:
        """Recompute (only what changed, the engine decides) and redraw the canvas and panels now."""
        self.scheduler.full()

    def request_burst(self) -> None:
        """An edit inside a drag or a slider storm (drafted at once, fully updated when the edits pause)."""
        self.scheduler.burst()

    def _mask_of_id(self) -> dict[int, int]:
        return self._result_mask_of_id if self._result is not None else {}

    def _engine_scene(self) -> Scene:
        """The scene a job computes on: in a kernel a copy (edits go on while the thread computes), else the
        scene itself."""
        return self.scene.copy() if self.worker.threaded() else self.scene

    def _full(self) -> None:
        """The engine's full update on the worker, drawn when it arrives (see levitor_widgets.worker); in a kernel the
        panels show the edit at once, and again with the result's warnings."""
        self.hints.check(self.editor.version)
        if not self.scene.masks:
            self._show_full((None, {}, 0.0))
            return
        if self.worker.threaded():
            self.scheduler.panels()
        self._engine_job("full", lambda engine: engine.update(), self._show_full)

    def _engine_job(self, kind: str, call, show, here_if_free: bool = False) -> None:
        """``call(engine)`` on the scene as it is now, on the worker; ``show((output, mask_of_id, engine_ms))`` or
        ``show(error)`` on the loop, unless the engine was replaced meanwhile (another model's rules)."""
        slot, scene = self._engine_slot, self._engine_scene()

        def compute():
            t0 = time.perf_counter()
            engine = slot.get(scene)
            engine.scene = scene
            try:
                out = call(engine)
            except ValueError as e:  # a scene the engine can't use (e.g. a path point outside the image)
                return e
            inst = getattr(engine, "instance_map", None)
            return out, (inst().mask_of_id if inst is not None else {}), (time.perf_counter() - t0) * 1e3

        self.worker.run(kind, compute, lambda out: show(out) if slot is self._engine_slot else None,
                        here_if_free=here_if_free)

    def _show_full(self, out) -> None:
        if isinstance(out, BaseException):
            self.say(f"can't update: {out}", error=True)
            return
        t1 = time.perf_counter()
        self._result, self._result_mask_of_id, engine_ms = out
        self._strip_cache = None
        self.presenter.draw(self.scene, self._result, self._mask_of_id())
        self.scheduler.panels()  # the objects' warning marks and the points' notes come with the result
        self._say_warnings()
        engine_t = getattr(self._result, "timings", {}) or {}
        self._log({"engine_ms": engine_ms, "draw_ms": (time.perf_counter() - t1) * 1e3,
                   **{f"engine_{k}_ms": v for k, v in engine_t.items()}})
        self._show_info()
        self.scheduler.side()

    def _draft(self) -> None:
        """The engine's one-frame preview of the scene as it is now (a drag or a slider in progress)."""
        if self.hints.check(self.editor.version):
            self.presenter.draw_paths(self.scene)
        frame = self.view.frame
        self._engine_job("draft", lambda engine: engine.preview_frame(frame), self._show_draft,
                         here_if_free=True)  # at once when no full update is computing

    def _show_draft(self, out) -> None:
        if isinstance(out, BaseException):
            self.say(f"can't update: {out}", error=True)
            return
        if self._result is None:  # the full update that drafts build on is gone (a new scene)
            return
        t1 = time.perf_counter()
        pv, mask_of_id, engine_ms = out
        self.presenter.draw_draft(self.scene, pv, mask_of_id, self._result.object_ids)
        self._log({"engine_ms": engine_ms, "draw_ms": (time.perf_counter() - t1) * 1e3, "draft": True,
                   **{f"engine_{k}_ms": v for k, v in pv.timings.items()}})
        self._show_info(num_points=pv.num_points, draft=True)

    def _log(self, timings: dict) -> None:
        self.timings = timings
        self.timing_log.append(timings)
        del self.timing_log[:-50]

    def _side_update(self) -> None:
        """The slower followers of an edit: the 3D view, the scale strip, the autosave."""
        try:
            if self.view3d is not None:
                self._show_3d()
            if self.scrubber.show_strip.value and self._result is not None:
                self._draw_strip()
            self.autosave()
        except Exception as e:  # never let a follower break editing; say what happened
            import traceback

            self.say(f"side update failed: {type(e).__name__}: {e}", traceback.format_exc(), error=True)

    def _show_3d(self) -> None:
        key = (array_hash(self.scene.depth), array_hash(self.scene.image))
        if self._cloud is None or self._cloud[0] != key:
            self._cloud = (key, cloud_points(self.scene))
        tracks = self._result.tracks if self._result is not None else []
        view = scene_view_3d(self.scene, tracks, self.presenter.object_colors(self.scene), self.view.frame,
                             cloud=self._cloud[1], width=self.view3d.width, height=self.view3d.height)
        self.view3d.show(view, "" if self.scene.objects else EMPTY_3D_HINT)

    def _draw_strip(self) -> None:
        strip = self.scrubber.strip
        if self._strip_cache is None:
            with self.worker.lock:  # the engine is not shared with the worker's thread while it computes
                self._strip_cache = {s: self.engine.signal_for_scale(s) for s in strip.scales}
        self.presenter.draw_strip(strip, self.scene, self._result, self._strip_cache, self._mask_of_id())

    # ================================================================ panels and messages
    def show_panels(self) -> None:
        objs, v = self.scene.objects, self.view
        if isinstance(v.active, int) and v.active >= len(objs):
            v.active = len(objs) - 1 if objs else None
        path = self._active_path()
        if v.active_point is not None and v.active_point >= len(path):
            v.active_point = len(path) - 1 if path else None
        warnings = getattr(self._result, "warnings", None) or []
        self.objects_panel.show([o.name for o in objs], self.presenter.object_colors(self.scene),
                                [i not in v.hidden for i in range(len(objs))], v.active if isinstance(v.active, int)
                                else None, [[w for w in warnings if w.object_index == i] for i in range(len(objs))])
        if path:
            ref = path[0].depth
            title = "the camera" if v.active == CAMERA else objs[v.active].name
            self.path_panel.show(title, [nearness_from_depth(ref, p.depth) for p in path], [p.frame for p in path],
                                 v.active_point, [nearness_range(ref)] * len(path), subject=(v.active, title),
                                 notes=self.hints.point_notes(v.active, path, self.scene.num_frames,
                                                              getattr(self._result, "warnings", [])))
        else:
            self.path_panel.show("", [], [], None)
        photo = self._photo
        self.framing.show(photo, None if photo is None else crop_window(photo, self.scene.crop_offset),
                          self.scene.crop_offset, fixed=bool(self.scene.masks))
        recent = None if self.store is None else [(r.label, r.key) for r in self.store.recent()]
        self.modebar.show(self.mode, self.editor.can_undo, self.editor.can_redo, recent)
        self.maskbar.show(self.mode, self.tool, self.masks.depth_kind(), self.masks.depth_nearness())

    def _show_info(self, num_points: int | None = None, draft: bool = False) -> None:
        n = num_points if num_points is not None else (self._result.signal.num_points if self._result else 0)
        k = {} if draft or self._result is None else (getattr(self._result, "k", {}) or {})
        ks = ", ".join(f"#{i}: {c}" for i, c in sorted(k.items()))
        self.scrubber.info.value = (  # wraps onto a second line rather than cut (the row is two lines high)
            f"<div style='font-size:12px;line-height:16px;white-space:normal'>frame {self.view.frame + 1}/"
            f"{self.scene.num_frames}, {n} control points{' (K ' + ks + ')' if ks else ''}"
            f"{' (draft of this frame)' if draft else ''}; update {self.timings.get('engine_ms', 0):.0f} ms, "
            f"draw {self.timings.get('draw_ms', 0):.0f} ms</div>")

    def _say_warnings(self) -> None:
        """Say in the message line when a moved object gets no control points somewhere (the static masks' losses
        go behind "details" with them), once per change; clear the line when that is fixed and it still says so."""
        warnings = getattr(self._result, "warnings", None) or []
        moved = [w for w in warnings if w.object_index is not None]
        key = tuple((w.object_index, w.instance_id, w.reason, w.frames) for w in moved)
        if key == self._warned[0]:
            return
        line = ""
        if moved:
            more = f" (and {len(warnings) - 1} more: details)" if len(warnings) > 1 else ""
            line = f"no control: {moved[0].message}{more}"
            self.say(line, "\n".join(w.message for w in warnings) if more else "")
        elif self.messages.text == self._warned[1]:
            self.say("")
        self._warned = (key, line)

    def say(self, text: str, details: str = "", error: bool = False, hold: bool = False) -> None:
        """One line for the user; ``details`` behind the "details" toggle. An error (or ``hold``) stays until the
        user's next action (:class:`~levitor_widgets.toolbar.Messages`)."""
        self.messages.say(text, details, error, hold)

    @contextmanager
    def _warnings_said(self):
        """A warning raised inside (a library's UserWarning, with its file path) is said in the message area,
        not printed raw above the Studio; other categories (deprecations) go on as they would."""
        with caught_warnings(lambda text, details: self.say(text, details)):
            yield

    def _acting(self, fn):
        """``fn`` as a user action: a held message (an error) is cleared as it starts, not by what it says."""
        if fn is None:
            return None

        @functools.wraps(fn)
        def run(*args, **kwargs):
            with self.messages.action(), self._warnings_said():
                return fn(*args, **kwargs)
        return run

    def _said(self, job):
        """A redraw job (run now or from a timer) whose warnings go to the message area."""
        def run():
            with self._warnings_said():
                job()
        return run

    def _safe(self, fn, *args):
        try:
            return fn(*args)
        except (ValueError, OSError) as e:
            self.say(f"{type(e).__name__}: {e}", error=True)
            return None

    # ================================================================ modes, frames, view
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.gestures.cancel()
        self.gestures.tool.sam_clicks, self.gestures.tool.sam_mask = [], None
        if mode == "camera" and self.scene.camera_path:
            self.activate(CAMERA)
        elif mode == "path" and self.view.active is None and self.scene.objects:
            self.activate(len(self.scene.objects) - 1)
        self.scheduler.panels()  # the mode bar and the mask tools' bar

    def set_frame(self, frame: int) -> None:
        """Show another frame, 0-based (no engine work: the rendered masks and points are cached)."""
        self.view.frame = int(np.clip(frame, 0, self.scene.num_frames - 1))
        self.scrubber.set_frame(self.view.frame)
        self.presenter.draw(self.scene, self._result, self._mask_of_id())
        self._show_info()
        self.scheduler.side()

    def set_preview(self, on: bool) -> None:
        self.view.show_preview = bool(on)
        self.presenter.draw(self.scene, self._result, self._mask_of_id(), full=not on)

    def set_strip_visible(self, on: bool) -> None:
        self.scrubber.strip.set_visible(on)
        if on and self._result is not None:
            self._draw_strip()

    def activate(self, index: int | str) -> None:
        """Make an object (index into scene.objects) or "camera" the one whose path is edited."""
        self.view.active = index
        path = self._active_path()
        self.view.active_point = len(path) - 1 if path else None
        self.presenter.draw_paths(self.scene)
        self.scheduler.panels()

    def show_hint(self, x: float, y: float) -> None:
        """The depth at (x, y) beside the pointer (paths layer)."""
        self.view.hint = (x, y, f"depth {self.scene.depth_at(x, y):.3g}")
        self.presenter.draw_paths(self.scene)

    def press_feedback(self, mask_index: int | None) -> None:
        """The mask a press would select, highlighted until its release selects it (or the press goes elsewhere)."""
        self.presenter.press_flash(mask_index, None if mask_index is None else self.scene.masks[mask_index])

    def preview(self, shapes: list[dict] | None) -> None:
        """The gesture in progress on the tool layer (see SceneCanvas.draw_tool); None clears it."""
        self.canvas.draw_tool(shapes)

    def set_visible(self, index: int, visible: bool) -> None:
        """Show or hide an object's overlay, path and points (display only; the scene is unchanged)."""
        (self.view.hidden.discard if visible else self.view.hidden.add)(index)
        self.presenter.draw(self.scene, self._result, self._mask_of_id())

    def _active_path(self):
        a = self.view.active
        if a is None or (a != CAMERA and a >= len(self.scene.objects)):
            return []
        return self._path_of(a)

    def _path_of(self, who: int | str):
        return self.scene.camera_path if who == CAMERA else self.scene.objects[who].path

    # ================================================================ edits (all through the editor)
    def _edited(self, burst: bool = False) -> None:
        self.request_burst() if burst else self.refresh()

    def select_mask(self, mask_index: int, mode: str = "path") -> int:
        """Select a mask as a moving object (or activate it if already selected); returns its object index."""
        before = len(self.scene.objects)
        i = self.editor.select_mask(mask_index)
        if len(self.scene.objects) > before and not self.presenter.keep_flash(mask_index):
            self.presenter.flash(self.scene.masks[mask_index])
        self.view.active, self.view.active_point = i, 0
        self.say(f"selected {self.scene.objects[i].name}: now click on the image to draw its path")
        self.set_mode(mode)
        self.refresh()
        return i

    def remove_object(self, index: int) -> None:
        self.editor.remove_object(index)
        self.view.hidden = {i if i < index else i - 1 for i in self.view.hidden if i != index}
        self.view.active_point = None
        self.refresh()

    def add_point(self, x: float, y: float) -> int:
        """Append a path point to the active object at (x, y); its depth follows the ground (see the panel)."""
        if not isinstance(self.view.active, int):
            raise ValueError("no active object: click an object first (mode 'select')")
        follow = self.path_panel.follow.value
        asked = ground_depth(self.scene, self.view.active, x, y) if follow else None
        j = self.editor.add_point(self.view.active, x, y, follow=follow)
        p = self.scene.objects[self.view.active].path[j]
        self.view.active_point, self.view.hint = j, (p.x, p.y, f"depth {self.scene.depth_at(p.x, p.y):.3g}")
        self.presenter.draw_paths(self.scene)  # the handle shows at once; masks and points follow
        ref = self.scene.objects[self.view.active].path[0].depth
        how = "follows the ground" if follow else "kept from the previous point"
        near = nearness_from_depth(ref, p.depth)
        self.path_panel.hint.value = f"<small>P{j + 1}: depth {p.depth:.4f}, {near:.2f}x nearer than P1 ({how})</small>"
        if asked is not None and abs(asked - p.depth) > 1e-9:
            self.hints.notes[(self.view.active, j)] = (f"clamped: the ground asks {ref / asked:.2f}x|the ground under "
                                                       f"the click asks {ref / asked:.2f}x nearer than P1; the 0..255 "
                                                       f"depth scale ends at {near:.2f}x, so P{j + 1} is there")
        self.refresh()
        return j

    def begin_move(self, who: int | str, j: int) -> None:
        """A handle drag starts: the point becomes the active one; every move until :meth:`end_move` is one undo
        step."""
        self.view.active, self.view.active_point = who, j
        self.editor.begin_gesture("drag", who, j)
        self.presenter.draw_paths(self.scene)
        self.scheduler.panels()

    def move_point(self, who: int | str, j: int, x: float, y: float) -> None:
        """Move path point j to (x, y): the handle follows at once, the engine catches up (throttled)."""
        self.editor.move_point(who, j, x, y)
        pt = self._path_of(who)[j]
        self.view.hint = (pt.x, pt.y, f"depth {self.scene.depth_at(pt.x, pt.y):.3g}")
        self.presenter.draw_paths(self.scene)
        self.request_burst()

    def end_move(self) -> None:
        self.editor.end_gesture()
        self.refresh()

    def add_camera_point(self, x: float, y: float) -> int:
        j = self.editor.add_camera_point(x, y)
        self.view.active, self.view.active_point = CAMERA, j
        self.refresh()
        return j

    def delete_point(self, who: int | str | None, j: int | None) -> None:
        """Delete path point j (P1, the reference, stays: remove the object instead)."""
        if who is None or j is None:
            return
        try:
            self.editor.delete_point(who, j)
        except ValueError as e:
            self.say(str(e), error=True)
            return
        self.view.active_point = max(0, j - 1)
        self.refresh()

    def set_nearness(self, who: int | str | None, j: int, nearness: float) -> None:
        """Path point j's depth as "x times nearer" than P1 (1 = the same depth)."""
        if who is None:
            return
        res = self.editor.set_nearness(who, j, float(nearness))
        self.say(res.limited)
        self.view.active_point = j
        self._edited(burst=True)

    def set_point_frame(self, who: int | str | None, j: int, frame: int) -> None:
        if who is None:
            return
        try:
            self.editor.set_point_frame(who, j, frame)
        except ValueError as e:
            self.say(str(e), error=True)
            self.show_panels()  # the refused value goes back to what it was
            return
        self.say("")
        self.refresh()

    def set_timed(self, who: int | str | None, on: bool) -> None:
        if who is not None:
            self.editor.set_timed(who, on)
            self.refresh()

    def set_scale(self, scale: float) -> None:
        """The control-point scale factor (only K-means reruns); kept to two decimals."""
        self.editor.set_scale(round(float(scale), 2))
        self.scrubber.set_scale(self.scene.scale)
        self._edited(burst=True)

    def undo(self) -> bool:
        """Take back one edit; False when there is nothing to undo."""
        label = self.editor.undo()
        self.say(f"undid: {label}" if label else "nothing to undo")
        self._after_history()
        return label is not None

    def redo(self) -> bool:
        label = self.editor.redo()
        self.say(f"redid: {label}" if label else "nothing to redo")
        self._after_history()
        return label is not None

    def _after_history(self) -> None:
        self.scrubber.set_scale(self.scene.scale)
        self.gestures.tool.sam_clicks, self.gestures.tool.sam_mask = [], None
        self.refresh()

    # ================================================================ pointer and keys (as the browser sends them)
    def click(self, x: float, y: float, shift: bool = False, alt: bool = False) -> None:
        p = PointerEvent(x, y, shift, alt)
        self.canvas.pointer.down(p)
        self.canvas.pointer.up(p)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 4, shift: bool = False,
             release: bool = True) -> None:
        """Press at (x0, y0), move to (x1, y1) in ``steps`` moves, release (or, ``release=False``, leave the
        canvas there with the button still held)."""
        ptr = self.canvas.pointer
        ptr.down(PointerEvent(x0, y0, shift))
        for t in np.linspace(0, 1, steps + 1)[1:]:
            ptr.move(PointerEvent(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, shift), 1)
        (ptr.up if release else ptr.leave)(PointerEvent(x1, y1, shift))

    def key(self, key: str, shift: bool = False) -> None:
        """Keys on the canvas: s/p/c/m modes, z undo, y (or Shift-z) redo, Delete point, arrows frames,
        g generate, Enter close the polygon, Escape drop the gesture."""
        k = key.lower() if len(key) == 1 else key
        modes = {"s": "select", "p": "path", "c": "camera", "m": "mask"}
        if k in modes:
            self.set_mode(modes[k])
        elif k == "z":
            self.redo() if shift else self.undo()
        elif k == "y":
            self.redo()
        elif k in ("Delete", "Backspace"):
            self.delete_point(self.view.active, self.view.active_point)
        elif k in ("ArrowRight", "ArrowLeft"):
            self.set_frame(self.view.frame + (1 if k == "ArrowRight" else -1))
        elif k == "g":
            self.generate()
        elif k == "Enter":
            self.gestures.close_polygon()
        elif k == "Escape":
            self.gestures.cancel()

    # ================================================================ generate
    def generate(self, wait: bool = False) -> bool:
        """Press Generate: the model where weights are found, the instant preview otherwise."""
        return self.generate_panel.start(wait=wait)

    def choose_model(self, model: str | None = None, guidance: str | None = None) -> None:
        """Pick Generate's model ("levitor" or "mini") and guidance (levitor.generation.guidance), as the menus do;
        the live view then shows the control by the rules of that choice."""
        panel = self.generate_panel
        if guidance is not None:
            panel.guidance.value = guidance
        if model is not None:
            panel.model.value = model

    def _generate_choice(self, model: str, guidance: str) -> None:
        """The Generate menus changed: rebuild the live view by the chosen model's rules when they differ."""
        rules = control_rules_of(weights_for(model, self.weights, guidance), guidance)
        self.generate_panel.show_rules(rules)
        if rules != self.control_rules:
            self.control_rules = rules
            self._new_engine()
            self.refresh()

    def _generate_job(self, scene: Scene, settings, progress, cancel):
        f = self._engine_factory  # a shared engine instance belongs to the live scene: make a fresh one
        make = f if f is not None and (isinstance(f, type) or not hasattr(f, "update")) else None
        return run_generate(scene, settings, progress, cancel, out_dir=self.out_dir, weights=self.weights,
                            allow_download=self.allow_download, make_engine=make)


def _warm_up() -> None:
    """The engine's warm-up (levitor.engine.warm_up), imported on its thread: the Studio's cell never imports torch."""
    from levitor.engine import warm_up

    warm_up()


@contextmanager
def caught_warnings(say, limit: int = CAUGHT_WARNINGS_MAX):
    """Inside, a UserWarning goes to ``say(text, details)`` (once per message, at most ``limit`` of them) instead of
    the cell's output; other categories are shown as they would be, at once. Nothing accumulates: a library that
    warns in a loop (on a generation's thread too: the warnings module is process-wide) costs no memory here."""
    found: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        shown = warnings.showwarning  # what the surrounding code shows with (pytest's, IPython's, the default)

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, UserWarning):
                shown(message, category, filename, lineno, file, line)
            elif str(message) not in found and len(found) < limit:
                found[str(message)] = f"{category.__name__} at {filename}:{lineno}"

        warnings.showwarning = show
        try:
            yield
        finally:
            for text, details in found.items():
                say(f"warning: {text}", details)


def _init_said(init):
    """The Studio's __init__ with its warnings (a downscaled photo, a library's) added to its opening message."""
    @functools.wraps(init)
    def run(self, *args, **kwargs):
        found: list[tuple[str, str]] = []
        with caught_warnings(lambda text, details: found.append((text, details))):
            init(self, *args, **kwargs)
        for text, details in found:
            self.messages.add(text, details)
    return run


Studio.__init__ = _init_said(Studio.__init__)

USER_ACTIONS = ("click", "drag", "key", "set_mode", "set_tool", "box", "lasso", "brush", "flood", "sam_click",
                "new_object", "set_depth", "save", "load", "open_recent", "rename", "set_crop", "set_frame",
                "set_preview", "set_strip_visible", "activate", "set_visible", "select_mask", "remove_object",
                "add_point", "add_camera_point", "delete_point", "set_nearness", "set_point_frame", "set_timed",
                "set_scale", "undo", "redo", "generate")  # what a user does: a held message goes as each starts


def _user_action(fn):
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        with self.messages.action(), self._warnings_said():
            return fn(self, *args, **kwargs)
    return run


for _name in USER_ACTIONS:
    setattr(Studio, _name, _user_action(getattr(Studio, _name)))
