"""Precompute speed on the CPU: the SA-V stages before and after the fast reader, the whole command per clip with
each engine and depth, a resumed run's shard check, and the depth network's cost. Every input is generated here.

    .venv/bin/python bench/bench_precompute.py                      # every section, small runs
    .venv/bin/python bench/bench_precompute.py --sections engine resume ray --sequences 4

Sections (``--sections``):

- ``stages``: one generated SA-V video (1400 x 1036, 24 fps mp4, ``--frames`` frames, ``--masklets`` manual masklets,
  COCO RLE at 6 fps), clips of 16 annotated frames at 320 x 512, flat depth, JPEG frames. *before*: every mask
  decoded at full size by the former numpy codec, (T, N, 1036, 1400) masks stacked, then cropped and resized;
  *after*: masks decoded straight at the training size from their runs (:func:`levitor.data.sav.rle_decode_resized`),
  frames cropped and resized while reading; then the same control + encoding stages. Median of ``--repeats``.
- ``engine``: ``levitor precompute``'s local engine (:func:`levitor.training.precompute.run_local`, one process, one
  torch thread) on a generated DAVIS at 480 x 854 (``--sequences`` x 32 frames: two 16-frame clips each) to
  16 x 320 x 512 JPEG records, with flat depth and with a tiny random DepthAnything (input 126: the code path, not
  the real network's cost).
- ``resume``: the same command again on the finished output: every shard is read and its digest compared before it
  counts as done; and the check of one ``--shard-mb`` shard of random JPEG-sized members by its file digest and,
  as for shards written before file digests, by each sample's digest.
- ``ray``: the Ray engine (a Ray started here, ``--num-cpus``) on the same input, flat depth, beside the local engine
  in the same run (Ray's start included: what a user waits for).
- ``depth``: DepthAnythingV2-small's architecture (random weights) at the release's input size 512 on the CPU, on
  ``--depth-frames`` frames of 320 x 512 in one batch; per clip = 16 frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from levitor.data.records import encode_sample
from levitor.data.sampling import ClipSampling
from levitor.data.sav import SavDataset, decode_frames, rle_decode_resized, rle_encode, string_to_counts
from levitor.perception.depth_fn import flat_disparity
from levitor.testing.datasets import write_video
from levitor.training.precompute import PrecomputeConfig, clip_record, encode_video, run_local

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import write_davis  # the same generated 480 x 854 DAVIS as the eval benchmark

H, W = 1036, 1400
OUT_H, OUT_W, T = 320, 512, 16


def numpy_rle_decode(rle: dict) -> np.ndarray:
    """The former codec: parse in Python, np.repeat the runs, transpose column-major to (H, W)."""
    counts = string_to_counts(rle["counts"])
    h, w = rle["size"]
    return np.repeat(np.arange(len(counts)) % 2 == 1, counts).reshape((w, h)).T.copy()


def write_input(root: Path, n_frames: int, n_masklets: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:H, :W]
    base = (np.sin(xx / 37.0) * 60 + np.cos(yy / 23.0) * 60 + 128).astype(np.uint8)
    frames = np.repeat(base[None, ..., None], n_frames, 0).repeat(3, -1)
    write_video(root / "sav_000001.mp4", frames)
    centres = rng.uniform([150, 150], [H - 150, W - 150], size=(n_masklets, 2))
    radii = rng.uniform(40, 160, size=(n_masklets, 2))
    n_ann = (n_frames + 3) // 4
    masklet = []
    for i in range(n_ann):
        frame = []
        for (cy, cx), (ry, rx) in zip(centres, radii):
            m = ((yy - cy - 2 * i) / ry) ** 2 + ((xx - cx - 3 * i) / rx) ** 2 < 1
            frame.append(rle_encode(m))
        masklet.append(frame)
    doc = {"video_id": "sav_000001", "video_frame_count": float(n_frames), "video_height": float(H),
           "video_width": float(W), "masklet": masklet, "masklet_id": list(range(n_masklets)),
           "masklet_type": ["manual"] * n_masklets}
    (root / "sav_000001_manual.json").write_text(json.dumps(doc))


def before(root: Path) -> dict[str, float]:
    """Seconds per clip of the former path's stages (video decode, RLE decode, crop/resize, control, encode)."""
    ds = SavDataset(root, kinds=("manual",), sampling=ClipSampling(num_frames=T, starts="all"))
    anns = ds.annotations("sav_000001")
    idx = list(range(T))
    t0 = time.perf_counter()
    frames, fps = decode_frames(root / "sav_000001.mp4", [i * 4 for i in idx])
    t1 = time.perf_counter()
    masks = np.zeros((T, anns[0].num_objects, H, W), bool)
    for t, i in enumerate(idx):
        for n, rle in enumerate(anns[0].masklet[i]):
            masks[t, n] = numpy_rle_decode(rle)
    t2 = time.perf_counter()
    from levitor.data.clip import VideoClip

    clip = VideoClip(frames, masks, np.arange(1, masks.shape[1] + 1), fps / 4, name="sav_000001@0", source="sav")
    clip = clip.center_crop_resize(OUT_H, OUT_W)
    t3 = time.perf_counter()
    cfg = PrecomputeConfig(dataset="sav", height=OUT_H, width=OUT_W, num_frames=T)
    row = {"frames": clip.frames, "instance": clip.instance_map(), "object_ids": clip.object_ids, "name": clip.name,
           "source": "sav", "fps": clip.fps, "frame_indices": clip.frame_indices, "meta": {},
           "disparity": np.stack([flat_disparity(f) for f in clip.frames])}
    rec = clip_record(row, cfg)
    t4 = time.perf_counter()
    encode_sample(rec, "jpeg", cfg.jpeg_quality)
    t5 = time.perf_counter()
    return {"video decode": t1 - t0, "RLE decode": t2 - t1, "crop + resize + instance map": t3 - t2,
            "control (K-means)": t4 - t3, "encode (JPEG, PNG)": t5 - t4}


