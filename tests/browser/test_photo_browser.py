"""Your own photo in a real browser, and everything a notebook does to a Studio that must not lose work:
a re-run cell, a kernel restart, a page reload, "Restart and Clear Outputs", two photos in one folder.

One page walks through the scenarios in order (each leaves the state the next starts from); each asserts on the
browser's pixels and plot, and on the kernel's Scene, and saves a screenshot.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.browser.lab import (
    JS_PIXEL,
    JS_WATCH,
    click_canvas,
    drag_canvas,
    kernel_eval,
    kernel_json,
    latency_ms,
    open_notebook,
    restart_kernel,
    run_all,
    save_notebook,
    settle,
    snap,
    wait_kernel,
    wait_view3d,
)

pytestmark = pytest.mark.browser

CANVAS = ".levitor-studio canvas"
HEAD_BOX = (25, 2, 450, 318)  # around the cat's head (canvas pixels of the 512x320 scene)
NOSE = (300, 265)
PATH = [(380, 240), (440, 200)]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def page(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text  # (a video's range
            and page.errors.append(m.text))  # request) "Error setting state" is a console error
    yield page
    if os.environ.get("LEVITOR_BROWSER_TIMINGS") and TIMINGS:  # bench/bench_studio_browser.py collects these
        with open(os.environ["LEVITOR_BROWSER_TIMINGS"], "a") as fh:
            fh.write(json.dumps(TIMINGS) + "\n")
    page.close()


@pytest.fixture
def shot(page, shots):
    """Screenshot on failure too."""
    yield shots
    if getattr(page, "failed", False):
        page.screenshot(path=str(shots / "failure.png"))


def _studio_ready(page, timeout_ms=60_000):
    canvas = page.locator(CANVAS).first
    canvas.wait_for(state="visible", timeout=timeout_ms)
    return canvas


def _mask_pixel_shown(page, x, y) -> bool:
    """The mask overlay is drawn at (x, y): the composite canvas differs from the photo there."""
    shown = page.evaluate(JS_PIXEL, [CANVAS, x, y])
    photo = kernel_json(page, f"studio.scene.image[{y}, {x}].tolist()")
    return max(abs(a - b) for a, b in zip(shown[:3], photo)) > 20


def _overlay_everywhere(page) -> bool:
    """The whole mask layer is drawn: pixels spread over the object's mask all show the overlay."""
    pts = kernel_json(page, "[(int(x), int(y)) for y, x in __import__('numpy').argwhere(studio.result.instance[0]"
                            ".numpy() == studio.result.object_ids[0])[::4000][:8]]")
    return len(pts) >= 4 and all(_mask_pixel_shown(page, x, y) for x, y in pts)


def test_own_photo_without_weights_open_box_path_preview(page, lab, shots):
    TIMINGS["lab_ready_s"] = open_notebook(page, lab, "photo.ipynb")
    TIMINGS["cold_start_s"] = run_all(page)  # a cold kernel: the Studio cell, start to finish
    canvas = _studio_ready(page)
    assert kernel_json(page, "[len(studio.scene.masks), studio.mode, studio.tool]") == [0, "mask", "box"]
    v = wait_view3d(page, min_traces=2)
    assert v["points"] > 1000 and "no objects yet" in v["hint"]
    assert "weights" in kernel_json(page, "studio.messages.text") or "depth model" in kernel_json(
        page, "studio.messages.text")
    snap(page, canvas, shots / "photo_01_opened.png")

    settle(page)
    canvas.scroll_into_view_if_needed()
    page.evaluate(JS_WATCH, [CANVAS, NOSE[0] - 2, NOSE[1] - 2, 5, 5, "pointerup"])
    drag_canvas(page, canvas, *HEAD_BOX)  # the box tool: GrabCut in the box
    TIMINGS["photo_box_to_mask_ms"] = latency_ms(page, 60_000)
    n = wait_kernel(page, "len(studio.scene.masks)", lambda n: n == 1, 30)
    assert n == 1 and kernel_json(page, "studio.scene.mask_sources") == ["grabcut"]
    box = kernel_json(page, "studio.last_tool[1]")
    assert all(abs(a - b) <= 3 for a, b in zip(box, HEAD_BOX)), box
    assert 0.4 < kernel_json(page, "float(studio.scene.masks[0].mean())") < 0.9
    assert kernel_json(page, f"bool(studio.scene.masks[0][{NOSE[1]}, {NOSE[0]}])")
    settle(page)
    assert _mask_pixel_shown(page, *NOSE)
    snap(page, canvas, shots / "photo_02_grabcut.png")

    page.get_by_role("button", name="path", exact=True).click()
    wait_kernel(page, "studio.mode", lambda m: m == "path")
    for i, (x, y) in enumerate(PATH):
        settle(page)
        click_canvas(page, canvas, x, y)
        wait_kernel(page, "len(studio.scene.objects[0].path)", lambda n, i=i: n == 2 + i)
    settle(page)
    v = wait_view3d(page, min_traces=9)  # photo plane, 4 frustum edges, camera, path, its points, the object
    assert v["hint"] == ""

    button = page.locator(".levitor-studio button", has_text="Generate").first
    button.scroll_into_view_if_needed()
    t0 = time.monotonic()
    button.click()
    wait_kernel(page, "str(studio.generate_panel.outcome.video_path) if studio.generate_panel.outcome else ''",
                bool, timeout_s=90)
    page.wait_for_function("() => { const v = document.querySelector('.levitor-studio video');"
                           " return v && v.readyState >= 2; }", timeout=30_000)
    TIMINGS["photo_preview_s"] = time.monotonic() - t0
    assert "preview" in kernel_json(page, "studio.generate_panel.status.value")
    snap(page, page.locator(".levitor-studio video").first, shots / "photo_03_path_preview.png")
    page.locator(".levitor-view3d").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "photo_04_3d_view.png"))


