"""SA-V reader (SAM 2's video segmentation set, the paper's training data) and a COCO RLE codec.

Format facts (from the SA-V release's README, ``facebookresearch/sam2`` ``sav_dataset/``):

- Training set: per video ``sav_XXXXXX.mp4`` (24 fps) plus ``sav_XXXXXX_manual.json`` and, for 48,436 of the
  50,583 videos, ``sav_XXXXXX_auto.json`` (SAM 2's automatic masklets). The release splits the videos over
  folders (``sav_000/``, ``sav_001/`` ...); this reader searches ``root`` recursively.
- JSON keys used here: ``video_id``, ``video_height``, ``video_width``, ``video_frame_count`` (floats),
  ``masklet``: a list over *annotated frames* of a list over objects of COCO RLE dicts
  ``{"size": [H, W], "counts": "<compressed string>"}``, ``masklet_id`` (ids start at 0 in each file),
  ``masklet_type`` ("manual" / "auto"). Other keys (sizes, visibility changes, stability scores) are kept in
  ``meta`` untouched where they are per-masklet lists.
- Val/test sets (:class:`SavFramesDataset`): ``sav_val.txt`` (video ids), ``JPEGImages_24fps/<id>/00000.jpg ...``
  and ``Annotations_6fps/<id>/<obj 000>/<frame 00000>.png``, one binary PNG per object and annotated frame
  (objects may overlap, hence one file each).
- Annotations are at 6 fps: annotated frame i is video frame 4 * i. An object not yet visible (manual masklets may
  start later) has an empty RLE. The reader therefore yields only annotated frames, at video fps / 4 = 6 fps, the
  frame rate the LeviTor demo also conditions on.

COCO compressed RLE: masks are decoded with ``pycocotools`` (C; :func:`rle_decode_masks`), after a vectorised check of
the counts (a corrupt string would make its C decoder write past the mask). The numpy codec below (written from the
format's definition) encodes fixtures and is the reference the decoder is tested against. The mask is read in
column-major (Fortran) order as alternating run lengths, zeros first (a first run of 0 if the mask starts with a 1).
Each count (from the fourth on, minus the count two places before it) is written as a little-endian sequence of
5-bit groups, 6 bits per character: bit 0x20 says "more groups follow", bit 0x10 of the last group is the sign,
and 48 is added to make it printable. Example: the empty 848 x 480 mask is one run of 407040 zeros = "P`]<".
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from levitor.data.clip import DataReadError, ErrorHandler, VideoClip, crop_resize_frames, crop_resize_indices
from levitor.data.sampling import ClipSampling, clip_starts

ANNOTATION_STRIDE = 4   # SA-V: masks every 4th frame of the 24 fps video (6 fps)
MASKLET_KINDS = ("manual", "auto")


# ----------------------------------------------------------------------------------------------- COCO RLE
def rle_counts(mask: np.ndarray) -> np.ndarray:
    """Run lengths of an (H, W) mask in column-major order, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return runs.astype(np.int64)


def counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed text form of a run-length list (LEB128-like, delta-coded from the 4th count)."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = x != -1 if group & 0x10 else x != 0
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> np.ndarray:
    """Inverse of :func:`counts_to_string`."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts: list[int] = []
    pos, n = 0, len(text)
    while pos < n:
        x, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise ValueError(f"truncated RLE string (ends inside a count at character {pos})")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid RLE character {text[pos]!r} at {pos}")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x -= 1 << shift  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return np.asarray(counts, dtype=np.int64)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> ``{"size": [H, W], "counts": str}`` exactly as pycocotools writes it."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes one (H, W) mask, got shape {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(rle_counts(mask))}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE dict (compressed string or uncompressed list ``counts``) -> (H, W) bool mask, full size.

    Checked first (a corrupt string would make the C decoder write past the mask), then decoded by pycocotools;
    without it, by numpy. For a crop or a resize, :func:`rle_decode_resized` is faster still."""
    h, w, counts = _checked_rle(rle)
    try:
        from pycocotools import mask as mask_util
    except ImportError:
        mask_util = None
    if mask_util is not None:
        raw = rle["counts"]
        obj = mask_util.frPyObjects({"size": [h, w], "counts": list(map(int, raw))}, h, w) if isinstance(raw, list) \
            else {"size": [h, w], "counts": raw.encode("ascii") if isinstance(raw, str) else raw}
        with warnings.catch_warnings():   # pycocotools 2.0.11 + numpy 2: a copy= deprecation notice per call
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_util.decode(obj).astype(bool)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((w, h)).T.copy()   # column-major -> (H, W)


