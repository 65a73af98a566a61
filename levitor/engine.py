"""Scene -> per-frame renders and control signal, recomputing only what an edit changed.

The Studio mutates a :class:`~levitor.scene.Scene` and calls :meth:`Engine.update` after each edit:
a path edit re-renders (lift, move, z-buffer) and re-clusters; a scale-factor change only re-clusters.
The same class serves the CLI and scripts (``Engine(scene).update().signal``).

``Engine(scene, rules="release")`` builds the control exactly as the official release does (instance assembly,
occlusion and hole filling, K-means, the depth value of a point: :class:`levitor.control.rules.ControlRules`);
generation with the released weights uses it. The default, levitor's own rules, keeps points temporally stable
for the Studio's live view.

One computation, whatever the backend: ``backend="torch"`` runs every stage's pure-torch path (as an install
without numba does), ``"numba"`` the compiled loops, ``"auto"`` the compiled ones where numba is installed; both
give the same renders, points, ids and depths (tests compare whole clips). Every stage is shared by the full
update and the Studio's one-frame draft (:meth:`Engine.preview_frame`): the paths (:func:`scene_paths`), the
movers (:func:`scene_movers`), the render (:func:`render_scene`), the control (:meth:`Engine._control`) and the
warnings (:mod:`levitor.control.lost`: every object that gets no control points in some frame, and why).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from levitor._util.hashing import array_hash, digest, masks_hash
from levitor._util.jit import HAVE_NUMBA, compiled_loops
from levitor._util.threads import torch_threads
from levitor.control.frame_samples import FrameSamples, PixelSamples
from levitor.control.instances import MIN_AREA_FRACTION, InstanceMap, assemble_instance_map
from levitor.control.krule import KRule
from levitor.control.lost import ControlWarning, Subject, control_warnings
from levitor.control.points import SAMPLE_STRIDE, control_from_masks
from levitor.control.rules import ControlRules
from levitor.control.signal import ControlSignal
from levitor.depth import FAR_DEPTH
from levitor.motion.handles import release_track_from_handles
from levitor.motion.lift import interpolate_path, lift, move, object_path_3d
from levitor.motion.release_render import render_release
from levitor.motion.render import BACKENDS, Mover, RenderResult, StaticLayer, pixels_of, render, static_layer
from levitor.scene import PathPoint, Scene
from levitor.viz.scene3d import MAX_POINTS
from levitor.viz.video import write_video

__all__ = ["ControlWarning", "Engine", "EngineResult", "FramePreview", "ScenePaths", "render_scene", "scene_movers",
           "scene_paths", "warm_up"]


@dataclass
class FramePreview:
    """One frame of an edit in progress, computed in a few milliseconds for feedback while a slider moves.

    A draft: K-means starts cold on this frame alone, so its points can differ slightly from the next full
    update's (which warm-starts from frame to frame), and K comes from the last full update's areas."""

    frame: int
    instance: torch.Tensor  # (H, W) int64
    depth: torch.Tensor  # (H, W) float32
    color: torch.Tensor  # (H, W, 3) uint8
    signal: ControlSignal  # one frame: points (1, P, 2)
    num_points: int  # control tracks over the clip (sum of K), as the full update will have
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[ControlWarning] = field(default_factory=list)  # objects with no points in this frame


@dataclass
class EngineResult:
    """What one update produced; tensors are CPU."""

    instance: torch.Tensor  # (F, H, W) int64 rendered instance ids, 0 = uncontrolled
    depth: torch.Tensor  # (F, H, W) float32 rendered scene depth
    color: torch.Tensor  # (F, H, W, 3) uint8 preview frames
    signal: ControlSignal
    k: dict[int, int]  # instance id -> number of control points
    object_ids: list[int]  # instance id of each scene.objects[i] (0 if its mask was dropped as too small)
    tracks: list[np.ndarray]  # (F, 3) per-frame (x, y, depth) of each object's path, in the scene's path terms
    # ms per stage of this update; under the release's rules the renderer samples each frame for K-means as it
    # finishes it, so the render stage is "render_and_samples" and "points" has no sampling pass
    timings: dict[str, float] = field(default_factory=dict)
    # every object (moved or not) with K = 0 in some frames, and why; empty when no control is lost. Frames are the
    # scene's (select_frames keeps them as they are)
    warnings: list[ControlWarning] = field(default_factory=list)

    def select_frames(self, index: torch.Tensor) -> EngineResult:
        """The result at the given frames only (to sit beside a model's video that has fewer frames)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, instance=self.instance[index], depth=self.depth[index], color=self.color[index],
                       signal=self.signal.select_frames(index), tracks=[t[index.numpy()] for t in self.tracks])


