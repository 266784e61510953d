"""The code generator's error: a SymPy expression that a printer cannot lower to a target, or
a name that cannot name generated code."""

from __future__ import annotations

from ..translator.errors import FluxactError


class CodegenError(FluxactError):
    """An expression (or part of one) has no lowering for the target, or an activation's name
    cannot be a module, function and class name; the message names the sub-expression or the
    name and says how to fix it."""