def parse_counts(text: str | bytes) -> np.ndarray:
    """Vectorised :func:`string_to_counts` (no Python loop over characters): the run lengths of a compressed RLE.
    Raises ValueError for characters outside the alphabet, a truncated string or negative runs."""
    c = np.frombuffer(text.encode("ascii") if isinstance(text, str) else bytes(text), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() >= 64:
        raise ValueError("invalid RLE character")
    last = (c & 0x20) == 0                           # the last 5-bit group of each count
    if not last[-1]:
        raise ValueError("truncated RLE string (ends inside a count)")
    ends = np.flatnonzero(last)
    lengths = np.diff(np.concatenate([[-1], ends]))
    owner = np.repeat(np.arange(len(ends)), lengths)
    group = np.arange(c.size) - np.repeat(ends - lengths + 1, lengths)   # position of each group in its count
    x = np.bincount(owner, weights=(c & 0x1F) << (5 * group), minlength=len(ends)).astype(np.int64)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * lengths[neg])     # sign extension of the last group
    counts = x.copy()                                # from the fourth count on: delta to the count two before
    if len(counts) > 3:
        counts[3::2] = np.cumsum(x[3::2]) + x[1]
    if len(counts) > 4:
        counts[4::2] = np.cumsum(x[4::2]) + x[2]
    if counts.min() < 0:
        raise ValueError("negative run length")
    return counts


def _checked_rle(rle: dict[str, Any]) -> tuple[int, int, np.ndarray]:
    try:
        h, w = (int(v) for v in rle["size"])
        raw = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a COCO RLE dict with 'size' [H, W] and 'counts': {str(rle)[:80]}") from err
    counts = np.asarray(raw, dtype=np.int64) if isinstance(raw, list) else parse_counts(raw)
    if (counts.size and counts.min() < 0) or int(counts.sum()) != h * w:
        raise ValueError(
            f"RLE counts sum to {int(counts.sum())} (min {int(counts.min()) if counts.size else 0}) but the mask "
            f"has {h} x {w} = {h * w} pixels: the annotation is corrupt or its 'size' is wrong"
        )
    return h, w, counts


