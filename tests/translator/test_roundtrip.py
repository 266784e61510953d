"""Round trips: X -> Y -> X is the identity for every pair of forms (P1 Table 1), for every
catalogue entry and tau, alpha, checked numerically at random points for random parameter
values. The trips run with symbolic parameters (that is how fluxact translates: values are
substituted after integration), so hypothesis varies the values and points cheaply."""

from __future__ import annotations

import math

import pytest
import sympy as sp
from fluxact.translator.numeric import numeric_function
from hypothesis import given
from hypothesis import strategies as st

import fluxact
from tests.numeric_check import assert_same_function, away_from

KINDS = fluxact.KINDS
PAIRS = [(x, y) for x in KINDS for y in KINDS if x != y]
STEPS = [(sp.Rational(1, 4), sp.Rational(1, 4)), (sp.Rational(1, 8), sp.Rational(3, 10))]


def breakpoints(values: dict[str, float]) -> list[float]:
    """Where catalogue forms may jump or kink: simple multiples of the parameters."""
    return [v * c for v in values.values() for c in (1, math.sqrt(2), 2, 1 / math.sqrt(2), 0.5)]


def at_values(expr: sp.Expr, r: sp.Symbol, values: dict[str, float], what: str):
    subs = {sp.Symbol(k, positive=True): sp.Rational(repr(v)) for k, v in values.items()}
    return numeric_function(expr.subs(subs), r, what)


@pytest.mark.parametrize("tau,alpha", STEPS, ids=["tau=alpha=1/4", "tau=1/8,alpha=3/10"])
@pytest.mark.parametrize("name", list(fluxact.catalogue))
@given(param=st.floats(0.2, 5.0), shift=st.floats(0.001, 0.09))
def test_round_trip_every_pair(name: str, tau, alpha, param: float, shift: float) -> None:
    base = fluxact.translate(fluxact.catalogue[name], tau=tau, alpha=alpha)
    r = base.variable
    values = {p: param for p in base.free_parameters}
    points = away_from([(k / 9 + shift) * (1 + param) for k in range(-25, 26)],
                       breakpoints(values) + [0.0])
    for x, y in PAIRS:
        if not base.regulariser_closed_form and "regulariser" in (x, y):
            continue  # an unevaluated integral is no formula to enter again
        there = fluxact.translate(base.form(x), x, tau=tau, alpha=alpha).form(y)
        back = fluxact.translate(there, y, tau=tau, alpha=alpha).form(x)
        what = f"{name}: {x} -> {y} -> {x}"
        got = at_values(back, r, values, what)
        want = at_values(base.form(x), r, values, what)
        if x == "regulariser":  # defined up to a constant: compare Psi - Psi(0)
            got0, want0 = got(0.0), want(0.0)
            assert_same_function(lambda v: got(v) - got0, lambda v: want(v) - want0, points,
                                 what=what)
        else:
            assert_same_function(got, want, points, what=what)
