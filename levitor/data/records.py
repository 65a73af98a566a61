"""The precompute record: one compressed ``.npz`` per clip with its depth, instance maps, control signal and
(optionally) frames, written by ``levitor precompute`` and read by training and evaluation.

Layout of a record: :data:`RECORD_KEYS` (+ :data:`FRAME_KEYS` of its ``frames`` mode). Format version 1.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from levitor._util.io import atomic_path
from levitor.control.encode import encode
from levitor.control.signal import ControlSignal

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


RECORD_KEYS = (
    "meta",            # () str: JSON of the clip's facts (name, video, source, fps, frame indices, crop, ...)
    "disparity",       # (F, H, W) uint8: the per-frame depth map on the release's 0..255 scale, 255 = nearest
    "instance_map",    # (F, H, W) uint8 (ids < 256) or uint16: object ids, 0 = background
    "points",          # (F, P, 2) float32: ControlSignal.points, (x, y) pixels
    "point_depth",     # (F, P) float32: ControlSignal.depth, the 0..255 values written into the depth channel
    "point_instance",  # (P,) int64: ControlSignal.instance
    "visible",         # (F, P) bool: ControlSignal.visible
)


FRAME_KEYS = {"jpeg": ("frames_jpeg", "frames_jpeg_sizes"), "raw": ("frames",), "none": ()}


def record_filename(clip_name: str) -> str:
    """A clip name as a file name: anything but letters, digits and ``._@-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", clip_name) + ".npz"


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_record(path: Path, record: dict[str, np.ndarray]) -> int:
    """Write atomically (:func:`levitor._util.io.atomic_path`): readers see the old state or the whole record.
    Returns the size in bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **record)   # a file object: numpy would append '.npz' to a tmp name
    return path.stat().st_size


def read_record(path: str | Path) -> dict[str, Any]:
    """All arrays of a record (``meta`` parsed from JSON). Raises ValueError when the file is not a whole record."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, Any] = {k: z[k] for k in z.files}     # reading every member checks its CRC
    except Exception as err:  # noqa: BLE001 - OSError, BadZipFile, zlib.error, EOFError...: all mean "corrupt"
        raise ValueError(f"{path} is not a readable record: {type(err).__name__}: {err}") from err
    missing = [k for k in RECORD_KEYS if k not in out]
    if missing:
        raise ValueError(f"{path} lacks {missing}: not a levitor precompute record (or a partial one)")
    out["meta"] = json.loads(str(out["meta"]))
    missing = [k for k in FRAME_KEYS.get(out["meta"].get("frames", "none"), ()) if k not in out]
    if missing:
        raise ValueError(f"{path} lacks its frames {missing}")
    return out


def verify_record(path: Path, name: str, mode: str = "size", expected_bytes: int | None = None) -> bool:
    """True if ``path`` holds the whole record of clip ``name``.

    mode 'exists': the file is there (records only appear by atomic rename, so that already excludes torn
    writes); 'size': and its size is the one the index recorded (a stat: cheap enough for 51K videos; a record
    the index does not know is read in full); 'full': read every array, which checks the zip CRCs too.
    """
    if not path.is_file():
        return False
    if mode == "exists":
        return True
    if mode == "size" and expected_bytes is not None:
        if path.stat().st_size == expected_bytes:
            return True
        log.warning("record %s has %d bytes, the index says %d: recomputing it", path, path.stat().st_size,
                    expected_bytes)
        return False
    try:
        rec = read_record(path)
    except ValueError as err:
        log.warning("record %s is corrupt, recomputing it: %s", path, err)
        return False
    return rec["meta"].get("name") == name


def signal_from_record(rec: dict[str, Any]) -> ControlSignal:
    meta = rec["meta"]
    return ControlSignal(points=torch.from_numpy(np.asarray(rec["points"], np.float32)),
                         depth=torch.from_numpy(np.asarray(rec["point_depth"], np.float32)),
                         instance=torch.from_numpy(np.asarray(rec["point_instance"], np.int64)),
                         visible=torch.from_numpy(np.asarray(rec["visible"], bool)),
                         height=int(meta["height"]), width=int(meta["width"]))