def rle_decode_resized(rle: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(len(rows), len(cols)) bool: the mask's pixels at the given (ascending) row and column indices, computed
    from the runs without building the full-size mask.

    A crop plus a nearest-neighbour resize is exactly such a selection, so an SA-V mask (1036 x 1400) lands at the
    training size (320 x 512) having touched 164K values instead of 1.45M. Column-major runs flip the value at
    boundary b; pixel (y, x) is 1 when an odd number of boundaries lie at or before y + x * H. Counted per output
    column: the boundaries before its source column, plus the ones inside it at rows <= y (a cumulative sum)."""
    h, _, counts = _checked_rle(rle)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    bounds = np.cumsum(counts)[:-1]
    bounds = bounds[bounds < counts.sum()]
    before = np.searchsorted(bounds, cols * h, side="left")                  # boundaries in earlier columns
    col, row = bounds // h, bounds % h
    lo, hi = np.searchsorted(cols, col, side="left"), np.searchsorted(cols, col, side="right")
    reps = hi - lo                                                            # output columns of that source col
    j = np.repeat(lo, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    i = np.repeat(np.searchsorted(rows, row, side="left"), reps)
    n_rows, n_cols = len(rows), len(cols)
    keep = i < n_rows                                 # a flip below the last sampled row changes nothing here
    flat = j[keep] * n_rows + i[keep]                 # flip positions in the (column-major) output
    start = before & 1                                # value at the top of each output column
    per_col = np.bincount(j[keep], minlength=n_cols) & 1
    end_prev = np.concatenate([[0], (start ^ per_col)[:-1]])
    events = np.concatenate([flat, np.flatnonzero(start != end_prev) * n_rows])
    pos, times = np.unique(events, return_counts=True)
    pos = pos[times % 2 == 1]                         # two flips at one pixel cancel
    lengths = np.diff(np.concatenate([[0], pos, [n_rows * n_cols]]))
    values = np.arange(len(lengths)) % 2 == 1
    return np.repeat(values, lengths).reshape(n_cols, n_rows).T


# ------------------------------------------------------------------------------------------ annotations
@dataclass
class SavAnnotation:
    """One ``sav_XXXXXX_{manual,auto}.json``; masks are decoded lazily (a video has up to ~100 frames x objects)."""

    video_id: str
    kind: str
    height: int
    width: int
    video_frame_count: int
    masklet: list[list[dict[str, Any]]]   # [annotated frame][object] -> RLE
    masklet_ids: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_annotated_frames(self) -> int:
        return len(self.masklet)

    @property
    def num_objects(self) -> int:
        return len(self.masklet_ids)

    @classmethod
    def load(cls, path: str | Path) -> SavAnnotation:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataReadError(f"cannot read SA-V annotation {path}: {err}") from err
        try:
            masklet = data["masklet"]
            ids = [int(i) for i in data.get("masklet_id", range(len(masklet[0]) if masklet else 0))]
            height, width = int(data["video_height"]), int(data["video_width"])
            kind = str(data["masklet_type"][0]) if data.get("masklet_type") else path.stem.rsplit("_", 1)[-1]
            frame_count = int(round(float(data.get("video_frame_count", len(masklet) * ANNOTATION_STRIDE))))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DataReadError(
                f"{path} is not an SA-V annotation (needs masklet, masklet_id, video_height, video_width): {err!r}"
            ) from err
        if any(len(frame) != len(ids) for frame in masklet):
            raise DataReadError(f"{path}: some annotated frames do not list all {len(ids)} masklets")
        per_masklet = {k: v for k, v in data.items() if k.startswith("masklet_") and isinstance(v, list)
                       and len(v) == len(ids) and k != "masklet_id"}
        return cls(
            video_id=str(data.get("video_id", path.stem.rsplit("_", 1)[0])),
            kind=kind,
            height=height,
            width=width,
            video_frame_count=frame_count,
            masklet=masklet,
            masklet_ids=ids,
            meta=per_masklet,
        )

    def masks(self, annotated_frames: Sequence[int] | None = None,
              size: tuple[int, int] | None = None) -> np.ndarray:
        """(T, N, H, W) bool masks of the given annotated-frame indices (all by default); with ``size`` (height,
        width) centre-cropped and resized to it as :meth:`VideoClip.center_crop_resize` would, decoded straight
        at that size (:func:`rle_decode_resized`)."""
        idx = range(self.num_annotated_frames) if annotated_frames is None else annotated_frames
        rows = cols = None
        if size is not None:
            rows, cols = crop_resize_indices(self.height, self.width, *size)
        shape = (self.height, self.width) if size is None else tuple(size)
        out = np.zeros((len(idx), self.num_objects) + shape, dtype=bool)
        for t, i in enumerate(idx):
            for n, rle in enumerate(self.masklet[i]):
                try:
                    if rows is not None and [int(v) for v in rle.get("size", ())] == [self.height, self.width]:
                        out[t, n] = rle_decode_resized(rle, rows, cols)
                        continue
                    m = rle_decode(rle)
                except ValueError as err:
                    raise DataReadError(f"{self.video_id} ({self.kind}) frame {i} object {n}: {err}") from err
                if m.shape != (self.height, self.width):
                    raise DataReadError(
                        f"{self.video_id}: mask size {m.shape} differs from the video size "
                        f"{(self.height, self.width)}"
                    )
                out[t, n] = m
        return out


# ---------------------------------------------------------------------------------------------- video
def decode_frames(path: str | Path, indices: Sequence[int]) -> tuple[np.ndarray, float]:
    """The frames at ``indices`` (sorted, 0-based decode order) of a video as (T, H, W, 3) uint8, and its fps.

    Decodes sequentially with PyAV and stops after the last wanted frame (SA-V clips are short; seeking to key
    frames would save little and is less exact).
    """
    import av  # local: importing PyAV costs ~0.1 s and only readers of mp4 need it

    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        raise ValueError("decode_frames needs at least one frame index")
    path = Path(path)
    if not path.is_file():
        raise DataReadError(f"video {path} does not exist")
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 24.0
            want = set(wanted)
            for i, frame in enumerate(container.decode(stream)):
                if i in want:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= wanted[-1]:
                    break
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as err:
        raise DataReadError(f"cannot decode video {path}: {err}") from err
    missing = [i for i in wanted if i not in got]
    if missing:
        raise DataReadError(
            f"video {path} has only {len(got) and max(got) + 1 or 0}+ decodable frames; frames {missing[:5]}... "
            "are missing (truncated download?)"
        )
    return np.stack([got[i] for i in sorted(indices)]), fps


# -------------------------------------------------------------------------------------------- dataset
@dataclass
class SavDataset:
    """SA-V training videos with their masklets, as 6 fps :class:`VideoClip` s.

    Objects of all requested masklet kinds are numbered 1..N (manual first); ``clip.meta['masklets']`` maps each id
    back to ``(kind, masklet_id)``.
    """

    root: str | Path
    kinds: tuple[str, ...] = MASKLET_KINDS   # the paper trains on all 643K masklets, manual and automatic
    sampling: ClipSampling = field(default_factory=lambda: ClipSampling(starts="all"))
    annotation_stride: int = ANNOTATION_STRIDE
    size: tuple[int, int] | None = None      # (height, width): crop + resize while reading (masks decoded at size)
    _index: dict[str, Path] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"SA-V folder {self.root} not found. Download the SA-V training tar files from "
                "https://ai.meta.com/datasets/segment-anything-video-downloads/ and unpack them there "
                "(sav_XXXXXX.mp4 beside sav_XXXXXX_manual.json)."
            )
        unknown = set(self.kinds) - set(MASKLET_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {MASKLET_KINDS}, got {self.kinds}")

    def use_index(self, paths: dict[str, Path]) -> SavDataset:
        """Take the video -> mp4 mapping from a plan instead of searching ``root`` (51K files on a network disk)."""
        self._index = dict(paths)
        return self

    def _videos(self) -> dict[str, Path]:
        if self._index is None:
            self._index = {p.stem: p for p in sorted(Path(self.root).rglob("*.mp4"))}
        return self._index

    def video_paths(self) -> dict[str, Path]:
        """Video id -> mp4 path of every video under ``root`` (searched once)."""
        return dict(self._videos())

    def videos(self) -> list[str]:
        """Video ids (file stems) of every mp4 under ``root``, sorted."""
        return sorted(self._videos())

    def __len__(self) -> int:
        return len(self._videos())

    def annotations(self, video_id: str) -> list[SavAnnotation]:
        """The annotation files of a video for ``self.kinds``; a missing manual file is an error, auto optional."""
        mp4 = self._videos().get(video_id)
        if mp4 is None:
            raise DataReadError(f"no video {video_id}.mp4 under {self.root}")
        out = []
        for kind in self.kinds:
            path = mp4.with_name(f"{video_id}_{kind}.json")
            if path.is_file():
                out.append(SavAnnotation.load(path))
            elif kind == "manual":
                raise DataReadError(f"{video_id}: manual annotation {path.name} is missing beside the video")
        return out

    def num_annotated_frames(self, anns: list[SavAnnotation]) -> int:
        """Annotated frames usable in every file: also bounded by the video length the JSON states."""
        if not anns:
            return 0
        n = min(a.num_annotated_frames for a in anns)
        frame_count = min(a.video_frame_count for a in anns)
        return min(n, (frame_count - 1) // self.annotation_stride + 1) if frame_count > 0 else n

    def load_video(self, video_id: str, start: int = 0, num_frames: int | None = None) -> VideoClip:
        """Annotated frames ``start .. start + num_frames - 1`` (6 fps indices) of a video with their masks."""
        anns = self.annotations(video_id)
        total = self.num_annotated_frames(anns)
        if num_frames is None:
            num_frames = total - start
        if start < 0 or num_frames < 1 or start + num_frames > total:
            raise DataReadError(
                f"{video_id}: asked for annotated frames {start}..{start + (num_frames or 0) - 1} but only "
                f"{total} are annotated"
            )
        ann_idx = list(range(start, start + num_frames))
        frames, video_fps = decode_frames(self._videos()[video_id], [i * self.annotation_stride for i in ann_idx])
        return self._clip(video_id, anns, frames, ann_idx, video_fps)

    def _clip(self, video_id: str, anns: list[SavAnnotation], frames: np.ndarray, ann_idx: list[int],
              video_fps: float) -> VideoClip:
        masks, names, meta_per_object = [], [], {}
        for ann in anns:
            if (ann.height, ann.width) != frames.shape[1:3]:
                raise DataReadError(
                    f"{video_id}: annotation size {(ann.height, ann.width)} differs from the decoded video size "
                    f"{frames.shape[1:3]}"
                )
            masks.append(ann.masks(ann_idx, self.size))
            names += [(ann.kind, mid) for mid in ann.masklet_ids]
            for key, values in ann.meta.items():
                meta_per_object.setdefault(key, []).extend(values)
        n = len(ann_idx)
        if self.size is not None:
            frames = crop_resize_frames(frames, *self.size)
        all_masks = np.concatenate(masks, axis=1) if masks else np.zeros((n, 0) + frames.shape[1:3], bool)
        return VideoClip(
            frames=frames,
            masks=all_masks,
            object_ids=np.arange(1, all_masks.shape[1] + 1),
            fps=video_fps / self.annotation_stride,
            name=f"{video_id}@{ann_idx[0] * self.annotation_stride}",
            source="sav",
            frame_indices=np.asarray(ann_idx) * self.annotation_stride,
            meta={"masklets": [list(n) for n in names], **meta_per_object},
        )

    def clips(self, video_ids: list[str] | None = None, rng: np.random.Generator | None = None,
              on_error: ErrorHandler | None = None) -> Iterator[VideoClip]:
        """Clips of each video cut by ``self.sampling`` (in annotated frames); objects empty in a clip are dropped.

        Each video is decoded once; masks are decoded clip by clip (a long video with dozens of auto masklets would
        need gigabytes of masks at once). A corrupt or missing video/annotation raises :class:`DataReadError`, or,
        with ``on_error``, is reported to it and skipped so a long precompute goes on. To shard, pass
        ``[v for v in ds.videos() if shard_of(v, world_size) == rank]``. ``meta['masklets'][id - 1]`` names the
        (kind, masklet id) of object ``id``.
        """
        s = self.sampling
        for vid in video_ids if video_ids is not None else self.videos():
            try:
                anns = self.annotations(vid)
                starts = clip_starts(self.num_annotated_frames(anns), s, rng)
                if not starts:
                    continue
                wanted = sorted({st + k * s.stride for st in starts for k in range(s.num_frames)})
                frames, video_fps = decode_frames(self._videos()[vid], [i * self.annotation_stride for i in wanted])
            except DataReadError as err:
                if on_error is None:
                    raise
                on_error(vid, err)
                continue
            row = {a: r for r, a in enumerate(wanted)}
            for st in starts:
                idx = [st + k * s.stride for k in range(s.num_frames)]
                try:
                    clip = self._clip(vid, anns, frames[[row[i] for i in idx]], idx, video_fps)
                except DataReadError as err:   # a corrupt RLE or a size mismatch: the rest of the video is suspect
                    if on_error is None:
                        raise
                    on_error(vid, err)
                    break
                yield clip.drop_empty_objects()


@dataclass
class SavFramesDataset:
    """SA-V val/test: extracted 24 fps JPEG frames and per-object 6 fps PNG masks, as 6 fps :class:`VideoClip` s.

    Object ``id`` is the object folder number + 1 (folder ``000`` -> id 1). Only frames with a mask file for every
    object folder are used.
    """

    root: str | Path
    split: str = "sav_val"            # the list file <root>/<split>.txt; "sav_test" for the test set
    sampling: ClipSampling = field(default_factory=ClipSampling)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / "JPEGImages_24fps").is_dir() or not (self.root / "Annotations_6fps").is_dir():
            raise FileNotFoundError(
                f"{self.root} is not an SA-V val/test folder: it needs JPEGImages_24fps/ and Annotations_6fps/ "
                "(unpack sav_val.tar / sav_test.tar from the SA-V download page there)."
            )

    def videos(self) -> list[str]:
        listing = Path(self.root) / f"{self.split}.txt"
        if listing.is_file():
            return [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        return sorted(p.name for p in (Path(self.root) / "Annotations_6fps").iterdir() if p.is_dir())

    def load_video(self, video_id: str) -> VideoClip:
        ann_dir = Path(self.root) / "Annotations_6fps" / video_id
        img_dir = Path(self.root) / "JPEGImages_24fps" / video_id
        obj_dirs = sorted(p for p in ann_dir.iterdir() if p.is_dir()) if ann_dir.is_dir() else []
        if not obj_dirs:
            raise DataReadError(f"{video_id}: no object folders in {ann_dir}")
        frame_sets = [{p.stem for p in d.glob("*.png")} for d in obj_dirs]
        stems = sorted(set.intersection(*frame_sets), key=int)
        if not stems:
            raise DataReadError(f"{video_id}: the object folders share no annotated frame")
        try:
            frames = np.stack([np.asarray(Image.open(img_dir / f"{st}.jpg").convert("RGB")) for st in stems])
            masks = np.stack([
                np.stack([_binary_png(d / f"{st}.png") for d in obj_dirs]) for st in stems
            ])
        except (OSError, ValueError) as err:
            raise DataReadError(f"{video_id}: cannot read frames or masks: {err}") from err
        if masks.shape[2:] != frames.shape[1:3]:
            raise DataReadError(f"{video_id}: mask size {masks.shape[2:]} differs from frame size {frames.shape[1:3]}")
        return VideoClip(
            frames=frames,
            masks=masks,
            object_ids=np.array([int(d.name) + 1 for d in obj_dirs]),
            fps=24.0 / ANNOTATION_STRIDE,
            name=video_id,
            source="sav-" + self.split.replace("sav_", ""),
            frame_indices=np.array([int(st) for st in stems]),
        )

    def clips(self, video_ids: list[str] | None = None, on_error: ErrorHandler | None = None
              ) -> Iterator[VideoClip]:
        """Clips cut by ``self.sampling`` in annotated (6 fps) frames; bad videos raise or go to ``on_error``."""
        for vid in video_ids if video_ids is not None else self.videos():
            try:
                whole = self.load_video(vid)
            except DataReadError as err:
                if on_error is None:
                    raise
                on_error(vid, err)
                continue
            for st in clip_starts(whole.num_frames, self.sampling):
                yield whole.sample(self.sampling.num_frames, start=st, stride=self.sampling.stride)


def _binary_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im)
    return (a.max(axis=-1) if a.ndim == 3 else a) > 0
