"""The scene editor: every user action is one command with an exact undo and redo; what is not an edit (showing
a scene, a slider echo) records nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from levitor.bundled import bundled_scene
from levitor.depth import MIN_DEPTH, nearness_from_depth, nearness_range
from levitor.editing import CAMERA, SceneEditor, follow_depth
from levitor.perception.depth_choice import DepthChoice
from levitor.perception.manual import max_nearness
from levitor.scene import Scene


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _state(scene: Scene) -> str:
    """Everything a user can change, as JSON (arrays by content)."""
    from levitor._util.hashing import array_hash, masks_hash

    return json.dumps([[(o.mask_index, o.name, [(p.x, p.y, p.depth, p.frame) for p in o.path]) for o in scene.objects],
                       [(p.x, p.y, p.depth, p.frame) for p in scene.camera_path], scene.scale,
                       masks_hash(scene.masks), scene.mask_sources, array_hash(scene.depth), scene.depth_source])


@pytest.fixture
def editor():
    return SceneEditor(bundled_scene(160, 256, num_frames=8), clock=Clock())


def test_one_undo_removes_one_point_and_redo_restores_it(editor):
    path = lambda: [(round(p.x), round(p.y)) for p in editor.scene.objects[0].path]
    start = path()
    editor.add_point(0, 200, 120)
    editor.add_point(0, 220, 110)
    assert len(path()) == len(start) + 2
    assert editor.undo() == "add a path point"
    assert path() == start + [(200, 120)]
    assert editor.redo() == "add a path point"
    assert path() == start + [(200, 120), (220, 110)]
    assert editor.undo() and editor.undo()
    assert path() == start and not editor.can_undo
    assert editor.undo() is None


def test_every_operation_undoes_exactly_and_redoes_exactly(editor):
    s = editor.scene
    states = [_state(s)]
    ops = [
        lambda: editor.add_point(1, 120, 100),
        lambda: editor.move_point(0, 1, 90, 90),
        lambda: editor.set_nearness(0, 2, 1.3),
        lambda: editor.set_timed(0, True),
        lambda: editor.set_point_frame(0, 1, 2),
        lambda: editor.set_scale(2.0),
        lambda: editor.select_mask(3),  # the tree
        lambda: editor.add_mask(np.pad(np.ones((10, 10), bool), ((5, 145), (5, 241))), "brush"),
        lambda: editor.set_mask(3, s.masks[3] & (np.arange(256)[None, :] < 215), "brush"),
        lambda: editor.remove_object(1),
        lambda: editor.add_camera_point(20, 20),
        lambda: editor.add_camera_point(30, 22),
        lambda: editor.set_depth(DepthChoice("flat").depth(s.image), "flat"),
        lambda: editor.delete_point(0, 1),
    ]
    for op in ops:
        editor.clock.t += 10  # no merging
        op()
        states.append(_state(s))
        assert states[-1] != states[-2], op
        s.validate()
    for want in reversed(states[:-1]):
        editor.undo()
        assert _state(s) == want
    for want in states[1:]:
        editor.redo()
        assert _state(s) == want


def test_a_drag_or_a_slider_storm_is_one_step(editor):
    p0 = editor.scene.objects[0].path[1]
    before = (p0.x, p0.y)
    editor.begin_gesture("drag")
    for k in range(5):
        editor.clock.t += 5  # a slow drag still merges: the gesture decides
        editor.move_point(0, 1, 50 + k, 60 + k)
    editor.end_gesture()
    for v in (1.1, 1.2, 1.3):  # a slider: merged by key within MERGE_S
        editor.clock.t += 0.1
        editor.set_nearness(0, 2, v)
    assert len(editor.undo_stack) == 2
    editor.undo()
    editor.undo()
    assert (editor.scene.objects[0].path[1].x, editor.scene.objects[0].path[1].y) == before


def test_a_slider_echo_or_the_same_value_is_no_edit(editor):
    path = editor.scene.objects[1].path
    now = nearness_from_depth(path[0].depth, path[2].depth)
    editor.set_nearness(1, 2, now * (1 + 1e-12))  # what a panel rebuild sends back
    editor.set_scale(editor.scene.scale)
    editor.set_mask(4, editor.scene.masks[4].copy())
    assert editor.undo_stack == [] and editor.version == 0


def test_p1_cannot_be_deleted_and_nearness_says_where_it_stops(editor):
    with pytest.raises(ValueError, match="P1 .* can't be deleted"):
        editor.delete_point(0, 0)
    ref = editor.scene.objects[0].path[0].depth
    _lo, hi = nearness_range(ref)
    res = editor.set_nearness(0, 1, 100.0)
    assert res.nearness == pytest.approx(hi) and "can't come nearer" in res.limited
    assert editor.scene.objects[0].path[1].depth == pytest.approx(MIN_DEPTH)
    assert editor.set_nearness(0, 1, 1.2).limited == ""


def test_new_point_follows_the_ground_unless_told_to_keep_the_depth(editor):
    s = editor.scene
    ball = s.objects[0]
    d0 = ball.path[0].depth
    lower = editor.add_point(0, ball.path[0].x, ball.path[0].y + 25)  # down the ground plane: nearer
    assert s.objects[0].path[lower].depth < d0
    higher = editor.add_point(0, ball.path[0].x, ball.path[0].y - 25, follow=True)
    assert s.objects[0].path[higher].depth > d0
    kept = editor.add_point(0, 30, 150, follow=False)
    assert s.objects[0].path[kept].depth == s.objects[0].path[kept - 1].depth
    flat = SceneEditor(bundled_scene(160, 256, num_frames=8))
    flat.set_depth(DepthChoice("flat").depth(flat.scene.image), "flat")
    assert follow_depth(flat.scene, 0, 10, 150) == pytest.approx(flat.scene.objects[0].path[0].depth)
    with pytest.raises(ValueError, match="does not exist"):
        editor.add_point(7, 1, 1)
    assert editor.add_camera_point(5, 5) == 0 and s.camera_path[0].depth == s.depth_at(5, 5)
    assert CAMERA == "camera"


def test_nearer_depth_is_repainted_with_the_masks_in_the_same_step():
    scene = bundled_scene(160, 256, num_frames=8)
    choice = DepthChoice("nearer", 2.0)

    def repaint(s):
        return choice.depth(s.image, [s.masks[o.mask_index] for o in s.objects]), choice.source

    ed = SceneEditor(scene, repaint_depth=repaint)
    ed.set_depth(*repaint(scene))
    tree = ed.select_mask(3)
    d = scene.depth
    assert d[scene.masks[3]].max() == pytest.approx(d.max() / 2)  # the tree is 2x nearer than the background
    assert scene.objects[tree].path[0].depth == pytest.approx(d.max() / 2)
    ed.undo()
    assert scene.depth[scene.masks[3]].max() == pytest.approx(scene.depth.max())  # the selection and its paint
    assert len(scene.objects) == 2


def test_a_new_n_keeps_every_path_depth_and_another_depth_keeps_the_nearness():
    scene = bundled_scene(160, 256, num_frames=8)
    ed = SceneEditor(scene)
    masks = lambda: [scene.masks[o.mask_index] for o in scene.objects]
    ed.set_depth(DepthChoice("nearer", 2.0).depth(scene.image, masks()), "nearer:2")
    ed.set_nearness(0, 1, 1.99)
    before = [[p.depth for p in o.path] for o in scene.objects]
    top = max_nearness()
    ed.set_depth(DepthChoice("nearer", top).depth(scene.image, masks()), f"nearer:{top}")
    assert [p.depth for p in scene.objects[0].path[1:]] == before[0][1:]  # P2.. stay where they were
    assert scene.objects[0].path[0].depth == pytest.approx(1 / 255)  # P1 is the object, now N x nearer
    ed.set_depth(DepthChoice("nearer", 2.0).depth(scene.image, masks()), "nearer:2")
    assert [[p.depth for p in o.path] for o in scene.objects] == before
    ed.set_depth(DepthChoice("flat").depth(scene.image), "flat")  # another kind: "x nearer" relative to P1 is kept
    p = scene.objects[0].path
    assert nearness_from_depth(p[0].depth, p[1].depth) == pytest.approx(1.99, rel=1e-6)
