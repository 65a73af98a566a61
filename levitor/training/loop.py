"""Train the LeviTor ControlNet with accelerate: one CPU, one GPU, or many GPUs on many nodes.

    levitor train configs/paper.yaml                              # one process
    accelerate launch --multi_gpu --num_processes 8 -m levitor.training configs/paper.yaml
    torchrun --nproc-per-node 8 -m levitor.training configs/paper.yaml
    srun python -m levitor.training configs/paper.yaml             # SLURM tasks (scripts/slurm/train_8x8.sbatch)

:func:`train` reads top to bottom: set-up (launch, models, optimizer), resume, records, the loader, then the steps,
each followed by its log line, the collective stop and checkpoint decision and the checkpoint.

On a cluster every stop and checkpoint decision is collective: each step the ranks reduce their flags (SIGTERM
received, time for a checkpoint, out of time) and act together, so no rank waits in a barrier the others never
reach. The noise and the data of step s depend only on (seed, s, rank), on one process as on many, so a resumed run
repeats the uninterrupted one exactly; the logged loss is the mean over ranks; warm-up counts optimizer steps
whatever the process count.

Failing fast: a DataLoader worker's error ends the run with one line naming the shard (the workers, which ignore
SIGTERM, are stopped on the way out); a rank that fails ends its peers within seconds (their next collective
fails) or, if it hangs, within ``peer_timeout_minutes``; a rank waiting for peers that never come says so.

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

A run folder holds ``config.json``, ``log.jsonl`` (one line per ``log_every`` steps, and one for a shorter last
stretch) and its picture
``loss_curve.png`` (redrawn at each checkpoint), ``checkpoints/step_N/``
(accelerate state: models, optimizer, scheduler, RNG, EMA, ``progress.json``), ``export/`` (inference weights
of the latest checkpoint), ``samples/`` and TensorBoard logs. Running the same config again resumes from the
latest checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from levitor._util.errors import RunError
from levitor._util.io import write_text_atomic
from levitor._util.launch import export_slurm_for_torch, waiting_notice
from levitor.training.config import TrainConfig
from levitor.training.datasets import Batches, check_data, make_loader
from levitor.training.loss import edm_loss
from levitor.training.models import build_models
from levitor.training.run_files import (
    PROGRESS_FILE,
    Progress,
    Tracer,
    checkpoint_folder,
    cut_log,
    export,
    load_ema,
    save_ema,
    whole_checkpoints,
    write_loss_curve,
    write_sample,
)


def train(config: TrainConfig, resume: str | bool = True) -> dict:
    """Run (or resume) training. ``resume``: True = the latest checkpoint in output_dir, a path, or False.

    Returns the final progress: {"step", "loss", "wall_s", "checkpoint"}.
    """
    check_data(config)
    run = set_up(config)
    progress = restore(run, resume_folder(run.out, resume))
    start_records(run, progress)
    tracer = Tracer(run.out, run.rank) if config.trace_samples else None
    clock, window, saved = Clock(progress.wall_s), LossWindow(), -1
    generator = torch.Generator(device=run.accelerator.device)
    with StopRequest() as stop, open_batches(run, progress.step) as batches, peers_lost(run):
        while progress.step < config.max_steps:
            # the noise of a step depends on (seed, step, rank) only: a resumed run draws what the whole run drew
            noise_seed = rank_seed(config.seed, progress.step, run.rank)
            loss, names = train_step(run, batches, generator.manual_seed(noise_seed), progress.step)
            progress.step, progress.wall_s = progress.step + 1, clock.wall_s()
            window.add(loss)
            if tracer is not None:
                tracer.write(progress.step, names, noise_seed, run.params)
            # collective: every rank acts on every rank's flags, so none waits in a barrier the others skip
            timed, out_of_time, stopping = any_rank(run.accelerator, clock.checkpoint_due(config),
                                                    clock.out_of_time(config), stop.requested)
            last = out_of_time or stopping or progress.step == config.max_steps
            if progress.step % config.log_every == 0 or last:      # a last stretch shorter than log_every too
                log_loss(run, progress, window)
            if progress.step % config.checkpoint_every == 0 or timed or last:
                saved = save_checkpoint(run, progress)
                clock.checkpointed()
            if config.sample_every and progress.step % config.sample_every == 0 and run.accelerator.is_main_process:
                write_sample(run.pipe, run.ema, run.params, config, run.out / "samples" / f"step_{progress.step:07d}")
            if out_of_time or stopping:
                break
        if saved != progress.step:          # nothing left to do (resumed at max_steps): the checkpoint all the same
            saved = save_checkpoint(run, progress)
    run.accelerator.end_training()
    return {**asdict(progress), "checkpoint": str(checkpoint_folder(run.out, saved))}


# ------------------------------------------------------------------------------------------------ set-up
@dataclass
class Run:
    """What the stages of a run share: its config and folder, the launch, the models and the optimizer."""

    config: TrainConfig
    out: Path
    accelerator: Any
    pipe: Any
    controlnet: torch.nn.Module
    unet: torch.nn.Module
    trained: list[torch.nn.Module]        # the modules that learn, as built (accelerate.accumulate takes these)
    params: list[torch.nn.Parameter]
    optimizer: Any
    lr_scheduler: Any
    ema: Any = None

    @property
    def rank(self) -> int:
        return self.accelerator.process_index


def set_up(config: TrainConfig) -> Run:
    """The launch (one process group over every rank), the models with what trains marked, the optimizer and the
    learning-rate schedule, all prepared by accelerate."""
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(config, out)
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

        # saved by us (save_ema / load_ema), not by accelerate's checkpointing hook for custom objects, which
        # reloads them with the unpickler switched fully on: whatever code a checkpoint folder holds would run
        ema = EMAModel(params, decay=config.ema_decay)
    if config.train_unet:
        controlnet, unet, optimizer, lr_scheduler = accelerator.prepare(controlnet, unet, optimizer, lr_scheduler)
    else:
        controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
    controlnet.train()
    unet.train(config.train_unet)
    return Run(config, out, accelerator, pipe, controlnet, unet, trained, params, optimizer, lr_scheduler, ema)


def make_accelerator(config: TrainConfig, out: Path):
    """accelerate's Accelerator over the launch's ranks, with a peer timeout of minutes; a rank still waiting for
    its peers says so (:func:`~levitor._util.launch.waiting_notice`), and one that gives up says why in one line."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    try:
        import tensorboard  # noqa: F401

        trackers = ["tensorboard"]
    except ImportError:
        trackers = None
    launch = export_slurm_for_torch()
    timeout_s = 60 * config.peer_timeout_minutes
    with waiting_notice(launch, timeout_s):
        try:
            # the scheduler is stepped once per optimizer step by us (accelerate would step it num_processes times)
            accelerator = Accelerator(
                mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum,
                log_with=trackers, step_scheduler_with_optimizer=False,
                project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tb")),
                kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=timeout_s))])
            check_launch(config, accelerator.num_processes, launch.world_size, launch.source)
            accelerator.wait_for_everyone()             # every rank is here: the group is formed
        except torch.distributed.DistError as err:
            raise LaunchError(
                f"rank {launch.rank} of {launch.world_size} ({launch.source} variables): the other processes did "
                f"not all join within {config.peer_timeout_minutes:g} min (peer_timeout_minutes): start all "
                f"{launch.world_size} (srun --ntasks {launch.world_size}, or torchrun --nproc-per-node), with one "
                f"MASTER_ADDR/MASTER_PORT they can reach ({' '.join(str(err).split())[:200]})") from None
    return accelerator


