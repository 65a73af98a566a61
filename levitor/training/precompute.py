"""Precompute depth and control signals of a data set into WebDataset shards (:mod:`levitor.data.records`).

``levitor precompute ROOT --out DIR`` reads every clip of a data set (DAVIS, SA-V), centre-crops and resizes it to
the training size, estimates a depth map per frame, builds the control signal from the clip's own masks
(:func:`levitor.control.clip_control.clip_control`, the function training and evaluation use too) and writes one
sample per clip. Three stages, each a plain function of one video (:func:`read_video`, :func:`add_depth`,
:func:`encode_video`), run by one of two engines:

- ``local``: the stages one after another in this process (also several processes with ``--workers N --worker K``
  or SLURM's task variables, each taking every N-th shard);
- ``ray`` (:mod:`levitor.training.precompute_ray`): Ray Data streams the videos through the CPU stages (decode,
  RLE, resize, K-means, JPEG) and a GPU stage (DepthAnythingV2, one actor per GPU, batched over frames, fp16), with
  back-pressure and task retries; on a Ray cluster, or a Ray started here.

``--engine auto`` (:func:`choose_engine`) takes Ray only where it pays: a cluster address or several GPUs.

On disk::
    <out>/plan.json                     the settings and which videos make each shard (written once)
    <out>/shards/shard-000007.tar       the samples of the shard's videos, in plan order
    <out>/shards/shard-000007.stats.json  samples, videos, failures with reasons, bytes
    <out>/report.json                   the totals of the latest run
    <out>/.work/shard-000007/000003.npz a shard being written: its finished videos, one file each, written
                                        atomically (:mod:`levitor.training.spool`: no pickle, nothing in the folder
                                        can run code); kept across a kill, deleted when the shard is written

The shard count follows from the data (``--videos-per-shard``), never from the number of workers, GPUs or machines,
so a resumed run may use any of those. A finished shard (its stats file beside a tar of the recorded size) is read
once and each sample checked against its digest; a whole one is never recomputed, a damaged one (a flipped byte
keeps the size) is, with a warning. Of an unfinished shard the tar and stats are deleted and only the videos not yet
spooled are computed again, so a worker killed mid-shard loses at most the videos it had in flight. Corrupt or
missing videos are skipped, counted and listed in the stats with their reasons.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from levitor._util.errors import RunError
from levitor._util.hashing import file_hash
from levitor._util.io import write_bytes_atomic, write_text_atomic
from levitor._util.launch import detect_launch
from levitor.control.clip_control import ClipControl, clip_control
from levitor.control.krule import K_MAX, LAMBDA, KRule
from levitor.control.points import SAMPLE_STRIDE
from levitor.data.clip import DataReadError, VideoClip
from levitor.data.davis import DavisDataset
from levitor.data.records import (
    FORMAT_VERSION,
    FRAME_MODES,
    JPEG_QUALITY,
    SHARD_DIR,
    ClipRecord,
    CorruptShardError,
    check_sample,
    encode_sample,
    finished_shards,
    iter_tar_samples,
    read_stats,
    stats_path,
    write_shard,
    write_stats,
)
from levitor.data.sampling import ClipSampling
from levitor.data.sav import SavDataset, SavFramesDataset
from levitor.defaults import DEFAULT_SIZE
from levitor.depth import depth_from_disparity
from levitor.perception.depth_estimator import RELEASE_INPUT_SIZE
from levitor.perception.depth_fn import DepthFn, depth_of_frames, load_depth_fn
from levitor.training import spool

log = logging.getLogger(__name__)

FAIL_FAST_VIDEOS = 10      # if the first this-many videos all fail, the setup is wrong, not the data: stop
WORK_DIR = ".work"


class EngineError(RunError):
    """The engine could not run (Ray would not start, or could not reach its cluster); the message says what to
    do instead."""


@dataclass
class PrecomputeConfig:
    """What a record contains. Stored in plan.json: a resumed run with different settings is refused."""

    dataset: str = "davis"      # davis | sav | sav-frames (SA-V val/test frames); the reader to use
    split: str | None = None    # DAVIS: val (default) / train / all; sav-frames: sav_val (default) / sav_test
    height: int = DEFAULT_SIZE.height  # the training size; clips are centre-cropped to its aspect, then resized
    width: int = DEFAULT_SIZE.width
    num_frames: int = DEFAULT_SIZE.num_frames
    stride: int = 1             # in the reader's frames (SA-V's reader already yields its 6 fps annotated frames)
    starts: str = "all"         # all non-overlapping clips of a video ('first': one per video)
    hop: int | None = None      # distance between clip starts for 'all'; None = no overlap
    depth: str = "none"         # none | const:<N> | a DepthAnythingV2 name, hub id or folder
    depth_input_size: int = RELEASE_INPUT_SIZE  # the network's shorter side (the release's)
    frames: str = "jpeg"        # jpeg (small, lossy) | raw (lossless, ~5x bigger) | none (references only)
    jpeg_quality: int = JPEG_QUALITY
    lam: float = LAMBDA         # the K rule (levitor.control.krule)
    k_max: int = K_MAX
    kmeans_init: str = "warm"   # warm (temporally stable points) | release (the release's K-means, exactly)
    sample_stride: int = SAMPLE_STRIDE  # K-means on every n-th mask pixel (the release's)
    videos_per_shard: int = 64  # SA-V: ~5 clips a video, ~0.4 MB a clip -> shards of ~130 MB

    def __post_init__(self) -> None:
        if self.dataset not in ("davis", "sav", "sav-frames"):
            raise ValueError(f"dataset must be 'davis', 'sav' or 'sav-frames', got {self.dataset!r}")
        if self.frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {FRAME_MODES}, got {self.frames!r}")
        if self.starts not in ("first", "all"):
            raise ValueError(f"starts must be 'first' or 'all' for precompute, got {self.starts!r} ('random' would "
                             "make reruns write different clips, so they could not be resumed)")
        if self.height < 8 or self.width < 8 or self.num_frames < 1:
            raise ValueError(f"need height, width >= 8 and num_frames >= 1, got {self.height}x{self.width}x"
                             f"{self.num_frames}")
        if self.videos_per_shard < 1:
            raise ValueError(f"videos_per_shard must be >= 1, got {self.videos_per_shard}")

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


# ------------------------------------------------------------------------------------------- sources
@dataclass
class VideoSource:
    """The videos of a data set (name -> locator, in listing order) and how to read one video's clips."""

    videos: dict[str, str]
    clips: Callable[[str, Callable[[str, DataReadError], None]], Iterator[VideoClip]]


