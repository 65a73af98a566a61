"""Lazy package attributes (PEP 562): ``import levitor`` stays fast and torch-free until a name is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` (a module path relative to
    the package, e.g. ``".engine"``) the first time ``name`` is looked up."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        # every name of that module at once (looked up once): importing ``.perceive`` binds the submodule as the
        # package's ``perceive``, which would otherwise hide the function of that name from this hook
        for other, where in exports.items():
            if where == exports[name]:
                setattr(importlib.import_module(package), other, getattr(module, other))
        return getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__


def is_torch_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch: no tensor exists before torch is imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)
