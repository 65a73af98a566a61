"""What differs between ipywidgets 7 (Colab) and 8: the helpers in levitor_widgets.compat give the same widget
behaviour on both (the browser side is checked on ipywidgets 7 by tests/browser/test_colab7_browser.py)."""

from __future__ import annotations

import warnings

import ipywidgets as W

from levitor_widgets.compat import IPYWIDGETS_MAJOR, show_video, tooltip, video_widget


def test_tooltip_lands_in_a_synced_trait_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown keyword is dropped with a DeprecationWarning
        warnings.filterwarnings("ignore", message=".*ipykernel.comm.Comm")  # ipywidgets 7 with ipykernel 6.2x
        box = W.Checkbox(description="follow", **tooltip("why it follows"))
    key = "tooltip" if IPYWIDGETS_MAJOR >= 8 else "description_tooltip"
    assert box.get_state()[key] == "why it follows"


def test_an_empty_player_has_no_blob_and_a_video_arrives_in_one_message(tmp_path):
    player = video_widget(64, 48)
    assert (player.format, player.value) == ("url", b"")  # not an empty mp4 blob (ERR_REQUEST_RANGE_NOT_SATISFIABLE)
    sent = []
    player.send_state = lambda key=None: sent.append(sorted(key if isinstance(key, (list, set, tuple)) else [key]))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    show_video(player, clip)
    assert (player.format, player.value) == ("mp4", clip.read_bytes())
    if getattr(player.comm, "kernel", "no kernel needed") is not None:  # ipywidgets 7 sends only in a kernel
        assert sent == [["format", "value"]]  # the browser never sees the new format with the old bytes
