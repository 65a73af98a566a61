"""Pictures: instance overlays with control points, contact sheets, depth and conditioning channels.

Everything returns (H, W, 3) uint8 arrays (write them with PIL, show them with IPython.display, or draw them
on a canvas); videos are written by :mod:`levitor.viz.video`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from levitor._util.lazy import is_torch_tensor
from levitor.viz.colors import POINT_RADIUS, colormap, instance_colors

if TYPE_CHECKING:
    import torch

    from levitor.control.signal import ControlSignal


def depth_picture(depth: np.ndarray | torch.Tensor) -> np.ndarray:
    """Scene depth (smaller = nearer) as colours: near is warm, far is dark."""
    d = _np(depth)
    return colormap(1.0 / np.maximum(d, 1e-6), vmin=1.0, vmax=float(np.max(1.0 / np.maximum(d, 1e-6))))


def overlay(
    image: np.ndarray | torch.Tensor,
    instance: np.ndarray | torch.Tensor | None = None,
    signal: ControlSignal | None = None,
    frame: int = 0,
    alpha: float = 0.45,
    point_radius: float = POINT_RADIUS,
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """The image with instance colours blended in and the frame's control points drawn on top.

    Points are coloured like their instance and sized by depth value (nearer = larger), with a dark outline.
    colors: an (n, 3) table of RGB per instance id (e.g. the Studio's colours), where ids below n take it;
    default :func:`instance_colors`.
    """
    img = _np(image).astype(np.float64)
    if instance is not None:
        inst = _np(instance).astype(np.int64)
        colors_ = _id_colors(int(inst.max()) + 1, colors).astype(np.float64)
        tint = colors_[np.clip(inst, 0, None)]
        a = np.where(inst[..., None] > 0, alpha, 0.0)
        img = img * (1 - a) + tint * a
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if signal is not None and signal.num_points:
        draw_points(out, signal, frame, point_radius, colors)
    return np.asarray(out)


def _id_colors(n: int, table: np.ndarray | None) -> np.ndarray:
    """(n, 3) colours per instance id: ``table`` where it has a row, :func:`instance_colors` beyond it."""
    out = instance_colors(n)
    if table is not None:
        t = np.asarray(table, np.uint8).reshape(-1, 3)[:n]
        out[:len(t)] = t
    return out


def draw_points(canvas: Image.Image, signal: ControlSignal, frame: int, radius: float = POINT_RADIUS,
                colors: np.ndarray | None = None) -> None:
    """Draw one frame's visible control points onto a PIL image, in place (``colors``: as in :func:`overlay`)."""
    sx, sy = canvas.width / signal.width, canvas.height / signal.height
    colors = _id_colors(int(signal.instance.max()) + 1 if signal.num_points else 1, colors)
    draw = ImageDraw.Draw(canvas)
    pts = signal.points[frame].numpy()
    dep = signal.depth[frame].numpy()
    vis = signal.visible[frame].numpy()
    for (x, y), d, v, i in zip(pts, dep, vis, signal.instance.numpy()):
        if not v:
            continue
        r = radius * (0.7 + 0.6 * min(float(d), 255.0) / 255.0) * max(sx, sy) ** 0.5
        cx, cy = x * sx, y * sy
        draw.ellipse([cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1], fill=(20, 20, 20))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(c) for c in colors[i]))


def contact_sheet(frames: Sequence[np.ndarray] | np.ndarray, cols: int = 4, labels: Sequence[str] | None = None,
                  pad: int = 4) -> np.ndarray:
    """Tile frames (each (H, W, 3) uint8) into one picture, optionally captioned."""
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("contact_sheet needs at least one frame")
    h, w = frames[0].shape[:2]
    rows = (len(frames) + cols - 1) // cols
    cols = min(cols, len(frames))
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, f in enumerate(frames):
        r, c = divmod(k, cols)
        x, y = pad + c * (w + pad), pad + r * (h + pad)
        sheet.paste(Image.fromarray(f.astype(np.uint8)), (x, y))
        if labels is not None:
            draw.rectangle([x, y, x + 7 * len(labels[k]) + 6, y + 14], fill=(0, 0, 0))
            draw.text((x + 3, y + 2), labels[k], fill=(255, 255, 255))
    return np.asarray(sheet)


