"""``levitor eval`` (the evaluation layer's command): evaluation of one model on DAVIS or precompute shards, beside
the paper's numbers; sharded over the ranks of torchrun / srun (``torchrun ... -m levitor eval ...``), resumable.
Light to import; the layer (torch, the models) is imported when the command runs."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from levitor._util.launch import barrier_group, export_slurm_for_torch
from levitor.cli import seed_arg
from levitor.defaults import DEFAULT_SIZE, NUM_INFERENCE_STEPS, RELEASE_SEED, SIZES, video_size
from levitor.generation.presets import DEFAULT_PRESET, PRESET_NAMES

EVAL_HELP = ("Evaluation of one model on DAVIS or `levitor precompute` shards: ObjMC, TrajErr, mask/box IoU, optional "
             "FID/FVD; sharded over torchrun/srun ranks, resumable.")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="DAVIS 2017 folder (JPEGImages/480p, Annotations/480p, ImageSets/2017) or a "
                                "`levitor precompute` output folder (shards/*.tar)")
    p.add_argument("--source", default="auto", choices=["auto", "davis", "shards"],
                   help="what DATA is (auto: shards if it holds shards/ or plan.json, else DAVIS)")
    p.add_argument("--model", default="preview",
                   help="'preview' (the real clip: the sanity baseline), LeviTor weights or a LeviTorPipeline folder")
    p.add_argument("--base", help="Stable Video Diffusion base for release-layout weights (default SVD-xt)")
    p.add_argument("--name", help="model name in the tables (default: from --model)")
    p.add_argument("--setting", default="both", choices=["single", "multi", "both"])
    p.add_argument("--max-clips", type=int)
    p.add_argument("--sequences", nargs="+", help="only these DAVIS sequences")
    p.add_argument("--split", default="val")
    p.add_argument("--starts", default="first", choices=["first", "all"],
                   help="first: one clip per sequence (the paper); all: every non-overlapping 16-frame clip")
    p.add_argument("--tracker", default="fallback", choices=["fallback", "cotracker"])
    p.add_argument("--cotracker-checkpoint", help="default: $LEVITOR_HOME/models/cotracker/")
    p.add_argument("--masks", default="propagate", choices=["none", "propagate", "sam"],
                   help="generated-object masks for mask/box IoU: propagate (first-frame masks carried by tracked "
                        "points, no weights), sam (SAM per frame, needs its weights), none")
    p.add_argument("--sam", help="SAM weights for --masks sam: vit_b/vit_l/vit_h, a folder or a .pth (default vit_h)")
    p.add_argument("--depth", default="none", help="control depth: none (flat), const:<N>, or a DepthAnythingV2 "
                                                   "name/folder")
    p.add_argument("--quality", default="none", choices=["none", "fid-fvd", "random"],
                   help="FID/FVD: fid-fvd needs the Inception and I3D files (levitor.evaluation.metrics); random is a "
                        "meaningless smoke test")
    p.add_argument("--steps", type=int, default=NUM_INFERENCE_STEPS)
    p.add_argument("--seed", type=seed_arg, default=RELEASE_SEED)
    p.add_argument("--size", choices=sorted(SIZES), help="a named generation size (" + ", ".join(
        f"{n}: {s}" for n, s in SIZES.items()) + ", frames x height x width); --height/--width/--num-frames override")
    p.add_argument("--height", type=int, help=f"default {DEFAULT_SIZE.height} (or --size's)")
    p.add_argument("--width", type=int, help=f"default {DEFAULT_SIZE.width} (or --size's)")
    p.add_argument("--num-frames", type=int, help=f"default {DEFAULT_SIZE.num_frames} (or --size's)")
    p.add_argument("--kmeans-init", choices=["warm", "release"],
                   help="default: what the model was trained with (release for the released LeviTor weights)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per rank (default 1): per-clip figures depend on it, so it is recorded in "
                        "eval_settings.json and a resume with another count is refused")
    p.add_argument("--allow-thread-change", action="store_true",
                   help="resume a folder evaluated with another --threads (each row of per_clip.csv records its own)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_NAMES)
    p.add_argument("--no-videos", action="store_true", help="skip the per-clip track videos")
    p.add_argument("--out", help="output folder (default eval_out/<model name>)")
    p.add_argument("--no-resume", action="store_true", help="forget the results already in --out and start over")


def run(args: argparse.Namespace) -> int:
    """``levitor eval``: under torchrun or srun every rank runs this; rank 0 prints the summary."""
    from levitor._util.device import resolve_device
    from levitor.evaluation.masks import load_mask_estimator
    from levitor.evaluation.runner import (
        SETTINGS,
        ClipRow,
        EvalConfig,
        load_generator,
        load_quality,
        load_tracker,
        run_eval,
    )
    from levitor.evaluation.store import slug
    from levitor.perception.depth_fn import load_depth_fn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    size = video_size(args.size) if args.size else DEFAULT_SIZE   # --height etc. override it
    given = {"height": args.height, "width": args.width, "num_frames": args.num_frames}
    config = EvalConfig(**{k: getattr(size, k) if v is None else v for k, v in given.items()},
                        settings=SETTINGS if args.setting == "both" else (args.setting,), starts=args.starts,
                        max_clips=args.max_clips, write_videos=not args.no_videos, source=args.source,
                        depth=args.depth, kmeans_init=args.kmeans_init,
                        threads=args.threads)  # before any model: a bad value costs nothing
    launch = export_slurm_for_torch()      # before resolve_device: 'auto' picks cuda:LOCAL_RANK
    device = str(resolve_device(args.device))
    generator, label = load_generator(args.model, args.base, device, args.steps, args.seed, args.preset)
    name = args.name or label
    out = Path(args.out) if args.out else Path("eval_out") / slug(name.split(" ")[0])
    tracker = load_tracker(args.tracker, args.cotracker_checkpoint, device)
    masker = load_mask_estimator(args.masks, tracker, args.sam, device)
    depth_fn = None if args.depth in ("none", "flat") else load_depth_fn(args.depth, device)
    where = f"[rank {launch.rank}/{launch.world_size}] " if launch.world_size > 1 else ""

    def progress(r: ClipRow) -> None:
        iou = f", mask IoU {r.mask_iou:.2f}" if math.isfinite(r.mask_iou) else ""
        print(f"  {where}{r.name} [{r.setting}]: ObjMC {r.objmc:.2f} px over {r.points} points{iou}, "
              f"generation {r.generate_s:.1f} s, total {r.total_s:.1f} s", file=sys.stderr, flush=True)

    with barrier_group(launch) as barrier:
        summary = run_eval(args.data, generator, tracker, out, config, name, depth_fn, args.split, args.sequences,
                           load_quality(args.quality, device), progress, masker, launch, barrier,
                           resume=not args.no_resume, allow_thread_change=args.allow_thread_change)
    if launch.rank != 0:
        return 0
    if not summary.rows:
        print(f"levitor eval: no clip was evaluated ({len(summary.failures)} failures; see {out}/summary.json)",
              file=sys.stderr)
        return 1
    means = ", ".join(f"{s} {summary.mean_objmc(s):.2f}" for s in config.settings)
    ranks = f" by {launch.world_size} ranks" if launch.world_size > 1 else ""
    print(f"levitor eval: {name}: {summary.clips} clips ({summary.evaluated_now} evaluated now{ranks}), ObjMC "
          f"{means} px ({summary.tracker}); {summary.seconds_per_clip:.1f} s per clip. Wrote {out}/results.md, "
          f"results.csv, per_clip.csv{', videos/' if config.write_videos else ''}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on DAVIS or precompute shards: ObjMC, TrajErr, mask/box IoU "
                                    "(and FID/FVD) beside the paper's numbers",
                       description=EVAL_HELP)
    add_eval_arguments(p)
    p.set_defaults(run=run)
