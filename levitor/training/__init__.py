"""Training the LeviTor ControlNet (accelerate): configs, datasets, the EDM loss, the loop, precompute.

``levitor train CONFIG`` or ``python -m levitor.training CONFIG``."""

from levitor._util.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "TrainConfig": ".config", "load_config": ".config", "train": ".loop", "PrecomputeConfig": ".precompute",
})
__all__ = ["TrainConfig", "load_config", "train", "PrecomputeConfig"]
