"""The first-frame instance map on hand-built overlapping masks: levitor's rule and the release's (REFERENCE.md,
"Instance map, as the release assembles it"), with the expected maps written out from the stated rules."""

import numpy as np
import pytest

from levitor.control.instances import assemble_instance_map

H = W = 100  # T = 0.1% of the image = 10 pixels


def _rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_release_settles_a_whole_overlap_by_its_most_frequent_id():
    b = _rect(0, 0, 10, 10)  # id 1 after placing: area 100
    c = _rect(10, 0, 40, 10)  # id 2: area 300
    d = _rect(5, 0, 13, 30)  # id 3, own area 240: overlaps b on 50 px (cols 5-9), c on 30 px (cols 10-12)
    masks = [b, c, d]
    # release: the overlap's most frequent placed id is b (50 > 30); b's area 100 < 240, so d takes the WHOLE
    # overlap, c's part included
    rel = assemble_instance_map(masks, [], rule="release").ids
    expected = np.zeros((H, W), np.int64)
    expected[b] = 1
    expected[c] = 2
    expected[d] = 3
    assert np.array_equal(rel, expected)
    # levitor: per overlapped mask: d (240) beats b (100) but not c (300), so c keeps cols 10-12
    lev = assemble_instance_map(masks, [], rule="levitor").ids
    expected_lev = expected.copy()
    expected_lev[0:10, 10:13] = 2
    assert np.array_equal(lev, expected_lev)


def test_release_automatic_masks_lose_user_pixels_first():
    user = _rect(0, 0, 50, 50)  # selected: id 1
    a = _rect(40, 40, 60, 60)  # id 2: loses its 100 user pixels, keeps 300
    b = _rect(45, 45, 62, 62)  # id 3, own area 289: after its user pixels, overlaps a's 300 on 200 px -> loses them
    rel = assemble_instance_map([user, a, b], [0], rule="release").ids
    expected = np.zeros((H, W), np.int64)
    expected[user] = 1
    expected[a & ~user] = 2
    expected[b & ~user & ~a] = 3
    assert np.array_equal(rel, expected)


def test_release_overlap_cleared_for_a_mask_that_is_then_dropped_stays_empty():
    user = _rect(0, 0, 100, 20)  # selected: id 1, rows 0-19
    placed = _rect(0, 20, 3, 40)  # id 2: 60 px
    new = np.zeros((H, W), bool)
    new[0:20, :] = True  # 2000 px of the user's ...
    new[20:23, 0:3] = True  # ... and 9 px over `placed` (own area 2009 > 60: the overlap is cleared)
    rel = assemble_instance_map([user, placed, new], [0], rule="release").ids
    # new keeps only those 9 px (<= T = 10): not added, and the cleared 9 px stay 0
    assert (rel[20:23, 0:3] == 0).all() and (rel[23:40, 0:3] == 2).all() and 3 not in np.unique(rel)


def test_release_treats_selected_masks_by_the_same_larger_wins_rule():
    first = _rect(0, 0, 30, 30)  # selected first: id 1, area 900
    second = _rect(20, 20, 40, 40)  # selected second: id 2, own area 400 < 900: it loses the overlap
    rel = assemble_instance_map([first, second], [0, 1], rule="release").ids
    assert (rel[20:30, 20:30] == 1).all() and (rel[30:40, 30:40] == 2).all()
    lev = assemble_instance_map([first, second], [0, 1], rule="levitor").ids
    assert (lev[20:30, 20:30] == 2).all()  # levitor: a selected mask keeps all its pixels, the later one wins
    # and ids are selection positions either way, with drops leaving gaps
    crumbs = _rect(90, 90, 93, 93)  # 9 px <= T
    rel = assemble_instance_map([first, crumbs, second], [2, 0], rule="release")
    assert rel.id_of_mask == {2: 1, 0: 2} and 3 not in rel.mask_of_id


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be"):
        assemble_instance_map([_rect(0, 0, 5, 5)], [], rule="sam")
