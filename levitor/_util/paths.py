"""Where levitor keeps what users download: one folder, one layout, for every model.

    $LEVITOR_HOME/                 (default ~/.cache/levitor)
      models/<name>/               weights, named after the part of the hub id after the '/'
      eval/                        feature networks for FID / FVD
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LEVITOR_HOME"


def levitor_home() -> Path:
    """``$LEVITOR_HOME``, else ``~/.cache/levitor``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "levitor").expanduser()


def models_dir() -> Path:
    """Downloaded model folders and checkpoints: ``$LEVITOR_HOME/models``."""
    return levitor_home() / "models"


def eval_dir() -> Path:
    """The FID / FVD feature networks: ``$LEVITOR_HOME/eval``."""
    return levitor_home() / "eval"
