"""``levitor generate`` and ``levitor vram`` (the generation layer's commands)."""

from __future__ import annotations

import argparse
from pathlib import Path

from levitor.cli import print_warnings, seed_arg
from levitor.defaults import DEFAULT_SIZE, NUM_INFERENCE_STEPS, SIZES, video_size
from levitor.generation.guidance import (
    DEFAULT_GUIDANCE,
    GUIDANCE_LABELS,
    GUIDANCE_MODES,
    TSTRONG_FRACTION,
    TWEAK_FRACTION,
)
from levitor.generation.presets import DEFAULT_PRESET, PRESET_NAMES

RULE_CHOICES = ("auto", "levitor", "release")  # auto: the rules the weights were trained with


def _generate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from levitor.generation.generate import generate
    from levitor.scene import Scene

    scene = Scene.load(args.scene)
    out = Path(args.out)
    if out.is_dir():  # a folder: the video goes inside it
        out = out / "video.mp4"
    bars = []  # made at the first step: a failure before it (missing weights) prints no empty bar

    def progress(step: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="denoising", unit="step"))
        bars[0].update(step - bars[0].n)

    res = generate(scene, out.parent if str(out.parent) else ".", weights=args.weights, base=args.base,
                   device=args.device, steps=args.steps, preset=args.preset, seed=args.seed, callback=progress,
                   allow_download=not args.no_download, name=out.stem, suffix=out.suffix.lower() or ".mp4",
                   rules=None if args.rules == "auto" else args.rules, size=args.size, guidance=args.guidance,
                   tweak_fraction=args.tweak_fraction, tstrong_fraction=args.tstrong_fraction)
    for bar in bars:
        bar.close()
    print_warnings("levitor generate", res.warnings)
    print(f"levitor generate: wrote {res.video_path} ({res.seconds:.1f} s), control overlay {res.control_path}, "
          f"scene {res.scene_path}")
    return 0


def _vram(args: argparse.Namespace) -> int:
    from levitor.generation.memtrace import GB, predict_svd_xt_memory

    base = video_size(args.size) if args.size else DEFAULT_SIZE
    frames, height, width = base.num_frames, base.height, base.width
    if args.scene and not args.size:
        from levitor.scene import Scene

        scene = Scene.load(args.scene)
        frames, height, width = scene.num_frames, scene.height, scene.width
    frames, height, width = (given if given is not None else default for given, default in
                             ((args.frames, frames), (args.height, height), (args.width, width)))
    print(f"levitor vram: SVD-xt, {frames} frames {height}x{width}, CFG on; peak GPU memory predicted by tracing the "
          "pipeline on the meta device (tensor bytes, as torch.cuda.max_memory_allocated; add about 0.5 GB for the "
          "CUDA context)")
    for guidance in args.guidance or GUIDANCE_MODES:
        traces = predict_svd_xt_memory(frames, height, width, tuple(args.preset or PRESET_NAMES), guidance=guidance)
        print(f" guidance {guidance} ({GUIDANCE_LABELS[guidance]}):")
        for preset, trace in traces.items():
            stages = ", ".join(f"{name} {b / GB:.1f}" for name, b in trace.by_model.items() if name != "start")
            print(f"  {preset:8s}: {trace.peak_bytes / GB:5.1f} GB at the peak, during {trace.peak_during} "
                  f"(weights {trace.peak_weights_bytes / GB:.1f} GB); per model: {stages}")
    return 0


def _fraction(text: str) -> float:
    """A fraction of the denoising steps, in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction of the denoising steps in [0, 1], got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a video of a scene with SVD + the LeviTor ControlNet (or "
                                        "training-free, --guidance ttm)",
                       description="Generate a video of a scene with SVD + the LeviTor ControlNet, or training-free "
                                   "from the SVD-xt weights alone (--guidance ttm).")
    p.add_argument("--scene", required=True, help="scene.json")
    p.add_argument("--out", default="video.mp4", help="video path (.mp4 or .gif) or a folder; the scene and a "
                                                      "control overlay go beside it")
    p.add_argument("--weights", help="LeviTor weights folder (release layout), a saved LeviTorPipeline folder, "
                                     "or 'mini': the shipped 32x32 toy model (runs on any CPU, no download)")
    p.add_argument("--base", help="Stable Video Diffusion base (hub id or folder; default SVD-xt)")
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    p.add_argument("--steps", type=int, help=f"denoising steps (default: {NUM_INFERENCE_STEPS}; the mini model's own "
                                             "with --weights mini)")
    p.add_argument("--seed", type=seed_arg, help="0..2**63-1 (default: the scene's seed)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_NAMES)
    p.add_argument("--no-download", action="store_true", help="never download weights (HF_HUB_OFFLINE=1 does the same)")
    p.add_argument("--rules", default="auto", choices=RULE_CHOICES,
                   help="how the control signal is built: auto (default) = what the weights were trained with "
                        "(the release's rules for the released LeviTor weights), levitor, or release")
    p.add_argument("--size", choices=sorted(SIZES), help="generate at a named size instead of the scene's: "
                   + ", ".join(f"{n}: {s.height}x{s.width}" for n, s in SIZES.items())
                   + " (height x width; release-demo is what the release's demo runs). Not with --weights mini: "
                     "the mini model generates at the one size it was trained at")
    p.add_argument("--guidance", default=DEFAULT_GUIDANCE, choices=GUIDANCE_MODES,
                   help="controlnet (default): the LeviTor ControlNet reads the control points; ttm: training-free "
                        "(Time-to-Move): plain SVD steered by the scene's warped video, needs only the SVD-xt "
                        "weights; controlnet+ttm: both")
    p.add_argument("--tweak-fraction", type=_fraction, default=TWEAK_FRACTION,
                   help=f"ttm: start from the warped video noised to this fraction of the steps (default "
                        f"{TWEAK_FRACTION})")
    p.add_argument("--tstrong-fraction", type=_fraction, default=TSTRONG_FRACTION,
                   help=f"ttm: pin the moved objects to the warped video until this fraction of the steps (default "
                        f"{TSTRONG_FRACTION})")
    p.set_defaults(run=_generate)

    p = sub.add_parser("vram", help="predict the GPU memory a generation needs (traced on the meta device: no GPU "
                                    "and no weights needed)",
                       description="Predict the GPU memory a generation needs, per preset, without a GPU or weights.")
    p.add_argument("--scene", help="take frames and size from this scene.json")
    p.add_argument("--size", choices=sorted(SIZES), help="a named size (frames x height x width: "
                   + ", ".join(f"{n} {s}" for n, s in SIZES.items()) + "); --frames/--height/--width override it")
    p.add_argument("--frames", type=int, help=f"default: the scene's, else {DEFAULT_SIZE.num_frames}")
    p.add_argument("--height", type=int, help=f"default: the scene's, else {DEFAULT_SIZE.height}")
    p.add_argument("--width", type=int, help=f"default: the scene's, else {DEFAULT_SIZE.width}")
    p.add_argument("--preset", choices=PRESET_NAMES, action="append", help="default: every preset")
    p.add_argument("--guidance", choices=GUIDANCE_MODES, action="append", help="default: every mode")
    p.set_defaults(run=_vram)
