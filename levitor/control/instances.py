"""The first-frame instance map, assembled from the scene's masks the way the release does it.

Every mask is an instance, not only the selected ones, so static objects get control points too and stay
put. Ids are positions in the list [selected masks in selection order, then the other masks in scene order],
starting at 1; they are not renumbered after drops, so gaps are normal. 0 means "no control".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_AREA_FRACTION = 0.001  # masks of at most 0.1% of the image are dropped (the release's rule)


@dataclass
class InstanceMap:
    ids: np.ndarray  # (H, W) int64
    mask_of_id: dict[int, int]  # instance id -> index into scene.masks (kept instances only)
    id_of_mask: dict[int, int]  # index into scene.masks -> instance id (kept instances only)


def assemble_instance_map(
    masks: list[np.ndarray], selected: list[int], min_area_fraction: float = MIN_AREA_FRACTION
) -> InstanceMap:
    """Combine masks into one id map.

    Selected masks keep all their pixels (a later selection wins where two overlap). The other masks lose
    any pixel a selected mask has; where one overlaps a mask placed before it, the larger of the two (the
    placed mask's current area vs the new mask's own area) takes the overlap. Masks left with at most
    ``min_area_fraction`` of the image are dropped.
    """
    if not masks:
        raise ValueError("the scene has no masks; segment the image (or draw a mask) first")
    H, W = masks[0].shape
    for i in selected:
        if not 0 <= i < len(masks):
            raise ValueError(f"selected mask {i} does not exist (the scene has {len(masks)} masks)")
    order = list(selected) + [i for i in range(len(masks)) if i not in set(selected)]
    ids = np.zeros((H, W), dtype=np.int64)
    user = np.zeros((H, W), dtype=bool)
    for pos, mi in enumerate(order[: len(selected)]):
        m = np.asarray(masks[mi], dtype=bool)
        ids[m] = pos + 1
        user |= m
    areas: dict[int, int] = {}
    for pos in range(len(selected), len(order)):
        new_id = pos + 1
        m = np.asarray(masks[order[pos]], dtype=bool) & ~user
        own_area = int(masks[order[pos]].sum())
        overlap_ids = np.unique(ids[m])
        take = m.copy()
        for other in overlap_ids[overlap_ids > 0]:
            other = int(other)
            if other <= len(selected):
                continue
            current = areas.get(other, 0)
            if current > own_area:  # the placed mask is larger: it keeps the overlap
                take &= ids != other
        for other in overlap_ids[overlap_ids > 0]:
            areas[int(other)] = int((ids == other).sum() - (take & (ids == other)).sum())
        ids[take] = new_id
        areas[new_id] = int(take.sum())
    min_area = min_area_fraction * H * W
    mask_of_id = {}
    for pos, mi in enumerate(order):
        area = int((ids == pos + 1).sum())
        if area <= min_area:
            ids[ids == pos + 1] = 0
        else:
            mask_of_id[pos + 1] = mi
    return InstanceMap(ids, mask_of_id, {m: i for i, m in mask_of_id.items()})
