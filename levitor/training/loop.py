"""Train the LeviTor ControlNet with accelerate: one CPU, one GPU, or many GPUs on many nodes.

    levitor train configs/paper.yaml                              # one process
    accelerate launch --multi_gpu --num_processes 8 -m levitor.training configs/paper.yaml
    torchrun --nproc-per-node 8 -m levitor.training configs/paper.yaml
    srun python -m levitor.training configs/paper.yaml             # SLURM tasks (scripts/slurm/train_8x8.sbatch)

On a cluster every stop and checkpoint decision is collective: each step the ranks reduce their flags (SIGTERM
received, time for a checkpoint, out of time) and act together, so no rank waits in a barrier the others never
reach. Each rank draws its own noise (seeded from seed, step and process index); the logged loss is the mean over
ranks; warm-up counts optimizer steps whatever the process count.

What trains (EDM / v-prediction, as SVD): a clip's frames are encoded by the VAE; the first frame (with
``noise_aug_strength`` noise) is the image condition, concatenated to every frame's noisy latents, and its CLIP
embedding the cross-attention context; noise levels are log-normal (``p_mean``, ``p_std``); the loss is SVD's
EDM-weighted error of the denoised latents. The ControlNet sees the control video of the clip (K-means points
of every object mask, instance ids, depth values: :mod:`levitor.control`), computed on the fly from masks and
depth, or read from a cache made by :func:`precompute_synthetic`.

Two presets (:data:`PRESETS`): ``paper`` (real SVD-xt, UNet frozen, ControlNet from the UNet's encoder, the
paper's hyper-parameters) and ``mini`` (the small model of :mod:`levitor.generation.mini`, UNet and ControlNet trained
from scratch on the synthetic world on a CPU). Table 2's ablations: ``control: no_depth | no_instance |
center_point``.

A run folder holds ``config.json``, ``log.jsonl`` (one line per ``log_every`` steps) and its picture
``loss_curve.png`` (redrawn at each checkpoint), ``checkpoints/step_N/``
(accelerate state: models, optimizer, scheduler, RNG, EMA, ``progress.json``), ``export/`` (inference weights
of the latest checkpoint), ``samples/`` and TensorBoard logs. Running the same config again resumes from the
latest checkpoint.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from levitor._util.io import write_text_atomic
from levitor._util.launch import export_slurm_for_torch
from levitor.training.config import EVAL_SEED_OFFSET, TrainConfig
from levitor.training.datasets import ResumableSampler, SyntheticControlDataset, make_dataset
from levitor.training.loss import edm_loss
from levitor.training.models import build_models


def _checkpoints(out: Path) -> list[Path]:
    folders = [p for p in (out / "checkpoints").glob("step_*") if (p / "progress.json").exists()]
    return sorted(folders, key=lambda p: int(p.name.split("_")[1]))


def train(config: TrainConfig, resume: str | bool = True) -> dict:
    """Run (or resume) training. ``resume``: True = the latest checkpoint in output_dir, a path, or False.

    Returns the final progress: {"step", "loss", "wall_s", "checkpoint"}.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trackers = []
    try:
        import tensorboard  # noqa: F401

        trackers = ["tensorboard"]
    except ImportError:
        pass
    launch = export_slurm_for_torch()
    # the scheduler is stepped once per optimizer step by us (accelerate would step it num_processes times)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum,
                              log_with=trackers or None, step_scheduler_with_optimizer=False,
                              project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tb")))
    check_launch(config, accelerator.num_processes, launch.world_size, launch.source)
    set_seed(config.seed)

    pipe = build_models(config)
    unet, controlnet = pipe.unet, pipe.controlnet
    pipe.vae.requires_grad_(False)
    pipe.image_encoder.requires_grad_(False)
    unet.requires_grad_(config.train_unet)
    controlnet.requires_grad_(True)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        if config.train_unet:
            unet.enable_gradient_checkpointing()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    pipe.vae.to(accelerator.device, dtype=weight_dtype if config.model == "svd" else torch.float32)
    pipe.image_encoder.to(accelerator.device, dtype=weight_dtype)
    if not config.train_unet:
        unet.to(accelerator.device, dtype=weight_dtype)

    trained = [controlnet] + ([unet] if config.train_unet else [])
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps,
                                 num_training_steps=config.max_steps)
    ema = None
    if config.ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=config.ema_decay)

    # resume: progress first (it decides where the data stream starts)
    ckpts = _checkpoints(out)
    resume_from = None
    if resume is True and ckpts:
        resume_from = ckpts[-1]
    elif isinstance(resume, (str, Path)):
        resume_from = Path(resume)
    progress = {"step": 0, "wall_s": 0.0, "loss": None}
    if resume_from is not None:
        progress = json.loads((resume_from / "progress.json").read_text())
    # lines written after the checkpoint by a run that was killed are not part of this run's history any more
    if accelerator.is_main_process:
        cut_log(out / "log.jsonl", progress["step"])
    if config.trace_samples:
        cut_log(out / "trace" / f"rank-{accelerator.process_index}.jsonl", progress["step"])

    rank_samples = progress["step"] * config.batch_size * config.grad_accum      # what this rank has consumed
    dataset = make_dataset(config, accelerator.process_index, accelerator.num_processes, rank_samples)
    if isinstance(dataset, torch.utils.data.IterableDataset):   # shards: split by rank and worker, resumed inside
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, num_workers=config.num_workers,
                                             persistent_workers=config.num_workers > 0,
                                             worker_init_fn=ignore_stop_signals)
    else:
        sampler = ResumableSampler(len(dataset), rank_samples * accelerator.num_processes, config.seed,
                                   shuffle=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                                             num_workers=config.num_workers, drop_last=True,
                                             persistent_workers=config.num_workers > 0,
                                             worker_init_fn=ignore_stop_signals)

    if config.train_unet:
        controlnet, unet, optimizer, lr_scheduler = accelerator.prepare(controlnet, unet, optimizer, lr_scheduler)
    else:
        controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    if accelerator.num_processes > 1 and not isinstance(dataset, torch.utils.data.IterableDataset):
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    if ema is not None:
        # saved by us (save_ema / load_ema), not by accelerate's checkpointing hook for custom objects, which
        # reloads them with the unpickler switched fully on: whatever code a checkpoint folder holds would run
        ema.to(accelerator.device)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        if ema is not None:
            load_ema(ema, resume_from, accelerator.device)
        # the config's learning rate wins over the checkpoint's (so a resumed run can be re-tuned)
        inner = getattr(lr_scheduler, "scheduler", lr_scheduler)
        inner.base_lrs = [config.lr for _ in inner.base_lrs]
        for group in optimizer.param_groups:
            group["initial_lr"] = config.lr
            group["lr"] = config.lr * inner.lr_lambdas[0](inner.last_epoch)
        accelerator.print(f"resumed from {resume_from} at step {progress['step']}")

    if accelerator.is_main_process:
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
        accelerator.init_trackers("levitor", config={k: str(v) for k, v in asdict(config).items()})

    stop = {"now": False}

    def _request_stop(signum, frame):  # SIGTERM/SIGINT: finish the step, checkpoint, exit cleanly
        stop["now"] = True

    old_handlers = {s: signal.signal(s, _request_stop) for s in (signal.SIGTERM, signal.SIGINT)} \
        if _is_main_thread() else {}

    def save_checkpoint() -> Path:
        folder = out / "checkpoints" / f"step_{progress['step']:07d}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(folder))
        if ema is not None and accelerator.is_main_process:   # the same on every rank (so are its weights)
            save_ema(ema, folder)
        # every rank's part (its RNG state) is on disk before the checkpoint is marked whole: a SIGKILL between
        # one rank's save and another's must leave a folder that resume ignores, not one it half-loads
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_text_atomic(folder / "progress.json", json.dumps(progress))   # last: marks the checkpoint whole
            export(accelerator, pipe, controlnet, unet, ema, params, config, out / "export", progress)
            write_loss_curve(log_file, out / "loss_curve.png")
            for old in _checkpoints(out)[:-config.keep_checkpoints]:
                (old / "progress.json").unlink(missing_ok=True)     # unmarked first: never a half-deleted "whole"
                shutil.rmtree(old, ignore_errors=True)
        return folder

    session_start = time.time()
    wall_at_start = progress["wall_s"]
    last_ckpt_time = time.time()
    log_file = out / "log.jsonl"
    running, running_n, t_log = 0.0, 0, time.time()
    noise_seed = rank_seed(config.seed, progress["step"], accelerator.process_index)
    generator = torch.Generator(device=accelerator.device).manual_seed(noise_seed)
    tracer = _Tracer(out, accelerator.process_index) if config.trace_samples else None
    data_iter = iter(loader)
    controlnet.train()
    unet.train(config.train_unet)
    last_folder = None
    while progress["step"] < config.max_steps:
        names: list[str] = []
        for _ in range(config.grad_accum):
            batch = next(data_iter)
            names += list(batch.get("name", []))
            batch = {k: v.to(accelerator.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            with accelerator.accumulate(*trained):
                with accelerator.autocast():
                    loss = edm_loss(pipe, accelerator.unwrap_model(unet) if not config.train_unet else unet,
                                    controlnet, batch, config, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {progress['step']}; lower lr "
                                             "or use mixed_precision 'bf16'/'no'")
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:       # warm-up and decay count optimizer steps
                    lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach()) / config.grad_accum
        running_n += 1
        if ema is not None:
            ema.step(params)
        progress["step"] += 1
        progress["wall_s"] = wall_at_start + time.time() - session_start
        if tracer is not None:
            tracer.write(progress["step"], names, noise_seed, params)
        if progress["step"] % config.log_every == 0:
            # every rank reaches this step: the mean over ranks is one collective, not rank 0's own loss
            mean = float(accelerator.reduce(torch.tensor(running / running_n, device=accelerator.device),
                                            reduction="mean"))
            progress["loss"] = mean
            rec = {"step": progress["step"], "loss": round(mean, 6), "lr": lr_scheduler.get_last_lr()[0],
                   "s_per_step": round((time.time() - t_log) / running_n, 3), "wall_s": round(progress["wall_s"], 1)}
            accelerator.log({"loss": mean, "lr": rec["lr"]}, step=progress["step"])
            if accelerator.is_main_process:
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
            running, running_n, t_log = 0.0, 0, time.time()
        timed, out_of_time, stopping = any_rank(
            accelerator,
            config.checkpoint_minutes > 0 and time.time() - last_ckpt_time > 60 * config.checkpoint_minutes,
            config.max_minutes > 0 and time.time() - session_start > 60 * config.max_minutes,
            stop["now"])
        if progress["step"] % config.checkpoint_every == 0 or timed or out_of_time or stopping:
            last_folder = save_checkpoint()
            last_ckpt_time = time.time()
        if config.sample_every and progress["step"] % config.sample_every == 0 and accelerator.is_main_process:
            write_sample(pipe, ema, params, config, out / "samples" / f"step_{progress['step']:07d}")
        if out_of_time or stopping:
            break
        noise_seed = rank_seed(config.seed, progress["step"], accelerator.process_index)
        if accelerator.num_processes > 1:   # one rank's seed per step (rank 0 of one process: the old stream)
            generator.manual_seed(noise_seed)
    if last_folder is None or not last_folder.name.endswith(f"{progress['step']:07d}"):
        last_folder = save_checkpoint()
    accelerator.end_training()
    for s, h in old_handlers.items():
        signal.signal(s, h)
    return {**progress, "checkpoint": str(last_folder)}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT: SLURM signals every process of a job step and Ctrl-C the whole
    process group, and a worker that died of it would fail the rank's next batch before its checkpoint. The rank
    stops them itself once it has checkpointed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cut_log(path: Path, step: int) -> None:
    """Keep the JSON lines of ``path`` up to ``step`` (a resumed run repeats the steps after its checkpoint) and
    drop a line torn by a kill; atomically, so a second kill leaves the old or the new file."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            rec = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(kept))


EMA_FILE = "ema.pt"
OLD_EMA_FILE = "custom_checkpoint_0.pkl"   # where accelerate's register_for_checkpointing put it (older runs)


def save_ema(ema, folder: Path) -> Path:
    """The EMA state (tensors and numbers only) beside accelerate's state, atomically."""
    from levitor._util.io import atomic_path

    path = Path(folder) / EMA_FILE
    with atomic_path(path) as tmp:
        torch.save(ema.state_dict(), tmp)
    return path


def load_ema(ema, folder: Path, device) -> None:
    """Restore the EMA of a checkpoint with ``weights_only=True`` (no pickled code is run); older checkpoints kept
    it in accelerate's custom_checkpoint_0.pkl, which holds the same plain state."""
    folder = Path(folder)
    path = folder / EMA_FILE if (folder / EMA_FILE).is_file() else folder / OLD_EMA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {folder} has no EMA state ({EMA_FILE}) but the config has ema: true; "
                                "resume with ema: false, or from a checkpoint made with EMA")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError and friends: the file is not plain tensors
        raise ValueError(f"{path} is not a plain EMA state (tensors and numbers); refusing to unpickle it: {err}") \
            from err
    ema.load_state_dict(state)


