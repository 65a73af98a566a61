"""Precompute depth and control signals for a whole data set, sharded over processes and machines.

``levitor precompute`` (and :func:`precompute_shard` from Python) reads every clip of a data set (DAVIS, SA-V),
centre-crops and resizes it to the training size, estimates a depth map per frame, builds the control signal from
the clip's own masks (:func:`levitor.control.clip_control.clip_control`) and writes one compressed record per clip.

Sharding: a video belongs to shard ``shard_of(video, N)`` (a hash of its name), so N processes on N GPUs or N
machines each take one shard without talking to each other; the shard comes from ``--shard K --num-shards N`` or
from the RANK / WORLD_SIZE (or LOCAL_RANK / LOCAL_WORLD_SIZE) variables that torchrun and accelerate set, or from a
SLURM job array. On disk::

    <out>/shard-00003-of-00016/config.json      the settings; a resumed run with other settings is refused
    <out>/shard-00003-of-00016/<clip>.npz       one record per clip (layout: :data:`RECORD_KEYS`)
    <out>/shard-00003-of-00016/index.jsonl      one JSON line per record
    <out>/shard-00003-of-00016/videos.jsonl     one line per finished (or failed) video, for fast resumes
    <out>/shard-00003-of-00016/report.json      done / skipped-existing / failed counts, failures with reasons
    <out>/index.jsonl, <out>/report.json        all shards together (:func:`merge_index`)

Idempotent and resumable: a record is written to a temporary file and renamed, so a killed run never leaves a
half-written record under a record's name; a rerun deletes stray temporaries, skips every clip whose record is
there and verifies, and recomputes the rest. Corrupt or missing videos are logged, counted and skipped.

Depth is pluggable: a :data:`DepthFn` maps one RGB frame to a uint8 disparity map (the release's 0..255 scale,
255 = nearest). :func:`flat_depth` (``--depth none``) needs no model; :func:`estimator_depth` wraps a
:class:`~levitor.perception.DepthEstimator` (DepthAnythingV2, or a tiny random one in tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from levitor._util.device import resolve_device
from levitor._util.io import write_text_atomic
from levitor.control.clip_control import ClipControl, clip_control
from levitor.control.krule import K_MAX, LAMBDA, KRule
from levitor.data.clip import DataReadError, VideoClip
from levitor.data.records import (
    FORMAT_VERSION,
    FRAME_KEYS,
    encode_jpeg,
    read_jsonl,
    read_record,
    record_filename,
    verify_record,
    write_record,
)
from levitor.data.sampling import ClipSampling, shard_of
from levitor.defaults import DEFAULT_SIZE, video_size
from levitor.depth import depth_from_disparity
from levitor.perception.depth_fn import DepthFn, load_depth_fn

log = logging.getLogger(__name__)


SHARD_PATTERN = re.compile(r"^shard-(\d{5})-of-(\d{5})$")


PROGRESS_EVERY = 10        # videos between progress lines


FAIL_FAST_VIDEOS = 10      # if the first this-many videos all fail, the setup is wrong, not the data: stop


@dataclass
class PrecomputeConfig:
    """What a record contains. Stored per shard: a resumed run with different settings is refused."""

    dataset: str = "davis"      # davis | sav | sav-frames (SA-V val/test frames); the reader to use
    split: str | None = None    # DAVIS: val (default) / train / all; sav-frames: sav_val (default) / sav_test
    height: int = DEFAULT_SIZE.height  # the training size; clips are centre-cropped to its aspect, then resized
    width: int = DEFAULT_SIZE.width
    num_frames: int = DEFAULT_SIZE.num_frames
    stride: int = 1             # in the reader's frames (SA-V's reader already yields its 6 fps annotated frames)
    starts: str = "all"         # all non-overlapping clips of a video ('first': one per video)
    hop: int | None = None      # distance between clip starts for 'all'; None = no overlap
    depth: str = "none"         # none | const:<N> | a DepthAnythingV2 name, hub id or folder
    depth_input_size: int = 512 # the network's shorter side; the release runs DepthAnythingV2 at 512
    frames: str = "jpeg"        # jpeg (small, lossy) | raw (lossless, ~5x bigger) | none (references only)
    jpeg_quality: int = 95      # visually lossless; the VAE sees far worse compression in SA-V's own mp4s
    lam: float = LAMBDA         # the K rule (levitor.control.krule)
    k_max: int = K_MAX
    kmeans_init: str = "warm"   # warm (temporally stable points) | release (the release's K-means, exactly)
    sample_stride: int = 10     # K-means on every 10th mask pixel, as the release

    def __post_init__(self) -> None:
        if self.dataset not in ("davis", "sav", "sav-frames"):
            raise ValueError(f"dataset must be 'davis', 'sav' or 'sav-frames', got {self.dataset!r}")
        if self.frames not in FRAME_KEYS:
            raise ValueError(f"frames must be one of {sorted(FRAME_KEYS)}, got {self.frames!r}")
        if self.starts not in ("first", "all"):
            raise ValueError(
                f"starts must be 'first' or 'all' for precompute, got {self.starts!r} ('random' would make "
                "reruns write different clips, so they could not be resumed)"
            )
        if self.height < 8 or self.width < 8 or self.num_frames < 1:
            raise ValueError(f"need height, width >= 8 and num_frames >= 1, got {self.height}x{self.width}x"
                             f"{self.num_frames}")

    @property
    def sampling(self) -> ClipSampling:
        return ClipSampling(num_frames=self.num_frames, stride=self.stride, starts=self.starts, hop=self.hop)

    def clip_control(self) -> ClipControl:
        """How a clip's masks become its control (shared with training and evaluation)."""
        return ClipControl(rule=KRule(lam=self.lam, k_max=self.k_max), sample_stride=self.sample_stride,
                           init=self.kmeans_init)

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrecomputeConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"format_version"}
        if unknown:
            raise ValueError(f"unknown precompute settings {sorted(unknown)}; written by a newer levitor?")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class VideoSource:
    """The videos of a data set and how to read one video's clips (readers report bad videos to ``on_error``)."""

    names: list[str]
    clips: Callable[[str, Callable[[str, DataReadError], None]], Iterator[VideoClip]]


