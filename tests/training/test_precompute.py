"""Precompute into WebDataset shards: the local engine, resuming after a kill, corrupt inputs, the record round trip,
independent worker processes, and Ray Data in local mode (byte-identical to one process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from levitor.control.clip_control import clip_control
from levitor.control.encode import encode
from levitor.data.davis import DavisDataset
from levitor.data.records import PrecomputedDataset, finished_shards, iter_tar_samples, read_stats
from levitor.data.sampling import ClipSampling
from levitor.depth import depth_from_disparity
from levitor.perception.depth_fn import constant_depth
from levitor.testing.datasets import write_sav, write_textured_davis
from levitor.training.precompute import PrecomputeConfig, precompute_main, resolve_worker, run_local

REPO = Path(__file__).resolve().parents[2]
SEQS = {"bear": 12, "car": 9, "fox": 8, "goat": 16, "ibex": 8, "jay": 8}
CFG = PrecomputeConfig(height=32, width=48, num_frames=4, frames="raw", videos_per_shard=2)


@pytest.fixture
def davis(tmp_path):
    root = tmp_path / "DAVIS"
    write_textured_davis(root, SEQS)
    return root


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def test_local_engine_writes_shards_that_round_trip(davis, tmp_path):
    out = tmp_path / "pre"
    rep = run_local(davis, out, CFG)
    # clips of 4 frames, non-overlapping: bear 3, car 2, fox 2, goat 4, ibex 2, jay 2; two videos per shard
    assert (rep.shards, rep.shards_done, rep.samples, rep.failed) == (3, 3, 15, 0)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["shards"] == {"shard-000000": ["bear", "car"], "shard-000001": ["fox", "goat"],
                              "shard-000002": ["ibex", "jay"]}
    assert [read_stats(p)["samples"] for p in finished_shards(out)] == [5, 6, 4]
    ds = PrecomputedDataset(out)
    assert len(ds) == 15 and [r.name for r in ds][:5] == ["bear@0", "bear@4", "bear@8", "car@0", "car@4"]
    rec = ds[9]
    assert rec.name == "goat@8"
    clip = [c for c in DavisDataset(davis, sampling=ClipSampling(num_frames=4, starts="all")).clips(["goat"])
            if c.name == "goat@8"][0].center_crop_resize(32, 48)
    fresh = clip_control(clip.instance_map(), depth_from_disparity(np.full((4, 32, 48), 128, np.uint8)),
                         CFG.clip_control(), ids=clip.object_ids.tolist())
    np.testing.assert_array_equal(rec.frames, clip.frames)
    np.testing.assert_array_equal(rec.instance_map, clip.instance_map())
    assert (rec.disparity == 128).all()
    for a in ("points", "depth", "instance", "visible"):
        torch.testing.assert_close(getattr(rec.signal, a), getattr(fresh, a))
    torch.testing.assert_close(encode(rec.signal), encode(fresh))
    assert rec.meta["frame_indices"] == [8, 9, 10, 11] and rec.meta["control"]["sample_stride"] == 10
    # a rerun recomputes nothing; the bytes are those of the first run
    before = shard_bytes(out)
    again = run_local(davis, out, CFG)
    assert (again.shards_done, again.shards_existing) == (0, 3) and shard_bytes(out) == before


def test_half_written_shard_is_recomputed_and_settings_are_kept(davis, tmp_path):
    out = tmp_path / "pre"
    run_local(davis, out, CFG)
    reference = shard_bytes(out)
    # a kill: one shard's stats missing (the tar is then not trusted), another's spool left half done
    (out / "shards" / "shard-000001.stats.json").unlink()
    (out / "shards" / "shard-000002.tar").write_bytes(b"half a tar")
    (out / "shards" / "shard-000002.stats.json").unlink()
    (out / ".work" / "shard-000002").mkdir(parents=True)
    (out / ".work" / "shard-000002" / "000000.pkl").write_bytes(b"torn")
    finished = (out / "shards" / "shard-000000.tar").stat().st_mtime_ns
    rep = run_local(davis, out, CFG)
    assert (rep.shards_done, rep.shards_existing) == (2, 1)
    assert shard_bytes(out) == reference and (out / "shards" / "shard-000000.tar").stat().st_mtime_ns == finished
    assert not (out / ".work" / "shard-000002").exists()
    with pytest.raises(ValueError, match="other settings"):
        run_local(davis, out, PrecomputeConfig(height=32, width=48, num_frames=8, videos_per_shard=2))


def test_sigkill_mid_shard_then_resume_equals_one_run(davis, tmp_path):
    run_local(davis, tmp_path / "one", CFG)
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "levitor.training.precompute", str(davis), "--out", str(out), "--engine", "local",
            "--height", "32", "--width", "48", "--num-frames", "4", "--frames", "raw", "--videos-per-shard", "2",
            "--quiet"]
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / ".work").glob("shard-*/*.pkl")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)          # mid-shard: a video of some shard is spooled, the shard not written
    proc.wait()
    assert len(finished_shards(out)) < 3
    assert precompute_main(args[3:]) == 0
    assert shard_bytes(out) == shard_bytes(tmp_path / "one")
    names = [s["__key__"] for tar in finished_shards(out) for s in iter_tar_samples(tar)]
    assert len(names) == len(set(names)) == 15               # complete, nothing twice


class _Killed(BaseException):
    """Stands for SIGKILL: nothing of the worker runs after it (not even ``except Exception``)."""


def _dying_depth(after_videos: int, seen: list[int]):
    """A flat DepthFn that records each call's frame count and dies on call ``after_videos + 1``."""

    def depth(frame):
        return np.full(frame.shape[:2], 128, np.uint8)

    def batch(frames):
        if after_videos is not None and len(seen) >= after_videos:
            raise _Killed
        seen.append(len(frames))
        return np.full(frames.shape[:3], 128, np.uint8)

    depth.batch = batch
    return depth


