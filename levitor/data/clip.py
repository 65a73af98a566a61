"""One video clip with per-object masks: the common currency of every dataset reader.

Readers (DAVIS, SA-V, ...) return a :class:`VideoClip`; precompute turns its instance map into a control signal,
training crops and resizes it, evaluation tracks points through it. Nothing here knows where a clip came from.

Masks come in one of two layouts, whichever the source stores natively (no copy is made to convert):
- ``(T, N, H, W)`` bool, one channel per object (SA-V: masklets may overlap, e.g. a person and their hand);
- ``(T, H, W)`` integer instance map, pixel value = object id, 0 = background (DAVIS palette PNGs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from levitor._util.images import center_crop_box
from levitor.defaults import NUM_FRAMES

ErrorHandler = Callable[[str, "DataReadError"], None]
"""Called with (item name, error) when a reader skips a bad item instead of stopping; e.g. log and count it."""


class DataReadError(RuntimeError):
    """A video or annotation could not be read (missing, truncated, corrupt, inconsistent).

    Readers raise this, and only this, for problems with one item of a data set, so a long precompute run can catch
    it, log the item and move on, while programming errors (TypeError, ...) still stop the run.
    """


@dataclass
class VideoClip:
    """Frames and per-object masks of one clip.

    frames: (T, H, W, 3) uint8 RGB.
    masks: (T, N, H, W) bool, one channel per entry of ``object_ids``; or (T, H, W) integer instance map whose
        non-zero values are object ids.
    object_ids: (N,) the id of each object, all >= 1 (0 is the background in instance maps).
    fps: frame rate of ``frames`` (after any temporal subsampling, e.g. 6 for SA-V's annotated frames).
    name: a unique, human-readable id (``"bear"``, ``"sav_000001"``), with the start frame once sampled.
    source: the data set (``"davis2017"``, ``"sav"``, ...).
    frame_indices: (T,) index of each frame in the source video, for provenance.
    meta: free-form per-source facts (e.g. SA-V masklet ids and types), JSON-serialisable.
    """

    frames: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    fps: float
    name: str = ""
    source: str = ""
    frame_indices: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        self.masks = np.asarray(self.masks)
        self.object_ids = np.asarray(self.object_ids, dtype=np.int64).reshape(-1)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8 RGB, got {self.frames.shape} {self.frames.dtype}. "
                "Convert grey or RGBA frames to RGB and scale floats to 0..255 first."
            )
        t, h, w = self.frames.shape[:3]
        if self.masks.ndim == 4:
            if self.masks.dtype != np.bool_:
                raise ValueError(f"(T, N, H, W) masks must be bool, got {self.masks.dtype}")
            if self.masks.shape != (t, len(self.object_ids), h, w):
                raise ValueError(
                    f"masks must be (T, N, H, W) = {(t, len(self.object_ids), h, w)} to match frames and "
                    f"object_ids, got {self.masks.shape}"
                )
        elif self.masks.ndim == 3:
            if not np.issubdtype(self.masks.dtype, np.integer):
                raise ValueError(f"an instance map must be an integer array, got {self.masks.dtype}")
            if self.masks.shape != (t, h, w):
                raise ValueError(f"instance map must be (T, H, W) = {(t, h, w)}, got {self.masks.shape}")
        else:
            raise ValueError(
                f"masks must be (T, N, H, W) bool or a (T, H, W) instance map, got shape {self.masks.shape}"
            )
        if np.any(self.object_ids < 1):
            raise ValueError(f"object ids must be >= 1 (0 is the background), got {self.object_ids.tolist()}")
        if len(np.unique(self.object_ids)) != len(self.object_ids):
            raise ValueError(f"object ids must be unique, got {self.object_ids.tolist()}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.frame_indices is None:
            self.frame_indices = np.arange(t, dtype=np.int64)
        self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64)
        if self.frame_indices.shape != (t,):
            raise ValueError(f"frame_indices must be ({t},), got {self.frame_indices.shape}")

    # ------------------------------------------------------------------ views
    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def num_objects(self) -> int:
        return int(len(self.object_ids))

    def object_masks(self) -> np.ndarray:
        """(T, N, H, W) bool, channel n is ``object_ids[n]`` (a view when stored that way)."""
        if self.masks.ndim == 4:
            return self.masks
        return self.masks[:, None] == self.object_ids[None, :, None, None]

    def instance_map(self) -> np.ndarray:
        """(T, H, W) int64 instance map, 0 = background.

        Overlapping masks (SA-V allows a hand inside its person) are resolved by painting objects from the largest
        (summed over the clip) to the smallest, so small parts stay visible and get their own control points.
        """
        if self.masks.ndim == 3:
            return self.masks.astype(np.int64, copy=False)
        out = np.zeros((self.num_frames, self.height, self.width), dtype=np.int64)
        areas = self.masks.sum(axis=(0, 2, 3))
        for n in np.argsort(-areas, kind="stable"):
            out[self.masks[:, n]] = self.object_ids[n]
        return out

    def areas(self) -> np.ndarray:
        """(T, N) pixel count of each object in each frame."""
        if self.masks.ndim == 4:
            return self.masks.sum(axis=(2, 3))
        out = np.zeros((self.num_frames, self.num_objects), np.int64)
        for n, i in enumerate(self.object_ids):
            out[:, n] = (self.masks == i).sum(axis=(1, 2))
        return out

    # ------------------------------------------------------------ transforms
    def sample(self, num_frames: int = NUM_FRAMES, start: int = 0, stride: int = 1) -> VideoClip:
        """``num_frames`` frames from ``start``, every ``stride``-th (fps divided by ``stride``).

        Objects absent from every sampled frame are dropped, so a clip never carries empty objects.
        """
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {num_frames} and {stride}")
        stop = start + (num_frames - 1) * stride + 1
        if start < 0 or stop > self.num_frames:
            raise ValueError(
                f"clip {self.name!r} has {self.num_frames} frames; cannot take {num_frames} frames with stride "
                f"{stride} from frame {start} (needs frames {start}..{stop - 1}). Use a smaller start or "
                "levitor.data.sampling.clip_starts() to list valid starts."
            )
        idx = slice(start, stop, stride)
        clip = replace(
            self,
            frames=self.frames[idx],
            masks=self.masks[idx],
            fps=self.fps / stride,
            name=f"{self.name.split('@')[0]}@{int(self.frame_indices[start])}",
            frame_indices=self.frame_indices[idx],
            meta=dict(self.meta),
        )
        return clip.drop_empty_objects()

    def drop_empty_objects(self) -> VideoClip:
        """The same clip without objects that have no pixel in any frame."""
        present = self.areas().sum(axis=0) > 0
        if present.all():
            return self
        keep_ids = self.object_ids[present]
        if self.masks.ndim == 4:
            masks = self.masks[:, present]
        else:
            masks = self.masks
        return replace(self, masks=masks, object_ids=keep_ids, meta=dict(self.meta))

    def center_crop_resize(self, height: int, width: int) -> VideoClip:
        """Centre-crop to the aspect ratio ``width / height``, then resize to exactly ``height`` x ``width``.

        As in the paper's training data: no padding and no distortion. Frames are resized with area averaging
        when shrinking (no aliasing on the 2-4x downscales of SA-V) and bilinear when enlarging; masks with nearest
        neighbour, so ids are never blended into ids that do not exist.
        """
        if height < 1 or width < 1:
            raise ValueError(f"target size must be positive, got {height}x{width}")
        y0, x0, ch, cw = center_crop_box(self.height, self.width, height, width)
        frames = self.frames[:, y0 : y0 + ch, x0 : x0 + cw]
        masks = self.masks[..., y0 : y0 + ch, x0 : x0 + cw]
        return replace(
            self,
            frames=resize_frames(frames, height, width),
            masks=resize_masks(masks, height, width),
            meta=dict(self.meta),
        )


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8: box (area) filter when shrinking, bilinear otherwise.

    Pillow per frame: about 10x faster than torch's adaptive pooling at the non-integer ratios of real data
    (480 x 768 -> 320 x 512), and exact area averaging for any ratio.
    """
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(frames)
    resample = Image.Resampling.BOX if height <= h and width <= w else Image.Resampling.BILINEAR
    out = np.empty((t, height, width, 3), np.uint8)
    for i in range(t):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(frames[i])).resize((width, height), resample))
    return out


