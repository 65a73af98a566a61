"""Training: config loading, control ablations, a two-step run that checkpoints and resumes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from levitor.training.config import PRESETS, TrainConfig, load_config
from levitor.training.datasets import SyntheticControlDataset, control_video, make_dataset, precompute_synthetic
from levitor.training.loop import train
from levitor.training.loss import motion_mask
from levitor.training.models import build_models

TINY_MINI = dict(base="mini", height=16, width=16, num_frames=2, batch_size=1, mini_channels=[32, 32],
                 max_steps=2, log_every=1, checkpoint_every=2, checkpoint_minutes=0, sample_every=0, ema=True,
                 synthetic={"max_sprites": 2, "sprite_size": [0.2, 0.3]})


def test_presets_and_paper_hyper_parameters():
    paper = PRESETS["paper"]
    assert (paper.lr, paper.num_frames, paper.max_steps, paper.train_unet) == (1e-5, 16, 200_000, False)
    assert PRESETS["mini"].train_unet and PRESETS["mini"].model == "mini"


def test_config_files_load_and_unknown_keys_fail(tmp_path):
    for name in ("paper", "mini"):
        cfg = load_config(f"configs/{name}.yaml")
        assert isinstance(cfg, TrainConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: mini\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(bad)
    with pytest.raises(ValueError, match="control"):
        load_config(None, control="no_colour")
    (tmp_path / "c.json").write_text(json.dumps({"base": "mini", "lr": 0.01}))
    assert load_config(tmp_path / "c.json").lr == 0.01


@pytest.mark.parametrize("name, text, message", [
    ("missing.yaml", None, "config file .*missing.yaml not found"),
    ("broken.yaml", "base: mini\nlr: [1, 2\n", "not valid YAML at line 3"),
    ("broken.json", '{"lr": 1,', "not valid JSON at line 1"),
    ("unknown.yaml", "base: mini\nlearning_rate: 0.1\n", "unknown config key.*learning_rate"),
])
def test_levitor_train_config_errors_are_one_line_and_exit_2(tmp_path, name, text, message):
    import re
    import subprocess
    import sys

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    res = subprocess.run([sys.executable, "-m", "levitor", "train", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr and re.search(message, lines[0]), res.stderr


@pytest.fixture(scope="module")
def shards_16(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards16")
    precompute_synthetic(root, 1, load_config(None, base="mini", height=16, width=16, num_frames=2), shard_size=1)
    return root


@pytest.mark.parametrize("lines, message", [
    ("lr: -0.001", r"lr must be > 0, got -0.001"),
    ("batch_size: 0", r"batch_size must be >= 1, got 0"),
    ("ema_decay: 1.5", r"ema_decay must be in \[0, 1\), got 1.5"),
    ("height: 20", r"height must be a positive multiple of 8, got 20"),
    ("max_steps: many", r"max_steps must be int, got 'many'"),
    ("batch_size: 2.5", r"batch_size must be int, got 2.5"),
    ("mixed_precision: no", r"quote it"),
    ("synthetic: {{sprites: 3}}", r"unknown synthetic key\(s\) \['sprites'\]"),
    ("data: shards\ndata_root: {missing}", r"data_root .*missing is not a folder; run `levitor precompute"),
    ("data: shards\ndata_root: {empty}", r"holds no finished shards"),
    ("data: shards\ndata_root: {shards}\nheight: 32", r"hold 2x16x16 clips .* asks for 8x32x32"),
])
def test_levitor_train_bad_values_are_one_line_and_exit_2(tmp_path, capsys, shards_16, lines, message):
    """In process: the same handler as the subprocess test above, for values the file parses but the config
    refuses (nothing is built: these return before any model is made)."""
    import re

    from levitor.cli import main

    (tmp_path / "empty").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text("base: mini\n" + lines.format(missing=tmp_path / "missing", empty=tmp_path / "empty",
                                                  shards=shards_16) + "\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("levitor train: error: ") and re.search(message, err[0]), err
    assert main(["train", str(tmp_path / "c.yaml"), "--set", "lr=fast"]) == 2
    assert "lr must be float, got 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["precompute", "{tmp}", "--out", "{tmp}/o", "--engine", "local"], "DAVIS folder .* not found"),
    (["precompute", "{tmp}", "--out", "{tmp}/o", "--engine", "local", "--height", "4"], "need height, width >= 8"),
    (["precompute", "{tmp}", "--out", "{tmp}/o", "--engine", "local", "--threads", "0"], "--threads must be >= 1"),
    (["precompute", "{tmp}", "--out", "{tmp}/o", "--engine", "local", "--workers", "2"], "go together"),
    (["eval", "{tmp}", "--out", "{tmp}/e", "--steps", "0"], "--steps must be >= 1"),
    (["eval", "{tmp}", "--out", "{tmp}/e", "--height", "100"], "positive multiples of 8"),
    (["eval", "{tmp}", "--out", "{tmp}/e", "--source", "shards"], "no finished shards"),
    (["precompute-synthetic", "{tmp}/s", "--clips", "0"], "--clips and --shard-size must be >= 1"),
])
def test_eval_and_precompute_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    import re

    from levitor.cli import main

    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_levitor_precompute_then_levitor_train_configs_paper_on_one_process(tmp_path, capsys, tiny_svd):
    """The issue's "done": `levitor precompute` -> `levitor train configs/paper.yaml` from its shards (tiny random
    models in place of SVD, the size of the fixture); the 2-process run is in test_distributed."""
    from pathlib import Path

    from levitor.cli import main
    from levitor.testing.datasets import write_textured_davis

    write_textured_davis(tmp_path / "DAVIS", {"bear": 8, "car": 8})
    assert main(["precompute", str(tmp_path / "DAVIS"), "--out", str(tmp_path / "pre"), "--engine", "local",
                 "--height", "32", "--width", "32", "--num-frames", "4", "--quiet"]) == 0
    sets = dict(pretrained=tiny_svd, data_root=tmp_path / "pre", output_dir=tmp_path / "run", height=32, width=32,
                num_frames=4, max_steps=2, log_every=1, mixed_precision="no", gradient_checkpointing="false",
                num_workers=0, warmup_steps=2, grad_accum=2)
    paper = Path(__file__).resolve().parents[2] / "configs" / "paper.yaml"
    assert main(["train", str(paper)] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 2 and result["checkpoint"].endswith("step_0000002")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"], config["train_unet"], config["lr"], config["kmeans_stride"]) == ("svd", False, 1e-5, 10)
    assert (tmp_path / "run" / "export" / "controlnet" / "config.json").is_file()
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # warm-up counts optimizer steps: 2 micro-batches per step, lr 1/2 then 2/2 of the config's
    assert [r["lr"] for r in log] == pytest.approx([0.5e-5, 1e-5])


def test_sigterm_to_the_whole_process_group_with_dataloader_workers_checkpoints(tmp_path):
    """SLURM signals every process of a step, Ctrl-C the whole group: the DataLoader workers must not die of it
    before the rank has checkpointed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_MINI, "max_steps": 10_000, "checkpoint_every": 1000, "ema": False,
                                   "num_workers": 1, "output_dir": str(run)}))
    proc = subprocess.Popen([sys.executable, "-m", "levitor.training", str(cfg)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    log = run / "log.jsonl"
    while time.time() < deadline and proc.poll() is None and not (log.is_file() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)       # the rank and its DataLoader worker
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("training did not stop after SIGTERM")
    assert proc.returncode == 0, out[-3000:]
    stopped = json.loads(out.strip().splitlines()[-1])["step"]
    assert stopped >= 2 and json.loads((run / "checkpoints" / f"step_{stopped:07d}" / "progress.json").read_text()
                                       )["step"] == stopped


def test_control_ablations():
    cfg = load_config(None, base="mini", num_frames=4)
    item = SyntheticControlDataset(cfg)[3]
    full = item["control"]
    assert full.shape == (4, 3, 32, 32) and full[:, 1].max() >= 1 and full[:, 2].max() > 0
    from levitor.data.synthetic import generate_clip

    clip = generate_clip(3, SyntheticControlDataset(cfg).world)
    for control, zero_channel in (("no_depth", 2), ("no_instance", 1)):
        c = control_video(clip.instance, clip.depth, clip.moved_ids, load_config(None, base="mini", control=control))
        assert c[:, zero_channel].abs().max() == 0
        torch.testing.assert_close(c[:, 0], full[:, 0])  # the heatmap is untouched
    centre = control_video(clip.instance, clip.depth, clip.moved_ids, load_config(None, base="mini",
                                                                                  control="center_point"))
    assert (centre[:, 0] > 0).sum() < (full[:, 0] > 0).sum()  # one point per object instead of K


def test_two_step_run_checkpoints_and_resumes(tmp_path):
    cfg = load_config(None, **TINY_MINI, output_dir=str(tmp_path / "run"))
    first = train(cfg)
    assert first["step"] == 2 and torch.isfinite(torch.tensor(first["loss"]))
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002"
    assert (ckpt / "progress.json").exists() and (ckpt / "optimizer.bin").exists()
    assert (tmp_path / "run" / "export" / "mini.json").exists()
    # the EMA is saved as plain tensors (loadable with weights_only=True), not by accelerate's pickling hook
    assert (ckpt / "ema.pt").is_file() and not (ckpt / "custom_checkpoint_0.pkl").exists()
    assert torch.load(ckpt / "ema.pt", weights_only=True)["optimization_step"] == 2

    second = train(load_config(None, **{**TINY_MINI, "max_steps": 3}, output_dir=str(tmp_path / "run")))
    assert second["step"] == 3
    ema3 = torch.load(tmp_path / "run" / "checkpoints" / "step_0000003" / "ema.pt", weights_only=True)
    assert ema3["optimization_step"] == 3                 # the EMA went on from the checkpoint's too
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the second run went on from step 2, it did not start over
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(l == l and l < 1e3 for l in losses)
    curve = np.asarray(Image.open(tmp_path / "run" / "loss_curve.png"))
    assert curve.shape == (360, 720, 3) and (curve != 255).any()


def test_fine_tune_starts_from_exported_weights_with_motion_weighted_loss(tmp_path):
    train(load_config(None, **TINY_MINI, output_dir=str(tmp_path / "run")))
    export = tmp_path / "run" / "export"
    cfg = load_config(None, **{**TINY_MINI, "seed": 5, "motion_loss_weight": 4.0}, init_from=str(export),
                      output_dir=str(tmp_path / "ft"))
    pipe = build_models(cfg)
    from levitor.generation.mini import load_mini_pipeline

    shipped = load_mini_pipeline(export)
    for part in ("unet", "controlnet", "image_encoder"):
        mine, theirs = getattr(pipe, part).state_dict(), getattr(shipped, part).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), part  # not the seed-5 fresh weights
    result = train(cfg)
    assert result["step"] == 2 and torch.isfinite(torch.tensor(result["loss"]))


def test_motion_mask_marks_what_moved_at_latent_size():
    frames = -torch.ones(1, 3, 3, 16, 16)
    frames[:, :, :, 0:4, 0:4] = 1.0  # a square at the top left in frame 0 ...
    frames[:, 1, :, 0:4, 0:4] = -1.0  # ... gone in frame 1 (moved to the bottom right)
    frames[:, 1, :, 12:16, 12:16] = 1.0
    m = motion_mask(frames, (4, 4))
    assert m.shape == (1, 3, 1, 4, 4)
    assert m[0, 0].sum() == 0 and m[0, 2].sum() == 0  # frame 0 and an unchanged frame: nothing moved
    assert m[0, 1, 0, 0, 0] == 1 and m[0, 1, 0, 3, 3] == 1 and m[0, 1].sum() == 2


def test_frozen_unet_only_controlnet_trains(tmp_path, tiny_svd):
    """The paper's setting (UNet frozen) on tiny random models."""
    from levitor.testing.tiny import tiny_unet

    cfg = load_config(None, base="mini", model="svd", pretrained=str(tiny_svd), train_unet=False, height=64,
                      width=64, num_frames=4, batch_size=1, max_steps=2, log_every=1, checkpoint_every=2,
                      checkpoint_minutes=0, sample_every=0, ema=False, lr=1e-3, control_radius=3,
                      output_dir=str(tmp_path / "run"))
    train(cfg)
    exported = tmp_path / "run" / "export"
    assert (exported / "controlnet" / "config.json").exists() and not (exported / "unet").exists()
    from levitor.models.controlnet_svd import ControlNetSVD

    cn = ControlNetSVD.from_pretrained(exported / "controlnet")
    assert cn.controlnet_mid_block.weight.abs().sum() > 0  # the zero conv has learnt something
    torch.testing.assert_close(cn.conv_in.weight.shape, tiny_unet().conv_in.weight.shape)


def test_synthetic_shards_round_trip(tmp_path):
    """precompute-synthetic writes the precompute record format; streamed back it equals the world on the fly."""
    cfg = load_config(None, base="mini", num_frames=3, data="shards", data_root=str(tmp_path), shuffle_buffer=0,
                      batch_size=1)
    precompute_synthetic(tmp_path, 3, cfg, shard_size=2)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "shard-000000.stats.json", "shard-000000.tar", "shard-000001.stats.json", "shard-000001.tar"]
    stream = make_dataset(cfg)
    items = [item for _, item in zip(range(3), iter(stream))]
    fresh = SyntheticControlDataset(cfg)
    by_name = {it["name"]: it for it in items}
    assert sorted(by_name) == [f"synthetic_{i:08d}" for i in range(3)]
    for i in range(3):
        got = by_name[f"synthetic_{i:08d}"]
        torch.testing.assert_close(got["frames"], fresh[i]["frames"])
        torch.testing.assert_close(got["control"], fresh[i]["control"])
    other = load_config(None, base="mini", num_frames=4, data="shards", data_root=str(tmp_path), batch_size=1)
    with pytest.raises(ValueError, match=r"shard .*shard-00000\d.tar, sample 'synthetic_0000000\d': it is a 3x32x32 "
                                         r"clip .* asks for 4x32x32"):
        next(iter(make_dataset(other)))


