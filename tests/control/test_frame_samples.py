"""K-means samples taken frame by frame (levitor.control.frame_samples) are the one-pass samples of the clip, and the
release's renderer hands every frame over as it finishes it."""

import numpy as np
import pytest
import torch

from levitor._util.jit import HAVE_NUMBA
from levitor.control import kernels
from levitor.control.frame_samples import FrameSamples

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="the frame-by-frame samples feed the compiled loops")


def _clip(rng, F=7, H=23, W=31):
    inst = np.zeros((F, H, W), np.int64)
    for f in range(F):
        for i in (1, 2, 4, 6):
            r, c = rng.integers(0, H), rng.integers(0, W)
            inst[f, max(r - 6, 0):r + int(rng.integers(0, 7)), max(c - 9, 0):c + int(rng.integers(0, 9))] = i
    inst[2, :, :] = np.where(inst[2] == 4, 0, inst[2])  # id 4 absent from frame 2
    return inst


@pytest.mark.parametrize("seed", range(5))
def test_frames_added_in_any_order_give_the_one_pass_samples_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    inst = _clip(rng)
    ids, stride = [1, 2, 4, 5], int(rng.choice([1, 3, 10]))  # 5 never appears; 6 is not asked for
    taken = FrameSamples(ids, inst.shape[0], stride)
    for f in rng.permutation(inst.shape[0]):
        assert taken.result() is None  # not every frame yet
        taken.add(int(f), inst[f])
    got = taken.result()
    areas, flat, offsets = kernels.sample_pixels(inst, ids, stride)
    assert got.ids == ids and got.stride == stride
    assert np.array_equal(got.areas, areas) and np.array_equal(got.offsets, offsets)
    assert got.flat.dtype == flat.dtype and np.array_equal(got.flat, flat)
    assert got.areas[2, 2] == 0 and got.areas[:, 3].sum() == 0


def test_the_release_renderer_hands_over_every_frame_once_with_its_final_ids(demo_scene):
    from levitor.engine import Engine, render_scene, scene_movers, scene_paths

    s = demo_scene.copy()
    eng = Engine(s, rules="release")
    inst = eng.instance_map()
    paths = scene_paths(s)
    movers = scene_movers(s, inst, paths.mover_tracks, kept_only=True)
    seen = {}
    out = render_scene(s, inst, movers, paths.camera, s.num_frames, rules="release", cache={},
                       after_frame=lambda f, ids: seen.setdefault(f, []).append(ids.copy()))
    assert sorted(seen) == list(range(s.num_frames)) and all(len(v) == 1 for v in seen.values())
    assert all(torch.equal(torch.from_numpy(seen[f][0]), out.instance[f]) for f in seen)
    # the update takes its K-means samples from the render and says so in its stages
    res = eng.update()
    assert "render_and_samples" in res.timings and "render" not in res.timings
    assert "render" in Engine(s).update().timings
