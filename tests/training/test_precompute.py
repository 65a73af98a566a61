"""Precompute into WebDataset shards: the local engine, resuming after a kill, corrupt inputs, the record round trip,
independent worker processes, damaged shards and planted files found on a rerun, the engine choice, errors in one
line on either engine, and Ray Data in local mode (byte-identical to one process)."""

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

from levitor.cli import main
from levitor.control.clip_control import clip_control
from levitor.control.encode import encode
from levitor.data.davis import DavisDataset
from levitor.data.records import PrecomputedDataset, finished_shards, iter_tar_samples, read_stats, stats_path
from levitor.data.sampling import ClipSampling
from levitor.depth import depth_from_disparity
from levitor.perception.depth_fn import constant_disparity
from levitor.testing.datasets import write_sav, write_textured_davis
from levitor.training.precompute import (
    EngineError,
    PrecomputeConfig,
    choose_engine,
    resolve_worker,
    run_local,
)

REPO = Path(__file__).resolve().parents[2]
SEQS = {"bear": 12, "car": 9, "fox": 8, "goat": 16, "ibex": 8, "jay": 8}
CFG = PrecomputeConfig(height=32, width=48, num_frames=4, frames="raw", videos_per_shard=2)


def precompute_main(argv: list[str]) -> int:
    """``levitor precompute ARGV`` as the command line runs it."""
    return main(["precompute", *argv])


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
    (out / ".work" / "shard-000002" / "000000.npz").write_bytes(b"torn")
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
    args = [sys.executable, "-m", "levitor", "precompute", str(davis), "--out", str(out), "--engine", "local",
            "--height", "32", "--width", "48", "--num-frames", "4", "--frames", "raw", "--videos-per-shard", "2",
            "--quiet"]
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / ".work").glob("shard-*/*.npz")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)          # mid-shard: a video of some shard is spooled, the shard not written
    proc.wait()
    assert len(finished_shards(out)) < 3
    assert precompute_main(args[4:]) == 0
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
    assert [p.name for p in (out / ".work" / "shard-000001").iterdir()] == ["000000.npz"]
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
    assert finished_shards(out) == [] and len(list((out / ".work" / "shard-000000").glob("*.npz"))) == 2
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
    rep = run_local(root, tmp_path / "out", cfg, depth_fn=constant_disparity(50))
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
    args = [sys.executable, "-m", "levitor", "precompute", str(davis), "--out", str(out), "--engine", "ray",
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


# ------------------------------------------------------------------------------ untrusted files in the output folder
class _Payload:
    """Unpickling this creates ``marker``: what a planted pickle in a shared scratch folder could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_the_spool_is_never_loaded(davis, tmp_path, caplog):
    import pickle

    run_local(davis, tmp_path / "one", CFG)
    out = tmp_path / "shared"
    with pytest.raises(_Killed):                 # shard-000000 written, fox of shard-000001 spooled
        run_local(davis, out, CFG, depth_fn=_dying_depth(3, []))
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps({"video": "goat", "samples": [], "failures": [], "empty": 0, "x": _Payload(marker)})
    planted = [out / ".work" / "shard-000001" / "000001.pkl", out / ".work" / "shard-000002" / "000000.pkl",
               out / ".work" / "shard-000002" / "000001.npz"]  # an npz holding a pickle: refused by numpy as well
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(payload)
    calls: list[int] = []
    with caplog.at_level("WARNING", logger="levitor.training.precompute"):
        rep = run_local(davis, out, CFG, depth_fn=_dying_depth(None, calls))
    assert not marker.exists()
    assert calls == [16, 8, 8] and rep.shards_done == 2          # goat, ibex, jay: none was taken from a pickle
    assert shard_bytes(out) == shard_bytes(tmp_path / "one") and not any(p.exists() for p in planted)
    assert "old pickle format without reading them" in caplog.text


def test_the_spool_round_trips_what_the_stages_make_and_refuses_anything_else():
    from levitor.training import spool

    value = {"video": "v", "empty": 2, "fps": np.float32(24.0), "ids": (1, 2), "none": None,
             "clips": [{"frames": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "name": "v@0", "flag": True,
                        "map": np.zeros((2, 2), np.uint16), "bytes": b"\x00ab\x00"}]}
    back = spool.unpack(spool.pack(value))
    assert back["clips"][0]["bytes"] == b"\x00ab\x00" and back["ids"] == [1, 2] and back["fps"] == 24.0
    np.testing.assert_array_equal(back["clips"][0]["frames"], value["clips"][0]["frames"])
    assert back["clips"][0]["map"].dtype == np.uint16 and back["none"] is None and back["clips"][0]["flag"] is True
    for bad in ({1: "x"}, {"a": object()}, {"a": np.array([object()])}):
        with pytest.raises(TypeError):
            spool.pack(bad)
    for data in (b"", b"torn", spool.pack(value)[:100], np.lib.format.magic(1, 0) + b"x" * 50):
        with pytest.raises(spool.SpoolError):
            spool.unpack(data)


def _flip_a_byte_of(tar: Path, member_part: str) -> None:
    """Flip one byte inside the data of the first member named ``*.<member_part>`` (the tar keeps its size)."""
    import tarfile

    with tarfile.open(tar) as tf:
        m = next(m for m in tf if m.name.endswith(member_part))
    data = bytearray(tar.read_bytes())
    data[m.offset_data + m.size // 2] ^= 0x01
    tar.write_bytes(bytes(data))


def test_a_same_size_shard_with_a_flipped_byte_is_found_and_recomputed_on_a_rerun(davis, tmp_path, capsys, caplog):
    out = tmp_path / "pre"
    args = [str(davis), "--out", str(out), "--engine", "local", "--height", "32", "--width", "48", "--num-frames",
            "4", "--frames", "raw", "--videos-per-shard", "2", "--quiet"]
    assert precompute_main(args) == 0
    reference = shard_bytes(out)
    tar = out / "shards" / "shard-000001.tar"
    size = tar.stat().st_size
    _flip_a_byte_of(tar, "control.npy")
    assert tar.stat().st_size == size and [p.name for p in finished_shards(out)][1] == tar.name   # looks finished
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="levitor.training.precompute"):
        assert precompute_main(args) == 0
    assert "2 already there (verified), 1 damaged ones recomputed" in capsys.readouterr().out
    assert f"computing a damaged shard again: shard {tar}: sample 'fox@0' does not match its digest" in caplog.text
    assert shard_bytes(out) == reference
    # a shard of an older levitor (no file digest in its stats): each sample is checked instead
    tar = out / "shards" / "shard-000002.tar"
    stats = json.loads(stats_path(tar).read_text())
    del stats["file_digest"]
    stats_path(tar).write_text(json.dumps(stats))
    _flip_a_byte_of(tar, ".json")                                       # the metadata, another member
    rep = run_local(davis, out, CFG)
    assert (rep.shards_done, rep.shards_existing, rep.shards_damaged) == (1, 2, 1) and shard_bytes(out) == reference
    # a flip where no sample looks (the tar's end-of-archive padding): the file is still not the one written
    data = bytearray(tar.read_bytes())
    data[-3] ^= 0x01
    tar.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="levitor.training.precompute"):
        rep = run_local(davis, out, CFG)
    assert rep.shards_damaged == 1 and "is not the file that was written (its digest differs)" in caplog.text
    assert shard_bytes(out) == reference


# ------------------------------------------------------------------------------------------ engines and errors
def test_auto_picks_the_local_engine_on_one_machine_without_a_gpu(davis, tmp_path, monkeypatch, capsys):
    import torch

    assert not torch.cuda.is_available()         # the CI machine; the choice below is what it gets
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_engine("auto", env={}).engine == "local"
    out = tmp_path / "auto"
    args = [str(davis), "--out", str(out), "--height", "32", "--width", "48", "--num-frames", "4", "--frames", "raw",
            "--videos-per-shard", "2"]
    assert precompute_main(args) == 0
    said = capsys.readouterr()
    assert "levitor precompute: local engine (one machine" in said.err and "levitor precompute (local)" in said.out
    # Ray where it pays: a cluster to join, or several GPUs; never inside a launcher of several processes
    assert choose_engine("auto", "HEAD:6379", env={}, gpus=0, ray_installed=True).engine == "ray"
    picked = choose_engine("auto", env={"RAY_ADDRESS": "auto"}, gpus=0, ray_installed=True)
    assert (picked.engine, picked.address) == ("ray", "auto")
    assert choose_engine("auto", env={}, gpus=2, ray_installed=True).engine == "ray"
    assert choose_engine("auto", env={}, gpus=2, ray_installed=False).engine == "local"
    tasks = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    assert choose_engine("auto", env=tasks, gpus=8, ray_installed=True).engine == "local"
    assert choose_engine("auto", env={**tasks, "RAY_ADDRESS": "auto"}, gpus=8, ray_installed=True).engine == "local"
    assert choose_engine("local", "HEAD:6379", env={}, gpus=8, ray_installed=True).engine == "local"
    with pytest.raises(ValueError, match="needs Ray, which is not installed.*--engine local"):
        choose_engine("auto", "HEAD:6379", env={}, gpus=0, ray_installed=False)


def test_a_bad_depth_is_one_line_with_the_ray_engine_before_ray_starts(davis, tmp_path):
    pytest.importorskip("ray")
    base = [sys.executable, "-m", "levitor", "precompute", str(davis), "--height", "32", "--width", "48",
            "--num-frames", "4", "--depth", "const:999", "--quiet"]
    said = {}
    for engine in ("local", "ray"):
        res = subprocess.run([*base, "--out", str(tmp_path / engine), "--engine", engine], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr[-2000:]
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("levitor precompute: error: "), res.stderr
        said[engine] = res.stderr
    assert said["ray"] == said["local"] and "0..255" in said["ray"]
    assert not (tmp_path / "ray" / "shards").exists()


def test_an_error_in_a_ray_stage_comes_back_as_the_local_engines_error():
    """The stage wrappers run as Ray tasks; here they run in this process (the Ray round trip is the slow test)."""
    from levitor.training.precompute_ray import ERROR_KEY, _guarded, raise_stage_error

    def bad_depth(row):
        raise ValueError("a constant disparity must be in 0..255, got 999")

    row = _guarded(bad_depth, {"video": "bear", ERROR_KEY: b"", "payload": b""})
    assert row[ERROR_KEY] and _guarded(lambda r: pytest.fail("an error row is not run again"), row) is row
    with pytest.raises(ValueError) as err:
        raise_stage_error(row[ERROR_KEY])
    assert str(err.value) == "a constant disparity must be in 0..255, got 999"
    row = _guarded(lambda r: Path("/no/such/file").read_bytes(), {"video": "bear", ERROR_KEY: b"", "payload": b""})
    with pytest.raises(OSError, match="No such file"):
        raise_stage_error(row[ERROR_KEY])
    row = _guarded(lambda r: {}["missing"], {"video": "bear", ERROR_KEY: b"", "payload": b""})
    with pytest.raises(RuntimeError, match="KeyError: 'missing'") as err:      # a bug keeps its traceback
        raise_stage_error(row[ERROR_KEY])
    assert "Traceback" in str(err.value)


def test_ray_that_cannot_start_is_one_line_suggesting_the_local_engine(davis, tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    from levitor.training.precompute_ray import MIN_ADDRESS_SPACE, object_store_bytes

    def no_raylet(*args, **kwargs):
        raise ConnectionError("raylet did not come up in 30 s")

    monkeypatch.setattr(ray, "init", no_raylet)
    args = [str(davis), "--out", str(tmp_path / "o"), "--engine", "ray", "--height", "32", "--width", "48",
            "--num-frames", "4", "--quiet"]
    assert precompute_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not start Ray on this machine (ConnectionError: raylet did not" in err
    assert "run with --engine local" in err
    # under `ulimit -v` the store is sized to fit (Ray's default store made the raylet die with a C++ stack dump)
    assert object_store_bytes(10 * 1024**3) == 10 * 1024**3 // 4 and object_store_bytes(-1) is None
    with pytest.raises(EngineError, match="ulimit -v.*--engine local"):
        object_store_bytes(MIN_ADDRESS_SPACE - 1)


@pytest.mark.slow      # ~40 s here: a local Ray start under an address-space limit
def test_the_ray_engine_runs_under_a_virtual_memory_limit_and_unwraps_a_stage_error(davis, tmp_path):
    """``ulimit -v 10G``: the raylet used to die with a C++ stack dump; and an error raised inside a Ray task comes
    back as the one line the local engine prints (the driver-side check is skipped to reach the task)."""
    pytest.importorskip("ray")
    import resource

    code = ("import sys, levitor.perception.depth_fn as d; d.check_depth_spec = lambda spec: None; "
            "import levitor.training.precompute_ray as r; r.check_depth_spec = d.check_depth_spec; "
            "from levitor.cli import main; sys.exit(main(['precompute', *sys.argv[1:]]))")
    limit = 10 * 1024**3

    def run(depth: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(davis), "--out", str(tmp_path / out), "--engine",
                               "ray", "--num-cpus", "2", "--height", "32", "--width", "48", "--num-frames", "4",
                               "--frames", "raw", "--videos-per-shard", "2", "--depth", depth, "--quiet"],
                              cwd=REPO, capture_output=True, text=True, timeout=400,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))

    res = run("const:999", "bad")
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("levitor precompute")]
    assert lines == ["levitor precompute: error: --depth const:<N> needs an integer disparity 0..255, got "
                     "'const:999'"], res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "UserCodeException" not in res.stderr
    res = run("none", "ok")
    assert res.returncode == 0 and "(ray)" in res.stdout, res.stderr[-3000:]
    assert "Raylet is terminated" not in res.stderr
    run_local(davis, tmp_path / "one", CFG)
    assert shard_bytes(tmp_path / "ok") == shard_bytes(tmp_path / "one")


@pytest.mark.slow      # ~40 s here: a local Ray start and a depth actor
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")   # Ray's own DataContext() fields
def test_ray_depth_actors_write_what_the_local_engine_writes_with_one_thread(davis, tmp_path):
    """The depth-network path of the Ray engine (an actor pool, batches of rows): the same bytes as the local engine
    run with one torch thread (Ray's workers run one each; the maps of a network depend on the thread count)."""
    pytest.importorskip("ray")
    from levitor._util.threads import torch_threads
    from levitor.perception.depth_fn import load_depth_fn
    from levitor.testing.tiny_perception import save_tiny_depth_anything
    from levitor.training.precompute_ray import run_ray

    tiny = str(save_tiny_depth_anything(tmp_path / "tiny-da"))
    cfg = PrecomputeConfig(height=32, width=48, num_frames=4, frames="raw", videos_per_shard=2, depth=tiny,
                           depth_input_size=126)
    with torch_threads(1):
        run_local(davis, tmp_path / "local", cfg, load_depth_fn(tiny, "cpu", 126))
    rep = run_ray(davis, tmp_path / "ray", cfg, num_cpus=2, device="cpu")
    assert rep.samples == 15 and rep.engine == "ray"
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local")
    disparity = {r.name: r.disparity for r in PrecomputedDataset(tmp_path / "ray")}
    assert len({d.tobytes() for d in disparity.values()}) > 1        # a network's maps, not a flat constant
