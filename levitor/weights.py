"""Every model levitor uses, where its weights live, and the one rule for getting them.

The rule (the Hugging Face convention): a local folder or file always wins; otherwise weights are downloaded
on first use, with a one-line notice naming the model, its size and the folder, and a progress bar; never when
``HF_HUB_OFFLINE=1`` is set or downloads are switched off (``--no-download``, ``allow_download=False``). Missing
weights then raise :class:`WeightsNotFoundError` with one short message: what is missing, the one command that
downloads it, and where it goes.

Search order for a model name (``"svd-xt"``, ``"large"``, ``"vit_h"``), a hub id, or a path:

1. an existing path, used as is;
2. ``$LEVITOR_HOME/models/<name>`` (default ``~/.cache/levitor/models/<name>``), where ``<name>`` is the model's
   folder name (the part of its hub id after the ``/``, e.g. ``stable-video-diffusion-img2vid-xt``) or its
   short name (``depth-anything-v2-large``);
3. the Hugging Face cache (``~/.cache/huggingface``), read only;
4. a download into the folder of step 2, if allowed.

Single-file weights (segment_anything's ``.pth``, CoTracker, the FID/FVD networks) follow the same rule with
:func:`resolve_file`. Loaded models are kept per process by :func:`load_once`, so re-running a notebook cell
does not reload gigabytes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from levitor._util.files import check_not_special
from levitor._util.paths import eval_dir, models_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

SVD_XT_ID = "stabilityai/stable-video-diffusion-img2vid-xt"
LEVITOR_ID = "hlwang06/LeviTor"


@dataclass(frozen=True)
class ModelSpec:
    """A model kept as a hub folder."""

    repo_id: str
    what: str  # words for messages
    size: str  # what a download costs
    include: tuple[str, ...] = ()  # the files inference needs (empty: all)
    aliases: tuple[str, ...] = ()
    note: str = ""  # one more line for the message (a gated model, ...)

    @property
    def folder(self) -> str:
        return self.repo_id.split("/")[1]


@dataclass(frozen=True)
class FileSpec:
    """A model kept as one file, downloaded from a URL."""

    filename: str
    url: str
    what: str
    size: str
    home: str = "models"  # "models" or "eval": the folder under $LEVITOR_HOME
    aliases: tuple[str, ...] = ()

    def folder(self) -> Path:
        return eval_dir() if self.home == "eval" else models_dir()


def _depth(size: str, mb: str, *aliases: str) -> ModelSpec:
    return ModelSpec(f"depth-anything/Depth-Anything-V2-{size}-hf", f"DepthAnythingV2 {size}", mb,
                     aliases=(f"depth-anything-v2-{size.lower()}", *aliases))


def _sam(arch: str, mb: str, *aliases: str, hq: bool = False) -> ModelSpec:
    repo = f"syscv-community/sam-hq-vit-{arch}" if hq else f"facebook/sam-vit-{arch}"
    name = f"sam-hq-vit-{arch}" if hq else f"sam-vit-{arch}"
    return ModelSpec(repo, f"SAM{'-HQ' if hq else ''} ViT-{arch[0].upper()}", mb, aliases=(name, *aliases))


MODELS: dict[str, ModelSpec] = {
    "svd-xt": ModelSpec(
        SVD_XT_ID, "Stable Video Diffusion img2vid-xt (the base model)", "about 4.5 GB (fp16 files)",
        include=("model_index.json", "*/config.json", "*/*.fp16.safetensors", "scheduler/*", "feature_extractor/*"),
        aliases=("svd",), note="SVD-xt is gated: accept its licence on its model page and run `hf auth login` first."),
    "levitor": ModelSpec(LEVITOR_ID, "LeviTor ControlNet (the authors' release)", "about 2.7 GB",
                         include=("controlnet/*",)),
    "depth-anything-v2-small": _depth("Small", "about 100 MB", "small", "vits"),
    "depth-anything-v2-base": _depth("Base", "about 390 MB", "base", "vitb"),
    "depth-anything-v2-large": _depth("Large", "about 1.3 GB", "large", "vitl"),  # the release's choice
    "sam-vit-base": _sam("base", "about 375 MB", "vit_b", "sam_vit_b", "vit-b"),
    "sam-vit-large": _sam("large", "about 1.25 GB", "vit_l", "sam_vit_l", "vit-l"),
    "sam-vit-huge": _sam("huge", "about 2.5 GB", "vit_h", "sam_vit_h", "vit-h"),  # the release's choice
    "sam-hq-vit-base": _sam("base", "about 380 MB", "hq_vit_b", hq=True),
    "sam-hq-vit-large": _sam("large", "about 1.3 GB", "hq_vit_l", hq=True),
    "sam-hq-vit-huge": _sam("huge", "about 2.6 GB", "hq_vit_h", hq=True),
}

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
FILES: dict[str, FileSpec] = {
    "sam_vit_b": FileSpec("sam_vit_b_01ec64.pth", _SAM_URL + "sam_vit_b_01ec64.pth", "segment_anything ViT-B",
                          "about 375 MB", aliases=("vit_b",)),
    "sam_vit_l": FileSpec("sam_vit_l_0b3195.pth", _SAM_URL + "sam_vit_l_0b3195.pth", "segment_anything ViT-L",
                          "about 1.25 GB", aliases=("vit_l",)),
    "sam_vit_h": FileSpec("sam_vit_h_4b8939.pth", _SAM_URL + "sam_vit_h_4b8939.pth", "segment_anything ViT-H",
                          "about 2.5 GB", aliases=("vit_h",)),
    "cotracker3": FileSpec("cotracker/scaled_offline.pth",
                           "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth",
                           "CoTracker3 (offline)", "about 100 MB"),
    "cotracker2": FileSpec("cotracker/cotracker2.pth", "https://dl.fbaipublicfiles.com/cotracker/cotracker2.pth",
                           "CoTracker2", "about 180 MB"),
    "inception": FileSpec("inception-2015-12-05.pt", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/"
                          "pretrained/metrics/inception-2015-12-05.pt", "FID Inception-v3 (TorchScript)",
                          "about 95 MB", home="eval"),
    "i3d": FileSpec("i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
                    "FVD I3D (TorchScript)", "about 50 MB", home="eval"),
}


class WeightsNotFoundError(FileNotFoundError):
    """Model weights are neither at the given path, under $LEVITOR_HOME, in the Hugging Face cache, nor
    downloadable now. The message says what is missing, the command that downloads it, and where it goes."""



class CorruptWeightsError(ValueError):
    """A weights folder is there but a file in it cannot be read (truncated, garbage, wrong JSON). The message
    names the file, what is wrong, and what to delete and download again."""


# ------------------------------------------------------------------------------------ download policy
def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set (to anything but 0/false): nothing may go to the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def download_allowed(allow_download: bool = True) -> bool:
    return bool(allow_download) and not offline()


_FAILED: dict[str, str] = {}  # downloads that failed in this process: asked again, they fail at once


def _why_not(allow_download: bool) -> str:
    if not allow_download:
        return "downloads are off"  # the caller's choice (--no-download, allow_download=False): no flag named here
    return "HF_HUB_OFFLINE is set"


# ---------------------------------------------------------------------------------------- lookups
def model_spec(name_or_id: str) -> tuple[str, ModelSpec] | None:
    """(short name, spec) for a short name, an alias, a hub id or a folder name; None if levitor does not know it."""
    low = name_or_id.lower()
    for key, spec in MODELS.items():
        if low in (key, spec.repo_id.lower(), spec.folder.lower()) or low in spec.aliases:
            return key, spec
    return None


def file_spec(name: str) -> tuple[str, FileSpec] | None:
    low = name.lower()
    for key, spec in FILES.items():
        if low in (key, Path(spec.filename).name.lower()) or low in spec.aliases:
            return key, spec
    return None


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``org/name``; anything else with a slash, or a weights suffix, is meant as a path."""
    return (text.startswith((".", "/", "~", "\\")) or text.count("/") > 1
            or text.endswith((".pth", ".pt", ".bin", ".safetensors")) or Path(text).is_absolute())


