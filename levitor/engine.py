"""Scene -> per-frame renders and control signal, recomputing only what an edit changed.

The Studio mutates a :class:`~levitor.scene.Scene` and calls :meth:`Engine.update` after each edit:
a path edit re-renders (lift, move, z-buffer) and re-clusters; a scale-factor change only re-clusters.
The same class serves the CLI and scripts (``Engine(scene).update().signal``).

``Engine(scene, rules="release")`` builds the control exactly as the official release does (instance assembly,
occlusion and hole filling, K-means, the depth value of a point: :class:`levitor.control.rules.ControlRules`);
generation with the released weights uses it. The default, levitor's own rules, keeps points temporally stable
for the Studio's live view.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from levitor._util.hashing import array_hash, digest, masks_hash
from levitor._util.threads import torch_threads
from levitor.control.instances import InstanceMap, assemble_instance_map
from levitor.control.points import control_from_masks
from levitor.control.rules import ControlRules
from levitor.control.signal import ControlSignal
from levitor.motion.lift import interpolate_path, lift, object_path_3d
from levitor.motion.release_render import render_release
from levitor.motion.render import Mover, RenderResult, StaticLayer, pixels_of, render, static_layer
from levitor.scene import Scene


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


@dataclass
class EngineResult:
    """What one update produced; tensors are CPU."""

    instance: torch.Tensor  # (F, H, W) int64 rendered instance ids, 0 = uncontrolled
    depth: torch.Tensor  # (F, H, W) float32 rendered scene depth
    color: torch.Tensor  # (F, H, W, 3) uint8 preview frames
    signal: ControlSignal
    k: dict[int, int]  # instance id -> number of control points
    object_ids: list[int]  # instance id of each scene.objects[i] (0 if its mask was dropped as too small)
    tracks: list[np.ndarray]  # (F, 3) per-frame (x, y, depth) of each object's path
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage of this update

    def select_frames(self, index: torch.Tensor) -> EngineResult:
        """The result at the given frames only (to sit beside a model's video that has fewer frames)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, instance=self.instance[index], depth=self.depth[index], color=self.color[index],
                       signal=self.signal.select_frames(index), tracks=[t[index.numpy()] for t in self.tracks])


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
        self.backend = backend  # renderer: "auto", "numba", "torch" or "pytorch3d" (see motion.render.render)
        self._instances: tuple[str, InstanceMap] | None = None
        self._static: tuple[str, StaticLayer] | None = None
        self._render: tuple[str, RenderResult, list[np.ndarray]] | None = None
        self._control: tuple[str, ControlSignal] | None = None
        self._result: EngineResult | None = None
        self._kmeans_cache: dict = {}  # first-frame clusterings, reused across edits
        self._draft_cache: dict = {}  # the same for one-frame drafts (kept apart: their tracks are one frame long)
        self._coverage_cache: dict = {}  # release rules: each moved object's rasterised coverage, reused across edits
        self._areas: dict[int, np.ndarray] = {}  # id -> per-frame area, from the last full update

    @property
    def init(self) -> str:
        """The K-means init across frames ("warm", "release" or "even"): ``rules.kmeans``."""
        return self.rules.kmeans

    # ------------------------------------------------------------------ main entry
    def update(self) -> EngineResult:
        """Bring renders and control points up to date with the scene."""
        with torch_threads(1):
            return self._update()

    def _update(self) -> EngineResult:
        s = self.scene.validate()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inst = self.instance_map()
        t1 = time.perf_counter()
        timings["instances"] = (t1 - t0) * 1e3
        rendered, tracks = self._rendered(inst)
        t2 = time.perf_counter()
        timings["render"] = (t2 - t1) * 1e3
        signal = self._signal(rendered, inst, tracks, s.scale)
        timings["points"] = (time.perf_counter() - t2) * 1e3
        object_ids = [inst.id_of_mask.get(o.mask_index, 0) for o in s.objects]
        self._result = EngineResult(
            instance=rendered.instance, depth=rendered.depth, color=rendered.color, signal=signal,
            k=signal.points_per_object(), object_ids=object_ids, tracks=tracks, timings=timings,
        )
        return self._result

    @property
    def result(self) -> EngineResult:
        return self._result if self._result is not None else self.update()

    def signal_for_scale(self, scale: float) -> ControlSignal:
        """The control signal with another scale factor (the scene is not changed)."""
        inst = self.instance_map()
        rendered, tracks = self._rendered(inst)
        return self._signal(rendered, inst, tracks, scale)

    # ------------------------------------------------------------------ stages
    def instance_map(self) -> InstanceMap:
        s = self.scene
        key = digest(masks_hash(s.masks), [o.mask_index for o in s.objects], self.rules.instances)
        if self._instances is None or self._instances[0] != key:
            inst = assemble_instance_map(s.masks, [o.mask_index for o in s.objects], rule=self.rules.instances)
            for o in s.objects:
                if o.mask_index not in inst.id_of_mask:
                    warnings.warn(
                        f"object '{o.name}' (mask {o.mask_index}) covers at most 0.1% of the image and gets "
                        "no control points; select a larger mask", stacklevel=3,
                    )
            self._instances = (key, inst)
        return self._instances[1]

    def _rendered(self, inst: InstanceMap) -> tuple[RenderResult, list[np.ndarray]]:
        s = self.scene
        static_key = digest(self._instances[0], array_hash(s.depth), array_hash(s.image), self.rules.render)
        key = digest(static_key, s.num_frames, s.interpolation, s.camera(),
                      [(o.mask_index, o.path) for o in s.objects], s.camera_path, self.rules.render)
        if self._render is None or self._render[0] != key:
            tracks = [interpolate_path(o.path, s.num_frames, s.interpolation) for o in s.objects]
            movers = scene_movers(s, inst, tracks, kept_only=self.rules.render == "release")
            result = render_scene(s, inst, tracks, movers=movers, static=self._static_layer(inst, movers, static_key),
                                  backend=self.backend, rules=self.rules, cache=self._coverage_cache)
            self._render = (key, result, tracks)
            self._control = None
        return self._render[1], self._render[2]

    def _static_layer(self, inst: InstanceMap, movers: list[Mover], key: str) -> StaticLayer:
        if self._static is None or self._static[0] != key:  # paths don't change the static layer
            s = self.scene
            self._static = (key, static_layer(
                _tensor(s.image), _tensor(s.depth), _tensor(inst.ids), movers))
        return self._static[1]

    def preview_frame(self, frame: int) -> FramePreview:
        """One frame of the scene as it is now: render it alone and cluster its masks (see FramePreview).

        For immediate feedback during a drag or a slider move; :meth:`update` gives the real thing."""
        with torch_threads(1):
            t0 = time.perf_counter()
            s = self.scene.validate()
            frame = int(np.clip(frame, 0, s.num_frames - 1))
            inst = self.instance_map()
            rows = [0, frame]  # frame 0 is every track's reference
            tracks = [interpolate_path(o.path, s.num_frames, s.interpolation)[rows] for o in s.objects]
            movers = scene_movers(s, inst, tracks, kept_only=self.rules.render == "release")
            static = self._static_layer(inst, movers, digest(self._instances[0], array_hash(s.depth),
                                                              array_hash(s.image), self.rules.render))
            camera = None
            if s.camera_path:
                camera = torch.as_tensor(interpolate_path(s.camera_path, s.num_frames, s.interpolation)[rows])
            if self.rules.render == "release":
                two = render_release(_tensor(s.image), _tensor(s.depth), _tensor(inst.ids), movers,
                                     len(s.objects), s.camera(), 2, camera, static=static, cache=self._coverage_cache)
            else:
                two = render(_tensor(s.image), _tensor(s.depth), _tensor(inst.ids), movers,
                             s.camera(), 2, camera, static=static, backend=self.backend)
            t1 = time.perf_counter()
            moved, override = [], {}
            for o, tr in zip(s.objects, tracks):
                i = inst.id_of_mask.get(o.mask_index)
                if i is not None:
                    moved.append(i)
                    if self.rules.point_depth == "path":
                        override[i] = torch.as_tensor(tr[1:, 2])
            rule = s.rule()
            ids = sorted(inst.mask_of_id)
            area = torch.bincount(two.instance[1].reshape(-1).clamp(min=0), minlength=max(ids, default=0) + 1)
            # K as the full update would give it: the rule over the clip's areas (last full update's) and this one
            k_of = {i: rule(np.append(self._areas.get(i, np.zeros(0, np.int64)), int(area[i])).tolist(),
                            s.height * s.width, moved=i in moved) for i in ids}
            signal = control_from_masks(two.instance[1:], two.depth[1:], moved_ids=moved, depth_override=override,
                                        rule=rule, init="even", ids=ids, k_of=k_of,
                                        cache=self._draft_cache)
            if len(self._draft_cache) > 512:
                self._draft_cache.clear()
            t2 = time.perf_counter()
        return FramePreview(frame, two.instance[1], two.depth[1], two.color[1], signal, sum(k_of.values()),
                            {"render": (t1 - t0) * 1e3, "points": (t2 - t1) * 1e3})

    def _signal(self, rendered: RenderResult, inst: InstanceMap, tracks: list[np.ndarray], scale: float):
        s = self.scene
        key = digest(self._render[0], s.lam, s.k_max, s.k_min_moved, scale, self.rules)
        if self._control is not None and self._control[0] == key:
            return self._control[1]
        moved, override = [], {}
        for o, tr in zip(s.objects, tracks):
            i = inst.id_of_mask.get(o.mask_index)
            if i is not None:
                moved.append(i)
                if self.rules.point_depth == "path":  # else the depth map at the point, as the release reads it
                    override[i] = torch.as_tensor(tr[:, 2])
        rule = s.rule(scale)
        areas: dict[int, np.ndarray] = {}
        signal = control_from_masks(
            rendered.instance, rendered.depth, moved_ids=moved, depth_override=override, rule=rule,
            init=self.rules.kmeans, ids=sorted(inst.mask_of_id), cache=self._kmeans_cache, areas_out=areas,
        )
        self._areas = areas
        if len(self._kmeans_cache) > 512:  # bounded: forget old clusterings
            self._kmeans_cache.clear()
        if scale == s.scale:
            self._control = (key, signal)
        return signal

    # ------------------------------------------------------------------ views
    def cloud(self, max_points: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        """Each selected object's 3D reference path, (F, 3) camera-space points."""
        _, tracks = self._rendered(self.instance_map())
        return [object_path_3d(t, self.scene.camera()) for t in tracks]

    def write_preview(self, path: str | Path, fps: int = 8) -> Path:
        """The instant "what moves where" video (mp4 or gif by suffix)."""
        from levitor.viz.video import write_video

        return write_video(self.result.color.numpy(), path, fps=fps)


def scene_movers(scene: Scene, inst: InstanceMap, tracks: list[np.ndarray], kept_only: bool = False) -> list[Mover]:
    """The selected objects as groups of pixels to move, each with its per-frame track. An object whose mask the
    instance map dropped moves its raw mask, or nothing with ``kept_only`` (the release renders no such object)."""
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
    tracks: list[np.ndarray],
    movers: list[Mover] | None = None,
    static: StaticLayer | None = None,
    backend: str = "auto",
    rules: str | ControlRules = "levitor",
    cache: dict | None = None,
) -> RenderResult:
    """Lift the selected objects, move them along their tracks and render every frame (by ``rules.render``:
    levitor's per-pixel occlusion, or the release's per-object compositing; ``cache``: the release renderer's,
    see :func:`levitor.motion.release_render.render_release`)."""
    release = ControlRules.named(rules).render == "release"
    movers = scene_movers(scene, inst, tracks, kept_only=release) if movers is None else movers
    camera = None
    if scene.camera_path:
        camera = torch.as_tensor(interpolate_path(scene.camera_path, scene.num_frames, scene.interpolation))
    if release:
        return render_release(_tensor(scene.image), _tensor(scene.depth), _tensor(inst.ids), movers,
                              len(scene.objects), scene.camera(), scene.num_frames, camera, static=static, cache=cache)
    return render(_tensor(scene.image), _tensor(scene.depth), _tensor(inst.ids),
                  movers, scene.camera(), scene.num_frames, camera, static=static, backend=backend)





def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory; a read-only array (e.g. from a PIL image) is copied, since torch
    tensors are always writable."""
    return torch.from_numpy(a if a.flags.writeable else a.copy())



def warm_up() -> float:
    """Run one tiny update so the compiled kernels are loaded (numba's on-disk cache still costs ~1 s to load in a
    fresh process): a Studio opened on a photo calls it in the background while the user draws the first mask.
    Returns the seconds it took."""
    t0 = time.perf_counter()
    from levitor.scene import PathPoint

    image = np.zeros((24, 32, 3), np.uint8)
    mask = np.zeros((24, 32), bool)
    mask[8:16, 8:16] = True
    scene = Scene(image=image, depth=np.full((24, 32), 0.5, np.float32), masks=[mask, ~mask], num_frames=2)
    obj = scene.select(0)
    obj.path += [PathPoint(16.0, 12.0, 0.4), PathPoint(20.0, 12.0, 0.25)]  # 3 points: the spline too
    Engine(scene).update()
    return time.perf_counter() - t0
