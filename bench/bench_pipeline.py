"""Speed and memory of LeviTorPipeline (ControlNet and training-free TTM guidance) against diffusers'
StableVideoDiffusionPipeline, same weights, same run.

    python bench/bench_pipeline.py                 # CUDA if present, else a labelled reduced CPU run
    python bench/bench_pipeline.py --json out.json # also write the figures as JSON

On CUDA (defaults): random weights of the real SVD-xt architecture (built from its config, nothing is
downloaded), fp16, 25 steps, CFG on (1.0 -> 3.0), decode_chunk_size 8 for both pipelines:
  1. 16 frames 320x512: time of the full LeviTor pipeline vs plain SVD (target ratio <= 1.4x), and of
     guidance="ttm" (no ControlNet; TTM's default schedule starts at step 8 of 25, plus the reference's VAE
     encode) vs plain SVD;
  2. peak VRAM with the "default" and "low_vram" presets (target low_vram <= 14 GB);
  3. 25 frames 576x1024: both timings, for reference.
On CPU (defaults): the same comparison at a reduced size (8 frames 128x128, 2 steps) with the tiny test
architecture, labelled as such: it checks that the script works, its numbers say nothing about the GPU targets.
The random weights make noise; only time and memory are measured.
On any machine, the peak VRAM of both presets at both GPU sizes is also predicted by tracing the SVD-xt pipeline
on the meta device (levitor.generation.memtrace); on CUDA each prediction is printed beside its measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass

import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel

from levitor.control.encode import encode
from levitor.control.signal import ControlSignal
from levitor.generation.guidance import GUIDANCE_MODES, TSTRONG_FRACTION, TWEAK_FRACTION, TTMSchedule
from levitor.generation.memtrace import GB, predict_svd_xt_memory
from levitor.generation.pipeline import LeviTorPipeline
from levitor.testing.tiny import random_svd_xt_pipeline, tiny_image, tiny_pipeline

GIB = 1024**3


@dataclass
class Case:
    frames: int
    height: int
    width: int
    steps: int


def bench_signal(case: Case, num_points: int = 64, seed: int = 0) -> ControlSignal:
    """A control with as many points as a busy scene gives (the release also controls every SAM mask):
    8 objects x 8 points drifting right."""
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(num_points, 2, generator=g) * torch.tensor([case.width * 0.8, case.height * 0.8])
    drift = torch.arange(case.frames, dtype=torch.float32)[:, None, None] * torch.tensor([case.width / 64, 0.0])
    return ControlSignal(points=start[None] + drift, depth=torch.rand(case.frames, num_points, generator=g) * 255,
                         instance=torch.arange(num_points) // 8 + 1,
                         visible=torch.ones(case.frames, num_points, dtype=torch.bool),
                         height=case.height, width=case.width)


def plain_svd(pipe: LeviTorPipeline) -> StableVideoDiffusionPipeline:
    """diffusers' own pipeline over the same modules; its UNet shares the LeviTor UNet's weight tensors."""
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel.from_config(pipe.unet.svd_config)
    unet.load_state_dict(pipe.unet.state_dict(), assign=True)
    svd = StableVideoDiffusionPipeline(vae=pipe.vae, image_encoder=pipe.image_encoder, unet=unet.eval(),
                                       scheduler=pipe.scheduler, feature_extractor=pipe.feature_extractor)
    svd.set_progress_bar_config(disable=True)
    return svd


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_reference(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """A warped reference for TTM: frames (F, H, W, 3) uint8 and a mask of a quarter of the image drifting right
    (the values change no timing; the mask's size changes nothing either: pinning is one torch.where a step)."""
    frames = (torch.rand(case.frames, case.height, case.width, 3, generator=torch.Generator().manual_seed(1)) * 255)
    mask = torch.zeros(case.frames, case.height, case.width, dtype=torch.bool)
    for f in range(case.frames):
        x = f * case.width // (2 * case.frames)
        mask[f, case.height // 4: 3 * case.height // 4, x: x + case.width // 2] = True
    return frames.to(torch.uint8), mask


MODES = ("svd", "controlnet", "ttm")  # plain diffusers SVD, LeviTor's ControlNet, training-free TTM


def run_once(pipe, case: Case, device: torch.device, mode: str, decode_chunk_size: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one generation. On a shared CPU the CPU time is the steadier figure.
    mode: "svd" (``pipe`` is diffusers' pipeline), "controlnet" or "ttm" (``pipe`` is LeviTor's)."""
    image = tiny_image(case.height, case.width)
    kwargs = dict(height=case.height, width=case.width, num_frames=case.frames, num_inference_steps=case.steps,
                  min_guidance_scale=1.0, max_guidance_scale=3.0, fps=6, motion_bucket_id=100,
                  noise_aug_strength=0.02, decode_chunk_size=decode_chunk_size, output_type="pt",
                  generator=torch.Generator().manual_seed(217113))
    if mode == "controlnet":
        kwargs["control"] = bench_signal(case)
    elif mode == "ttm":
        reference, mask = bench_reference(case)
        kwargs.update(guidance="ttm", reference=reference, reference_mask=mask)
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    pipe(image, **kwargs)
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_pair(pipe: LeviTorPipeline, svd, case: Case, device, repeats: int, decode_chunk_size: int) -> dict:
    """Alternate plain SVD, the ControlNet and TTM (after a short warm-up) so drift hits all alike; report the
    minimum of each. ``levitor_*`` is the ControlNet mode (the keys of earlier runs), ``ttm_*`` the TTM mode."""
    warm = Case(case.frames, case.height, case.width, steps=min(case.steps, 2))
    runners = {"svd": svd, "controlnet": pipe, "ttm": pipe}
    for mode in MODES:
        run_once(runners[mode], warm, device, mode, decode_chunk_size)
    times = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:
            times[mode].append(run_once(runners[mode], case, device, mode, decode_chunk_size))
    wall = {mode: min(w for w, _ in t) for mode, t in times.items()}
    cpu = {mode: min(c for _, c in t) for mode, t in times.items()}
    steps_run = TTMSchedule.from_fractions(TWEAK_FRACTION, TSTRONG_FRACTION, case.steps).steps_run
    return dict(case=asdict(case), svd_s=wall["svd"], levitor_s=wall["controlnet"],
                ratio=wall["controlnet"] / wall["svd"], ttm_s=wall["ttm"], ttm_ratio=wall["ttm"] / wall["svd"],
                svd_cpu_s=cpu["svd"], levitor_cpu_s=cpu["controlnet"], cpu_ratio=cpu["controlnet"] / cpu["svd"],
                ttm_cpu_s=cpu["ttm"], ttm_cpu_ratio=cpu["ttm"] / cpu["svd"], ttm_steps_run=steps_run,
                svd_all=times["svd"], levitor_all=times["controlnet"], ttm_all=times["ttm"])


def peak_memory(pipe: LeviTorPipeline, preset: str, case: Case, device: torch.device, mode: str = "controlnet"
                ) -> dict:
    pipe.apply_preset(preset, device=device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    seconds, _ = run_once(pipe, case, device, mode, decode_chunk_size=pipe._preset_decode_chunk_size)
    return dict(preset=preset, mode=mode, case=asdict(case), seconds=seconds,
                peak_allocated_gib=torch.cuda.max_memory_allocated(device) / GIB,
                peak_reserved_gib=torch.cuda.max_memory_reserved(device) / GIB)


def predicted_memory(cases: list[Case], modes: tuple[str, ...] = GUIDANCE_MODES) -> list[dict]:
    """Peak bytes of the SVD-xt pipeline traced on the meta device (no GPU, no weights), per guidance mode: what
    the measured peaks are compared with."""
    rows = []
    for case in cases:
        for guidance in modes:
            traces = predict_svd_xt_memory(case.frames, case.height, case.width, guidance=guidance)
            for preset, trace in traces.items():
                rows.append(dict(preset=preset, guidance=guidance, case=asdict(case),
                                 predicted_gb=trace.peak_bytes / GB, predicted_gib=trace.peak_bytes / GIB,
                                 during=trace.peak_during, by_model_gb={k: v / GB for k, v in trace.by_model.items()}))
    return rows


@torch.no_grad()
def predicted_flop_ratio(case: Case, decode_chunk_size: int = 8) -> dict:
    """LeviTor / plain SVD by FLOPs (torch's FlopCounterMode on the meta device, SVD-xt, CFG): what the time ratio
    would be if every kernel ran equally fast. Per step: UNet vs UNet + ControlNet; once per video: the control's
    embedding, the VAE decode (CLIP and the VAE encode of one image are negligible and equal)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = random_svd_xt_pipeline("meta", torch.float16)
    h, w, f = case.height // 8, case.width // 8, case.frames

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    meta = dict(device="meta", dtype=torch.float16)
    sample, ids = torch.empty(2, f, 8, h, w, **meta), torch.empty(2, 3, **meta)
    context, cond = torch.empty(2, 1, 1024, **meta), torch.empty(1, f, 3, case.height, case.width, **meta)
    t = torch.tensor(1.0)
    embedding = torch.cat([pipe.controlnet.embed_condition(cond)] * 2)
    unet = flops(lambda: pipe.unet(sample, t, encoder_hidden_states=context, added_time_ids=ids))
    controlnet = flops(lambda: pipe.controlnet(sample, t, context, None, ids, cond_embedding=embedding))
    embed = flops(lambda: pipe.controlnet.embed_condition(cond))
    decode = sum(flops(lambda n=n: pipe.vae.decode(torch.empty(n, 4, h, w, **meta), num_frames=n))
                 for n in [min(decode_chunk_size, f - i) for i in range(0, f, decode_chunk_size)])
    encode = flops(lambda: pipe.vae.encode(torch.empty(f, 3, case.height, case.width, **meta)))  # the reference
    svd = case.steps * unet + decode
    levitor = case.steps * (unet + controlnet) + embed + decode
    ttm = TTMSchedule.from_fractions(TWEAK_FRACTION, TSTRONG_FRACTION, case.steps).steps_run * unet + encode + decode
    return dict(case=asdict(case), unet_step_tflop=unet / 1e12, controlnet_step_tflop=controlnet / 1e12,
                embed_tflop=embed / 1e12, decode_tflop=decode / 1e12, reference_encode_tflop=encode / 1e12,
                step_ratio=(unet + controlnet) / unet, ratio=levitor / svd, ttm_ratio=ttm / svd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", choices=["svd-xt", "tiny"], default=None,
                        help="model architecture (default: svd-xt on CUDA, tiny on CPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decode-chunk-size", type=int, default=8,
                        help="frames per VAE decode call in both pipelines (levitor's default preset: all at once)")
    parser.add_argument("--temporal-order", choices=["release", "diffusers"], default="release",
                        help="the LeviTor UNet's and ControlNet's temporal context order: release (what the "
                             "released weights run, default) or diffusers (plain SVD's, levitor-trained models)")
    parser.add_argument("--no-reference", action="store_true", help="skip the 25x576x1024 timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the preset peak-VRAM comparison")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    arch = args.arch or ("svd-xt" if cuda else "tiny")
    dtype = torch.float16 if cuda else torch.float32
    main_case = Case(16, 320, 512, 25) if cuda else Case(8, 128, 128, 2)
    label = (f"{torch.cuda.get_device_name(device)}" if cuda else f"CPU ({platform.processor() or 'unknown'}, "
             f"{torch.get_num_threads()} threads) -- REDUCED SIZE, {arch} architecture: not the GPU targets")
    print(f"device: {label}\narch: {arch}, dtype: {dtype}, torch {torch.__version__}")

    t0 = time.perf_counter()
    pipe = random_svd_xt_pipeline(device, dtype) if arch == "svd-xt" else tiny_pipeline(seed=0).to(device)
    pipe.set_progress_bar_config(disable=True)
    for model in (pipe.unet, pipe.controlnet):
        model.set_temporal_context_order(args.temporal_order)
    svd = plain_svd(pipe)
    print(f"built in {time.perf_counter() - t0:.1f} s")
    behaviours = (f"temporal context order {args.temporal_order} (LeviTor UNet + ControlNet; plain SVD: diffusers'), "
                  f"VAE decode {args.decode_chunk_size} frames per call in both timed pipelines (the memory rows: "
                  "each preset's own), control: a fixed 64-point signal (no scene, so no control rules)")
    print(f"behaviours: {behaviours}")

    results = dict(device=label, arch=arch, dtype=str(dtype), torch=torch.__version__, behaviours=behaviours,
                   timings=[], memory=[])
    row = time_pair(pipe, svd, main_case, device, args.repeats, args.decode_chunk_size)
    results["timings"].append(row)
    c = main_case
    print(f"{c.frames}x{c.height}x{c.width}, {c.steps} steps, CFG: SVD {row['svd_s']:.2f} s, "
          f"LeviTor {row['levitor_s']:.2f} s, ratio {row['ratio']:.3f} (target <= 1.4); TTM (no ControlNet, "
          f"{row['ttm_steps_run']} of {c.steps} steps run, plus the reference encode) {row['ttm_s']:.2f} s, ratio "
          f"{row['ttm_ratio']:.3f}")
    if not cuda:
        print(f"  process CPU time: SVD {row['svd_cpu_s']:.2f} s, LeviTor {row['levitor_cpu_s']:.2f} s, "
              f"ratio {row['cpu_ratio']:.3f}; TTM {row['ttm_cpu_s']:.2f} s, ratio {row['ttm_cpu_ratio']:.3f} "
              "(steadier than wall time on a shared CPU)")

    # the control is drawn on the CPU every call; its share of the LeviTor time, for reading the ratio
    start = time.perf_counter()
    encode(bench_signal(c), c.height, c.width)
    results["control_encode_s"] = time.perf_counter() - start
    print(f"  of which control encoding (on the CPU, 64 points): {results['control_encode_s']:.3f} s")
    for gpu_case in (Case(16, 320, 512, 25), Case(25, 576, 1024, 25)):
        r = predicted_flop_ratio(gpu_case, args.decode_chunk_size)
        results.setdefault("predicted_flops", []).append(r)
        print(f"  by FLOPs (SVD-xt, {gpu_case.frames}x{gpu_case.height}x{gpu_case.width}, {gpu_case.steps} steps): "
              f"UNet {r['unet_step_tflop']:.1f} + ControlNet {r['controlnet_step_tflop']:.1f} TFLOP a step, "
              f"control embedding {r['embed_tflop']:.2f} once, VAE decode {r['decode_tflop']:.1f}: "
              f"ratio {r['ratio']:.3f}; TTM (reference encode {r['reference_encode_tflop']:.1f}): ratio "
              f"{r['ttm_ratio']:.3f}")

    if cuda and not args.no_reference:
        ref = time_pair(pipe, svd, Case(25, 576, 1024, 25), device, 1, args.decode_chunk_size)
        results["timings"].append(ref)
        print(f"25x576x1024, 25 steps, CFG (reference): SVD {ref['svd_s']:.2f} s, LeviTor {ref['levitor_s']:.2f} s, "
              f"ratio {ref['ratio']:.3f}; TTM {ref['ttm_s']:.2f} s, ratio {ref['ttm_ratio']:.3f}")

    if not args.no_memory:
        predicted = predicted_memory([Case(16, 320, 512, 25), Case(25, 576, 1024, 25)])
        results["predicted_memory"] = predicted
        print("peak VRAM predicted by a meta-device trace (SVD-xt, fp16, CFG; tensor bytes, no CUDA context):")
        for row in predicted:
            c = row["case"]
            print(f"  {c['frames']}x{c['height']}x{c['width']} {row['guidance']:14s} {row['preset']:8s}: "
                  f"{row['predicted_gib']:.2f} GiB ({row['predicted_gb']:.2f} GB), during {row['during']}")
    if cuda and not args.no_memory:
        del svd  # its UNet shares the weight tensors and would pin them on the GPU under CPU offload
        # TTM measured on the pipeline with its ControlNet moved off (as from_pretrained(controlnet=None) loads it)
        for mode, preset in (("controlnet", "default"), ("controlnet", "low_vram"), ("ttm", "default")):
            run_pipe = pipe
            if mode == "ttm":
                pipe.apply_preset("default", device=device)  # no offload hooks left on the shared modules
                pipe.controlnet.to("cpu")
                run_pipe = LeviTorPipeline(**{**pipe.components, "controlnet": None})
                run_pipe.set_progress_bar_config(disable=True)
            mem = peak_memory(run_pipe, preset, main_case, device, mode)
            results["memory"].append(mem)
            target = " (target <= 14 GB)" if preset == "low_vram" else ""
            guess = next(r for r in predicted if r["preset"] == preset and r["guidance"] == mode
                         and r["case"] == asdict(main_case))
            mem["predicted_gib"] = guess["predicted_gib"] if arch == "svd-xt" else None
            beside = f", predicted {guess['predicted_gib']:.2f} GiB" if arch == "svd-xt" else ""
            print(f"{mode} preset {preset}: peak allocated {mem['peak_allocated_gib']:.2f} GiB{beside}, reserved "
                  f"{mem['peak_reserved_gib']:.2f} GiB{target}, {mem['seconds']:.2f} s")
        pipe.apply_preset("default", device=device)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