def test_a_worker_killed_mid_shard_loses_only_the_video_in_flight(davis, tmp_path):
    run_local(davis, tmp_path / "one", CFG)
    out = tmp_path / "killed"
    first: list[int] = []
    with pytest.raises(_Killed):                 # dies in shard-000001's second video (goat), fox spooled
        run_local(davis, out, CFG, depth_fn=_dying_depth(3, first))
    assert [p.name for p in finished_shards(out)] == ["shard-000000.tar"]
    assert [p.name for p in (out / ".work" / "shard-000001").iterdir()] == ["000000.pkl"]
    again: list[int] = []
    rep = run_local(davis, out, CFG, depth_fn=_dying_depth(None, again))
    # goat (16 frames), ibex and jay (8 each): bear, car and fox are not computed again
    assert again == [16, 8, 8] and (rep.shards_done, rep.shards_existing) == (2, 1)
    assert shard_bytes(out) == shard_bytes(tmp_path / "one") and not list((out / ".work").glob("*/*"))


def test_a_shard_spooled_whole_but_killed_before_its_tar_is_written_without_recomputing(davis, tmp_path,
                                                                                        monkeypatch):
    import levitor.training.precompute as pre

    def killed(*args, **kwargs):
        raise _Killed

    out = tmp_path / "late"
    with monkeypatch.context() as m:
        m.setattr(pre, "write_shard", killed)
        with pytest.raises(_Killed):
            run_local(davis, out, CFG, depth_fn=_dying_depth(None, []))
    assert finished_shards(out) == [] and len(list((out / ".work" / "shard-000000").glob("*.pkl"))) == 2
    calls: list[int] = []
    rep = run_local(davis, out, CFG, depth_fn=_dying_depth(None, calls))
    assert calls == [8, 16, 8, 8] and rep.shards_done == 3     # fox, goat, ibex, jay; bear and car were spooled
    run_local(davis, tmp_path / "one", CFG)
    assert shard_bytes(out) == shard_bytes(tmp_path / "one")


