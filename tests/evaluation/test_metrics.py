"""Metric maths against closed forms and numpy; extractor loading from local TorchScript files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from levitor.evaluation.metrics import (
    FeatureExtractor,
    FeatureStats,
    I3DFeatures,
    InceptionFeatures,
    RandomConvFeatures,
    accumulate,
    fid,
    frechet_distance,
    fvd,
    objmc,
)


def sqrtm_reference(mu1, s1, mu2, s2) -> float:
    """The textbook FID formula with a general matrix square root (fine for well-conditioned inputs)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_1d_closed_form():
    # N(0, 1) vs N(3, 4): 3^2 + (1 - 2)^2 = 10
    assert frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0, abs=1e-12)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    mu, s = x.mean(0), np.cov(x, rowvar=False)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    y = rng.normal(size=(50, 8)) * 2 + 1
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    d12, d21 = frechet_distance(mu, s, mu2, s2), frechet_distance(mu2, s2, mu, s)
    assert d12 == pytest.approx(d21, rel=1e-9)
    assert d12 == pytest.approx(sqrtm_reference(mu, s, mu2, s2), rel=1e-7)


def test_frechet_singular_covariances_stay_real_and_finite():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(10, 64)) + 0.5   # 10 samples, 64 dims: rank 9
    d = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert math.isfinite(d) and d > 0


def test_frechet_shape_mismatch_teaches():
    with pytest.raises(ValueError, match="same feature space"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_stats_match_numpy_with_large_offset():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(301, 6)) * 0.01 + 1e4     # big mean, small spread: the naive formula fails here
    stats = FeatureStats(dim=6)
    for chunk in np.array_split(x, 7):
        stats.update(chunk)
    assert stats.count == 301
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-12)


def test_feature_stats_merge_and_save(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 4))
    shards = [FeatureStats.of(p) for p in np.array_split(x, 3)]
    shards[0].save(tmp_path / "s0.npz")
    merged = FeatureStats.load(tmp_path / "s0.npz").merge(shards[1]).merge(shards[2]).merge(FeatureStats(dim=4))
    np.testing.assert_allclose(merged.mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(x, rowvar=False), atol=1e-12)
    with pytest.raises(ValueError, match="2 samples"):
        _ = FeatureStats.of(x[:1]).cov
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats(dim=4).update(np.full((2, 4), np.nan))


def test_fid_and_fvd_on_features():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 3))
    shift = np.array([1.0, -2.0, 0.5])
    assert fid(x, x) == pytest.approx(0.0, abs=1e-9)
    assert fid(x, x + shift) == pytest.approx((shift**2).sum(), rel=1e-9)   # translation only moves the mean
    assert fvd(FeatureStats.of(x), x * 2) == pytest.approx(
        frechet_distance(x.mean(0), np.cov(x, rowvar=False), 2 * x.mean(0), 4 * np.cov(x, rowvar=False)))


def test_objmc_known_values():
    req = np.zeros((2, 2, 2))
    rec = np.array([[[3, 4], [0, 0]], [[0, 1], [6, 8]]], float)     # distances 5, 0, 1, 10
    assert objmc(req, rec) == pytest.approx(4.0)
    vis = np.array([[True, False], [True, True]])
    assert objmc(req, rec, vis) == pytest.approx(16 / 3)
    assert math.isnan(objmc(req, rec, np.zeros((2, 2), bool)))
    assert objmc(torch.zeros(1, 1, 2), torch.ones(1, 1, 2)) == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match=r"\(F, P, 2\)"):
        objmc(np.zeros((2, 2)), np.zeros((2, 2)))


def test_random_conv_features_pipeline():
    ext = RandomConvFeatures(dim=8)
    assert isinstance(ext, FeatureExtractor)
    imgs = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    f = ext(imgs)
    assert f.shape == (6, 8)
    torch.testing.assert_close(f, RandomConvFeatures(dim=8)(imgs))   # fixed seed: deterministic
    stats = accumulate(ext, [imgs[:3], imgs[3:]])
    np.testing.assert_allclose(stats.mean, f.double().mean(0).numpy(), atol=1e-6)
    vid = RandomConvFeatures(dim=8, kind="video")(torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8))
    assert vid.shape == (2, 8)
    with pytest.raises(ValueError, match="uint8"):
        ext(imgs.float())


