"""fluxact.coupled: the report on coupled (rotation-invariant) nonlinearities (MATH.md 4)."""

from __future__ import annotations

import pytest
import sympy as sp
from fluxact.translator.coupled import OPERATORS, coupled
from fluxact.translator.errors import ParameterError

import fluxact

PM = "1/(1 + s2/lam**2)"  # rational Perona-Malik, P2 (5)


def test_isotropic_gradient() -> None:
    rep = coupled(PM, params={"lam": 2.0})
    assert rep.rotation_invariant and "couples all 2" in rep.why
    assert rep.g_min == 0 and rep.g_max == 1 and rep.eigenvalues_in_range
    assert rep.norm_K2 == 8 and rep.tau_euclid == 0.25  # 2 / (1 * 8)
    assert rep.tau_maxmin == 0.25  # h^2 / (4 g_max)
    assert "rotation invariant: yes" in str(rep)


def test_modes() -> None:
    aniso = coupled(PM, params={"lam": 2.0}, mode="anisotropic")
    assert aniso.rotation_invariant and "structure tensor" in aniso.why
    assert aniso.tau_euclid == 0.25 and aniso.tau_maxmin is None
    assert "no max-min principle" in dict(aniso.reasons)["max-min"]
    flat = coupled(PM, params={"lam": 2.0}, mode="uncoupled")
    assert not flat.rotation_invariant and "separately" in flat.why
    assert flat.tau_euclid == 0.25
    with pytest.raises(ParameterError, match="unknown mode"):
        coupled(PM, mode="diagonal")


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_operator_norms_and_grid_size(operator: str) -> None:
    c, norm, power = OPERATORS[operator]
    if operator == "www":
        norm *= 1 - 0.41  # the exact ||K||^2 of the default alpha
    for h in (1.0, 0.5):
        rep = coupled("exp(-s2/(2*lam**2))", params={"lam": 1.0}, operator=operator, h=h)
        assert rep.channels == c and rep.norm_K2 == pytest.approx(norm / h**power)
        assert rep.tau_euclid == pytest.approx(2 / (norm / h**power))
        assert rep.tau_euclid <= 2 / (norm / h**power)  # never rounded up
        assert (rep.tau_maxmin is not None) == (operator in ("gradient", "www"))
        if operator == "www":
            assert rep.tau_maxmin == pytest.approx(h**2 / (4 - 2 * 0.41))
            assert "O(h^2)" in rep.why


def test_www_alpha() -> None:
    rep = coupled(PM, params={"lam": 1.0}, operator="www", alpha=0.25, mode="anisotropic")
    assert rep.norm_K2 == pytest.approx(6.0) and rep.tau_euclid == pytest.approx(1 / 3)
    assert rep.tau_maxmin is None and rep.channels == 10
    with pytest.raises(ParameterError, match="alpha"):
        coupled(PM, operator="www", alpha=0.6)


def test_scales_with_weights() -> None:
    rep = coupled(PM, params={"lam": 1.0}, operator=["gradient"] * 3, weights=[1.0, 0.5, 0.25])
    assert rep.norm_K2 == pytest.approx(8 * 1.75)
    assert rep.tau_euclid == pytest.approx(2 / 14)
    with pytest.raises(ParameterError, match="weights"):
        coupled(PM, operator=["gradient"] * 2, weights=[1.0])
    with pytest.raises(ParameterError, match="same channels"):
        coupled(PM, operator=["gradient", "laplacian"])


def test_symbolic_parameters_and_failures() -> None:
    rep = fluxact.coupled("a/(1 + s2/lam**2)")  # g_max = a for every a, lam > 0
    a = sp.Symbol("a", positive=True)
    assert sp.simplify(rep.g_max - a) == 0
    assert sp.simplify(rep.tau_euclid - 1 / (4 * a)) == 0
    bad = coupled("1 - s2")
    assert not bad.eigenvalues_in_range and bad.tau_euclid is None
    assert "g < 0" in dict(bad.reasons)["euclidean"]
    assert "no guarantee" in str(bad)
    with pytest.raises(ParameterError, match="diffusivity"):
        coupled(fluxact.translate("r", "activation"))
    with pytest.raises(ParameterError, match="unknown operator"):
        coupled(PM, operator="sobel")