def download_command(spec: ModelSpec, target: Path) -> str:
    """The one command that puts ``spec``'s weights where :func:`resolve` looks."""
    include = "".join(f" --include '{p}'" for p in spec.include)
    return f"hf download {spec.repo_id} --local-dir {target}{include}"


def _missing(what: str, command: str, target: Path, why: str, note: str = "") -> WeightsNotFoundError:
    lines = [f"{what} is not on this machine ({why}).",  # lines that read as sentences when the CLI folds them
             f"  Download it: {command}",
             f"  It goes to {target} (or pass the folder's path)."]
    if note:
        lines.append(f"  {note}")
    return WeightsNotFoundError("\n".join(lines))


def resolve(name_or_path: str | os.PathLike, *, what: str | None = None, allow_download: bool = True) -> Path:
    """A local folder holding the weights of ``name_or_path`` (see the module docstring for the order).

    what: words for messages when levitor does not know the model (e.g. "LeviTor ControlNet").
    """
    text = str(name_or_path)
    path = check_not_special(Path(text).expanduser(), f"{what or 'weights'}:")
    if path.is_dir():
        return verify_weights_folder(path, what or "weights")
    if path.exists():
        return path
    known = model_spec(text)
    if known is None and "/" not in text and not _looks_like_path(text):
        raise ValueError(f"unknown model name {text!r}; use one of {sorted(MODELS)} (or an alias such as 'large', "
                         "'vit_h'), a Hub id 'owner/name', or a local folder")
    if known is None and (_looks_like_path(text) or text.count("/") != 1):
        raise WeightsNotFoundError(f"{what or 'weights'}: {text} does not exist (and it is not a model name or a "
                                   f"Hub id 'owner/name'). Pass an existing folder, or one of {sorted(MODELS)}.")
    if known is not None:
        key, spec = known
    else:  # an unlisted hub id: allowed, the user knows best
        key, spec = text.split("/")[1], ModelSpec(text, what or text, "size unknown")
    target = models_dir() / spec.folder
    for folder in dict.fromkeys([target, models_dir() / key, *(models_dir() / a for a in spec.aliases)]):
        if folder.is_dir():
            return verify_weights_folder(folder, what or spec.what)
    cached = _hub_cache(spec)
    if cached is not None:
        return verify_weights_folder(cached, what or spec.what)
    if not download_allowed(allow_download):
        raise _missing(f"{what or spec.what} ('{spec.repo_id}')", download_command(spec, target), target,
                       _why_not(allow_download), spec.note)
    return _download(spec, target)