def open_video_source(root: str | Path, config: PrecomputeConfig, videos: dict[str, str] | None = None) -> VideoSource:
    """The reader for ``config.dataset`` over ``root``; ``videos`` (from a plan) saves listing the data set."""
    size = (config.height, config.width)
    if config.dataset == "davis":
        ds = DavisDataset(root, split=config.split or "val", sampling=config.sampling)
        names = videos or {v: v for v in ds.sequences()}
        return VideoSource(names, lambda v, on_error: ds.clips([v], on_error=on_error))
    if config.dataset == "sav":
        sav = SavDataset(root, sampling=config.sampling, size=size)
        if videos is not None:
            sav.use_index({v: Path(root) / p for v, p in videos.items()})
        names = videos or {v: str(p.relative_to(Path(root))) for v, p in sorted(sav.video_paths().items())}
        return VideoSource(names, lambda v, on_error: sav.clips([v], on_error=on_error))

    frames = SavFramesDataset(root, split=config.split or "sav_val", sampling=config.sampling)
    names = videos or {v: v for v in frames.videos()}
    return VideoSource(names, lambda v, on_error: frames.clips([v], on_error=on_error))


# ------------------------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """Which videos make each shard; fixed once written, so resumes and any number of workers agree."""

    config: PrecomputeConfig
    shards: dict[str, list[str]]          # shard name -> videos, in order
    videos: dict[str, str]                # video -> locator (path relative to the root for SA-V)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_json(), "shards": self.shards, "videos": self.videos}


def make_plan(source: VideoSource, config: PrecomputeConfig) -> Plan:
    names = list(source.videos)
    n = config.videos_per_shard
    shards = {f"shard-{k // n:06d}": names[k : k + n] for k in range(0, len(names), n)}
    return Plan(config, shards, dict(source.videos))


