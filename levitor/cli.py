"""The ``levitor`` command: demo, preview, generate, vram, studio.

Every subcommand is a thin shell over the library: what it does can be done from Python the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="levitor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build the bundled scene, its control signal, pictures and preview video")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--scene", help="use this scene.json instead of the bundled scene")
    p.add_argument("--frames", type=int, help="number of frames (default: the scene's, 16)")
    p.add_argument("--scale", type=float, help="control-point scale factor (default: the scene's, 1.0)")
    p.add_argument("--no-mini", action="store_true", help="skip the shipped mini model's generated video")

    p = sub.add_parser("preview", help="write the instant 'what moves where' video of a scene (no diffusion)")
    p.add_argument("scene", help="scene.json")
    p.add_argument("--out", default="preview.mp4", help="video path (.mp4 or .gif)")

    p = sub.add_parser("generate", help="generate a video of a scene with SVD + the LeviTor ControlNet")
    p.add_argument("--scene", required=True, help="scene.json")
    p.add_argument("--out", default="video.mp4", help="video path; the scene and a control overlay go beside it")
    p.add_argument("--weights", help="LeviTor weights folder (release layout), a saved LeviTorPipeline folder, "
                                     "or 'mini': the shipped 32x32 toy model (runs on any CPU, no download)")
    p.add_argument("--base", help="Stable Video Diffusion base (hub id or folder; default SVD-xt)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--steps", type=int,
                   help="denoising steps (default: 25; the mini model's own 3 with --weights mini)")
    p.add_argument("--seed", type=int, help="default: the scene's seed")
    p.add_argument("--preset", default="default", choices=["default", "low_vram"])
    p.add_argument("--no-download", action="store_true", help="never try the Hugging Face Hub")

    p = sub.add_parser("vram", help="predict the GPU memory a generation needs (traced on the meta device: no "
                                    "GPU and no weights needed)")
    p.add_argument("--scene", help="take frames and size from this scene.json")
    p.add_argument("--frames", type=int, help="default: the scene's, else 16")
    p.add_argument("--height", type=int, help="default: the scene's, else 320")
    p.add_argument("--width", type=int, help="default: the scene's, else 512")
    p.add_argument("--preset", choices=["default", "low_vram"], action="append",
                   help="default: both presets")

    p = sub.add_parser("studio", help="open the Studio notebook in JupyterLab")
    p.add_argument("target", nargs="?", help="an image or a scene.json (default: the bundled scene)")
    p.add_argument("--port", type=int)
    p.add_argument("--no-browser", action="store_true")

    # these two parse their own flags (their modules also run as `python -m ...` under torchrun)
    sub.add_parser("precompute", help="depth + control signals for a dataset, sharded and resumable",
                   add_help=False)
    sub.add_parser("eval", help="evaluate a model on DAVIS: ObjMC (and FID/FVD) beside the paper's numbers",
                   add_help=False)
    sub.add_parser("train", help="train the ControlNet (accelerate); `levitor train configs/mini.yaml`",
                   add_help=False)
    sub.add_parser("precompute-synthetic", help="write synthetic-world clips for training", add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("precompute", "eval", "train", "precompute-synthetic"):
        return _delegate(argv[0], argv[1:])

    args = parser.parse_args(argv)
    try:
        return {"demo": _demo, "preview": _preview, "generate": _generate, "vram": _vram,
                "studio": _studio}[args.command](args)
    except (ValueError, FileNotFoundError) as e:  # bad input and missing weights: say what to do, no traceback
        print(f"levitor {args.command}: error: {e}", file=sys.stderr)
        return 2


def _delegate(command: str, argv: list[str]) -> int:
    if command == "precompute":
        from levitor.precompute import precompute_main

        return precompute_main(argv)
    if command == "eval":
        from levitor.eval_runner import eval_main

        return eval_main(argv)
    from levitor.train import main as train_main, precompute_main as synthetic_main

    return train_main(argv) if command == "train" else synthetic_main(argv)


def _load_scene(path: str | None):
    from levitor.bundled import bundled_scene
    from levitor.scene import Scene

    return Scene.load(path) if path else bundled_scene()


def _demo(args) -> int:
    from PIL import Image

    from levitor.control.encode import encode
    from levitor.engine import Engine
    from levitor.viz import conditioning_picture, contact_sheet, depth_picture, overlay
    from levitor.viz_video import write_video

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = _load_scene(args.scene)
    if args.frames:
        scene.num_frames = args.frames
    if args.scale:
        scene.scale = args.scale
    scene.save(out / "scene.json")

    t0 = time.perf_counter()
    engine = Engine(scene)
    res = engine.update()
    cond = encode(res.signal)
    ms = (time.perf_counter() - t0) * 1e3
    F = scene.num_frames

    def save(name: str, img: np.ndarray) -> None:
        Image.fromarray(img).save(out / name)

    save("input.png", scene.image)
    save("depth.png", depth_picture(scene.depth))
    save("instances.png", overlay(scene.image, res.instance[0], res.signal, 0))
    picks = sorted({round(i * (F - 1) / 7) for i in range(8)})
    save("frames.png", contact_sheet([overlay(res.color[f], res.instance[f], res.signal, f) for f in picks],
                                     cols=4, labels=[f"frame {f}" for f in picks]))
    save("conditioning.png", conditioning_picture(cond, F - 1))
    scales = [0.25, 1.0, 4.0]
    strip = [overlay(res.color[F - 1], res.instance[F - 1], engine.signal_for_scale(s), F - 1) for s in scales]
    save("scale_strip.png", contact_sheet(strip, cols=3, labels=[f"scale {s}" for s in scales]))
    write_video(res.color.numpy(), out / "preview.mp4", fps=8)
    write_video(res.color.numpy(), out / "preview.gif", fps=8)
    write_video(np.stack([overlay(res.color[f], res.instance[f], res.signal, f) for f in range(F)]),
                out / "control_overlay.mp4", fps=8)
    np.savez_compressed(out / "control.npz", points=res.signal.points.numpy(), depth=res.signal.depth.numpy(),
                        instance=res.signal.instance.numpy(), visible=res.signal.visible.numpy(),
                        conditioning=cond.numpy().astype(np.uint8))

    mini_note = ""
    if not args.no_mini:  # a real (tiny) generated video, no download: the shipped mini model
        from levitor.mini import demo as mini_demo

        mini = mini_demo(scene, out)
        mini_note = (f"  mini model: generated a controlled {mini['frames'].shape[0]}-frame video in "
                     f"{mini['seconds']:.1f} s -> mini_video.mp4, mini_video.gif, mini_frames.png "
                     "(a 32x32 model trained on the synthetic world: see docs/mini_model.md)\n")

    names = {i: scene.objects[j].name for j, i in enumerate(res.object_ids)}
    print(f"levitor demo: {scene.width}x{scene.height}, {F} frames, {len(scene.masks)} masks, "
          f"{len(scene.objects)} moving objects; control signal built in {ms:.0f} ms")
    print("  points per instance: " + ", ".join(f"{i}{' (' + names[i] + ')' if i in names else ''}: {k}"
                                               for i, k in sorted(res.k.items())))
    print(f"  wrote {out}/: scene.json, input.png, depth.png, instances.png, frames.png, conditioning.png, "
          "scale_strip.png, preview.mp4, preview.gif, control_overlay.mp4, control.npz")
    print(mini_note + "  for a full-quality video: levitor generate --scene " + str(out / "scene.json") +
          " (needs the SVD-xt + LeviTor weights: docs/weights.md)", end="\n")
    return 0


def _preview(args) -> int:
    from levitor.engine import Engine
    from levitor.scene import Scene

    path = Engine(Scene.load(args.scene)).write_preview(args.out)
    print(f"levitor preview: wrote {path}")
    return 0


def _generate(args) -> int:
    from levitor.generate import generate
    from levitor.scene import Scene

    from tqdm.auto import tqdm

    scene = Scene.load(args.scene)
    out = Path(args.out)
    bar = tqdm(total=args.steps, desc="denoising", unit="step")

    def progress(step: int, total: int) -> None:
        bar.total = total
        bar.update(step - bar.n)

    res = generate(scene, out.parent if str(out.parent) else ".", weights=args.weights, base=args.base,
                   device=args.device, steps=args.steps, preset=args.preset, seed=args.seed, callback=progress,
                   allow_download=not args.no_download, name=out.stem)
    bar.close()
    print(f"levitor generate: wrote {res.video_path} ({res.seconds:.1f} s), control overlay {res.control_path}, "
          f"scene {res.scene_path}")
    return 0


def _vram(args) -> int:
    from levitor.memtrace import GB, predict_svd_xt_memory

    frames, height, width = 16, 320, 512
    if args.scene:
        from levitor.scene import Scene

        scene = Scene.load(args.scene)
        frames, height, width = scene.num_frames, scene.height, scene.width
    frames, height, width = (given if given is not None else default for given, default in
                             ((args.frames, frames), (args.height, height), (args.width, width)))
    print(f"levitor vram: SVD-xt + LeviTor ControlNet, {frames} frames {height}x{width}, CFG on; peak GPU memory "
          "predicted by tracing the pipeline on the meta device (tensor bytes, as torch.cuda.max_memory_allocated; "
          "add about 0.5 GB for the CUDA context)")
    for preset, trace in predict_svd_xt_memory(frames, height, width, tuple(args.preset or
                                                                          ["default", "low_vram"])).items():
        stages = ", ".join(f"{name} {b / GB:.1f}" for name, b in trace.by_model.items() if name != "start")
        print(f"  {preset:8s}: {trace.peak_bytes / GB:5.1f} GB at the peak, during {trace.peak_during} "
              f"(weights {trace.peak_weights_bytes / GB:.1f} GB); per model: {stages}")
    return 0


def _studio(args) -> int:
    from levitor.studio_launch import launch_studio, wait_ready

    proc = launch_studio(args.target, port=args.port, open_browser=not args.no_browser)
    try:
        wait_ready(proc)
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