# ------------------------------------------------------------------------------------------------ resume
def resume_folder(out: Path, resume: str | Path | bool) -> Path | None:
    """The checkpoint to go on from: the latest whole one (``resume`` True), a given one, or none (False)."""
    if not isinstance(resume, bool):
        return Path(resume)
    ckpts = whole_checkpoints(out) if resume else []
    return ckpts[-1] if ckpts else None


def restore(run: Run, folder: Path | None) -> Progress:
    """Load a checkpoint into the prepared models, optimizer, schedule, RNG and EMA; its progress, or step 0."""
    if folder is None:
        return Progress()
    progress = Progress.read(folder)
    run.accelerator.load_state(str(folder))
    if run.ema is not None:
        load_ema(run.ema, folder, run.accelerator.device)
    # the config's learning rate wins over the checkpoint's (so a resumed run can be re-tuned)
    inner = getattr(run.lr_scheduler, "scheduler", run.lr_scheduler)
    inner.base_lrs = [run.config.lr for _ in inner.base_lrs]
    for group in run.optimizer.param_groups:
        group["initial_lr"] = run.config.lr
        group["lr"] = run.config.lr * inner.lr_lambdas[0](inner.last_epoch)
    run.accelerator.print(f"resumed from {folder} at step {progress.step}")
    return progress