def frames_from_record(rec: dict[str, Any]) -> np.ndarray | None:
    """(F, H, W, 3) uint8 frames stored in the record, or None when it holds only references."""
    if "frames" in rec:
        return np.asarray(rec["frames"])
    if "frames_jpeg" in rec:
        data, sizes = rec["frames_jpeg"].tobytes(), rec["frames_jpeg_sizes"]
        ends = np.cumsum(sizes)
        return np.stack([np.asarray(Image.open(io.BytesIO(data[e - s : e])).convert("RGB"))
                         for s, e in zip(sizes.tolist(), ends.tolist())])
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Lines of a JSON-lines file; a torn last line (a kill during append) is ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("ignoring a torn line in %s (an earlier run was killed while appending)", path)
    return out


@dataclass
class PrecomputedClip:
    """One record as a training loop wants it.

    frames: (F, H, W, 3) uint8, or None when precomputed with ``frames='none'`` (then ``frame_ref`` says where
    they are: source, video, frame indices; crop and resize as ``config``). signal: the control signal.
    conditioning: (F, 3, H, W) float32 from :func:`levitor.control.encode.encode`, made on the fly (None if the
    data set was opened with ``encode_control=False``). disparity: (F, H, W) uint8; instance_map: (F, H, W).
    """

    name: str
    frames: np.ndarray | None
    signal: ControlSignal
    conditioning: torch.Tensor | None
    disparity: np.ndarray
    instance_map: np.ndarray
    frame_ref: dict[str, Any]
    meta: dict[str, Any]


class PrecomputedDataset(torch.utils.data.Dataset):
    """Records of a precompute output as a map-style dataset (works with DataLoader workers and samplers).

    ``path``: the output folder (its merged ``index.jsonl``, else every shard's index) or one shard folder.

    >>> ds = PrecomputedDataset("/data/sav_precomputed")            # doctest: +SKIP
    >>> item = ds[0]; item.frames.shape, item.conditioning.shape    # doctest: +SKIP
    ((16, 320, 512, 3), torch.Size([16, 3, 320, 512]))
    """

    def __init__(self, path: str | Path, encode_control: bool = True, load_frames: bool = True) -> None:
        self.root = Path(path)
        self.encode_control = encode_control
        self.load_frames = load_frames
        if (self.root / "index.jsonl").is_file() and not (self.root / "config.json").is_file():
            self.entries = read_jsonl(self.root / "index.jsonl")              # merged
        elif (self.root / "config.json").is_file():                           # one shard folder
            self.entries = read_jsonl(self.root / "index.jsonl")
        else:
            shards = sorted(p for p in self.root.glob("shard-*-of-*") if p.is_dir())
            if not shards:
                raise FileNotFoundError(f"{self.root} has no index.jsonl and no shard folders; run levitor "
                                        "precompute (and merge) first")
            self.entries = [{**e, "record": f"{s.name}/{e['record']}"} for s in shards
                            for e in read_jsonl(s / "index.jsonl")]
        self._by_name = {e["name"]: i for i, e in enumerate(self.entries)}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.entries]

    def index_of(self, name: str) -> int:
        if name not in self._by_name:
            raise KeyError(f"no clip {name!r} in {self.root} ({len(self)} clips)")
        return self._by_name[name]

    def __getitem__(self, i: int) -> PrecomputedClip:
        entry = self.entries[i]
        rec = read_record(self.root / entry["record"])
        meta = rec["meta"]
        signal = signal_from_record(rec)
        return PrecomputedClip(
            name=meta["name"],
            frames=frames_from_record(rec) if self.load_frames else None,
            signal=signal,
            conditioning=encode(signal) if self.encode_control else None,
            disparity=rec["disparity"],
            instance_map=rec["instance_map"],
            frame_ref={"source": meta["source"], "video": meta["video"], "frame_indices": meta["frame_indices"],
                       "height": meta["height"], "width": meta["width"]},
            meta=meta,
        )


def collate_precomputed(items: list[PrecomputedClip]) -> dict[str, Any]:
    """A DataLoader ``collate_fn``: frames (B, F, 3, H, W) uint8 and conditioning (B, F, 3, H, W) stacked;
    signals, names and metadata as lists (point counts differ between clips)."""
    out: dict[str, Any] = {"name": [it.name for it in items], "signal": [it.signal for it in items],
                           "meta": [it.meta for it in items]}
    if all(it.frames is not None for it in items):
        out["frames"] = torch.from_numpy(np.stack([it.frames for it in items])).permute(0, 1, 4, 2, 3)
    if all(it.conditioning is not None for it in items):
        out["conditioning"] = torch.stack([it.conditioning for it in items])
    return out
