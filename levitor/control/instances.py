"""The first-frame instance map, assembled from the scene's masks.

Every mask is an instance, not only the selected ones, so static objects get control points too and stay
put. Ids are positions in the list [selected masks in selection order, then the other masks in scene order],
starting at 1; they are not renumbered after drops, so gaps are normal. 0 means "no control".

Two rules settle overlaps (:class:`levitor.control.rules.ControlRules`, field ``instances``): levitor's
("levitor": a selected mask keeps all its pixels; an overlap is decided per overlapped mask) and the release's
exactly ("release": REFERENCE.md, "Instance map, as the release assembles it").
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
    masks: list[np.ndarray], selected: list[int], min_area_fraction: float = MIN_AREA_FRACTION,
    rule: str = "levitor",
) -> InstanceMap:
    """Combine masks into one id map.

    rule "levitor": selected masks keep all their pixels (a later selection wins where two overlap). The other
    masks lose any pixel a selected mask has; where one overlaps masks placed before it, per overlapped mask the
    larger of the two (the placed mask's current area vs the new mask's own area) takes that part.
    rule "release": see :func:`release_assembly`.
    Either way, masks left with at most ``min_area_fraction`` of the image are dropped.
    """
    if not masks:
        raise ValueError("the scene has no masks; segment the image (or draw a mask) first")
    if rule not in ("levitor", "release"):
        raise ValueError(f"rule must be 'levitor' or 'release', got {rule!r}")
    H, W = masks[0].shape
    for i in selected:
        if not 0 <= i < len(masks):
            raise ValueError(f"selected mask {i} does not exist (the scene has {len(masks)} masks)")
    order = list(selected) + [i for i in range(len(masks)) if i not in set(selected)]
    if rule == "release":
        ids = release_assembly([masks[i] for i in order], len(selected), min_area_fraction)
        return _index(ids, order)
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
    for pos in range(len(order)):
        if int((ids == pos + 1).sum()) <= min_area:
            ids[ids == pos + 1] = 0
    return _index(ids, order)


def release_assembly(masks: list[np.ndarray], num_selected: int,
                     min_area_fraction: float = MIN_AREA_FRACTION) -> np.ndarray:
    """The release's instance map of ``masks`` in list order (the first ``num_selected`` are the user's), ids 1..N.

    For each mask m (id = position + 1): a non-user mask first loses every pixel already holding a user id. Then
    its overlap with what is placed is settled as a whole by the overlap's most frequent placed id (the lowest on
    ties): if that id's current area is smaller than m's own full area, the whole overlap is cleared (m takes it),
    else m loses it. m is added only if it keeps more than T = ``min_area_fraction`` of the image; an overlap
    cleared for it stays 0 otherwise. Finally every id with at most T pixels is dropped.
    """
    H, W = masks[0].shape
    threshold = min_area_fraction * H * W
    placed = np.zeros((H, W), dtype=np.int64)
    for pos, mask in enumerate(masks):
        m = np.asarray(mask, dtype=bool).copy()
        own_area = int(m.sum())
        if pos >= num_selected:
            m &= ~((placed > 0) & (placed <= num_selected))
        overlap = m & (placed > 0)
        if overlap.any():
            top = int(np.argmax(np.bincount(placed[overlap])))
            if int((placed == top).sum()) < own_area:
                placed[overlap] = 0
            else:
                m &= ~overlap
        if int(m.sum()) > threshold:
            placed[m] = pos + 1
    for i in range(1, int(placed.max()) + 1):
        if int((placed == i).sum()) <= threshold:
            placed[placed == i] = 0
    return placed


def _index(ids: np.ndarray, order: list[int]) -> InstanceMap:
    present = set(np.unique(ids).tolist())
    mask_of_id = {pos + 1: mi for pos, mi in enumerate(order) if pos + 1 in present}
    return InstanceMap(ids, mask_of_id, {m: i for i, m in mask_of_id.items()})
