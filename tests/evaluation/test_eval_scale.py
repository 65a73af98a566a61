"""`levitor eval` at scale: 2 ranks (torchrun, gloo) give the one-process results, a killed run resumes without
writing any (clip, setting) twice, any number of ranks resumes any other's work, and precompute shards are read."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from levitor._util.launch import LaunchInfo
from levitor.cli import main
from levitor.evaluation.masks import PointMaskPropagator
from levitor.evaluation.metrics import RandomConvFeatures
from levitor.evaluation.protocol import QualityStats
from levitor.evaluation.runner import EvalConfig, preview_generator, run_eval
from levitor.evaluation.store import ResultStore
from levitor.evaluation.tracking import FallbackTracker
from levitor.testing.datasets import write_textured_davis

REPO = Path(__file__).resolve().parents[2]
SEQS = {"bear": 8, "car": 9, "fox": 8, "goat": 10, "hog": 8}
CFG = EvalConfig(height=48, width=80, num_frames=8, write_videos=False)
METRICS = ("objmc", "traj_err", "mask_iou", "box_iou", "points")
CLI = ["--model", "preview", "--height", "48", "--width", "80", "--num-frames", "8", "--device", "cpu",
       "--no-videos", "--quality", "random"]


def eval_main(argv: list[str]) -> int:
    """``levitor eval ARGV`` as the command line runs it (one error line and exit 2 for expected failures)."""
    return main(["eval", *argv])


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "DAVIS"
    write_textured_davis(root, SEQS)
    return root


def _quality() -> QualityStats:
    return QualityStats(RandomConvFeatures(kind="image"), RandomConvFeatures(kind="video"))


def _one_process(davis, out, **kw):
    tracker = FallbackTracker()
    return run_eval(davis, preview_generator, tracker, out, CFG, "preview", quality=_quality(),
                    masker=PointMaskPropagator(tracker), **kw)


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "per_clip.csv")))


def _metrics(rows) -> dict:
    return {(r["key"], r["setting"]): tuple(r[k] for k in METRICS) for r in rows}


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for p in sorted((out / "per_clip").glob("*.jsonl")) for x in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(davis, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "one"
    summary = _one_process(davis, out)
    assert summary.clips == len(SEQS) and summary.evaluated_now == 2 * len(SEQS)
    return out, summary


def test_two_ranks_give_the_one_process_results(davis, reference, tmp_path):
    ref, _ref_summary = reference
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "levitor", "eval", str(davis), *CLI, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "by 2 ranks" in proc.stdout
    rows = _rows(out)
    assert _metrics(rows) == _metrics(_rows(ref))                       # the same clip, the same computation
    assert [(r["key"], r["setting"]) for r in rows] == [(r["key"], r["setting"]) for r in _rows(ref)]
    keys = list(dict.fromkeys(r["key"] for r in rows))
    assert {r["key"]: int(r["rank"]) for r in rows} == {k: i % 2 for i, k in enumerate(keys)}   # round-robin
    # FID/FVD: each rank's statistics, merged, equal one pass over every clip (float64 round-off only)
    for setting in ("single", "multi"):
        merged = ResultStore(out, 0, 2).merged_stats(setting, _quality().dims)
        single = ResultStore(ref, 0, 1).merged_stats(setting, _quality().dims)
        for kind, st in merged.items():
            assert st.count == single[kind].count
            np.testing.assert_allclose(st.mean, single[kind].mean, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(st.m2, single[kind].m2, rtol=1e-9, atol=1e-9)
    info, ref_info = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert info["fid"] == pytest.approx(ref_info["fid"], abs=1e-6) and info["fvd"] == pytest.approx(ref_info["fvd"],
                                                                                                     abs=1e-6)


SLOW_RUN = textwrap.dedent("""
    import sys, time
    from levitor.evaluation.masks import PointMaskPropagator
    from levitor.evaluation.metrics import RandomConvFeatures
    from levitor.evaluation.protocol import QualityStats
    from levitor.evaluation.runner import EvalConfig, preview_generator, run_eval
    from levitor.evaluation.tracking import FallbackTracker

    def slow(clip, signal):
        time.sleep(1.0)
        return preview_generator(clip, signal)

    tracker = FallbackTracker()
    run_eval(sys.argv[1], slow, tracker, sys.argv[2], EvalConfig(height=48, width=80, num_frames=8,
             write_videos=False), "preview", quality=QualityStats(RandomConvFeatures(kind="image"),
             RandomConvFeatures(kind="video")), masker=PointMaskPropagator(tracker))
