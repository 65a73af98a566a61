"""The synthetic 3D world: deterministic, consistent masks/depth/occlusion, perspective, DAVIS layout."""

import numpy as np
import pytest
import torch

from levitor.data.synthetic import (
    PALETTE,
    SyntheticConfig,
    generate_clip,
    sprite_silhouette,
    write_davis_layout,
)

SMALL = SyntheticConfig(height=32, width=48, num_frames=6)


def test_same_seed_same_clip_and_seeds_differ():
    a, b, c = generate_clip(11, SMALL), generate_clip(11, SMALL), generate_clip(12, SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.instance, b.instance)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("size", [(24, 40, 3), (64, 64, 16)])
def test_any_size_and_layout(size):
    H, W, F = size
    clip = generate_clip(5, SyntheticConfig(height=H, width=W, num_frames=F))
    assert clip.frames.shape == (F, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.instance.shape == (F, H, W) and clip.depth.shape == (F, H, W)
    assert np.isfinite(clip.depth).all()
    assert (clip.depth > 0).all() and (clip.depth <= 1).all()  # the scene convention: (0, 1], smaller = nearer
    assert set(np.unique(clip.instance)) <= {0, *clip.object_ids}
    assert 1 <= len(clip.sprites) <= 4


def test_masks_match_depth_order():
    """A sprite is visible exactly where its silhouette is and nothing nearer covers it."""
    checked = 0
    for seed in range(12):
        clip = generate_clip(seed, SMALL)
        _, H, W = clip.instance.shape
        for sp in clip.sprites:
            sil = sprite_silhouette(sp, H, W)
            vis = clip.instance == sp.id
            assert not (vis & ~sil).any()  # never visible outside its own shape
            z = sp.world[:, 2][:, None, None]
            np.testing.assert_allclose(clip.depth[vis], np.broadcast_to(z, vis.shape)[vis], rtol=1e-6)
            hidden = sil & ~vis  # inside its shape but not visible: something nearer is there
            assert (clip.depth[hidden] <= np.broadcast_to(z, hidden.shape)[hidden] + 1e-7).all()
            checked += int(hidden.sum())
    assert checked > 0  # the seeds above include occlusions


def test_pass_behind_front_hides_behind():
    cfg = SyntheticConfig(height=48, width=48, num_frames=8, min_sprites=2, max_sprites=2, pass_behind_prob=1.0)
    n_overlap = 0
    for seed in range(6):
        clip = generate_clip(seed, cfg)
        (front_id, behind_id), = clip.pairs
        front, behind = clip.sprites[front_id - 1], clip.sprites[behind_id - 1]
        assert behind.world[:, 2].min() > front.world[:, 2].max()  # behind is farther all the time
        overlap = sprite_silhouette(front, 48, 48) & sprite_silhouette(behind, 48, 48)
        assert (clip.instance[overlap] == front_id).all()
        n_overlap += int(overlap.sum())
    assert n_overlap > 0


def test_sizes_grow_when_approaching():
    cfg = SyntheticConfig(height=64, width=64, num_frames=8, min_sprites=1, max_sprites=1, leave_prob=0.0)
    found = 0
    for seed in range(40):
        clip = generate_clip(seed, cfg)
        sp = clip.sprites[0]
        if sp.kind != "approach":
            continue
        assert sp.radius[-1] > 1.5 * sp.radius[0]
        assert sp.screen[-1, 2] > sp.screen[0, 2]  # disparity up = nearer
        sil = sprite_silhouette(sp, 64, 64)
        border = sil[:, 0].any(-1) | sil[:, -1].any(-1) | sil[:, :, 0].any(-1) | sil[:, :, -1].any(-1)
        if border[0] or border[-1]:
            continue  # partly out of the frame: its visible area may shrink
        area = clip.areas()[:, 0]
        assert area[-1] > 1.5 * area[0]
        found += 1
    assert found >= 2


def test_colours_are_the_palette_and_flat_without_texture():
    clip = generate_clip(3, SyntheticConfig(height=32, width=32, num_frames=2, texture=0.0))
    for sp in clip.sprites:
        assert any((np.array(sp.color) == p).all() for p in PALETTE)
        pix = clip.frames[clip.instance == sp.id].astype(float)
        if len(pix):
            assert np.abs(pix - np.array(sp.color)).max() < 0.2 * 255  # only the mild radial shading


def test_control_signal_from_synthetic_masks():
    from levitor.control.points import control_from_masks

    clip = generate_clip(2, SyntheticConfig(height=32, width=32, num_frames=4, min_sprites=2, max_sprites=2))
    sig = control_from_masks(torch.from_numpy(clip.instance), torch.from_numpy(clip.depth),
                             moved_ids=clip.moved_ids, sample_stride=1)
    assert set(sig.points_per_object()) <= set(clip.object_ids)
    xy = sig.points[sig.visible].round().long()
    ids = sig.instance[None].expand_as(sig.visible)[sig.visible]
    f = torch.nonzero(sig.visible)[:, 0]
    inside = clip.instance[f, xy[:, 1].clamp(0, 31), xy[:, 0].clamp(0, 31)]
    assert (torch.from_numpy(inside) == ids).float().mean() > 0.8  # K-means centres lie on their object


def test_davis_layout_round_trip(tmp_path):
    from levitor.data.davis import DavisDataset

    cfg = SyntheticConfig(height=32, width=32, num_frames=4)
    names = write_davis_layout(tmp_path, [1, 2], cfg)
    ds = DavisDataset(tmp_path, split="train")
    assert ds.sequences() == names
    seq = ds.load_sequence(names[0])
    clip = generate_clip(1, cfg)
    np.testing.assert_array_equal(seq.masks, clip.instance)
    assert np.abs(seq.frames.astype(int) - clip.frames).mean() < 8  # JPEG
    disp = np.load(tmp_path / "Depth" / f"{names[0]}.npy")
    np.testing.assert_allclose(1.0 / np.maximum(disp, 1), clip.depth, rtol=0.1)
