"""Pictures: the training-loss chart and its log reader."""

import json

import numpy as np
import pytest

from levitor.viz.pictures import loss_curve, overlay, read_loss_log

BLUE = np.array([31, 119, 180])
RED = np.array([214, 39, 40])


def _columns_of(img: np.ndarray, color: np.ndarray) -> np.ndarray:
    return np.nonzero((img == color).all(-1).any(0))[0]


def test_falling_loss_is_drawn_falling_with_the_mark_where_it_belongs():
    steps = np.arange(1, 1001)
    losses = 0.5 * np.exp(-steps / 300) + 0.01
    img = loss_curve(steps, losses, marks=[(500, "lr change")], smooth=1)
    assert img.shape == (360, 720, 3) and img.dtype == np.uint8
    line = (img == BLUE).all(-1)
    cols = np.nonzero(line.any(0))[0]
    first_rows = np.nonzero(line[:, cols[0]])[0]
    last_rows = np.nonzero(line[:, cols[-1]])[0]
    assert first_rows.mean() < last_rows.mean() - 100       # high loss at the top left, low at the bottom right
    red = _columns_of(img, RED)
    plot_left, plot_right = cols[0], cols[-1]
    mid = (plot_left + plot_right) / 2
    assert abs(red.min() - mid) < 6                          # step 500 sits half way across steps 1..1000


def test_marks_outside_the_run_and_bad_points_are_ignored():
    img = loss_curve([0, 10, 20, 30], [1.0, float("nan"), 0.5, -1.0], marks=[(99, "later")])
    assert len(_columns_of(img, RED)) == 0
    with pytest.raises(ValueError, match="at least two"):
        loss_curve([0, 1], [float("nan"), 0.3])


def test_read_loss_log_names_the_bad_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"step": 10, "loss": 0.4}) + "\n\n" + json.dumps({"step": 20, "loss": 0.3}) + "\n")
    steps, losses = read_loss_log(log)
    assert steps.tolist() == [10, 20] and losses.tolist() == [0.4, 0.3]
    log.write_text(json.dumps({"step": 10, "loss": 0.4}) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        read_loss_log(log)


def test_overlays_colour_each_mask_as_the_studio_does_whatever_its_instance_id():
    """The generated control video and the Studio's canvas agree: a mask's colour follows the mask, not the id the
    engine gives it (the release's assembly renumbers: moved objects first)."""
    from levitor.viz.colors import colors_by_mask, instance_colors, mask_colors

    pal = mask_colors(4)
    assert pal.shape == (4, 3) and len({tuple(c) for c in pal}) == 4
    table = colors_by_mask({1: 3, 2: 0, 3: 1}, 4)  # id -> mask index
    np.testing.assert_array_equal(table[1], pal[3])
    np.testing.assert_array_equal(table[2], pal[0])
    np.testing.assert_array_equal(table[0], instance_colors(1)[0])  # id 0 (no control) stays grey
    inst = np.array([[0, 1], [2, 3]])
    img = np.zeros((2, 2, 3), np.uint8)
    out = overlay(img, inst, colors=table, alpha=1.0)
    np.testing.assert_array_equal(out[0, 1], pal[3])
    np.testing.assert_array_equal(out[1, 0], pal[0])