def _hub_cache(spec: ModelSpec) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.repo_id, allow_patterns=list(spec.include) or None, local_files_only=True))
    except Exception:  # any failure here just means "not in the cache"
        return None


def _download(spec: ModelSpec, target: Path) -> Path:
    from huggingface_hub import snapshot_download

    if spec.repo_id in _FAILED:
        raise _missing(spec.what, download_command(spec, target), target, _FAILED[spec.repo_id], spec.note)
    print(f"levitor: downloading {spec.what} ({spec.repo_id}, {spec.size}) to {target}", flush=True)
    try:
        return Path(snapshot_download(spec.repo_id, allow_patterns=list(spec.include) or None, local_dir=target))
    except Exception as exc:  # network, auth (gated model) or missing repo: all say the same
        first = str(exc).splitlines()[0] if str(exc) else ""
        _FAILED[spec.repo_id] = f"the download failed: {type(exc).__name__}: {first}"[:300]
        raise _missing(spec.what, download_command(spec, target), target, _FAILED[spec.repo_id],
                       spec.note) from None


def resolve_file(name_or_path: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """A local file for a single-file model (:data:`FILES`: a key, alias or file name) or a path."""
    text = str(name_or_path)
    path = check_not_special(Path(text).expanduser(), "weights file")
    if path.is_file():
        return path
    known = file_spec(path.name)
    if known is None:
        raise WeightsNotFoundError(f"weights file {text} does not exist; pass an existing file or one of "
                                   f"{sorted(FILES)}")
    _, spec = known
    target = spec.folder() / spec.filename
    for candidate in dict.fromkeys([target, spec.folder() / Path(spec.filename).name]):
        if candidate.is_file():
            return candidate
    command = f"curl -L --create-dirs -o {target} '{spec.url}'"
    if not download_allowed(allow_download):
        raise _missing(spec.what, command, target, _why_not(allow_download))
    if spec.url in _FAILED:
        raise _missing(spec.what, command, target, _FAILED[spec.url])
    print(f"levitor: downloading {spec.what} ({spec.size}) to {target}", flush=True)
    try:
        from torch.hub import download_url_to_file

        target.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(spec.url, str(target), progress=True)  # writes a temporary file, then renames
    except Exception as exc:  # network, missing file or full disk: all say the same, with the command to run
        _FAILED[spec.url] = f"the download failed: {type(exc).__name__}: {exc}"[:300]
        raise _missing(spec.what, command, target, _FAILED[spec.url]) from None
    return target


def verify_weights_folder(folder: Path, what: str = "weights") -> Path:
    """Check every JSON config and safetensors header in ``folder`` (milliseconds: headers only), so a torn or
    garbage file is reported with its name instead of as a library error deep inside a load."""
    folder = Path(folder)
    for path in sorted([*folder.glob("*"), *folder.glob("*/*")]):  # a pipeline: two levels
        check_not_special(path, f"{what}:")  # a pipe among the files would hang the load that reads it
    for path in sorted([*folder.glob("*.json"), *folder.glob("*/*.json")]):
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _corrupt(what, folder, path, f"not valid JSON ({err})") from None
        if path.name == "model_index.json" and (not isinstance(doc, dict) or "_class_name" not in doc):
            raise _corrupt(what, folder, path, "not a pipeline index: it names no pipeline class (no _class_name)")
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("*/*.safetensors")]):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                fh.keys()
        except Exception as err:  # SafetensorError, OSError: all mean "unreadable"
            raise _corrupt(what, folder, path, f"not a whole safetensors file ({str(err).splitlines()[0]})") from None
    return folder


