"""The Studio on Colab's widget stack (ipywidgets 7.7.1, plotly 5.24.1, anywidget 0.9.21) in a real front end: the
classic Jupyter Notebook (notebook 6.x) in headless Debian chromium, driven by Playwright.

Runs where the tests run with ``notebook<7`` and ipywidgets 7 (``bash scripts/test_colab_versions.sh``), or where
``LEVITOR_IPYW7_PYTHON`` names such a Python (the tests themselves then run with any Python that has Playwright);
skipped elsewhere. On the bundled scene: every cell runs, the Studio draws (canvas, panels, the path table, the 3D
view), a click selects the tree (its overlay on the canvas), two path points are added, Undo and Redo, the path
table's depth slider moves the point (the canvas follows), the scale slider changes the control points, a key on
the canvas (ipyevents), Generate shows its video, a narrow window wraps the side panel. On a photo: mask mode's box
makes an object. The static 3D fallback fills its Output.
No page error and no console error on the way.
"""

from __future__ import annotations

import time

import pytest

from tests.browser.classic import (
    drag_jquery_slider,
    ipyw7_python,
    kernel_eval,
    kernel_json,
    open_notebook,
    run_all,
    settle,
    start_classic,
    wait_kernel,
)
from tests.browser.lab import JS_PIXEL, JS_VIEW3D, REPO, click_canvas, drag_canvas, drag_range, notebook_json, stop_lab

pytestmark = pytest.mark.browser

CANVAS = ".levitor-studio canvas"
TREE = (420, 150)  # the tree's crown in the bundled scene (as in test_studio_browser)
PATH_POINTS = [(455, 250), (490, 290)]
PHOTO_CELL = ("from levitor_widgets import Studio\n"
              "studio = Studio('astronaut.png', out_dir='levitor_out', name='astronaut')\n"
              "studio")
STATIC_CELL = ("from levitor.bundled import bundled_scene\n"
               "from levitor.viz.scene3d import scene_view_3d\n"
               "from levitor_widgets.view3d import View3D\n"
               "view = View3D(backend='static')\n"
               "view.show(scene_view_3d(bundled_scene()), hint='the static 3D view')\n"
               "view.widget")
VIEWPORT = {"width": 1280, "height": 2000}  # tall: the whole Studio fits in one screenshot
MIN_CONTROL_PX = 160  # a depth slider narrower than this cannot be set by hand (as in test_studio_browser)


@pytest.fixture(scope="module")
def classic(chromium, tmp_path_factory):
    python = ipyw7_python()
    if python is None:
        pytest.skip("needs notebook<7 and ipywidgets 7 (bash scripts/test_colab_versions.sh, or "
                    "LEVITOR_IPYW7_PYTHON=a Python that has them)")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    base = tmp_path_factory.mktemp("classic")
    root = base / "root"
    root.mkdir()
    (root / "01_quickstart.ipynb").write_bytes((REPO / "notebooks" / "01_quickstart.ipynb").read_bytes())
    Image.fromarray(skdata.astronaut()).save(root / "astronaut.png")
    (root / "photo.ipynb").write_text(notebook_json([PHOTO_CELL]))
    (root / "static.ipynb").write_text(notebook_json([STATIC_CELL]))
    proc = start_classic(python, base, root)
    try:
        yield proc
    finally:
        stop_lab(proc)


