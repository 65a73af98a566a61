"""Readers on tiny fixtures written in the real on-disk formats (DAVIS 2017, SA-V), and the VideoClip maths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from levitor.data.clip import DataReadError, VideoClip, center_crop_box
from levitor.data.davis import DavisDataset, davis_palette, read_palette_png, write_palette_png
from levitor.data.sampling import ClipSampling, clip_starts, shard_of
from levitor.data.sav import (
    SavDataset,
    SavFramesDataset,
    counts_to_string,
    decode_frames,
    rle_counts,
    rle_decode,
    rle_encode,
    string_to_counts,
)
from levitor.testing.datasets import brightness_video, write_sav, write_video


# ------------------------------------------------------------------------------------------- fixtures
def write_davis(root: Path, sequences: dict[str, int], h: int = 24, w: int = 40) -> None:
    """DAVIS 2017 layout: JPEG frames, palette PNG annotations, ImageSets/2017/val.txt."""
    for name, n in sequences.items():
        img_dir = root / "JPEGImages" / "480p" / name
        ann_dir = root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for t in range(n):
            frame = np.full((h, w, 3), 10 * t % 250, np.uint8)
            Image.fromarray(frame).save(img_dir / f"{t:05d}.jpg", quality=95)
            ids = np.zeros((h, w), np.uint8)
            ids[2:8, 2 + t % 10 : 8 + t % 10] = 1        # object 1 moves right
            ids[12:20, 20:30] = 2                         # object 2 still
            write_palette_png(ann_dir / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")


# ------------------------------------------------------------------------------------------------ RLE
def test_rle_hand_worked_example():
    # column-major: 0 0 0 | 1 1 0 | 0 1 0 -> runs 3, 2, 2, 1, 1; the 4th and 5th are coded as 1 - 2 = -1 -> 'O'
    mask = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 0]], bool)
    assert rle_counts(mask).tolist() == [3, 2, 2, 1, 1]
    assert rle_encode(mask) == {"size": [3, 3], "counts": "322OO"}
    np.testing.assert_array_equal(rle_decode({"size": [3, 3], "counts": "322OO"}), mask)


def test_rle_real_sav_strings():
    empty = rle_decode({"size": [848, 480], "counts": "P`]<"})     # from sav_000001_manual.json
    assert empty.shape == (848, 480) and not empty.any()
    real = ("Zeo2b0ji07J5K5M4J4M4M3M3N1N3L4L5K4N2M4L5K4L7I6K3L3N2M2O1N2N1O00001O2O0O2O0O2N100O1O100O10001O0O1O"
            "10000O1000000O100000000O100000000000000001O00000O2N2O1N2N2N100N3ZNTYO^N0c03ROnf0g1f1H8J7J8K4M4L7@idV7")
    mask = rle_decode({"size": [848, 480], "counts": real})
    assert 1000 < mask.sum() < 848 * 480 // 4
    assert rle_encode(mask)["counts"] == real                       # byte-exact round trip of real data


def test_rle_starts_with_one_and_uncompressed_counts():
    mask = np.ones((2, 3), bool)
    assert rle_counts(mask).tolist() == [0, 6]
    np.testing.assert_array_equal(rle_decode({"size": [2, 3], "counts": [0, 6]}), mask)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_rle_round_trip_random(h, w, p, seed):
    mask = np.random.default_rng(seed).random((h, w)) < p
    rle = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(rle), mask)
    assert string_to_counts(rle["counts"]).tolist() == rle_counts(mask).tolist()


def test_rle_large_counts_round_trip():
    counts = [5, 100000, 3, 2_000_000, 7, 1]
    assert string_to_counts(counts_to_string(counts)).tolist() == counts


def test_rle_corrupt_raises_with_reason():
    with pytest.raises(ValueError, match="pixels"):
        rle_decode({"size": [4, 4], "counts": "322OO"})
    with pytest.raises(ValueError, match="truncated"):
        string_to_counts("P`]")


# ------------------------------------------------------------------------------------------- VideoClip
def make_clip(t=20, h=30, w=60, n=2) -> VideoClip:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    masks = np.zeros((t, n, h, w), bool)
    masks[:, 0, 5:25, 10:50] = True      # big
    masks[:, 1, 10:15, 20:25] = True     # small, inside the big one
    return VideoClip(frames, masks, np.arange(1, n + 1), fps=24.0, name="toy", source="test")


def test_instance_map_keeps_small_objects_on_top():
    clip = make_clip()
    inst = clip.instance_map()
    assert inst.dtype == np.int64 and inst.shape == (20, 30, 60)
    assert inst[0, 12, 22] == 2 and inst[0, 6, 12] == 1 and inst[0, 0, 0] == 0
    back = VideoClip(clip.frames, inst, [1, 2], fps=24.0)
    assert back.object_masks()[:, 1].sum() == 20 * 25
    np.testing.assert_array_equal(back.instance_map(), inst)


def test_sample_and_drop_empty_objects():
    clip = make_clip()
    clip.masks[10:, 1] = False
    sub = clip.sample(4, start=12, stride=2)
    assert sub.num_frames == 4 and sub.fps == 12.0
    assert sub.frame_indices.tolist() == [12, 14, 16, 18]
    assert sub.object_ids.tolist() == [1] and sub.name == "toy@12"
    np.testing.assert_array_equal(sub.frames[1], clip.frames[14])
    with pytest.raises(ValueError, match="clip_starts"):
        clip.sample(16, start=10)


def test_center_crop_box_and_resize():
    assert center_crop_box(480, 854, 320, 512) == (0, 43, 480, 768)     # wide: 480 * 512 / 320 = 768 wide
    assert center_crop_box(848, 480, 320, 512) == (274, 0, 300, 480)    # tall source: cut top and bottom
    clip = make_clip(t=3, h=40, w=100)
    out = clip.center_crop_resize(20, 40)       # crop 40x80 (x0=10) then 2x area-downscale
    assert out.frames.shape == (3, 20, 40, 3) and out.masks.shape == (3, 2, 20, 40)
    expected = clip.frames[:, :, 10:90].reshape(3, 20, 2, 40, 2, 3).astype(float).mean(axis=(2, 4))
    assert np.abs(out.frames.astype(float) - expected).max() <= 1.0   # Pillow: fixed-point box filter
    inst = VideoClip(clip.frames, clip.instance_map(), [1, 2], fps=24.0).center_crop_resize(20, 40)
    assert inst.masks.dtype == np.int64 and set(np.unique(inst.masks)) <= {0, 1, 2}
    up = clip.center_crop_resize(80, 160)
    assert up.frames.shape == (3, 80, 160, 3) and up.masks.dtype == bool


def test_videoclip_validates_with_teaching_errors():
    clip = make_clip(t=2)
    with pytest.raises(ValueError, match="uint8"):
        VideoClip(clip.frames.astype(np.float32), clip.masks, [1, 2], fps=24)
    with pytest.raises(ValueError, match=">= 1"):
        VideoClip(clip.frames, clip.masks, [0, 1], fps=24)
    with pytest.raises(ValueError, match="object_ids"):
        VideoClip(clip.frames, clip.masks, [1], fps=24)


# -------------------------------------------------------------------------------------------- sampling
def test_clip_starts_and_shards():
    assert clip_starts(40, ClipSampling(starts="first")) == [0]
    assert clip_starts(10, ClipSampling()) == []
    assert clip_starts(50, ClipSampling(starts="all")) == [0, 16, 32]
    assert clip_starts(50, ClipSampling(starts="all", hop=8, stride=2)) == [0, 8, 16]   # span 31
    rng = np.random.default_rng(0)
    assert all(0 <= s <= 24 for s in clip_starts(40, ClipSampling(starts="random"), rng))
    names = [f"sav_{i:06d}" for i in range(2000)]
    counts = np.bincount([shard_of(n, 4) for n in names], minlength=4)
    assert counts.min() > 400


# ---------------------------------------------------------------------------------------------- DAVIS
def test_palette_png_reads_ids_not_colours(tmp_path):
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    write_palette_png(tmp_path / "m.png", ids)
    im = Image.open(tmp_path / "m.png")
    assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]     # DAVIS colour of object 1
    np.testing.assert_array_equal(read_palette_png(tmp_path / "m.png"), ids)
    assert len(davis_palette()) == 768


def test_davis_reader_sequences_and_clips(tmp_path):
    write_davis(tmp_path, {"bear": 20, "tiny": 5})
    ds = DavisDataset(tmp_path)
    assert ds.sequences() == ["bear", "tiny"]
    seq = ds.load_sequence("bear")
    assert seq.frames.shape == (20, 24, 40, 3) and seq.fps == 24.0
    assert seq.object_ids.tolist() == [1, 2] and seq.masks.shape == (20, 24, 40)
    assert seq.masks[3, 4, 2 + 3] == 1 and seq.masks[3, 15, 25] == 2
    assert abs(int(seq.frames[7].mean()) - 70) <= 2
    clips = list(ds.clips())
    assert len(clips) == 1 and clips[0].num_frames == 16 and clips[0].name == "bear@0"   # "tiny" is too short
    ds_all = DavisDataset(tmp_path, sampling=ClipSampling(num_frames=4, starts="all"))
    assert [c.name for c in ds_all.clips(["bear"])] == ["bear@0", "bear@4", "bear@8", "bear@12", "bear@16"]


def test_davis_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="DAVIS-2017"):
        DavisDataset(tmp_path / "nowhere")
    write_davis(tmp_path, {"cat": 3})
    (tmp_path / "Annotations" / "480p" / "cat" / "00001.png").unlink()
    with pytest.raises(DataReadError, match="00001.png"):
        DavisDataset(tmp_path).load_sequence("cat")


def test_davis_read_failures_name_the_file_that_failed(tmp_path):
    write_davis(tmp_path, {"cat": 3})
    annotation = tmp_path / "Annotations" / "480p" / "cat" / "00002.png"
    annotation.write_bytes(annotation.read_bytes()[:30])  # torn
    with pytest.raises(DataReadError, match=r"'cat': cannot read 00002\.png: ") as info:
        DavisDataset(tmp_path).load_sequence("cat")
    assert ".jpg" not in str(info.value)
    write_davis(tmp_path / "b", {"cat": 3})
    (tmp_path / "b" / "JPEGImages" / "480p" / "cat" / "00001.jpg").write_bytes(b"garbage")
    with pytest.raises(DataReadError, match=r"'cat': cannot read 00001\.jpg: "):
        DavisDataset(tmp_path / "b").load_sequence("cat")


# ----------------------------------------------------------------------------------------------- SA-V
def test_decode_frames_picks_exact_indices(tmp_path):
    write_video(tmp_path / "v.mp4", brightness_video(20))
    frames, fps = decode_frames(tmp_path / "v.mp4", [0, 4, 8, 12])
    assert frames.shape == (4, 32, 48, 3) and fps == 24.0
    assert [round(f.mean() / 3) for f in frames] == [0, 4, 8, 12]


def test_sav_reader_manual_and_auto(tmp_path):
    manual = write_sav(tmp_path / "sav_000", "sav_000001")
    ds = SavDataset(tmp_path, sampling=ClipSampling(num_frames=8, starts="all"))
    assert ds.videos() == ["sav_000001"]
    clip = ds.load_video("sav_000001", start=2, num_frames=8)
    assert clip.fps == 6.0 and clip.source == "sav" and clip.name == "sav_000001@8"
    assert clip.frame_indices.tolist() == [8, 12, 16, 20, 24, 28, 32, 36]
    assert [round(f.mean() / 3) for f in clip.frames] == clip.frame_indices.tolist()
    assert clip.masks.shape == (8, 3, 32, 48) and clip.object_ids.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(clip.masks[0, 0], manual[2][0])
    assert not clip.masks[0, 1].any() and clip.masks[1, 1].any()      # object 2 appears at annotated frame 3
    assert clip.meta["masklets"] == [["manual", 0], ["manual", 1], ["auto", 0]]
    clips = list(ds.clips())
    assert [c.name for c in clips] == ["sav_000001@0", "sav_000001@32"]
    assert clips[0].object_ids.tolist() == [1, 2, 3]


def test_sav_reader_manual_only_and_missing_auto(tmp_path):
    write_sav(tmp_path, "sav_000002", n_video_frames=40, with_auto=False)
    clip = SavDataset(tmp_path).load_video("sav_000002")
    assert clip.num_frames == 10 and clip.object_ids.tolist() == [1, 2]
    assert list(SavDataset(tmp_path).clips()) == []        # 10 annotated frames < 16


def test_sav_corrupt_video_and_annotation_raise_dataread(tmp_path):
    write_sav(tmp_path, "sav_000003", n_video_frames=40)
    (tmp_path / "sav_000003.mp4").write_bytes(b"not a video at all")
    ds = SavDataset(tmp_path)
    with pytest.raises(DataReadError, match="decode"):
        ds.load_video("sav_000003")
    write_sav(tmp_path / "b", "sav_000004", n_video_frames=40)
    (tmp_path / "b" / "sav_000004_manual.json").write_text("{\"masklet\": ")
    with pytest.raises(DataReadError, match="annotation"):
        SavDataset(tmp_path / "b").load_video("sav_000004")
    write_sav(tmp_path / "c", "sav_000005", n_video_frames=40)
    (tmp_path / "c" / "sav_000005_manual.json").unlink()
    with pytest.raises(DataReadError, match="manual"):
        SavDataset(tmp_path / "c").load_video("sav_000005")


def test_readers_skip_bad_items_with_on_error(tmp_path):
    write_sav(tmp_path / "sav", "sav_000010", n_video_frames=64, with_auto=False)
    write_sav(tmp_path / "sav", "sav_000011", n_video_frames=64, with_auto=False)
    write_sav(tmp_path / "sav", "sav_000012", n_video_frames=64, with_auto=False)
    (tmp_path / "sav" / "sav_000011.mp4").write_bytes(b"\x00" * 100)          # corrupt
    (tmp_path / "sav" / "sav_000012_manual.json").unlink()                    # missing annotation
    errors: list[tuple[str, Exception]] = []
    clips = list(SavDataset(tmp_path / "sav").clips(on_error=lambda name, err: errors.append((name, err))))
    assert [c.name for c in clips] == ["sav_000010@0"]
    assert [n for n, _ in errors] == ["sav_000011", "sav_000012"]
    assert all(isinstance(e, DataReadError) for _, e in errors)
    write_davis(tmp_path / "davis", {"good": 16, "bad": 16})
    (tmp_path / "davis" / "JPEGImages" / "480p" / "bad" / "00003.jpg").write_bytes(b"garbage")
    errors.clear()
    names = [c.name for c in DavisDataset(tmp_path / "davis").clips(on_error=lambda n, e: errors.append((n, e)))]
    assert names == ["good@0"] and [n for n, _ in errors] == ["bad"]


def test_clip_without_objects():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    clip = VideoClip(frames, np.zeros((3, 4, 4), np.int64), [], fps=6.0)
    assert clip.areas().shape == (3, 0) and clip.object_masks().shape == (3, 0, 4, 4)
    assert clip.sample(2, start=1).num_objects == 0


def test_mask_resize_matches_torch_nearest_exact():
    import torch

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, (2, 3, 37, 53))
    from levitor.data.clip import resize_masks

    for hw in [(20, 30), (74, 100), (37, 20)]:
        ours = resize_masks(ids, *hw)
        ref = torch.nn.functional.interpolate(torch.from_numpy(ids).double().reshape(6, 1, 37, 53), size=hw,
                                              mode="nearest-exact").reshape(2, 3, *hw).long().numpy()
        np.testing.assert_array_equal(ours, ref)
        assert ours.dtype == ids.dtype


def test_sav_corrupt_rle_in_a_later_clip_is_reported_once(tmp_path):
    write_sav(tmp_path, "sav_000020", n_video_frames=128, with_auto=False)     # 32 annotated frames: 2 clips
    path = tmp_path / "sav_000020_manual.json"
    doc = json.loads(path.read_text())
    doc["masklet"][20][0]["counts"] = "322OO"                                  # wrong pixel count
    path.write_text(json.dumps(doc))
    errors = []
    clips = list(SavDataset(tmp_path).clips(on_error=lambda n, e: errors.append((n, str(e)))))
    assert [c.name for c in clips] == ["sav_000020@0"]
    assert len(errors) == 1 and errors[0][0] == "sav_000020" and "frame 20" in errors[0][1]


def test_sav_annotated_frames_bounded_by_video_length(tmp_path):
    write_sav(tmp_path, "sav_000021", n_video_frames=40, with_auto=False)
    path = tmp_path / "sav_000021_manual.json"
    doc = json.loads(path.read_text())
    doc["video_frame_count"] = 33.0            # frames 0..32: annotated frames 0..8 are inside, frame 36 is not
    path.write_text(json.dumps(doc))
    ds = SavDataset(tmp_path)
    assert ds.num_annotated_frames(ds.annotations("sav_000021")) == 9
    assert ds.load_video("sav_000021").num_frames == 9


def test_sav_val_frames_and_per_object_pngs(tmp_path):
    vid = "sav_000100"
    (tmp_path / "sav_val.txt").write_text(vid + "\n")
    img_dir = tmp_path / "JPEGImages_24fps" / vid
    img_dir.mkdir(parents=True)
    for t in range(80):
        Image.fromarray(np.full((24, 32, 3), (3 * t) % 252, np.uint8)).save(img_dir / f"{t:05d}.jpg", quality=95)
    for obj in range(2):
        d = tmp_path / "Annotations_6fps" / vid / f"{obj:03d}"
        d.mkdir(parents=True)
        for t in range(0, 80, 4):
            m = np.zeros((24, 32), np.uint8)
            m[2 + obj * 10 : 8 + obj * 10, 3:9] = 255
            Image.fromarray(m).save(d / f"{t:05d}.png")
    ds = SavFramesDataset(tmp_path)
    assert ds.videos() == [vid]
    whole = ds.load_video(vid)
    assert whole.num_frames == 20 and whole.fps == 6.0 and whole.object_ids.tolist() == [1, 2]
    assert whole.frame_indices[:3].tolist() == [0, 4, 8] and abs(int(whole.frames[2].mean()) - 24) <= 2
    assert whole.masks.shape == (20, 2, 24, 32) and whole.masks[0, 1, 15, 5] and not whole.masks[0, 0, 15, 5]
    clips = list(ds.clips())
    assert len(clips) == 1 and clips[0].num_frames == 16 and clips[0].name == f"{vid}@0"
    with pytest.raises(FileNotFoundError, match="Annotations_6fps"):
        SavFramesDataset(tmp_path / "nope")