def crop_resize_indices(h: int, w: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the source pixels that :meth:`VideoClip.center_crop_resize` keeps for masks (a centre crop to
    the target aspect, then nearest-neighbour at pixel centres), so a reader can decode only those."""
    y0, x0, ch, cw = center_crop_box(h, w, height, width)
    rows = y0 + np.minimum(((np.arange(height) + 0.5) * (ch / height)).astype(np.int64), ch - 1)
    cols = x0 + np.minimum(((np.arange(width) + 0.5) * (cw / width)).astype(np.int64), cw - 1)
    return rows, cols


def crop_resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames centre-cropped to the target aspect and resized, as center_crop_resize does."""
    y0, x0, ch, cw = center_crop_box(frames.shape[1], frames.shape[2], height, width)
    return resize_frames(frames[:, y0 : y0 + ch, x0 : x0 + cw], height, width)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (..., H, W) bool masks or integer maps, keeping the dtype.

    Pixel-centre sampling (as torch's 'nearest-exact'): output pixel i reads input pixel floor((i + 0.5) * in / out).
    Done by fancy indexing, so it needs no float copy (SA-V: 16 frames x dozens of masklets x 848 x 480).
    """
    h, w = masks.shape[-2:]
    if (h, w) == (height, width):
        return np.ascontiguousarray(masks)
    yi = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.int64), h - 1)
    xi = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.int64), w - 1)
    return np.ascontiguousarray(masks[..., yi[:, None], xi[None, :]])
