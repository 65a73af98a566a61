"""Perception speed: SAM set_image / predict / automatic masks, and DepthAnythingV2, on CPU or CUDA.

Models are the real architectures with **random weights** (no download needed): timings are representative,
masks are not. Automatic-mask timing with random weights is run with the score filters off by default
(``--filters off``), so NMS and upsampling see every candidate: an upper bound on the real cost.

    python bench/bench_perception.py --device cpu --arch vit_b --size 1024
    python bench/bench_perception.py --device cuda --arch vit_h --dtype float16

Targets: one click -> mask <= 50 ms on GPU, <= 300 ms on the 2-core CPU, after set_image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if "--no-flush-denormal" not in sys.argv:
    # Before any parallel op, so torch's CPU worker threads inherit flush-to-zero (levitor.perception's own
    # scoped switch reaches only the calling thread). Zero-padded SAM inputs produce denormals on CPU.
    torch.set_flush_denormal(True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from levitor.perception import (
    AutoMaskConfig,
    AutomaticMaskGenerator,
    DepthEstimator,
    FeatureCache,
    Segmenter,
)
from levitor.perception.sam_backends import TransformersSam
from levitor.testing.tiny_perception import random_depth_anything_model, random_sam_model

CLICK_TARGET_MS = {"cpu": 300.0, "cuda": 50.0}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CPU_TIMES: list[float] = []  # process CPU seconds of the last timed() call, median over repeats


def timed(fn, device: str, repeats: int = 1) -> tuple[float, object]:
    """Median wall time (s) of ``repeats`` calls, synchronising CUDA around each.

    The process CPU time is recorded too (``CPU_TIMES[-1]``): on a shared CPU machine the wall time depends
    on what else runs, the CPU time much less.
    """
    times, cpu, out = [], [], None
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_TIMES.append(statistics.median(cpu))
    return statistics.median(times), out


def test_image(size: int) -> np.ndarray:
    """A 3:4 photo-like image whose longest side is ``size``: smooth gradients plus shapes and noise."""
    height, width = size * 3 // 4, size
    rows, cols = np.mgrid[0:height, 0:width]
    img = np.stack([rows * 255 // height, cols * 255 // width, (rows + cols) * 127 // (height + width)], -1)
    img = img.astype(np.float64)
    img[height // 4: height // 2, width // 5: width // 2] = (220, 40, 40)
    img[((rows - 2 * height // 3) ** 2 + (cols - 3 * width // 4) ** 2) < (height // 6) ** 2] = (40, 60, 220)
    rng = np.random.default_rng(0)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--size", type=int, default=1024, help="longest side of the test image (px)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=10, help="timed predict calls (median reported)")
    ap.add_argument("--points-per-side", type=int, default=32, help="automatic-mask grid (SAM default 32)")
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--filters", default="off", choices=["off", "default"],
                    help="automatic-mask score filters: off = worst case (random weights pass nothing otherwise)")
    ap.add_argument("--skip-automask", action="store_true")
    ap.add_argument("--depth", default="small", choices=["none", "small", "base", "large"],
                    help="DepthAnythingV2 size to time (random weights)")
    ap.add_argument("--depth-input", type=int, default=512, help="DepthAnything input size (release: 512)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-flush-denormal", dest="flush_denormal", action="store_false",
                    help="leave denormal floats on for every thread (up to ~10x slower SAM encoder on CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = args.device, getattr(torch, args.dtype)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    rows: list[tuple[str, str, str]] = []

    def row(step: str, value: str) -> None:
        rows.append((step, value, f"{CPU_TIMES[-1] * 1000:.0f} ms" if CPU_TIMES else "-"))
        print(f"  {step}: {value} (CPU {rows[-1][2]})", flush=True)  # progress while the slow steps run

    machine = torch.cuda.get_device_name() if kind == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# perception bench: SAM {args.arch} (random weights), image {args.size * 3 // 4}x{args.size}, "
          f"{device} ({machine}), {args.dtype}, flush-denormal {args.flush_denormal}, torch {torch.__version__}",
          flush=True)

    t, model = timed(lambda: random_sam_model(args.arch), device)
    model = model.to(device=device, dtype=dtype)
    row(f"build SAM {args.arch} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params)", f"{t:.2f} s")
    seg = Segmenter(TransformersSam(model), cache=FeatureCache())
    image = test_image(args.size)

    t, _ = timed(lambda: seg.set_image(image), device)
    row("set_image (encoder, cache miss)", f"{t * 1000:.0f} ms")
    t, _ = timed(lambda: seg.set_image(image.copy()), device)
    row("set_image again (cache hit)", f"{t * 1000:.1f} ms")

    h, w = image.shape[:2]
    seg.predict(points=[(w / 2, h / 2)])  # warm-up
    t_click, _ = timed(lambda: seg.predict(points=[(w / 2, h / 2)]), device, args.repeats)
    target = CLICK_TARGET_MS[kind]
    verdict = "PASS" if t_click * 1000 <= target else "FAIL"
    row("predict: 1 click, 3 masks", f"{t_click * 1000:.1f} ms (target <= {target:.0f} ms: {verdict})")
    t, _ = timed(lambda: seg.predict(points=[(w / 2, h / 2), (w / 4, h / 4), (w * 0.8, h * 0.7)], labels=[1, 0, 1],
                                     box=(w * 0.1, h * 0.1, w * 0.9, h * 0.9), multimask_output=False),
                 device, args.repeats)
    row("predict: 3 clicks + box, 1 mask", f"{t * 1000:.1f} ms")

    if not args.skip_automask:
        overrides = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch)
        if args.filters == "off":
            overrides.update(pred_iou_thresh=-1e9, stability_score_thresh=0.0)
        gen = AutomaticMaskGenerator(seg, AutoMaskConfig(**overrides))
        t, result = timed(lambda: gen.generate(image, progress=True), device)
        row(f"automatic masks ({args.points_per_side}^2 clicks, filters {args.filters})",
            f"{t:.2f} s -> {len(result)} masks")
        t, result = timed(lambda: result.mask_at(w / 2, h / 2), device, 100)
        row("pick a precomputed mask (mask_at)", f"{t * 1e6:.1f} us")

    if args.depth != "none":
        t, dmodel = timed(lambda: random_depth_anything_model(args.depth), device)
        est = DepthEstimator(dmodel.to(device=device, dtype=dtype), input_size=args.depth_input, cache=FeatureCache())
        t, _ = timed(lambda: est.estimate(image), device)
        nh, nw = est.network_size(h, w)
        row(f"depth: DepthAnythingV2-{args.depth} at {nh}x{nw} (cache miss)", f"{t * 1000:.0f} ms")
        t, _ = timed(lambda: est.estimate(image.copy()), device)
        row("depth again (cache hit)", f"{t * 1000:.1f} ms")

    width = max(len(k) for k, _, _ in rows)
    vwidth = max(len(v) for _, v, _ in rows)
    print(f"{'step'.ljust(width)} | {'wall time'.ljust(vwidth)} | process CPU time")
    print(f"{'-' * width}-|-{'-' * vwidth}-|-----------------")
    for k, v, c in rows:
        print(f"{k.ljust(width)} | {v.ljust(vwidth)} | {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
