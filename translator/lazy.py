"""Public names of a package that load on first use (PEP 562), for fluxact,
fluxact.translator and fluxact.codegen: importing any of them loads none of its submodules, so
the torch runtime can import fluxact.translator.errors and fluxact.translator.facts without
SymPy."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping, MutableMapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, namespace: MutableMapping[str, Any], exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: a name of ``exports``
    (name -> the relative submodule defining it) is imported on first access and kept in the
    package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__


def keep_exports_bound(package: str, exports: Mapping[str, str]) -> None:
    """Keep an exported name bound to its object when the submodule of the same name
    (fluxact.translator's ``verify``, fluxact.codegen's ``prepare``) is imported: the import
    system then sets the package's attribute to the submodule, which would shadow the function
    (get the submodule with importlib.import_module). Where another submodule defines the name
    (fluxact.translator's ``verify`` is in translation.py), the attribute is left unset for
    ``__getattr__`` to resolve: that submodule may still be importing."""

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (isinstance(value, types.ModuleType) and name in exports
                    and value.__name__ == f"{self.__name__}.{name}"):
                if exports[name] != f".{name}":
                    return
                value = getattr(value, name)
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package
