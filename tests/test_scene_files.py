"""Several processes saving and loading one scene path at once, killed at random (issue 27.1): every load returns
one whole committed scene, and killed saves leave nothing behind once the next save has run."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest

from levitor.scene import PathPoint, Scene

RACE_S = 5.0  # per configuration; each kill lands at a random moment of a save or a load
VARIANTS = 6  # scenes the writers pick from; they share side files (3 images x 2 depth maps), as edits do


def _variants() -> list[Scene]:
    """Scene i: image i % 3, depth i % 2, seed i and its own path, so a load mixing two commits is caught."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    depths = [rng.uniform(0.1, 1.0, (40, 56)).astype(np.float32) for _ in range(2)]
    mask = np.zeros((40, 56), bool)
    mask[10:20, 12:30] = True
    scenes = []
    for i in range(VARIANTS):
        scene = Scene(image=images[i % 3], depth=depths[i % 2], masks=[mask], num_frames=4, seed=i)
        scene.select(0).path.append(PathPoint(20.0 + i, 15.0, 0.5))
        scenes.append(scene)
    return scenes


def _mismatch(scene: Scene, variants: list[Scene]) -> str | None:
    """Why ``scene`` is none of the committed variants (None when it is one of them, whole)."""
    i = scene.seed
    if not 0 <= i < len(variants):
        return f"seed {i} names no variant"
    want = variants[i]
    if not np.array_equal(scene.image, want.image) or not np.array_equal(scene.depth, want.depth):
        return f"variant {i}'s JSON with another variant's image or depth"
    if scene.objects[0].path != want.objects[0].path:
        return f"variant {i} with another path"
    return None


def _try_load(path, variants) -> str | None:
    try:
        return _mismatch(Scene.load(path), variants)
    except Exception as e:  # every failure is a finding
        return f"{type(e).__name__}: {e}"


def _worker(path, seed: int, log) -> None:
    """Save a random variant or load and check, forever (until SIGKILL); one line per operation in ``log``."""
    try:
        rng = random.Random(seed)
        variants = _variants()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        while True:
            if rng.random() < 0.5:
                try:
                    variants[rng.randrange(VARIANTS)].save(path)
                    line = "save"
                except Exception as e:
                    line = f"E save: {type(e).__name__}: {e}"
            else:
                problem = _try_load(path, variants)
                line = "load" if problem is None else f"E load: {problem}"
            os.write(fd, (line + "\n").encode())
    finally:
        os._exit(0)


@pytest.mark.parametrize("writers", [2, 3])
def test_savers_and_loaders_killed_at_random_always_see_a_committed_scene(tmp_path, writers):
    """``writers`` processes save and load one path at random; one of them is SIGKILLed every 0.05-0.4 s and
    replaced, while this process loads too. No load may fail or mix two commits; after the writers stop, one
    more save leaves exactly the scene, its two side files and the lock."""
    fork = multiprocessing.get_context("fork")  # the workers start at once: levitor is already imported
    folder, log = tmp_path / "scenes", tmp_path / "ops.log"
    path = folder / "scene.json"
    log.touch()
    variants = _variants()
    variants[0].save(path)
    rng = random.Random(writers)
    seeds = iter(range(10**6))

    def start():
        proc = fork.Process(target=_worker, args=(path, next(seeds), log), daemon=True)
        proc.start()
        return proc

    procs = [start() for _ in range(writers)]
    problems, loads, kills = [], 0, 0
    deadline = time.monotonic() + RACE_S
    try:
        while time.monotonic() < deadline:
            until = time.monotonic() + rng.uniform(0.05, 0.4)
            while time.monotonic() < until:
                problem = _try_load(path, variants)
                loads += 1
                if problem is not None:
                    problems.append(f"test process: {problem}")
            victim = rng.randrange(writers)
            os.kill(procs[victim].pid, signal.SIGKILL)
            procs[victim].join()
            procs[victim] = start()
            kills += 1
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
    ops = log.read_text().splitlines()
    problems += [op for op in ops if op.startswith("E ")]
    saves = ops.count("save")
    assert not problems, f"{len(problems)} failures in {saves} saves, {loads + ops.count('load')} loads: " \
                         f"{sorted(set(problems))[:5]}"
    print(f"{writers} writers: {saves} saves, {loads + ops.count('load')} loads, {kills} kills")
    assert saves >= 20 and kills >= 8 and loads >= 20, (saves, kills, loads)  # the race really ran

    variants[1].save(path)  # the next save sweeps whatever the killed ones left
    assert _mismatch(Scene.load(path), variants) is None
    doc = path.read_text()
    named = {n for n in os.listdir(folder) if n in doc and n != path.name}
    assert len(named) == 2
    assert {n for n in os.listdir(folder) if not n.endswith(".lock")} == {path.name, *named}
