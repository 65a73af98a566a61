"""DAVIS 2017 reader (semi-supervised track layout), the data set of the paper's evaluation.

On-disk layout (as unpacked from ``DAVIS-2017-trainval-480p.zip``)::

    <root>/JPEGImages/480p/<sequence>/00000.jpg, 00001.jpg, ...   RGB frames, 24 fps
    <root>/Annotations/480p/<sequence>/00000.png, ...              palette ('P') PNGs: pixel value = object id
    <root>/ImageSets/2017/train.txt, val.txt                       one sequence name per line

Object ids are 1..N within a sequence, 0 is background; 255 (only used as "void" in some derived sets) is read as
background. ``Full-Resolution`` works the same way with ``resolution="Full-Resolution"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from levitor._util.files import NotARegularFileError, check_not_special
from levitor.data.clip import DataReadError, ErrorHandler, VideoClip
from levitor.data.sampling import ClipSampling, clip_starts

DAVIS_FPS = 24.0   # DAVIS sequences were captured and released at 24 fps
VOID_ID = 255      # "don't care" label in some DAVIS-style annotations; never an object


@dataclass
class DavisDataset:
    """Sequences of one DAVIS 2017 split.

    >>> ds = DavisDataset("/data/DAVIS")        # doctest: +SKIP
    >>> for clip in ds.clips():                  # the first 16 frames of every val sequence
    ...     clip = clip.center_crop_resize(320, 512)
    """

    root: str | Path
    split: str = "val"                # a file ImageSets/2017/<split>.txt; the paper evaluates on val
    resolution: str = "480p"
    sampling: ClipSampling = field(default_factory=ClipSampling)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for sub in (self.image_dir, self.annotation_dir):
            if not sub.is_dir():
                raise FileNotFoundError(
                    f"DAVIS folder {sub} not found. Download DAVIS-2017-trainval-{self.resolution}.zip from "
                    "https://davischallenge.org/davis2017/code.html and unpack it so that "
                    f"{self.root}/JPEGImages/{self.resolution}/<sequence>/00000.jpg exists."
                )

    @property
    def image_dir(self) -> Path:
        return Path(self.root) / "JPEGImages" / self.resolution

    @property
    def annotation_dir(self) -> Path:
        return Path(self.root) / "Annotations" / self.resolution

    def sequences(self) -> list[str]:
        """Sequence names of the split, in the order of the split file (all folders if there is no split file)."""
        split_file = Path(self.root) / "ImageSets" / "2017" / f"{self.split}.txt"
        if split_file.is_file():
            names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
            return names
        if self.split not in ("", "all"):
            raise FileNotFoundError(
                f"split file {split_file} not found; use split='all' to read every folder in {self.image_dir}"
            )
        return sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())

    def __len__(self) -> int:
        return len(self.sequences())

    def load_sequence(self, name: str) -> VideoClip:
        """The whole sequence: all frames, instance map from the palette PNGs."""
        img_dir, ann_dir = self.image_dir / name, self.annotation_dir / name
        jpgs = sorted(img_dir.glob("*.jpg"))
        if not jpgs:
            raise DataReadError(f"DAVIS sequence {name!r}: no JPEG frames in {img_dir}")
        frames, maps = [], []
        for jpg in jpgs:
            png = ann_dir / (jpg.stem + ".png")
            if not png.exists():
                raise DataReadError(
                    f"DAVIS sequence {name!r}: annotation {png} is missing (frame {jpg.name}). The evaluation needs "
                    "a mask for every frame: use the trainval annotations, not test-dev's first-frame-only ones."
                )
            for path, read, into in ((jpg, _read_rgb, frames), (png, read_palette_png, maps)):
                try:
                    into.append(read(check_not_special(path, "DAVIS file")))
                except NotARegularFileError as err:
                    raise DataReadError(f"DAVIS sequence {name!r}: {err}") from None
                except (OSError, ValueError) as err:
                    raise DataReadError(f"DAVIS sequence {name!r}: cannot read {path.name}: {err}") from err
        if any(f.shape[:2] != frames[0].shape[:2] for f in frames) or any(
            m.shape != f.shape[:2] for m, f in zip(maps, frames)
        ):
            raise DataReadError(f"DAVIS sequence {name!r}: frames and masks do not all have the same size")
        instance = np.stack(maps)                 # uint8 ids: 8x less memory than int64; instance_map() widens
        instance[instance == VOID_ID] = 0
        ids = np.flatnonzero(np.bincount(instance.ravel(), minlength=256))
        return VideoClip(
            frames=np.stack(frames),
            masks=instance,
            object_ids=ids[ids > 0],
            fps=DAVIS_FPS,
            name=name,
            source="davis2017",
            frame_indices=np.array([int(p.stem) for p in jpgs], dtype=np.int64),
        )

    def clips(self, sequences: list[str] | None = None, on_error: ErrorHandler | None = None
              ) -> Iterator[VideoClip]:
        """Clips of every sequence, cut by ``self.sampling``; sequences too short for one clip are skipped.

        A sequence that cannot be read raises :class:`DataReadError`, or, with ``on_error``, is reported to it and
        skipped so the iteration goes on (a generator cannot resume after raising).
        """
        for name in sequences if sequences is not None else self.sequences():
            try:
                seq = self.load_sequence(name)
            except DataReadError as err:
                if on_error is None:
                    raise
                on_error(name, err)
                continue
            for start in clip_starts(seq.num_frames, self.sampling):
                yield seq.sample(self.sampling.num_frames, start=start, stride=self.sampling.stride)

    def __iter__(self) -> Iterator[VideoClip]:
        return self.clips()


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_palette_png(path: str | Path) -> np.ndarray:
    """(H, W) uint8 object ids of a DAVIS annotation: the palette *indices*, not the colours they show."""
    with Image.open(path) as im:
        if im.mode == "P":
            return np.array(im, dtype=np.uint8)
        if im.mode in ("L", "I", "I;16"):
            return np.array(im).astype(np.uint8)
        raise ValueError(
            f"{path} is a {im.mode} PNG; DAVIS annotations are palette ('P') PNGs whose indices are object ids. "
            "An RGB mask would need its colours mapped back to ids."
        )


def write_palette_png(path: str | Path, ids: np.ndarray) -> None:
    """Write (H, W) object ids as a palette PNG with the DAVIS colour map (for fixtures and exported masks)."""
    arr = np.ascontiguousarray(ids, dtype=np.uint8)
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    im.putpalette(davis_palette())
    im.save(path)


def davis_palette() -> list[int]:
    """The 256-colour map of DAVIS/PASCAL annotations (bit-interleaved RGB), flattened to 768 ints."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette
