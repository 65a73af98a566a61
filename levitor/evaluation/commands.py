"""``levitor eval`` (the evaluation layer's command): evaluation of one model on DAVIS or precompute shards, beside
the paper's numbers; sharded over the ranks of torchrun / srun, resumable. Light to import; the work is imported
when the command runs."""

from __future__ import annotations

import argparse

from levitor.cli import seed_arg
from levitor.defaults import DEFAULT_SIZE, RELEASE_SEED, SIZES
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
    p.add_argument("--steps", type=int, default=25)
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
    from levitor.evaluation.runner import run_eval_command

    return run_eval_command(args)


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="levitor eval", description=EVAL_HELP)
    add_eval_arguments(p)
    return p


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on DAVIS or precompute shards: ObjMC, TrajErr, mask/box IoU "
                                    "(and FID/FVD) beside the paper's numbers",
                       description=EVAL_HELP)
    add_eval_arguments(p)
    p.set_defaults(run=run)
