"""The Studio's gestures against the bare canvas they are built on, in one browser session (issue 23 item 6).

Starts JupyterLab (tests/browser/lab.py: Debian chromium + Playwright) on two notebooks and measures, in the page:

- the floor: a bare ipycanvas ``Canvas`` whose mouse-down handler draws a rectangle (click -> rectangle drawn);
- the Studio's gestures on the bundled 320x512 scene, 16 frames: click -> mask overlay (select the tree),
  click -> path point (the handle drawn), depth slider -> canvas, scale slider -> control points;
- the cold start: "run all" on a fresh kernel of a notebook with the Studio cell alone -> the Studio's canvas drawn
  and -> its 3D view drawn.

Each latency runs from the browser's pointer event to the watched pixels changing (JS_WATCH in tests/browser/lab.py)
and is printed as a ratio to the floor's median with the issue's target. Beside it: the kernel <-> front-end comm
messages of the gesture (``kernel.anyMessage`` in the page), how many went each way before the pixels changed and
until the Studio was idle again, and their bytes (JSON content + binary buffers); ``--verbose`` lists them.

Usage: flock /tmp/heavy.lock python bench/bench_studio_browser.py [--samples 3] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.lab import (
    CHROMIUM_ARGS,
    JS_WATCH,
    VIEWPORT,
    chromium_path,
    click_canvas,
    drag_range,
    drag_slider,
    kernel_eval,
    kernel_json,
    latency_ms,
    notebook_json,
    open_notebook,
    restart_kernel,
    run_all,
    settle,
    start_lab,
    stop_lab,
    wait_kernel,
    wait_view3d,
)

TARGETS = {  # gesture -> the most it may take, in floors (None: shown, no target)
    "click -> mask overlay": 1.5,
    "click -> path point": 1.5,
    "depth slider -> canvas": 2.0,
    "scale slider -> points": 2.0,
}
COLD_START_TARGET_S = 6.0  # run all -> Studio drawn, on a quiet 2-core machine
FLOOR_CELL = """from ipycanvas import Canvas
floor = Canvas(width=512, height=320)
floor.layout.width, floor.layout.height = '512px', '320px'
floor.add_class('bench-floor')
floor.fill_style = 'white'
floor.fill_rect(0, 0, 512, 320)
_clicks = [0]
def _down(x, y):
    _clicks[0] += 1
    floor.fill_style = ('red', 'blue')[_clicks[0] % 2]
    floor.fill_rect(x - 10, y - 10, 20, 20)
floor.on_mouse_down(_down)
floor"""
STUDIO_CELL = """from levitor_widgets import Studio
studio = Studio(None, out_dir='levitor_out', autosave=False)
studio"""
FLOOR = "canvas.bench-floor"
CANVAS = ".levitor-studio canvas"
TREE = (420, 150)  # the tree's crown in the bundled scene (not selected at start)
GROUND = [(455, 250), (490, 290), (470, 300), (440, 280), (500, 260)]  # path points on the ground

# Count the comm messages of the current kernel (both ways) from now on, with their time and size.
JS_COUNT = """() => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  window.__msgs = [];
  if (window.__hooked !== k) {
    window.__hooked = k;
    k.anyMessage.connect((_, args) => {
      const m = args.msg, t = m.header.msg_type;
      if (!t.startsWith('comm_') || !window.__msgs) return;
      const d = (m.content && m.content.data) || {};
      let what = d.method || t;
      if (d.method === 'update' && d.state) what = 'update ' + Object.keys(d.state).join(',');
      else if (d.content && (d.content.event || d.content.type)) what += ' ' + (d.content.event || d.content.type);
      else if (d.method === 'custom' && d.content && d.content.dtype) what += ' image';
      let bytes = JSON.stringify(m.content).length;
      for (const b of (m.buffers || [])) bytes += (b.byteLength || 0);
      window.__msgs.push({t: performance.now(), dir: args.direction === 'send' ? 'up' : 'down', what, bytes});
    });
  }
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="repeats of each gesture (the median is shown)")
    parser.add_argument("--verbose", action="store_true", help="list each gesture's messages")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold starts (gestures only)")
    args = parser.parse_args(argv)
    chromium = chromium_path()
    if chromium is None:
        print("no chromium executable (apt-get install -y chromium, or set LEVITOR_CHROMIUM)")
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        (root / "cold.ipynb").write_text(notebook_json([STUDIO_CELL]))
        (root / "gestures.ipynb").write_text(notebook_json([FLOOR_CELL, STUDIO_CELL]))
        proc = start_lab(base, root)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                try:
                    cold = ({"studio": [], "3d": []} if args.no_cold
                            else _cold_start(page, (proc, root), args.samples))
                    results, failed = _gestures(page, (proc, root), args.samples)
                finally:
                    browser.close()
        finally:
            stop_lab(proc)
    return _report(results, cold, failed, args.verbose)