def load_or_make_plan(root: str | Path, out: Path, config: PrecomputeConfig) -> Plan:
    """The plan in ``out`` (its settings must equal ``config``), or a new one from listing the data set."""
    path = out / "plan.json"
    if path.is_file():
        data = json.loads(path.read_text())
        old = PrecomputeConfig.from_json(data["config"])
        if asdict(old) != asdict(config):
            diff = {k: (getattr(old, k), getattr(config, k)) for k in asdict(config)
                    if getattr(old, k) != getattr(config, k)}
            raise ValueError(f"{out} was precomputed with other settings {{name: (there, now)}}: {diff}. Use another "
                             "--out, or delete that folder to start over.")
        return Plan(old, {k: list(v) for k, v in data["shards"].items()}, dict(data["videos"]))
    plan = make_plan(open_video_source(root, config), config)
    if not plan.shards:
        raise FileNotFoundError(f"no videos found in {root} for dataset {config.dataset!r}")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(plan.to_json(), indent=1))
    return load_or_make_plan(root, out, config)     # whoever wrote last, every worker reads the same plan


# ------------------------------------------------------------------------------------------- stages
def read_video(root: str | Path, plan: Plan, video: str) -> dict[str, Any]:
    """Stage 1 (CPU): the clips of one video at the training size, with failures and empty clips counted."""
    config = plan.config
    source = open_video_source(root, config, {video: plan.videos[video]})
    errors: list[dict[str, str]] = []
    clips, empty = [], 0

    def on_error(item: str, err: DataReadError) -> None:
        errors.append({"video": video, "item": item, "error": str(err), "type": type(err).__name__})

    try:
        for clip in source.clips(video, on_error):
            if clip.num_objects == 0:
                empty += 1
                continue
            clip = clip.center_crop_resize(config.height, config.width)
            clips.append({"frames": clip.frames, "instance": clip.instance_map(), "object_ids": clip.object_ids,
                          "name": clip.name, "source": clip.source, "fps": clip.fps,
                          "frame_indices": clip.frame_indices, "meta": clip.meta})
    except (DataReadError, ValueError) as err:
        on_error(video, err)
    return {"video": video, "clips": clips, "failures": errors, "empty": empty}


def add_depth(result: dict[str, Any], depth_fn: DepthFn) -> dict[str, Any]:
    """Stage 2 (GPU, or CPU for flat depth): a disparity map per frame, the whole video's frames in one batch."""
    if result["clips"]:
        frames = np.concatenate([c["frames"] for c in result["clips"]])
        disparity = depth_of_frames(depth_fn, frames)
        if disparity.shape != frames.shape[:3] or disparity.dtype != np.uint8:
            raise ValueError(f"the depth function must return (H, W) uint8 disparity per frame, got "
                             f"{disparity.dtype} {disparity.shape} for frames {frames.shape}")
        at = 0
        for c in result["clips"]:
            n = len(c["frames"])
            c["disparity"] = disparity[at : at + n]
            at += n
    return result


def clip_record(clip: dict[str, Any], config: PrecomputeConfig) -> ClipRecord:
    """The record of one clip of :func:`read_video` with its disparity (the control from the shared function)."""
    params = config.clip_control()
    # ids given: torch.unique over a (16, 320, 512) map would cost most of the control's time
    signal = clip_control(clip["instance"], depth_from_disparity(clip["disparity"]), params,
                          ids=[int(i) for i in clip["object_ids"]])
    meta = {"name": clip["name"], "video": clip["name"].split("@")[0], "source": clip["source"],
            "fps": float(clip["fps"]), "frame_indices": [int(i) for i in clip["frame_indices"]],
            "object_ids": [int(i) for i in clip["object_ids"]], "moved_ids": [],
            "control": params.to_meta(), "clip_meta": clip["meta"]}
    return ClipRecord(frames=clip["frames"] if config.frames != "none" else None, disparity=clip["disparity"],
                      instance_map=clip["instance"], signal=signal, meta=meta)