def after(root: Path) -> dict[str, float]:
    ds = SavDataset(root, kinds=("manual",), sampling=ClipSampling(num_frames=T, starts="all"), size=(OUT_H, OUT_W))
    anns = ds.annotations("sav_000001")
    idx = list(range(T))
    from levitor.data.clip import crop_resize_frames, crop_resize_indices

    t0 = time.perf_counter()
    frames, fps = decode_frames(root / "sav_000001.mp4", [i * 4 for i in idx])
    t1 = time.perf_counter()
    rows, cols = crop_resize_indices(H, W, OUT_H, OUT_W)
    masks = np.stack([np.stack([rle_decode_resized(r, rows, cols) for r in anns[0].masklet[i]]) for i in idx])
    t2 = time.perf_counter()
    frames = crop_resize_frames(frames, OUT_H, OUT_W)

    from levitor.data.clip import VideoClip

    vc = VideoClip(frames, masks, np.arange(1, masks.shape[1] + 1), fps / 4, name="sav_000001@0", source="sav")
    instance = vc.instance_map()
    t3 = time.perf_counter()
    cfg = PrecomputeConfig(dataset="sav", height=OUT_H, width=OUT_W, num_frames=T)
    result = {"video": "sav_000001", "failures": [], "empty": 0, "clips": [{
        "frames": frames, "instance": instance, "object_ids": vc.object_ids, "name": vc.name, "source": "sav",
        "fps": vc.fps, "frame_indices": vc.frame_indices, "meta": {},
        "disparity": np.stack([flat_disparity(f) for f in frames])}]}
    t4 = time.perf_counter()
    encode_video(result, cfg)
    t5 = time.perf_counter()
    return {"video decode": t1 - t0, "RLE decode": t2 - t1, "crop + resize + instance map": t3 - t2,
            "control (K-means)": 0.0, "encode (JPEG, PNG)": t5 - t4}


