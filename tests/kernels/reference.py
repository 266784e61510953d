"""Float64 references for the generated activations, independent of the code under test.

Phi comes from the translator's formula evaluated with mpmath (40 digits); Phi' and dPhi/dp are
numerical derivatives of that formula (mpmath.diff at 40 digits), not codegen's symbolic ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mpmath
import sympy as sp

import fluxact

PARAMS = {"lam": 1.3, "th": 0.7}  # values used for every catalogue entry


class Reference:
    def __init__(self, entry: object, params: dict[str, float]) -> None:
        t = fluxact.translate(entry)  # parameters symbolic
        self.r = t.variable
        self.names = t.free_parameters
        self.values = [params[n] for n in self.names]
        syms = [sp.Symbol(n, positive=True) for n in self.names]
        self.phi = sp.lambdify([self.r, *syms], t.activation, modules="mpmath")
        self.breakpoints = _breakpoints(t.activation.subs(dict(zip(syms, self.values))), self.r)

    def _f(self, x: float, values: Sequence[float]) -> mpmath.mpf:
        return self.phi(mpmath.mpf(x), *[mpmath.mpf(v) for v in values])

    def value(self, x: float) -> float:
        with mpmath.workdps(40):
            return _real(self._f(x, self.values))

    def derivative(self, x: float) -> float:
        with mpmath.workdps(40):
            return _real(mpmath.diff(lambda s: self._f(s, self.values), mpmath.mpf(x)))

    def parameter_derivative(self, x: float, k: int) -> float:
        def along(v: mpmath.mpf) -> mpmath.mpf:
            values = list(self.values)
            values[k] = v
            return self._f(x, values)

        with mpmath.workdps(40):
            return _real(mpmath.diff(along, mpmath.mpf(self.values[k])))

    def smooth_at(self, x: float, margin: float = 1e-3) -> bool:
        """x is not within margin (relative) of a breakpoint, where derivatives are one-sided."""
        return all(abs(x - b) > margin * (1 + abs(b)) for b in self.breakpoints)


def _real(value: object) -> float:
    if isinstance(value, mpmath.mpc):
        return float(value.real)
    return float(value)


def _breakpoints(expr: sp.Expr, r: sp.Symbol) -> list[float]:
    """Points where a Piecewise condition switches (and 0 for conditions at a point)."""
    points = {0.0}
    for rel in expr.atoms(sp.core.relational.Relational):
        for sol in sp.solve(sp.Eq(rel.lhs, rel.rhs), r):
            if sol.is_real:
                points.add(float(sol))
        diff = rel.lhs - rel.rhs
        if diff.has(sp.Abs):
            for sol in sp.solve(sp.Eq(diff.subs(sp.Abs(r), r), 0), r):
                if sol.is_real:
                    points.update({float(sol), -float(sol)})
    return sorted(p for p in points if math.isfinite(p))