def test_rerun_the_cell_shows_the_3d_view_and_keeps_the_work(page, shots):
    settle(page)
    before = kernel_json(page, "[len(studio.scene.objects), len(studio.scene.objects[0].path)]")
    t0 = time.monotonic()
    run_all(page)
    v = wait_view3d(page, min_traces=9)
    TIMINGS["rerun_to_3d_s"] = time.monotonic() - t0
    assert kernel_json(page, "[len(studio.scene.objects), len(studio.scene.objects[0].path)]") == before
    assert kernel_json(page, "studio.resumed") is True
    assert v["traces"] == 1 + kernel_json(page, "studio.view3d.num_traces")  # every kernel trace is in the plot
    assert _mask_pixel_shown(page, *NOSE)
    snap(page, page.locator(".levitor-view3d").first, shots / "photo_05_rerun.png")


def test_restart_the_kernel_and_rerun(page, shots):
    restart_kernel(page)
    t0 = time.monotonic()
    run_all(page)
    wait_view3d(page, min_traces=9)
    TIMINGS["restart_rerun_to_3d_s"] = time.monotonic() - t0
    assert kernel_json(page, "[studio.resumed, len(studio.scene.objects[0].path)]") == [True, 3]
    settle(page)
    assert _mask_pixel_shown(page, *NOSE)
    snap(page, page.locator(CANVAS).first, shots / "photo_06_restarted.png")


def test_reload_the_page_redraws_canvas_and_3d(page, lab, shots):
    settle(page)
    save_notebook(page)  # the outputs (widget views) are in the saved notebook; the widgets live in the kernel
    page.reload()
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=90_000)
    canvas = _studio_ready(page)
    wait_view3d(page, min_traces=9)
    wait_kernel(page, "studio.canvas.redraws", lambda n: n >= 1)  # the kernel redrew every layer for the new view
    page.wait_for_timeout(500)
    assert _overlay_everywhere(page)
    # the next edit redraws fully, not a box-shaped patch over an empty layer
    click_canvas(page, canvas, 470, 150)
    wait_kernel(page, "len(studio.scene.objects[0].path)", lambda n: n == 4)
    settle(page)
    assert _overlay_everywhere(page)
    snap(page, canvas, shots / "photo_07_reloaded.png")


def test_restart_and_clear_outputs_then_run_all(page, shots):
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:restart-clear-output'); }")
    page.locator(".jp-Dialog .jp-mod-accept").click(timeout=20_000)
    page.wait_for_function("() => document.querySelectorAll('.levitor-studio').length === 0", timeout=30_000)
    page.wait_for_timeout(1000)
    from tests.browser.lab import JS_KERNEL_IDLE

    page.wait_for_function(JS_KERNEL_IDLE, timeout=90_000, polling=200)
    run_all(page)
    wait_view3d(page, min_traces=9)
    assert kernel_json(page, "[studio.resumed, len(studio.scene.objects[0].path)]") == [True, 4]
    settle(page)
    assert _mask_pixel_shown(page, *NOSE)
    snap(page, page.locator(".levitor-view3d").first, shots / "photo_08_restart_clear.png")
    assert not page.errors, page.errors  # no "gd.data must be an array", no "Error setting state"


def test_two_photos_in_one_folder_keep_their_own_autosaves(page, lab, shots):
    open_notebook(page, lab, "two.ipynb")
    run_all(page)
    cat, cup = page.locator(".levitor-studio").nth(0), page.locator(".levitor-studio").nth(1)
    cat_canvas, cup_canvas = cat.locator("canvas").first, cup.locator("canvas").first
    cat_canvas.wait_for(state="visible", timeout=60_000)
    drag_canvas(page, cat_canvas, *HEAD_BOX)
    wait_kernel(page, "len(cat.scene.objects)", lambda n: n == 1, 30)
    drag_canvas(page, cup_canvas, 150, 20, 400, 250)
    wait_kernel(page, "len(cup.scene.objects)", lambda n: n == 1, 30)
    drag_canvas(page, cup_canvas, 60, 230, 170, 315)
    wait_kernel(page, "len(cup.scene.objects)", lambda n: n == 2, 30)
    settle(page, "cat")
    settle(page, "cup")
    snap(page, cup_canvas, shots / "photo_09_two_photos.png")
    restart_kernel(page)
    run_all(page)
    assert kernel_json(page, "[cat.resumed, len(cat.scene.objects), cup.resumed, len(cup.scene.objects)]") == [
        True, 1, True, 2]
    folders = kernel_eval(page, "import os; print(sorted(os.listdir('shared/autosaves')))")
    assert "chelsea-" in folders and "coffee-" in folders
