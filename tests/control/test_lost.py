"""ControlWarning: the contract other layers code against, and its one-line messages."""

import json

import numpy as np
import pytest

from levitor.control.lost import REASONS, ControlWarning, Subject, control_warnings, frames_text


def test_frames_text_counts_from_one_as_the_studio_does():
    assert frames_text([0, 1, 2, 3], 4) == "in every frame"
    assert frames_text([4], 16) == "in frame 5 (of 16)"
    assert frames_text([2, 3, 4, 5, 6, 11, 14, 15], 16) == "in frames 3-7, 12, 15-16 (of 16)"


def test_the_contract():
    w = ControlWarning(None, 7, (1, 2), "hidden", "mask 3 (not moved) is hidden ...")
    assert json.loads(json.dumps(w.to_dict())) == {"object_index": None, "instance_id": 7, "frames": [1, 2],
                                                   "reason": "hidden", "message": "mask 3 (not moved) is hidden ..."}
    with pytest.raises(ValueError, match="reason must be one of"):
        ControlWarning(0, 1, (0,), "gone", "")
    with pytest.raises(AttributeError):
        w.reason = "left_view"  # frozen
    assert REASONS == ("far_path_depth", "left_view", "hidden", "too_small")


def test_reasons_are_decided_per_frame_in_order():
    n = 5
    s = Subject("'ball'", 0, 1, controlled=np.array([True, False, False, False, False]),
                area=np.array([400, 0, 0, 12, 0]), in_view=np.array([True, True, False, True, True]),
                far=np.array([False, False, False, False, True]), k=3)
    got = {w.reason: w.frames for w in control_warnings([s], range(n), n, 10)}
    assert got == {"hidden": (1,), "left_view": (2,), "too_small": (3,), "far_path_depth": (4,)}
