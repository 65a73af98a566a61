"""Training on 2 real ranks (torchrun, DDP over gloo) from precompute shards: equal parameters, own noise and own data
per rank, a time-based checkpoint that does not hang, SIGTERM to both ranks, resume; and the launch refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from levitor.testing.datasets import write_textured_davis
from levitor.training.config import load_config
from levitor.training.loop import check_launch, rank_seed
from levitor.training.precompute import PrecomputeConfig, run_local

REPO = Path(__file__).resolve().parents[2]
RUN = dict(base="mini", data="shards", height=16, width=16, num_frames=2, batch_size=1, mini_channels=[32, 32],
           log_every=1, checkpoint_every=1000, checkpoint_minutes=0, sample_every=0, ema=False, num_workers=0,
           shuffle_buffer=4, trace_samples=True, num_processes=2, synthetic={})


def _precompute(tmp, size: int, num_frames: int):
    """4 shards, one fixture video each, precomputed at ``size`` x ``size``."""
    write_textured_davis(tmp / "DAVIS", {"bear": 8, "car": 8, "fox": 8, "goat": 8})
    cfg = PrecomputeConfig(height=size, width=size, num_frames=num_frames, sample_stride=1, videos_per_shard=1)
    run_local(tmp / "DAVIS", tmp / "pre", cfg)
    return tmp / "pre"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _precompute(tmp_path_factory.mktemp("dist"), 16, 2)           # 4 shards of 4 clips


@pytest.fixture(scope="module")
def shards_32(tmp_path_factory):
    """The size the tiny SVD-shaped models need (their VAE downsamples by 8)."""
    return _precompute(tmp_path_factory.mktemp("dist32"), 32, 4)         # 4 shards of 2 clips


def _descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(c) for c in found.split()]
    return children + [d for c in children for d in _descendants(c)]


def _kill_all(proc) -> None:
    """A launch that failed its test, whole: torchrun starts each rank in a session of its own, so killing torchrun's
    process group would leave the ranks (and their DataLoader workers) running."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _torchrun(config: Path, timeout: float = 300, wait: bool = True, sets: dict | None = None):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "levitor.training", str(config)]
    args += [a for k, v in (sets or {}).items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    if not wait:
        return proc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(proc)
        pytest.fail(f"2-rank training did not finish in {timeout} s (a rank waiting in a collective?)")
    assert proc.returncode == 0, out[-4000:]
    return out


def _trace(run: Path) -> dict[int, list[dict]]:
    return {r: [json.loads(x) for x in (run / "trace" / f"rank-{r}.jsonl").read_text().splitlines()]
            for r in (0, 1)}


def _write(tmp: Path, name: str, **over) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**RUN, **over}))
    return path


def test_two_ranks_train_configs_paper_from_shards_with_timed_checkpoints(shards_32, tmp_path, tiny_svd):
    """configs/paper.yaml itself (frozen UNet, ControlNet only), with a folder of tiny random models as its SVD."""
    run = tmp_path / "run"
    # a checkpoint is due after every step by each rank's own clock: with per-rank decisions this deadlocked
    _torchrun(REPO / "configs" / "paper.yaml", sets=dict(
        pretrained=tiny_svd, data_root=shards_32, output_dir=run, height=32, width=32, num_frames=4, max_steps=4,
        checkpoint_minutes=1e-5, mixed_precision="no", gradient_checkpointing="false", num_workers=0,
        shuffle_buffer=4, log_every=1, trace_samples="true", num_processes=2, warmup_steps=4))
    trace = _trace(run)
    assert [t["step"] for t in trace[0]] == [1, 2, 3, 4] == [t["step"] for t in trace[1]]
    for a, b in zip(trace[0], trace[1]):
        assert a["param_sum"] == b["param_sum"]                 # DDP: the same weights on both ranks, every step
        assert a["noise_seed"] != b["noise_seed"]               # each rank its own noise
        assert not set(a["names"]) & set(b["names"])            # and its own clips
    assert trace[0][1]["noise_seed"] == rank_seed(0, 1, 0) and trace[1][1]["noise_seed"] == rank_seed(0, 1, 1)
    assert len({t["param_sum"] for t in trace[0]}) == 4         # the ControlNet trains
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps[-1] == "step_0000004"
    assert (run / "export" / "controlnet" / "config.json").is_file() and not (run / "export" / "unet").exists()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] == r["loss"] for r in log)
    # warm-up in optimizer steps whatever the process count (accelerate alone would step it once per process)
    assert [r["lr"] for r in log] == pytest.approx([0.25e-5, 0.5e-5, 0.75e-5, 1e-5])


def _ranks_of(proc) -> list[int]:
    pids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in pids]


