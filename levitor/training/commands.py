"""``levitor train``, ``levitor precompute`` and ``levitor precompute-synthetic`` (the training layer's commands).

Light to import: the argument definitions are here, the work is imported when a command runs. The same
parsers serve ``python -m levitor.training CONFIG`` (for torchrun / accelerate launch) and
``python -m levitor.training.precompute``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from levitor.defaults import SIZES

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
    from levitor.training.loop import LaunchError, PeerLost, train

    try:
        config = load_config(args.config, **parse_overrides(args.set))
        result = train(config, resume=not args.no_resume)
    except (ValueError, OSError, LaunchError, PeerLost, FloatingPointError) as err:   # what to fix, in one line
        print(f"levitor train: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m levitor.training CONFIG [--set key=value ...] [--no-resume]`` (what torchrun / srun start)."""
    p = argparse.ArgumentParser(prog="levitor train", description="Train the LeviTor ControlNet.")
    add_train_arguments(p)
    return run_train(p.parse_args(argv))


# ----------------------------------------------------------------------------------- precompute-synthetic
def add_synthetic_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out")
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument("--config", help="a training config whose synthetic world and sizes to use (default: mini)")
    p.add_argument("--shard-size", type=int, default=500, help="clips per shard")


def run_synthetic(args: argparse.Namespace) -> int:
    from levitor.training.config import PRESETS, load_config
    from levitor.training.datasets import precompute_synthetic

    if args.clips < 1 or args.shard_size < 1:
        print(f"levitor precompute-synthetic: error: --clips and --shard-size must be >= 1, got {args.clips} and "
              f"{args.shard_size}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config) if args.config else PRESETS["mini"]
    except ValueError as err:
        print(f"levitor precompute-synthetic: error: {err}", file=sys.stderr)
        return 2
    t = time.time()
    precompute_synthetic(args.out, args.clips, config, shard_size=args.shard_size)
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


def run_precompute(args: argparse.Namespace) -> int:
    from levitor.training.precompute import run_precompute_command

    return run_precompute_command(args)


def precompute_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="levitor precompute", description=PRECOMPUTE_HELP)
    add_precompute_arguments(p)
    return p


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


if __name__ == "__main__":
    sys.exit(main())