@pytest.fixture
def page(browser, shots):
    """A page that records every page error and console error (with the failing request's URL)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e} {e.stack}"))
    page.on("console", lambda m: page.errors.append(f"console.error: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url[:80]} {r.failure}"))
    try:
        yield page
    except BaseException:
        page.screenshot(path=str(shots / "colab7_failure.png"))
        raise
    finally:
        page.close()


def _studio_shot(page, path) -> None:
    page.locator(".levitor-studio").first.screenshot(path=str(path))


def _pixel_changes(page, xy, before, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    px = before
    while time.monotonic() < deadline and px == before:
        page.wait_for_timeout(50)
        px = page.evaluate(JS_PIXEL, [CANVAS, *xy])
    assert px != before, f"canvas pixel {xy} stayed {before}"
    return px


def test_quickstart_on_ipywidgets7(classic, page, shots):
    open_notebook(page, classic, "01_quickstart.ipynb")
    run_all(page)
    assert kernel_json(page, "__import__('ipywidgets').__version__").startswith("7.")
    canvas = page.locator(CANVAS).first
    canvas.wait_for(state="visible", timeout=30_000)
    assert kernel_json(page, "[o.name for o in studio.scene.objects]") == ["ball", "box"]
    # the panels, the path table (anywidget 0.9) and the 3D view (anywidget + the kernel's Plotly.js) are drawn
    assert page.locator(".levitor-depth-table tr").count() >= 4  # a header and P1..P3 of the box
    page.wait_for_function("([js, scope]) => { const s = (eval(js))(scope); return !!s && s.points > 0 && "
                           "s.traces >= 2; }", arg=[JS_VIEW3D, ".levitor-studio"], timeout=60_000, polling=200)
    page.get_by_role("button", name="box", exact=True).last.wait_for()
    _studio_shot(page, shots / "colab7_01_loaded.png")

    # ---- a click on the tree selects it: its overlay is drawn, and the Studio goes on in path mode
    page.get_by_role("button", name="select", exact=True).click()
    wait_kernel(page, "studio.mode", lambda m: m == "select")
    settle(page)
    before = page.evaluate(JS_PIXEL, [CANVAS, *TREE])
    click_canvas(page, canvas, *TREE)
    _pixel_changes(page, TREE, before)
    objs = wait_kernel(page, "[(o.name, o.mask_index) for o in studio.scene.objects]", lambda v: len(v) == 3)
    assert objs[2][1] == kernel_json(page, f"studio.scene.mask_at({TREE[0]}, {TREE[1]})")
    assert kernel_json(page, "studio.mode") == "path"

    # ---- two path points, one undo step each
    for i, (x, y) in enumerate(PATH_POINTS):
        settle(page)
        click_canvas(page, canvas, x, y)
        wait_kernel(page, "len(studio.scene.objects[-1].path)", lambda n, i=i: n == 2 + i)
    path = kernel_json(page, "[(round(p.x), round(p.y)) for p in studio.scene.objects[-1].path[1:]]")
    assert all(abs(px - x) <= 2 and abs(py - y) <= 2 for (px, py), (x, y) in zip(path, PATH_POINTS))
    settle(page)
    assert kernel_json(page, "[s.label for s in studio.editor.undo_stack][-2:]") == ["add a path point"] * 2
    _studio_shot(page, shots / "colab7_02_selected_path.png")

    # ---- Undo removes the last point (its handle leaves the canvas), Redo brings it back
    handle = page.evaluate(JS_PIXEL, [CANVAS, *PATH_POINTS[1]])
    page.locator(".levitor-studio button", has_text="undo").first.click()
    wait_kernel(page, "len(studio.scene.objects[-1].path)", lambda n: n == 2)
    settle(page)
    _pixel_changes(page, PATH_POINTS[1], handle)
    page.locator(".levitor-studio button", has_text="redo").first.click()
    wait_kernel(page, "len(studio.scene.objects[-1].path)", lambda n: n == 3)
    settle(page)

    # ---- the path table's depth slider: P3's depth changes by one undo step, and the canvas follows
    kernel_eval(page, "studio.set_frame(studio.scene.num_frames - 1)")
    settle(page)
    depth_before = kernel_json(page, "studio.scene.objects[-1].path[2].depth")
    shown = page.evaluate("(sel) => document.querySelector(sel).toDataURL()", CANVAS)
    slider = page.locator(".levitor-depth-table tr", has_text="P3").locator("input.levitor-nearness-slider").first
    assert slider.bounding_box()["width"] >= MIN_CONTROL_PX
    drag_range(page, slider, 0.5)
    depth_after = wait_kernel(page, "studio.scene.objects[-1].path[2].depth", lambda d: d != depth_before)
    assert depth_after > depth_before  # towards "farther": the new point followed the ground (it was nearest)
    settle(page)
    steps = kernel_json(page, "[(s.label, round(s.time, 2)) for s in studio.editor.undo_stack]")
    assert [label for label, _ in steps[-3:]] == ["add a path point"] * 2 + ["set a depth"], steps
    page.wait_for_function("([sel, old]) => document.querySelector(sel).toDataURL() !== old", arg=[CANVAS, shown],
                           timeout=10_000, polling=100)
    page.locator(".levitor-depth-table").first.screenshot(path=str(shots / "colab7_03_path_table.png"))

    # ---- the scale slider (an ipywidgets 7 jQuery UI slider): more control points
    n_before = kernel_json(page, "studio.result.signal.num_points")
    settle(page)
    drag_jquery_slider(page, page.locator(".widget-slider", has_text="control-point scale").first, 0.9)
    wait_kernel(page, "studio.scene.scale", lambda s: s > 2.0)
    wait_kernel(page, "studio.result.signal.num_points", lambda n: n > n_before)
    page.wait_for_function("(n) => (document.querySelector('.levitor-studio').innerText"
                           ".match(/(\\d+) control points/) || [0, -1])[1] > n", arg=n_before, timeout=10_000)

    # ---- a key on the canvas (ipyevents): ArrowLeft steps one frame back
    frame = kernel_json(page, "studio.view.frame")
    canvas.scroll_into_view_if_needed()
    canvas.hover()
    page.keyboard.press("ArrowLeft")
    wait_kernel(page, "studio.view.frame", lambda f: f == frame - 1)
    # the Studio's keys are not the classic Notebook's command-mode shortcuts ('m' would make the cell markdown)
    cells = page.evaluate("() => Jupyter.notebook.get_cells().map(c => c.cell_type)")
    for key, mode in (("m", "mask"), ("c", "camera"), ("p", "path")):
        page.keyboard.press(key)
        wait_kernel(page, "studio.mode", lambda m, mode=mode: m == mode)
    assert page.evaluate("() => Jupyter.notebook.get_cells().map(c => c.cell_type)") == cells

    # ---- Generate: the preview (no weights here) plays in the panel's video
    old = kernel_json(page, "str(studio.generate_panel.outcome.video_path)")  # the notebook's generate cell's
    button = page.locator(".levitor-studio button", has_text="Generate").first
    button.scroll_into_view_if_needed()
    button.click()
    video = wait_kernel(page, "str(studio.generate_panel.outcome.video_path) if studio.generate_panel.outcome "
                              "else ''", lambda v: v and v != old, timeout_s=120)
    assert video.endswith((".mp4", ".gif"))
    page.wait_for_function("() => { const v = document.querySelector('.levitor-studio video');"
                           " return v && v.readyState >= 2; }", timeout=30_000)
    assert "saved" in kernel_json(page, "studio.generate_panel.status.value")
    _studio_shot(page, shots / "colab7_04_generated.png")

    # ---- a narrow window (the Studio's output ~600 px): nothing is cut off or squeezed, the side panel wraps
    page.set_viewport_size({"width": 900, "height": VIEWPORT["height"]})
    page.wait_for_timeout(500)
    studio = page.locator(".levitor-studio").first.bounding_box()
    for name in ("ball", "remove", "save", "load"):
        b = page.locator(".levitor-studio button", has_text=name).last.bounding_box()
        assert b["width"] >= 40 and b["x"] + b["width"] <= studio["x"] + studio["width"] + 1, (name, b, studio)
    _studio_shot(page, shots / "colab7_07_narrow.png")
    assert not page.errors, "\n".join(page.errors)


def test_photo_box_on_ipywidgets7(classic, page, shots):
    """An own photo: the crop panel shows, mask mode's box (GrabCut) makes an object."""
    open_notebook(page, classic, "photo.ipynb")
    run_all(page)
    canvas = page.locator(CANVAS).first
    canvas.wait_for(state="visible", timeout=30_000)
    assert page.locator(".levitor-studio", has_text="Crop").count() == 1
    page.locator(".levitor-studio img").first.wait_for()  # the crop's thumbnail (an ipywidgets Image)
    _studio_shot(page, shots / "colab7_05_photo_opened.png")
    page.get_by_role("button", name="mask", exact=True).click()
    wait_kernel(page, "[studio.mode, studio.tool]", lambda v: v == ["mask", "box"])
    settle(page)
    drag_canvas(page, canvas, 150, 60, 330, 318)  # a box around the astronaut's head and shoulders
    objs = wait_kernel(page, "[int(m.sum()) for m in studio.scene.masks]", lambda v: len(v) >= 1, timeout_s=60)
    assert objs[-1] > 0.01 * 512 * 320
    settle(page)
    _studio_shot(page, shots / "colab7_06_photo_box.png")
    assert not page.errors, "\n".join(page.errors)


def test_static_3d_fallback_fills_its_output_on_ipywidgets7(classic, page):
    """Where anywidget is missing the 3D view is an Output holding a plotly bundle: its state reaches ipywidgets
    7's Output view (the classic Notebook has no plotly renderer: it shows the bundle's text)."""
    open_notebook(page, classic, "static.ipynb")
    run_all(page)
    area = page.locator(".jupyter-widgets-output-area").first
    area.wait_for(timeout=30_000)
    page.wait_for_function("() => { const t = document.querySelector('.jupyter-widgets-output-area').innerText;"
                           " return t.includes('the static 3D view') && t.includes('<3D view>'); }", timeout=30_000)
    assert not page.errors, "\n".join(page.errors)