def conditioning_picture(cond: torch.Tensor, frame: int = 0) -> np.ndarray:
    """The three conditioning channels of one frame side by side: heatmap, instance ids, depth values."""
    c = _np(cond[frame]).astype(np.float64)
    heat = colormap(c[0], 0, 255)
    ids = c[1].astype(np.int64)
    inst = instance_colors(int(ids.max()) + 1)[ids]
    inst[ids == 0] = 0
    dep = colormap(c[2], 0, 255)
    dep[c[2] == 0] = 0
    heat[c[0] == 0] = 0
    return contact_sheet([heat, inst, dep], cols=3, labels=["heatmap", "instance id", "depth value"])


def loss_curve(steps: Sequence[float], losses: Sequence[float], marks: Sequence[tuple[float, str]] = (),
               smooth: int = 10, size: tuple[int, int] = (720, 360), title: str = "training loss") -> np.ndarray:
    """A training-loss chart on a log scale: raw points in light grey, a running mean over ``smooth`` log lines.

    ``marks`` draws labelled vertical lines at the given steps (a change of settings, a resumed fine-tune), so
    a jump in the loss is read against its cause. Drawn with PIL only: no plotting library is needed.
    """
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ValueError("loss_curve needs at least two logged steps with a finite, positive loss")
    w, h = size
    left, right, top, bottom = 64, 16, 28, 40
    x0, x1 = float(x.min()), float(x.max())
    ly = np.log10(y)
    y0, y1 = np.floor(ly.min() * 5) / 5, np.ceil(ly.max() * 5) / 5
    y1 = max(y1, y0 + 0.2)

    def px(xv, yv):
        u = left + (np.asarray(xv) - x0) / max(x1 - x0, 1e-12) * (w - left - right)
        v = top + (y1 - np.asarray(yv)) / (y1 - y0) * (h - top - bottom)
        return u, v

    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for e in np.arange(np.floor(y0), np.ceil(y1) + 1):           # gridlines at 1, 2, 5 x 10^e
        for m in (1, 2, 5):
            t = e + np.log10(m)
            if y0 <= t <= y1:
                _, v = px(x0, t)
                draw.line([left, v, w - right, v], fill=(225, 225, 225))
                draw.text((4, v - 6), f"{10 ** t:.3g}", fill=(90, 90, 90))
    for t in _nice_ticks(x0, x1):
        u, _ = px(t, y0)
        draw.line([u, top, u, h - bottom], fill=(240, 240, 240))
        draw.text((u - 12, h - bottom + 6), f"{t:,.0f}", fill=(90, 90, 90))
    draw.text((w // 2 - 14, h - 16), "step", fill=(60, 60, 60))
    draw.text((left, 8), title, fill=(20, 20, 20))
    u, v = px(x, ly)
    draw.point(list(zip(u.tolist(), v.tolist())), fill=(185, 185, 185))
    k = max(1, min(int(smooth), len(x)))
    mean = np.convolve(ly, np.ones(k) / k, mode="valid")
    u, v = px(x[k - 1:], mean)
    if len(u) > 1:
        draw.line(list(zip(u.tolist(), v.tolist())), fill=(31, 119, 180), width=2)
    for n, (step, label) in enumerate(marks):
        if x0 <= step <= x1:
            u, _ = px(step, y0)
            draw.line([u, top, u, h - bottom], fill=(214, 39, 40))
            draw.text((u + 3, top + 2 + 12 * (n % 3)), label, fill=(214, 39, 40))   # staggered: marks can be close
    draw.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    return np.asarray(img)


def _nice_ticks(lo: float, hi: float, target: int = 6) -> np.ndarray:
    """Round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi]."""
    raw = max(hi - lo, 1e-12) / target
    base = 10 ** np.floor(np.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)


def read_loss_log(path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) from a training ``log.jsonl`` (one JSON object a line with "step" and "loss")."""
    import json

    steps, losses = [], []
    for n, line in enumerate(open(path), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            steps.append(float(rec["step"]))
            losses.append(float(rec["loss"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {n}: not a training log record with 'step' and 'loss' ({err})") from err
    return np.asarray(steps), np.asarray(losses)


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch_tensor(x) else np.asarray(x)
