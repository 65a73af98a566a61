"""Engine speed: a full control rebuild after a path edit, under levitor's rules and the release's, side by side.

Scenes (16 frames, 320x512):
  41%      two moving objects covering ~40% of the image (an ellipse and a box), plus sky and ground masks
  bundled  the demo scene (a ball and a box moving among a tree, sky and ground)
Per scene and rule set, medians over edits that drag one object's end point (as the Studio does), wall and CPU time
(CPU time is steadier on a busy machine):
  full rebuild   Engine.update() + encode: instance map, lift + move + render, K-means, conditioning tensor
  draft          Engine.preview_frame(last frame): what the Studio draws while a slider moves
and the ratio release / levitor (target: full rebuild <= 1.5x). The two rule sets' edits alternate in one loop (which
goes first alternates too), so a change of machine load in the middle of a run hits both alike; besides the ratio of
the medians the median of the paired ratios (each edit under release / the adjacent one under levitor) is printed.
Then each rule set's stages (Engine.update's timings), encode alone and, where scikit-learn is installed, sklearn's
KMeans run per frame on the release's samples (the release's own K-means).

Usage: python bench/bench_engine.py [--repeats 15] [--scene 41% bundled]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from levitor._util.threads import worker_count
from levitor.control.encode import encode
from levitor.control.release_kmeans import even_samples
from levitor.engine import Engine
from levitor.scene import ObjectTrack, PathPoint, Scene

RULE_SETS = ("levitor", "release")
TARGET_RATIO = 1.5  # issue 24: the release's rules within 1.5x levitor's per full rebuild


def bench_scene(H: int = 320, W: int = 512, F: int = 16) -> Scene:
    """Two moving objects covering ~40% of the image, plus sky and ground masks."""
    rows, cols = np.mgrid[0:H, 0:W]
    sky = rows < 100
    ground = ~sky
    depth = (1.0 / np.where(sky, 1.0, 12.0 + (rows - 100))).astype(np.float32)
    big = ((cols - 170) / 120.0) ** 2 + ((rows - 190) / 110.0) ** 2 <= 1  # ~25% of the image
    box = (cols >= 330) & (cols < 470) & (rows >= 60) & (rows < 240) & ~big  # ~15%
    depth[big], depth[box] = 1 / 150, 1 / 90
    img = np.zeros((H, W, 3), np.uint8)
    img[sky], img[ground], img[big], img[box] = (120, 170, 240), (90, 140, 70), (210, 60, 50), (60, 90, 200)
    masks = [sky & ~big & ~box, ground & ~big & ~box, big, box]
    scene = Scene(image=img, depth=depth, masks=masks, num_frames=F)
    scene.objects = [
        ObjectTrack(2, [PathPoint(170, 190, 1 / 150), PathPoint(230, 200, 1 / 225)]),  # 1.5x nearer
        ObjectTrack(3, [PathPoint(400, 150, 1 / 90), PathPoint(300, 140, 1 / 80)]),  # left, a bit farther
    ]
    return scene.validate()


def load_scene(name: str) -> Scene:
    if name == "41%":
        return bench_scene()
    from levitor.bundled import bundled_scene

    return bundled_scene()


def make_edit(scene: Scene):
    """A path edit, as a drag in the Studio: the end point of the first object moves 2 px further each time (never
    back to a place it was, so no cache can answer from an earlier edit of the same object)."""
    p = scene.objects[0].path[-1]
    x0 = p.x

    def edit(k: int) -> None:
        p.x = x0 + (k + 1) * 2.0

    return edit


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of fn(k) over k = 0..repeats-1."""
    wall, cpu = [], []
    for k in range(repeats):
        w, c = timed(fn, k)
        wall.append(w)
        cpu.append(c)
    return statistics.median(wall), statistics.median(cpu)


