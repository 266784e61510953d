"""P1 Table 3 (MATH.md 1): each row entered from ANY of its four columns gives back the other
three, identical as functions (tau = alpha = 1/4, h = 1), on random parameter values.

The reference functions are written here with math, independently of the code under test.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluxact
from tests.numeric_check import assert_same_function, away_from

S2 = math.sqrt(2)


def sgn(x: float) -> float:
    return (x > 0) - (x < 0)


# name -> (parameter, {kind: (formula text, reference function of (r, p))})
TABLE3 = {
    "linear": (None, {
        "diffusivity": ("1", lambda r, p: 1.0),
        "regulariser": ("r**2", lambda r, p: r * r),
        "shrinkage": ("0", lambda r, p: 0.0),
        "activation": ("r", lambda r, p: r),
    }),
    "charbonnier": ("lam", {
        "diffusivity": ("1/sqrt(1 + r**2/lam**2)", lambda r, p: 1 / math.sqrt(1 + r * r / p**2)),
        "regulariser": ("2*lam**2*sqrt(1 + r**2/lam**2) - 2*lam**2",
                        lambda r, p: 2 * p**2 * math.sqrt(1 + r * r / p**2) - 2 * p**2),
        "shrinkage": ("r*(1 - 1/sqrt(1 + 2*r**2/lam**2))",
                      lambda r, p: r * (1 - 1 / math.sqrt(1 + 2 * r * r / p**2))),
        "activation": ("r/sqrt(1 + r**2/lam**2)", lambda r, p: r / math.sqrt(1 + r * r / p**2)),
    }),
    "huber": ("th", {
        "diffusivity": ("Piecewise((1, Abs(r) <= sqrt(2)*th), (sqrt(2)*th/Abs(r), True))",
                        lambda r, p: 1.0 if abs(r) <= S2 * p else S2 * p / abs(r)),
        "regulariser": ("Piecewise((r**2, Abs(r) <= sqrt(2)*th), "
                        "(2*th*(sqrt(2)*Abs(r) - th), True))",
                        lambda r, p: r * r if abs(r) <= S2 * p else 2 * p * (S2 * abs(r) - p)),
        "shrinkage": ("Piecewise((0, Abs(r) <= th), (r - th*sign(r), True))",
                      lambda r, p: 0.0 if abs(r) <= p else r - p * sgn(r)),
        "activation": ("Piecewise((r, Abs(r) <= sqrt(2)*th), (sqrt(2)*th*sign(r), True))",
                       lambda r, p: r if abs(r) <= S2 * p else S2 * p * sgn(r)),
    }),
    "perona-malik": ("lam", {
        "diffusivity": ("exp(-r**2/(2*lam**2))", lambda r, p: math.exp(-r * r / (2 * p * p))),
        "regulariser": ("2*lam**2*(1 - exp(-r**2/(2*lam**2)))",
                        lambda r, p: 2 * p * p * (1 - math.exp(-r * r / (2 * p * p)))),
        "shrinkage": ("r*(1 - exp(-r**2/lam**2))", lambda r, p: r * (1 - math.exp(-r * r / p**2))),
        "activation": ("r*exp(-r**2/(2*lam**2))",
                       lambda r, p: r * math.exp(-r * r / (2 * p * p))),
    }),
    "garrote": ("th", {
        "diffusivity": ("Piecewise((1, Abs(r) <= sqrt(2)*th), (2*th**2/r**2, True))",
                        lambda r, p: 1.0 if abs(r) <= S2 * p else 2 * p * p / (r * r)),
        "regulariser": ("Piecewise((r**2, Abs(r) <= sqrt(2)*th), "
                        "(2*th**2*(log(r**2/(2*th**2)) + 1), True))",
                        lambda r, p: r * r if abs(r) <= S2 * p
                        else 2 * p * p * (math.log(r * r / (2 * p * p)) + 1)),
        "shrinkage": ("Piecewise((0, Abs(r) <= th), (r - th**2/r, True))",
                      lambda r, p: 0.0 if abs(r) <= p else r - p * p / r),
        "activation": ("Piecewise((r, Abs(r) <= sqrt(2)*th), (2*th**2/r, True))",
                       lambda r, p: r if abs(r) <= S2 * p else 2 * p * p / r),
    }),
    "hard": ("th", {
        "diffusivity": ("Piecewise((1, Abs(r) <= sqrt(2)*th), (0, True))",
                        lambda r, p: 1.0 if abs(r) <= S2 * p else 0.0),
        "regulariser": ("Piecewise((r**2, Abs(r) <= sqrt(2)*th), (2*th**2, True))",
                        lambda r, p: r * r if abs(r) <= S2 * p else 2 * p * p),
        "shrinkage": ("Piecewise((0, Abs(r) <= th), (r, True))",
                      lambda r, p: 0.0 if abs(r) <= p else r),
        "activation": ("Piecewise((r, Abs(r) <= sqrt(2)*th), (0, True))",
                       lambda r, p: r if abs(r) <= S2 * p else 0.0),
    }),
}

KINDS = ("diffusivity", "regulariser", "shrinkage", "activation")
CASES = [(name, kind) for name in TABLE3 for kind in KINDS]


def sample_points(p: float, shift: float) -> list[float]:
    """Points on both sides of 0 and of every breakpoint (th, sqrt2 th), off the breakpoints."""
    scale = p if p else 1.0
    pts = [scale * (k / 7 + shift) for k in range(-30, 31)]
    return away_from([x for x in pts if x != 0], [p, S2 * p, p / S2] if p else [])


@pytest.mark.parametrize(("name", "given_kind"), CASES, ids=[f"{n}-from-{k}" for n, k in CASES])
@given(p=st.floats(0.05, 20.0), shift=st.floats(0.001, 0.14))
def test_row_from_any_column(name: str, given_kind: str, p: float, shift: float) -> None:
    param, columns = TABLE3[name]
    text, _ = columns[given_kind]
    params = {param: p} if param else {}
    t = fluxact.translate(text, given_kind, params=params)
    points = sample_points(p if param else 0.0, shift)
    for kind in KINDS:
        want = columns[kind][1]
        assert_same_function(
            t.numeric(kind), lambda r, want=want: want(r, p), points,
            what=f"{name} {kind} from {given_kind} ({param} = {p})",
        )


def test_catalogue_rows_match_table3() -> None:
    """The catalogue's Table 3 entries are exactly the table's rows (symbolic parameters)."""
    rows = [e.name for e in fluxact.catalogue.values() if e.table3]
    assert rows == list(TABLE3)
    for name in rows:
        param, columns = TABLE3[name]
        t = fluxact.translate(fluxact.catalogue[name], params={param: 1.7} if param else {})
        for kind in KINDS:
            assert_same_function(
                t.numeric(kind), lambda r, w=columns[kind][1]: w(r, 1.7),
                sample_points(1.7 if param else 0.0, 0.013), what=f"catalogue {name} {kind}",
            )
