"""SA-V reader (SAM 2's video segmentation set, the paper's training data).

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

COCO RLE masks are decoded by :mod:`levitor.data.rle` (pycocotools after a vectorised check; straight at the
training size for a crop and resize).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from levitor.data.clip import DataReadError, ErrorHandler, VideoClip, crop_resize_frames, crop_resize_indices
from levitor.data.rle import (  # noqa: F401 - the codec's old home: `from levitor.data.sav import rle_encode`
    counts_to_string,
    parse_counts,
    rle_counts,
    rle_decode,
    rle_decode_resized,
    rle_encode,
    string_to_counts,
)
from levitor.data.sampling import ClipSampling, clip_starts

ANNOTATION_STRIDE = 4   # SA-V: masks every 4th frame of the 24 fps video (6 fps)
MASKLET_KINDS = ("manual", "auto")


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