def encode_video(result: dict[str, Any], config: PrecomputeConfig) -> dict[str, Any]:
    """Stage 3 (CPU): K-means control, JPEG and PNG encoding; the video's samples as member dicts of bytes."""
    samples = []
    for clip in result["clips"]:
        try:
            samples.append(encode_sample(clip_record(clip, config), config.frames, config.jpeg_quality))
        except ValueError as err:           # one bad clip never stops the run
            result["failures"].append({"video": result["video"], "item": clip["name"], "error": str(err),
                                       "type": type(err).__name__})
    return {"video": result["video"], "samples": samples, "failures": result["failures"], "empty": result["empty"]}


def process_video(root: str | Path, plan: Plan, video: str, depth_fn: DepthFn) -> dict[str, Any]:
    """All three stages of one video in this process (the local engine)."""
    return encode_video(add_depth(read_video(root, plan, video), depth_fn), plan.config)


# ------------------------------------------------------------------------------------------- writing
@dataclass
class RunReport:
    """What one run did. Counts are clips unless named videos or shards."""

    shards: int = 0
    shards_done: int = 0             # written by this run
    shards_existing: int = 0         # finished by an earlier run and verified (never recomputed)
    shards_damaged: int = 0          # finished by an earlier run but failing verification: recomputed
    samples: int = 0
    failed: int = 0
    videos_failed: int = 0
    empty: int = 0
    failures: list[dict[str, str]] | None = None
    seconds: float = 0.0
    engine: str = "local"

    @property
    def clips_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


class ShardWriter:
    """Collects finished videos (in any order) and writes a shard when all its videos are in: spooled to
    ``.work/<shard>/`` first, so a shard's tar holds its samples in plan order whichever worker finished first."""

    def __init__(self, out: Path, plan: Plan) -> None:
        self.out, self.plan = out, plan
        self.order = {v: (s, i) for s, vids in plan.shards.items() for i, v in enumerate(vids)}
        self.pending: dict[str, set[str]] = {}
        self.report = RunReport(shards=len(plan.shards), failures=[])

    def prepare(self, shards: list[str]) -> list[str]:
        """The shards of ``shards`` still to compute: finished ones are verified (:func:`damaged_shard`: every
        sample against its digest), counted and skipped; a damaged one is recomputed with a warning. Of the others
        the tar and stats are deleted and the videos already spooled by a run that was stopped are kept (they are
        whole: spooled atomically), so a kill costs at most the videos in flight. A shard whose videos were all
        spooled is written at once. :meth:`videos_todo` gives what is left of each returned shard."""
        done = {p.name[: -len(".tar")] for p in finished_shards(self.out)}
        todo = []
        for s in shards:
            tar = self.out / SHARD_DIR / f"{s}.tar"
            if s in done:
                damage = damaged_shard(tar)
                if damage is None:
                    self.report.shards_existing += 1
                    continue
                log.warning("computing a damaged shard again: %s", damage)
                self.report.shards_damaged += 1
            for stale in (tar, stats_path(tar), *tar.parent.glob(f".{s}.*.tmp.*")):
                stale.unlink(missing_ok=True)
            self.pending[s] = set(self.plan.shards[s]) - self._kept_spool(s)
            if not self.pending[s]:
                self._finish(s)
                continue
            todo.append(s)
        return todo

    def videos_todo(self, shard: str) -> list[str]:
        """The videos of an unfinished shard that are not spooled yet, in plan order."""
        return [v for v in self.plan.shards[shard] if v in self.pending[shard]]

    def _spool_file(self, shard: str, i: int) -> Path:
        return self.out / WORK_DIR / shard / f"{i:06d}{spool.SUFFIX}"

    def _kept_spool(self, shard: str) -> set[str]:
        """The videos of ``shard`` whose spooled result is readable and is theirs; anything else is deleted
        unread if it is not a spool file (a pickle left by an older levitor, or planted: never loaded)."""
        videos = self.plan.shards[shard]
        folder = self.out / WORK_DIR / shard
        kept: set[str] = set()
        old = 0
        for p in sorted(folder.glob("*")) if folder.is_dir() else []:
            i = int(p.stem) if p.suffix == spool.SUFFIX and p.stem.isdigit() else -1
            try:
                if 0 <= i < len(videos) and spool.spooled_video(p) == videos[i]:
                    kept.add(videos[i])
                    continue
            except (spool.SpoolError, OSError):  # torn, foreign or damaged: compute that video again
                pass
            old += p.suffix == spool.OLD_SUFFIX
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        if old:
            log.warning("%s: deleted %d spool files in the old pickle format without reading them (a pickle can run "
                        "code); their videos are computed again", folder, old)
        return kept

    def add(self, result: dict[str, Any]) -> str | None:
        """Spool one video's result; returns the shard's name when that shard was written."""
        shard, i = self.order[result["video"]]
        write_bytes_atomic(self._spool_file(shard, i), spool.pack(result))
        self.pending[shard].discard(result["video"])
        if self.pending[shard]:
            return None
        self._finish(shard)
        return shard

    def _finish(self, shard: str) -> None:
        folder = self.out / WORK_DIR / shard
        results = [spool.unpack(self._spool_file(shard, i).read_bytes()) for i in range(len(self.plan.shards[shard]))]
        samples = [s for r in results for s in r["samples"]]
        failures = [f for r in results for f in r["failures"]]
        tar = self.out / SHARD_DIR / f"{shard}.tar"
        size = write_shard(tar, samples)
        stats = {"shard": shard, "format_version": FORMAT_VERSION, "samples": len(samples), "bytes": size,
                 "file_digest": file_hash(tar),   # what a rerun checks first (damaged_shard)
                 "videos": len(results), "videos_failed": len({f["video"] for f in failures}),
                 "clips_failed": len(failures), "empty": sum(r["empty"] for r in results), "failures": failures}
        write_stats(tar, stats)
        shutil.rmtree(folder, ignore_errors=True)
        rep = self.report
        rep.shards_done += 1
        rep.samples += len(samples)
        rep.failed += len(failures)
        rep.videos_failed += stats["videos_failed"]
        rep.empty += stats["empty"]
        rep.failures += failures

    def check_fail_fast(self, seen_videos: int) -> None:
        if seen_videos >= FAIL_FAST_VIDEOS and self.report.samples == 0 and self.report.videos_failed >= seen_videos:
            raise RuntimeError(f"the first {FAIL_FAST_VIDEOS} videos all failed (last: {self.report.failures[-1]}). "
                               "That is a setup problem (wrong --dataset or root, missing codec), not bad data")