# ---------------------------------------------------------------------- measurements
def _cold_start(page, lab, samples: int) -> dict[str, list[float]]:
    """Run all on a fresh kernel -> the Studio's canvas shows the photo, -> its 3D view has drawn."""
    out: dict[str, list[float]] = {"studio": [], "3d": []}
    open_notebook(page, lab, "cold.ipynb")
    for i in range(samples):
        if i:
            restart_kernel(page)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        t0 = time.monotonic()
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function("(sel) => { const c = document.querySelector(sel); if (!c || !c.width) return false;"
                               " const d = c.getContext('2d').getImageData(100, 100, 1, 1).data;"
                               " return d[3] > 0; }", arg=CANVAS, timeout=120_000, polling="raf")
        out["studio"].append(time.monotonic() - t0)
        wait_view3d(page, min_traces=1, timeout_ms=120_000)
        out["3d"].append(time.monotonic() - t0)
        settle(page)
        print(f"cold start {i + 1}: Studio drawn {out['studio'][-1]:.2f} s, 3D drawn {out['3d'][-1]:.2f} s",
              flush=True)
    return out


def _gestures(page, lab, samples: int) -> tuple[dict[str, list[dict]], list[str]]:
    res: dict[str, list[dict]] = {k: [] for k in ("floor", *TARGETS)}
    open_notebook(page, lab, "gestures.ipynb")
    run_all(page)
    floor, canvas = page.locator(FLOOR).first, page.locator(CANVAS).first
    canvas.wait_for(state="visible", timeout=30_000)
    settle(page)
    failed: list[str] = []
    order = [("click -> mask overlay", _overlay), ("click -> path point", _path_point),
             ("depth slider -> canvas", _depth), ("scale slider -> points", _scale)]
    for i in range(samples):  # interleaved, a floor click before each gesture: both see the same load
        for name, fn in order:
            res["floor"].append(_floor(page, floor, len(res["floor"])))
            try:
                res[name].append(fn(page, canvas, i))
            except AssertionError as e:  # one sample that never painted is reported, the others still count
                failed.append(f"{name} {i + 1}: {e}")
                print(f"{name} {i + 1}: FAILED ({str(e)[:300]})", flush=True)
                continue
            print(f"{name} {i + 1}: {res[name][-1]['ms']:.1f} ms, {len(res[name][-1]['msgs'])} messages "
                  f"(floor {res['floor'][-1]['ms']:.1f} ms)", flush=True)
    return res, failed


def _measure(page, watch_js: str, watch_args: list, act) -> dict:
    """Arm the watcher and the message counter, act, wait for the pixels, then for the Studio to go idle."""
    page.evaluate(watch_js, watch_args)
    page.evaluate(JS_COUNT)
    act()
    ms = latency_ms(page)
    lat = page.evaluate("() => window.__lat")
    _quiet(page)
    msgs = page.evaluate("() => window.__msgs")
    for m in msgs:
        m["before_paint"] = m["t"] <= lat["t1"]
    return {"ms": ms, "msgs": msgs}


def _quiet(page, quiet_ms: float = 400, timeout_s: float = 30) -> None:
    """Wait until the Studio is idle and no comm message has passed for ``quiet_ms``."""
    settle(page)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        age = page.evaluate("() => { const m = window.__msgs; "
                            "return m.length ? performance.now() - m[m.length - 1].t : 1e9; }")
        if age >= quiet_ms:
            return
        page.wait_for_timeout(100)


def _floor(page, floor, i: int) -> dict:
    x, y = 40 + (37 * i) % 440, 60 + (23 * i) % 200
    floor.scroll_into_view_if_needed()
    return _measure(page, JS_WATCH, [FLOOR, x, y, 1, 1, "pointerdown"], lambda: click_canvas(page, floor, x, y))


def _overlay(page, canvas, i: int) -> dict:
    kernel_eval(page, "studio.set_mode('select')")
    settle(page)
    canvas.scroll_into_view_if_needed()
    r = _measure(page, JS_WATCH, [CANVAS, *TREE, 1, 1, "pointerdown"], lambda: click_canvas(page, canvas, *TREE))
    wait_kernel(page, "len(studio.scene.objects)", lambda n: n == 3)  # the tree stays selected for this round
    return r


