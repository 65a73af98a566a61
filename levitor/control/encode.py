"""ControlSignal -> the ControlNet's conditioning video, in the official release's exact layout.

The layout (one place for the model, the training data and checkpoint compatibility):

    (F, 3, H, W) float32, raw values, no normalisation:
    channel 0  HEATMAP   a Gaussian stamp per point, 0..255 (251 at the point for the default radius)
    channel 1  INSTANCE  the point's instance id where its stamp is non-zero, else 0
    channel 2  DEPTH     the point's depth value (0..255 disparity scale) where its stamp is non-zero, else 0

The stamp: a 200x200 template (Gaussian, sigma 40, centred at (100, 100), cut to the disc of radius 100,
scaled so its peak is 255, truncated to uint8), resized with OpenCV-style bilinear interpolation (uint8
fixed-point arithmetic, half-pixel centres, no antialiasing) to the point's square: columns
[x - r, x + r), rows [y - r, y + r), clipped to columns [1, W-1) and rows [1, H-1) (a clipped square
squashes the stamp instead of cropping it). Points are drawn in track order; each later point overwrites
its whole square in all three channels, zero pixels of its stamp included. Points outside the image, hidden
points and squares under one pixel are skipped. x and y are truncated to integers first.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import torch

from levitor._util.jit import numba_on
from levitor._util.threads import torch_threads
from levitor.control import kernels
from levitor.control.signal import ControlSignal

HEATMAP, INSTANCE, DEPTH = 0, 1, 2
NUM_CHANNELS = 3
GAUSSIAN_RADIUS = 10  # the release's gaussian_r: half-side of the square a point covers
TEMPLATE_SIZE = 200
TEMPLATE_SIGMA = 40.0
_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: bilinear weights in 1/2048ths


@lru_cache(maxsize=1)
def gaussian_template() -> np.ndarray:
    """The 200x200 uint8 template."""
    c = TEMPLATE_SIZE // 2
    yy, xx = np.mgrid[0:TEMPLATE_SIZE, 0:TEMPLATE_SIZE].astype(np.float64)
    d2 = (xx - c) ** 2 + (yy - c) ** 2
    g = np.exp(-d2 / (2 * TEMPLATE_SIGMA**2)) * (d2 <= c**2)
    return (g / g.max() * 255).astype(np.uint8)


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and fixed-point weights of OpenCV's INTER_LINEAR along one axis."""
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5  # half-pixel centres
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    w0 = np.round((1 - frac) * (1 << _COEF_BITS)).astype(np.int64)
    w1 = np.round(frac * (1 << _COEF_BITS)).astype(np.int64)
    edge = (i0 < 0) | (i0 >= src - 1)  # outside: replicate the border pixel
    w0[edge], w1[edge] = 1 << _COEF_BITS, 0
    i0 = np.clip(i0, 0, src - 1)
    return i0, np.minimum(i0 + 1, src - 1), w0, w1


