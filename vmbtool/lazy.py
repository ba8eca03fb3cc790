"""Names a package re-exports from modules it imports only when one of those names is
first asked for (PEP 562's module `__getattr__`): a command that never uses a module
(a validate never writes a blob) does not pay for importing it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def exports(package: str, modules: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """The package's `__getattr__`: each name of `modules` (a module of the package ->
    the names it gives) imported from its module when first asked for, then kept in
    the package."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