def _corrupt(what: str, folder: Path, path: Path, problem: str) -> CorruptWeightsError:
    return CorruptWeightsError(f"{what}: {path} is {problem}; it is probably a partial download. Delete {folder} "
                               "(or that file) and download it again (levitor prints the command when it is "
                               "missing)")


def describe_expected_layout() -> str:
    """The folder layout :func:`resolve` reads (docs/weights.md shows the same)."""
    home = models_dir()
    svd, lev = MODELS["svd-xt"], MODELS["levitor"]
    return f"""\
Weights are looked for under $LEVITOR_HOME/models (now: {home}), one folder per model:

{home}/
  {svd.folder}/     <- https://huggingface.co/{svd.repo_id} (diffusers layout)
    model_index.json, unet/, vae/, image_encoder/, scheduler/, feature_extractor/
  {lev.folder}/                               <- https://huggingface.co/{lev.repo_id} (the authors' release)
    controlnet/config.json, controlnet/diffusion_pytorch_model.safetensors

A folder holding only a ControlNet's config.json + diffusion_pytorch_model.safetensors (one you trained) works
as the LeviTor folder; a folder written by LeviTorPipeline.save_pretrained() holds everything.
To fetch them:
  {download_command(svd, home / svd.folder)}
  {download_command(lev, home / lev.folder)}
({svd.note})"""


def weights_fingerprint(path: str | os.PathLike) -> str:
    """Names, sizes and modification times of the weight files under ``path``: part of cache keys, so replacing
    the weights in a folder invalidates what was computed with the old ones."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(
        f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pth", ".pt", ".json")
    ) if p.is_dir() else []
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


# ------------------------------------------------------------------------------------ loaded models
@dataclass
class _Loaded:
    models: dict[str, object] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


_LOADED = _Loaded()


def load_once(key: str, load: Callable[[], T], reuse: bool = True, group: str | None = None) -> T:
    """The model already loaded under ``key``, or load it now and keep it.

    ``key`` must name the weights (path + fingerprint), device and dtype. ``group``: at most one model per group
    is kept (a second pipeline replaces the first: they are gigabytes). ``reuse=False`` forces a fresh load.
    Models are used in eval mode only, so sharing one between callers is safe."""
    with _LOADED.lock:
        if reuse and key in _LOADED.models:
            return _LOADED.models[key]  # type: ignore[return-value]
        model = load()
        if group is not None:
            for old in [k for k, g in _LOADED.group_of.items() if g == group]:
                _LOADED.models.pop(old, None)
                _LOADED.group_of.pop(old, None)
            _LOADED.group_of[key] = group
        _LOADED.models[key] = model
        return model
