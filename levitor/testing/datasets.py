"""Tiny data sets in the real on-disk layouts (SA-V, DAVIS 2017), written by tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from levitor.data.davis import write_palette_png
from levitor.data.sav import rle_encode


def write_video(path: Path, frames: np.ndarray, fps: int = 24) -> None:
    """A lossless H.264 mp4 (SA-V ships mp4s)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def brightness_video(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame t is a flat grey of value 3 * t (mod 252), so decoded frames can be identified by their mean."""
    return np.stack([np.full((h, w, 3), (3 * t) % 252, np.uint8) for t in range(n)])


def write_sav(root: Path, video_id: str, n_video_frames: int = 80, h: int = 32, w: int = 48,
              with_auto: bool = True) -> list[np.ndarray]:
    """SA-V layout: mp4 + _manual.json (+ _auto.json) with per-annotated-frame lists of compressed RLEs."""
    root.mkdir(parents=True, exist_ok=True)
    write_video(root / f"{video_id}.mp4", brightness_video(n_video_frames, h, w))
    n_ann = (n_video_frames + 3) // 4
    manual = []
    for i in range(n_ann):
        a = np.zeros((h, w), bool)
        a[4:12, 4 + i % 20 : 12 + i % 20] = True
        b = np.zeros((h, w), bool)
        if i >= 3:   # appears later, as manual masklets may
            b[20:28, 30:40] = True
        manual.append([a, b])
    auto = [[np.pad(np.ones((4, 4), bool), ((0, h - 4), (w - 4, 0)))] for _ in range(n_ann)]

    def dump(kind: str, masks: list[list[np.ndarray]]) -> None:
        n_obj = len(masks[0])
        doc = {
            "video_id": video_id, "video_duration": n_video_frames / 24, "video_frame_count": float(n_video_frames),
            "video_height": float(h), "video_width": float(w), "video_resolution": float(h * w),
            "video_environment": "Indoor", "video_split": "train",
            "masklet": [[rle_encode(m) for m in frame] for frame in masks],
            "masklet_id": list(range(n_obj)), "masklet_type": [kind] * n_obj,
            "masklet_size_rel": [0.01] * n_obj, "masklet_num": n_obj,
        }
        (root / f"{video_id}_{kind}.json").write_text(json.dumps(doc))

    dump("manual", manual)
    if with_auto:
        dump("auto", auto)
    return manual


def write_textured_davis(root: Path, sequences: dict[str, int], h: int = 64, w: int = 96) -> None:
    """DAVIS 2017 layout with textured frames (so the tracker has something to follow): object 1 moves right
    by 2 px per frame, object 2 stays."""
    rng = np.random.default_rng(0)
    for name, n in sequences.items():
        img_dir, ann_dir = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        bg = ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.5) * 90 + 128
        tex = ndimage.gaussian_filter(rng.normal(size=(16, 16)), 1.0) * 90 + 128
        for t in range(n):
            img, ids = bg.copy(), np.zeros((h, w), np.uint8)
            ids[40:56, 60:84] = 2
            img[12:28, 10 + 2 * t : 26 + 2 * t] = tex
            ids[12:28, 10 + 2 * t : 26 + 2 * t] = 1
            rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            Image.fromarray(rgb).save(img_dir / f"{t:05d}.jpg", quality=98)
            write_palette_png(ann_dir / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
