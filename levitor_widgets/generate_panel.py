"""Generate: model / guidance / device / preset / steps / seed, a progress bar, cancel, and the result shown inline
beside the control overlay. The line under the menus names the rules the chosen model's control is built by (the
Studio's live view follows them: :func:`levitor.generation.model_choice.control_rules_of`).

The work runs on one daemon thread so the canvas stays responsive (ENVIRONMENT_NOTES §7): the button callback
takes a non-blocking lock and resets the progress bar; the worker only sets widget values (``progress.value``,
``Video.value``, ``HTML.value``), never ``with output:``.
"""

from __future__ import annotations

import html
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from levitor.generation.guidance import (
    DEFAULT_GUIDANCE,
    GUIDANCE_LABELS,
    GUIDANCE_MODES,
    TTM_NEEDS,
    uses_controlnet,
)
from levitor.generation.model_choice import MINI, RELEASE_RULES, control_rules_of, default_steps, is_mini
from levitor.generation.presets import DEFAULT_PRESET, PRESETS
from levitor_widgets.compat import label_style, show_video, video_widget

DEVICES = ("auto", "cuda", "cpu")
# (label, value) of each memory preset, fastest first
PRESET_OPTIONS = tuple((f"{name}: {p.label}", name) for name, p in PRESETS.items())
LEVITOR = "levitor"  # the model choice: SVD-xt (+ the LeviTor ControlNet)
# (label, value): the real model, and the shipped toy that runs anywhere (docs/mini_model.md)
MODELS = (("LeviTor (SVD-xt)", LEVITOR), ("mini: 32x32 toy, CPU", MINI))
GUIDANCE_OPTIONS = tuple((GUIDANCE_LABELS[m], m) for m in GUIDANCE_MODES)


@dataclass
class GenerateSettings:
    device: str
    preset: str
    steps: int
    seed: int | None
    model: str = LEVITOR  # "levitor" (SVD-xt + the LeviTor ControlNet) or "mini" (the shipped toy model)
    guidance: str = DEFAULT_GUIDANCE  # levitor.generation.guidance: "controlnet", "ttm" or "controlnet+ttm"


@dataclass
class GenerateOutcome:
    """What a generate job produced: the video (model output or preview), the control overlay video, the
    scene JSON written beside them, and a message for the user."""

    video_path: Path
    overlay_path: Path | None
    scene_path: Path | None
    used_model: bool
    message: str = ""  # one line of plain text
    details: str = ""  # the long part (what to download), shown behind "details"
    record_path: Path | None = None  # the generation's JSON record (steps, guidance, rules, warnings)

    def __str__(self) -> str:
        made = "video" if self.used_model else "preview (no diffusion model)"
        return f"{made}: {self.video_path}" + (f"\n{self.message}" if self.message else "")


# job(snapshot, settings, progress(step, total), cancel_event) -> GenerateOutcome; ``snapshot`` is what
# ``GeneratePanel.snapshot()`` returned on the main thread (a copy of the scene), so the worker never reads
# state the user is editing.
Job = Callable[[object, GenerateSettings, Callable[[int, int], None], threading.Event], GenerateOutcome]


def weights_for(model: str, weights: Any, guidance: str = DEFAULT_GUIDANCE) -> Any:
    """The weights a menu choice runs: the Studio's own ``weights`` where they are of the chosen kind (a mini
    folder for "mini", LeviTor weights otherwise), the default ones else; none for training-free guidance on
    SVD-xt (it loads no ControlNet) unless they are a saved pipeline, which holds the base."""
    given_mini = is_mini(weights)
    if model == MINI:
        return weights if given_mini else MINI
    if given_mini or weights is None:
        return None
    if not uses_controlnet(guidance) and not (Path(weights) / "model_index.json").is_file():
        return None
    return weights


def rules_line(rules: str, model: str, guidance: str) -> str:
    """The line under Generate: which rules build the control the chosen model gets (and the live view shows)."""
    if not uses_controlnet(guidance):
        return ("points: levitor's rules (per-pixel occlusion); training-free guidance reads no points, they "
                "render the warped video that steers it")
    if rules == RELEASE_RULES:
        return ("points: the release's rules (its K-means and compositing), as the LeviTor weights were trained; "
                "the view shows them")
    who = "the mini model was" if model == MINI else "these weights were"
    return f"points: levitor's rules (stable K-means, per-pixel occlusion), as {who} trained; the view shows them"