def test_typed_set_values_and_yaml_checks(tmp_path):
    from levitor.training.config import parse_overrides

    got = parse_overrides(["lr=1e-3", "mixed_precision=no", "ema=false", "max_steps=10", "controlnet_init=none"])
    assert got == {"lr": 1e-3, "mixed_precision": "no", "ema": False, "max_steps": 10, "controlnet_init": None}
    with pytest.raises(ValueError, match="max_steps must be int, got 'ten'"):
        parse_overrides(["max_steps=ten"])
    with pytest.raises(ValueError, match="unknown config key"):
        parse_overrides(["learning_rate=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: mini\nmixed_precision: no\n")        # YAML 1.1 reads this as False
    with pytest.raises(ValueError, match='quote it'):
        load_config(bad)
    with pytest.raises(ValueError, match="levitor precompute"):
        load_config(None, data="sav")


def test_noise_levels_plain_or_a_mixture_with_the_low_band():
    from levitor.training.loss import noise_levels

    g = torch.Generator().manual_seed(0)
    plain = noise_levels(20000, TrainConfig(p_mean=2.0, p_std=1.0), g, "cpu").log()
    assert abs(plain.mean().item() - 2.0) < 0.05 and abs(plain.std().item() - 1.0) < 0.05
    cfg = TrainConfig(p_mean=2.0, p_std=1.0, p_low_fraction=0.5, p_low_mean=-1.2, p_low_std=1.2)
    mixed = noise_levels(20000, cfg, torch.Generator().manual_seed(0), "cpu")
    # the two bands meet near log sigma 0.6: below it is mostly the low band, half of the draws
    assert abs((mixed.log() < 0.4).float().mean().item() - 0.5) < 0.06
    assert (mixed < 0.1).float().mean().item() > 0.05  # sigma small enough to learn to remove fine noise
    assert (plain.exp() < 0.1).float().mean().item() < 1e-3  # which the plain high band never shows


def test_loss_weight_cap_bounds_the_edm_weight():
    """min-SNR weighting: at sigma 0.002 EDM's weight 1 + 1/sigma^2 is 250,001; capped at 6, x0 errors at low noise
    no longer drown the high band. Same batch, same noise draw: the loss scales by the weights' ratio."""
    from levitor.training import loss

    cfg = load_config(None, **TINY_MINI, p_low_fraction=1.0, p_low_mean=float(np.log(0.002)), p_low_std=1e-6)
    pipe = build_models(cfg)
    batch = next(iter(torch.utils.data.DataLoader(SyntheticControlDataset(cfg, length=1), batch_size=1)))
    values = {}
    for cap in (0.0, 6.0):
        cfg.loss_weight_cap = cap
        with torch.no_grad():
            values[cap] = loss.edm_loss(pipe, pipe.unet, pipe.controlnet, batch, cfg,
                                        torch.Generator().manual_seed(1)).item()
    assert values[0.0] / values[6.0] == pytest.approx((1 + 0.002**-2) / 6, rel=1e-3)


def test_one_process_resume_is_bit_exact_and_a_short_stretch_logs_its_mean(tmp_path):
    """10 steps against 5 + resume + 5 on one process: the same parameters, optimizer state and EMA to the bit (the
    noise of step s is seeded by (seed, s, rank) on one process too). log_every 4: each session's last stretch
    (steps 5 and 9-10) is logged with its mean instead of leaving "loss": null."""
    from safetensors.torch import load_file

    base = {**TINY_MINI, "num_threads": 1, "log_every": 4, "checkpoint_every": 1000, "num_workers": 0}
    def run(steps: int, folder: str) -> dict:
        return train(load_config(None, **{**base, "max_steps": steps}, output_dir=str(tmp_path / folder)))

    whole = run(10, "whole")
    first = run(5, "parts")
    assert first["step"] == 5 and first["loss"] is not None
    parts = run(10, "parts")
    assert parts["step"] == whole["step"] == 10 and parts["loss"] == whole["loss"]
    a, b = (tmp_path / "whole" / "checkpoints" / "step_0000010"), (tmp_path / "parts" / "checkpoints" / "step_0000010")
    files = sorted(p.name for p in a.glob("model*.safetensors"))
    assert files and files == sorted(p.name for p in b.glob("model*.safetensors"))
    for name in files:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    for name in ("optimizer.bin", "ema.pt"):
        x, y = torch.load(a / name, weights_only=True), torch.load(b / name, weights_only=True)
        flat = [torch.utils._pytree.tree_flatten(s)[0] for s in (x, y)]
        assert all(torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v for u, v in zip(*flat)), name
    log = [json.loads(x) for x in (tmp_path / "parts" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 5, 8, 10] and all(r["loss"] > 0 for r in log)
    assert [r["step"] for r in (json.loads(x) for x in (tmp_path / "whole" / "log.jsonl").read_text().splitlines())
            ] == [4, 8, 10]


def test_a_folder_of_mixed_clip_sizes_is_refused_before_the_first_step(tmp_path, capsys):
    """A second precompute-synthetic into one folder with another size rewrites some shards and leaves the rest:
    every shard's first record is checked (on main only the first shard's, so training started and hung)."""
    import shutil

    from levitor.cli import main

    precompute_synthetic(tmp_path / "d", 8, load_config(None, base="mini", height=16, width=16, num_frames=2),
                         shard_size=2)
    precompute_synthetic(tmp_path / "big", 2, load_config(None, base="mini", height=32, width=32, num_frames=2),
                         shard_size=2)
    for ext in (".tar", ".stats.json"):
        shutil.move(tmp_path / "big" / "shards" / f"shard-000000{ext}",
                    tmp_path / "d" / "shards" / f"shard-000003{ext}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base: mini\ndata: shards\ndata_root: {tmp_path / 'd'}\nheight: 16\nwidth: 16\nnum_frames: 2\n"
                   f"output_dir: {tmp_path / 'run'}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mix clip sizes: of 4 shards 1 hold 2x32x32 clips (shard-000003.tar)" in err[0], err
    assert "asks for 2x16x16" in err[0] and not (tmp_path / "run").exists()      # refused before anything ran


def _train_subprocess(config: dict, tmp_path, timeout: float = 120):
    import os
    import subprocess
    import sys
    import time

    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "levitor.training", str(path)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        pytest.fail(f"training did not end within {timeout} s (a process waiting for its DataLoader workers?)")
    return proc.returncode, out, err, time.time() - t0


def test_a_dataloader_worker_error_ends_the_run_with_one_line_naming_the_shard(shards_with_a_late_odd_clip, tmp_path):
    """The issue's hang: a worker raises (a later clip of another size, which no check before the first step sees);
    on main the process printed the error and then waited for ever for its workers, which ignore SIGTERM."""
    code, _out, err, seconds = _train_subprocess(
        {**TINY_MINI, "ema": False, "data": "shards", "data_root": str(shards_with_a_late_odd_clip), "num_workers": 2,
         "shuffle_buffer": 2, "max_steps": 10_000, "checkpoint_every": 10_000, "output_dir": str(tmp_path / "run"),
         "synthetic": {}}, tmp_path)
    lines = [x for x in err.strip().splitlines() if "levitor train: error" in x]
    assert code == 2 and seconds < 60 and len(lines) == 1, (code, seconds, err[-2000:])
    assert "Traceback" not in err and "shard-000002.tar, sample 'synthetic_00000100': it is a 2x32x32 clip" in lines[0]
