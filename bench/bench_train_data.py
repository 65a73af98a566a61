"""Samples/s the shard loader (ShardStream + the training item: JPEG decode, control video) delivers per CPU worker.

    .venv/bin/python bench/bench_train_data.py [--clips 24] [--seconds 10]

Writes ``--clips`` clips of real-looking size (16 x 320 x 512 and 16 x 512 x 288, JPEG frames, 3 objects) into a
shard, then reads them in one process (= one DataLoader worker) with a shuffle buffer, as training does: as the only
worker, and as the last of 4 ranks, whose share of each epoch is the shard's last quarter (it reads through the first
three quarters without decoding them: the cost of assigning clips, not shards, when a share starts mid-shard).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from levitor.control.clip_control import clip_control
from levitor.data.records import ClipRecord, encode_sample, write_shard, write_stats
from levitor.data.shards import ShardStream
from levitor.depth import depth_from_disparity
from levitor.training.config import load_config
from levitor.training.datasets import shard_item


def write(folder: Path, n: int, f: int, h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        frames = (rng.random((f, h, w, 3)) * 40 + np.linspace(60, 200, w)[None, None, :, None]).astype(np.uint8)
        inst = np.zeros((f, h, w), np.uint8)
        for k in range(3):
            y, x = h // 4 + k * h // 5, w // 5 + k * w // 4
            inst[:, y : y + h // 6, x : x + w // 6] = k + 1
        disp = np.full((f, h, w), 128, np.uint8)
        sig = clip_control(inst, depth_from_disparity(disp))
        samples.append(encode_sample(ClipRecord(frames, disp, inst, sig, {"name": f"c{i:04d}"}), "jpeg"))
    tar = folder / "shards" / "shard-000000.tar"
    size = write_shard(tar, samples)
    write_stats(tar, {"samples": n, "bytes": size})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| clip | samples/s per worker | ms per sample | last of 4 ranks: samples/s | ratio |")
    print("|---|---|---|---|---|")
    for f, h, w in ((16, 320, 512), (16, 512, 288)):
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), args.clips, f, h, w)
            cfg = load_config(None, data="shards", data_root=tmp, height=h, width=w, num_frames=f, shuffle_buffer=16)
            one = rate(ShardStream(tmp, partial(shard_item, config=cfg), shuffle_buffer=16), args.seconds)
            last = rate(ShardStream(tmp, partial(shard_item, config=cfg), shuffle_buffer=16, rank=3, world_size=4),
                        args.seconds)
            print(f"| {f}x{h}x{w} | {one:.1f} | {1e3 / one:.1f} | {last:.1f} | {last / one:.2f} |")


def rate(dataset: ShardStream, seconds: float) -> float:
    """Samples/s of one DataLoader worker's stream (its first sample, with the shuffle buffer's fill, not timed)."""
    stream = iter(dataset)
    next(stream)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(stream)
        n += 1
    return n / (time.perf_counter() - t0)

if __name__ == "__main__":
    main()