RANK_SEED_STRIDE = 1_000_003   # rank r's noise seed is seed + step + r * this (rank 0 keeps the one-process seed)


def rank_seed(seed: int, step: int, process_index: int) -> int:
    """The noise seed of one rank at one step: different per rank, reproducible on resume."""
    return int(seed) + int(step) + int(process_index) * RANK_SEED_STRIDE


def any_rank(accelerator, *flags: bool) -> list[bool]:
    """Each flag, True on every rank if it is True on any: a collective, so every rank must call it each step."""
    if accelerator.num_processes == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=accelerator.device)
    return [bool(v > 0) for v in accelerator.reduce(t, reduction="sum").tolist()]


class LaunchError(RuntimeError):
    """The processes started are not what the config asks for; the message says how to launch."""


def check_launch(config: TrainConfig, num_processes: int, launched: int, source: str) -> None:
    """Refuse a launch that is not what was asked, before any rank writes to the output folder."""
    if launched > 1 and num_processes == 1:
        raise LaunchError(
            f"this process was started as one of {launched} ({source} variables) but no process group formed, so "
            f"{launched} separate runs would race on {config.output_dir}. On a machine without GPUs, "
            "`accelerate launch --multi_gpu` does this: use `ACCELERATE_USE_CPU=true torchrun --nproc-per-node N "
            "-m levitor.training CONFIG` (gloo), or run on GPUs")
    if config.num_processes and config.num_processes != num_processes:
        raise LaunchError(
            f"the config asks for num_processes={config.num_processes} but {num_processes} process(es) started "
            "(`accelerate launch --cpu --num_processes N` starts one here; use ACCELERATE_USE_CPU=true torchrun "
            "--nproc-per-node N). Launch that many, or set num_processes: 0 to accept any")


