"""Precompute throughput (clips/s) and eval time per clip on CPU. No weights, no downloads: inputs are generated.

    .venv/bin/python bench/bench_precompute.py [--sequences 4] [--frames 32] [--threads 1] [--arch small]

1. ``precompute_shard`` over a generated DAVIS 2017 fixture at the real 480 x 854 size, clips of 16 frames
   centre-cropped and resized to 320 x 512, records with JPEG frames: with flat depth (``--depth none``) and with
   a tiny random DepthAnythingV2 at input 126 (the real code path, not the real model's cost), and with
   ``--arch small|base|large`` the real DepthAnythingV2 architecture with random weights (for the depth cost).
   A second run over the same folder measures the resume path (every record verified and skipped).
2. Where one clip's time goes: reading + crop/resize, depth, control_from_masks, JPEG, record compression + write.
3. ``levitor eval`` time per clip at 16 x 320 x 512: ``--model preview`` with the fallback tracker, both settings.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from levitor.control.points import control_from_masks
from levitor.data.davis import DavisDataset, write_palette_png
from levitor.data.records import encode_jpeg, write_record
from levitor.data.sampling import ClipSampling
from levitor.depth import depth_from_disparity
from levitor.evaluation.runner import EvalConfig, preview_generator, run_eval
from levitor.evaluation.tracking import FallbackTracker
from levitor.perception.depth_fn import estimator_depth, flat_depth
from levitor.training.precompute import PrecomputeConfig, compute_record, precompute_shard

SRC_H, SRC_W = 480, 854     # DAVIS 480p
H, W, T = 320, 512, 16
TINY_INPUT = 126            # the tiny random DepthAnything's saved processor size


def write_fixture(root: Path, n_seq: int, n_frames: int) -> None:
    """DAVIS layout at 480 x 854: textured background, three textured objects moving by integer steps."""
    rng = np.random.default_rng(0)
    for s in range(n_seq):
        name = f"seq{s:02d}"
        img_dir, ann_dir = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        bg = ndimage.gaussian_filter(rng.normal(size=(-(-SRC_H // 4), -(-SRC_W // 4))), 2) * 150 + 128
        bg = np.kron(bg, np.ones((4, 4)))[:SRC_H, :SRC_W]
        objs = [((80, 200), (90, 120), (4, 1)), ((250, 400), (150, 200), (-3, 2)), ((120, 600), (100, 80), (0, -2))]
        texs = [ndimage.gaussian_filter(rng.normal(size=sz), 2) * 150 + 128 for _, sz, _ in objs]
        for t in range(n_frames):
            img, ids = bg.copy(), np.zeros((SRC_H, SRC_W), np.uint8)
            for k, (((y, x), (sh, sw), (vx, vy)), tex) in enumerate(zip(objs, texs), start=1):
                y0, x0 = y + vy * t, x + vx * t
                img[y0 : y0 + sh, x0 : x0 + sw] = tex
                ids[y0 : y0 + sh, x0 : x0 + sw] = k
            rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            Image.fromarray(rgb).save(img_dir / f"{t:05d}.jpg", quality=90)
            write_palette_png(ann_dir / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(f"seq{s:02d}" for s in range(n_seq)) + "\n")


def bench_shard(root: Path, out: Path, depth_fn, label: str, rows: list) -> None:
    cfg = PrecomputeConfig(height=H, width=W, num_frames=T, depth=label)
    first = precompute_shard(root, out, cfg, 0, 1, depth_fn=depth_fn)
    again = precompute_shard(root, out, cfg, 0, 1, depth_fn=depth_fn)
    size = sum(p.stat().st_size for p in out.rglob("*.npz")) / max(first.done, 1)
    rows.append((label, first.done, first.seconds, first.clips_per_second, size / 1e6,
                 again.skipped_existing / again.seconds if again.seconds else float("nan")))


def stage_times(root: Path, depth_fn, repeats: int = 2) -> dict[str, float]:
    """Median seconds per clip of each stage (reading: a whole sequence divided by its clips)."""
    ds = DavisDataset(root, sampling=ClipSampling(num_frames=T, starts="all"))
    cfg = PrecomputeConfig(height=H, width=W, num_frames=T)
    out: dict[str, list[float]] = {k: [] for k in ("read + crop/resize", "depth", "control_from_masks",
                                                   "JPEG frames", "compress + write")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            clips = [c.center_crop_resize(H, W) for c in ds.clips(["seq00"])]
            clip = clips[0]
            t1 = time.perf_counter()
            disparity = np.stack([depth_fn(f) for f in clip.frames])
            t2 = time.perf_counter()
            control_from_masks(torch.from_numpy(clip.instance_map()),
                               depth_from_disparity(torch.from_numpy(disparity)), ids=clip.object_ids.tolist())
            t3 = time.perf_counter()
            [encode_jpeg(f, cfg.jpeg_quality) for f in clip.frames]
            t4 = time.perf_counter()
            rec = compute_record(clip, cfg, flat_depth)
            t5 = time.perf_counter()
            write_record(Path(tmp) / "r.npz", rec)
            t6 = time.perf_counter()
            for key, v in zip(out, ((t1 - t0) / len(clips), t2 - t1, t3 - t2, t4 - t3, t6 - t5)):
                out[key].append(v)
    return {k: float(np.median(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=32, help="frames per sequence (32 -> 2 clips of 16)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: how CPU precompute scales, one process per core; more threads on a "
                         "shared machine mostly spin)")
    ap.add_argument("--arch", choices=["small", "base", "large"], help="also time the real DepthAnythingV2 "
                                                                        "architecture (random weights)")
    ap.add_argument("--eval-clips", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from levitor.perception import DepthEstimator, FeatureCache
    from levitor.testing.tiny_perception import random_depth_anything_model, save_tiny_depth_anything

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_fixture(tmp / "DAVIS", args.sequences, args.frames)
        print(f"fixture: {args.sequences} sequences x {args.frames} frames at {SRC_H}x{SRC_W} "
              f"({time.perf_counter() - t0:.1f} s to write); torch threads {torch.get_num_threads()}")
        # the tiny model at the input size it was saved for: at the release's 512 its full-resolution DPT head
        # alone costs seconds per frame on a CPU, which says nothing about the real model either (see --arch)
        tiny = DepthEstimator.load(str(save_tiny_depth_anything(tmp / "tiny_depth")), device="cpu",
                                   cache=FeatureCache(max_bytes=0), input_size=TINY_INPUT)
        depths = {"none (flat)": flat_depth,
                  f"tiny DepthAnything (random, input {TINY_INPUT})": estimator_depth(tiny)}
        if args.arch:
            real = DepthEstimator(random_depth_anything_model(args.arch), cache=FeatureCache(max_bytes=0))
            depths[f"DepthAnythingV2-{args.arch} arch (random)"] = estimator_depth(real)

        rows: list = []
        for i, (label, fn) in enumerate(depths.items()):
            bench_shard(tmp / "DAVIS", tmp / f"out{i}", fn, label, rows)
        print(f"\nprecompute, {T}x{H}x{W} clips from {SRC_H}x{SRC_W} DAVIS, JPEG frames, one process:")
        print("| depth | clips | seconds | clips/s | MB/record | resume: verified clips/s |")
        print("|---|---|---|---|---|---|")
        for label, n, s, cps, mb, resume in rows:
            print(f"| {label} | {n} | {s:.2f} | {cps:.2f} | {mb:.2f} | {resume:.1f} |")

        print("\nwhere one clip's time goes (median of 2, seconds):")
        for label, fn in depths.items():
            st = stage_times(tmp / "DAVIS", fn)
            print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in st.items()))

        print(f"\nlevitor eval --model preview --tracker fallback, {T}x{H}x{W}, both settings:")
        cfg = EvalConfig(height=H, width=W, num_frames=T, max_clips=args.eval_clips)
        summary = run_eval(tmp / "DAVIS", preview_generator, FallbackTracker(), tmp / "eval", cfg, "preview")
        n = len({t.name for t in summary.timings})
        for setting in ("single", "multi"):
            ts = [t.total_s for t in summary.timings if t.setting == setting]
            print(f"  {setting}: {np.mean(ts):.2f} s per clip (GT tracks + tracks of the 'generated' clip + "
                  f"ObjMC + video), ObjMC {summary.mean_objmc(setting):.3f} px")
        print(f"  whole run: {summary.seconds:.2f} s for {n} clips = {summary.seconds_per_clip:.2f} s per clip "
              "(both settings, reading included)")


if __name__ == "__main__":
    main()