def test_independent_workers_split_the_shards(davis, tmp_path):
    run_local(davis, tmp_path / "one", CFG)
    out = tmp_path / "two"
    reports = [run_local(davis, out, CFG, worker=k, workers=2) for k in (1, 0)]
    assert [r.shards_done for r in reports] == [1, 2] and shard_bytes(out) == shard_bytes(tmp_path / "one")
    assert resolve_worker(None, None, env={"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}) == (3, 8)
    assert resolve_worker(None, None, env={"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0",
                                           "SLURM_NTASKS": "1"}) == (1, 2)
    assert resolve_worker(2, 4, env={}) == (2, 4)
    with pytest.raises(ValueError, match="go together"):
        resolve_worker(2, None, env={})


def test_corrupt_and_missing_inputs_are_counted_with_reasons(davis, tmp_path):
    (davis / "JPEGImages" / "480p" / "fox" / "00003.jpg").write_bytes(b"not a jpeg")
    (davis / "Annotations" / "480p" / "goat" / "00005.png").unlink()
    with open(davis / "ImageSets" / "2017" / "val.txt", "a") as fh:
        fh.write("kiwi\n")
    rep = run_local(davis, tmp_path / "pre", CFG)
    assert (rep.samples, rep.videos_failed) == (9, 3)
    reasons = {f["video"]: f["error"] for tar in finished_shards(tmp_path / "pre") for f in read_stats(tar)["failures"]}
    assert "cannot read 00003.jpg" in reasons["fox"] and "00005.png is missing" in reasons["goat"]
    assert "no JPEG frames" in reasons["kiwi"]
    report = json.loads((tmp_path / "pre" / "report.json").read_text())
    assert report["complete"] and report["totals"]["clips_failed"] == 3


def test_sav_precompute_decodes_at_the_training_size_and_counts_a_corrupt_video(tmp_path):
    root = tmp_path / "sav"
    write_sav(root, "sav_000001", n_video_frames=40)
    write_sav(root, "sav_000002", n_video_frames=40)
    (root / "sav_000002.mp4").write_bytes(b"\x00" * 100)
    cfg = PrecomputeConfig(dataset="sav", height=16, width=24, num_frames=4, starts="first", frames="raw")
    rep = run_local(root, tmp_path / "out", cfg, depth_fn=constant_depth(50))
    assert (rep.samples, rep.videos_failed) == (1, 1)
    rec = PrecomputedDataset(tmp_path / "out")[0]
    assert rec.frames.shape == (4, 16, 24, 3) and (rec.disparity == 50).all()
    assert rec.meta["clip_meta"]["masklets"][0] == ["manual", 0]
    from levitor.data.sav import SavDataset

    full = next(SavDataset(root, sampling=ClipSampling(num_frames=4, starts="first")).clips(["sav_000001"]))
    np.testing.assert_array_equal(rec.instance_map, full.center_crop_resize(16, 24).instance_map())


@pytest.mark.slow      # ~2 min here: two local Ray starts on a loaded 2-core machine
def test_ray_local_mode_kill_and_resume_equal_one_process(davis, tmp_path):
    """Ray Data with a local Ray of 2 CPUs: SIGKILL once a shard is written, resume, and compare with one process."""
    pytest.importorskip("ray")
    run_local(davis, tmp_path / "one", CFG)
    out = tmp_path / "ray"
    args = [sys.executable, "-m", "levitor.training.precompute", str(davis), "--out", str(out), "--engine", "ray",
            "--num-cpus", "2", "--height", "32", "--width", "48", "--num-frames", "4", "--frames", "raw",
            "--videos-per-shard", "1", "--quiet"]
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not finished_shards(out):
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished_shards(out), proc.stderr.read()[-2000:]
    done_before = len(finished_shards(out))
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(ray)" in res.stdout and f"{done_before} already there" in res.stdout
    one = [s for tar in finished_shards(tmp_path / "one") for s in iter_tar_samples(tar)]
    ray_samples = [s for tar in finished_shards(out) for s in iter_tar_samples(tar)]
    strip = [{k: v for k, v in s.items() if k != "__url__"} for s in one]
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in ray_samples] == strip   # same samples, same bytes
