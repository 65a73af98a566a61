"""Precompute on an SA-V-sized input, before and after: clips/s per CPU process and the share of each stage.

    .venv/bin/python bench/bench_precompute.py [--frames 96] [--masklets 12] [--repeats 3]

Input: one generated SA-V video (1400 x 1036, 24 fps mp4, ``--frames`` frames) with ``--masklets`` manual masklets
(COCO RLE per annotated frame, 6 fps), clips of 16 annotated frames at 320 x 512, flat depth, JPEG frames.

- before: the former reader path: every mask decoded at full size by the numpy codec, (T, N, 1036, 1400) masks
  stacked, then cropped and resized (``VideoClip.center_crop_resize``);
- after: masks decoded straight at the training size from their runs (:func:`levitor.data.sav.rle_decode_resized`),
  frames cropped and resized while reading; then the same control + encoding stages
  (:mod:`levitor.training.precompute`).

Prints per-clip seconds of each stage (median of ``--repeats``), the ratios, and the all-of-SA-V estimate inputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from levitor.data.records import encode_sample
from levitor.data.sampling import ClipSampling
from levitor.data.sav import SavDataset, decode_frames, rle_decode_resized, rle_encode, string_to_counts
from levitor.perception.depth_fn import flat_depth
from levitor.testing.datasets import write_video
from levitor.training.precompute import PrecomputeConfig, clip_record, encode_video

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
           "disparity": np.stack([flat_depth(f) for f in clip.frames])}
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
        "disparity": np.stack([flat_depth(f) for f in frames])}]}
    t4 = time.perf_counter()
    encode_video(result, cfg)
    t5 = time.perf_counter()
    return {"video decode": t1 - t0, "RLE decode": t2 - t1, "crop + resize + instance map": t3 - t2,
            "control (K-means)": 0.0, "encode (JPEG, PNG)": t5 - t4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64, help="video frames at 24 fps (64 -> 16 annotated frames)")
    ap.add_argument("--masklets", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_input(root, args.frames, args.masklets)
        after(root)                                  # warm-up: numba's K-means compiles once
        runs = {"before": [before(root) for _ in range(args.repeats)],
                "after": [after(root) for _ in range(args.repeats)]}
    med = {k: {s: statistics.median(r[s] for r in v) for s in v[0]} for k, v in runs.items()}
    # after: control and encoding are timed together in encode_video
    print(f"one clip, 16 x {OUT_H} x {OUT_W} from {W} x {H}, {args.masklets} masklets, one CPU process, "
          f"median of {args.repeats} (seconds):")
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
          f"{med['after']['RLE decode'] / (T * args.masklets) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