def damaged_shard(tar: Path) -> str | None:
    """Why a finished shard cannot be trusted, or None when it is whole. A same-size copy with a flipped byte passes
    the size check of :func:`~levitor.data.records.finished_shards` but not this: the tar's digest recorded in its
    stats is compared (one read of the file), and where it differs or was not recorded (shards of an older levitor)
    each sample is checked against its own digest, which names the damaged one."""
    stats = read_stats(tar) or {}
    want = stats.get("file_digest")
    if want is not None and file_hash(tar) == want:
        return None
    try:
        for sample in iter_tar_samples(tar, expected=int(stats.get("samples", -1))):
            check_sample(sample)
    except CorruptShardError as err:
        return str(err).split("; recompute that shard")[0]    # the shard is recomputed now: no advice needed
    if want is not None:
        return f"shard {tar} is not the file that was written (its digest differs), though each sample reads"
    return None


def my_shards(plan: Plan, worker: int = 0, workers: int = 1) -> list[str]:
    """Every ``workers``-th shard from ``worker`` on: how independent processes split the plan."""
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker must be in 0..workers-1 with workers >= 1, got worker {worker} of {workers}")
    return sorted(plan.shards)[worker::workers]


def run_local(root: str | Path, out: str | Path, config: PrecomputeConfig | None = None,
              depth_fn: DepthFn | None = None, worker: int = 0, workers: int = 1,
              progress: Callable[[str, RunReport], None] | None = None) -> RunReport:
    """The plain engine: every stage in this process, shard after shard (``worker`` of ``workers`` shares)."""
    config = config or PrecomputeConfig()
    out = Path(out)
    t0 = time.perf_counter()
    plan = load_or_make_plan(root, out, config)
    depth_fn = depth_fn or load_depth_fn(config.depth, input_size=config.depth_input_size)
    writer = ShardWriter(out, plan)
    seen = 0
    for shard in writer.prepare(my_shards(plan, worker, workers)):
        for video in writer.videos_todo(shard):
            writer.add(process_video(root, plan, video, depth_fn))
            seen += 1
            writer.check_fail_fast(seen)
        if progress is not None:
            progress(shard, writer.report)
    return finish_report(out, writer.report, t0, "local")


