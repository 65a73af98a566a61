"""Evaluation and reader speed on CPU (no weights, no downloads: every input is generated here).

    .venv/bin/python bench/bench_eval.py [--clips 3] [--sequences 4] [--videos 4] [--threads N]
    .venv/bin/python bench/bench_eval.py --sections command --sequences 4 --thread-counts 1 2

Sections (``--sections``):
1. ``protocol``: eval time per clip with the FallbackTracker at 16 x 320 x 512 (K-means query points, ground-truth
   tracks through the real clip, tracks through the "generated" clip, ObjMC), in the single- and multi-point settings;
2. ``command``: ``levitor eval DAVIS --model preview`` end to end (masks, IoUs, track videos included) on a generated
   DAVIS 2017 at 480 x 854, once per ``--thread-counts`` value in this run: seconds per clip and setting, and how many
   per-clip figures change with the thread count;
3. ``readers``: DAVIS reader throughput (clips/s) on that fixture, including the centre crop + resize to 320 x 512;
   SA-V reader throughput on generated 848 x 480 SA-V videos (mp4 + RLE JSON), 16 annotated frames a clip.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from levitor.data.clip import VideoClip
from levitor.data.davis import DavisDataset, write_palette_png
from levitor.data.sampling import ClipSampling
from levitor.data.sav import SavDataset, rle_encode
from levitor.evaluation.protocol import evaluate_clip, ground_truth_tracks
from levitor.evaluation.tracking import FallbackTracker

H, W, T = 320, 512, 16


def synthetic_clip(h: int, w: int, t: int, seed: int = 0) -> VideoClip:
    """A textured background with three textured objects moving by different integer steps."""
    rng = np.random.default_rng(seed)
    bg = ndimage.gaussian_filter(rng.normal(size=(h, w)), 3) * 150 + 128
    objs = [((60, 80), (40, 60), (3, 1)), ((150, 200), (80, 120), (-2, 2)), ((200, 380), (60, 60), (0, -3))]
    texs = [ndimage.gaussian_filter(rng.normal(size=s), 2) * 150 + 128 for _, s, _ in objs]
    frames = np.empty((t, h, w, 3), np.uint8)
    inst = np.zeros((t, h, w), np.int64)
    for i in range(t):
        img = bg.copy()
        for k, (((y, x), (sh, sw), (vx, vy)), tex) in enumerate(zip(objs, texs), start=1):
            y0, x0 = y + vy * i, x + vx * i
            img[y0 : y0 + sh, x0 : x0 + sw] = tex
            inst[i, y0 : y0 + sh, x0 : x0 + sw] = k
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return VideoClip(frames, inst, [1, 2, 3], fps=24.0, name=f"synthetic{seed}")


def bench_eval(n_clips: int) -> None:
    tracker = FallbackTracker()
    for setting in ("single", "multi"):
        times, values = [], []
        for s in range(n_clips):
            clip = synthetic_clip(H, W, T, seed=s)
            noise = np.random.default_rng(s).integers(-6, 7, clip.frames.shape)
            generated = np.clip(clip.frames.astype(int) + noise, 0, 255).astype(np.uint8)
            t0 = time.perf_counter()
            gt = ground_truth_tracks(clip, tracker, setting)
            res = evaluate_clip(clip, generated, tracker, setting, gt=gt)
            times.append(time.perf_counter() - t0)
            values.append(res.objmc)
        print(f"eval {setting:6s} {T}x{H}x{W}, {res.num_points} points: {np.mean(times):.2f} s/clip "
              f"(min {np.min(times):.2f}, {n_clips} clips), ObjMC on noisy copies {np.mean(values):.3f} px")


def write_davis(root: Path, n_seq: int, n_frames: int, h: int = 480, w: int = 854) -> None:
    rng = np.random.default_rng(0)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    names = [f"seq{i}" for i in range(n_seq)]
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names))
    for name in names:
        img_dir, ann_dir = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        base = (ndimage.gaussian_filter(rng.normal(size=(h // 4, w // 4, 3)), (2, 2, 0)) * 300 + 128)
        base = np.asarray(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((w, h)))
        for t in range(n_frames):
            Image.fromarray(np.roll(base, 3 * t, axis=1)).save(img_dir / f"{t:05d}.jpg", quality=90)
            ids = np.zeros((h, w), np.uint8)
            ids[100:300, 100 + 3 * t : 300 + 3 * t] = 1
            ids[320:420, 500:700] = 2
            write_palette_png(ann_dir / f"{t:05d}.png", ids)


def write_sav(root: Path, n_videos: int, n_frames: int, h: int = 848, w: int = 480) -> None:
    import av

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for v in range(n_videos):
        vid = f"sav_{v:06d}"
        base = np.clip(ndimage.gaussian_filter(rng.normal(size=(h, w)), 4) * 400 + 128, 0, 255).astype(np.uint8)
        with av.open(str(root / f"{vid}.mp4"), "w") as out:
            st = out.add_stream("libx264", rate=24)
            st.width, st.height, st.pix_fmt = w, h, "yuv420p"
            st.options = {"preset": "veryfast"}
            for t in range(n_frames):
                rgb = np.repeat(np.roll(base, 2 * t, axis=0)[..., None], 3, axis=2)
                for p in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(p)
            for p in st.encode():
                out.mux(p)
        masklet = []
        for i in range((n_frames + 3) // 4):
            a = np.zeros((h, w), bool)
            a[200 + 8 * i : 500 + 8 * i, 100:300] = True
            b = np.zeros((h, w), bool)
            b[600:800, 50:150] = True
            masklet.append([rle_encode(a), rle_encode(b)])
        doc = {"video_id": vid, "video_frame_count": float(n_frames), "video_height": float(h),
               "video_width": float(w), "masklet": masklet, "masklet_id": [0, 1],
               "masklet_type": ["manual", "manual"]}
        (root / f"{vid}_manual.json").write_text(json.dumps(doc))


def bench_readers(n_seq: int, n_videos: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_davis(root / "davis", n_seq, 32)
        ds = DavisDataset(root / "davis", sampling=ClipSampling(starts="all"))
        t0 = time.perf_counter()
        n = sum(1 for c in ds.clips() if c.center_crop_resize(H, W).num_frames == T)
        dt = time.perf_counter() - t0
        print(f"DAVIS reader 480x854 -> {H}x{W}: {n} clips in {dt:.2f} s = {n / dt:.2f} clips/s "
              f"({dt / n:.2f} s/clip)")
        write_sav(root / "sav", n_videos, 64)
        sv = SavDataset(root / "sav", kinds=("manual",))
        t0 = time.perf_counter()
        n = sum(1 for c in sv.clips() if c.center_crop_resize(H, W).num_frames == T)
        dt = time.perf_counter() - t0
        print(f"SA-V reader 848x480 (64 video frames, 16 annotated) -> {H}x{W}: {n} clips in {dt:.2f} s = "
              f"{n / dt:.2f} clips/s ({dt / n:.2f} s/clip)")


def bench_command(n_seq: int, thread_counts: list[int]) -> None:
    """``levitor eval --model preview`` per thread count (timing), then a tiny random LeviTorPipeline evaluated per
    thread count at 8 x 64 x 96 (which per-clip figures change), in this process, on one generated DAVIS."""
    from levitor.cli import main
    from levitor.testing.tiny import save_tiny_pipeline

    metrics = ("objmc", "traj_err", "mask_iou", "box_iou")
    timing, figures = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_davis(root / "davis", n_seq, T)
        tiny = save_tiny_pipeline(root / "tiny")["pipeline"]
        for n in thread_counts:
            out = root / f"threads{n}"
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["eval", str(root / "davis"), "--model", "preview", "--device", "cpu", "--threads", str(n),
                           "--out", str(out)])
            wall = time.perf_counter() - t0
            assert rc == 0, f"levitor eval exited {rc}"
            rows = list(csv.DictReader(open(out / "per_clip.csv")))
            timing[n] = (wall, float(np.mean([float(r["total_s"]) for r in rows])))
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["eval", str(root / "davis"), "--model", str(tiny), "--device", "cpu", "--threads", str(n),
                           "--steps", "2", "--height", "64", "--width", "96", "--num-frames", "8", "--no-videos",
                           "--out", str(root / f"tiny{n}")])
            assert rc == 0, f"levitor eval exited {rc}"
            figures[n] = [r[k] for r in csv.DictReader(open(root / f"tiny{n}" / "per_clip.csv")) for k in metrics]
    print(f"## levitor eval DAVIS --model preview (fallback tracker, propagated masks, track videos): {n_seq} "
          f"sequences at 480 x 854 -> 16 x {H} x {W}, single + multi")
    print("| --threads | wall s | s per clip and setting (per_clip.csv total_s, mean) | vs the first |")
    print("|---|---|---|---|")
    first = None
    for n, (wall, per) in timing.items():
        first = first or per
        print(f"| {n} | {wall:.1f} | {per:.2f} | {per / first:.2f}x |")
    counts = list(figures)
    for a, b in zip(counts, counts[1:]):
        changed = sum(u != v for u, v in zip(figures[a], figures[b]))
        print(f"a tiny random LeviTorPipeline (2 steps, 8 x 64 x 96): {changed} of {len(figures[a])} per-clip "
              f"figures differ between {a} and {b} threads")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="protocol, readers: torch threads (0: torch's default)")
    ap.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2], help="command: --threads values to run")
    ap.add_argument("--sections", nargs="+", default=["protocol", "command", "readers"],
                    choices=["protocol", "command", "readers"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = Path("/proc/loadavg")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          f"{' '.join(load.read_text().split()[:3]) if load.is_file() else '?'}")
    if "protocol" in args.sections:
        bench_eval(args.clips)
    if "command" in args.sections:
        bench_command(args.sequences, args.thread_counts)
    if "readers" in args.sections:
        bench_readers(args.sequences, args.videos)


if __name__ == "__main__":
    main()
