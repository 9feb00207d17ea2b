"""Package names imported from their modules when first used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, module_of: Mapping[str, str]) -> Callable[[str], object]:
    """A package's module-level `__getattr__` (PEP 562) giving each name of `module_of` from its
    submodule (`module_of[name]`, relative to `package`), imported at its first use: importing the
    package, or a torch-free module of it, then imports no model code."""

    def __getattr__(name: str) -> object:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)

    return __getattr__
