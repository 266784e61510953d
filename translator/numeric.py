"""Numeric evaluation of a form (mpmath, 30 digits), for checks, plots and the regulariser
where SymPy finds no closed form (its Integral is evaluated by quadrature)."""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import sympy as sp

from .errors import missing_value

DIGITS = 30
HUGE = 2**64  # exp beyond +-HUGE is +inf or 0 here: mpmath needs about |x| bits for exp(x)


def safe_exp(x):
    """mpmath exp, but +inf above HUGE and 0 below -HUGE instead of an astronomically slow
    exact power (values for plots and messages; bounds come from interval.py)."""
    if mpmath.re(x) > HUGE:
        return mpmath.inf
    if mpmath.re(x) < -HUGE:
        return mpmath.mpf(0)
    return mpmath.exp(x)


#: lambdify modules for point evaluation that cannot stall on exp(exp(..))
POINT_MODULES = [{"exp": safe_exp}, "mpmath"]


def real_value(value: object) -> float:
    """A float, or nan where the value is complex (e.g. sqrt of a negative number)."""
    if isinstance(value, mpmath.mpc):
        return float(value.real) if value.imag == 0 else math.nan
    return float(value)


def missing_parameters(expr: sp.Expr, r: sp.Symbol) -> list[str]:
    return sorted(s.name for s in expr.free_symbols if s != r)


def numeric_function(expr: sp.Expr, r: sp.Symbol, what: str) -> Callable[[float], float]:
    """A float -> float function for ``expr`` in ``r``; every parameter must have a value."""
    missing = missing_parameters(expr, r)
    if missing:
        raise missing_value(missing[0], what)
    compiled = sp.lambdify(r, expr, modules=POINT_MODULES)

    def evaluate(value: float) -> float:
        with mpmath.workdps(DIGITS):
            result = compiled(mpmath.mpf(value))
        return real_value(result)

    return evaluate
