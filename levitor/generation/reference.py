"""The warped reference video and its mask, what training-free (Time-to-Move) guidance steers by, from an engine
result.

The engine already renders it: :attr:`EngineResult.color` is the image's pixels lifted to 3D, moved along the
paths and re-rendered with the z-buffer (nearer objects hide farther ones, approaching objects grow, what a moved
object uncovers is inpainted), the same render the control signal's masks come from. The mask is the pixels whose
rendered instance id is a moved object's: the moved objects where they are seen in each frame, occlusion included.
An uncovered hole never carries a moved object's id (the renderers give it an id from its surroundings), so the
mask holds only pixels a moved object was drawn on.

Cheap: the frames share the result's memory, the mask is one ``isin`` (plus a max-pool when dilated).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F


def warped_reference(result, object_ids: Iterable[int] | None = None, dilate: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(frames, mask) for TTM guidance from an :class:`~levitor.engine.EngineResult`.

    object_ids: the instance ids whose pixels are pinned; default every selected object (``result.object_ids``;
        an object whose mask was dropped as too small has id 0 and no pixels).
    dilate: grow the mask by this many pixels in every direction (a square), e.g. to pin the soft edge around an
        object; SVD's latent cells are 8 pixels wide, and a cell is pinned when half of it is in the mask.
    Returns frames (F, H, W, 3) uint8 (sharing memory with ``result.color``: copy before editing) and mask
    (F, H, W) bool.
    """
    ids = [int(i) for i in (result.object_ids if object_ids is None else object_ids) if int(i) != 0]
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise ValueError(f"dilate must be a whole number of pixels >= 0, got {dilate!r}")
    mask = torch.isin(result.instance, torch.tensor(ids, dtype=result.instance.dtype))
    if dilate and ids:
        mask = F.max_pool2d(mask[:, None].float(), 2 * int(dilate) + 1, stride=1, padding=int(dilate))[:, 0] > 0
    return result.color.numpy(), mask.numpy()
