"""The verifier's claims checked against its own generated code (issue 13).

For random formulas (smooth pieces, kinks, breakpoints, jumps and isolated values), Phi is
sampled in float64 through the generated torch module at huge and tiny r, at every breakpoint
and its float neighbours, and densely around 0; a sample that contradicts any claim of the
report (g >= 0, g_max, L, monotone, antisymmetric, Phi(0) = 0 when a time step is given) fails
the test. The tolerances only absorb float64 rounding of the evaluation itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxact

torch = pytest.importorskip("torch")

FEW = settings(max_examples=max(3, settings().max_examples // 3))

coefficient = st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5, -1.0])
scale = st.sampled_from([0.25, 0.5, 1.0, 2.0])
point = st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 1.5, 3.0])
ATOMS = (
    "{a}*tanh({b}*r)", "{a}*atan({b}*r)", "{a}*r*exp(-{b}*r**2)", "{a}*r/(1 + {b}*r**2)",
    "{a}*r", "{a}*sin({b}*r)", "{a}*Abs(r)", "{a}*Max(0, r - {c})", "{a}*sign(r)",
    "{a}*r**3", "{a}*exp(-{b}*r**2)",
)


@st.composite
def formulas(draw) -> tuple[str, list[float]]:
    """A sum of one to three atoms, maybe cut at a breakpoint or given a point value."""
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        atom = draw(st.sampled_from(ATOMS))
        terms.append(atom.format(a=draw(coefficient), b=draw(scale), c=draw(point)))
    body = " + ".join(f"({t})" for t in terms)
    breaks: list[float] = [0.0]
    shape = draw(st.sampled_from(["plain", "cut", "point"]))
    c = draw(point)
    if shape == "cut":
        other = draw(st.sampled_from(ATOMS)).format(a=draw(coefficient), b=draw(scale), c=c)
        body = f"Piecewise(({body}, r < {c}), ({other}, True))"
        breaks.append(c)
    elif shape == "point":
        body = f"Piecewise(({draw(coefficient)}, Eq(r, {c})), ({body}, True))"
        breaks.append(c)
    return body, breaks


def samples(breaks: list[float]) -> np.ndarray:
    near = [b + d for b in breaks for d in (-1e-3, -1e-9, 0.0, 1e-9, 1e-3)]
    neighbours = [np.nextafter(b, s) for b in breaks for s in (-np.inf, np.inf)]
    far = [s * 2.0**k for k in range(-40, 90, 3) for s in (-1, 1)]
    dense = list(np.linspace(-6, 6, 241))
    return np.unique(np.array(near + neighbours + far + dense, dtype=np.float64))


def check_claims(text: str, breaks: list[float]) -> None:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _check_claims(text, breaks)


def _check_claims(text: str, breaks: list[float]) -> None:
    t = fluxact.translate(text, "activation")
    rep = fluxact.verify(t)
    phi = fluxact.to_torch(t, backend="torch")
    x = samples(breaks)
    with torch.no_grad():
        y = phi(torch.from_numpy(x)).numpy()
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    size = 1e-12 * (1 + np.abs(y))  # float64 rounding of one evaluation, relative
    if rep.nonnegative_diffusivity is True:
        bad = x * y < -size * np.abs(x)
        assert not bad.any(), f"{text}: g < 0 at r = {x[bad][:3]} although g >= 0 is claimed"
    nonzero = x != 0
    g = y[nonzero] / x[nonzero]
    # Phi(x)/x next to 0 inherits Phi's rounding (1 - e^(-x^2) cancels) divided by |x|
    slack = 1e-13 * (1 + np.abs(y[nonzero])) / np.abs(x[nonzero])
    bad = g > rep.g_max * (1 + 1e-9) + slack
    assert not bad.any(), f"{text}: g = {g[bad][:3]} above the claimed g_max = {rep.g_max}"
    if math.isfinite(rep.lipschitz):
        dx, dy = np.diff(x), np.abs(np.diff(y))
        slack = size[1:] + size[:-1]
        bad = dy > rep.lipschitz * dx * (1 + 1e-9) + slack
        assert not bad.any(), f"{text}: |Phi'| above the claimed L = {rep.lipschitz}"
    if rep.monotone is True:
        bad = np.diff(y) < -(size[1:] + size[:-1])
        assert not bad.any(), f"{text}: Phi decreases at r = {x[1:][bad][:3]}"
    if rep.antisymmetric is True:
        with torch.no_grad():
            mirror = phi(torch.from_numpy(-x)).numpy()
        assert np.allclose(mirror, -y, rtol=1e-12, atol=1e-12), f"{text}: not antisymmetric"
    if rep.tau_linf is not None:
        with torch.no_grad():
            at0 = phi(torch.zeros(1, dtype=torch.float64)).item()
        assert at0 == 0, f"{text}: Phi(0) = {at0} although a time step is given"


@FEW
@given(formulas())
def test_no_sample_of_the_generated_code_contradicts_a_claim(case) -> None:
    check_claims(*case)


@pytest.mark.parametrize("text, breaks", [
    ("Piecewise((r, Abs(r) > 0), (1, True))", [0.0]),
    ("Piecewise((r, Ne(r, 1)), (5, True))", [0.0, 1.0]),
    ("Piecewise((r, r < 1), (r - 1e-13, True))", [0.0, 1.0]),
    ("r*(1 + sin(r)/r)", [0.0]),
])
def test_reproducers_against_generated_code(text: str, breaks: list[float]) -> None:
    check_claims(text, breaks)
