"""The one record format: a clip as a WebDataset sample, written by ``levitor precompute`` and by the synthetic
world (``levitor precompute-synthetic``), streamed by training (:mod:`levitor.data.shards`) and read by
evaluation.

A shard is a plain POSIX tar of samples (``<out>/shards/shard-000123.tar``) beside its stats file
(``shard-000123.stats.json``: sample count, failures with reasons, bytes, seconds). One sample per clip, its members
named ``<key>.<part>`` (WebDataset groups members by the key before the first dot):

    <key>.json            metadata: name, video, source, fps, frame indices, object ids, size, how the control was
                          made (the ClipControl parameters) and the frame encoding; format version 2
    <key>.f000.jpg ...    the frames as JPEG (``frames: jpeg``), or <key>.frames.npy (F, H, W, 3) uint8 (``raw``);
                          none with ``frames: none`` (the metadata then says where the frames are)
    <key>.disparity.png   per-frame depth: the (F, H, W) uint8 disparity maps stacked into one (F*H, W) grey PNG
                          (the release's 0..255 scale, 255 = nearest)
    <key>.instance.png    the (F, H, W) instance maps, stacked the same way (8-bit, or 16-bit when an id >= 256)
    <key>.control.npy     (F, P, 4) float32: x, y (pixels), depth value, visible of each control point
    <key>.ids.npy         (P,) int64: the object id of each point
    <key>.digest.txt      a hash of the other members: a flipped bit or a bad copy is found when the sample is read

A damaged shard (a sample that does not match its digest, an unreadable tar, fewer samples than its stats say) is
reported by :class:`CorruptShardError`, which names the shard and how to recompute it; training skips such samples
with a warning (:mod:`levitor.data.shards`), evaluation and :class:`PrecomputedDataset` raise it. A tar whose size is
not the one its stats record is not a finished shard (a half-written or half-copied one): ``levitor precompute``
computes it again and training warns that it is left out.

Everything is encoded deterministically (fixed tar mtime, no zip timestamps), so the same input gives byte-identical
shards whichever engine, machine or worker count wrote them.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from levitor._util.hashing import members_hash
from levitor._util.io import atomic_path, write_text_atomic
from levitor.control.signal import ControlSignal

FORMAT_VERSION = 2
FRAME_MODES = ("jpeg", "raw", "none")
JPEG_QUALITY = 95  # visually lossless; the VAE sees far worse compression in SA-V's own mp4s
SHARD_DIR = "shards"
SHARD_MTIME = 0.0            # tar member times: fixed, so shards are byte-identical between runs
DIGEST_PART = "digest.txt"

log = logging.getLogger(__name__)


class CorruptShardError(ValueError):
    """A shard, or a sample of it, is damaged; the message names the shard and what to do (``shard``: its path)."""

    def __init__(self, message: str, shard: str | Path | None = None) -> None:
        super().__init__(message)
        self.shard = str(shard) if shard is not None else None


def redo_hint(tar: str | Path) -> str:
    tar = Path(tar)
    return (f"recompute that shard: delete {stats_path(tar)} and run the command that wrote "
            f"{tar.parent.parent if tar.parent.name == SHARD_DIR else tar.parent} again with the same --out "
            "(`levitor precompute` keeps every finished shard and computes only that one)")


def sample_digest(sample: dict[str, Any]) -> str:
    return members_hash({k: v for k, v in sample.items() if not k.startswith("__") and k != DIGEST_PART})


def check_sample(sample: dict[str, Any]) -> None:
    """Raise :class:`CorruptShardError` when a sample does not match its stored digest (records written before
    digests pass unchecked)."""
    want = sample.get(DIGEST_PART)
    if want is None:
        return
    if bytes(want).decode("ascii", "replace").strip() != sample_digest(sample):
        tar = sample.get("__url__", "?")
        raise CorruptShardError(f"shard {tar}: sample {sample.get('__key__', '?')!r} does not match its digest (a "
                                f"flipped bit or a bad copy); {redo_hint(tar)}", shard=tar)


@dataclass
class ClipRecord:
    """One clip as stored: frames (F, H, W, 3) uint8 or None, disparity (F, H, W) uint8, instance_map (F, H, W)
    uint8/uint16, the control signal, and the metadata (``meta['name']`` is the clip's name)."""

    frames: np.ndarray | None
    disparity: np.ndarray
    instance_map: np.ndarray
    signal: ControlSignal
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta["name"])


