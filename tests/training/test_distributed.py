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


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    write_textured_davis(tmp / "DAVIS", {"bear": 8, "car": 8, "fox": 8, "goat": 8})
    cfg = PrecomputeConfig(height=16, width=16, num_frames=2, sample_stride=1, videos_per_shard=1)
    run_local(tmp / "DAVIS", tmp / "pre", cfg)           # 4 shards of 4 clips
    return tmp / "pre"


def _torchrun(config: Path, timeout: float = 300, wait: bool = True):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "levitor.training", str(config)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    if not wait:
        return proc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
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


def test_two_ranks_train_from_shards_with_timed_checkpoints(shards, tmp_path):
    run = tmp_path / "run"
    # a checkpoint is due after every step by each rank's own clock: with per-rank decisions this deadlocked
    cfg = _write(tmp_path, "a", data_root=str(shards), output_dir=str(run), max_steps=4, checkpoint_minutes=1e-5)
    _torchrun(cfg)
    trace = _trace(run)
    assert [t["step"] for t in trace[0]] == [1, 2, 3, 4] == [t["step"] for t in trace[1]]
    for a, b in zip(trace[0], trace[1]):
        assert a["param_sum"] == b["param_sum"]                 # DDP: the same weights on both ranks, every step
        assert a["noise_seed"] != b["noise_seed"]               # each rank its own noise
        assert not set(a["names"]) & set(b["names"])            # and its own clips
    assert trace[0][1]["noise_seed"] == rank_seed(0, 1, 0) and trace[1][1]["noise_seed"] == rank_seed(0, 1, 1)
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps[-1] == "step_0000004"
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] == r["loss"] for r in log)


def test_sigterm_to_both_ranks_checkpoints_and_resume_continues(shards, tmp_path):
    run = tmp_path / "run"
    cfg = _write(tmp_path, "b", data_root=str(shards), output_dir=str(run), max_steps=10_000)
    proc = _torchrun(cfg, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        files = [run / "trace" / f"rank-{r}.jsonl" for r in (0, 1)]
        if all(f.is_file() and len(f.read_text().splitlines()) >= 2 for f in files):
            break
        time.sleep(0.2)
    ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                            text=True).stdout.split()]
    assert len(ranks) == 2, ranks
    for pid in ranks:                         # what SLURM does before a time limit
        os.kill(pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the ranks did not stop after SIGTERM")
    assert proc.returncode == 0, out[-4000:]
    stopped = _trace(run)[0][-1]["step"]
    assert _trace(run)[1][-1]["step"] == stopped
    ckpt = run / "checkpoints" / f"step_{stopped:07d}"
    assert json.loads((ckpt / "progress.json").read_text())["step"] == stopped
    _torchrun(_write(tmp_path, "c", data_root=str(shards), output_dir=str(run), max_steps=stopped + 2))
    steps = [t["step"] for t in _trace(run)[0]]
    assert steps == list(range(1, stopped + 3))                 # went on from the checkpoint, did not start over


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