def start_records(run: Run, progress: Progress) -> None:
    """Logs cut back to the checkpoint (lines a killed run wrote after it are not this run's history any more),
    the config beside them, the trackers started."""
    if run.config.trace_samples:
        cut_log(run.out / "trace" / f"rank-{run.rank}.jsonl", progress.step)
    if run.accelerator.is_main_process:
        cut_log(run.out / "log.jsonl", progress.step)
        (run.out / "config.json").write_text(json.dumps(asdict(run.config), indent=2))
        run.accelerator.init_trackers("levitor", config={k: str(v) for k, v in asdict(run.config).items()})


# ------------------------------------------------------------------------------------------------ loader
def open_batches(run: Run, step: int) -> Batches:
    """This rank's batches from ``step`` on (what the rank consumed decides where each stream starts)."""
    acc, config = run.accelerator, run.config
    loader = make_loader(config, acc.process_index, acc.num_processes, step * config.batch_size * config.grad_accum)
    if acc.num_processes > 1 and not isinstance(loader.dataset, torch.utils.data.IterableDataset):
        loader = acc.prepare_data_loader(loader, device_placement=True)
    return Batches(loader)


# ------------------------------------------------------------------------------------------------ step
def train_step(run: Run, batches, generator: torch.Generator, step: int) -> tuple[float, list[str]]:
    """One optimizer step over ``grad_accum`` batches: this rank's mean loss and the clips it used."""
    config, acc = run.config, run.accelerator
    unet = run.unet if config.train_unet else acc.unwrap_model(run.unet)
    total, names = 0.0, []
    for _ in range(config.grad_accum):
        batch = next(batches)
        names += list(batch.get("name", []))
        batch = {k: v.to(acc.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        with acc.accumulate(*run.trained):
            with acc.autocast():
                loss = edm_loss(run.pipe, unet, run.controlnet, batch, config, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr or use "
                                         "mixed_precision 'bf16'/'no'")
            acc.backward(loss)
            if acc.sync_gradients and config.max_grad_norm > 0:
                acc.clip_grad_norm_(run.params, config.max_grad_norm)
            run.optimizer.step()
            if acc.sync_gradients:       # warm-up and decay count optimizer steps
                run.lr_scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach()) / config.grad_accum
    if run.ema is not None:
        run.ema.step(run.params)
    return total, names


@dataclass
class LossWindow:
    """The losses of the steps since the last log line, and when that stretch began."""

    total: float = 0.0
    steps: int = 0
    started: float = field(default_factory=time.time)

    def add(self, loss: float) -> None:
        self.total += loss
        self.steps += 1

    def reset(self) -> None:
        self.total, self.steps, self.started = 0.0, 0, time.time()


def log_loss(run: Run, progress: Progress, window: LossWindow) -> None:
    """One log line: the stretch's mean loss over all ranks (a collective: every rank calls it at the same step)."""
    acc = run.accelerator
    mean = float(acc.reduce(torch.tensor(window.total / window.steps, device=acc.device), reduction="mean"))
    progress.loss = mean
    rec = {"step": progress.step, "loss": round(mean, 6), "lr": run.lr_scheduler.get_last_lr()[0],
           "s_per_step": round((time.time() - window.started) / window.steps, 3), "wall_s": round(progress.wall_s, 1)}
    acc.log({"loss": mean, "lr": rec["lr"]}, step=progress.step)
    if acc.is_main_process:
        with open(run.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
    window.reset()


@dataclass
class Clock:
    """Wall time of the whole run (over its sessions) and the time-based checkpoint and stop rules."""

    wall_at_start: float = 0.0
    started: float = field(default_factory=time.time)
    last_checkpoint: float = field(default_factory=time.time)

    def wall_s(self) -> float:
        return self.wall_at_start + time.time() - self.started

    def checkpoint_due(self, config: TrainConfig) -> bool:
        return config.checkpoint_minutes > 0 and time.time() - self.last_checkpoint > 60 * config.checkpoint_minutes

    def out_of_time(self, config: TrainConfig) -> bool:
        return config.max_minutes > 0 and time.time() - self.started > 60 * config.max_minutes

    def checkpointed(self) -> None:
        self.last_checkpoint = time.time()


# ------------------------------------------------------------------------------------------------ checkpoint
def save_checkpoint(run: Run, progress: Progress) -> int:
    """A whole checkpoint of this step (every rank's part, then progress.json), the export and the loss curve;
    older checkpoints beyond ``keep_checkpoints`` removed. Returns the step saved and prints how long it took: the
    figure to size the time a stop signal gives the ranks by (scripts/slurm/train_1x8.sbatch)."""
    acc, t0 = run.accelerator, time.time()
    folder = checkpoint_folder(run.out, progress.step)
    acc.wait_for_everyone()
    acc.save_state(str(folder))
    if run.ema is not None and acc.is_main_process:   # the same on every rank (so are its weights)
        save_ema(run.ema, folder)
    # every rank's part (its RNG state) is on disk before the checkpoint is marked whole: a SIGKILL between
    # one rank's save and another's must leave a folder that resume ignores, not one it half-loads
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_text_atomic(folder / PROGRESS_FILE, json.dumps(asdict(progress)))   # last: marks it whole
        export(acc, run.pipe, run.controlnet, run.unet, run.ema, run.params, run.config, run.out / "export",
               progress)
        write_loss_curve(run.out / "log.jsonl", run.out / "loss_curve.png")
        for old in whole_checkpoints(run.out)[:-run.config.keep_checkpoints]:
            (old / PROGRESS_FILE).unlink(missing_ok=True)     # unmarked first: never a half-deleted "whole"
            shutil.rmtree(old, ignore_errors=True)
        print(f"levitor: checkpoint {folder} and its export written in {time.time() - t0:.1f} s", flush=True)
    return progress.step


# ------------------------------------------------------------------------------------------------ stopping and ranks
class StopRequest:
    """``with StopRequest() as stop:``: SIGTERM and SIGINT set ``stop.requested`` (the run finishes its step,
    checkpoints and exits cleanly) instead of ending the process; the previous handlers are back when the block
    ends, error or not, so a run that failed can still be stopped."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def _request(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():   # signal handlers live in the main thread
            self._previous = {s: signal.signal(s, self._request) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class PeerLost(RunError):
    """Another rank failed or stopped answering; this rank stops too (the other's own error line is the cause)."""


PEER_LOST_MARKS = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout", "broken pipe")


@contextlib.contextmanager
def peers_lost(run: Run) -> Iterator[None]:
    """``with peers_lost(run):``: on several ranks, a collective that fails (a peer exited: gloo's "Connection closed
    by peer", NCCL's error; or it did not answer within peer_timeout_minutes) becomes one :class:`PeerLost` line."""
    try:
        yield
    except RuntimeError as err:
        acc = run.accelerator
        text = " ".join(str(err).split())
        lost = isinstance(err, torch.distributed.DistError) or any(m in text.lower() for m in PEER_LOST_MARKS)
        if acc.num_processes == 1 or isinstance(err, PeerLost) or not lost:
            raise
        raise PeerLost(f"rank {acc.process_index} of {acc.num_processes} stops: another rank failed (its error is "
                       "in its own output) or did not answer within peer_timeout_minutes="
                       f"{run.config.peer_timeout_minutes:g} ({text[:200]})") from None


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


class LaunchError(RunError):
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
