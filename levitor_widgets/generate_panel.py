"""Generate: device / preset / steps / seed, a progress bar, cancel, and the result shown inline beside the
control overlay.

The work runs on one daemon thread so the canvas stays responsive (ENVIRONMENT_NOTES §7): the button callback
takes a non-blocking lock and resets the progress bar; the worker only sets widget values (``progress.value``,
``Video.value``, ``HTML.value``), never ``with output:``.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W

from levitor.generation.presets import DEFAULT_PRESET, PRESETS
from levitor_widgets.compat import label_style, video_widget

DEVICES = ("auto", "cuda", "cpu")
# (label, value) of each memory preset, fastest first
PRESET_OPTIONS = tuple((f"{name}: {p.label}", name) for name, p in PRESETS.items())
# (label, value, default steps): the real model, and the shipped toy that runs anywhere (docs/mini_model.md)
MODELS = (("LeviTor (SVD-xt)", "levitor", 25), ("mini: 32x32 toy, CPU", "mini", 3))


@dataclass
class GenerateSettings:
    device: str
    preset: str
    steps: int
    seed: int | None
    model: str = "levitor"  # "levitor" (SVD-xt + the LeviTor ControlNet) or "mini" (the shipped toy model)


@dataclass
class GenerateOutcome:
    """What a generate job produced: the video (model output or preview), the control overlay video, the
    scene JSON written beside them, and a message for the user."""

    video_path: Path
    overlay_path: Path | None
    scene_path: Path | None
    used_model: bool
    message: str = ""


# job(snapshot, settings, progress(step, total), cancel_event) -> GenerateOutcome; ``snapshot`` is what
# ``GeneratePanel.snapshot()`` returned on the main thread (a copy of the scene), so the worker never reads
# state the user is editing.
Job = Callable[[object, GenerateSettings, Callable[[int, int], None], threading.Event], GenerateOutcome]


class GeneratePanel:
    def __init__(self, job: Job, seed: int, width: int, height: int, model: str = "levitor"):
        self.job = job
        self.snapshot: Callable[[], object] = lambda: None
        self.model = W.Dropdown(options=[(label, value) for label, value, _ in MODELS], value=model,
                                description="model", style=label_style(), layout=W.Layout(width="230px"))
        self.device = W.Dropdown(options=list(DEVICES), value="auto", description="device", style=label_style(),
                                 layout=W.Layout(width="160px"))
        self.preset = W.Dropdown(options=list(PRESET_OPTIONS), value=DEFAULT_PRESET, description="preset",
                                 style=label_style(), layout=W.Layout(width="180px"))
        self.steps = W.BoundedIntText(value=self._default_steps(model), min=1, max=200, description="steps",
                                      style=label_style(), layout=W.Layout(width="120px"))
        self.seed = W.IntText(value=int(seed), description="seed", style=label_style(),
                              layout=W.Layout(width="160px"))
        self.button = W.Button(description="Generate", button_style="success", icon="play",
                               tooltip="generate the video (key: g)")
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="300px"))
        self.status = W.HTML("")
        self.video = video_widget(width, height)
        self.overlay_video = video_widget(width, height)
        self.result_box = W.HBox([
            W.VBox([W.HTML("<b>video</b>"), self.video]),
            W.VBox([W.HTML("<b>control overlay</b>"), self.overlay_video]),
        ], layout=W.Layout(display="none"))
        self.model.observe(lambda change: setattr(self.steps, "value", self._default_steps(change["new"])),
                           names="value")
        self.button.on_click(lambda _b: self.start())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.widget = W.VBox([
            W.HBox([self.model, self.device, self.preset, self.steps, self.seed]),
            W.HBox([self.button, self.cancel_button, self.progress]),
            self.status,
            self.result_box,
        ])
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.thread: threading.Thread | None = None
        self.outcome: GenerateOutcome | None = None
        self.error: str | None = None

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def settings(self) -> GenerateSettings:
        return GenerateSettings(self.device.value, self.preset.value, int(self.steps.value), int(self.seed.value),
                                self.model.value)

    @staticmethod
    def _default_steps(model: str) -> int:
        return next(steps for _, value, steps in MODELS if value == model)

    def start(self, wait: bool = False) -> bool:
        """Start a job; False if one is already running. ``wait`` joins the thread (tests, scripts)."""
        if not self._lock.acquire(blocking=False):
            self.status.value = "<i>already generating; press Cancel to stop it</i>"
            return False
        self._cancel.clear()
        self.progress.value, self.progress.max = 0, max(1, int(self.steps.value))
        self.progress.bar_style = ""
        self.button.disabled, self.cancel_button.disabled = True, False
        self.status.value = "generating..."
        settings = self.settings()
        try:
            snap = self.snapshot()
        except Exception:
            self.button.disabled, self.cancel_button.disabled = False, True
            self._lock.release()
            raise
        self.thread = threading.Thread(target=self._work, args=(snap, settings), daemon=True, name="levitor-generate")
        self.thread.start()
        if wait:
            self.thread.join()
        return True

    def cancel(self) -> None:
        self._cancel.set()
        self.status.value = "cancelling..."

    def _progress(self, step: int, total: int) -> None:
        if total and self.progress.max != total:
            self.progress.max = int(total)
        self.progress.value = int(step)

    def _work(self, snap, settings: GenerateSettings) -> None:
        try:
            out = self.job(snap, settings, self._progress, self._cancel)
            self.outcome, self.error = out, None
            self.video.format = out.video_path.suffix.lstrip(".") or "mp4"
            self.video.value = out.video_path.read_bytes()
            if out.overlay_path is not None and out.overlay_path.exists():
                self.overlay_video.format = out.overlay_path.suffix.lstrip(".") or "mp4"
                self.overlay_video.value = out.overlay_path.read_bytes()
            self.result_box.layout.display = ""
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            saved = f"saved <code>{out.video_path}</code>"
            if out.scene_path is not None:
                saved += f" and <code>{out.scene_path}</code>"
            self.status.value = (out.message + "<br>" if out.message else "") + saved
        except Exception as e:  # shown to the user; the traceback goes to the status for debugging
            self.error = f"{type(e).__name__}: {e}"
            self.progress.bar_style = "danger"
            tb = traceback.format_exc(limit=4).replace("<", "&lt;")
            self.status.value = f"<b>generation failed</b>: {self.error}<pre style='font-size:10px'>{tb}</pre>"
        finally:
            self.button.disabled, self.cancel_button.disabled = False, True
            self._lock.release()
