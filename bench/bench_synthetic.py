"""How fast does the synthetic world render? Clips per second on this CPU (target: >= 50 at 16x64x64).

    .venv/bin/python bench/bench_synthetic.py [--clips 200] [--size 16x64x64] [--threads 1] [--control]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_CLIPS_PER_S = 50.0  # the requirement at 16x64x64 on a CPU


def main(argv: list[str] | None = None) -> int:
    from levitor.data.synthetic import SyntheticConfig, generate_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--size", default="16x64x64", help="FRAMESxHEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--control", action="store_true", help="also compute the control signal of each clip")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    F, H, W = (int(v) for v in args.size.lower().split("x"))
    cfg = SyntheticConfig(height=H, width=W, num_frames=F)
    generate_clip(0, cfg)  # warm-up
    t, cpu = time.perf_counter(), time.process_time()
    for seed in range(args.clips):
        clip = generate_clip(seed, cfg)
        if args.control:
            from levitor.control.points import control_from_masks

            control_from_masks(torch.from_numpy(clip.instance), torch.from_numpy(clip.depth),
                               moved_ids=clip.moved_ids, sample_stride=1 if H <= 64 else 10)
    dt, dt_cpu = time.perf_counter() - t, time.process_time() - cpu
    rate = args.clips / dt
    print(f"{args.clips} clips of {F}x{H}x{W} in {dt:.2f} s: {rate:.1f} clips/s "
          f"({rate / TARGET_CLIPS_PER_S:.2f}x the {TARGET_CLIPS_PER_S:.0f} clips/s target"
          f"{', with control signals' if args.control else ''}); {args.clips / dt_cpu:.1f} clips per CPU second "
          f"(a shared machine gives a process less than a core); {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
