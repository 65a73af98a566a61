"""What ``levitor eval`` evaluates: the clips of DAVIS, or the records of ``levitor precompute`` shards.

Each source lists its clips as a *plan* (cheap: names and where to find them, no pixels), which every rank computes
the same way and splits round-robin, and loads one clip at a time. A precompute record brings its stored depth and
control signal (made by the shared clip -> control function), so evaluating shards runs no depth network and, in
the multi-point setting, no K-means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from levitor.control.clip_control import ClipControl
from levitor.control.signal import ControlSignal
from levitor.data.clip import VideoClip
from levitor.data.davis import DavisDataset
from levitor.data.records import PrecomputedDataset, sample_key
from levitor.data.sampling import ClipSampling, clip_starts

SOURCES = ("auto", "davis", "shards")


@dataclass(frozen=True)
class EvalItem:
    """One clip of the plan: its key (unique, used in the result rows) and where it is."""

    key: str
    where: tuple = ()


@dataclass
class EvalClip:
    """A loaded clip; ``disparity`` (T, H, W) uint8 and ``signal`` (multi-point control) when a record had them."""

    clip: VideoClip
    disparity: np.ndarray | None = None
    signal: ControlSignal | None = None
    control: ClipControl = field(default_factory=ClipControl)


def detect_source(root: str | Path) -> str:
    """'shards' for a precompute output (or a folder of shard tars), 'davis' otherwise."""
    root = Path(root)
    if (root / "shards").is_dir() or (root / "plan.json").is_file() or any(root.glob("*.stats.json")):
        return "shards"
    return "davis"


class DavisSource:
    """DAVIS 2017 clips (``sampling`` cuts them); a plan item is (sequence, start)."""

    kind = "davis"

    def __init__(self, root: str | Path, split: str = "val", sampling: ClipSampling | None = None) -> None:
        self.ds = DavisDataset(root, split=split, sampling=sampling or ClipSampling())
        self._cached: tuple[str, VideoClip] | None = None

    def items(self, sequences: list[str] | None = None) -> list[EvalItem]:
        out = []
        for name in sequences if sequences is not None else self.ds.sequences():
            stems = sorted(p.stem for p in (self.ds.image_dir / name).glob("*.jpg"))
            if not stems:        # unreadable: one item, so the failure is recorded like any other
                out.append(EvalItem(f"{name}@0", (name, 0)))
                continue
            for start in clip_starts(len(stems), self.ds.sampling):
                out.append(EvalItem(f"{name}@{int(stems[start])}", (name, start)))
        return out

    def load(self, item: EvalItem) -> EvalClip:
        """Raises DataReadError for a sequence that cannot be read."""
        name, start = item.where
        if self._cached is None or self._cached[0] != name:   # a rank's clips of one sequence come in a row
            self._cached = (name, self.ds.load_sequence(name))
        s = self.ds.sampling
        return EvalClip(self._cached[1].sample(s.num_frames, start=start, stride=s.stride))


class ShardSource:
    """The records of finished precompute shards; a plan item is the record's index."""

    kind = "shards"

    def __init__(self, root: str | Path) -> None:
        self.ds = PrecomputedDataset(root)

    def items(self, sequences: list[str] | None = None) -> list[EvalItem]:
        wanted = {sample_key(s) for s in sequences} if sequences is not None else None
        out = []
        for i in range(len(self.ds)):
            key = self.ds.key(i)
            if wanted is None or key.split("@")[0] in wanted:
                out.append(EvalItem(key, (i,)))
        return out

    def load(self, item: EvalItem) -> EvalClip:
        rec = self.ds[item.where[0]]
        if rec.frames is None:
            raise ValueError(f"record {rec.name!r} was precomputed with frames 'none'; the evaluation needs the "
                             "frames: precompute with --frames jpeg (or raw)")
        instance = rec.instance_map.astype(np.int64)
        present = set(np.unique(instance).tolist()) - {0}
        ids = [i for i in rec.meta.get("object_ids", sorted(present)) if i in present]
        clip = VideoClip(frames=rec.frames, masks=instance, object_ids=np.asarray(ids, np.int64),
                         fps=float(rec.meta.get("fps", 6.0)), name=rec.name, source=rec.meta.get("source", ""),
                         frame_indices=np.asarray(rec.meta.get("frame_indices", range(len(rec.frames)))),
                         meta={"record": rec.meta})
        control = ClipControl.from_meta(rec.meta.get("control", {}))
        return EvalClip(clip, disparity=rec.disparity, signal=rec.signal, control=control)


def open_source(root: str | Path, kind: str = "auto", split: str = "val", sampling: ClipSampling | None = None):
    """A DavisSource or ShardSource for ``root`` (``kind`` auto: by what the folder holds)."""
    if kind not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {kind!r}")
    kind = detect_source(root) if kind == "auto" else kind
    return ShardSource(root) if kind == "shards" else DavisSource(root, split, sampling)