def timed(fn, k: int) -> tuple[float, float]:
    """Wall and CPU milliseconds of fn(k)."""
    t, c = time.perf_counter(), time.process_time()
    fn(k)
    return (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3


WARM_UP_EDITS = 2  # per rule set, before timing: compiled loops loaded, the unedited objects' caches filled


def measure(scene_name: str, repeats: int) -> dict:
    """Full rebuild and draft times of one scene under each rule set, their edits alternating, and the stages of
    the full rebuild: {rules: {"full": [(wall, cpu)], "draft": [(wall, cpu)], "stages": {name: median},
    "result": EngineResult}}."""
    runs = {}
    for rules in RULE_SETS:  # each rule set edits its own copy of the scene
        scene = load_scene(scene_name)
        runs[rules] = {"eng": Engine(scene, rules=rules), "edit": make_edit(scene), "stages": {}, "full": [],
                       "draft": [], "last": scene.num_frames - 1}

    def full(run, k):
        run["edit"](k)
        r = run["eng"].update()
        t = time.perf_counter()
        encode(r.signal)
        for name, v in {**r.timings, "encode": (time.perf_counter() - t) * 1e3}.items():
            run["stages"].setdefault(name, []).append(v)

    def draft(run, k):
        run["edit"](k)
        run["eng"].preview_frame(run["last"])

    for run in runs.values():
        run["eng"].update()
    for k in range(WARM_UP_EDITS):
        for run in runs.values():
            full(run, k)
    for run in runs.values():
        run["stages"].clear()
    for what, fn, first in (("full", full, WARM_UP_EDITS), ("draft", draft, WARM_UP_EDITS + repeats)):
        for k in range(repeats):  # edits never go back to an earlier place (see make_edit)
            order = RULE_SETS if k % 2 == 0 else RULE_SETS[::-1]
            for rules in order:
                run = runs[rules]
                run[what].append(timed(lambda j, run=run, fn=fn: fn(run, j), first + k))
    return {rules: {"full": run["full"], "draft": run["draft"], "result": run["eng"].result,
                    "stages": {name: statistics.median(v) for name, v in run["stages"].items()}}
            for rules, run in runs.items()}


def sklearn_release_kmeans_ms(result, repeats: int) -> float | None:
    """sklearn's KMeans per frame and object on the release's samples (every 10th pixel, even init), 1 thread."""
    try:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    inst = result.instance.numpy()
    jobs = []
    for f in range(inst.shape[0]):
        for i, k in result.k.items():
            rc = np.argwhere(inst[f] == i)[::10].astype(np.float32)
            if len(rc) >= k:
                jobs.append((rc, even_samples(rc, k)))

    def run(_):
        with threadpool_limits(1):
            for rc, init in jobs:
                KMeans(n_clusters=len(init), init=init, n_init=1).fit(rc)

    return median_ms(run, max(2, repeats // 3))[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--scenes", "--scene", nargs="+", default=["41%", "bundled"], choices=["41%", "big", "bundled"],
                    help="41%% (also 'big'): two moving objects covering ~40%%; bundled: the demo scene")
    args = ap.parse_args()
    args.scenes = ["41%" if s == "big" else s for s in args.scenes]
    print(f"cpus {os.cpu_count()}, torch threads in the engine 1, worker threads {worker_count()} (LEVITOR_THREADS), "
          f"load average {os.getloadavg()[0]:.1f} "
          f"(figures from one run; compare ratios, and rerun on a quiet machine for absolute times)")
    ratios = []
    for name in args.scenes:
        got = measure(name, args.repeats)
        scene = load_scene(name)
        cover = sum(scene.masks[o.mask_index].mean() for o in scene.objects)
        print(f"\nscene {name}: {scene.width}x{scene.height}, {scene.num_frames} frames, moving objects cover "
              f"{cover:.0%}; tracks: levitor {got['levitor']['result'].signal.num_points}, "
              f"release {got['release']['result'].signal.num_points}; {args.repeats} edits per rule set, alternating")
        print(f"{'what (median ms)':34s} {'levitor':>16s} {'release':>16s} {'release/levitor':>16s} {'paired':>7s}")
        print(f"{'':34s} {'wall':>7s} {'cpu':>8s} {'wall':>7s} {'cpu':>8s} {'wall':>7s} {'cpu':>8s} {'wall':>7s}")
        for what, label in (("full", "full rebuild (update + encode)"), ("draft", "draft (one frame)")):
            lev, rel = np.asarray(got["levitor"][what]), np.asarray(got["release"][what])
            (lw, lc), (rw, rc) = np.median(lev, 0), np.median(rel, 0)
            paired = float(np.median(rel[:, 0] / lev[:, 0]))
            print(f"{label:34s} {lw:7.1f} {lc:8.1f} {rw:7.1f} {rc:8.1f} {rw / lw:6.2f}x {rc / lc:7.2f}x {paired:6.2f}x")
            if what == "full":
                ratios.append((name, rw / lw, rc / lc, paired))
        for rules in RULE_SETS:
            st = got[rules]["stages"]
            print(f"  {rules} stages: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
        sk = sklearn_release_kmeans_ms(got["release"]["result"], args.repeats)
        if sk is not None:
            print(f"  sklearn KMeans per frame on the release's samples (from scratch, 1 thread): {sk:.1f} ms wall")
        sig = got["levitor"]["result"].signal
        w, _ = median_ms(lambda k, sig=sig: encode(sig), args.repeats)
        print(f"  encode alone ({sig.num_frames}x3x{scene.height}x{scene.width}): {w:.1f} ms wall")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    for name, wall, cpu, paired in ratios:
        verdict = "PASS" if wall <= TARGET_RATIO else "MISS"
        print(f"target: release full rebuild <= {TARGET_RATIO}x levitor's on {name}: wall {wall:.2f}x (paired "
              f"{paired:.2f}x), cpu {cpu:.2f}x -> {verdict}")


if __name__ == "__main__":
    main()
