"""Which process of which launch this is: torchrun / accelerate (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), SLURM's
``srun`` (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) or nothing (one process). Read in one place so
training, the local precompute engine and evaluation split work the same way."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"        # "torchrun" (torchrun or accelerate launch), "slurm", "single"


def detect_launch(env: dict[str, str] | None = None) -> LaunchInfo:
    """The launch from the environment; torchrun's variables win over SLURM's (torchrun inside an srun step)."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        info = LaunchInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")), "torchrun")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        info = LaunchInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0")),
                          "slurm")
    else:
        info = LaunchInfo()
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ValueError(f"rank {info.rank} of {info.world_size} ({info.source} variables) is not a valid launch")
    return info


def export_slurm_for_torch(env: dict[str, str] | None = None) -> LaunchInfo:
    """Under ``srun`` without torchrun, set RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_PORT) from SLURM's variables,
    so torch.distributed and accelerate see the job's tasks as one process group. MASTER_ADDR must be set by the
    job script (the first node of ``scontrol show hostnames``); without it, a multi-task launch is refused."""
    env = os.environ if env is None else env
    info = detect_launch(env)
    if info.source == "slurm":
        if info.world_size > 1 and "MASTER_ADDR" not in env:
            raise ValueError("srun started several tasks but MASTER_ADDR is not set: export it in the job script, "
                             "e.g. export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)")
        env.setdefault("RANK", str(info.rank))
        env.setdefault("WORLD_SIZE", str(info.world_size))
        env.setdefault("LOCAL_RANK", str(info.local_rank))
        env.setdefault("LOCAL_WORLD_SIZE", env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0])
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
    return info


WAIT_NOTICE_S = 30.0    # a rank still waiting for its peers after this long says so (sooner for a short timeout)


@contextlib.contextmanager
def waiting_notice(info: LaunchInfo, timeout_s: float, after_s: float | None = None) -> Iterator[None]:
    """``with waiting_notice(info, timeout_s):`` around forming the process group: a rank still waiting after
    ``after_s`` (default: 30 s, or a quarter of a shorter timeout) says once, on stderr, which rank it is, whom it
    waits for, where, and how long it will wait, instead of waiting silently (a lone SLURM task 0 of 2)."""
    if info.world_size == 1:
        yield
        return
    after_s = min(WAIT_NOTICE_S, timeout_s / 4) if after_s is None else after_s
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    message = (f"levitor: rank {info.rank} of {info.world_size} ({info.source} variables) has waited {after_s:g} s "
               f"for the other {info.world_size - 1} process(es) to join at {where}; it gives up "
               f"{timeout_s / 60:g} min after it started waiting")
    timer = threading.Timer(after_s, lambda: print(message, file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def barrier_group(info: LaunchInfo, timeout_s: float = 12 * 3600) -> Iterator[Callable[[], None]]:
    """``with barrier_group(info) as barrier:``: a gloo process group over the launch's ranks (a no-op for one
    process), for jobs whose ranks only need to wait for each other (evaluation: rank 0 merges once all are done).
    Gloo needs no GPU; the long timeout lets ranks with unequal shares finish (a rank that dies is noticed at once:
    torchrun and srun --kill-on-bad-exit end the others)."""
    if info.world_size == 1:
        yield lambda: None
        return
    import datetime

    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield dist.barrier
    finally:
        if owned:
            dist.destroy_process_group()