class GeneratePanel:
    def __init__(self, job: Job, seed: int, width: int, height: int, model: str = LEVITOR, weights: Any = None):
        self.job = job
        self.weights = weights  # the Studio's: they decide the default steps of a model choice
        self.snapshot: Callable[[], object] = lambda: None
        self.precheck: Callable[[], str] = lambda: ""  # why there is nothing to generate yet ("" if there is)
        self.on_choice: Callable[[str, str], None] | None = None  # (model, guidance) changed
        self.model = W.Dropdown(options=list(MODELS), value=model,
                                description="model", style=label_style(), layout=W.Layout(width="230px"))
        self.guidance = W.Dropdown(options=list(GUIDANCE_OPTIONS), value=DEFAULT_GUIDANCE, description="guidance",
                                   style=label_style(), layout=W.Layout(width="430px"))
        self.rules = W.HTML("", layout=W.Layout(min_height="20px"))
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
        self.status = W.HTML("", layout=W.Layout(min_height="22px"))
        self.details = W.HTML("", layout=W.Layout(display="none"))
        self.details_toggle = W.ToggleButton(value=False, description="details", layout=W.Layout(
            width="80px", flex="0 0 auto", visibility="hidden"))
        self.details_toggle.observe(lambda ch: setattr(self.details.layout, "display", "" if ch["new"] else "none"),
                                    names="value")
        self.video = video_widget(width, height)
        self.overlay_video = video_widget(width, height)
        self.result_box = W.HBox([
            W.VBox([W.HTML("<b>video</b>"), self.video]),
            W.VBox([W.HTML("<b>control overlay</b>"), self.overlay_video]),
        ], layout=W.Layout(display="none"))
        self.model.observe(self._model_changed, names="value")
        self.guidance.observe(lambda _change: self._choice_changed(), names="value")
        self.button.on_click(lambda _b: self.start())
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.widget = W.VBox([
            W.HBox([self.model, self.guidance]),
            W.HBox([self.device, self.preset, self.steps, self.seed]),
            self.rules,
            W.HBox([self.button, self.cancel_button, self.progress]),
            W.HBox([self.status, self.details_toggle]),
            self.details,
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

    @property
    def summary(self) -> str:
        """What the last press did, as plain text (the notebook prints it)."""
        if self.outcome is not None and self.error is None:
            return str(self.outcome)
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def settings(self) -> GenerateSettings:
        return GenerateSettings(self.device.value, self.preset.value, int(self.steps.value), int(self.seed.value),
                                self.model.value, self.guidance.value)

    def _default_steps(self, model: str) -> int:
        """The chosen model's own steps (the mini model's from its mini.json), as ``levitor generate`` runs."""
        return default_steps(weights_for(model, self.weights))

    def _model_changed(self, change) -> None:
        self.steps.value = self._default_steps(change["new"])
        self._choice_changed()

    def _choice_changed(self) -> None:
        if self.on_choice is not None:
            self.on_choice(self.model.value, self.guidance.value)

    def show_rules(self, rules: str) -> None:
        """Name the rules the chosen model's control is built by (``rules``: "levitor" or "release")."""
        line = rules_line(rules, self.model.value, self.guidance.value)
        self.rules.value = f"<small>{html.escape(line, quote=False)}</small>"

    def start(self, wait: bool = False) -> bool:
        """Start a job; False if one is already running. ``wait`` joins the thread (tests, scripts)."""
        if not self._lock.acquire(blocking=False):
            self.status.value = "<i>already generating; press Cancel to stop it</i>"
            return False
        why_not = self.precheck()
        if why_not:  # not a failure: say what to do first
            self._lock.release()
            self.outcome, self.error = None, None
            self.status.value = f"<i>{html.escape(why_not)}</i>"
            self._show_details("")
            return False
        self._cancel.clear()
        self.progress.value, self.progress.max = 0, max(1, int(self.steps.value))
        self.progress.bar_style = ""
        self.button.disabled, self.cancel_button.disabled = True, False
        self.status.value = "generating..."
        self._show_details("")
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

    def _show_details(self, text: str) -> None:
        self.details.value = (f"<pre style='font-size:11px;white-space:pre-wrap'>{html.escape(text)}</pre>"
                              if text else "")
        self.details_toggle.layout.visibility = "visible" if text else "hidden"

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
            show_video(self.video, out.video_path)
            if out.overlay_path is not None and out.overlay_path.exists():
                show_video(self.overlay_video, out.overlay_path)
            self.result_box.layout.display = ""
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            saved = f"saved {out.video_path.name} in {out.video_path.parent}"
            self.status.value = html.escape(f"{out.message} ({saved})" if out.message else saved)
            self._show_details(out.details)
        except Exception as e:  # shown to the user; the traceback goes behind "details"
            self.error = f"{type(e).__name__}: {e}"
            self.progress.bar_style = "danger"
            self.status.value = f"<b>generation failed</b>: {html.escape(self.error.splitlines()[0])}"
            self._show_details(traceback.format_exc(limit=6))
        finally:
            self.button.disabled, self.cancel_button.disabled = False, True
            self._lock.release()


# ====================================================================== the Studio's job
def models_missing(mini: bool, weights: Any, allow_download: bool, guidance: str = DEFAULT_GUIDANCE) -> str:
    """Why the real model can't run here ("" if it can), found without importing diffusers: the Studio's
    preview then takes a second, not the ~8 s of importing a pipeline that can't load. Training-free guidance
    needs the SVD-xt weights alone."""
    if mini:
        return ""
    from levitor.weights import LEVITOR_ID, SVD_XT_ID, WeightsNotFoundError, resolve

    if weights is not None and (Path(weights) / "model_index.json").is_file():
        return ""
    try:
        resolve(SVD_XT_ID, allow_download=allow_download)
    except WeightsNotFoundError as e:
        return str(e) if uses_controlnet(guidance) else f"{e}\n{TTM_NEEDS}"
    if uses_controlnet(guidance):
        try:
            resolve(weights or LEVITOR_ID, what="LeviTor ControlNet", allow_download=allow_download)
        except WeightsNotFoundError as e:
            return f"{e}\n\nWithout them, the guidance menu's training-free mode runs on the SVD-xt weights alone."
    return ""


def run_generate(scene, settings: GenerateSettings, progress, cancel: threading.Event, *, out_dir: Path,
                 weights: Any = None, allow_download: bool = False, make_engine: Callable | None = None
                 ) -> GenerateOutcome:
    """Generate on the worker thread from a copy of the scene: the model where its weights are found, the
    instant preview otherwise (built by the same rules as the model's control). No widget state is read here."""
    from levitor.generation.generate import WeightsNotFoundError, generate

    run_dir = out_dir / time.strftime("run_%Y%m%d_%H%M%S")
    n = 1
    while run_dir.exists():  # two runs in one second get their own folders
        n += 1
        run_dir = run_dir.with_name(time.strftime("run_%Y%m%d_%H%M%S") + f"_{n}")
    if settings.seed is not None:
        scene.seed = int(settings.seed)
    mini = settings.model == MINI
    use = weights_for(settings.model, weights, settings.guidance)
    rules = control_rules_of(use, settings.guidance)
    missing = models_missing(mini, use, allow_download, settings.guidance)
    if missing:
        return preview_outcome(scene, run_dir, missing, make_engine, rules, settings.guidance)
    try:
        out = generate(scene, run_dir, weights=use, device=settings.device, steps=settings.steps,
                       preset=settings.preset, seed=settings.seed, callback=progress, cancel=cancel,
                       allow_download=allow_download, guidance=settings.guidance)
    except WeightsNotFoundError as e:
        return preview_outcome(scene, run_dir, str(e), make_engine, rules, settings.guidance)
    message = ""
    if mini:
        message = ("made by the mini model: a 32x32 toy trained on synthetic sprites, enlarged; it shows the "
                   "control at work, not LeviTor's quality (docs/mini_model.md)")
    if settings.guidance != DEFAULT_GUIDANCE:
        message = f"guidance {settings.guidance}" + (f"; {message}" if message else "")
    if cancel.is_set():
        message = "cancelled: the partly denoised video was saved"
    video = Path(out.video_path)
    return GenerateOutcome(video, Path(out.control_path), Path(out.scene_path), True, message,
                           record_path=video.with_suffix(".json"))


def preview_outcome(scene, run_dir: Path, why: str, make_engine: Callable | None = None, rules: str = RELEASE_RULES,
                    guidance: str = DEFAULT_GUIDANCE) -> GenerateOutcome:
    """No weights: the engine's instant preview (by ``rules``, as the model would get it), its control overlay, and
    the scene beside them."""
    from levitor.viz.pictures import overlay
    from levitor.viz.video import write_video

    run_dir.mkdir(parents=True, exist_ok=True)
    if make_engine is None:
        from levitor.engine import Engine

        def make_engine(s):
            return Engine(s, rules=rules)
    engine = make_engine(scene)  # a fresh engine: the Studio's belongs to the scene being edited
    res = engine.update()
    video = Path(engine.write_preview(run_dir / "preview.mp4"))
    colors = studio_colors(scene, engine)
    frames = np.stack([overlay(res.color[f], res.instance[f], res.signal, f, colors=colors)
                       for f in range(scene.num_frames)])
    overlay_path = Path(write_video(frames, run_dir / "preview_control.mp4"))
    scene_path = scene.save(run_dir / "scene.json")
    what = "LeviTor" if uses_controlnet(guidance) else "SVD-xt"
    message = (f"no {what} weights here, so this is the instant preview (what moves where; details: what to "
               "download and where); the model 'mini' makes a toy diffusion video on this machine")
    return GenerateOutcome(video, overlay_path, Path(scene_path), False, message,
                           f"For SVD-xt, {GUIDANCE_LABELS[guidance]}:\n" + why)  # the mini model ships


def studio_colors(scene, engine) -> np.ndarray | None:
    """(ids, 3) RGB per instance id in the Studio's colours (each mask keeps its colour), or None when the
    engine has no instance map (then the overlay uses its default colours)."""
    inst = getattr(engine, "instance_map", None)
    if inst is None or not scene.masks:
        return None
    from levitor.viz.colors import colors_by_mask

    return colors_by_mask(inst().mask_of_id, len(scene.masks))
