"""Public names of a package that load on first use (PEP 562), for fluxact and
fluxact.translator: importing either package loads none of its submodules, so the torch
runtime can import fluxact.translator.errors without SymPy."""

from __future__ import annotations

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
