"""``levitor train``, ``levitor precompute`` and ``levitor precompute-synthetic`` (the training layer's commands):
their parsers and their run functions, which call into the layer. ``python -m levitor.training CONFIG`` (what
torchrun / accelerate launch / srun start) is ``levitor train CONFIG``.

Light to import: the argument definitions are here; the layer (torch, accelerate) is imported when a command runs,
so ``levitor --help`` does not wait for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from levitor.defaults import SIZES, video_size

PRECOMPUTE_HELP = ("Precompute depth and control signals of a data set into WebDataset shards (Ray Data or one "
                   "process; resumable per shard).")


# ------------------------------------------------------------------------------------------------ train
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML/JSON config (configs/paper.yaml, configs/mini.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, parsed as that key's type, e.g. --set max_steps=10 --set lr=1e-4")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if checkpoints exist")


def run_train(args: argparse.Namespace) -> int:
    from levitor.training.config import load_config, parse_overrides
    from levitor.training.loop import train

    config = load_config(args.config, **parse_overrides(args.set))
    print(json.dumps(train(config, resume=not args.no_resume)))
    return 0


# ----------------------------------------------------------------------------------- precompute-synthetic
def add_synthetic_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out")
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument("--config", help="a training config whose synthetic world and sizes to use (default: mini)")
    p.add_argument("--shard-size", type=int, help="clips per shard (default 500)")


def run_synthetic(args: argparse.Namespace) -> int:
    from levitor.training.config import PRESETS, load_config
    from levitor.training.datasets import precompute_synthetic

    if args.clips < 1 or (args.shard_size is not None and args.shard_size < 1):
        raise ValueError(f"--clips and --shard-size must be >= 1, got {args.clips} and {args.shard_size}")
    config = load_config(args.config) if args.config else PRESETS["mini"]
    given = {"shard_size": args.shard_size} if args.shard_size is not None else {}  # else the function's default
    t = time.time()
    precompute_synthetic(args.out, args.clips, config, **given)
    print(f"wrote {args.clips} clips to {args.out} in {time.time() - t:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------- precompute
def add_precompute_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="the data set folder (DAVIS 2017 or SA-V; see docs/data_and_eval.md)")
    p.add_argument("--out", required=True, help="output folder (plan.json, shards/*.tar with .stats.json)")
    p.add_argument("--dataset", help="davis (default), sav or sav-frames")
    p.add_argument("--split", help="DAVIS: val (default), train or all; sav-frames: sav_val (default) or sav_test")
    p.add_argument("--engine", default="auto", choices=["auto", "ray", "local"],
                   help="ray: Ray Data (a local Ray unless --ray-address); local: this process (or one of several "
                        "with --workers / srun); auto: ray for a Ray cluster (--ray-address or RAY_ADDRESS) or "
                        "several GPUs, local otherwise")
    p.add_argument("--ray-address", help="an existing Ray cluster (HEAD:6379, 'auto', or ray://HEAD:10001; default "
                                         "$RAY_ADDRESS)")
    p.add_argument("--num-cpus", type=int, help="local Ray: CPUs to use (default: all)")
    p.add_argument("--num-gpus", type=int, help="local Ray: GPUs to use (default: all)")
    p.add_argument("--worker", type=int, help="local engine: this process's share (default: RANK or SLURM_PROCID)")
    p.add_argument("--workers", type=int, help="local engine: number of processes sharing the shards")
    p.add_argument("--videos-per-shard", type=int, help="videos per shard (default 64); fixed by the first run")
    p.add_argument("--depth", help="none (flat, default), const:<0..255>, or a DepthAnythingV2 name "
                                   "(small/base/large), hub id or folder")
    p.add_argument("--depth-input-size", type=int, help="the depth network's shorter side (default 512, the "
                                                        "release's; smaller is faster and coarser)")
    p.add_argument("--device", default="auto", help="for the depth model: cuda, cpu, or auto (cuda:LOCAL_RANK)")
    p.add_argument("--size", choices=sorted(SIZES), help="a named size (" + ", ".join(
        f"{n}: {s}" for n, s in SIZES.items()) + ", frames x height x width); --height/--width/--num-frames override")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--num-frames", type=int)
    p.add_argument("--stride", type=int)
    p.add_argument("--starts", choices=["first", "all"])
    p.add_argument("--hop", type=int)
    p.add_argument("--frames", help="how to store frames: jpeg (default), raw or none")
    p.add_argument("--kmeans-init", help="warm (default) or release (the release's K-means, exactly)")
    p.add_argument("--threads", type=int, help="local engine: torch CPU threads (default: torch's); one process "
                                               "per core with --threads 1 on CPU machines")
    p.add_argument("--quiet", action="store_true")


def precompute_config(args: argparse.Namespace):
    """The :class:`~levitor.training.precompute.PrecomputeConfig` of the flags: only those the user set override
    the defaults; a named ``--size`` first, then --height/--width/--num-frames over it."""
    from levitor.training.precompute import PrecomputeConfig

    names = ("dataset", "split", "height", "width", "num_frames", "stride", "starts", "hop", "depth",
             "depth_input_size", "frames", "kmeans_init", "videos_per_shard")
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if getattr(args, "size", None):
        size = video_size(args.size)
        given = {"height": size.height, "width": size.width, "num_frames": size.num_frames, **given}
    return PrecomputeConfig(**given)


def run_precompute(args: argparse.Namespace) -> int:
    """``levitor precompute``: the engine :func:`~levitor.training.precompute.choose_engine` picks (a local one, a
    Ray started here, or a Ray cluster); every refusal and every error of a stage, on either engine, is one line."""
    from levitor.training.precompute import choose_engine

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    config = precompute_config(args)
    for flag, least in (("threads", 1), ("num_cpus", 1), ("num_gpus", 0), ("depth_input_size", 1)):
        if getattr(args, flag, None) is not None and getattr(args, flag) < least:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {least}, got {getattr(args, flag)}")
    choice = choose_engine(args.engine, args.ray_address)
    if args.engine == "auto" and not args.quiet:
        print(f"levitor precompute: {choice.engine} engine ({choice.why})", file=sys.stderr)
    if choice.engine == "ray":
        from levitor.training.precompute_ray import run_ray

        report = run_ray(args.root, args.out, config, address=choice.address, num_cpus=args.num_cpus,
                         num_gpus=args.num_gpus, device=args.device)
    else:
        report = _run_local(args, config)
    damaged = f", {report.shards_damaged} damaged ones recomputed" if report.shards_damaged else ""
    print(f"levitor precompute ({report.engine}): {report.shards_done} shards written, {report.shards_existing} "
          f"already there (verified){damaged}, of {report.shards}; {report.samples} clips, {report.failed} failed, "
          f"{report.empty} without objects; {report.seconds:.1f} s ({report.clips_per_second:.2f} clips/s). "
          f"Report: {Path(args.out) / 'report.json'}")
    return 0


def _run_local(args: argparse.Namespace, config):
    """This process's share of the shards (``--worker``/``--workers`` or the launcher's rank)."""
    import torch

    from levitor._util.device import resolve_device
    from levitor.perception.depth_fn import load_depth_fn
    from levitor.training.precompute import resolve_worker, run_local

    if args.threads:
        torch.set_num_threads(args.threads)
    worker, workers = resolve_worker(args.worker, args.workers)
    depth_fn = load_depth_fn(config.depth, str(resolve_device(args.device)), config.depth_input_size)

    def progress(shard: str, rep) -> None:
        if not args.quiet:
            print(f"[worker {worker}/{workers}] {shard}: {rep.samples} clips written, {rep.failed} failed",
                  file=sys.stderr, flush=True)

    return run_local(args.root, args.out, config, depth_fn, worker, workers, progress)


def register(sub) -> None:
    p = sub.add_parser("train", help="train the ControlNet (accelerate); `levitor train configs/mini.yaml`",
                       description="Train the LeviTor ControlNet (accelerate: one CPU, one GPU, many GPUs).")
    add_train_arguments(p)
    p.set_defaults(run=run_train)
    p = sub.add_parser("precompute", help="depth + control signals for a dataset, sharded and resumable",
                       description=PRECOMPUTE_HELP)
    add_precompute_arguments(p)
    p.set_defaults(run=run_precompute)
    p = sub.add_parser("precompute-synthetic", help="write synthetic-world clips for training",
                       description="Render synthetic clips and control signals into a training cache.")
    add_synthetic_arguments(p)
    p.set_defaults(run=run_synthetic)