class _Tracer:
    """``trace_samples``: one JSON line per step and rank (clips, noise seed, parameter sum) to check a launch."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / "trace" / f"rank-{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank

    def write(self, step: int, names: list[str], noise_seed: int, params) -> None:
        total = float(sum(p.detach().double().sum() for p in params))
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, "rank": self.rank, "names": names, "noise_seed": noise_seed,
                                 "param_sum": total}) + "\n")


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _EmaWeights:
    """``with _EmaWeights(ema, params):`` swaps the EMA weights in, and the training weights back after."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def export(accelerator, pipe, controlnet, unet, ema, params, config: TrainConfig, folder: Path, progress: dict):
    """Inference weights (EMA ones if EMA is on): the ControlNet, and the UNet when it trains."""
    cn, un = accelerator.unwrap_model(controlnet), accelerator.unwrap_model(unet)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _EmaWeights(ema, params):
        if config.model == "mini":
            from levitor.generation.mini import save_mini

            save_mini(tmp, un, cn, mini_model_info(config, progress), image_encoder=pipe.image_encoder)
        else:
            cn.save_pretrained(tmp / "controlnet")
            if config.train_unet:
                un.save_pretrained(tmp / "unet")
            (tmp / "progress.json").write_text(json.dumps(progress))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def mini_model_info(config: TrainConfig, progress: dict) -> dict:
    """What :func:`levitor.generation.mini.load_mini_pipeline` needs to know beyond the weights."""
    return {"height": config.height, "width": config.width, "num_frames": config.num_frames,
            "patch_size": config.mini_patch_size, "control_radius": config.control_radius,
            "kmeans_stride": config.kmeans_stride, "control": config.control, "fps": config.fps,
            "motion_bucket_id": config.motion_bucket_id, "noise_aug_strength": config.noise_aug_strength,
            "num_inference_steps": config.sample_steps, "sigma_max": config.mini_sigma_max,
            "sigma_min": config.mini_sigma_min, "seed": config.seed, "prediction_type": config.mini_prediction,
            "synthetic": {k: list(v) if isinstance(v, tuple) else v for k, v in config.synthetic.items()},
            "trained_steps": progress["step"], "train_wall_s": round(progress["wall_s"], 1),
            "train_loss": progress.get("loss"), "motion_loss_weight": config.motion_loss_weight,
            **(_lineage(config.init_from) if config.init_from else {})}