def open_source(root: str | Path, config: PrecomputeConfig) -> VideoSource:
    """The reader for ``config.dataset`` over ``root`` (see docs/data_and_eval.md for the folder layouts)."""
    if config.dataset == "davis":
        from levitor.data.davis import DavisDataset

        ds = DavisDataset(root, split=config.split or "val", sampling=config.sampling)
        return VideoSource(ds.sequences(), lambda v, on_error: ds.clips([v], on_error=on_error))
    if config.dataset == "sav":
        from levitor.data.sav import SavDataset

        ds = SavDataset(root, sampling=config.sampling)
        return VideoSource(ds.videos(), lambda v, on_error: ds.clips([v], on_error=on_error))
    from levitor.data.sav import SavFramesDataset

    ds = SavFramesDataset(root, split=config.split or "sav_val", sampling=config.sampling)
    return VideoSource(ds.videos(), lambda v, on_error: ds.clips([v], on_error=on_error))


def resolve_shard(shard: int | None = None, num_shards: int | None = None,
                  env: dict[str, str] | None = None) -> tuple[int, int]:
    """(shard, num_shards): explicit arguments, else torchrun/accelerate's RANK and WORLD_SIZE, else LOCAL_RANK and
    LOCAL_WORLD_SIZE, else a SLURM job array's task id and count, else (0, 1)."""
    env = os.environ if env is None else env
    if shard is not None or num_shards is not None:
        if shard is None or num_shards is None:
            raise ValueError("--shard and --num-shards go together (e.g. --shard 3 --num-shards 16)")
        k, n = int(shard), int(num_shards)
    elif "RANK" in env and "WORLD_SIZE" in env:
        k, n = int(env["RANK"]), int(env["WORLD_SIZE"])
    elif "LOCAL_RANK" in env:
        if "LOCAL_WORLD_SIZE" not in env:
            raise ValueError("LOCAL_RANK is set but LOCAL_WORLD_SIZE is not; pass --shard and --num-shards")
        k, n = int(env["LOCAL_RANK"]), int(env["LOCAL_WORLD_SIZE"])
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        k = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        n = int(env["SLURM_ARRAY_TASK_COUNT"])
    else:
        k, n = 0, 1
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"shard must be in 0..num_shards-1 with num_shards >= 1, got shard {k} of {n}")
    return k, n


