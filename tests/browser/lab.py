"""Driving the Studio in JupyterLab from Playwright: kernel access, waits, canvas clicks and in-page latency
watchers. Shared by the browser tests and bench/bench_studio_browser.py (through them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOKEN = "levitor-browser-test"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}

KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
HANG_MS = 3000.0  # a click or slider that takes longer to reach the canvas is broken, not slow

JS_KERNEL_EVAL = """async (code) => {
  const k = """ + KERNEL + """;
  const fut = k.requestExecute({code, silent: false, store_history: false});
  let out = '';
  fut.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    if (t === 'error') out += 'KERNEL-ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await fut.done;
  return out;
}"""

JS_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""

JS_ALL_RUN = """() => {
  const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'));
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)) && k.status === 'idle';
}"""

# Watch the canvas from inside the page: t0 when the event starts (pointerdown/pointerup on the canvas, or input on
# a slider), t1 at the first poll where the watched pixels differ from before.
JS_WATCH = """async ([sel, x, y, w, h, startEvent]) => {
  // a big region is hashed on a sparse grid (every 5th pixel): the watcher must not take the CPU it measures
  const step = 4 * (w * h > 10000 ? 5 : 1);
  const sig = () => { const c = document.querySelector(sel);   // looked up each time: never a stale element
                      const d = c.getContext('2d').getImageData(x, y, w, h).data; let s = 0;
                      for (let i = 0; i < d.length; i += step)
                        s = (s * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 1000000007;
                      return s; };
  // arm only once the canvas has been still for 200 ms (images from the previous edit decode asynchronously)
  let base = sig(), still = performance.now();
  while (performance.now() - still < 200) {
    await new Promise(r => setTimeout(r, 10));
    const now = sig();
    if (now !== base) { base = now; still = performance.now(); }
  }
  const lat = {t0: null, t1: null, polls: 0, base: base};
  window.__lat = lat;
  document.addEventListener(startEvent, (e) => { if (lat.t0 === null) { lat.t0 = performance.now();
                                                  lat.target = e.target.tagName + '.' + e.target.className; } },
                            {capture: true, once: true});
  const poll = () => {
    lat.polls += 1;
    try {
      lat.last = sig();
      if (lat.t0 !== null && lat.last !== base) { lat.t1 = performance.now(); return; }
    } catch (e) { lat.error = String(e); return; }
    setTimeout(poll, 4);
  };
  poll();
}"""

# Watch the Studio's info line ("frame i/F, N control points, ...", written right after the points are drawn)
# until the number of control points differs: a change no other redraw can fake.
JS_WATCH_POINTS = """([sel, startEvent]) => {
  const count = () => { const m = document.querySelector(sel).innerText.match(/(\\d+) control points/);
                        return m ? m[1] : null; };
  const base = count();
  const lat = {t0: null, t1: null, polls: 0, base: base};
  window.__lat = lat;
  document.addEventListener(startEvent, () => { if (lat.t0 === null) lat.t0 = performance.now(); },
                            {capture: true, once: true});
  const poll = () => {
    lat.polls += 1;
    lat.last = count();
    if (lat.t0 !== null && lat.last !== base) { lat.t1 = performance.now(); return; }
    setTimeout(poll, 2);
  };
  poll();
}"""

JS_PIXEL = """([sel, x, y]) => Array.from(document.querySelector(sel).getContext('2d').getImageData(x, y, 1, 1).data)"""

# The 3D view of the Studio in cell K: how many points and traces the browser's plot really has.
JS_VIEW3D = """(sel) => { const v = document.querySelector(sel + ' .levitor-view3d');
  if (!v) return null;
  const plot = v.querySelector('.js-plotly-plot');
  return {points: +(v.dataset.points || 0), traces: plot && plot.data ? plot.data.length : 0,
          drawn: +(v.dataset.drawn || 0), hint: (v.querySelector('.levitor-view3d-hint') || {}).textContent || ''}; }"""


def kernel_eval(page, code: str, js: str = JS_KERNEL_EVAL) -> str:
    """Run code in the page's kernel; its printed output. ``js``: how this front end reaches its kernel."""
    out = page.evaluate(js, code)
    assert "KERNEL-ERROR" not in out, out
    return out


def kernel_json(page, expr: str, js: str = JS_KERNEL_EVAL):
    return json.loads(kernel_eval(page, f"import json as _j; print(_j.dumps({expr}))", js).strip())


def wait_kernel(page, expr: str, predicate, timeout_s: float = 20.0, js: str = JS_KERNEL_EVAL):
    """Poll a kernel expression until predicate(value) holds; return the value."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = kernel_json(page, expr, js)
        if predicate(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"kernel value {expr} = {value!r} never satisfied the check")


def settle(page, name: str = "studio", js: str = JS_KERNEL_EVAL) -> None:
    """Wait until the Studio has no throttled update or follower pending (a measurement sees only its own)."""
    wait_kernel(page, f"{name}.scheduler.idle", bool, timeout_s=60, js=js)


def latency_ms(page, timeout_ms: int = 30_000, name: str = "studio") -> float:
    try:
        page.wait_for_function("() => window.__lat && window.__lat.t1 !== null", timeout=timeout_ms)
    except Exception:
        lat = page.evaluate("() => window.__lat")
        code = f"print({name}.timings, {name}.mode, {name}.view, {name}.canvas.errors, {name}.messages.text)"
        raise AssertionError(f"the canvas did not change: {lat}; kernel: {kernel_eval(page, code)}") from None
    lat = page.evaluate("() => window.__lat")
    return float(lat["t1"] - lat["t0"])


def canvas_point(box, x, y, width=512, height=320):
    return box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height


def click_canvas(page, canvas, x, y) -> None:
    """Click canvas pixel (x, y); the box is measured right before (screenshots and edits scroll the page)."""
    canvas.scroll_into_view_if_needed()
    page.mouse.click(*canvas_point(canvas.bounding_box(), x, y))


def drag_canvas(page, canvas, x0, y0, x1, y1, steps: int = 8, release: bool = True) -> None:
    """A real pointer drag on the canvas from pixel (x0, y0) to (x1, y1) (which may lie outside it)."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(*canvas_point(box, x0, y0))
    page.mouse.down()
    for t in [(k + 1) / steps for k in range(steps)]:
        page.mouse.move(*canvas_point(box, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
        page.wait_for_timeout(45)  # the canvas throttles moves to one per 40 ms
    if release:
        page.mouse.up()


def snap(page, anchor, path) -> None:
    """A viewport screenshot with ``anchor`` in view. (An element screenshot of the tall Studio makes
    Playwright resize the viewport, which re-lays out JupyterLab and disturbs the canvas mid-test.)"""
    anchor.scroll_into_view_if_needed()
    page.screenshot(path=str(path))


def drag_slider(page, slider, fraction: float, track: str = ".noUi-target", handle: str = ".noUi-handle") -> None:
    """Drag a slider's handle to ``fraction`` of its track (a real pointer drag); ``track`` and ``handle``: their
    selectors (ipywidgets 8's noUiSlider by default)."""
    track = slider.locator(track).first
    handle = slider.locator(handle).first
    track.scroll_into_view_if_needed()
    tb, hb = track.bounding_box(), handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(tb["x"] + tb["width"] * fraction, tb["y"] + tb["height"] / 2, steps=4)
    page.mouse.up()


def drag_range(page, slider, fraction: float) -> None:
    """Drag a native ``<input type=range>`` (the path table's) to ``fraction`` of its track: press on the track
    there (the thumb jumps, as in every browser), move a little, release (a real pointer drag)."""
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    x, y = box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 2, y, steps=2)
    page.mouse.up()


def open_notebook(page, lab, name: str) -> float:
    """Open a notebook and wait for its kernel; returns the seconds it took."""
    proc, _root = lab
    if page.url.startswith(proc.base_url):  # leave the notebook open now saved: no "leave the page?" prompt
        save_notebook(page)
    t0 = time.monotonic()
    page.goto(f"{proc.base_url}/lab/tree/{name}?reset&token={proc.token}")  # reset: no other notebook tabs
    page.wait_for_function("(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                           " return !!w && !!w.context && w.context.path.endsWith(name); }", arg=name,
                           timeout=90_000, polling=200)
    page.wait_for_function(JS_KERNEL_IDLE, timeout=90_000, polling=200)
    return time.monotonic() - t0


def run_all(page, timeout_ms: int = 180_000) -> float:
    t0 = time.monotonic()
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(JS_ALL_RUN, timeout=timeout_ms, polling=250)
    return time.monotonic() - t0


def restart_kernel(page) -> None:
    """Restart the kernel (no dialog) and wait until it is idle again."""
    page.evaluate(f"async () => {{ await {KERNEL}.restart(); }}")
    page.wait_for_function(JS_KERNEL_IDLE, timeout=90_000, polling=200)


def save_notebook(page) -> None:
    page.evaluate("async () => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                  " if (w && w.context) await w.context.save(); }")


def view3d_state(page, scope: str = ".levitor-studio"):
    return page.evaluate(JS_VIEW3D, scope)


def wait_view3d(page, scope: str = ".levitor-studio", min_traces: int = 2, timeout_ms: int = 60_000) -> dict:
    """Wait until the 3D view in ``scope`` has drawn a cloud and at least ``min_traces`` traces in the browser."""
    page.wait_for_function("([js, scope, n]) => { const s = (eval(js))(scope); "
                           "return !!s && s.points > 0 && s.traces >= n; }",
                           arg=[JS_VIEW3D, scope, min_traces], timeout=timeout_ms, polling=200)
    return view3d_state(page, scope)


# ---------------------------------------------------------------------- the server and the notebooks
def chromium_path() -> str | None:
    env = os.environ.get("LEVITOR_CHROMIUM")
    for p in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if p and Path(p).exists():
            return p
    return shutil.which("chromium")


def start_lab(base: Path, root: Path):
    """JupyterLab on ``root`` (started with ``levitor_widgets.launch``), its config, runtime, settings and workspace
    folders in ``base/state`` (outside the root: they don't show in the file browser or screenshots). Waits until
    it answers; returns the process (stop it with :func:`stop_lab`)."""
    from levitor_widgets.launch import launch_studio, wait_ready

    state = base / "state"
    settings = state / "settings"
    _write(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
           {"fetchNews": "false", "checkForUpdates": False})  # no "get news?" toast over the notebook
    _write(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
           {"windowingMode": "none"})  # every cell in the DOM, so locators find them
    env = {
        "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = launch_studio(None, open_browser=False, root_dir=root, token=TOKEN, env=env,
                         extra_args=["--LabApp.expose_app_in_browser=True"], log_path=base / "jupyter.log")
    try:
        wait_ready(proc, timeout=90)
    except BaseException:
        stop_lab(proc)
        raise
    return proc


def stop_lab(proc) -> None:
    """Kill the server's whole process group (its kernels too)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, OSError):
        pass
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)


def notebook_json(cells: list[str]) -> str:
    """A notebook of code cells (python3 kernel), as its file's text."""
    doc = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                      "source": src} for i, src in enumerate(cells)],
           "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1)


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
