"""Where perception weights come from, and what to tell a user who has none.

Resolution order for a model name (``"large"``, ``"sam-vit-base"``, a hub id, or a path):

1. an existing file or folder path: used as is;
2. ``$LEVITOR_HOME/models/<name>`` (default ``~/.cache/levitor/models/<name>``), where ``<name>`` is the short
   name (``sam-vit-base``) or the hub repo's name (``Depth-Anything-V2-Large-hf``);
3. the Hugging Face hub id, read from the local hub cache only (``local_files_only=True``), unless
   ``LEVITOR_ALLOW_DOWNLOAD=1`` is set. Offline machines therefore fail in milliseconds with
   :class:`MissingWeightsError`, which says what to download and where to put it, instead of hanging on the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from levitor.paths import HOME_ENV, levitor_home, models_dir  # noqa: F401 (re-exported)

T = TypeVar("T")

ALLOW_DOWNLOAD_ENV = "LEVITOR_ALLOW_DOWNLOAD"

# short name -> public hub id. The first name of each group is the canonical one (the local folder name we suggest).
DEPTH_MODELS: dict[str, str] = {
    "depth-anything-v2-small": "depth-anything/Depth-Anything-V2-Small-hf",
    "depth-anything-v2-base": "depth-anything/Depth-Anything-V2-Base-hf",
    "depth-anything-v2-large": "depth-anything/Depth-Anything-V2-Large-hf",  # the release's choice (ViT-L)
}
DEPTH_ALIASES: dict[str, str] = {
    "small": "depth-anything-v2-small", "vits": "depth-anything-v2-small",
    "base": "depth-anything-v2-base", "vitb": "depth-anything-v2-base",
    "large": "depth-anything-v2-large", "vitl": "depth-anything-v2-large",
}

SAM_MODELS: dict[str, str] = {
    "sam-vit-base": "facebook/sam-vit-base",
    "sam-vit-large": "facebook/sam-vit-large",
    "sam-vit-huge": "facebook/sam-vit-huge",  # the release's choice (ViT-H)
    "sam-hq-vit-base": "syscv-community/sam-hq-vit-base",
    "sam-hq-vit-large": "syscv-community/sam-hq-vit-large",
    "sam-hq-vit-huge": "syscv-community/sam-hq-vit-huge",
}
SAM_ALIASES: dict[str, str] = {
    "vit_b": "sam-vit-base", "sam_vit_b": "sam-vit-base", "vit-b": "sam-vit-base",
    "vit_l": "sam-vit-large", "sam_vit_l": "sam-vit-large", "vit-l": "sam-vit-large",
    "vit_h": "sam-vit-huge", "sam_vit_h": "sam-vit-huge", "vit-h": "sam-vit-huge",
    "hq_vit_b": "sam-hq-vit-base", "hq_vit_l": "sam-hq-vit-large", "hq_vit_h": "sam-hq-vit-huge",
}

# The segment_anything package's official checkpoints (file name, download URL), by architecture.
SAM_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "vit_b": ("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    "vit_l": ("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    "vit_h": ("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
}

NO_WEIGHTS_HINT = (
    "No weights at all? levitor.perception's no-weights tools still work: lasso_mask / brush_mask / "
    "flood_fill_mask for masks, ground_plane_depth / constant_depth for depth (or perceive(image, "
    "depth='ground-plane', segmenter=None))."
)


class MissingWeightsError(FileNotFoundError):
    """The weights of a perception model are not on this machine. The message says what to download and where."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where ``from_pretrained`` should load a model from."""

    source: str  # a local folder or file, or a hub id
    model_id: str | None  # the public hub id, when the name maps to one (for messages)
    name: str  # the canonical short name, or the path as given
    local_files_only: bool  # True: never touch the network
    is_local_path: bool  # True: ``source`` is a folder or file on disk


def download_allowed() -> bool:
    """True when ``LEVITOR_ALLOW_DOWNLOAD=1``: only then may a loader reach the hub."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve_model(name_or_path: str | os.PathLike, models: dict[str, str], aliases: dict[str, str]) -> ResolvedModel:
    """Turn a short name, hub id or path into a :class:`ResolvedModel` (see the module docstring for the order)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return ResolvedModel(str(path), None, text, local_files_only=True, is_local_path=True)
    if _looks_like_path(text):
        raise MissingWeightsError(
            f"model path {text!r} does not exist. Pass an existing folder (saved with save_pretrained) or one "
            f"of the names {sorted(models)}."
        )
    key = aliases.get(text.lower(), text.lower())
    model_id = models.get(key)
    if model_id is None:
        by_id = {v.lower(): k for k, v in models.items()}
        if text.lower() in by_id:
            key, model_id = by_id[text.lower()], models[by_id[text.lower()]]
        elif "/" in text:
            key, model_id = text.split("/")[-1], text  # an unlisted hub id: allowed, the user knows best
        else:
            raise ValueError(
                f"unknown model name {text!r}. Use one of {sorted(models)} (or the aliases "
                f"{sorted(aliases)}), a hub id such as {next(iter(models.values()))!r}, or a local folder path."
            )
    for folder in candidate_folders(key, model_id):
        if folder.exists():
            return ResolvedModel(str(folder), model_id, key, local_files_only=True, is_local_path=True)
    return ResolvedModel(model_id, model_id, key, local_files_only=not download_allowed(), is_local_path=False)