def shard_dirname(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def compute_record(clip: VideoClip, config: PrecomputeConfig, depth_fn: DepthFn) -> dict[str, np.ndarray]:
    """The arrays of one record for a clip already cropped/resized to the config's size (see RECORD_KEYS)."""
    if (clip.height, clip.width) != (config.height, config.width):
        raise ValueError(f"clip {clip.name!r} is {clip.height}x{clip.width}, the config wants "
                         f"{config.height}x{config.width}; call clip.center_crop_resize first")
    disparity = np.stack([_check_disparity(depth_fn(f), f.shape[:2]) for f in clip.frames])
    instance = clip.instance_map()                                     # (F, H, W) int64
    # ids given: torch.unique over a (16, 320, 512) map would cost most of the control's time
    signal = clip_control(instance, depth_from_disparity(disparity), config.clip_control(),
                          ids=clip.object_ids.tolist())
    top = int(instance.max()) if instance.size else 0
    meta = {
        "format_version": FORMAT_VERSION, "name": clip.name, "video": clip.name.split("@")[0],
        "source": clip.source, "fps": clip.fps, "frame_indices": [int(i) for i in clip.frame_indices],
        "object_ids": [int(i) for i in clip.object_ids], "height": clip.height, "width": clip.width,
        "num_frames": clip.num_frames, "num_points": signal.num_points, "frames": config.frames,
        "clip_meta": clip.meta,
    }
    rec = {
        "meta": np.array(json.dumps(meta)),
        "disparity": disparity,
        "instance_map": instance.astype(np.uint8 if top < 256 else np.uint16),
        "points": signal.points.numpy().astype(np.float32),
        "point_depth": signal.depth.numpy().astype(np.float32),
        "point_instance": signal.instance.numpy().astype(np.int64),
        "visible": signal.visible.numpy(),
    }
    if top >= 2**16:
        raise ValueError(f"clip {clip.name!r} has object id {top}; records store ids up to 65535")
    if config.frames == "raw":
        rec["frames"] = clip.frames
    elif config.frames == "jpeg":
        blobs = [encode_jpeg(f, config.jpeg_quality) for f in clip.frames]
        rec["frames_jpeg"] = np.frombuffer(b"".join(blobs), np.uint8)
        rec["frames_jpeg_sizes"] = np.array([len(b) for b in blobs], np.int64)
    return rec


def _check_disparity(d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    d = np.asarray(d)
    if d.shape != shape or d.dtype != np.uint8:
        raise ValueError(f"the depth function must return an (H, W) uint8 disparity map of shape {shape}, got "
                         f"{d.dtype} {d.shape}. Wrap a float scene depth with levitor.depth.disparity_from_depth.")
    return d


@dataclass
class ShardReport:
    """What one run of one shard did. Counts are clips unless named videos."""

    shard: int
    num_shards: int
    done: int = 0                    # records written by this run
    skipped_existing: int = 0        # records already there and verified
    failed: int = 0                  # videos (or clips) that could not be read or computed
    empty: int = 0                   # clips without any object: nothing to control, no record
    videos: int = 0                  # videos of this shard
    videos_skipped: int = 0          # videos finished by an earlier run (not even opened)
    failures: list[dict[str, str]] = field(default_factory=list)   # {"video", "error", "type"}
    seconds: float = 0.0
    finished: bool = False

    @property
    def clips_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "clips_per_second": round(self.clips_per_second, 3)}


class _Appender:
    """Appends JSON lines and flushes each, so a kill loses at most the line being written."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")

    def __call__(self, entry: dict[str, Any]) -> None:
        self.fh.write(json.dumps(entry) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def precompute_shard(
    root: str | Path,
    out_dir: str | Path,
    config: PrecomputeConfig | None = None,
    shard: int = 0,
    num_shards: int = 1,
    depth_fn: DepthFn | None = None,
    source: VideoSource | None = None,
    verify: str = "size",
    progress: Callable[[ShardReport, str], None] | None = None,
) -> ShardReport:
    """Precompute every clip of the videos in shard ``shard`` of ``num_shards`` into ``out_dir/shard-K-of-N/``.

    depth_fn: default from ``config.depth`` (flat for 'none'). source: default the reader for ``config.dataset``
    over ``root`` (tests pass their own). verify: how an existing record is checked before it is skipped
    (:func:`verify_record`: 'size' by default, 'full' re-reads it, 'exists' trusts the file).
    progress(report, video) is called after each video.
    """
    config = config or PrecomputeConfig()
    if verify not in ("size", "full", "exists"):
        raise ValueError(f"verify must be 'size', 'full' or 'exists', got {verify!r}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..{num_shards - 1}, got {shard}")
    t0 = time.perf_counter()
    shard_dir = Path(out_dir) / shard_dirname(shard, num_shards)
    shard_dir.mkdir(parents=True, exist_ok=True)
    _check_config(shard_dir, config)
    for stray in shard_dir.glob("*.tmp"):     # left by a killed run; never a record
        stray.unlink()
    depth_fn = depth_fn or load_depth_fn(config.depth, input_size=config.depth_input_size)
    source = source or open_source(root, config)
    report = ShardReport(shard, num_shards)

    index = {e["name"]: e for e in read_jsonl(shard_dir / "index.jsonl")}
    last = {e["video"]: e for e in read_jsonl(shard_dir / "videos.jsonl")}   # the latest line per video wins
    finished = {v: e for v, e in last.items() if e.get("status") == "done"}
    # rewrite both without a torn last line before appending to them, or the next line would be glued onto it
    write_text_atomic(shard_dir / "index.jsonl", "".join(json.dumps(e) + "\n" for e in index.values()))
    write_text_atomic(shard_dir / "videos.jsonl", "".join(json.dumps(e) + "\n" for e in last.values()))
    mine = [v for v in source.names if shard_of(v, num_shards) == shard]
    report.videos = len(mine)
    add_index, add_video = _Appender(shard_dir / "index.jsonl"), _Appender(shard_dir / "videos.jsonl")
    attempted = failed_videos = 0
    try:
        for video in mine:
            prev = finished.get(video)
            if prev is not None and all(
                n in index and verify_record(shard_dir / index[n]["record"], n, verify, index[n].get("bytes"))
                for n in prev["clips"]
            ):
                report.skipped_existing += len(prev["clips"])
                report.videos_skipped += 1
                _notify(progress, report, video)
                continue
            attempted += 1
            errors: list[tuple[str, Exception]] = []
            names, empties = [], []
            for clip in source.clips(video, lambda v, err, sink=errors: sink.append((v, err))):
                name = clip.name
                path = shard_dir / record_filename(name)
                try:
                    if clip.num_objects == 0:
                        report.empty += 1
                        empties.append(name)
                        continue
                    names.append(name)
                    if verify_record(path, name, verify, index.get(name, {}).get("bytes")):
                        report.skipped_existing += 1
                        if name not in index:      # killed between the rename and the index line
                            index[name] = _index_entry(path, read_record(path)["meta"])
                            add_index(index[name])
                            log.info("%s: record found without its index line (an earlier run was killed "
                                     "there); indexed it", name)
                        continue
                    clip = clip.center_crop_resize(config.height, config.width)
                    rec = compute_record(clip, config, depth_fn)
                    write_record(path, rec)
                    index[name] = _index_entry(path, json.loads(str(rec["meta"])))
                    add_index(index[name])
                    report.done += 1
                except (DataReadError, ValueError) as err:   # one bad clip never stops the run
                    if name in names:
                        names.remove(name)
                    errors.append((name, err))
            for item, err in errors:
                log.warning("skipping %s: %s: %s", item, type(err).__name__, err)
                report.failures.append({"video": video, "item": item, "error": str(err),
                                        "type": type(err).__name__})
            if errors:
                report.failed += len(errors)
                failed_videos += 1
                add_video({"video": video, "status": "failed", "error": str(errors[0][1])})
                if failed_videos == attempted == FAIL_FAST_VIDEOS:
                    raise RuntimeError(
                        f"the first {FAIL_FAST_VIDEOS} videos of shard {shard} all failed (last: {errors[-1][1]}). "
                        "That is a setup problem (wrong --dataset or root, missing codec), not bad data; see "
                        f"{shard_dir}/report.json"
                    )
            else:
                add_video({"video": video, "status": "done", "clips": names, "empty": empties})
            _notify(progress, report, video)
        report.finished = True
    finally:
        add_index.close()
        add_video.close()
        # a compact index: one line per record that exists (deleted records drop out until recomputed)
        live = [e for e in index.values() if (shard_dir / e["record"]).is_file()]
        write_text_atomic(shard_dir / "index.jsonl", "".join(json.dumps(e) + "\n" for e in live))
        report.seconds = time.perf_counter() - t0
        write_text_atomic(shard_dir / "report.json", json.dumps(report.to_json(), indent=1))
    return report


def _notify(progress, report: ShardReport, video: str) -> None:
    if progress is not None:
        progress(report, video)


def _index_entry(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {"name": meta["name"], "record": path.name, "video": meta["video"], "source": meta["source"],
            "num_frames": meta["num_frames"], "height": meta["height"], "width": meta["width"],
            "num_objects": len(meta["object_ids"]), "num_points": meta["num_points"], "fps": meta["fps"],
            "frame_indices": meta["frame_indices"], "bytes": path.stat().st_size}


def _check_config(shard_dir: Path, config: PrecomputeConfig) -> None:
    path = shard_dir / "config.json"
    if path.is_file():
        old = PrecomputeConfig.from_json(json.loads(path.read_text()))
        if old != config:
            diff = {k: (getattr(old, k), getattr(config, k)) for k in asdict(config) if getattr(old, k) !=
                    getattr(config, k)}
            raise ValueError(
                f"{shard_dir} was precomputed with other settings {{name: (there, now)}}: {diff}. Use another "
                "--out, or delete that folder to start over."
            )
    else:
        write_text_atomic(path, json.dumps(config.to_json(), indent=1))


@dataclass
class MergeReport:
    num_shards: int
    shards_found: list[int]
    missing_shards: list[int]
    unfinished_shards: list[int]
    records: int
    totals: dict[str, int]
    failures: list[dict[str, str]]

    @property
    def complete(self) -> bool:
        return not self.missing_shards and not self.unfinished_shards


def merge_index(out_dir: str | Path, num_shards: int | None = None) -> MergeReport:
    """Combine the shard indexes and reports into ``out_dir/index.jsonl`` and ``out_dir/report.json``.

    Record paths in the merged index are relative to ``out_dir``. Safe to run while shards are still working
    (it merges what is there and lists the missing and unfinished shards), and again when they are done.
    """
    out_dir = Path(out_dir)
    found: dict[int, set[int]] = {}
    for p in out_dir.iterdir() if out_dir.is_dir() else []:
        m = SHARD_PATTERN.match(p.name)
        if m and p.is_dir():
            found.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not found:
        raise FileNotFoundError(f"no shard-*-of-* folders in {out_dir}; run levitor precompute there first")
    if num_shards is None:
        if len(found) > 1:
            raise ValueError(f"{out_dir} holds shards of several runs (num_shards {sorted(found)}); "
                             "pass num_shards to say which to merge")
        num_shards = next(iter(found))
    have = sorted(found.get(num_shards, ()))
    entries, seen, failures = [], set(), []
    totals = {k: 0 for k in ("done", "skipped_existing", "failed", "empty", "videos", "videos_skipped")}
    unfinished = []
    configs = set()
    for k in have:
        d = out_dir / shard_dirname(k, num_shards)
        configs.add((d / "config.json").read_text() if (d / "config.json").is_file() else "")
        for e in read_jsonl(d / "index.jsonl"):
            if e["name"] in seen:
                raise ValueError(f"clip {e['name']!r} is in two shards; were shards of different runs mixed?")
            seen.add(e["name"])
            entries.append({**e, "record": f"{d.name}/{e['record']}"})
        rep = json.loads((d / "report.json").read_text()) if (d / "report.json").is_file() else None
        if rep is None or not rep.get("finished"):
            unfinished.append(k)
        if rep is not None:
            for key in totals:
                totals[key] += int(rep.get(key, 0))
            failures += [{**f, "shard": k} for f in rep.get("failures", [])]
    if len(configs) > 1:
        raise ValueError(f"the shards in {out_dir} were computed with different settings; compare their "
                         "config.json files")
    write_text_atomic(out_dir / "index.jsonl", "".join(json.dumps(e) + "\n" for e in entries))
    merged = MergeReport(num_shards, have, sorted(set(range(num_shards)) - set(have)), unfinished, len(entries),
                         totals, failures)
    write_text_atomic(out_dir / "report.json", json.dumps({**asdict(merged), "complete": merged.complete},
                                                           indent=1))
    return merged


def _config_from_args(args: argparse.Namespace) -> PrecomputeConfig:
    """Only the flags the user set override the defaults."""
    names = {"dataset": "dataset", "split": "split", "height": "height", "width": "width",
             "num_frames": "num_frames", "stride": "stride", "starts": "starts", "hop": "hop", "depth": "depth",
             "depth_input_size": "depth_input_size",
             "frames": "frames", "kmeans_init": "kmeans_init"}
    given = {k: getattr(args, a) for a, k in names.items() if getattr(args, a) is not None}
    if getattr(args, "size", None):  # a named size; --height/--width/--num-frames still override it
        size = video_size(args.size)
        given = {"height": size.height, "width": size.width, "num_frames": size.num_frames, **given}
    return PrecomputeConfig(**given)


def precompute_main(argv: list[str] | None = None) -> int:
    """``python -m levitor.training.precompute``: the same as ``levitor precompute``."""
    from levitor.training.commands import precompute_parser

    return run_precompute_command(precompute_parser().parse_args(argv))


def run_precompute_command(args: argparse.Namespace) -> int:
    """``levitor precompute``: one shard per process; merges the indexes when every shard has finished."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.merge_only:
            merged = merge_index(args.out, args.num_shards)
            _print_merge(args.out, merged)
            return 0 if merged.complete else 1
        if not args.root:
            raise ValueError("give the data set folder (levitor precompute ROOT --out DIR), or --merge-only")
        shard, num_shards = resolve_shard(args.shard, args.num_shards)
        config = _config_from_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        depth_fn = load_depth_fn(config.depth, str(resolve_device(args.device)), config.depth_input_size)
        seen = [0]

        def progress(rep: ShardReport, video: str) -> None:
            seen[0] += 1
            if not args.quiet and (seen[0] % PROGRESS_EVERY == 0 or seen[0] == rep.videos):
                print(f"[shard {shard}/{num_shards}] video {seen[0]}/{rep.videos} ({video}): {rep.done} clips "
                      f"written, {rep.skipped_existing} existing, {rep.failed} failed", file=sys.stderr, flush=True)

        report = precompute_shard(args.root, args.out, config, shard, num_shards, depth_fn=depth_fn,
                                  verify=args.verify, progress=progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"levitor precompute: error: {err}", file=sys.stderr)
        return 2
    print(f"levitor precompute: shard {shard} of {num_shards}: {report.done} clips written, "
          f"{report.skipped_existing} already there, {report.failed} failed, {report.empty} without objects; "
          f"{report.seconds:.1f} s ({report.clips_per_second:.2f} clips/s). "
          f"Report: {Path(args.out) / shard_dirname(shard, num_shards) / 'report.json'}")
    if not args.no_merge:
        reports = [Path(args.out) / shard_dirname(k, num_shards) / "report.json" for k in range(num_shards)]
        if all(p.is_file() and json.loads(p.read_text()).get("finished") for p in reports):
            _print_merge(args.out, merge_index(args.out, num_shards))   # the last shard to finish merges
        else:
            print(f"  other shards are still running; when all are done: levitor precompute --merge-only "
                  f"--out {args.out}")
    return 0


def _print_merge(out: str, merged: MergeReport) -> None:
    t = merged.totals
    print(f"levitor precompute: merged {len(merged.shards_found)}/{merged.num_shards} shards into {out}/index.jsonl:"
          f" {merged.records} records; {t['failed']} failed, {t['empty']} without objects; report {out}/report.json")
    if not merged.complete:
        print(f"  missing shards {merged.missing_shards}, unfinished {merged.unfinished_shards}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(precompute_main())