def bench_stages(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_input(root, args.frames, args.masklets)
        after(root)                                  # warm-up: numba's K-means compiles once
        runs = {"before": [before(root) for _ in range(args.repeats)],
                "after": [after(root) for _ in range(args.repeats)]}
    med = {k: {s: statistics.median(r[s] for r in v) for s in v[0]} for k, v in runs.items()}
    # after: control and encoding are timed together in encode_video
    print(f"## stages: one SA-V clip, 16 x {OUT_H} x {OUT_W} from {W} x {H}, {args.masklets} masklets, one CPU "
          f"process, median of {args.repeats} (seconds)")
    print("| stage | before | share | after | share | before / after |")
    print("|---|---|---|---|---|---|")
    tb, ta = sum(med["before"].values()), sum(med["after"].values())
    stages = list(med["before"])
    for s in stages:
        b, a = med["before"][s], med["after"][s]
        if s == "encode (JPEG, PNG)":
            b_cmp = b + med["before"]["control (K-means)"]
            print(f"| control + encode | {b_cmp:.3f} | {b_cmp / tb:.0%} | {a:.3f} | {a / ta:.0%} | {b_cmp / a:.1f}x |")
        elif s != "control (K-means)":
            print(f"| {s} | {b:.3f} | {b / tb:.0%} | {a:.3f} | {a / ta:.0%} | {b / max(a, 1e-9):.1f}x |")
    print(f"| whole clip | {tb:.3f} | | {ta:.3f} | | {tb / ta:.1f}x |")
    print(f"clips/s per CPU process: before {1 / tb:.2f}, after {1 / ta:.2f}")
    print(f"RLE decode per mask: before {med['before']['RLE decode'] / (T * args.masklets) * 1e3:.2f} ms, after "
          f"{med['after']['RLE decode'] / (T * args.masklets) * 1e3:.2f} ms\n")


def _timed_run(fn):
    t0 = time.perf_counter()
    rep = fn()
    return time.perf_counter() - t0, rep


def bench_command(args) -> None:
    """The engine, resume and ray sections on one generated DAVIS."""
    from levitor.perception.depth_fn import flat_disparity, load_depth_fn
    from levitor.testing.tiny_perception import save_tiny_depth_anything

    cfg = PrecomputeConfig(height=OUT_H, width=OUT_W, num_frames=T, videos_per_shard=2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_davis(root / "davis", args.sequences, 2 * T)
        rows = []
        dt, rep = _timed_run(lambda: run_local(root / "davis", root / "flat", cfg, flat_disparity))
        n = rep.samples
        rows.append(("local engine, flat depth", dt, n))
        if "engine" in args.sections:
            tiny = load_depth_fn(str(save_tiny_depth_anything(root / "tiny-da")), "cpu", 126)
            dt, rep = _timed_run(lambda: run_local(root / "davis", root / "tiny", cfg, tiny))
            rows.append(("local engine, tiny random DepthAnything (input 126)", dt, rep.samples))
        if "resume" in args.sections:
            size = sum(p.stat().st_size for p in (root / "flat" / "shards").glob("*.tar"))
            dt, rep = _timed_run(lambda: run_local(root / "davis", root / "flat", cfg, flat_disparity))
            assert rep.shards_existing == rep.shards and rep.shards_done == 0
            rows.append((f"resume: every finished shard read once and its digest compared ({size / 1e6:.0f} MB)",
                         dt, n))
        if "ray" in args.sections:
            from levitor.training.precompute_ray import run_ray

            dt, rep = _timed_run(lambda: run_ray(root / "davis", root / "ray", cfg, num_cpus=args.num_cpus))
            assert rep.samples == n
            rows.append((f"Ray engine, a local Ray of {args.num_cpus} CPUs, flat depth (its start included)", dt, n))
    print(f"## the command: generated DAVIS 480 x 854, {args.sequences} sequences x {2 * T} frames -> {n} clips of "
          f"{T} x {OUT_H} x {OUT_W}, JPEG, one torch thread")
    print("| run | seconds | clips | s / clip | vs local flat |")
    print("|---|---|---|---|---|")
    base = rows[0][1] / rows[0][2]
    for name, dt, clips in rows:
        print(f"| {name} | {dt:.2f} | {clips} | {dt / clips:.3f} | {dt / clips / base:.2f}x |")
    print()


def bench_shard_check(megabytes: int) -> None:
    """A rerun's check of one SA-V-sized shard: its file digest, and (older shards) each sample's digest."""
    import json as _json

    from levitor.data.records import DIGEST_PART, sample_digest, stats_path, write_shard, write_stats
    from levitor.training.precompute import damaged_shard

    rng = np.random.default_rng(0)
    jpeg = 40_000                                  # about one 320 x 512 JPEG frame
    samples = []
    for i in range(max(1, megabytes * 1_000_000 // (T * jpeg))):
        s = {"__key__": f"clip{i:05d}", "json": b"{}", "control.npy": rng.bytes(4000)}
        s.update({f"f{f:03d}.jpg": rng.bytes(jpeg) for f in range(T)})
        s[DIGEST_PART] = sample_digest(s).encode()
        samples.append(s)
    with tempfile.TemporaryDirectory() as tmp:
        from levitor._util.hashing import file_hash

        tar = Path(tmp) / "shard-000000.tar"
        size = write_shard(tar, samples)
        write_stats(tar, {"samples": len(samples), "bytes": size, "file_digest": file_hash(tar)})
        damaged_shard(tar)                                               # the file in the page cache for both
        with_digest, _ = _timed_run(lambda: damaged_shard(tar))
        stats = _json.loads(stats_path(tar).read_text())
        del stats["file_digest"]
        write_stats(tar, stats)
        per_sample, _ = _timed_run(lambda: damaged_shard(tar))
    mb = size / 1e6
    print(f"## a rerun's check of one {mb:.0f} MB shard ({len(samples)} samples x {T} JPEG-sized members), in the "
          f"page cache")
    print(f"file digest: {with_digest:.2f} s ({mb / with_digest:.0f} MB/s); each sample's digest (shards without "
          f"one): {per_sample:.2f} s ({mb / per_sample:.0f} MB/s); {per_sample / with_digest:.1f}x\n")


def bench_depth(args) -> None:
    from levitor.perception import DepthEstimator, FeatureCache
    from levitor.perception.depth_fn import estimator_depth
    from levitor.testing.tiny_perception import random_depth_anything_model

    est = DepthEstimator(random_depth_anything_model("small"), input_size=512, cache=FeatureCache(max_bytes=0))
    fn = estimator_depth(est)
    frames = np.random.default_rng(0).integers(0, 256, (args.depth_frames, OUT_H, OUT_W, 3), dtype=np.uint8)
    fn.batch(frames[:1])                              # warm-up
    dt, _ = _timed_run(lambda: fn.batch(frames))
    print(f"## depth: DepthAnythingV2-small architecture (random weights) at input 512, {args.depth_frames} frames "
          f"of {OUT_H} x {OUT_W} in one batch, one torch thread")
    print(f"{dt / args.depth_frames:.2f} s a frame -> {dt / args.depth_frames * T:.1f} s a {T}-frame clip\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=["stages", "engine", "resume", "ray", "depth"],
                    choices=["stages", "engine", "resume", "ray", "depth"])
    ap.add_argument("--frames", type=int, default=64, help="stages: video frames at 24 fps (64 -> 16 annotated)")
    ap.add_argument("--masklets", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=4, help="engine/resume/ray: DAVIS sequences (2 clips each)")
    ap.add_argument("--num-cpus", type=int, default=2, help="ray: the local Ray's CPUs")
    ap.add_argument("--depth-frames", type=int, default=2)
    ap.add_argument("--shard-mb", type=int, default=130, help="resume: the size of the shard whose check is timed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = Path("/proc/loadavg")
    if load.is_file():
        print(f"load average at start: {' '.join(load.read_text().split()[:3])}\n")
    if "stages" in args.sections:
        bench_stages(args)
    if {"engine", "resume", "ray"} & set(args.sections):
        bench_command(args)
    if "resume" in args.sections:
        bench_shard_check(args.shard_mb)
    if "depth" in args.sections:
        bench_depth(args)


if __name__ == "__main__":
    main()