def sample_key(name: str) -> str:
    """A clip name as a WebDataset key: no dots (they separate the key from the part), nothing unusual."""
    return re.sub(r"[^A-Za-z0-9_@-]", "_", name)


def _png(stack: np.ndarray) -> bytes:
    f, h, w = stack.shape
    flat = np.ascontiguousarray(stack.reshape(f * h, w))
    im = Image.fromarray(flat.astype(np.uint16), mode="I;16") if flat.dtype == np.uint16 else Image.fromarray(flat)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _unpng(data: bytes, frames: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im)
    a = a.astype(np.uint16) if a.dtype != np.uint8 else a
    return a.reshape(frames, a.shape[0] // frames, a.shape[1])


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _unnpy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_sample(record: ClipRecord, frames: str = "jpeg", jpeg_quality: int = JPEG_QUALITY) -> dict[str, bytes]:
    """The members of one sample (``{"__key__": ..., "json": ..., ...}``; values bytes) for a WebDataset TarWriter."""
    if frames not in FRAME_MODES:
        raise ValueError(f"frames must be one of {FRAME_MODES}, got {frames!r}")
    sig = record.signal
    top = int(record.instance_map.max()) if record.instance_map.size else 0
    if top >= 2**16:
        raise ValueError(f"clip {record.name!r} has object id {top}; records store ids up to 65535")
    instance = record.instance_map.astype(np.uint8 if top < 256 else np.uint16)
    meta = {**record.meta, "format_version": FORMAT_VERSION, "frames": frames if record.frames is not None else "none",
            "num_frames": int(record.disparity.shape[0]), "height": int(record.disparity.shape[1]),
            "width": int(record.disparity.shape[2]), "num_points": int(sig.num_points)}
    control = np.concatenate([sig.points.numpy().astype(np.float32), sig.depth.numpy().astype(np.float32)[..., None],
                              sig.visible.numpy().astype(np.float32)[..., None]], axis=-1)
    out = {"__key__": sample_key(record.name),
           "json": json.dumps(meta, sort_keys=True).encode(),
           "disparity.png": _png(np.asarray(record.disparity, np.uint8)),
           "instance.png": _png(instance),
           "control.npy": _npy(control),
           "ids.npy": _npy(sig.instance.numpy().astype(np.int64))}
    if record.frames is not None and frames == "jpeg":
        for i, f in enumerate(record.frames):
            out[f"f{i:03d}.jpg"] = encode_jpeg(f, jpeg_quality)
    elif record.frames is not None and frames == "raw":
        out["frames.npy"] = _npy(np.asarray(record.frames, np.uint8))
    out[DIGEST_PART] = sample_digest(out).encode()
    return out


def decode_sample(sample: dict[str, Any], load_frames: bool = True, load_maps: bool = True) -> ClipRecord:
    """A ClipRecord from a sample's members (bytes). Raises ValueError naming what is missing or unreadable.

    ``load_frames`` / ``load_maps`` False skip decoding the JPEGs / the disparity and instance PNGs (training with
    the stored signal needs only frames and control)."""
    key = sample.get("__key__", "?")
    try:
        meta = json.loads(sample["json"])
        n = int(meta["num_frames"])
        h, w = int(meta["height"]), int(meta["width"])
        control = _unnpy(sample["control.npy"])
        ids = _unnpy(sample["ids.npy"])
        frames = None
        if load_frames and meta.get("frames") == "jpeg":
            frames = np.stack([np.asarray(Image.open(io.BytesIO(sample[f"f{i:03d}.jpg"])).convert("RGB"))
                               for i in range(n)])
        elif load_frames and meta.get("frames") == "raw":
            frames = _unnpy(sample["frames.npy"])
        disparity = _unpng(sample["disparity.png"], n) if load_maps else np.zeros((n, h, w), np.uint8)
        instance = _unpng(sample["instance.png"], n) if load_maps else np.zeros((n, h, w), np.uint8)
    except (KeyError, ValueError, OSError, json.JSONDecodeError) as err:
        tar = sample.get("__url__")
        where = f"shard {tar}: " if tar else ""
        hint = f"; {redo_hint(tar)}" if tar else ""
        raise CorruptShardError(f"{where}sample {key!r} is not a whole levitor record ({type(err).__name__}: "
                                f"{err}){hint}", shard=tar) from err
    signal = ControlSignal(points=torch.from_numpy(np.ascontiguousarray(control[..., :2])),
                           depth=torch.from_numpy(np.ascontiguousarray(control[..., 2])),
                           instance=torch.from_numpy(ids.astype(np.int64)),
                           visible=torch.from_numpy(control[..., 3] > 0.5), height=h, width=w)
    return ClipRecord(frames=frames, disparity=disparity, instance_map=instance, signal=signal, meta=meta)


# ------------------------------------------------------------------------------------------------ shards
def write_shard(path: str | Path, samples: list[dict[str, bytes]]) -> int:
    """Write samples (in the given order) as one tar, atomically; returns its size in bytes."""
    import webdataset as wds

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer = wds.TarWriter(fh, encoder=False, mtime=SHARD_MTIME)
        for s in samples:
            writer.write(s)
        writer.close()
    return path.stat().st_size


def stats_path(tar: Path) -> Path:
    return tar.with_name(tar.name[: -len(".tar")] + ".stats.json")


def write_stats(tar: Path, stats: dict[str, Any]) -> None:
    write_text_atomic(stats_path(tar), json.dumps(stats, indent=1, sort_keys=True))


def read_stats(tar: Path) -> dict[str, Any] | None:
    """A shard's stats, or None when there are none or they cannot be read (see :func:`stats_problem`)."""
    try:
        stats = json.loads(stats_path(tar).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stats if isinstance(stats, dict) else None


def stats_problem(tar: Path) -> str | None:
    """Why a shard's stats file, which exists, cannot be used (None: it can, or there is none)."""
    p = stats_path(tar)
    if not p.exists():
        return None
    try:
        stats = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"its stats file {p} cannot be read ({type(err).__name__}: {err})"
    if not isinstance(stats, dict) or not isinstance(stats.get("samples"), int) or stats["samples"] < 0:
        return f"its stats file {p} holds no sample count"
    return None


def finished_shards(root: str | Path, warn: bool = False) -> list[Path]:
    """The shards of a precompute output (or of a folder of shards) that are complete: a stats file beside a tar
    of the size it records. Sorted by name. Half-written shards (a kill mid-shard) are left out; ``warn``: say so
    for a tar that has stats but another size (damaged, or cut short by a copy)."""
    root = Path(root)
    folder = root / SHARD_DIR if (root / SHARD_DIR).is_dir() else root
    out = []
    for tar in sorted(folder.glob("*.tar")):
        st = read_stats(tar)
        if st is not None and st.get("bytes") == tar.stat().st_size:
            out.append(tar)
        elif st is not None and warn:
            log.warning("shard %s is %d bytes but its stats record %s: left out; %s", tar, tar.stat().st_size,
                        st.get("bytes"), redo_hint(tar))
        elif warn and (problem := stats_problem(tar)):       # a stats file that is there but unreadable
            log.warning("shard %s is left out: %s; %s", tar, problem, redo_hint(tar))
    return out


def first_meta(tar: str | Path) -> dict[str, Any] | None:
    """The metadata of a shard's first sample (its ``.json`` member), found by seeking over the tar headers: no
    frame is read, so every shard of a large data set can be checked before training. None for an empty shard or a
    first sample without metadata; CorruptShardError when the tar cannot be read."""
    try:
        with tarfile.open(tar, "r:") as tf:
            key = None
            for m in tf:
                k, _, part = m.name.partition(".")
                key = k if key is None else key
                if k != key:
                    return None
                if part == "json":
                    return json.loads(tf.extractfile(m).read())
    except (tarfile.TarError, OSError, ValueError) as err:
        raise CorruptShardError(f"shard {tar} cannot be read ({type(err).__name__}: {err}); {redo_hint(tar)}",
                                shard=tar) from err
    return None


def iter_tar_samples(tar: str | Path, expected: int | None = None):
    """The raw samples (member dicts of bytes, ``__key__``, ``__url__``) of one shard, in order, via WebDataset's
    tar reader. An unreadable tar, or (``expected``) another number of samples than its stats say, raises
    :class:`CorruptShardError` naming the shard, after the samples read before the damage."""
    import webdataset as wds

    n = 0
    try:
        with open(tar, "rb") as stream:
            files = ({**f, "__url__": str(tar)} for f in wds.tariterators.tar_file_iterator(stream))
            for sample in wds.tariterators.group_by_keys(files):
                n += 1
                yield sample
    except (tarfile.TarError, OSError, ValueError) as err:
        raise CorruptShardError(f"shard {tar} cannot be read after {n} samples ({type(err).__name__}: {err}); "
                                f"{redo_hint(tar)}", shard=tar) from err
    if expected is not None and n != expected:
        raise CorruptShardError(f"shard {tar} holds {n} samples but its stats say {expected} (a damaged tar "
                                f"header ends the archive early); {redo_hint(tar)}", shard=tar)


class PrecomputedDataset(torch.utils.data.Dataset):
    """Random access to the records of finished shards (for inspection and evaluation; training streams instead).

    Holds one count per shard and, once a shard is touched, its member offsets (a header scan, no data read).

    >>> ds = PrecomputedDataset("/data/sav_pre")                    # doctest: +SKIP
    >>> rec = ds[0]; rec.frames.shape, rec.signal.num_points         # doctest: +SKIP
    """

    def __init__(self, root: str | Path, load_frames: bool = True) -> None:
        self.root = Path(root)
        self.load_frames = load_frames
        self.shards = finished_shards(self.root)
        if not self.shards:
            raise FileNotFoundError(f"{self.root} holds no finished shards; run levitor precompute there first")
        self.counts = [int(read_stats(s)["samples"]) for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        self._offsets: dict[int, list[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _index(self, s: int) -> list[dict[str, Any]]:
        """Per sample of shard ``s``: its key and (offset, size) of each member (one shard's index at a time)."""
        if s not in self._offsets:
            samples: list[dict[str, Any]] = []
            tar = self.shards[s]
            try:
                with tarfile.open(tar, "r:") as tf:
                    for m in tf:
                        key, part = m.name.split(".", 1)
                        if not samples or samples[-1]["__key__"] != key:
                            samples.append({"__key__": key})
                        samples[-1][part] = (m.offset_data, m.size)
            except (tarfile.TarError, OSError, ValueError) as err:
                raise CorruptShardError(f"shard {tar} cannot be read ({type(err).__name__}: {err}); "
                                        f"{redo_hint(tar)}") from err
            if len(samples) != self.counts[s]:
                raise CorruptShardError(f"shard {tar} holds {len(samples)} samples but its stats say "
                                        f"{self.counts[s]}; {redo_hint(tar)}")
            self._offsets = {s: samples}
        return self._offsets[s]

    def _entry(self, i: int) -> tuple[int, dict[str, Any]]:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} out of range 0..{len(self) - 1}")
        s = int(np.searchsorted(self.starts, i, side="right") - 1)
        return s, self._index(s)[i - int(self.starts[s])]

    def key(self, i: int) -> str:
        """The sample key of record ``i`` (its clip name as a key), from the tar headers only."""
        return self._entry(i)[1]["__key__"]

    def raw(self, i: int) -> dict[str, Any]:
        s, entry = self._entry(i)
        out: dict[str, Any] = {"__key__": entry["__key__"], "__url__": str(self.shards[s])}
        with open(self.shards[s], "rb") as fh:
            for part, where in entry.items():
                if part != "__key__":
                    fh.seek(where[0])
                    out[part] = fh.read(where[1])
        return out

    def __getitem__(self, i: int) -> ClipRecord:
        sample = self.raw(i)
        check_sample(sample)
        return decode_sample(sample, load_frames=self.load_frames)

    def __iter__(self):
        for tar, count in zip(self.shards, self.counts):
            for sample in iter_tar_samples(tar, expected=count):
                check_sample(sample)
                yield decode_sample(sample, load_frames=self.load_frames)
