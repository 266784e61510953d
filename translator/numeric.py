"""Numeric evaluation of a form (mpmath, 30 digits), for checks, plots and the regulariser
where SymPy finds no closed form (its Integral is evaluated by quadrature)."""

from __future__ import annotations

from collections.abc import Callable

import mpmath
import sympy as sp

from .errors import ParameterError

DIGITS = 30


def missing_parameters(expr: sp.Expr, r: sp.Symbol) -> list[str]:
    return sorted(s.name for s in expr.free_symbols if s != r)


def numeric_function(expr: sp.Expr, r: sp.Symbol, what: str) -> Callable[[float], float]:
    """A float -> float function for ``expr`` in ``r``; every parameter must have a value."""
    missing = missing_parameters(expr, r)
    if missing:
        name = missing[0]
        raise ParameterError(
            f"parameter {name!r} of {what} has no value; pass params={{{name!r}: ...}} "
            f"or --param {name}=..."
        )
    compiled = sp.lambdify(r, expr, modules="mpmath")

    def evaluate(value: float) -> float:
        with mpmath.workdps(DIGITS):
            result = compiled(mpmath.mpf(value))
        return float(mpmath.re(result)) if isinstance(result, mpmath.mpc) else float(result)

    return evaluate
