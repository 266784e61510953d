"""Known answers of the dictionary, written from MATH.md 1 and 2."""

from __future__ import annotations

import dataclasses
import math

import mpmath
import pytest
import sympy as sp

import fluxact
from fluxact import ParameterError, TranslationError, translate
from tests.numeric_check import assert_same_function

r = sp.Symbol("r", real=True)
lam = sp.Symbol("lam", positive=True)
s2 = sp.Symbol("s2", nonnegative=True)


def same(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.simplify(a - b) == 0


def test_perona_malik_symbolic_forms() -> None:
    t = translate("exp(-r**2/(2*lam**2))", "diffusivity")
    assert same(t.regulariser, 2 * lam**2 * (1 - sp.exp(-r**2 / (2 * lam**2))))
    assert same(t.shrinkage, r * (1 - sp.exp(-r**2 / lam**2)))
    assert same(t.activation, r * sp.exp(-r**2 / (2 * lam**2)))
    assert t.free_parameters == ("lam",)


def test_corrected_psi_to_s_entry() -> None:
    """S = r - sqrt2 alpha Psi'(sqrt2 r); MATH.md fixes the OCR'd sqrt(2 alpha) Psi'(sqrt(2r))."""
    t = translate("r**4", "regulariser", alpha=sp.Rational(1, 3))
    # Psi' = 4 r^3, so S = r - sqrt2 (1/3) 4 (sqrt2 r)^3 = r - (16/3) r^3
    assert same(t.shrinkage, r - sp.Rational(16, 3) * r**3)


def test_tau_enters_shrinkage_and_alpha_enters_regulariser() -> None:
    t = translate("r", "activation", tau=sp.Rational(1, 8), alpha=sp.Rational(1, 2))
    assert same(t.shrinkage, r / 2)  # r - 2 sqrt2 tau sqrt2 r = r (1 - 4 tau)
    back = translate("r/2", "shrinkage", tau=sp.Rational(1, 8), alpha=sp.Rational(1, 2))
    assert same(back.activation, r)  # (r - sqrt2 (r/2)/sqrt2) / (4 tau) = r
    assert same(back.regulariser, r**2 / 4)  # (r^2 - 2 sqrt2 r^2/(4 sqrt2)) / (4 alpha)
    assert any("differs from alpha" in n for n in back.notes)


def test_removable_singularity_filled_by_limit() -> None:
    t = translate("tanh(r)", "activation")
    assert t.diffusivity.subs(r, 0) == 1  # g = tanh(r)/r -> 1
    t = translate("sin(r)", "activation")
    assert t.diffusivity.subs(r, 0) == 1
    t = translate("r - r**3/3", "shrinkage")  # g = (1 - sqrt2/r S(r/sqrt2)) / (4 tau)
    assert t.diffusivity.subs(r, 0) == 0


def test_jump_at_zero_is_reported() -> None:
    t = translate("sign(r)", "activation")
    assert any("unbounded" in n for n in t.notes)  # g = 1/|r|


def test_regulariser_is_even_without_log_of_negative() -> None:
    t = translate("r/(1 + r**2)", "activation")
    f = t.numeric("regulariser")
    assert f(-3.0) == pytest.approx(f(3.0)) == pytest.approx(math.log(10))
    assert not t.regulariser.has(sp.I)


def test_non_antisymmetric_regulariser_has_both_halves() -> None:
    t = translate("Max(0, r)", "activation")  # ReLU
    f = t.numeric("regulariser")
    assert f(2.0) == pytest.approx(4.0) and f(-2.0) == pytest.approx(0.0)


def test_piecewise_through_every_rule() -> None:
    t = translate("Piecewise((r, Abs(r) <= 1), (0, True))", "activation")
    assert isinstance(t.regulariser, sp.Piecewise)
    f = t.numeric("regulariser")
    assert f(0.5) == pytest.approx(0.25) and f(3.0) == pytest.approx(1.0)


def test_no_closed_form_regulariser_is_numeric() -> None:
    t = translate(fluxact.catalogue["weickert"], params={"lam": 1})
    assert not t.regulariser_closed_form
    assert any("numerically" in n for n in t.notes)
    c = 3.31488

    def g(x):  # Weickert g(s^2) with lam = 1, as a function of x = |s|
        return 1 - mpmath.exp(-c / x**8) if x else 1

    want = float(2 * mpmath.quad(lambda x: g(x) * x, [0, 1, 2.5]))  # Psi = 2 int g(x) x dx
    assert t.numeric("regulariser")(2.5) == pytest.approx(want, rel=1e-9)


def test_s2_convention_gives_s2_forms() -> None:
    t = translate("1/(1 + s2/lam**2)", "diffusivity", convention="s2")
    assert same(t.diffusivity, 1 / (1 + r**2 / lam**2))
    g_s2, psi_s2 = t.shown("diffusivity"), t.shown("regulariser")
    assert same(g_s2, 1 / (1 + s2 / lam**2))
    assert same(sp.diff(psi_s2, s2), g_s2)  # g = Psi'(s^2) (P2 5)
    assert t.to_dict()["diffusivity"].count("s2") == 1


def test_s2_convention_refuses_r_in_diffusivity() -> None:
    with pytest.raises(fluxact.FormulaError, match="s2"):
        translate("exp(-r**2)", "diffusivity", convention="s2")


def test_s2_convention_notes_non_even_diffusivity() -> None:
    t = translate("Max(0, r)", "activation", convention="s2")
    assert t.argument("diffusivity") == "r"
    assert any("no s2 form" in n for n in t.notes)


def test_parameter_values_are_exact_and_checked() -> None:
    t = translate("r*exp(-r**2/(2*lam**2))", "activation", params={"lam": 1.5})
    assert t.input.params == {"lam": sp.Rational(3, 2)}
    assert not t.free_parameters
    with pytest.raises(ParameterError, match="does not occur"):
        translate("r", "activation", params={"lam": 1})
    with pytest.raises(ParameterError, match="positive"):
        translate("r/lam", "activation", params={"lam": 0})
    with pytest.raises(ParameterError, match="finite"):
        translate("r/lam", "activation", params={"lam": float("inf")})


def test_numeric_needs_values_and_names_the_missing_one() -> None:
    t = translate("r/lam", "activation")
    with pytest.raises(ParameterError, match=r"'lam' .*params=\{'lam': \.\.\.\}"):
        t.numeric("activation")


def test_tau_must_be_positive() -> None:
    with pytest.raises(TranslationError, match="tau"):
        translate("r", "activation", tau=0)


def test_sympy_input_and_aliases() -> None:
    x, th = sp.symbols("x th")
    t = translate(sp.Piecewise((x, sp.Abs(x) < th), (0, True)), "Phi", variable="x")
    assert t.free_parameters == ("th",)
    assert t.input.kind == "activation"


def test_translation_is_immutable_and_renders() -> None:
    t = translate(fluxact.catalogue["charbonnier"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.activation = r  # type: ignore[misc]
    latex = t._repr_latex_()
    assert latex.startswith("$\\begin{array}") and "\\Phi" in latex
    data = t.to_dict()
    assert set(data) >= {"input", "diffusivity", "regulariser", "shrinkage", "activation"}
    for kind in fluxact.KINDS:  # every formula string is SymPy-parsable and the same function
        parsed = sp.sympify(data[kind], locals={"r": r, "lam": lam})
        assert same(parsed, t.form(kind))


@pytest.mark.parametrize("name", list(fluxact.catalogue))
def test_every_catalogue_entry_translates_with_source(name: str) -> None:
    entry = fluxact.catalogue[name]
    assert entry.source
    t = translate(entry, params={p: 1.3 for p in translate(entry).free_parameters})
    points = [k / 7 + 0.01 for k in range(-20, 21)]
    # Phi = g r (Table 1, row g) holds for every entry, whatever its own kind
    assert_same_function(t.numeric("activation"),
                         lambda v: t.numeric("diffusivity")(v) * v, points, what=name)


def test_lookup_accepts_aliases_and_suggests() -> None:
    assert fluxact.lookup("Soft").name == "huber"
    assert fluxact.lookup("lorentzian").name == "cauchy"
    with pytest.raises(fluxact.FormulaError, match="did you mean 'perona-malik'"):
        fluxact.lookup("perona-malk")


def test_a_sum_of_diffusivities_is_integrated_term_by_term() -> None:
    """SymPy did not integrate the three-term sum whole within its budget (Psi was left an
    Integral); term by term it does: Psi is the sum of the three Psis, in closed form."""
    t = translate("w1/(1 + s2/l1**2) + w2*exp(-s2/l2**2) + w3/sqrt(1 + s2/l3**2)",
                  "diffusivity", convention="s2")
    assert t.regulariser_closed_form
    r = t.variable
    w1, w2, w3, l1, l2, l3 = (sp.Symbol(n, positive=True)
                              for n in ("w1", "w2", "w3", "l1", "l2", "l3"))
    want = (w1 * l1**2 * sp.log(1 + r**2 / l1**2) + w2 * l2**2 * (1 - sp.exp(-r**2 / l2**2))
            + 2 * w3 * l3 * (sp.sqrt(l3**2 + r**2) - l3))
    values = {w1: 0.3, w2: 1.2, w3: 0.5, l1: 0.2, l2: 1.5, l3: 3.0}
    for x in (0.0, 0.1, 1.0, 7.0):
        got = float(t.regulariser.subs(values).subs(r, x))
        assert got == pytest.approx(float(want.subs(values).subs(r, x)), rel=1e-12, abs=1e-15)


def test_terms_that_diverge_alone_are_not_a_closed_form() -> None:
    """(1 - e^-s2)/s2 split into 1/s2 and -e^-s2/s2: each integral from 0 diverges (oo and
    -oo) while the whole converges; their sum is nan, not a regulariser. Psi then stays an
    Integral, evaluated numerically (a reviewer's case)."""
    t = translate("1/s2 - exp(-s2)/s2 + w1/(1 + s2/l1**2)", "diffusivity", convention="s2",
                  params={"w1": 0.5, "l1": 2.0})
    assert not t.regulariser.has(sp.nan, sp.oo, -sp.oo, sp.zoo)
    value = t.numeric("regulariser")(1.0)
    assert math.isfinite(value) and value > 0