def _lineage(init_from: str) -> dict:
    """Where a fine-tuned mini model started: its parent's training, so the total is on record."""
    from levitor.generation.mini import mini_info

    parent = mini_info(init_from)
    earlier = parent.get("earlier_steps", 0) + parent.get("trained_steps", 0)
    return {"init_from": str(init_from), "earlier_steps": earlier,
            "earlier_wall_s": round(parent.get("earlier_wall_s", 0) + parent.get("train_wall_s", 0), 1)}


def write_loss_curve(log_file: Path, png: Path) -> Path | None:
    """Redraw the run's loss curve beside its log, so a glance tells whether a long run is still learning."""
    from PIL import Image

    from levitor.viz.pictures import loss_curve, read_loss_log

    if not log_file.exists():
        return None
    steps, losses = read_loss_log(log_file)
    if len(steps) < 2:
        return None
    Image.fromarray(loss_curve(steps, losses, title=f"training loss ({png.parent.name})")).save(png)
    return png


@torch.no_grad()
def write_sample(pipe, ema, params, config: TrainConfig, stem: Path) -> Path | None:
    """A side-by-side strip (rows: ground truth, generated) of a held-out synthetic clip, as PNG."""
    if config.data not in ("synthetic", "cache"):
        return None
    from PIL import Image

    item = SyntheticControlDataset(config, seed_offset=EVAL_SEED_OFFSET)[0]
    first = ((item["frames"][0] + 1) / 2).clamp(0, 1)
    was_training = (pipe.unet.training, pipe.controlnet.training)
    pipe.unet.eval()
    pipe.controlnet.eval()
    with _EmaWeights(ema, params):
        video = pipe(first, control=item["control"], num_inference_steps=config.sample_steps,
                     min_guidance_scale=1.0, max_guidance_scale=1.0, fps=config.fps,
                     motion_bucket_id=config.motion_bucket_id, noise_aug_strength=config.noise_aug_strength,
                     generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    pipe.unet.train(was_training[0] and config.train_unet)
    pipe.controlnet.train(was_training[1])
    truth = ((item["frames"].permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).numpy().astype(np.uint8)
    gen = (np.asarray(video) * 255).clip(0, 255).astype(np.uint8)
    strip = np.concatenate([np.concatenate(list(truth), 1), np.concatenate(list(gen), 1)], 0)
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".png")
    Image.fromarray(strip).resize((strip.shape[1] * 4, strip.shape[0] * 4), Image.NEAREST).save(path)
    return path
