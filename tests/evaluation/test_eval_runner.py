"""`levitor eval` end to end on a tiny DAVIS fixture: the preview baseline and a tiny random LeviTorPipeline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from levitor.cli import main
from levitor.evaluation.masks import PointMaskPropagator
from levitor.evaluation.runner import EvalConfig, control_for_clip, preview_generator, run_eval
from levitor.evaluation.tracking import FallbackTracker
from levitor.perception.depth_fn import constant_disparity
from levitor.testing.datasets import write_textured_davis

H, W = 64, 96          # fixture size (cropped to the generation size's aspect by the runner)


def eval_main(argv: list[str]) -> int:
    """``levitor eval ARGV`` as the command line runs it (one error line and exit 2 for expected failures)."""
    return main(["eval", *argv])


@pytest.fixture
def davis(tmp_path):
    root = tmp_path / "DAVIS"
    write_textured_davis(root, {"bear": 8, "fox": 9})
    return root


def test_control_for_clip_settings(davis):
    from levitor.data.davis import DavisDataset
    from levitor.data.sampling import ClipSampling

    clip = next(DavisDataset(davis, sampling=ClipSampling(num_frames=8)).clips())
    single = control_for_clip(clip, "single")
    assert single.points_per_object() == {1: 1, 2: 1}
    multi = control_for_clip(clip, "multi", constant_disparity(200))
    assert all(1 <= k <= 8 for k in multi.points_per_object().values()) and multi.num_points > 2
    assert set(multi.depth[multi.visible].round().tolist()) == {200.0}      # round(1 / (1/200))
    with pytest.raises(ValueError, match="setting"):
        control_for_clip(clip, "dense")


def test_the_control_uses_the_kmeans_the_model_was_trained_with(davis):
    from types import SimpleNamespace

    import torch

    from levitor.control.points import control_from_masks
    from levitor.data.davis import DavisDataset
    from levitor.data.sampling import ClipSampling
    from levitor.evaluation.runner import generator_kmeans_init

    assert generator_kmeans_init(preview_generator) == "warm"
    released = SimpleNamespace(pipe=SimpleNamespace(control_rules="release"))
    assert generator_kmeans_init(released) == "release"
    clip = next(DavisDataset(davis, sampling=ClipSampling(num_frames=8)).clips())
    rel = control_for_clip(clip, "multi", kmeans_init="release")
    expected = control_from_masks(torch.as_tensor(clip.instance_map()), torch.full(clip.instance_map().shape, 1.0),
                                  init="release", ids=clip.object_ids.tolist())
    assert torch.equal(rel.points, expected.points)
    assert not torch.equal(rel.points, control_for_clip(clip, "multi").points)  # warm starts differ


def test_preview_baseline_gives_zero_objmc_and_writes_everything(davis, tmp_path):
    out = tmp_path / "eval"
    cfg = EvalConfig(height=48, width=80, num_frames=8)
    tracker = FallbackTracker()
    summary = run_eval(davis, preview_generator, tracker, out, cfg, model_name="preview",
                       masker=PointMaskPropagator(tracker))
    assert {(r.name, r.setting) for r in summary.results} == {(n, s) for n in ("bear@0", "fox@0")
                                                              for s in ("single", "multi")}
    assert all(r.objmc < 1e-6 for r in summary.results)     # the same frames tracked twice: identical tracks
    rows = list(csv.DictReader(open(out / "results.csv")))
    ours = [r for r in rows if r["source"] == "ours"]
    assert [r["setting"] for r in ours] == ["single", "multi"] and ours[0]["clips"] == "2"
    assert any(r["ObjMC"] == "25.97" for r in rows)          # the paper's full model beside ours
    md = (out / "results.md").read_text()
    assert "| preview |" in md and "not with the paper" in md
    for s in ("single", "multi"):
        for n in ("bear@0", "fox@0"):
            video = out / "videos" / s / f"{n}_tracks.mp4"
            assert video.stat().st_size > 1000
    import av

    with av.open(str(out / "videos" / "multi" / "bear@0_tracks.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 8 and (frames[0].height, frames[0].width) == (48, 80)
    per_clip = list(csv.DictReader(open(out / "per_clip.csv")))
    assert len(per_clip) == 4 and float(per_clip[0]["total_s"]) > 0
    # the real clip as its own generation: its objects stay where their masks are (up to the tracker's drift on
    # these 12 px objects) and the trajectory error is 0
    assert all(float(r["traj_err"]) == 0 and float(r["mask_iou"]) > 0.8 and float(r["box_iou"]) > 0.8
               for r in per_clip)
    assert "| M_IoU | B_IoU |" in md and (out / "per_clip" / "rank-00000.jsonl").is_file()
    info = json.loads((out / "summary.json").read_text())
    assert info["clips"] == 2 and info["objmc"]["multi"] < 1e-6 and info["failures"] == []


def test_frozen_model_scores_worse_than_preview(davis, tmp_path):
    def frozen(clip, signal):                  # a "model" that ignores the control: the first frame, repeated
        return np.repeat(clip.frames[:1], clip.num_frames, axis=0)

    cfg = EvalConfig(height=48, width=80, num_frames=8, settings=("single",), write_videos=False)
    summary = run_eval(davis, frozen, FallbackTracker(), tmp_path / "frozen", cfg, sequences=["bear"])
    # object 1 moves 2 px/frame (x 48/64 after the resize): a frozen video misses it by ~5 px at frame 7
    assert 1.0 < summary.mean_objmc("single") < 6.0


def test_eval_cli_with_a_tiny_random_pipeline(davis, tmp_path):
    from levitor.testing.tiny import save_tiny_pipeline

    weights = save_tiny_pipeline(tmp_path / "tiny")["pipeline"]
    out = tmp_path / "tiny_eval"
    rc = eval_main([str(davis), "--model", str(weights), "--setting", "multi", "--max-clips", "1", "--steps", "2",
                    "--height", "32", "--width", "48", "--num-frames", "4", "--device", "cpu", "--depth",
                    "const:100", "--out", str(out), "--quality", "random"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    ours = [r for r in rows if r["source"] == "ours"]
    assert len(ours) == 1 and ours[0]["model"] == "tiny" and ours[0]["clips"] == "1"
    assert float(ours[0]["ObjMC"]) >= 0
    assert (out / "videos" / "multi" / "bear@0_tracks.mp4").is_file()
    assert not (out / "videos" / "single").exists()


def test_eval_cli_errors_teach(davis, tmp_path, capsys):
    assert eval_main([str(davis), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "neither 'preview' nor an existing folder" in capsys.readouterr().err
    assert eval_main([str(tmp_path / "no_davis"), "--out", str(tmp_path / "o")]) == 2
    assert "DAVIS folder" in capsys.readouterr().err


def test_eval_threads_are_set_recorded_and_a_resume_with_another_count_is_refused(davis, tmp_path, capsys):
    import torch

    seen: list[int] = []

    def recording(clip, signal):                 # a "model" that notes the thread count it runs under
        seen.append(torch.get_num_threads())
        return preview_generator(clip, signal)

    before = torch.get_num_threads()
    cfg = EvalConfig(height=48, width=80, num_frames=8, settings=("single",), write_videos=False, threads=3)
    run_eval(davis, recording, FallbackTracker(), tmp_path / "api", cfg, sequences=["bear"])
    assert seen == [3] and torch.get_num_threads() == before            # set for the run, then restored
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        EvalConfig(threads=0)

    out = tmp_path / "cli"
    base = [str(davis), "--model", "preview", "--height", "48", "--width", "80", "--num-frames", "8", "--device",
            "cpu", "--no-videos", "--setting", "single", "--out", str(out)]
    assert eval_main([*base, "--sequences", "bear", "--threads", "2"]) == 0
    assert json.loads((out / "eval_settings.json").read_text())["threads"] == 2
    assert [r["threads"] for r in csv.DictReader(open(out / "per_clip.csv"))] == ["2"]
    capsys.readouterr()
    assert eval_main(base) == 2                                          # the default is 1 thread per rank
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluated with 2 torch threads per rank and this run asks for 1" in err
    assert "--threads 2 to go on as before, --allow-thread-change" in err
    assert [r["threads"] for r in csv.DictReader(open(out / "per_clip.csv"))] == ["2"]    # nothing added
    assert eval_main([*base, "--allow-thread-change"]) == 0              # adds fox with 1 thread
    assert json.loads((out / "eval_settings.json").read_text())["threads"] == 1
    assert [(r["name"], r["threads"]) for r in csv.DictReader(open(out / "per_clip.csv"))] == [("bear@0", "2"),
                                                                                                ("fox@0", "1")]
    assert eval_main(base) == 0                                          # now the folder's count: resumes