@dataclass
class ScenePaths:
    """The scene's paths at some frames (rows): as drawn, and as the renderers move them."""

    tracks: list[np.ndarray]  # per object (R, 3) (x, y, depth), interpolated, in the scene's path terms
    mover_tracks: list[np.ndarray]  # per object (R, 3) in the release's terms (Mover.track)
    camera: np.ndarray | None  # (R, 3) the camera path in the release's terms, None without one


@dataclass
class _RenderedClip:
    """The engine's last render and what came with it, kept while the render key stays the same."""

    key: str  # Engine._render_key: the static layer, camera and paths it was rendered for
    result: RenderResult
    paths: ScenePaths
    movers: list[Mover]
    samples: PixelSamples | None  # each frame's K-means samples, taken as the release's renderer finished it


def scene_paths(scene: Scene, rows: Sequence[int] | None = None) -> ScenePaths:
    """Interpolate every path (at ``rows`` only, if given: row 0 must be frame 0, every track's reference) and
    convert handle-terms paths to the release-terms tracks that put each anchor on its handle
    (:mod:`levitor.motion.handles`)."""
    s = scene
    K = s.camera()
    handles = s.path_terms == "handle"

    def at_rows(t: np.ndarray) -> np.ndarray:
        return t if rows is None else t[list(rows)]

    tracks = [at_rows(interpolate_path(o.path, s.num_frames, s.interpolation)) for o in s.objects]
    movers = [release_track_from_handles(t, s.anchor_depth(i), K.cx, K.cy) if handles else t
              for i, t in enumerate(tracks)]
    camera = None
    if s.camera_path:
        camera = at_rows(interpolate_path(s.camera_path, s.num_frames, s.interpolation))
        if handles:
            camera = release_track_from_handles(camera, s.camera_anchor_depth(), K.cx, K.cy)
    return ScenePaths(tracks, movers, camera)


