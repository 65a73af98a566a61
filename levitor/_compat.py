"""Module paths from before the layered layout (2026-12) keep working, so scripts and notebooks written for them
run unchanged. Each old path is an alias: ``import levitor.pipeline`` gives the very module
``levitor.generation.pipeline`` (the same object, so settings and monkeypatches agree); an old module that was
split into several gives their names together; ``python -m levitor.train`` runs what it ran.

New code imports the new paths (the table below is the old -> new map).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED: dict[str, tuple[str, ...]] = {
    "levitor.instances": ("levitor.control.instances",),
    "levitor.pipeline": ("levitor.generation.pipeline", "levitor.generation.presets"),
    "levitor.generate": ("levitor.generation.generate",),
    "levitor.mini": ("levitor.generation.mini",),
    "levitor.memtrace": ("levitor.generation.memtrace",),
    "levitor.train": ("levitor.training.config", "levitor.training.datasets", "levitor.training.loss",
                      "levitor.training.models", "levitor.training.loop", "levitor.training.commands"),
    "levitor.precompute": ("levitor.training.precompute", "levitor.data.records", "levitor.perception.depth_fn"),
    "levitor.evaluate": ("levitor.evaluation.protocol",),
    "levitor.eval_runner": ("levitor.evaluation.runner",),
    "levitor.metrics": ("levitor.evaluation.metrics",),
    "levitor.tracking": ("levitor.evaluation.tracking",),
    "levitor.viz_video": ("levitor.viz.video",),
    "levitor.paths": ("levitor._util.paths",),
    "levitor.threads": ("levitor._util.threads",),
    "levitor.studio_launch": ("levitor_widgets.launch",),
    "levitor.perception.loading": ("levitor.weights",),
    "levitor.motion._kernels": ("levitor.motion.kernels", "levitor.control.kernels", "levitor._util.jit"),
}

# ``python -m <old path>``: what it ran
MAIN: dict[str, str] = {
    "levitor.train": "levitor.training.commands:main",
    "levitor.precompute": "levitor.training.precompute:precompute_main",
    "levitor.eval_runner": "levitor.evaluation.runner:eval_main",
    "levitor.studio_launch": "levitor_widgets.launch:main",
}


class _Union(types.ModuleType):
    """An old module that was split: its names are looked up in the new modules, in order."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Old path of {', '.join(targets)} (see levitor._compat).")
        self.__targets = targets

    def _modules(self) -> list[types.ModuleType]:
        return [importlib.import_module(t) for t in self.__targets]

    def __getattr__(self, attr: str):
        for module in self._modules():
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for m in self._modules() for n in dir(m)})


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        if len(self.targets) == 1:
            return importlib.import_module(self.targets[0])
        return _Union(spec.name, self.targets)

    def exec_module(self, module) -> None:
        pass

    def get_code(self, fullname: str):  # ``python -m old.path``
        if fullname not in MAIN:
            raise ImportError(f"{fullname} is an alias of {self.targets[0]}; run python -m {self.targets[0]}")
        module, func = MAIN[fullname].split(":")
        return compile(f"import sys\nfrom {module} import {func}\nsys.exit({func}())", f"<{fullname}>", "exec")


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