def candidate_folders(name: str, model_id: str | None) -> list[Path]:
    """The local folders searched for ``name`` before the hub cache, in order."""
    root = models_dir()
    names = [name]
    if model_id:
        names += [model_id.split("/")[-1], model_id.replace("/", "--")]
    return [root / n for n in dict.fromkeys(names)]


def missing_weights_error(
    resolved: ResolvedModel, what: str, cause: BaseException | None = None
) -> MissingWeightsError:
    """The error a user without the weights sees: the model id, the download command, the folder, the env var."""
    model_id = resolved.model_id or resolved.source
    target = models_dir() / resolved.name
    lines = [
        f"{what} weights {model_id!r} were not found on this machine.",
        "Download them once (on a machine with internet) with:",
        f"    hf download {model_id} --local-dir {target}",
        f"and put the folder at {target} (or anywhere, and pass its path), "
        f"or set {ALLOW_DOWNLOAD_ENV}=1 to let levitor download into the Hugging Face cache.",
        f"Folders searched: {', '.join(str(p) for p in candidate_folders(resolved.name, resolved.model_id))}; "
        f"then the Hugging Face cache (local_files_only={resolved.local_files_only}).",
        NO_WEIGHTS_HINT,
    ]
    if cause is not None:
        lines.append(f"(underlying error: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})")
    return MissingWeightsError("\n".join(lines))


def find_sam_checkpoint(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    """Locate an official segment_anything ``.pth`` and infer its architecture (vit_b, vit_l, vit_h).

    Accepts a path to the file, a file name (looked up in :func:`models_dir`), or an architecture name.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    arch = _sam_arch_from_text(path.name)  # the file name, never a folder that happens to say "vit_h"
    if path.is_file():
        if arch is None:
            raise ValueError(
                f"cannot tell the SAM architecture of {path.name}; name it like the official files "
                f"({', '.join(f for f, _ in SAM_CHECKPOINTS.values())}) or pass arch='vit_b'|'vit_l'|'vit_h'."
            )
        return path, arch
    if arch is None:
        raise ValueError(
            f"{text!r} is neither an existing .pth file nor a SAM architecture; use one of {sorted(SAM_CHECKPOINTS)} "
            "or a path to an official checkpoint such as sam_vit_h_4b8939.pth."
        )
    file_name, url = SAM_CHECKPOINTS[arch]
    candidate = models_dir() / (path.name if path.suffix == ".pth" else file_name)
    if candidate.is_file():
        return candidate, arch
    raise MissingWeightsError(
        f"segment_anything checkpoint {file_name} ({arch}) was not found.\n"
        f"Download it from {url}\nand put it at {candidate} (or pass its path).\n{NO_WEIGHTS_HINT}"
    )


def _sam_arch_from_text(text: str) -> str | None:
    low = text.lower().replace("-", "_")
    for arch in ("vit_b", "vit_l", "vit_h"):
        if arch in low:
            return arch
    if low in SAM_ALIASES:
        return {"base": "vit_b", "large": "vit_l", "huge": "vit_h"}[SAM_ALIASES[low].split("-")[-1]]
    return None


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``org/name``; anything else with a slash, or a weights suffix, is meant as a path."""
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or text.endswith((".pth", ".pt", ".bin", ".safetensors"))
    )


def weights_fingerprint(path: str | os.PathLike) -> str:
    """Names, sizes and modification times of the weight files under ``path``: part of the cache key, so
    replacing the weights in a folder invalidates cached embeddings computed with the old ones."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(
        f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pth", ".pt", ".json")
    ) if p.is_dir() else []
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


_LOADED: dict[str, object] = {}


def load_once(key: str, load: Callable[[], T], reuse: bool = True) -> T:
    """Return the model already loaded under ``key`` or load it now and remember it.

    Re-running a notebook cell that calls ``Segmenter.load("vit_h")`` then costs nothing instead of re-reading
    2.5 GB of weights. ``key`` must name the weights (path + fingerprint), device and dtype. Models are used in
    eval mode only, so sharing one object between several Segmenters is safe. ``reuse=False`` forces a fresh load.
    """
    if reuse and key in _LOADED:
        return _LOADED[key]  # type: ignore[return-value]
    model = load()
    _LOADED[key] = model
    return model


def forget_loaded_models() -> None:
    """Drop every remembered model (frees their memory once nothing else holds them)."""
    _LOADED.clear()