class Engine:
    """Caching wrapper around the engine's pure functions for one (mutable) scene."""

    def __init__(self, scene: Scene, init: str | None = None, backend: str = "auto",
                 rules: str | ControlRules = "levitor"):
        self.scene = scene
        # "levitor" (default) or "release" (what the released weights were trained with), or a ControlRules;
        # ``init`` overrides its K-means ("warm", "release" or "even")
        self.rules = ControlRules.named(rules)
        if init is not None:
            self.rules = replace(self.rules, kmeans=init)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "numba" and not HAVE_NUMBA:
            raise ValueError("backend 'numba' needs numba, which is not installed (or LEVITOR_NO_NUMBA is set); "
                             "pip install numba, or use backend='auto' or 'torch' (the same results, slower)")
        # "auto": compiled loops where numba is installed; "numba"; "torch": every stage's pure-torch path (what an
        # install without numba runs); "pytorch3d": its point rasterizer for levitor's renders (slow on CPU)
        self.backend = backend
        self._instances: tuple[str, InstanceMap] | None = None
        self._static: tuple[str, StaticLayer] | None = None
        self._render: _RenderedClip | None = None
        self._control_cache: tuple[str, ControlSignal, dict[int, np.ndarray]] | None = None
        self._result: EngineResult | None = None
        self._kmeans_cache: dict = {}  # first-frame clusterings, reused across edits
        self._draft_cache: dict = {}  # the same for one-frame drafts (kept apart: their tracks are one frame long)
        self._coverage_cache: dict = {}  # release rules: each moved object's rasterised coverage, reused across edits
        self._areas: dict[int, np.ndarray] = {}  # id -> per-frame area, from the last full update

    @property
    def init(self) -> str:
        """The K-means init across frames ("warm", "release" or "even"): ``rules.kmeans``."""
        return self.rules.kmeans

    @contextmanager
    def _computing(self) -> Iterator[None]:
        """One torch thread (small tensors, compiled loops) and the backend's loops (compiled or pure torch)."""
        with torch_threads(1), compiled_loops(self.backend != "torch"):
            yield

    # ------------------------------------------------------------------ main entry
    def update(self) -> EngineResult:
        """Bring renders and control points up to date with the scene."""
        with self._computing():
            return self._update()

    def _update(self) -> EngineResult:
        s = self.scene.validate()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inst = self.instance_map()
        t1 = time.perf_counter()
        timings["instances"] = (t1 - t0) * 1e3
        rendered, paths, movers = self._rendered(inst)
        t2 = time.perf_counter()
        timings["render_and_samples" if self._render.samples is not None else "render"] = (t2 - t1) * 1e3
        signal, areas = self._signal(rendered, inst, paths, s.scale)
        t3 = time.perf_counter()
        timings["points"] = (t3 - t2) * 1e3
        warnings = self._warnings(inst, signal, areas, paths, movers, list(range(s.num_frames)))
        timings["warnings"] = (time.perf_counter() - t3) * 1e3
        object_ids = [inst.id_of_mask.get(o.mask_index, 0) for o in s.objects]
        self._result = EngineResult(
            instance=rendered.instance, depth=rendered.depth, color=rendered.color, signal=signal,
            k=signal.points_per_object(), object_ids=object_ids, tracks=paths.tracks, timings=timings,
            warnings=warnings,
        )
        return self._result

    @property
    def result(self) -> EngineResult:
        return self._result if self._result is not None else self.update()

    def signal_for_scale(self, scale: float) -> ControlSignal:
        """The control signal with another scale factor (the scene is not changed)."""
        with self._computing():
            inst = self.instance_map()
            rendered, paths, _ = self._rendered(inst)
            return self._signal(rendered, inst, paths, scale)[0]

    def preview_frame(self, frame: int) -> FramePreview:
        """One frame of the scene as it is now: the same stages as :meth:`update` (paths, movers, render, control,
        warnings) on frames [0, frame] only (frame 0 is every track's reference), clustered cold (see FramePreview).

        For immediate feedback during a drag or a slider move; :meth:`update` gives the real thing."""
        with self._computing():
            t0 = time.perf_counter()
            s = self.scene.validate()
            frame = int(np.clip(frame, 0, s.num_frames - 1))
            inst = self.instance_map()
            paths = scene_paths(s, rows=[0, frame])
            movers = scene_movers(s, inst, paths.mover_tracks, kept_only=self.rules.render == "release")
            static_key = self._static_key()
            if self._render is not None and self._render.key == self._render_key(static_key):  # only K changed
                full = self._render.result
                two = RenderResult(*(torch.stack((t[0], t[frame])) for t in (full.instance, full.depth, full.color)))
            else:
                two = render_scene(s, inst, movers, paths.camera, 2,
                                   static=self._static_layer(inst, movers, static_key), backend=self.backend,
                                   rules=self.rules, cache=self._coverage_cache)
            t1 = time.perf_counter()
            one = RenderResult(two.instance[1:], two.depth[1:], two.color[1:])
            ids = sorted(inst.mask_of_id)
            area = one.areas(ids)[0] if ids else torch.zeros(0, dtype=torch.int64)
            rule = s.rule()
            moved = self._moved_ids(inst)
            # K as the full update would give it: the rule over the clip's areas (last full update's) and this one
            k_of = {i: rule(np.append(self._areas.get(i, np.zeros(0, np.int64)), int(a)).tolist(),
                            s.height * s.width, moved=i in moved) for i, a in zip(ids, area.tolist())}
            tracks_1 = ScenePaths([t[1:] for t in paths.tracks], [t[1:] for t in paths.mover_tracks], None)
            signal = self._control(one, inst, tracks_1, rule, "even", self._draft_cache, k_of=k_of)
            if len(self._draft_cache) > 512:
                self._draft_cache.clear()
            t2 = time.perf_counter()
            areas = {i: np.asarray([a]) for i, a in zip(ids, area.tolist())}
            warnings = self._warnings(inst, signal, areas, paths, movers, [frame], rows=[1])
        return FramePreview(frame, one.instance[0], one.depth[0], one.color[0], signal, sum(k_of.values()),
                            {"render": (t1 - t0) * 1e3, "points": (t2 - t1) * 1e3}, warnings)

    # ------------------------------------------------------------------ stages
    def instance_map(self) -> InstanceMap:
        """The first-frame instance map (every mask an instance; see levitor.control.instances). A scene with no
        masks yet has an empty one (nothing is controlled)."""
        s = self.scene
        key = digest(masks_hash(s.masks), [o.mask_index for o in s.objects], self.rules.instances)
        if self._instances is None or self._instances[0] != key:
            if s.masks:
                inst = assemble_instance_map(s.masks, [o.mask_index for o in s.objects], rule=self.rules.instances)
            else:
                inst = InstanceMap(np.zeros((s.height, s.width), np.int64), {}, {})
            self._instances = (key, inst)
        return self._instances[1]

    def _render_key(self, static_key: str) -> str:
        """What the rendered clip depends on: the static layer (its key: :meth:`_static_key`), the camera, the
        paths (not K or the scale)."""
        s = self.scene
        return digest(static_key, s.num_frames, s.interpolation, s.camera(), s.path_terms,
                      [(o.mask_index, o.path) for o in s.objects], s.camera_path)

    def _rendered(self, inst: InstanceMap) -> tuple[RenderResult, ScenePaths, list[Mover]]:
        s = self.scene
        static_key = self._static_key()  # hashes the image and depth: once per call
        key = self._render_key(static_key)
        if self._render is None or self._render.key != key:
            paths = scene_paths(s)
            movers = scene_movers(s, inst, paths.mover_tracks, kept_only=self.rules.render == "release")
            # the release's renderer composites frame by frame on the worker threads: each frame is sampled for
            # K-means there as soon as it is done (levitor's renderer has no such frames)
            sampler = None
            if self.rules.render == "release":
                sampler = FrameSamples(sorted(i for i in inst.mask_of_id if i > 0), s.num_frames, SAMPLE_STRIDE)
            result = render_scene(s, inst, movers, paths.camera, s.num_frames,
                                  static=self._static_layer(inst, movers, static_key), backend=self.backend,
                                  rules=self.rules,
                                  cache=self._coverage_cache, after_frame=sampler and sampler.add)
            self._render = _RenderedClip(key, result, paths, movers, sampler and sampler.result())
            self._control_cache = None
        return self._render.result, self._render.paths, self._render.movers

    def _static_key(self) -> str:
        s = self.scene
        return digest(self._instances[0], array_hash(s.depth), array_hash(s.image), self.rules.render)

    def _static_layer(self, inst: InstanceMap, movers: list[Mover], key: str) -> StaticLayer:
        """The static layer for the scene as it is now; ``key``: its :meth:`_static_key`."""
        if self._static is None or self._static[0] != key:  # paths don't change the static layer
            s = self.scene
            self._static = (key, static_layer(_tensor(s.image), _tensor(s.depth), _tensor(inst.ids), movers))
        return self._static[1]

    def _moved_ids(self, inst: InstanceMap) -> list[int]:
        return [inst.id_of_mask[o.mask_index] for o in self.scene.objects if o.mask_index in inst.id_of_mask]

    def _control(self, rendered: RenderResult, inst: InstanceMap, paths: ScenePaths, rule: KRule, init: str,
                 cache: dict, k_of: dict[int, int] | None = None, areas_out: dict | None = None,
                 samples: PixelSamples | None = None) -> ControlSignal:
        """The control stage of update and draft alike: K-means on the rendered masks; a moved object's points take
        its path depth (levitor's rule) or the rendered depth map's value (the release's)."""
        override = {}
        if self.rules.point_depth == "path":  # else the depth map at the point, as the release reads it
            for o, tr in zip(self.scene.objects, paths.tracks):
                if o.mask_index in inst.id_of_mask:
                    override[inst.id_of_mask[o.mask_index]] = torch.as_tensor(tr[:, 2])
        return control_from_masks(rendered.instance, rendered.depth, moved_ids=self._moved_ids(inst),
                                  depth_override=override, rule=rule, init=init, ids=sorted(inst.mask_of_id),
                                  cache=cache, k_of=k_of, areas_out=areas_out, samples=samples)

    def _signal(self, rendered: RenderResult, inst: InstanceMap, paths: ScenePaths,
                scale: float) -> tuple[ControlSignal, dict[int, np.ndarray]]:
        s = self.scene
        key = digest(self._render.key, s.lam, s.k_max, s.k_min_moved, scale, self.rules)
        if self._control_cache is not None and self._control_cache[0] == key:
            return self._control_cache[1], self._control_cache[2]
        areas: dict[int, np.ndarray] = {}
        signal = self._control(rendered, inst, paths, s.rule(scale), self.rules.kmeans, self._kmeans_cache,
                               areas_out=areas, samples=self._render.samples)
        self._areas = areas
        if len(self._kmeans_cache) > 512:  # bounded: forget old clusterings
            self._kmeans_cache.clear()
        if scale == s.scale:
            self._control_cache = (key, signal, areas)
        return signal, areas

    def _warnings(self, inst: InstanceMap, signal: ControlSignal, areas: dict[int, np.ndarray], paths: ScenePaths,
                  movers: list[Mover], frames: list[int], rows: list[int] | None = None) -> list[ControlWarning]:
        """Every object with no control points in some of ``frames`` (rows of ``paths`` and the movers' tracks:
        ``rows``, default all), and why (levitor.control.lost)."""
        s = self.scene
        rows = list(range(len(frames))) if rows is None else rows
        n = len(frames)
        H, W = s.height, s.width
        release = self.rules.render == "release"
        owner = {inst.id_of_mask[o.mask_index]: j for j, o in enumerate(s.objects) if o.mask_index in inst.id_of_mask}
        mover_of = {int(mv.instance[0]): mv for mv in movers if len(mv.instance)}
        subjects = []
        for j, o in enumerate(s.objects):
            if o.mask_index not in inst.id_of_mask:
                subjects.append(Subject(_object_name(o, j), j, 0, np.zeros(n, bool), np.zeros(n, np.int64),
                                        np.ones(n, bool), np.zeros(n, bool),
                                        mask_area=int(s.masks[o.mask_index].sum())))
        for i in sorted(inst.mask_of_id):
            cols = signal.instance == i
            controlled = signal.visible[:, cols].any(1).numpy() if bool(cols.any()) else np.zeros(n, bool)
            if controlled.all():
                continue
            lost = [r for r in range(n) if not controlled[r]]
            j = owner.get(i)
            mv = mover_of.get(i)
            far = np.zeros(n, bool)
            if release and j is not None:  # the release draws a moved object only where the scene is farther
                far = paths.mover_tracks[j][rows, 2] >= FAR_DEPTH
            in_view = np.ones(n, bool)
            if mv is not None:
                in_view[lost] = _lands_inside(mv.pixels, mv.depth, torch.as_tensor(mv.track), [rows[r] for r in lost],
                                              s, H, W)
            elif paths.camera is not None:  # a static instance moves with the camera
                pix = pixels_of(inst.ids == i)
                rr, cc = pix[:, 1].long(), pix[:, 0].long()
                in_view[lost] = _lands_inside(pix, _tensor(s.depth)[rr, cc].double(), torch.as_tensor(paths.camera),
                                              [rows[r] for r in lost], s, H, W)
            name = _object_name(s.objects[j], j) if j is not None else f"mask {inst.mask_of_id[i]} (not moved)"
            subjects.append(Subject(name, j, i, controlled, np.asarray(areas.get(i, np.zeros(n, np.int64))),
                                    in_view, far, k=int(cols.sum())))
        return control_warnings(subjects, frames, s.num_frames, MIN_AREA_FRACTION * H * W)

    # ------------------------------------------------------------------ views
    def cloud(self, max_points: int = MAX_POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frame-0 point cloud for a 3D view: xyz (N, 3), rgb (N, 3) uint8, instance id (N,)."""
        s = self.scene
        inst = self.instance_map().ids
        H, W = inst.shape
        rows, cols = np.mgrid[0:H, 0:W]
        n = H * W
        idx = np.arange(n)
        if n > max_points:
            idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        pix = torch.from_numpy(np.stack([cols.reshape(-1)[idx], rows.reshape(-1)[idx]], 1).astype(np.float64))
        xyz = lift(pix, torch.from_numpy(s.depth.reshape(-1)[idx].astype(np.float64)), s.camera()).numpy()
        return xyz, s.image.reshape(-1, 3)[idx], inst.reshape(-1)[idx]

    def object_paths_3d(self) -> list[np.ndarray]:
        """Each selected object's anchor path in camera space, (F, 3): it projects onto the path as drawn."""
        with self._computing():
            _, paths, _ = self._rendered(self.instance_map())
        s = self.scene
        return [object_path_3d(t, s.camera(), s.anchor_depth(i), s.path_terms) for i, t in enumerate(paths.tracks)]

    def write_preview(self, path: str | Path, fps: int = 8) -> Path:
        """The instant "what moves where" video (mp4 or gif by suffix)."""

        return write_video(self.result.color.numpy(), path, fps=fps)


def scene_movers(scene: Scene, inst: InstanceMap, tracks: list[np.ndarray] | None = None,
                 kept_only: bool = False) -> list[Mover]:
    """The selected objects as groups of pixels to move, each with its per-frame track in the release's terms
    (``tracks``; default: the scene's paths converted, :func:`scene_paths`). An object whose mask the instance map
    dropped moves its raw mask, or nothing with ``kept_only`` (the release renders no such object)."""
    tracks = scene_paths(scene).mover_tracks if tracks is None else tracks
    image = _tensor(scene.image)
    depth = _tensor(scene.depth)
    ids = _tensor(inst.ids)
    movers = []
    for obj, track in zip(scene.objects, tracks):
        i = inst.id_of_mask.get(obj.mask_index)
        if i is None and kept_only:
            continue
        mask = scene.masks[obj.mask_index] if i is None else (inst.ids == i)
        pix = pixels_of(mask)
        if pix.shape[0] == 0:
            continue
        rows, cols = pix[:, 1].long(), pix[:, 0].long()
        movers.append(Mover(
            pixels=pix, depth=depth[rows, cols].to(torch.float64), instance=ids[rows, cols],
            color=image[rows, cols], track=torch.as_tensor(track),
        ))
    return movers


def render_scene(
    scene: Scene,
    inst: InstanceMap,
    movers: list[Mover],
    camera: np.ndarray | None,
    num_frames: int,
    static: StaticLayer | None = None,
    backend: str = "auto",
    rules: str | ControlRules = "levitor",
    cache: dict | None = None,
    after_frame: Callable[[int, np.ndarray], None] | None = None,
) -> RenderResult:
    """The render stage: move the movers along their (release-terms) tracks and render ``num_frames`` frames (by
    ``rules.render``: levitor's per-pixel occlusion, or the release's per-object compositing); ``camera``: the
    camera's release-terms track, or None; ``cache`` and ``after_frame``: the release renderer's, see
    :func:`levitor.motion.release_render.render_release` (levitor's renderer ignores them)."""
    release = ControlRules.named(rules).render == "release"
    cam = None if camera is None else torch.as_tensor(camera)
    if release:
        return render_release(_tensor(scene.image), _tensor(scene.depth), _tensor(inst.ids), movers,
                              len(scene.objects), scene.camera(), num_frames, cam, static=static, cache=cache,
                              after_frame=after_frame)
    return render(_tensor(scene.image), _tensor(scene.depth), _tensor(inst.ids),
                  movers, scene.camera(), num_frames, cam, static=static, backend=backend)


def _lands_inside(pixels: torch.Tensor, depth: torch.Tensor, track: torch.Tensor, rows: list[int], scene: Scene,
                  H: int, W: int) -> np.ndarray:
    """(len(rows),) whether any of the pixels, moved along ``track`` to each of ``rows``, falls inside the image."""
    xy, _ = move(pixels.double(), depth.double(), track.double()[[0, *rows]], scene.camera())
    col, row = torch.floor(xy[1:, :, 0] + 0.5), torch.floor(xy[1:, :, 1] + 0.5)  # the renderer's pixel of a point
    return ((col >= 0) & (col < W) & (row >= 0) & (row < H)).any(1).numpy()


def _object_name(obj, index: int) -> str:
    return f"'{obj.name}'" if obj.name else f"object {index + 1}"


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory; a read-only array (e.g. from a PIL image) is copied, since torch
    tensors are always writable."""
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def warm_up() -> float:
    """Run one tiny update so the compiled kernels are loaded (numba's on-disk cache still costs ~1 s to load in a
    fresh process): a Studio opened on a photo calls it in the background while the user draws the first mask.
    Returns the seconds it took."""
    t0 = time.perf_counter()

    image = np.zeros((24, 32, 3), np.uint8)
    mask = np.zeros((24, 32), bool)
    mask[8:16, 8:16] = True
    scene = Scene(image=image, depth=np.full((24, 32), 0.5, np.float32), masks=[mask, ~mask], num_frames=2)
    obj = scene.select(0)
    obj.path += [PathPoint(16.0, 12.0, 0.4), PathPoint(20.0, 12.0, 0.25)]  # 3 points: the spline too
    Engine(scene).update()
    return time.perf_counter() - t0