def _wait_for_steps(proc, run: Path, steps: int, timeout: float = 300) -> None:
    """Until both ranks traced ``steps`` lines (the run's trace is cut back to its checkpoint on resume)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        files = [run / "trace" / f"rank-{r}.jsonl" for r in (0, 1)]
        if all(f.is_file() and len(f.read_text().splitlines()) >= steps for f in files):
            return
        time.sleep(0.2)
    _kill_all(proc)
    pytest.fail(f"2-rank training did not reach step {steps} in {timeout} s")


def _finish(proc, timeout: float, what: str) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(proc)
        pytest.fail(what)
    return proc.returncode, out


def _whole_checkpoints(run: Path) -> list[int]:
    return sorted(int(p.parent.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*/progress.json"))


def test_sigkill_then_sigterm_then_resume_continues_the_same_run(shards, tmp_path):
    """A rank killed outright (OOM killer, lost node), a resume, SIGTERM to both ranks (SLURM's time limit), a
    second resume: each resume goes on from the last whole checkpoint with the data, noise and weights the
    uninterrupted run had there, and the logs hold each step once."""
    run = tmp_path / "run"
    cfg = _write(tmp_path, "b", data_root=str(shards), output_dir=str(run), max_steps=10_000, checkpoint_every=2)

    # 1. SIGKILL one rank after step 3: torchrun ends the other; step 2's checkpoint is the last whole one
    proc = _torchrun(cfg, wait=False)
    _wait_for_steps(proc, run, 3)
    ranks = _ranks_of(proc)
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    code, out = _finish(proc, 120, "the surviving rank did not stop after its peer was killed")
    assert code != 0
    killed = _trace(run)
    last = _whole_checkpoints(run)[-1]
    assert last >= 2 and last % 2 == 0

    # 2. resume; SIGTERM to both ranks once it passed the checkpoint: both stop at the same step, checkpointed
    proc = _torchrun(cfg, wait=False)
    # past what the killed run traced: until the resumed ranks cut the trace back to their checkpoint, the killed
    # run's lines already count `last + 2` (waiting for that alone returned before the ranks had started)
    _wait_for_steps(proc, run, max(last + 2, *(len(killed[r]) + 1 for r in (0, 1))))
    ranks = _ranks_of(proc)
    assert len(ranks) == 2, ranks
    for pid in ranks:                         # what SLURM does before a time limit
        os.kill(pid, signal.SIGTERM)
    code, out = _finish(proc, 240, "the ranks did not stop after SIGTERM")
    assert code == 0, out[-4000:]
    resumed = _trace(run)
    stopped = resumed[0][-1]["step"]
    assert resumed[1][-1]["step"] == stopped and stopped >= last + 2
    assert _whole_checkpoints(run)[-1] == stopped
    assert json.loads((run / "checkpoints" / f"step_{stopped:07d}" / "progress.json").read_text())["step"] == stopped
    for r in (0, 1):                          # the steps the killed run made after its checkpoint, made again
        redo = [t for t in killed[r] if t["step"] > last]
        again = {t["step"]: t for t in resumed[r]}  # (none to redo when the kill came right after a checkpoint)
        for t in redo:
            a = again[t["step"]]
            assert (a["names"], a["noise_seed"]) == (t["names"], t["noise_seed"])
            assert a["param_sum"] == pytest.approx(t["param_sum"], rel=1e-6, abs=1e-9)

    # 3. resume to the end: it goes on from the SIGTERM checkpoint, and every step is traced and logged once
    code, out = _finish(_torchrun(_write(tmp_path, "c", data_root=str(shards), output_dir=str(run),
                                         max_steps=stopped + 2, checkpoint_every=2), wait=False), 300,
                        "the second resume did not finish")
    assert code == 0, out[-4000:]
    for r in (0, 1):
        assert [t["step"] for t in _trace(run)[r]] == list(range(1, stopped + 3))
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == list(range(1, stopped + 3))


def test_launches_that_are_not_what_the_config_asks_are_refused(tmp_path):
    cfg = load_config(None, **{**RUN, "data_root": str(tmp_path)})
    with pytest.raises(RuntimeError, match="no process group formed"):
        check_launch(cfg, num_processes=1, launched=2, source="torchrun")       # accelerate --multi_gpu, no GPU
    with pytest.raises(RuntimeError, match="num_processes=2 but 1 process"):
        check_launch(cfg, num_processes=1, launched=1, source="single")         # accelerate --cpu --num_processes 2
    check_launch(cfg, num_processes=2, launched=2, source="slurm")


def test_slurm_variables_become_torch_ones():
    from levitor._util.launch import detect_launch, export_slurm_for_torch

    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "64", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "8(x8)",
           "MASTER_ADDR": "node001"}
    info = export_slurm_for_torch(env)
    assert (info.rank, info.world_size, info.local_rank, info.source) == (9, 64, 1, "slurm")
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("9", "64", "1", "8")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        export_slurm_for_torch({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})
    assert detect_launch({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).rank == 1


def test_a_worker_error_on_two_ranks_with_workers_ends_the_run_within_a_minute(shards_with_a_late_odd_clip, tmp_path):
    """The issue's hang on 2 ranks x 2 DataLoader workers: on main neither rank exited and torchrun never noticed.
    The rank whose worker fails says why in one line naming the shard and exits; its peer's next collective fails."""
    run = tmp_path / "run"
    cfg = _write(tmp_path, "w", data_root=str(shards_with_a_late_odd_clip), output_dir=str(run), max_steps=10_000,
                 num_workers=2, shuffle_buffer=2, trace_samples=False)
    t0 = time.time()
    code, out = _finish(_torchrun(cfg, wait=False), 180, "2-rank training did not end after a worker error")
    seconds = time.time() - t0
    lines = [x for x in out.splitlines() if "levitor train: error: DataLoader worker" in x]
    assert code != 0 and seconds < 60 and lines, (code, seconds, out[-3000:])
    assert "shard-000002.tar, sample 'synthetic_00000100': it is a 2x32x32 clip" in lines[0]


def test_a_lone_slurm_task_says_it_is_waiting_and_gives_up_in_one_line(tmp_path):
    """Task 0 of 2 started alone (the other never came): it says so well within a minute, with how long it will
    wait, and gives up after peer_timeout_minutes with one line (on main it waited silently for 30 minutes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _write(tmp_path, "lone", data_root=str(tmp_path), data="synthetic", output_dir=str(tmp_path / "run"),
                 peer_timeout_minutes=0.1, max_steps=1)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="2", SLURM_LOCALID="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "levitor.training", str(cfg)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=180)
    err = res.stderr.strip().splitlines()
    notice = [x for x in err if "is waiting" in x or "has waited" in x]
    assert notice and "rank 0 of 2 (slurm variables) has waited 1.5 s for the other 1 process(es) to join at " \
        f"127.0.0.1:{port}; it gives up 0.1 min after it started waiting" in notice[0], res.stderr[-2000:]
    assert res.returncode == 2 and err[-1].startswith("levitor train: error: rank 0 of 2 (slurm variables): the "
                                                      "other processes did not all join within 0.1 min"), err[-3:]


SLOW_SAVE = """import os
if os.environ.get("LEVITOR_TEST_SAVE_DELAY_S"):     # a slow file system, for the shutdown-timeout test
    import time

    import accelerate

    _save_state = accelerate.Accelerator.save_state

    def _slow(self, *args, **kwargs):
        time.sleep(float(os.environ["LEVITOR_TEST_SAVE_DELAY_S"]))
        return _save_state(self, *args, **kwargs)

    accelerate.Accelerator.save_state = _slow
"""


def _sbatch(tmp_path: Path, cfg: Path, data: Path, run: Path, **env):
    """scripts/slurm/train_1x8.sbatch run as SLURM would run it (bash), on one CPU rank and the given config."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW_SAVE)
    full = {**os.environ, "NPROC": "1", "CONFIG": str(cfg), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(hook)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)), **env}
    sets = [a for k, v in dict(data_root=data, output_dir=run, grad_accum=1).items() for a in ("--set", f"{k}={v}")]
    return subprocess.Popen(["bash", "scripts/slurm/train_1x8.sbatch", *sets], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait_for_log(proc, run: Path, lines: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    log = run / "log.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= lines:
            return
        time.sleep(0.2)
    if proc.poll() is None:
        _kill_all(proc)
    pytest.fail(f"training did not log {lines} steps in {timeout} s: {proc.communicate()[0][-3000:]}")


@pytest.mark.slow      # ~40-70 s here: two launches of torchrun, one with a checkpoint made slow on purpose
def test_sbatch_gives_the_ranks_time_to_checkpoint_and_exits_0_when_they_did(shards, tmp_path):
    """scripts/slurm/train_1x8.sbatch on one CPU rank. 1: SIGTERM to torchrun itself with a checkpoint slower than
    torchrun's default shutdown time (emulated as 3 s; on main the sbatch gave 30 s and a 45 s save was killed):
    the checkpoint is written. 2: SIGTERM to the job shell, as SLURM's --signal=B:TERM does: it goes to the rank,
    which checkpoints, and the job exits 0 (on main torchrun exited 1 with a SignalException traceback)."""
    run = tmp_path / "run"
    cfg = _write(tmp_path, "s", data_root=str(shards), output_dir=str(run), max_steps=10_000, num_processes=1,
                 num_workers=1, trace_samples=False)
    proc = _sbatch(tmp_path, cfg, shards, run, TORCH_ELASTIC_SHUTDOWN_TIMEOUT="3", LEVITOR_TEST_SAVE_DELAY_S="6")
    _wait_for_log(proc, run, 2)
    torchrun = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    assert len(torchrun) == 1, torchrun
    os.kill(torchrun[0], signal.SIGTERM)
    code, out = _finish(proc, 180, "the job did not end after SIGTERM to torchrun")
    first = _whole_checkpoints(run)
    assert first and first[-1] >= 2, out[-3000:]
    took = [float(x.split("written in ")[1].split(" s")[0]) for x in out.splitlines() if "written in" in x]
    assert took and took[-1] >= 6                               # the save took the injected 6 s

    proc = _sbatch(tmp_path, cfg, shards, run)                          # resubmitted: it resumes from that checkpoint
    _wait_for_log(proc, run, first[-1] + 2)
    os.kill(proc.pid, signal.SIGTERM)                           # what SLURM's --signal=B:TERM@300 sends
    code, out = _finish(proc, 180, "the job did not end after SIGTERM to its shell")
    assert code == 0 and "Traceback" not in out, out[-3000:]
    assert _whole_checkpoints(run)[-1] > first[-1]
