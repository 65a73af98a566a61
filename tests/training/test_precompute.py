"""Sharded, resumable precompute of depth + control signals, its index merge and the PrecomputedDataset reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from levitor.control.encode import encode
from levitor.control.points import control_from_masks
from levitor.data.davis import DavisDataset
from levitor.data.records import PrecomputedDataset, collate_precomputed, read_record
from levitor.data.sampling import ClipSampling, shard_of
from levitor.depth import depth_from_disparity
from levitor.perception.depth_fn import constant_depth
from levitor.testing.datasets import write_sav, write_textured_davis
from levitor.training.precompute import (
    PrecomputeConfig,
    merge_index,
    precompute_main,
    precompute_shard,
    resolve_shard,
    shard_dirname,
)

SEQS = {"bear": 12, "car": 9, "fox": 8, "goat": 16}     # bear, car -> shard 1 of 2; fox, goat -> shard 0
CFG = PrecomputeConfig(height=32, width=48, num_frames=4, frames="raw")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def davis(tmp_path):
    root = tmp_path / "DAVIS"
    write_textured_davis(root, SEQS)
    return root


def run_both(root, out, cfg=CFG, **kw):
    return [precompute_shard(root, out, cfg, k, 2, **kw) for k in range(2)]


def test_two_shards_merge_and_round_trip(davis, tmp_path):
    assert [shard_of(n, 2) for n in SEQS] == [1, 1, 0, 0]
    out = tmp_path / "pre"
    reports = run_both(davis, out)
    # clips of 4 frames, non-overlapping: bear 3, car 2, fox 2, goat 4
    assert [r.done for r in reports] == [6, 5] and all(r.failed == r.skipped_existing == 0 for r in reports)
    shard1 = out / shard_dirname(1, 2)
    assert sorted(e["name"] for e in lines(shard1 / "index.jsonl")) == [
        "bear@0", "bear@4", "bear@8", "car@0", "car@4"]
    assert json.loads((shard1 / "report.json").read_text())["finished"] is True

    merged = merge_index(out)
    assert merged.complete and merged.records == 11 and merged.totals["done"] == 11
    entries = lines(out / "index.jsonl")
    assert all((out / e["record"]).is_file() for e in entries)

    ds = PrecomputedDataset(out)
    assert len(ds) == 11 and len(PrecomputedDataset(shard1)) == 5
    item = ds[ds.index_of("goat@8")]
    # a fresh computation from the reader gives the same record
    seq = DavisDataset(davis, sampling=ClipSampling(num_frames=4, starts="all"))
    clip = [c for c in seq.clips(["goat"]) if c.name == "goat@8"][0].center_crop_resize(32, 48)
    depth = depth_from_disparity(torch.full((4, 32, 48), 128.0))
    fresh = control_from_masks(torch.from_numpy(clip.instance_map()), depth)
    np.testing.assert_array_equal(item.frames, clip.frames)
    np.testing.assert_array_equal(item.instance_map, clip.instance_map())
    for a in ("points", "depth", "instance", "visible"):
        torch.testing.assert_close(getattr(item.signal, a), getattr(fresh, a))
    torch.testing.assert_close(item.conditioning, encode(fresh))
    assert item.frame_ref == {"source": "davis2017", "video": "goat", "frame_indices": [8, 9, 10, 11],
                              "height": 32, "width": 48}
    batch = collate_precomputed([ds[0], ds[1]])
    assert batch["frames"].shape == (2, 4, 3, 32, 48) and batch["conditioning"].shape == (2, 4, 3, 32, 48)


def test_rerun_is_idempotent_and_resumes_after_a_kill(davis, tmp_path):
    out = tmp_path / "pre"
    run_both(davis, out)
    shard0 = out / shard_dirname(0, 2)
    before = {p.name: p.stat().st_mtime_ns for p in shard0.glob("*.npz")}
    again = precompute_shard(davis, out, CFG, 0, 2)
    assert (again.done, again.skipped_existing, again.videos_skipped) == (0, 6, 2)
    assert {p.name: p.stat().st_mtime_ns for p in shard0.glob("*.npz")} == before     # nothing rewritten

    # simulate a kill: one record lost, a half-written temporary left, the index's last line torn, and a record
    # renamed into place whose index line never got written
    (shard0 / "goat@4.npz").unlink()
    (shard0 / "goat@8.npz.123.tmp").write_bytes(b"PK\x03\x04 half a zip")
    index = [e for e in lines(shard0 / "index.jsonl") if e["name"] != "fox@4"]
    (shard0 / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in index) + '{"name": "goat@1')
    resumed = precompute_shard(davis, out, CFG, 0, 2)
    assert (resumed.done, resumed.skipped_existing, resumed.failed) == (1, 5, 0)
    assert not list(shard0.glob("*.tmp"))
    names = sorted(e["name"] for e in lines(shard0 / "index.jsonl"))
    assert names == ["fox@0", "fox@4", "goat@0", "goat@12", "goat@4", "goat@8"]

    # a truncated record is caught by the size check against the index; a flipped byte by --verify full's CRCs
    (shard0 / "fox@0.npz").write_bytes(b"garbage")
    fixed = precompute_shard(davis, out, CFG, 0, 2)
    assert (fixed.done, fixed.skipped_existing) == (1, 5)
    assert read_record(shard0 / "fox@0.npz")["meta"]["name"] == "fox@0"
    data = bytearray((shard0 / "goat@0.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF
    (shard0 / "goat@0.npz").write_bytes(bytes(data))
    assert precompute_shard(davis, out, CFG, 0, 2).done == 0               # same size: trusted
    assert precompute_shard(davis, out, CFG, 0, 2, verify="full").done == 1
    read_record(shard0 / "goat@0.npz")


def test_interrupted_run_keeps_its_records_and_resumes(davis, tmp_path):
    calls = []

    def dies_on_the_ninth_frame(frame):          # Ctrl-C (or a SIGTERM turned into one) in the third clip
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return np.full(frame.shape[:2], 128, np.uint8)

    out = tmp_path / "pre"
    with pytest.raises(KeyboardInterrupt):
        precompute_shard(davis, out, CFG, 0, 2, depth_fn=dies_on_the_ninth_frame)
    shard0 = out / shard_dirname(0, 2)
    report = json.loads((shard0 / "report.json").read_text())
    assert report["finished"] is False and report["done"] == 2
    assert len(lines(shard0 / "index.jsonl")) == 2 and len(list(shard0.glob("*.npz"))) == 2
    resumed = precompute_shard(davis, out, CFG, 0, 2)
    assert (resumed.done, resumed.skipped_existing, resumed.finished) == (4, 2, True)


def test_corrupt_and_missing_videos_are_counted_not_fatal(davis, tmp_path):
    (davis / "JPEGImages" / "480p" / "fox" / "00003.jpg").write_bytes(b"not a jpeg")       # corrupt frame
    (davis / "Annotations" / "480p" / "goat" / "00005.png").unlink()                       # missing mask
    with open(davis / "ImageSets" / "2017" / "val.txt", "a") as fh:
        fh.write("ibis\n")                                                                 # missing sequence
    assert shard_of("ibis", 2) == 0
    out = tmp_path / "pre"
    rep = precompute_shard(davis, out, CFG, 0, 2)
    assert (rep.done, rep.failed, rep.videos) == (0, 3, 3)
    saved = json.loads((out / shard_dirname(0, 2) / "report.json").read_text())
    reasons = {f["video"]: f["error"] for f in saved["failures"]}
    assert "cannot read 00003.jpg" in reasons["fox"] and "00005.png is missing" in reasons["goat"]
    assert "no JPEG frames" in reasons["ibis"] and saved["finished"] is True
    run_both(davis, out)                       # the other shard still works; failures are retried, not cached
    merged = merge_index(out)
    assert merged.records == 5 and merged.totals["failed"] == 3 and len(merged.failures) == 3


def test_sav_corrupt_video_is_counted(tmp_path):
    root = tmp_path / "sav"
    write_sav(root, "sav_000001", n_video_frames=40)
    write_sav(root, "sav_000002", n_video_frames=40)
    (root / "sav_000002.mp4").write_bytes(b"\x00" * 100)
    cfg = PrecomputeConfig(dataset="sav", height=16, width=24, num_frames=4, starts="first", frames="jpeg")
    rep = precompute_shard(root, tmp_path / "out", cfg, 0, 1)
    assert (rep.done, rep.failed) == (1, 1) and rep.failures[0]["video"] == "sav_000002"
    item = PrecomputedDataset(tmp_path / "out" / shard_dirname(0, 1))[0]
    assert item.frames.shape == (4, 16, 24, 3) and item.meta["clip_meta"]["masklets"][0] == ["manual", 0]


def test_other_settings_are_refused_on_resume(davis, tmp_path):
    precompute_shard(davis, tmp_path / "pre", CFG, 0, 2)
    with pytest.raises(ValueError, match="other settings"):
        precompute_shard(davis, tmp_path / "pre", PrecomputeConfig(height=32, width=48, num_frames=8), 0, 2)


def test_resolve_shard_from_arguments_and_launchers():
    assert resolve_shard(env={}) == (0, 1)
    assert resolve_shard(3, 16, env={"RANK": "1", "WORLD_SIZE": "2"}) == (3, 16)
    assert resolve_shard(env={"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8)   # torchrun/accelerate
    assert resolve_shard(env={"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}) == (1, 4)
    assert resolve_shard(env={"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "10"}) == (7, 10)
    with pytest.raises(ValueError, match="go together"):
        resolve_shard(3, None, env={})
    with pytest.raises(ValueError, match="0..num_shards-1"):
        resolve_shard(4, 4, env={})


def test_cli_with_torchrun_env_and_a_tiny_depth_model(davis, tmp_path, monkeypatch, capsys):
    from levitor.perception import DepthEstimator
    from levitor.testing.tiny_perception import save_tiny_depth_anything

    model = save_tiny_depth_anything(tmp_path / "depth")
    out = tmp_path / "pre"
    args = [str(davis), "--out", str(out), "--depth", str(model), "--depth-input-size", "56", "--device", "cpu",
            "--height", "28", "--width", "42", "--num-frames", "2", "--starts", "first", "--frames", "raw",
            "--quiet"]
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert precompute_main(args) == 0
    text = capsys.readouterr().out
    assert "other shards are still running" in text and "merged 2/2 shards" in text   # the last one merges
    ds = PrecomputedDataset(out)
    assert sorted(ds.names) == ["bear@0", "car@0", "fox@0", "goat@0"]
    item = ds[0]
    est = DepthEstimator.load(str(model), device="cpu", input_size=56)
    np.testing.assert_array_equal(item.disparity[1], est.estimate_disparity(item.frames[1]))   # per frame
    assert item.disparity.dtype == np.uint8 and item.disparity.max() == 255 and item.disparity.min() == 0
    assert json.loads((out / "report.json").read_text())["complete"] is True
    monkeypatch.setenv("RANK", "0")
    assert precompute_main(args[:1] + ["--out", str(out), "--depth", "const:9", "--quiet"]) == 2   # refused
    assert "other settings" in capsys.readouterr().err
    assert precompute_main(["--merge-only", "--out", str(out)]) == 0


def test_depth_function_is_used_per_frame(davis, tmp_path):
    cfg = PrecomputeConfig(height=32, width=48, num_frames=4, starts="first", depth="const:50")
    precompute_shard(davis, tmp_path / "pre", cfg, 0, 1, depth_fn=constant_depth(50))
    item = PrecomputedDataset(tmp_path / "pre" / shard_dirname(0, 1))[0]
    assert (item.disparity == 50).all() and set(item.signal.depth[item.signal.visible].tolist()) == {50.0}
    assert item.frames.shape == (4, 32, 48, 3)           # JPEG by default: close to, not equal to, the source


def test_frame_references_only_and_a_missing_shard(davis, tmp_path, capsys):
    cfg = PrecomputeConfig(height=32, width=48, num_frames=4, starts="first", frames="none")
    out = tmp_path / "pre"
    precompute_shard(davis, out, cfg, 1, 2)
    merged = merge_index(out)
    assert not merged.complete and merged.missing_shards == [0] and merged.records == 2
    assert precompute_main(["--merge-only", "--out", str(out)]) == 1
    assert "missing shards [0]" in capsys.readouterr().err
    item = PrecomputedDataset(out)[0]
    assert item.frames is None and item.frame_ref["frame_indices"] == [0, 1, 2, 3]
    batch = collate_precomputed([item])
    assert "frames" not in batch and batch["conditioning"].shape == (1, 4, 3, 32, 48)
