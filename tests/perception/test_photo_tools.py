"""No-weights tools on a real photo: GrabCut from a box, and the depth choices a close-up can use."""

from __future__ import annotations

import numpy as np
import pytest

from levitor.perception.depth_choice import DepthChoice
from levitor.perception.manual import BACKGROUND_DISPARITY, flat_depth, max_nearness, nearer_depth

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def cat():
    from levitor._util.images import fit_image

    return fit_image(skdata.chelsea(), 320, 512)


@pytest.mark.parametrize("box", [(25, 2, 450, 318), (450, 318, 25, 2), (27, 4, 448, 316)])
def test_grabcut_cuts_the_cat_out_of_its_box(cat, box):
    from levitor.perception.grabcut import grabcut_mask

    m = grabcut_mask(cat, box)
    assert m.dtype == bool and m.shape == (320, 512)
    assert m[265, 300] and m[120, 190]  # the nose and an eye
    assert not m[150, 490] and not m[100, 10]  # the background right of the head, and outside the box
    assert 0.4 < m.mean() < 0.9
    np.testing.assert_array_equal(m, grabcut_mask(cat, box))  # the same box, the same mask


def test_grabcut_refuses_a_click_and_says_what_to_do(cat):
    from levitor.perception.grabcut import grabcut_mask, normalise_box

    with pytest.raises(ValueError, match="drag a box of at least"):
        grabcut_mask(cat, (100, 100, 102, 101))
    assert normalise_box((3, 5, 509, 200), (320, 512)) == (0, 0, 512, 200)  # near the edge means to the edge


def test_depth_choices_round_trip_and_paint_the_objects(cat):
    mask = np.zeros((320, 512), bool)
    mask[100:200, 200:300] = True
    d = nearer_depth((320, 512), [mask], 2.0)
    assert d[~mask].max() == pytest.approx(1 / BACKGROUND_DISPARITY) and d[mask].max() == pytest.approx(d.max() / 2)
    assert np.all(flat_depth((4, 5)) == pytest.approx(1 / 128))
    with pytest.raises(ValueError, match="nearness must be in 1..4.25"):
        nearer_depth((4, 5), [], 5.0)
    assert max_nearness() == pytest.approx(255 / 60)
    for source in ("nearer:2.5", "flat", "ground-plane"):
        choice = DepthChoice.from_source(source)
        assert choice.source == source and choice.depth(cat, [mask]).shape == (320, 512)
    assert DepthChoice.from_source("synthetic") is None and DepthChoice.from_source("nearer:x") is None
    assert DepthChoice("nearer", 3).uses_masks and not DepthChoice("flat").uses_masks
    with pytest.raises(ValueError, match="needs its weights"):
        DepthChoice("depth-anything-v2").depth(cat)


def test_a_lasso_past_the_image_edge_is_clipped_to_it():
    from levitor.perception.manual import lasso_mask

    past = lasso_mask([(-30, 5), (40, 5), (40, 1e6), (-30, 1e6)], (20, 32))  # off the left and bottom edges
    want = np.zeros((20, 32), bool)
    want[5:, :41] = True
    np.testing.assert_array_equal(past, want)
    assert not lasso_mask([(40, 5), (60, 5), (60, 15)], (20, 32)).any()  # wholly off the image: nothing
