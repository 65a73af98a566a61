"""Control points: how many per object (the K rule), where (K-means on each frame's mask), and their depth.

Works on per-frame instance maps, whether rendered from a scene (inference) or read from a video's masks
(training data): see :func:`control_from_masks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from levitor._util.hashing import bytes_hash
from levitor._util.jit import numba_on
from levitor.control import kernels
from levitor.control.frame_samples import PixelSamples
from levitor.control.krule import KRule
from levitor.control.release_kmeans import MAX_ITER, TOL, TrackJob, release_tracks
from levitor.control.rules import KMEANS
from levitor.control.signal import ControlSignal
from levitor.depth import disparity_from_depth

INITS = KMEANS  # K-means across frames: "warm", "release" or "even" (see control_from_masks)
KMEANS_MIN_SHIFT = 0.25  # pixels^2: stop once the centres move less than this in total (they are truncated to ints)
SAMPLE_STRIDE = 10  # K-means runs on every 10th mask pixel (row-major), as the release; tiny frames need 1


def release_init(samples: torch.Tensor, k: int) -> torch.Tensor:
    """The release's K-means init: samples at indices L//2, L//2 + L, ... with L = n // k. samples: (n, 2)."""
    n = samples.shape[0]
    step = n // k
    return samples[step // 2 + step * torch.arange(k)]


def kmeans(
    x: torch.Tensor,
    valid: torch.Tensor,
    init: torch.Tensor,
    k_valid: torch.Tensor,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    min_shift: float = 0.0,
    return_labels: bool = False,
    use_kernel: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Batched Lloyd's K-means (sklearn's algorithm and stopping rule), padded, for 2-D pixel coordinates.

    x: (B, N, 2) samples, valid: (B, N) which are real; init: (B, K, 2) initial centres, k_valid: (B, K)
    which centres are used (a prefix of each row: objects differ in K). Iteration stops when the summed squared
    centre shift is at most :func:`kmeans_tolerance` (``tol`` times the mean per-feature variance, sklearn's rule,
    but at least ``min_shift`` pixels^2: points are truncated to whole pixels, so finer convergence changes
    nothing the model sees). Ties go to the lower centre index, as in sklearn; empty clusters move, in centre
    order, each to the sample farthest from its centre (that sample's distance then counts as 0).
    Returns centres (B, K, 2) float64, labels (B, N) (-1 for padding; None unless ``return_labels``) and
    inertia (B,) float64.

    One computation, two implementations: this torch one and the compiled loop
    (:func:`levitor.control.kernels.lloyd`, used with ``use_kernel`` when numba is on) do the same float64
    operations in the same order, so on pixel coordinates (whole numbers: every sum is exact) they give
    bit-identical centres, and on any input the same up to float rounding.
    """
    B, _, _ = x.shape
    if use_kernel and numba_on() and not return_labels:
        return _kmeans_compiled(x, valid, init, k_valid, max_iter, tol, min_shift)
    xd = x.to(torch.float64)
    w = valid.to(torch.float64)
    n_valid = w.sum(1)
    tol_abs = kmeans_tolerance((xd * w[..., None]).sum(1), (xd * xd * w[..., None]).sum(1), n_valid, tol, min_shift)
    # padding samples are NaN: their distances are NaN, so they never join a cluster
    xn = torch.where(valid[..., None], xd, torch.full_like(xd, float("nan")))
    xs = xn.permute(0, 2, 1).contiguous()  # (B, 2, N): distances come out as (B, K, N), fast to reduce over K
    xz = xd * w[..., None]  # padding as 0 for the sums
    c = init.to(torch.float64).clone()
    far = torch.tensor(1e9, dtype=torch.float64)  # unused centres sit far away, so no sample picks them

    def assign(xs_: torch.Tensor, centres: torch.Tensor, kv: torch.Tensor):
        cc = torch.where(kv[..., None], centres, far)
        dx = xs_[:, None, 0, :] - cc[:, :, 0, None]
        dy = xs_[:, None, 1, :] - cc[:, :, 1, None]
        d = dx * dx + dy * dy  # (b, K, N), as the compiled loop: two products, one sum, no fused multiply-add
        min_d = d.amin(1)
        owner = d <= min_d[:, None]  # (b, K, N); NaN padding is never <=
        if bool((owner.sum(1) > 1).any()):  # exact ties: keep the first centre only
            owner &= owner.cumsum(1) == 1
        return min_d, owner

    rows = torch.arange(B)  # the batch rows still iterating; converged rows drop out
    xr, xsr, kv, tr = xz, xs, k_valid, tol_abs
    for _ in range(max_iter):
        old = c[rows]
        min_d, owner = assign(xsr, old, kv)
        of = owner.to(torch.float64)
        counts = of.sum(2)  # (b, K)
        sums = torch.bmm(of, xr)  # (b, K, 2): whole numbers for pixel samples, so exact in any order
        new_c = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], old)
        empty = (counts == 0) & kv
        if bool(empty.any()):  # relocate each empty cluster, in order, to the sample farthest from its centre
            for r in torch.nonzero(empty.any(1)).squeeze(1).tolist():
                dist = min_d[r].nan_to_num(-1.0)
                for j in torch.nonzero(empty[r]).squeeze(1).tolist():
                    i = int(dist.argmax())
                    new_c[r, j] = xr[r, i]
                    dist[i] = 0.0
        per_centre = ((new_c - old) ** 2).sum(-1).masked_fill(~kv, 0)
        shift = per_centre.cumsum(-1)[:, -1]  # summed centre by centre, in order, as the compiled loop
        c[rows] = new_c
        go_on = shift > tr
        if not bool(go_on.any()):
            break
        if not bool(go_on.all()):
            rows = rows[go_on]
            xr, xsr, kv, tr = xr[go_on], xsr[go_on], kv[go_on], tr[go_on]
    min_d, owner = assign(xs, c, k_valid)
    labels = torch.where(valid, owner.to(torch.int8).argmax(1), -1) if return_labels else None
    inertia = min_d.nan_to_num(0.0).sum(1)
    return c, labels, inertia


def kmeans_tolerance(sums: torch.Tensor, squares: torch.Tensor, n: torch.Tensor, tol: float = TOL,
                     min_shift: float = 0.0) -> torch.Tensor:
    """The stopping threshold of :func:`kmeans`, per row: ``tol`` times the mean per-feature variance, at least
    ``min_shift``. sums, squares: (B, 2) float64 sums of the samples and of their squares; n: (B,) counts.

    The variance comes from sums (sum of squares minus squared sum over n), not from deviations from the mean:
    on pixel coordinates those sums are exact in any order, so the compiled loop
    (:func:`levitor.control.kernels.tolerance`, the same formula) and torch get the same threshold to the bit."""
    n = n.to(torch.float64).clamp(min=1)
    ss = (squares[:, 0] - sums[:, 0] * sums[:, 0] / n) + (squares[:, 1] - sums[:, 1] * sums[:, 1] / n)
    return torch.clamp(tol * ss / (2 * n), min=min_shift)


def _kmeans_compiled(x, valid, init, k_valid, max_iter, tol, min_shift):
    """The same algorithm row by row in the compiled loop (float64 throughout)."""
    c = init.to(torch.float64).clone()
    inertia = torch.zeros(x.shape[0], dtype=torch.float64)
    for b in range(x.shape[0]):
        xb = x[b][valid[b]].to(torch.float64).contiguous().numpy()
        if xb.shape[0] == 0:
            continue
        k = int(k_valid[b].sum())
        cb = c[b, :k].contiguous().numpy()
        inertia[b] = kernels.lloyd(xb, cb, max_iter, kernels.tolerance(xb, tol, min_shift))
        c[b, :k] = torch.from_numpy(cb)
    return c, None, inertia


@dataclass
class _Object:
    id: int
    k: int
    moved: bool
    k_unscaled: int = 0  # K before the user's scale factor (the release's sample-count rule uses it)


def control_from_masks(
    instance: torch.Tensor,
    depth: torch.Tensor,
    moved_ids: Iterable[int] = (),
    depth_override: Mapping[int, torch.Tensor] | None = None,
    rule: KRule | None = None,
    init: str = "warm",
    sample_stride: int = SAMPLE_STRIDE,
    ids: Iterable[int] | None = None,
    cache: dict | None = None,
    use_kernel: bool = True,
    k_of: Mapping[int, int] | None = None,
    areas_out: dict | None = None,
    samples: PixelSamples | None = None,
) -> ControlSignal:
    """Control points of every instance in per-frame instance maps.

    instance: (F, H, W) int64 instance ids (0 = no control); depth: (F, H, W) scene depth (smaller = nearer).
    moved_ids: objects the user moved (they get at least ``rule.k_min`` points).
    depth_override: id -> (F,) scene depth to write for that object's points instead of sampling the depth
        map (levitor's rule for a moved object: its path depth; the release reads the map at the point, so a point
        that lands on an occluder takes the occluder's depth).
    init: "warm" starts each frame's K-means from the previous frame's centres, shifted with the object's
        centroid, so points stay temporally stable; "release" is the official code's K-means as it runs
        (:mod:`levitor.control.release_kmeans`: its init across frames, sklearn's float32 iteration, and a frame
        with fewer samples than the K before the scale factor gets no points); "even" starts every frame from
        its evenly spaced samples (levitor's iteration; the one-frame drafts use it).
    sample_stride: K-means runs on every n-th mask pixel in row-major order (the release's: SAMPLE_STRIDE).
    ids: the instance ids to consider (default: every id > 0 present).
    cache: a dict kept by the caller across calls. Clusterings are looked up there by their samples: an
        object whose samples did not change in any frame reuses its whole track, and a first frame seen
        before its clustering, so an edit that moves one object does not re-cluster the others from scratch.
        The answer is the same with or without it.
    k_of: id -> K to use instead of the rule (e.g. the K of a whole clip when only one of its frames is given).
    areas_out: if given, filled with id -> (F,) pixel area per frame (what the K rule saw).
    samples: these maps' samples, already taken (:class:`levitor.control.frame_samples.FrameSamples`: the release's
        renderer samples each frame as it finishes it); used by the compiled loops where their ids and stride are
        these, else the maps are sampled here.
    Returns a ControlSignal with tracks ordered by instance id, K tracks per object.
    """
    _check_masks(instance, depth, init, sample_stride)
    instance = instance.to(torch.int64)
    F, H, W = instance.shape
    if ids is None:  # every id present (bincount: much faster than torch.unique on a whole clip)
        ids = torch.nonzero(torch.bincount(instance.reshape(-1).clamp(min=0))).squeeze(1)
    all_ids = sorted(int(i) for i in torch.as_tensor(ids, dtype=torch.int64) if int(i) > 0)
    compiled = use_kernel and numba_on() and bool(all_ids)
    if samples is not None and not (samples.ids == all_ids and samples.stride == sample_stride
                                    and samples.areas.shape[0] == F):
        samples = None
    objects, per_object = _objects(instance.numpy(), all_ids, rule or KRule(), {int(i) for i in moved_ids},
                                   sample_stride, compiled, k_of, areas_out, samples)
    if not objects:
        return _empty_signal(F, H, W)

    # 1. cluster every object's samples in every frame: centres (F, B, kk, 2) as (row, col), visibility (F, B)
    kk = max(o.k for o in objects)
    B = len(objects)
    centres = torch.zeros(F, B, kk, 2, dtype=torch.float64)
    vis = torch.zeros(F, B, dtype=torch.bool)
    k_valid = torch.arange(kk)[None, :] < torch.tensor([o.k for o in objects])[:, None]  # (B, kk)
    if init == "release":
        _cluster_release(per_object, objects, centres, vis, compiled, cache)
    elif compiled:
        _cluster_compiled(per_object, objects, centres, vis, init, cache)
    else:
        _cluster_batched(per_object, objects, centres, vis, k_valid, init, cache)

    # 2. flatten to P tracks ordered by id, then cluster index
    sel = k_valid.reshape(-1)
    pts = centres.reshape(F, B * kk, 2)[:, sel].flip(-1)  # (row, col) -> (x, y)
    visible = vis[:, :, None].expand(F, B, kk).reshape(F, B * kk)[:, sel]
    instance_of_track = torch.tensor([o.id for o in objects])[:, None].expand(B, kk).reshape(-1)[sel]

    # 3. each point's depth: sampled from the map at the point, or the object's own (depth_override)
    sampled = _point_depths(depth, pts, instance_of_track, depth_override)
    values = disparity_from_depth(sampled.to(torch.float32))
    values = torch.where(visible, values, torch.zeros_like(values))
    return ControlSignal(points=pts.to(torch.float32), depth=values, instance=instance_of_track,
                         visible=visible, height=H, width=W)


def _check_masks(instance: torch.Tensor, depth: torch.Tensor, init: str, sample_stride: int) -> None:
    if instance.ndim != 3:
        raise ValueError(f"instance must be (F, H, W), got shape {tuple(instance.shape)}")
    if tuple(depth.shape) != tuple(instance.shape):
        raise ValueError(f"depth {tuple(depth.shape)} and instance {tuple(instance.shape)} must have one shape")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if sample_stride < 1:
        raise ValueError(f"sample_stride must be >= 1, got {sample_stride}")


def _objects(inst_np: np.ndarray, all_ids: list[int], rule: KRule, moved: set[int], sample_stride: int,
             compiled: bool, k_of: Mapping[int, int] | None, areas_out: dict | None,
             taken: PixelSamples | None = None) -> tuple[list[_Object], list]:
    """The objects that get points (K > 0 by the rule, or by ``k_of``) and their K-means samples per frame
    (``taken``: sampled already, for the compiled loops)."""
    H, W = inst_np.shape[1:]
    unscaled = replace(rule, scale=1.0)
    if not compiled and all_ids and max(all_ids) < 2**15 and int(inst_np.min()) >= -(2**15):
        inst_np = inst_np.astype(np.int16)  # a quarter of the memory traffic for the per-id passes
    if compiled and taken is not None:
        all_areas, flat, offsets = taken.areas, taken.flat, taken.offsets
    elif compiled:  # two compiled passes over the maps for every id at once
        all_areas, flat, offsets = kernels.sample_pixels(inst_np, all_ids, sample_stride)
    objects, per_object = [], []
    for j, i in enumerate(all_ids):
        if compiled:
            areas = all_areas[:, j]
            samples = (flat, offsets[j])  # this object's frames, one after another
        else:
            samples, areas = _sample_pixels(inst_np, i, sample_stride)
        k = rule(areas.tolist(), H * W, moved=i in moved)
        k_unscaled = unscaled(areas.tolist(), H * W, moved=i in moved)
        if areas_out is not None:
            areas_out[i] = np.asarray(areas)
        if k_of is not None and i in k_of:
            k = k_unscaled = int(k_of[i]) if int(np.max(areas)) > 0 else 0
        if k > 0:
            objects.append(_Object(i, k, i in moved, k_unscaled))
            per_object.append(samples)
    return objects, per_object


def _point_depths(depth: torch.Tensor, pts: torch.Tensor, instance_of_track: torch.Tensor,
                  depth_override: Mapping[int, torch.Tensor] | None) -> torch.Tensor:
    """(F, P) float64 scene depth of each point: the map's at the point, or the object's override."""
    F, H, W = depth.shape
    rows = pts[..., 1].long().clamp(0, H - 1)
    cols = pts[..., 0].long().clamp(0, W - 1)
    fidx = torch.arange(F)[:, None].expand_as(rows)
    sampled = depth[fidx, rows, cols].to(torch.float64)
    for i, d in (depth_override or {}).items():
        cols_i = instance_of_track == int(i)
        if bool(cols_i.any()):
            d = torch.as_tensor(d, dtype=torch.float64).reshape(F, 1)
            sampled[:, cols_i] = d.expand(F, int(cols_i.sum()))
    return sampled


def _cluster_batched(per_object, objects, centres, vis, k_valid, init, cache) -> None:
    """The per-frame loop of :func:`control_from_masks` in torch: each frame's objects as padded batches."""
    F, B, kk = centres.shape[0], centres.shape[1], centres.shape[2]
    prev: list[torch.Tensor | None] = [None] * B  # last frame's samples of each object, None if not visible
    for f in range(F):
        samples = [per_object[b][f] for b in range(B)]  # (row, col) of each object's samples in frame f
        todo, inits, keys = [], [], {}
        for b, s in enumerate(samples):
            k = objects[b].k
            if s.shape[0] < k:  # too few pixels for K clusters: no points in this frame (the release's rule)
                continue
            vis[f, b] = True
            p = prev[b] if init == "warm" else None
            if p is not None and p.shape == s.shape and torch.equal(p, s):
                centres[f, b] = centres[f - 1, b]  # the same pixels as last frame: the same answer
                continue
            if cache is not None and p is None:
                keys[b] = (k, init, bytes_hash(s.numpy().tobytes()))
                if keys[b] in cache:
                    centres[f, b, :k] = cache[keys[b]]
                    continue
            todo.append(b)
            if p is not None:  # warm start, moved with the object (means as sum / n, as the compiled loop)
                inits.append(centres[f - 1, b, :k] + (s.sum(0) / s.shape[0] - p.sum(0) / p.shape[0]))
            else:
                inits.append(release_init(s, k))
        # batch objects of similar sample counts together: padding a small object to a large one's size
        # would multiply its work
        todo_sorted = sorted(range(len(todo)), key=lambda j: samples[todo[j]].shape[0])
        groups: list[list[int]] = []
        for j in todo_sorted:
            if groups and samples[todo[j]].shape[0] <= 2 * samples[todo[groups[-1][0]]].shape[0]:
                groups[-1].append(j)
            else:
                groups.append([j])
        for group in groups:
            bs = [todo[j] for j in group]
            n_max = max(samples[b].shape[0] for b in bs)
            x = torch.zeros(len(bs), n_max, 2, dtype=torch.float64)
            valid = torch.zeros(len(bs), n_max, dtype=torch.bool)
            init_c = torch.zeros(len(bs), kk, 2, dtype=torch.float64)
            for r, (j, b) in enumerate(zip(group, bs)):
                n = samples[b].shape[0]
                x[r, :n] = samples[b]
                valid[r, :n] = True
                init_c[r, : objects[b].k] = inits[j]
            c, _, _ = kmeans(x, valid, init_c, k_valid[bs], min_shift=KMEANS_MIN_SHIFT)
            centres[f, bs] = c
            for r, b in enumerate(bs):
                if b in keys:
                    cache[keys[b]] = c[r, : objects[b].k].clone()
        prev = [samples[b] if vis[f, b] else None for b in range(B)]


def _cluster_compiled(per_object, objects, centres, vis, init, cache) -> None:
    """The per-frame loop of :func:`control_from_masks`, one compiled call per object for all its frames.

    per_object[b] is (samples, offsets) from :func:`levitor.control.kernels.sample_pixels`."""
    F = centres.shape[0]
    for b, obj in enumerate(objects):
        flat, offs = per_object[b]
        seq = flat[offs[0]:offs[-1]]
        rel = offs - offs[0]
        k = obj.k
        track_key = ("track", obj.id, k, init)  # an object the edit did not touch has the same samples
        if cache is not None and track_key in cache:
            old_seq, old_rel, old_c, old_vis = cache[track_key]
            if np.array_equal(old_rel, rel) and np.array_equal(old_seq, seq):
                centres[:, b, :k] = torch.from_numpy(old_c)
                vis[:, b] = torch.from_numpy(old_vis)
                continue
        first = np.zeros((k, 2))
        key = None
        if cache is not None and rel[1] >= k:  # frame 0's clustering depends only on its samples and k
            key = (k, init, bytes_hash(seq[: rel[1]].tobytes()))
            if key in cache:
                first = cache[key].numpy()
        out_c = np.zeros((F, k, 2))
        out_vis = np.zeros(F, dtype=np.bool_)
        kernels.cluster_track(seq, rel, k, init == "warm", np.ascontiguousarray(first, np.float64),
                               key is not None and key in cache, 300, KMEANS_MIN_SHIFT, out_c, out_vis)
        centres[:, b, :k] = torch.from_numpy(out_c)
        vis[:, b] = torch.from_numpy(out_vis)
        if cache is not None:
            cache[track_key] = (seq.copy(), rel, out_c, out_vis)
        if key is not None and key not in cache:
            cache[key] = centres[0, b, :k].clone()


def _cluster_release(per_object, objects, centres, vis, compiled: bool, cache) -> None:
    """The release's K-means (levitor.control.release_kmeans) of every object over all its frames, the fits of all
    objects on the worker threads together. An object whose samples are the same in every frame as last time
    (compared in place) reuses its whole track."""
    F = centres.shape[0]
    jobs, keys, seqs = {}, {}, {}
    for b, obj in enumerate(objects):
        if compiled:
            flat, offs = per_object[b]
            frames = [flat[offs[f]:offs[f + 1]] for f in range(F)]
            seq, rel = flat[offs[0]:offs[-1]], offs - offs[0]
        else:
            frames = [s.numpy() for s in per_object[b]]
            seq = np.concatenate([s.reshape(-1, 2) for s in frames])
            rel = np.cumsum([0] + [len(s) for s in frames])
        keys[b] = ("release track", obj.id, obj.k, obj.k_unscaled)
        held = cache.get(keys[b]) if cache is not None else None
        if held is not None and np.array_equal(held[1], rel) and np.array_equal(held[0], seq):
            _put(centres, vis, b, obj.k, held[2], held[3])
        else:
            jobs[b] = TrackJob(frames, obj.k_unscaled, obj.k, track=obj.id)  # fits kept in the cache by frame
            seqs[b] = (seq.copy(), rel)
    for b, (out, seen) in zip(jobs, release_tracks(list(jobs.values()), cache)):
        if cache is not None:
            cache[keys[b]] = (*seqs[b], out, seen)
        _put(centres, vis, b, objects[b].k, out, seen)


def _put(centres, vis, b, k, out, seen) -> None:
    centres[:, b, :k] = torch.from_numpy(out.astype(np.float64))
    vis[:, b] = torch.from_numpy(seen)


def _sample_pixels(instance: np.ndarray, i: int, stride: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every ``stride``-th pixel (row-major) of id ``i``'s mask in each frame, and the mask's area per frame.

    instance: (F, H, W) integer array. Returns F tensors (n_f, 2) float64 (row, col) and (F,) areas.
    (numpy: its flatnonzero is several times faster than torch.nonzero here.)
    """
    F, _, W = instance.shape
    mask = (instance == i).reshape(F, -1)
    out, areas = [], np.zeros(F, dtype=np.int64)
    for f in range(F):
        hits = np.flatnonzero(mask[f])
        areas[f] = hits.size
        keep = hits[::stride]
        out.append(torch.from_numpy(np.stack([keep // W, keep % W], axis=1).astype(np.float64)))
    return out, areas


def _empty_signal(F: int, H: int, W: int) -> ControlSignal:
    return ControlSignal(points=torch.zeros(F, 0, 2), depth=torch.zeros(F, 0),
                         instance=torch.zeros(0, dtype=torch.int64), visible=torch.zeros(F, 0, dtype=torch.bool),
                         height=H, width=W)