""")


def test_a_killed_evaluation_resumes_without_duplicate_rows(davis, reference, tmp_path):
    ref, ref_summary = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(davis), str(out)], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    part = out / "per_clip" / "rank-00000.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if part.is_file() and len(part.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the slow run finished before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(_lines(out))
    assert 3 <= before < 2 * len(SEQS)
    with open(part, "ab") as fh:                   # what a kill in the middle of a write leaves
        fh.write(b'{"key": "goat@0", "setting": "mu')
    summary = _one_process(davis, out)              # the same command again
    assert summary.evaluated_now == 2 * len(SEQS) - before
    lines = _lines(out)
    pairs = [(r["key"], r["setting"]) for r in lines]
    assert len(pairs) == len(set(pairs)) == 2 * len(SEQS)          # every (clip, setting) once, the torn line gone
    assert _metrics(_rows(out)) == _metrics(_rows(ref))
    assert summary.fid == pytest.approx(ref_summary.fid, abs=1e-9)   # the killed run's clips still count
    assert summary.fvd == pytest.approx(ref_summary.fvd, abs=1e-9)
    again = _one_process(davis, out)                # nothing left to do
    assert again.evaluated_now == 0 and len(_lines(out)) == 2 * len(SEQS)


def test_any_number_of_ranks_resumes_any_other(davis, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "grow"
    tracker = FallbackTracker()
    # a 1-process run that stopped after 2 clips, resumed by 3 ranks (run one after another here: the barrier is
    # only needed for rank 0's merge, which runs last)
    run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**CFG.__dict__, "max_clips": 2}), "preview",
             quality=_quality(), masker=PointMaskPropagator(tracker))
    for rank in (2, 1, 0):
        s = _one_process(davis, out, launch=LaunchInfo(rank, 3, rank, "torchrun"))
    assert s.clips == len(SEQS)
    pairs = [(r["key"], r["setting"]) for r in _lines(out)]
    assert len(pairs) == len(set(pairs)) == 2 * len(SEQS)
    assert _metrics(_rows(out)) == _metrics(_rows(ref))


def test_other_settings_are_refused_and_no_resume_starts_over(davis, reference, tmp_path):
    _ref, _ = reference
    out = tmp_path / "o"
    tracker = FallbackTracker()
    run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**CFG.__dict__, "max_clips": 1}), "preview")
    with pytest.raises(ValueError, match="other settings"):
        run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**CFG.__dict__, "height": 32}), "preview")
    s = run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**CFG.__dict__, "height": 32,
                                                                       "max_clips": 1}), "preview", resume=False)
    assert s.evaluated_now == 2 and len(_lines(out)) == 2


def test_eval_reads_precompute_shards(davis, tmp_path, capsys):
    from levitor.training.precompute import PrecomputeConfig, run_local

    pre = tmp_path / "pre"
    run_local(davis, pre, PrecomputeConfig(height=48, width=80, num_frames=8, starts="first", videos_per_shard=2,
                                           sample_stride=1))
    out = tmp_path / "from_shards"
    assert eval_main([str(pre), *CLI, "--out", str(out)]) == 0
    rows = _rows(out)
    assert sorted({r["key"] for r in rows}) == sorted(f"{s}@0" for s in SEQS)
    assert all(float(r["objmc"]) < 1e-6 and float(r["mask_iou"]) > 0.5 for r in rows)   # preview: the record's clip
    info = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "eval_settings.json").read_text())["source"] == "shards"
    assert info["clips"] == len(SEQS) and info["failures"] == []
    # the records' size is fixed by precompute: another size is an error that says what to pass
    capsys.readouterr()
    assert eval_main([str(pre), *CLI[:2], "--height", "32", "--out", str(tmp_path / "bad")]) == 2
    assert "pass --num-frames/--height/--width of the shards" in capsys.readouterr().err


def test_a_resume_cannot_mix_kmeans_inits(davis, tmp_path):
    out = tmp_path / "k"
    tracker = FallbackTracker()
    one = EvalConfig(**{**CFG.__dict__, "max_clips": 1})
    run_eval(davis, preview_generator, tracker, out, one, "preview")       # None: the preview's own, warm
    assert json.loads((out / "eval_settings.json").read_text())["config"]["kmeans_init"] == "warm"
    with pytest.raises(ValueError, match="other settings"):
        run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**one.__dict__, "kmeans_init": "release"}),
                 "preview")
    s = run_eval(davis, preview_generator, tracker, out, EvalConfig(**{**one.__dict__, "kmeans_init": "warm"}),
                 "preview")
    assert s.evaluated_now == 0 and s.clips == 1                          # the same K-means: a resume
    with pytest.raises(ValueError, match="kmeans_init must be one of"):
        EvalConfig(kmeans_init="cold")


def test_a_records_signal_is_used_only_when_made_with_the_models_kmeans(davis, tmp_path):
    import torch

    from levitor.evaluation.runner import control_for_clip
    from levitor.evaluation.sources import open_source
    from levitor.training.precompute import PrecomputeConfig, run_local

    pre = tmp_path / "pre"
    run_local(davis, pre, PrecomputeConfig(height=48, width=80, num_frames=8, starts="first", videos_per_shard=5,
                                           sample_stride=1, kmeans_init="warm"))
    source = open_source(pre)
    item = source.items(["goat"])[0]
    ev = source.load(item)
    for init in ("warm", "release"):
        seen = []

        def generator(clip, signal, seen=seen):
            seen.append(signal)
            return clip.frames.copy()

        cfg = EvalConfig(**{**CFG.__dict__, "settings": ("multi",), "kmeans_init": init})
        run_eval(pre, generator, FallbackTracker(), tmp_path / init, cfg, "m", sequences=["goat"])
        want = ev.signal if init == "warm" else control_for_clip(ev.clip, "multi", None, ev.disparity, ev.control,
                                                                 kmeans_init="release")
        assert len(seen) == 1 and torch.equal(seen[0].points, want.points), init
    assert not torch.equal(ev.signal.points, want.points)   # the release's K-means gave other points here


def test_eval_size_names_a_size_and_the_flags_override_it(davis, tmp_path, monkeypatch):
    from levitor.evaluation import runner

    seen = {}
    monkeypatch.setattr(runner, "run_eval", lambda *a, **k: seen.setdefault("config", a[4]) and
                        runner.EvalSummary("m", "t", []))
    assert eval_main([str(davis), "--model", "preview", "--device", "cpu", "--size", "release-demo",
                      "--num-frames", "8", "--kmeans-init", "release", "--out", str(tmp_path / "s")]) == 1
    c = seen["config"]
    assert (c.num_frames, c.height, c.width, c.kmeans_init) == (8, 512, 288, "release")