def finish_report(out: Path, report: RunReport, t0: float, engine: str) -> RunReport:
    report.seconds = time.perf_counter() - t0
    report.engine = engine
    totals = {"shards": report.shards, "finished": len(finished_shards(out)), "samples": 0, "clips_failed": 0,
              "empty": 0}
    for tar in finished_shards(out):
        st = read_stats(tar) or {}
        for k in ("samples", "clips_failed", "empty"):
            totals[k] += int(st.get(k, 0))
    write_text_atomic(out / "report.json", json.dumps({"run": {**asdict(report), "clips_per_second":
                                                               round(report.clips_per_second, 3)},
                                                       "totals": totals, "complete": totals["finished"] ==
                                                       report.shards}, indent=1))
    return report


def resolve_worker(worker: int | None, workers: int | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    """(worker, workers) for the local engine: the flags, else the launcher's rank variables
    (:func:`levitor._util.launch.detect_launch`: torchrun, accelerate, srun), else (0, 1)."""

    if worker is not None or workers is not None:
        if worker is None or workers is None:
            raise ValueError("--worker and --workers go together (e.g. --worker 3 --workers 16)")
        return int(worker), int(workers)
    info = detect_launch(os.environ if env is None else env)
    return info.rank, info.world_size


# ------------------------------------------------------------------------------------------- the engines
@dataclass
class EngineChoice:
    engine: str                  # ray | local
    address: str | None = None   # the Ray cluster to join (None: a Ray started here)
    why: str = ""                # for the log: why --engine auto chose it


def choose_engine(engine: str, address: str | None = None, env: dict[str, str] | None = None,
                  gpus: int | None = None, ray_installed: bool | None = None) -> EngineChoice:
    """Which engine ``--engine`` means here. ``auto`` takes Ray only where it pays: a Ray cluster to join
    (``--ray-address`` or ``RAY_ADDRESS``) or more than one GPU on this machine (one depth actor each). Otherwise
    the local engine: on one machine Ray's start-up and hand-offs cost more than they save (19 DAVIS clips took
    14.7 s in a local Ray against 2.1 s in one process), and under a launcher of several processes (srun, torchrun)
    each process is a local worker taking its share of the shards (unless ``--ray-address`` is given: then the
    launcher's variables say nothing). ``gpus``, ``ray_installed``: found out when None."""
    import importlib.util

    env = dict(os.environ if env is None else env)
    if engine not in ("auto", "ray", "local"):
        raise ValueError(f"--engine must be auto, ray or local, got {engine!r}")
    if ray_installed is None:
        ray_installed = importlib.util.find_spec("ray") is not None
    if engine == "local":
        return EngineChoice("local", None, "asked for")
    processes = detect_launch(env).world_size
    if engine == "auto" and not address and processes > 1:   # RAY_ADDRESS exported to every task of a job
        return EngineChoice("local", None, f"one of {processes} launched processes, each taking its shards")
    address = address or env.get("RAY_ADDRESS") or None
    if engine == "ray" or address:
        if not ray_installed:
            why = "--engine ray" if engine == "ray" else f"the Ray cluster {address!r}"
            raise ValueError(f"{why} needs Ray, which is not installed: pip install 'levitor[cluster]', or run with "
                             "--engine local")
        return EngineChoice("ray", address, "asked for" if engine == "ray" else f"a Ray cluster at {address}")
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    if gpus > 1 and ray_installed:
        return EngineChoice("ray", None, f"{gpus} GPUs: a local Ray with one depth actor each")
    if gpus > 1:
        return EngineChoice("local", None, f"{gpus} GPUs but Ray is not installed (pip install 'levitor[cluster]' "
                                           "to use them all); one process")
    return EngineChoice("local", None, "one machine with at most one GPU: one process (--engine ray to use Ray)")