class _TinyInception(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8
        f = x.float().mean(dim=(2, 3))
        return torch.cat([f, f], dim=1) if return_features else f


class _TinyI3D(torch.nn.Module):
    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_extractors_load_from_local_files(tmp_path):
    torch.jit.script(_TinyInception()).save(str(tmp_path / "inc.pt"))
    torch.jit.script(_TinyI3D()).save(str(tmp_path / "i3d.pt"))
    inc = InceptionFeatures.load(tmp_path / "inc.pt")
    imgs = torch.full((2, 20, 30, 3), 100, dtype=torch.uint8)
    assert inc(imgs).shape == (2, 6) and float(inc(imgs)[0, 0]) == 100.0
    i3d = I3DFeatures.load(tmp_path / "i3d.pt")
    vids = torch.full((3, 4, 20, 30, 3), 255, dtype=torch.uint8)
    out = i3d(vids)
    assert out.shape == (3, 3) and torch.allclose(out, torch.ones(3, 3))   # 255 -> +1 after the FVD scaling


def test_missing_or_state_dict_weights_teach(tmp_path, monkeypatch):
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        InceptionFeatures.load()
    assert str(tmp_path / "eval" / "inception-2015-12-05.pt") in str(err.value)  # the file and where it goes
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        I3DFeatures.load()
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="state dict"):
        I3DFeatures.load(tmp_path / "sd.pt")


def test_garbage_weights_file_teaches(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="Re-download"):
        InceptionFeatures.load(tmp_path / "bad.pt")


def test_mask_iou_box_iou_and_traj_err():
    from levitor.evaluation.metrics import box_iou, mask_boxes, mask_iou, traj_err

    a = np.zeros((2, 1, 10, 10), bool)
    b = np.zeros((2, 1, 10, 10), bool)
    a[:, 0, 0:4, 0:4] = True                      # 16 px
    b[:, 0, 2:6, 0:4] = True                      # 16 px, 8 shared
    assert mask_iou(a, b) == pytest.approx(8 / 24) and mask_iou(a, a) == 1.0
    assert mask_boxes(a)[0, 0].tolist() == [0, 0, 4, 4] and np.isnan(mask_boxes(np.zeros((3, 3), bool))).all()
    assert box_iou(a, b) == pytest.approx(8 / 24)
    c = b.copy()
    c[1] = False                                  # the object vanished from the generated frame 1: box IoU 0 there
    assert box_iou(a, c) == pytest.approx(8 / 24 / 2)
    req = np.zeros((3, 2, 2))
    rec = req + np.array([3.0, 4.0])              # 5 px off everywhere
    assert traj_err(req, rec, None, 6, 8) == pytest.approx(5 / 10)


def test_iou_metrics_average_over_object_frames_and_say_nan_when_empty():
    from levitor.evaluation.metrics import box_iou, mask_iou, traj_err

    gen = np.zeros((1, 3, 8, 8), bool)
    ctl = np.zeros((1, 3, 8, 8), bool)
    gen[0, 0, :4, :4] = ctl[0, 0, :4, :4] = True          # object 0: perfect
    gen[0, 1, :2, :2] = True
    ctl[0, 1, 6:, 6:] = True                              # object 1: disjoint
    # object 2 absent on both sides: not counted
    assert mask_iou(gen, ctl) == pytest.approx(0.5) and box_iou(gen, ctl) == pytest.approx(0.5)
    assert np.isnan(mask_iou(gen[:, 2:], ctl[:, 2:])) and np.isnan(box_iou(gen[:, 2:], ctl[:, 2:]))
    with pytest.raises(ValueError, match="same shape"):
        mask_iou(gen, ctl[:, :2])
    req = np.zeros((2, 2, 2))
    rec = req.copy()
    rec[:, 1] = 30.0                                      # point 1 is far off, but invisible in the real clip
    vis = np.array([[True, False], [True, False]])
    assert traj_err(req, rec, vis, 30, 40) == 0.0 and traj_err(req, rec, None, 30, 40) > 0
