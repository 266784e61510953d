"""fluxact.codegen: SymPy -> Triton / torch code generation.

Stages: ``prepare`` (Translation -> ActivationSpec: Phi, Phi', dPhi/dp with symbolic
parameters, NaN repairs), ``lower`` (printers: SymPy -> target text, after sympy.cse) and
``render`` (Jinja2 templates -> one generated Python module, checked with ast.parse).

The public names load on first use, so that the torch runtime can import
``fluxact.codegen.errors`` without SymPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..translator.lazy import keep_exports_bound, lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "CodegenError": ".errors",
    "ActivationSpec": ".prepare",
    "prepare": ".prepare",
    **dict.fromkeys(("Lowered", "TorchPrinter", "TritonPrinter", "lower"), ".printers"),
    "render": ".render",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .errors import CodegenError as CodegenError
    from .prepare import ActivationSpec as ActivationSpec
    from .prepare import prepare as prepare
    from .printers import Lowered as Lowered
    from .printers import TorchPrinter as TorchPrinter
    from .printers import TritonPrinter as TritonPrinter
    from .printers import lower as lower
    from .render import render as render

keep_exports_bound(__name__, _EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