@cache
def stamp(height: int, width: int) -> np.ndarray:
    """The template resized to ``height`` x ``width`` (uint8), bit-exact with OpenCV's uint8 INTER_LINEAR."""
    if height < 1 or width < 1:
        raise ValueError(f"stamp size must be positive, got {height}x{width}")
    t = gaussian_template().astype(np.int64)
    x0, x1, a0, a1 = _linear_taps(t.shape[1], width)
    y0, y1, b0, b1 = _linear_taps(t.shape[0], height)
    rows = t[:, x0] * a0 + t[:, x1] * a1  # horizontal pass, scaled by 2^11
    top, bottom = rows[y0], rows[y1]
    # vertical pass with OpenCV's rounding: each product pre-shifted by 4, then >> 16, then (+2) >> 2
    out = (((b0[:, None] * (top >> 4)) >> 16) + ((b1[:, None] * (bottom >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _stamp_atlas(radius: int) -> np.ndarray:
    """Every stamp a point of this radius can need: atlas[h, w, :h, :w] = stamp(h, w)."""
    n = 2 * radius
    atlas = np.zeros((n + 1, n + 1, n, n), dtype=np.float32)
    for h in range(1, n + 1):
        for w in range(1, n + 1):
            atlas[h, w, :h, :w] = stamp(h, w)
    return atlas


def encode(
    signal: ControlSignal,
    height: int | None = None,
    width: int | None = None,
    radius: int = GAUSSIAN_RADIUS,
    use_kernel: bool = True,
) -> torch.Tensor:
    """Draw the control signal as the (F, 3, H, W) float32 conditioning video (layout in the module doc).

    ``height``/``width`` default to the signal's; a different size rescales the points first.
    ``use_kernel``: draw with the compiled loop when numba is installed (the same values).
    """
    with torch_threads(1):  # small index work: threads only add hand-off cost
        return _encode(signal, height, width, radius, use_kernel)


def _encode(signal: ControlSignal, height: int | None, width: int | None, radius: int,
            use_kernel: bool) -> torch.Tensor:
    H = signal.height if height is None else int(height)
    W = signal.width if width is None else int(width)
    if H < 3 or W < 3:
        raise ValueError(f"conditioning size must be at least 3x3, got {H}x{W}")
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    if (H, W) != (signal.height, signal.width):
        signal = signal.scaled_to(H, W)
    F, P = signal.num_frames, signal.num_points
    out = torch.zeros(F, NUM_CHANNELS, H, W, dtype=torch.float32)
    if P == 0:
        return out

    pts = signal.points.detach().cpu().to(torch.float64)
    finite = torch.isfinite(pts).all(-1)
    x = torch.where(finite, pts[..., 0], torch.full_like(pts[..., 0], -1)).trunc().to(torch.int64)
    y = torch.where(finite, pts[..., 1], torch.full_like(pts[..., 1], -1)).trunc().to(torch.int64)
    keep = signal.visible.cpu() & finite & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    c0, c1 = (x - radius).clamp(1, W - 1), (x + radius).clamp(1, W - 1)  # half-open, clipped
    r0, r1 = (y - radius).clamp(1, H - 1), (y + radius).clamp(1, H - 1)
    keep &= (c1 > c0) & (r1 > r0)
    f_idx, p_idx = torch.nonzero(keep, as_tuple=True)  # frame-major, then track order: the drawing order
    if f_idx.numel() == 0:
        return out
    if use_kernel and numba_on():  # the same drawing as a compiled loop over points
        kernels.draw_stamps(
            out.numpy(), f_idx.numpy(), p_idx.numpy(), r0[f_idx, p_idx].numpy(), r1[f_idx, p_idx].numpy(),
            c0[f_idx, p_idx].numpy(), c1[f_idx, p_idx].numpy(), _stamp_atlas(radius),
            signal.instance.cpu().to(torch.float32).numpy(), signal.depth.detach().cpu().to(torch.float32).numpy(),
        )
        return out

    h = (r1 - r0)[f_idx, p_idx]
    w = (c1 - c0)[f_idx, p_idx]
    flats, stamps, owners = [], [], []
    for hh, ww in torch.unique(torch.stack([h, w], 1), dim=0).tolist():
        sel = torch.nonzero((h == hh) & (w == ww)).squeeze(1)
        st = torch.from_numpy(stamp(hh, ww).astype(np.float32)).reshape(-1)
        dy, dx = torch.meshgrid(torch.arange(hh), torch.arange(ww), indexing="ij")
        f, p = f_idx[sel], p_idx[sel]
        base = (f * H + r0[f, p]) * W + c0[f, p]
        flats.append((base[:, None] + (dy * W + dx).reshape(-1)[None]).reshape(-1))
        stamps.append(st.repeat(sel.numel()))
        owners.append(sel.repeat_interleave(hh * ww))
    flat, value, owner = torch.cat(flats), torch.cat(stamps), torch.cat(owners)
    # the last point drawn over a pixel owns it (its whole square, zero stamp pixels included)
    owner32 = owner.to(torch.int32)
    last = torch.full((F * H * W,), -1, dtype=torch.int32).scatter_reduce_(0, flat, owner32, "amax")
    mine = torch.nonzero(owner32 == last[flat]).squeeze(1)
    flat, value, owner = flat[mine], value[mine], owner[mine]
    on = (value > 0).to(torch.float32)
    ids = signal.instance.cpu().to(torch.float32)[p_idx[owner]]
    dep = signal.depth.cpu().to(torch.float32)[f_idx[owner], p_idx[owner]]
    hw = H * W
    frame = flat // hw
    base = frame * (NUM_CHANNELS * hw) + (flat - frame * hw)  # index into (F, C, H*W)
    o = out.view(-1)
    o[base + HEATMAP * hw] = value
    o[base + INSTANCE * hw] = ids * on
    o[base + DEPTH * hw] = dep * on
    return out
