"""The Studio's layout in JupyterLab's default window: 1400x1000 with the file browser open, on a photo of another
aspect (scikit-image's astronaut, 512x512, which the 512x320 scene crops).

Checks what a user sees first: no horizontal scrollbar anywhere in the Studio's output, every slider, text box and
button at least its minimum width (the per-point depth sliders at least 160 px), the crop shown with its bands
dimmed and movable, and a click just left of the image that leaves the output as it was (JupyterLab's prompt
column collapses an output into a scroll box when clicked). Screenshots: docs/screenshots/layout_*.png with
LEVITOR_SAVE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.lab import (
    click_canvas,
    kernel_json,
    open_notebook,
    run_all,
    settle,
    snap,
    wait_kernel,
)

pytestmark = pytest.mark.browser
DEPTH_SLIDERS: list[dict] = []  # the per-point depth sliders' widths, measured by the first test

NOTEBOOK = "layout.ipynb"
CELL = ("from levitor_widgets import Studio\n"
        "studio = Studio('astronaut.png', out_dir='layout_out', name='astronaut')\n"
        "studio")
CANVAS = ".levitor-studio canvas"
MIN_SLIDER_PX = 100  # a slider's track: enough to set a value by dragging
MIN_DEPTH_SLIDER_PX = 160  # the per-point depth sliders (issue 23)
MIN_INPUT_PX = 40
OBJECT_BOX = (120, 10, 420, 318)  # around the astronaut (scene pixels, the crop moved to the top)

# Everything in the Studio's output area that shows a horizontal scrollbar (overflow-x auto/scroll and wider
# content than box), and every visible control narrower than its minimum.
JS_LAYOUT = """([minSlider, minInput]) => {
  const studio = document.querySelector('.levitor-studio');
  const area = studio.closest('.jp-OutputArea') || studio.parentElement;
  const name = (e) => e.tagName.toLowerCase() + '.' + String(e.className || '').split(' ').slice(0, 3).join('.');
  const visible = (e) => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
                           return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; };
  const scrollbars = [];
  for (const e of [area, ...area.querySelectorAll('*')]) {
    const s = getComputedStyle(e);
    if (['auto', 'scroll'].includes(s.overflowX) && e.scrollWidth > e.clientWidth + 1 && visible(e))
      scrollbars.push({el: name(e), scrollWidth: e.scrollWidth, clientWidth: e.clientWidth});
  }
  const narrow = [];
  for (const t of studio.querySelectorAll('.noUi-target, .slider-container, input[type=range]')) {
    const box = t.closest('.widget-slider, .jupyter-widget-slider');
    const label = box ? ((box.querySelector('.widget-label, label') || {}).innerText || '').trim() : '';
    if (!visible(t) || /^P\d+/.test(label)) continue;  // the per-point depth sliders: JS_DEPTH_SLIDERS
    const w = t.getBoundingClientRect().width;
    if (w < minSlider) narrow.push({el: name(t), width: w, min: minSlider});
  }
  for (const t of studio.querySelectorAll('input[type=text], input[type=number], select, textarea')) {
    if (!visible(t)) continue;
    const w = t.getBoundingClientRect().width;
    if (w < minInput) narrow.push({el: name(t), width: w, min: minInput});
  }
  const cut = [];
  for (const b of studio.querySelectorAll('button')) {
    if (visible(b) && b.scrollWidth > b.clientWidth + 1) cut.push({el: name(b), text: b.innerText,
                                                                   scrollWidth: b.scrollWidth,
                                                                   clientWidth: b.clientWidth});
  }
  return {scrollbars, narrow, cut, studioWidth: studio.getBoundingClientRect().width,
          areaWidth: area.getBoundingClientRect().width};
}"""

# The track widths of the path table's per-point depth sliders (the rows "P1", "P2", ...).
JS_DEPTH_SLIDERS = """() => {
  const out = [];
  for (const tr of document.querySelectorAll('.levitor-studio .levitor-depth-table tr')) {
    const t = tr.querySelector('input.levitor-nearness-slider');
    const label = ((tr.querySelector('td') || {}).innerText || '').trim();
    if (!t || !/^P\\d+/.test(label)) continue;
    const r = t.getBoundingClientRect();
    if (r.width > 0) out.push({label, width: r.width});
  }
  return out;
}"""


JS_FILE_BROWSER = """() => { const fb = document.querySelector('#filebrowser');
  return !!fb && fb.getBoundingClientRect().width > 150 && !window.jupyterapp.shell.leftCollapsed; }"""

JS_OUTPUT_STATE = """() => { const studio = document.querySelector('.levitor-studio');
  const cell = studio.closest('.jp-CodeCell');
  const c = studio.querySelector('canvas').getBoundingClientRect();
  const out = studio.closest('.jp-OutputArea');
  return {scrolled: !!cell && cell.classList.contains('jp-mod-outputsScrolled'),
          collapsed: !!cell && cell.classList.contains('jp-mod-outputsCollapsed'),
          canvasHeight: c.height, areaHeight: out ? out.getBoundingClientRect().height : 0}; }"""

# What lies 8 px left of the image's left edge, at mid height: it must be the Studio, not the prompt column.
JS_LEFT_OF_IMAGE = """() => { const c = document.querySelector('.levitor-studio canvas').getBoundingClientRect();
  const e = document.elementFromPoint(c.left - 8, c.top + c.height / 2);
  return {inStudio: !!e && !!e.closest('.levitor-studio'), inPrompt: !!e && !!e.closest('.jp-OutputPrompt'),
          el: e ? e.tagName + '.' + e.className : null, x: c.left - 8, y: c.top + c.height / 2}; }"""


@pytest.fixture(scope="module")
def page(lab, browser):
    _proc, root = lab
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(skdata.astronaut()).save(root / "astronaut.png")
    doc = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                      "source": CELL}],
           "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
    (root / NOTEBOOK).write_text(json.dumps(doc))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def _layout_problems(page, where: str) -> list[str]:
    """What is wrong with the layout now (every check runs, so one test run shows all of it)."""
    got = page.evaluate(JS_LAYOUT, [MIN_SLIDER_PX, MIN_INPUT_PX])
    out = []
    if got["scrollbars"]:
        out.append(f"{where}: horizontal scrollbars in the Studio's output: {got['scrollbars']}")
    if got["narrow"]:
        out.append(f"{where}: controls narrower than their minimum: {got['narrow']}")
    if got["cut"]:
        out.append(f"{where}: buttons whose label is cut: {got['cut']}")
    return out


def test_layout_at_1400_with_the_file_browser_open(page, lab, shots):
    open_notebook(page, lab, NOTEBOOK)
    page.evaluate("() => window.jupyterapp.shell.activateById('filebrowser')")
    page.wait_for_function(JS_FILE_BROWSER, timeout=20_000)
    run_all(page)
    canvas = page.locator(CANVAS).first
    canvas.wait_for(state="visible", timeout=60_000)
    settle(page)
    page.wait_for_timeout(500)
    snap(page, canvas, shots / "layout_01_opened.png")

    # the crop: said, shown (the whole photo with its bands dimmed) and movable before any mask
    assert "the photo is cropped to the scene's 512x320" in kernel_json(page, "studio.messages.text")
    crop = page.locator(".levitor-studio img").first
    assert crop.is_visible() and crop.bounding_box()["width"] >= 150
    # the side panel sits beside the canvas here (it goes under it only where the output is too narrow)
    assert crop.bounding_box()["x"] > canvas.bounding_box()["x"] + canvas.bounding_box()["width"]
    problems = _layout_problems(page, "opened")

    # the canvas is clear of the prompt column: a click 8 px left of the image lands in the Studio
    left = page.evaluate(JS_LEFT_OF_IMAGE)
    assert left["inStudio"] and not left["inPrompt"], left
    before = page.evaluate(JS_OUTPUT_STATE)
    page.mouse.click(left["x"], left["y"])
    page.wait_for_timeout(500)
    after = page.evaluate(JS_OUTPUT_STATE)
    assert not after["scrolled"] and not after["collapsed"], after
    assert abs(after["areaHeight"] - before["areaHeight"]) < 2, (before, after)

    # move the crop up (the astronaut keeps the top of her head), then make an object and a path
    crop.scroll_into_view_if_needed()
    box = crop.bounding_box()
    crop.click(position={"x": box["width"] / 2, "y": 3})  # a click near the picture's top: the crop goes up
    wait_kernel(page, "studio.scene.crop_offset", lambda v: v == -1.0)
    settle(page)
    assert "crop moved to -1.00" in kernel_json(page, "studio.messages.text")
    kernel_json(page, f"studio.box(*{OBJECT_BOX}) is not None")
    wait_kernel(page, "len(studio.scene.objects)", lambda n: n == 1)
    page.get_by_role("button", name="path", exact=True).click()
    wait_kernel(page, "studio.mode", lambda m: m == "path")
    for i, (x, y) in enumerate([(60, 290), (470, 290)]):
        settle(page)
        click_canvas(page, canvas, x, y)
        wait_kernel(page, "len(studio.scene.objects[0].path)", lambda n, i=i: n == 2 + i)
    settle(page)
    page.wait_for_timeout(500)
    assert kernel_json(page, "studio.framing.offset.disabled") is True  # fixed now that a mask exists
    assert kernel_json(page, "studio.maskbar.size.layout.visibility") == "hidden"  # no brush size in path mode
    snap(page, canvas, shots / "layout_02_path.png")
    problems += _layout_problems(page, "with a path")
    depth = page.evaluate(JS_DEPTH_SLIDERS)
    assert depth, "no per-point depth slider (P1, P2, ...) found in the path panel"
    DEPTH_SLIDERS[:] = depth

    # the lower half: Generate (the instant preview without weights) and its video, no scrollbars there either
    gen = page.locator(".levitor-studio button", has_text="Generate").first
    gen.scroll_into_view_if_needed()
    gen.click()
    wait_kernel(page, "bool(studio.generate_panel.outcome)", bool, timeout_s=120)
    page.wait_for_function("() => { const v = document.querySelector('.levitor-studio video');"
                           " return v && v.readyState >= 2; }", timeout=30_000)
    page.wait_for_timeout(500)
    page.locator(".levitor-studio video").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "layout_03_generated.png"))
    problems += _layout_problems(page, "after Generate")

    # a re-run resumes the autosave and says so; nothing the browser sends on its own replaces that
    run_all(page)
    page.locator(CANVAS).first.wait_for(state="visible", timeout=60_000)
    settle(page)
    page.wait_for_timeout(1500)
    assert kernel_json(page, "studio.resumed") is True
    text = kernel_json(page, "studio.messages.text")
    assert text.startswith("resumed the autosave of 'astronaut'"), (text, kernel_json(page, "studio.messages.log"))
    assert kernel_json(page, "studio.editor.can_undo") is False  # showing it was no edit
    assert not problems, "\n".join(problems)
    assert not page.errors, page.errors


def test_the_depth_sliders_are_at_least_160_px(page):
    assert DEPTH_SLIDERS, "the first test measured no per-point depth slider"
    assert all(d["width"] >= MIN_DEPTH_SLIDER_PX for d in DEPTH_SLIDERS), DEPTH_SLIDERS
