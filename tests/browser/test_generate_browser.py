"""Generate's menus in a real browser: the live view follows the model chosen (its rules), an object that the
release's rules leave without control points is marked beside it and the mark goes when the choice fixes it, and
training-free guidance (TTM) with the mini model plays a video whose record says so (issues 24 and 25)."""

from __future__ import annotations

import json
import time

import pytest

from levitor.generation.guidance import GUIDANCE_LABELS, TTM
from tests.browser.lab import kernel_json, open_notebook, run_all, snap, wait_kernel

pytestmark = pytest.mark.browser

NOTEBOOK = "generate_menu.ipynb"
# the bundled scene with the ball's path at depth 1.0 (the farthest): the release's rules never draw it
CELL = ("from dataclasses import replace\n"
        "from levitor.bundled import bundled_scene\n"
        "from levitor_widgets import Studio\n"
        "scene = bundled_scene()\n"
        "scene.objects[0].path[:] = [replace(p, depth=1.0) for p in scene.objects[0].path]\n"
        "studio = Studio(scene, out_dir='generate_out', name='far-ball', show_3d=False, autosave=False)\n"
        "studio")
WARNING = ".levitor-studio .levitor-control-warning"


def _write_notebook(path) -> None:
    doc = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                      "source": CELL}],
           "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(doc, indent=1))


def test_generate_menu_warnings_and_training_free_mini_in_chromium(lab, browser, shots):
    _write_notebook(lab[1] / NOTEBOOK)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        _drive(page, lab, shots)
    except BaseException:
        page.screenshot(path=str(shots / "failure.png"))
        raise
    finally:
        page.close()
    assert not errors, "\n".join(errors)


def _drive(page, lab, shots):
    open_notebook(page, lab, NOTEBOOK)
    run_all(page)
    page.locator(".levitor-studio canvas").first.wait_for(state="visible", timeout=30_000)
    assert kernel_json(page, "studio.control_rules") == "release"  # the LeviTor weights are chosen
    page.locator(".levitor-studio").get_by_text("points: the release's rules").first.wait_for(state="visible")

    # ---- the ball gets no control points under the release's rules: the mark is beside it, the line says it
    ball = page.get_by_role("button", name="ball", exact=True)
    row = page.locator(".levitor-studio .widget-hbox", has=ball).last  # the innermost: the ball's own row
    mark = row.locator(".levitor-control-warning")
    mark.wait_for(state="visible", timeout=30_000)
    assert "path depth 1.0" in mark.inner_text()
    assert "path depth 1.0" in (mark.get_attribute("title") or "")  # the whole message as its tooltip
    assert kernel_json(page, "studio.messages.text").startswith("no control: ")
    row.scroll_into_view_if_needed()
    snap(page, row, shots / "generate_01_warning.png")

    # ---- the mini model (levitor's rules draw the ball): the live view follows, the mark goes
    menu = page.locator(".levitor-studio select", has=page.locator("option", has_text="mini")).first
    menu.select_option(label="mini: 32x32 toy, CPU")
    wait_kernel(page, "studio.control_rules", lambda r: r == "levitor", timeout_s=60)
    page.wait_for_function(f"() => !document.querySelector({json.dumps(WARNING)})", timeout=30_000)
    assert kernel_json(page, "studio.result.warnings") == []

    # ---- training-free guidance with the mini model: a video plays, the record says which mode
    guidance = page.locator(".levitor-studio select", has=page.locator("option", has_text="training-free")).first
    guidance.select_option(label=GUIDANCE_LABELS[TTM])
    wait_kernel(page, "studio.generate_panel.settings().guidance", lambda g: g == TTM)
    button = page.locator(".levitor-studio button", has_text="Generate").first
    button.scroll_into_view_if_needed()
    t0 = time.monotonic()
    button.click()
    video_path = wait_kernel(page, "str(studio.generate_panel.outcome.video_path) "
                                   "if studio.generate_panel.outcome else ''", bool, timeout_s=180)
    assert video_path.endswith(".mp4"), kernel_json(page, "studio.generate_panel.status.value")
    assert kernel_json(page, "studio.generate_panel.outcome.used_model") is True
    page.wait_for_function("() => { const v = document.querySelector('.levitor-studio video');"
                           " return v && v.readyState >= 2; }", timeout=30_000)
    print("training-free mini generate s:", round(time.monotonic() - t0, 1), flush=True)
    record = kernel_json(page, "__import__('json').loads(studio.generate_panel.outcome.record_path.read_text())")
    assert record["guidance"] == TTM and record["weights"] == "mini" and record["control_rules"] == "levitor"
    assert "guidance ttm" in kernel_json(page, "studio.generate_panel.status.value")
    snap(page, page.locator(".levitor-studio video").first, shots / "generate_02_ttm_mini.png")
