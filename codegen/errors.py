"""The code generator's error: a SymPy expression that a printer cannot lower to a target."""

from __future__ import annotations

from ..translator.errors import FluxactError


class CodegenError(FluxactError):
    """An expression (or part of one) has no lowering for the target; the message names the
    sub-expression and says how to fix it."""
