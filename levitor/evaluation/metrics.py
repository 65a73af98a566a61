"""Evaluation metrics of the paper: FID (frames), FVD (videos), ObjMC (trajectory following).

FID and FVD are the Fréchet distance between Gaussians fitted to features of real and generated samples. The
feature extractor is pluggable (:class:`FeatureExtractor`); the numbers are only comparable to published ones with
the standard networks, loaded from local files because nothing is downloaded at run time:

- FID: the TorchScript Inception-v3 of the TF FID release, ``inception-2015-12-05.pt`` (as used by
  StyleGAN2-ADA's metrics; called as ``net(images_uint8_nchw, return_features=True)`` -> 2048-d pool features).
- FVD: the TorchScript I3D (Kinetics-400) ``i3d_torchscript.pt`` used by the common PyTorch FVD ports
  (StyleGAN-V, fvd-comparison; called as ``net(videos_nc_t_224_224_in_-1_1, rescale=False, resize=False,
  return_features=True)`` -> 400-d logits features).

Put them in ``$LEVITOR_HOME/eval/`` (``LEVITOR_HOME`` defaults to ``~/.cache/levitor``).

Statistics are accumulated in float64 with a streaming, mergeable estimator (:class:`FeatureStats`), so a sharded
evaluation saves one small file per worker and merges them exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from levitor.weights import resolve_file

FVD_SIZE = 224        # I3D's input resolution


# ------------------------------------------------------------------------------------- Fréchet distance
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

    The trace term uses tr((S1 S2)^(1/2)) = tr((A S2 A)^(1/2)) with A = S1^(1/2): both factors are symmetric PSD, so
    eigh gives real, clipped-at-zero eigenvalues even when the covariances are singular (fewer samples than feature
    dimensions, as with 2048-d Inception features on a few hundred DAVIS frames), where a general sqrtm of S1 S2
    returns complex noise. Mathematically identical to the usual ``scipy.linalg.sqrtm`` formula.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}; "
            "both Gaussians must live in the same feature space (same extractor)"
        )
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} has non-finite entries: were features NaN, or was it built from < 2 samples?")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2   # remove round-off asymmetry before eigh
    a = _psd_sqrt(s1)
    m = a @ s2 @ a
    eig = scipy.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)   # tiny negative values are round-off of identical distributions


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


# --------------------------------------------------------------------------------------- statistics
@dataclass
class FeatureStats:
    """Running mean and covariance of feature vectors (Chan et al.'s parallel update, float64).

    Keeps (count, mean, sum of centred outer products) instead of raw sums: the textbook
    ``E[xx^T] - mu mu^T`` loses all precision when features have a large mean relative to their spread.
    """

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None)    # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.dim, np.float64)
        if self.m2 is None:
            self.m2 = np.zeros((self.dim, self.dim), np.float64)

    def update(self, feats: np.ndarray | torch.Tensor) -> FeatureStats:
        """Add a batch of (B, D) features; returns self for chaining."""
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().double().numpy()
        x = np.asarray(feats, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (B, {self.dim}), got {x.shape}")
        if len(x) == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise ValueError("features contain NaN or inf: check the extractor's input range and dtype")
        mb = x.mean(axis=0)
        xc = x - mb
        self._merge(len(x), mb, xc.T @ xc)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another shard's statistics (exact: same result as one pass over all features)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d ones")
        if other.count:
            self._merge(other.count, other.mean, other.m2)
        return self

    def _merge(self, nb: int, mb: np.ndarray, m2b: np.ndarray) -> None:
        na = self.count
        n = na + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + np.outer(delta, delta) * (na * nb / n)
        self.count = n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (ddof=1), as ``np.cov(x, rowvar=False)`` and the reference FID code."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 samples, have {self.count}")
        return self.m2 / (self.count - 1)

    def save(self, path: str | Path) -> None:
        """Write to ``.npz`` (one small file per evaluation shard)."""
        np.savez(path, dim=self.dim, count=self.count, mean=self.mean, m2=self.m2)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as z:
            return cls(dim=int(z["dim"]), count=int(z["count"]), mean=z["mean"].copy(), m2=z["m2"].copy())

    @classmethod
    def of(cls, feats: np.ndarray | torch.Tensor) -> FeatureStats:
        feats = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        return cls(dim=int(feats.shape[1])).update(feats)


def frechet_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)


def _as_stats(x: FeatureStats | np.ndarray | torch.Tensor) -> FeatureStats:
    return x if isinstance(x, FeatureStats) else FeatureStats.of(x)


def fid(real_feats: FeatureStats | np.ndarray, fake_feats: FeatureStats | np.ndarray) -> float:
    """FID from Inception features (B, 2048) of real and generated frames, or their :class:`FeatureStats`."""
    return frechet_from_stats(_as_stats(real_feats), _as_stats(fake_feats))


def fvd(real_feats: FeatureStats | np.ndarray, fake_feats: FeatureStats | np.ndarray) -> float:
    """FVD from I3D features (B, 400) of real and generated 16-frame clips, or their :class:`FeatureStats`.

    Same maths as FID; kept separate so call sites say which features they pass.
    """
    return frechet_from_stats(_as_stats(real_feats), _as_stats(fake_feats))


# ----------------------------------------------------------------------------------------- extractors
@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images (B, H, W, 3) uint8 (kind 'image') or videos (B, T, H, W, 3) uint8 (kind 'video') to (B, dim)."""

    name: str
    dim: int
    kind: Literal["image", "video"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def _load_torchscript(path: Path, what: str) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            # the standard FID/FVD networks only exist as TorchScript; torch's deprecation notice is not actionable
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as err:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:  # any failure here means "not a checkpoint either"
            obj = None
        if isinstance(obj, dict):
            raise ValueError(
                f"{path} is a state dict, not a TorchScript module, so the {what} architecture is unknown. Build "
                f"the network yourself, load the state dict into it, and pass it as module=... ."
            ) from err
        raise ValueError(
            f"{path} is neither a TorchScript module nor a state dict ({err}). Re-download the {what} file; "
            "a partial download is the usual cause."
        ) from err


_Net = TypeVar("_Net", bound="_TorchScriptFeatures")


@dataclass
class _TorchScriptFeatures:
    """A feature network held as TorchScript, found or downloaded by levitor.weights under ``WEIGHTS``."""

    WEIGHTS: ClassVar[str]  # the file's name in levitor.weights
    NETWORK: ClassVar[str]  # its name in error messages

    module: torch.nn.Module
    device: str = "cpu"

    @classmethod
    def load(cls: type[_Net], path: str | Path | None = None, device: str = "cpu",
             allow_download: bool = True) -> _Net:
        """The network from ``path``, or levitor.weights' file (downloaded unless ``allow_download`` is False); for
        smoke tests without weights use RandomConvFeatures (meaningless numbers)."""
        path = resolve_file(path or cls.WEIGHTS, allow_download=allow_download)
        return cls(module=_load_torchscript(path, cls.NETWORK).to(device), device=device)


@dataclass
class InceptionFeatures(_TorchScriptFeatures):
    """2048-d pool features of the FID Inception-v3 (TorchScript of StyleGAN2-ADA's metrics), for FID."""

    WEIGHTS: ClassVar[str] = "inception"
    NETWORK: ClassVar[str] = "Inception"

    name: str = "inception-2015-12-05"
    dim: int = 2048
    kind: Literal["image", "video"] = "image"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _check_uint8(images, 4, "images (B, H, W, 3)")
        x = x.permute(0, 3, 1, 2).to(self.device)            # the network takes uint8 NCHW and resizes itself
        return self.module(x, return_features=True).float().cpu()


@dataclass
class I3DFeatures(_TorchScriptFeatures):
    """I3D (Kinetics-400) features of 16-frame clips (the TorchScript of StyleGAN-V's FVD), for FVD."""

    WEIGHTS: ClassVar[str] = "i3d"
    NETWORK: ClassVar[str] = "I3D"

    name: str = "i3d-kinetics400"
    dim: int = 400
    kind: Literal["image", "video"] = "video"

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        x = _check_uint8(videos, 5, "videos (B, T, H, W, 3)")
        b, t, h, w, _ = x.shape
        # resize each frame to 224 x 224 and scale to [-1, 1], then (B, 3, T, H, W): the FVD ports' convention
        x = x.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(FVD_SIZE, FVD_SIZE), mode="bilinear", align_corners=False)
        x = (x / 127.5 - 1.0).reshape(b, t, 3, FVD_SIZE, FVD_SIZE).permute(0, 2, 1, 3, 4).to(self.device)
        return self.module(x, rescale=False, resize=False, return_features=True).float().cpu()


@dataclass
class RandomConvFeatures:
    """A tiny fixed random conv net: FOR TESTS ONLY. Its FID/FVD numbers mean nothing and compare to nothing.

    It exercises the whole statistics pipeline on CPU in milliseconds, with the extractor interface of the real nets.
    """

    dim: int = 16
    kind: Literal["image", "video"] = "image"
    seed: int = 0
    name: str = "random-conv (test only)"
    net: torch.nn.Module = field(init=False, repr=False)

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        conv1 = torch.nn.Conv2d(3, 8, 3, stride=2)
        conv2 = torch.nn.Conv2d(8, self.dim, 3, stride=2)
        for p in (*conv1.parameters(), *conv2.parameters()):
            p.data = torch.randn(p.shape, generator=g) * 0.3
        self.net = torch.nn.Sequential(conv1, torch.nn.ReLU(), conv2, torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten()).eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_uint8(x, 4 if self.kind == "image" else 5, "input")
        if self.kind == "video":
            b, t = x.shape[:2]
            feats = self.net(x.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0)
            return feats.reshape(b, t, self.dim).mean(dim=1)   # (B, T, D) -> (B, D): a crude clip feature
        return self.net(x.permute(0, 3, 1, 2).float() / 255.0)


def _check_uint8(x: torch.Tensor | np.ndarray, ndim: int, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8 or x.ndim != ndim or x.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 RGB with {ndim} dims, got {tuple(x.shape)} {x.dtype}")
    return x


def accumulate(extractor: FeatureExtractor, batches, stats: FeatureStats | None = None) -> FeatureStats:
    """Run ``extractor`` over an iterable of uint8 batches and fold the features into (new or given) stats."""
    stats = stats or FeatureStats(dim=extractor.dim)
    for batch in batches:
        stats.update(extractor(torch.as_tensor(batch)))
    return stats


# --------------------------------------------------------------------------------------------- ObjMC
def objmc(requested: np.ndarray | torch.Tensor, recovered: np.ndarray | torch.Tensor,
          visible: np.ndarray | torch.Tensor | None = None) -> float:
    """Mean Euclidean distance (pixels) between requested and recovered tracks (F, P, 2), over visible entries.

    ``visible`` (F, P) bool selects the frame/point pairs that count (e.g. points visible in the real clip);
    all count when None. NaN if nothing is visible.
    """
    a = np.asarray(requested.detach().cpu() if isinstance(requested, torch.Tensor) else requested, np.float64)
    b = np.asarray(recovered.detach().cpu() if isinstance(recovered, torch.Tensor) else recovered, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"requested and recovered must both be (F, P, 2), got {a.shape} and {b.shape}")
    dist = np.linalg.norm(a - b, axis=-1)
    if visible is None:
        mask = np.ones(dist.shape, bool)
    else:
        mask = np.asarray(visible.detach().cpu() if isinstance(visible, torch.Tensor) else visible, bool)
        if mask.shape != dist.shape:
            raise ValueError(f"visible must be (F, P) = {dist.shape}, got {mask.shape}")
    return float(dist[mask].mean()) if mask.any() else float("nan")


# ------------------------------------------------------------------------------- mask IoU, box IoU, TrajErr
def _as_bool(masks) -> np.ndarray:
    return np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks).astype(bool)


def mask_iou(generated: np.ndarray, control: np.ndarray) -> float:
    """Mask IoU of MagicMotion's protocol (Li et al., "MagicMotion: Controllable Video Generation with
    Dense-to-Sparse Trajectory Guidance", arXiv:2503.16421, its M_IoU column on MagicBench and DAVIS): the masks of
    the generated object (segmented in the generated video; they use SAM2) against the masks the control asked for,
    |A & B| / |A | B| per object and frame, averaged over the (object, frame) pairs where either mask is non-empty.

    generated, control: (F, N, H, W) bool (N objects) or (F, H, W) for one object. NaN if every mask is empty."""
    a, b = _as_bool(generated), _as_bool(control)
    if a.shape != b.shape:
        raise ValueError(f"generated and control masks must have the same shape, got {a.shape} and {b.shape}")
    a = a.reshape(a.shape[0], -1, *a.shape[-2:]) if a.ndim == 4 else a[:, None]
    b = b.reshape(b.shape[0], -1, *b.shape[-2:]) if b.ndim == 4 else b[:, None]
    inter = (a & b).sum(axis=(2, 3))
    union = (a | b).sum(axis=(2, 3))
    keep = union > 0
    return float((inter[keep] / union[keep]).mean()) if keep.any() else float("nan")


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> (..., 4) float boxes (x0, y0, x1, y1), pixel edges (x1 exclusive); NaN for empty masks."""
    m = _as_bool(masks)
    rows, cols = m.any(axis=-1), m.any(axis=-2)
    out = np.full(m.shape[:-2] + (4,), np.nan)
    has = rows.any(axis=-1)
    h, w = m.shape[-2:]
    y0 = np.argmax(rows, axis=-1)
    y1 = h - np.argmax(rows[..., ::-1], axis=-1)
    x0 = np.argmax(cols, axis=-1)
    x1 = w - np.argmax(cols[..., ::-1], axis=-1)
    out[has] = np.stack([x0, y0, x1, y1], axis=-1)[has]
    return out


def box_iou(generated: np.ndarray, control: np.ndarray) -> float:
    """Box IoU of MagicMotion's protocol (arXiv:2503.16421, its B_IoU column): IoU of the bounding boxes of the
    generated object's masks and of the control masks, per object and frame, averaged where both boxes exist (a
    box missing on one side counts 0). Same inputs as :func:`mask_iou`."""
    a, b = mask_boxes(generated), mask_boxes(control)
    if a.shape != b.shape:
        raise ValueError(f"generated and control masks must have the same shape, got {a.shape} and {b.shape}")
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    any_box = ~(np.isnan(a).any(1) & np.isnan(b).any(1))
    both = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    iou = np.where(both, inter / np.where(both, area(a) + area(b) - inter, 1.0), 0.0)
    return float(iou[any_box].mean()) if any_box.any() else float("nan")


def traj_err(requested: np.ndarray | torch.Tensor, recovered: np.ndarray | torch.Tensor,
             visible: np.ndarray | torch.Tensor | None, height: int, width: int) -> float:
    """A normalised trajectory error in the manner of FlexTraj's TrajErr (Zhang et al., "FlexTraj: Image-to-Video
    Generation with Flexible Point Trajectory Control", arXiv:2510.08527): the mean Euclidean distance between
    requested and recovered point tracks (as :func:`objmc`), divided by the frame diagonal, so clips of different
    resolutions compare. We could not read that paper's exact normalisation here; the diagonal is our choice and
    the table says so. ObjMC in pixels = TrajErr x sqrt(H^2 + W^2)."""
    return objmc(requested, recovered, visible) / float(np.hypot(height, width))
