"""Where the model weights live, and what to do when they are missing.

Two sets of weights make a LeviTor pipeline:

- the base model, Stable Video Diffusion img2vid-xt (:data:`SVD_XT_ID`), in diffusers' folder layout;
- the LeviTor ControlNet (:data:`LEVITOR_ID`), the authors' release folder (``controlnet/`` + ``unet/`` + training
  state) or a folder holding just the ControlNet (``config.json`` + ``diffusion_pytorch_model.safetensors``).

:func:`resolve` turns a model id or a path into a local folder. It looks, in order, at: the path itself;
``$LEVITOR_HOME/models/<name>`` (default ``~/.cache/levitor/models/<name>``, where name is the part of the id
after the ``/``);
the Hugging Face cache; and finally, if downloads are allowed, the Hugging Face Hub (only the files inference
needs). When all fail it raises :class:`WeightsNotFoundError`, whose message says what to download and where.
"""

from __future__ import annotations

import os
from pathlib import Path

from levitor.paths import levitor_home, models_dir  # noqa: F401 (levitor_home: re-exported)

SVD_XT_ID = "stabilityai/stable-video-diffusion-img2vid-xt"
LEVITOR_ID = "hlwang06/LeviTor"

# Only what inference needs: the fp16 variant of the base (about 4.5 GB rather than every precision's files)
# and the ControlNet of the release (its unet/ is SVD's, frozen in training, and the rest is training state).
_DOWNLOAD_PATTERNS = {
    SVD_XT_ID: ["model_index.json", "*/config.json", "*/*.fp16.safetensors", "scheduler/*", "feature_extractor/*"],
    LEVITOR_ID: ["controlnet/*"],
}


class WeightsNotFoundError(FileNotFoundError):
    """Raised when model weights are neither at the given path, under $LEVITOR_HOME, nor downloadable."""


def describe_expected_layout() -> str:
    """The folder layout :func:`resolve` and :meth:`LeviTorPipeline.from_pretrained` expect (README text)."""
    home = models_dir()
    return f"""\
Weights are looked for under $LEVITOR_HOME/models (now: {home}), one folder per model, named after the
part of the model id after the '/':

{home}/
  stable-video-diffusion-img2vid-xt/     <- https://huggingface.co/{SVD_XT_ID} (diffusers layout)
    model_index.json
    unet/config.json, unet/diffusion_pytorch_model.fp16.safetensors
    vae/config.json, vae/diffusion_pytorch_model.fp16.safetensors
    image_encoder/config.json, image_encoder/model.fp16.safetensors
    scheduler/scheduler_config.json
    feature_extractor/preprocessor_config.json
  LeviTor/                               <- https://huggingface.co/{LEVITOR_ID} (the authors' release)
    controlnet/config.json
    controlnet/diffusion_pytorch_model.safetensors
    (unet/, random_states_0.pkl, scaler.pt, scheduler.bin: training state, not needed)

Either folder may also be passed as a path. A folder holding only config.json +
diffusion_pytorch_model.safetensors of a ControlNet (for example one you trained) works as the LeviTor folder.
A folder written by LeviTorPipeline.save_pretrained() (model_index.json with _class_name LeviTorPipeline)
holds everything and needs no second folder.

To fetch them (about 4.5 GB + 2.7 GB) with huggingface_hub:
  hf download {SVD_XT_ID} --local-dir {home}/stable-video-diffusion-img2vid-xt \\
      --include 'model_index.json' --include '*/config.json' --include '*/*.fp16.safetensors' \\
      --include 'scheduler/*' --include 'feature_extractor/*'
  hf download {LEVITOR_ID} --local-dir {home}/LeviTor --include 'controlnet/*'
(SVD-xt is gated: accept its licence on the model page and log in with `hf auth login` first.)"""


def _missing_message(model_id: str, what: str, tried: list[str], reason: str | None) -> str:
    lines = [f"Could not find the {what} weights '{model_id}'."]
    lines += [f"  looked at: {t}" for t in tried]
    if reason:
        lines.append(f"  download: {reason}")
    lines.append("")
    lines.append(describe_expected_layout())
    return "\n".join(lines)


def resolve(model_id_or_path: str | os.PathLike, *, what: str = "model", allow_download: bool = True) -> Path:
    """A local folder holding ``model_id_or_path``'s weights (see the module docstring for the search order).

    what: words for the error message (e.g. "Stable Video Diffusion base").
    allow_download: also try the Hugging Face Hub; with False (or HF_HUB_OFFLINE=1) nothing goes to the network.
    """
    tried: list[str] = []
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        return path
    tried.append(str(path))

    model_id = str(model_id_or_path)
    if model_id.count("/") != 1 or path.is_absolute() or model_id.startswith("."):
        raise WeightsNotFoundError(_missing_message(model_id, what, tried, "not a Hub id (expected 'owner/name')"))

    named = models_dir() / model_id.split("/")[1]
    if named.is_dir():
        return named
    tried.append(str(named))

    from huggingface_hub import snapshot_download

    patterns = _DOWNLOAD_PATTERNS.get(model_id)
    try:
        return Path(snapshot_download(model_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 -- any failure here just means "not in the cache"
        tried.append(f"Hugging Face cache ({model_id})")

    reason = "not attempted (allow_download=False)"
    if allow_download and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0", "false", "False"):
        try:
            return Path(snapshot_download(model_id, allow_patterns=patterns))
        except Exception as exc:  # noqa: BLE001 -- network, auth (gated model) or missing repo: all say the same
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    elif allow_download:
        reason = "not attempted (HF_HUB_OFFLINE is set)"
    raise WeightsNotFoundError(_missing_message(model_id, what, tried, reason))