def _path_point(page, canvas, i: int) -> dict:
    x, y = GROUND[i % len(GROUND)]
    n = kernel_json(page, "len(studio.scene.objects[-1].path)")
    settle(page)
    canvas.scroll_into_view_if_needed()
    r = _measure(page, JS_WATCH, [CANVAS, x - 2, y - 2, 5, 5, "pointerdown"], lambda: click_canvas(page, canvas, x, y))
    wait_kernel(page, "len(studio.scene.objects[-1].path)", lambda m: m == n + 1)
    return r


def _depth(page, canvas, i: int) -> dict:
    kernel_eval(page, "studio.set_frame(studio.scene.num_frames - 1)")
    slider = page.locator(".levitor-depth-table tr", has_text="P2").locator("input.levitor-nearness-slider").first
    settle(page)
    slider.scroll_into_view_if_needed()
    before = kernel_json(page, "studio.scene.objects[-1].path[1].depth")
    r = _measure(page, JS_WATCH, [CANVAS, 0, 0, 512, 320, "pointerdown"],
                 lambda: drag_range(page, slider, (0.15, 0.85)[i % 2]))
    wait_kernel(page, "studio.scene.objects[-1].path[1].depth", lambda d: d != before)
    return r


def _scale(page, canvas, i: int) -> dict:
    slider = page.locator(".widget-slider", has_text="control-point scale").first
    settle(page)
    slider.scroll_into_view_if_needed()
    # the points are drawn on the canvas (the info line's count can stay put when K does in this frame)
    r = _measure(page, JS_WATCH, [CANVAS, 0, 0, 512, 320, "pointerdown"],
                 lambda: drag_slider(page, slider, (0.9, 0.2)[i % 2]))
    # the next round starts from the unselected tree again: undo this round's edits (select, points, sliders)
    kernel_eval(page, "while len(studio.scene.objects) > 2 and studio.editor.can_undo: studio.undo()")
    settle(page)
    return r


# ---------------------------------------------------------------------- the report
def _report(results: dict[str, list[dict]], cold: dict[str, list[float]], failed: list[str], verbose: bool) -> int:
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, {os.cpu_count()} cpus; medians of "
          f"{len(results['floor'])} floor clicks and {len(results[next(iter(TARGETS))])} of each gesture\n")
    floor = statistics.median(r["ms"] for r in results["floor"])
    print(f"{'gesture':26s} {'ms':>7s} {'x floor':>8s} {'target':>7s}   msgs to paint (up/down)   msgs in all (up/down)"
          "   kB in all")
    verdicts = []
    for name, samples in results.items():
        if not samples:
            print(f"{name:26s}   no sample painted")
            verdicts.append(False)
            continue
        ms = statistics.median(r["ms"] for r in samples)
        ratio = ms / floor
        target = TARGETS.get(name)
        verdict = "" if target is None else f"{target:g} {'ok' if ratio <= target else 'MISS'}"
        if target is not None:
            verdicts.append(ratio <= target)
        paint = [sum(1 for m in r["msgs"] if m["before_paint"] and m["dir"] == d) for r in samples for d in ("up",
                                                                                                            "down")]
        total = [sum(1 for m in r["msgs"] if m["dir"] == d) for r in samples for d in ("up", "down")]
        kb = statistics.median(sum(m["bytes"] for m in r["msgs"]) / 1e3 for r in samples)
        print(f"{name:26s} {ms:7.1f} {ratio:8.2f} {verdict:>7s}   "
              f"{statistics.median(paint[0::2]):>6.0f} / {statistics.median(paint[1::2]):<6.0f}"
              f"            {statistics.median(total[0::2]):>6.0f} / {statistics.median(total[1::2]):<6.0f}"
              f"         {kb:8.1f}")
    for line in failed:
        print(f"  failed sample (not in the medians): {line[:200]}")
    if cold["studio"]:
        s, d3 = statistics.median(cold["studio"]), statistics.median(cold["3d"])
        print(f"\ncold start: run all -> Studio drawn {s:.2f} s (target {COLD_START_TARGET_S:g} s on a quiet "
              f"machine), -> 3D drawn {d3:.2f} s")
    if verbose:
        for name, samples in results.items():
            print(f"\n{name}: messages of sample 1 (ms after the first; * before the paint)")
            msgs = samples[0]["msgs"]
            t0 = msgs[0]["t"] if msgs else 0
            for m in msgs:
                print(f"  {'*' if m['before_paint'] else ' '}{m['t'] - t0:7.1f} {m['dir']:>4s} {m['bytes']:>8d} B"
                      f"  {m['what']}")
            kinds = Counter((m["dir"], m["what"].split(" ")[0]) for r in samples for m in r["msgs"])
            print("  all samples:", dict(kinds))
    return 0 if all(verdicts) and not failed else 2


if __name__ == "__main__":
    raise SystemExit(main())
