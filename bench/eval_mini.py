"""Does the mini model follow the control? Side-by-side evaluation on held-out synthetic clips.

    .venv/bin/python bench/eval_mini.py [--weights levitor/assets/mini] [--clips 32] [--pairs 16] [--steps 20]

For each held-out clip (seeds from ``EVAL_SEED_OFFSET``, never used in training) the model gets the clip's
first frame and a control video, and generates the clip. Variants, all with the same initial noise:

- ``control``: the clip's control (K-means points of every mask, ids, depth), as trained;
- ``zero``: the same model with the control video zeroed (what the model does from the image alone);
- ``no_depth`` / ``no_instance``: the control with the depth / instance entries zeroed (Table 2's channels,
  ablated at inference: the ablation models themselves were not trained, see docs/mini_model.md);
- ``center_point``: one point per object at its mask centre (with depth) instead of the clustered points;
- reference rows: ``truth`` (the real clip: checks the locator, should be ~0 px / IoU ~1) and ``still``
  (the first frame repeated: an object that does not move at all).

Training-free guidance (Time-to-Move, docs/ttm.md), with ``--ttm TWEAK:TSTRONG,...``: per setting,

- ``ttm@TWEAK-TSTRONG``: the same model without its ControlNet, steered by the warped reference video alone;
- ``control+ttm@TWEAK-TSTRONG``: the ControlNet with the clip's control and the warped reference together;
- and the row ``warped`` (free): the warped reference itself, scored like a generated video.

The warped reference is what a user of the Studio would get: the clip turned into a scene
(:meth:`SyntheticClip.to_scene`: the first frame, each sprite's frame-0 mask, its path through every frame),
re-rendered by the engine (:func:`levitor.generation.reference.warped_reference`), with the same initial noise as
the other rows (TTM's fixed noise).

Metrics, per sprite and frame (frames 1..F-1, sprites visible in the ground truth):

- follow error: distance in pixels between the requested centroid (of the rendered ground-truth mask) and the
  generated object's centroid, the generated object being the pixels of its flat colour (nearest palette colour
  of the clip within ``COLOR_TOLERANCE``); a sprite not found at all counts ``MISSING_PENALTY`` x the width;
- IoU of that colour mask with the ground-truth mask;
- occlusion order, on clips where one sprite passes behind another: where the two full silhouettes overlap,
  the front sprite's colour must win over the behind one's (summed over frames) for the clip to count as right.

Image quality, per clip (frames 1..F-1):

- PSNR of the generated frames against the ground-truth frames (dB, 0..255 scale);
- grain: the mean absolute difference (grey levels) between a frame and its 3x3 median-filtered self, for the
  generated frames and for the ground truth (the synthetic world's own texture has some): a grainy video has
  far more than the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COLOR_TOLERANCE = 70.0  # RGB distance to a (shaded) sprite colour under which a pixel counts as that sprite
MISSING_PENALTY = 0.5   # follow error of a sprite that is nowhere to be found, as a fraction of the width
MIN_AREA = 2            # ground-truth pixels a sprite needs in a frame to be scored there
PASSED_PX = 3.0         # a behind sprite "passed" if its mean follow error stays under this (pixels)
VARIANTS = ("control", "zero", "no_depth", "no_instance", "center_point")
TTM_MODES = {"ttm": "ttm", "control+ttm": "controlnet+ttm"}  # row prefix -> the pipeline's guidance


def ttm_rows(settings: list[tuple[float, float]]) -> list[tuple[str, str, float, float]]:
    """(row name, guidance, tweak, tstrong) of every TTM row."""
    return [(f"{prefix}@{tweak:g}-{tstrong:g}", guidance, tweak, tstrong)
            for tweak, tstrong in settings for prefix, guidance in TTM_MODES.items()]


def color_masks(frames: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """(F, H, W, 3) uint8 frames -> (F, n, H, W) bool: sprite k's object in each frame, found by its colour.

    Pixels whose colour is sprite k's (shaded 0.7..1.05x, within COLOR_TOLERANCE), then only the largest
    8-connected blob of them (so scattered noise pixels of a similar colour do not count as the object)."""
    x = frames.astype(np.float32)[..., None, :]  # (F, H, W, 1, 3)
    c = np.asarray(colors, np.float32)  # (n, 3)
    shade = np.clip((x * c).sum(-1) / (c * c).sum(-1), 0.7, 1.05)  # (F, H, W, n): best brightness match
    dist = np.linalg.norm(x - shade[..., None] * c, axis=-1)
    best = dist.argmin(-1)
    ok = dist.min(-1) < COLOR_TOLERANCE
    masks = np.stack([(best == k) & ok for k in range(len(colors))], axis=1)
    return np.stack([[_largest_blob(m) for m in per_frame] for per_frame in masks])


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    labels, n = label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(sizes.argmax()))


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def psnr(frames: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB) of frames 1..F-1 against the truth, 0..255 scale."""
    mse = float(np.mean((frames[1:].astype(np.float64) - truth[1:].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def grain(frames: np.ndarray) -> float:
    """Mean |frame - median3x3(frame)| over frames 1..F-1 (grey levels): per-pixel noise, not structure."""
    from scipy.ndimage import median_filter

    x = frames[1:].astype(np.float32)
    return float(np.abs(x - median_filter(x, size=(1, 3, 3, 1))).mean())


def score(frames: np.ndarray, clip) -> dict:
    """Follow error, found rate and IoU of generated ``frames`` (F, H, W, 3) uint8 against ``clip``."""
    F, _, W = clip.instance.shape
    masks = color_masks(frames, [s.color for s in clip.sprites])
    errs, ious, found = [], [], []
    for k, sp in enumerate(clip.sprites):
        for t in range(1, F):
            gt = clip.instance[t] == sp.id
            gen = masks[t, k]
            if gt.sum() < MIN_AREA:
                continue
            if gen.any():
                errs.append(float(np.linalg.norm(_centroid(gen) - _centroid(gt))))
                found.append(1.0)
            else:
                errs.append(MISSING_PENALTY * W)
                found.append(0.0)
            ious.append(float((gt & gen).sum() / (gt | gen).sum()))
    return {"follow_px": errs, "iou": ious, "found": found}


def occlusion_right(frames: np.ndarray, clip) -> tuple[bool, bool] | None:
    """On a pass-behind clip: (front wins, passed behind). "front wins": where the two full silhouettes
    overlap, the front sprite's colour covers more pixels than the behind one's (a model that moves nothing
    also passes this); "passed behind": front wins *and* the behind sprite followed its path (mean follow
    error under PASSED_PX), so it really went behind the other."""
    from levitor.data.synthetic import sprite_silhouette

    if not clip.pairs:
        return None
    front_id, behind_id = clip.pairs[0]
    by_id = {s.id: (k, s) for k, s in enumerate(clip.sprites)}
    (kf, front), (kb, behind) = by_id[front_id], by_id[behind_id]
    H, W = clip.instance.shape[1:]
    overlap = sprite_silhouette(front, H, W) & sprite_silhouette(behind, H, W)
    overlap[0] = False  # frame 0 is given, not generated
    if overlap.sum() < MIN_AREA:
        return None
    masks = color_masks(frames, [s.color for s in clip.sprites])
    n_front = int((masks[:, kf] & overlap).sum())
    n_behind = int((masks[:, kb] & overlap).sum())
    front_wins = n_front > n_behind
    behind_err = score(frames, clip.__class__(**{**clip.__dict__, "sprites": [behind]}))["follow_px"]
    passed = front_wins and bool(behind_err) and float(np.mean(behind_err)) < PASSED_PX
    return front_wins, passed


def controls_for(clip, config, info: dict, variants=VARIANTS) -> dict[str, torch.Tensor]:
    """(F, 3, H, W) raw control video of each variant (and of "control", which the TTM rows with control use)."""
    from levitor.training.datasets import control_video

    out = {}
    for name in {"control", *variants}:
        if name == "zero":
            continue
        variant = dataclasses.replace(config, control="full" if name == "control" else name)
        out[name] = control_video(clip.instance, clip.depth, clip.moved_ids, variant)
    out["zero"] = torch.zeros_like(out["control"])
    return out


def warped_for(clip) -> tuple[np.ndarray, np.ndarray]:
    """The engine's warped reference of the clip and its mask, as a user would make them from frame 0 and the
    sprites' paths."""
    from levitor.engine import Engine
    from levitor.generation.reference import warped_reference

    return warped_reference(Engine(clip.to_scene()).update())


def _world(world_from: str | Path | None, info: dict) -> dict:
    """The synthetic-world settings of a mini model folder (its mini.json) or of a training config file."""
    from levitor.generation.model_choice import mini_info
    from levitor.training.config import load_config

    if world_from is None:
        return info.get("synthetic", {})
    if Path(world_from).is_file():
        return dict(load_config(world_from).synthetic)
    return mini_info(world_from).get("synthetic", {})


def add_scores(result: dict[str, list], frames: np.ndarray, clip, with_psnr: bool = True) -> None:
    """Append one generated video's scores to its row's lists (PSNR left out for the truth: infinite)."""
    s = score(frames, clip)
    for key in ("follow_px", "iou", "found"):
        result[key] += s[key]
    result["grain"].append(grain(frames))
    if with_psnr:
        result["psnr"].append(psnr(frames, clip.frames))
    occ = occlusion_right(frames, clip)
    if occ is not None:
        result["occlusion"].append(bool(occ[0]))
        result["passed"].append(bool(occ[1]))


def evaluate(weights: str | Path, num_clips: int, num_pairs: int, steps: int, batch_clips: int = 4,
             out_dir: Path | None = None, seed: int = 0, world_from: str | Path | None = None,
             variants=VARIANTS, ttm: list[tuple[float, float]] = ()) -> dict:
    """``world_from``: a mini model folder or a training config whose synthetic world to draw the clips from
    (default: the evaluated model's own), so that two models trained on different worlds meet the same clips.
    ``variants``: the ControlNet rows; ``ttm``: (tweak, tstrong) settings of the TTM rows (none by default)."""
    from levitor.data.synthetic import generate_clip
    from levitor.defaults import NUM_INFERENCE_STEPS
    from levitor.generation.mini import load_mini_pipeline
    from levitor.training.config import EVAL_SEED_OFFSET, load_config, synthetic_config

    pipe = load_mini_pipeline(weights)
    info = pipe.mini_info
    config = load_config(None, base="mini", height=info["height"], width=info["width"],
                         num_frames=info["num_frames"], control_radius=info["control_radius"],
                         kmeans_stride=info["kmeans_stride"],
                         synthetic=_world(world_from, info))
    world = synthetic_config(config)
    pair_world = dataclasses.replace(world, min_sprites=2, pass_behind_prob=1.0)
    clips = [generate_clip(EVAL_SEED_OFFSET + i, world) for i in range(num_clips)]
    clips += [generate_clip(EVAL_SEED_OFFSET + 500_000 + i, pair_world) for i in range(num_pairs)]

    rows = ttm_rows(list(ttm))
    names = (*variants, *(row[0] for row in rows), "truth", "still", *(("warped",) if rows else ()))
    results = {name: {"follow_px": [], "iou": [], "found": [], "occlusion": [], "passed": [], "psnr": [],
                      "grain": []} for name in names}
    steps = steps or info.get("num_inference_steps", NUM_INFERENCE_STEPS)
    sampler = dict(num_inference_steps=steps, min_guidance_scale=1.0, max_guidance_scale=1.0, fps=info["fps"],
                   motion_bucket_id=info["motion_bucket_id"], noise_aug_strength=info["noise_aug_strength"],
                   output_type="np")
    strips = []
    t0 = time.time()
    for start in range(0, len(clips), batch_clips):
        group = clips[start:start + batch_clips]
        g = torch.Generator().manual_seed(seed + start)
        firsts, conds, noises, warps = [], [], [], []
        for clip in group:
            conds.append(controls_for(clip, config, info, variants))
            firsts.append(torch.from_numpy(clip.frames[0]).permute(2, 0, 1).float() / 255.0)
            noises.append(torch.randn(1, info["num_frames"], 3 * info["patch_size"] ** 2,
                                      info["height"] // info["patch_size"], info["width"] // info["patch_size"],
                                      generator=g))
            warps.append(warped_for(clip) if rows else None)
        batch = dict(images=torch.stack(firsts), noise=torch.cat(noises), seed=seed, **sampler)

        gens = [{} for _ in group]
        if variants:
            video = _run(pipe, batch, len(variants),
                         control=torch.stack([c[name] for c in conds for name in variants]))
            for c in range(len(group)):
                gens[c].update({name: video[c * len(variants) + v] for v, name in enumerate(variants)})
        for name, guidance, tweak, tstrong in rows:
            control = torch.stack([c["control"] for c in conds]) if guidance != "ttm" else None
            video = _run(pipe, batch, 1, control=control, guidance=guidance, tweak_fraction=tweak,
                         tstrong_fraction=tstrong, reference=np.stack([w[0] for w in warps]),
                         reference_mask=np.stack([w[1] for w in warps]))
            for c in range(len(group)):
                gens[c][name] = video[c]
        for c, clip in enumerate(group):
            gens[c]["truth"] = clip.frames
            gens[c]["still"] = np.repeat(clip.frames[:1], clip.num_frames, axis=0)
            if rows:
                gens[c]["warped"] = warps[c][0]
            for name, frames in gens[c].items():
                add_scores(results[name], frames, clip, with_psnr=name != "truth")
            if len(strips) < 6:
                shown = [n for n in ("truth", "control", "zero", *(r[0] for r in rows[:2])) if n in gens[c]]
                strips.append(np.concatenate([np.concatenate(list(gens[c][n]), 1) for n in shown], 0))
    summary = {}
    for name, r in results.items():
        summary[name] = {
            "follow_px": float(np.mean(r["follow_px"])), "iou": float(np.mean(r["iou"])),
            "found": float(np.mean(r["found"])),
            "occlusion_right": float(np.mean(r["occlusion"])) if r["occlusion"] else None,
            "passed_behind": float(np.mean(r["passed"])) if r["passed"] else None,
            "occlusion_clips": len(r["occlusion"]), "scored": len(r["follow_px"]),
            "psnr": float(np.mean(r["psnr"])) if r["psnr"] else None, "grain": float(np.mean(r["grain"])),
        }
    summary["_meta"] = {"weights": str(weights), "clips": num_clips, "pair_clips": num_pairs, "steps": steps,
                        "seconds": round(time.time() - t0, 1), "trained_steps": info.get("trained_steps"),
                        "size": f"{info['num_frames']}x{info['height']}x{info['width']}",
                        "world_from": str(world_from or weights), "ttm": [list(x) for x in ttm]}
    if out_dir is not None:
        from PIL import Image

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval_mini.json").write_text(json.dumps(summary, indent=2))
        grid = np.concatenate([np.pad(s, ((0, 2), (0, 0), (0, 0)), constant_values=255) for s in strips], 0)
        Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(
            out_dir / "eval_mini_samples.png")
    return summary


def _run(pipe, batch: dict, count: int, **kwargs) -> np.ndarray:
    """Generate every clip of a group ``count`` times in a row (one per variant), each from its own noise: (N, F,
    H, W, 3) uint8."""
    settings = dict(batch)
    images, noise, seed = settings.pop("images"), settings.pop("noise"), settings.pop("seed")
    video = pipe(images.repeat_interleave(count, 0), latents=noise.repeat_interleave(count, 0),
                 generator=torch.Generator().manual_seed(seed), **settings, **kwargs).frames
    return (np.asarray(video) * 255).round().clip(0, 255).astype(np.uint8)


def parse_ttm(text: str) -> list[tuple[float, float]]:
    """"0.32:0.42,0:0.5" -> [(0.32, 0.42), (0.0, 0.5)]."""
    from levitor.generation.guidance import TTM, check_guidance

    out = []
    for item in filter(None, text.split(",")):
        tweak, _, tstrong = item.partition(":")
        try:
            pair = (float(tweak), float(tstrong))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--ttm takes TWEAK:TSTRONG pairs like 0.32:0.42, got {item!r}") from None
        check_guidance(TTM, *pair)
        out.append(pair)
    return out


def table(summary: dict) -> str:
    rows = ["| variant | follow error (px) | found | mask IoU | front wins overlap | passed behind | PSNR (dB) "
            "| grain |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        if name.startswith("_"):
            continue
        occ = "-" if s["occlusion_right"] is None else f"{s['occlusion_right']:.0%} of {s['occlusion_clips']}"
        passed = "-" if s["passed_behind"] is None else f"{s['passed_behind']:.0%}"
        p = "-" if s["psnr"] is None else f"{s['psnr']:.2f}"
        rows.append(f"| {name} | {s['follow_px']:.2f} | {s['found']:.0%} | {s['iou']:.3f} | {occ} | {passed} | {p} | "
                    f"{s['grain']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from levitor.generation.model_choice import MINI_WEIGHTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(MINI_WEIGHTS), help="a mini model folder (default: the shipped)")
    parser.add_argument("--clips", type=int, default=32, help="held-out clips of the training distribution")
    parser.add_argument("--pairs", type=int, default=16, help="extra held-out clips with a pass-behind pair")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's own, from its mini.json)")
    parser.add_argument("--out", default="runs/eval_mini", help="folder for eval_mini.json and a sample picture")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"the ControlNet rows, comma-separated, from {','.join(VARIANTS)} (default: all)")
    parser.add_argument("--ttm", type=parse_ttm, default=[],
                        help="TTM rows: (tweak, tstrong) fractions as TWEAK:TSTRONG pairs, comma-separated, e.g. "
                             "0.32:0.42,0:0.5 (each adds a ttm@ row and a control+ttm@ row)")
    parser.add_argument("--world-from", default=None,
                        help="draw the clips from the synthetic world of this mini model folder or training config "
                             "(e.g. configs/mini.yaml; default: the model's own)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    summary = evaluate(args.weights, args.clips, args.pairs, args.steps, out_dir=Path(args.out),
                       world_from=args.world_from, variants=variants, ttm=args.ttm)
    print(table(summary))
    print(json.dumps(summary["_meta"]))
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {f.read().split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
