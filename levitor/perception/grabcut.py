"""Box -> mask without any weights: OpenCV's GrabCut (``cv2.grabCut``), the classic interactive segmenter.

A box drawn around an object is enough on most photos: GrabCut models the colours inside and outside the box
with Gaussian mixtures and cuts along the strongest edges between them. On a textured photo it is far better
than a flood fill, which stops at every change of fur colour. Optional strokes (``foreground`` /
``background`` pixels the user marked) refine the cut.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from levitor._util.images import as_rgb_uint8

DEFAULT_ITERATIONS = 3  # the cut barely changes after 3 iterations on photos
MIN_BOX_SIDE = 4  # pixels: a smaller box is a click, not a box
EDGE_SNAP = 8  # pixels: a box side this close to the image's edge means "to the edge" (the object is cut off
               # there); a thin strip left outside would teach GrabCut that the object's own colours are background
MARGIN = 0.15  # the background model learns from a ring this wide (of the box's larger side) around the box ...
MAX_WORK_PIXELS = 24_000  # ... and the cut runs on at most this many pixels: GrabCut costs ~1 s per iteration
                          # on a whole 512x320 photo on a 2-core CPU, ~0.1 s on this budget


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - the widgets extra installs it
        raise ImportError("the box tool needs OpenCV: pip install opencv-python-headless "
                          "(it is part of levitor[widgets])") from e
    return cv2


def normalise_box(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in any corner order -> integer (x0, y0, x1, y1) inside the image, x0 < x1, y0 < y1;
    sides within EDGE_SNAP pixels of the image's edge go to the edge."""
    if len(box) != 4 or not np.all(np.isfinite(np.asarray(box, dtype=np.float64))):
        raise ValueError(f"box must be four finite numbers (x0, y0, x1, y1) in pixels, got {box!r}")
    height, width = int(shape[0]), int(shape[1])
    xa, ya, xb, yb = (float(v) for v in box)
    x0, x1 = sorted((int(np.clip(round(xa), 0, width)), int(np.clip(round(xb), 0, width))))
    y0, y1 = sorted((int(np.clip(round(ya), 0, height)), int(np.clip(round(yb), 0, height))))
    x0, y0 = (0 if x0 <= EDGE_SNAP else x0), (0 if y0 <= EDGE_SNAP else y0)
    x1, y1 = (width if x1 >= width - EDGE_SNAP else x1), (height if y1 >= height - EDGE_SNAP else y1)
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise ValueError(f"the box {box!r} is {x1 - x0}x{y1 - y0} pixels inside the image; drag a box of at least "
                         f"{MIN_BOX_SIDE}x{MIN_BOX_SIDE} pixels around the object")
    return x0, y0, x1, y1


def grabcut_mask(
    image,
    box,
    iterations: int = DEFAULT_ITERATIONS,
    foreground: np.ndarray | None = None,
    background: np.ndarray | None = None,
    largest_component: bool = True,
) -> np.ndarray:
    """The object inside ``box`` ((x0, y0, x1, y1) pixels) -> (H, W) bool.

    foreground / background: optional (H, W) bool strokes that are surely object / surely not (inside the box).
    largest_component: keep the biggest connected piece (with its holes filled), which is what an object mask
    wants; GrabCut can leave specks of similar colour elsewhere in the box.
    Raises ValueError when the box is too small or the cut finds nothing (then draw a tighter box or add strokes).
    """
    cv2 = _cv2()
    rgb = as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = normalise_box(box, (height, width))
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    mask = np.full((height, width), cv2.GC_BGD, np.uint8)
    mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
    for name, strokes, value in (("foreground", foreground, cv2.GC_FGD), ("background", background, cv2.GC_BGD)):
        if strokes is not None:
            s = np.asarray(strokes, dtype=bool)
            if s.shape != (height, width):
                raise ValueError(f"{name} has shape {s.shape}, but the image is {(height, width)}")
            mask[s] = value
    # work on the box plus a ring of background around it, shrunk to MAX_WORK_PIXELS
    m = int(round(MARGIN * max(x1 - x0, y1 - y0))) + 4
    cx0, cy0, cx1, cy1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, width), min(y1 + m, height)
    crop_rgb, crop_mask = rgb[cy0:cy1, cx0:cx1], mask[cy0:cy1, cx0:cx1]
    ch, cw = crop_mask.shape
    f = min(1.0, float(np.sqrt(MAX_WORK_PIXELS / (ch * cw))))
    sw, sh = max(int(round(cw * f)), 8), max(int(round(ch * f)), 8)
    work_rgb = cv2.resize(crop_rgb, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else crop_rgb
    work_mask = cv2.resize(crop_mask, (sw, sh), interpolation=cv2.INTER_NEAREST) if f < 1 else crop_mask.copy()
    if not ((work_mask == cv2.GC_BGD) | (work_mask == cv2.GC_PR_BGD)).any():
        work_mask[[0, -1], :] = cv2.GC_BGD  # a box over the whole image: its edge rows stand in for the background
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(work_rgb[..., ::-1])
    cv2.setRNGSeed(0)  # the same box gives the same mask every time
    cv2.grabCut(bgr, work_mask, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    fg = ((work_mask == cv2.GC_FGD) | (work_mask == cv2.GC_PR_FGD)).astype(np.float32)
    if f < 1:
        fg = cv2.resize(fg, (cw, ch), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((height, width), bool)
    out[cy0:cy1, cx0:cx1] = fg >= 0.5
    out &= mask != cv2.GC_BGD  # outside the box only what the user marked as object
    if largest_component and out.any():
        labels, n = ndimage.label(out)
        if n > 1:
            sizes = np.bincount(labels.ravel())[1:]
            out = labels == (1 + int(np.argmax(sizes)))
        out = ndimage.binary_fill_holes(out)
    if not out.any():
        raise ValueError(f"GrabCut found no object in the box {(x0, y0, x1, y1)}; draw the box tighter around it "
                         "or mark the object with the brush")
    return out
