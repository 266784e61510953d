"""Known answers of the stability verifier (issue 3; MATH.md 2), all with h = 1."""

from __future__ import annotations

import json
import math

import pytest

import fluxact
from fluxact import verify

ONE = {"perona-malik": "lam", "charbonnier": "lam", "huber": "th", "garrote": "th",
       "geman-mcclure": "lam", "cauchy": "lam", "tanh": None}


@pytest.mark.parametrize("name", list(ONE))
@pytest.mark.parametrize("value", [1.0, 2.5])
def test_lipschitz_one_family(name: str, value: float) -> None:
    param = ONE[name]
    rep = verify(fluxact.catalogue[name], params={param: value} if param else {})
    assert rep.lipschitz == pytest.approx(1.0, rel=1e-9, abs=1e-12)
    assert rep.lipschitz >= 1.0 - 1e-12  # an upper bound of the truth
    assert rep.g_max == pytest.approx(1.0, rel=1e-9)
    assert rep.tau_linf == pytest.approx(0.5, rel=1e-9)
    assert rep.tau_sign == pytest.approx(0.25, rel=1e-9)
    assert rep.tau_euclid == pytest.approx(0.5, rel=1e-9)
    assert rep.antisymmetric and rep.nonnegative_diffusivity


@pytest.mark.parametrize("name", ["hard"])
def test_jump_gives_infinite_lipschitz_but_linf_step(name: str) -> None:
    rep = verify(fluxact.catalogue[name], params={"th": 1})
    assert math.isinf(rep.lipschitz) and "jumps" in rep.lipschitz_at
    assert rep.g_max == pytest.approx(1.0)
    assert rep.tau_linf == pytest.approx(0.5)
    assert rep.tau_linf_paper is None  # the L-based step of P1 16 gives nothing here
    assert not rep.monotone and rep.nonlinearity_class == 2


def test_truncated_quadratic_from_regulariser() -> None:
    rep = verify("Piecewise((r**2, Abs(r) <= sqrt(2)), (2, True))", "regulariser")
    assert math.isinf(rep.lipschitz) and rep.tau_linf == pytest.approx(0.5)
    assert not rep.regulariser_convex and rep.regulariser_increasing


def test_swish() -> None:
    rep = verify("r/(1 + exp(-r))")
    assert not rep.antisymmetric and rep.nonnegative_diffusivity and not rep.monotone
    assert round(rep.lipschitz, 5) == pytest.approx(1.09984, abs=1e-5)
    assert rep.lipschitz >= 1.0998393  # true value 1.099839...
    (lo, hi), = rep.decreasing_intervals
    # Phi' < 0 exactly on (-inf, -1.278464...); a tail not certified in TAIL_SECONDS is cut at
    # 2^16 times the finite end (the method says so)
    assert hi == pytest.approx(-1.27846, abs=1e-4)
    assert lo == -math.inf or (lo <= -1.278 * 2**16 and "cut at 2^16" in dict(rep.method)[
        "decreasing_intervals"])
    assert any(c.property == "antisymmetric" for c in rep.counterexamples)


def test_relu() -> None:
    rep = verify(fluxact.catalogue["relu"])
    assert not rep.antisymmetric and rep.monotone and rep.nonlinearity_class == 1
    assert rep.g_min == 0 and rep.g_max == 1
    assert rep.tau_linf == pytest.approx(0.5) and rep.holds("euclidean")


def test_sin_has_no_safe_step_and_a_counterexample() -> None:
    rep = verify("sin(r)")
    assert rep.antisymmetric
    assert rep.lipschitz == pytest.approx(1.0)
    assert not rep.nonnegative_diffusivity
    ce = next(c for c in rep.counterexamples if c.property == "nonnegative_diffusivity")
    assert ce.r * math.sin(ce.r) < 0  # a real counterexample: r Phi(r) < 0
    assert math.pi < abs(ce.r) < 2 * math.pi
    assert rep.tau_linf is None and rep.tau_sign is None and rep.tau_euclid is None
    assert "g < 0" in dict(rep.reasons)["tau_linf"]


def test_negative_g_at_infinity_gets_a_finite_counterexample() -> None:
    for formula, g in (("r*(1 - r**2)", lambda x: 1 - x * x),
                       ("r - r**3/8", lambda x: 1 - x * x / 8)):
        rep = verify(formula)  # inf g = -inf as r -> +-oo
        ce = next(c for c in rep.counterexamples if c.property == "nonnegative_diffusivity")
        assert math.isfinite(ce.r) and g(ce.r) < 0 and ce.value == pytest.approx(g(ce.r))


@pytest.mark.parametrize(("expr", "kind"), [("r**3", "activation"),
                                            ("1/Abs(r)", "diffusivity")])
def test_no_finite_step(expr: str, kind: str) -> None:
    rep = verify(expr, kind)
    assert math.isinf(rep.g_max)
    assert rep.tau_linf is None and rep.tau_euclid is None
    assert "g_max is infinite" in dict(rep.reasons)["tau_linf"]


def test_classes_and_regulariser() -> None:
    assert verify(fluxact.catalogue["charbonnier"], params={"lam": 1}).nonlinearity_class == 1
    pm = verify(fluxact.catalogue["perona-malik"], params={"lam": 1})
    assert pm.nonlinearity_class == 2 and not pm.regulariser_convex
    (a, b), (c, d) = pm.decreasing_intervals  # Phi' < 0 for |r| > lam
    assert (a, b, c, d) == (-math.inf, pytest.approx(-1.0), pytest.approx(1.0), math.inf)
    assert verify("sin(r)").nonlinearity_class is None


def test_shrinkage_conditions_follow_tau() -> None:
    pm = fluxact.catalogue["perona-malik"]
    rep = verify(pm, params={"lam": 1})
    assert rep.shrinkage_linf and rep.shrinkage_sign
    rep = verify(pm, params={"lam": 1}, tau=0.5)  # S/r = 1 - 2 g: leaves [0, r]
    assert rep.shrinkage_linf and not rep.shrinkage_sign
    rep = verify(pm, params={"lam": 1}, tau=1)
    assert not rep.shrinkage_linf


def test_h_and_operator_norm() -> None:
    rep = verify(fluxact.catalogue["charbonnier"], params={"lam": 1}, h=2.0, norm_K2=8.0)
    assert rep.tau_linf == pytest.approx(2.0)  # h^2 / (2 g_max)
    assert rep.tau_sign == pytest.approx(1.0)
    assert rep.tau_euclid == pytest.approx(0.25)  # 2 / (g_max ||K||^2)


def test_json_conventions() -> None:
    data = json.loads(verify("r**3").to_json())
    assert data["lipschitz"] == "inf" and data["tau_linf"] is None
    assert set(data) >= {"antisymmetric", "nonnegative_diffusivity", "monotone", "class",
                         "lipschitz", "g_max", "tau_linf", "tau_sign", "tau_euclid",
                         "shrinkage_linf", "shrinkage_sign", "regulariser_convex",
                         "regulariser_increasing", "counterexamples", "method"}


def test_methods_are_reported() -> None:
    rep = verify(fluxact.catalogue["perona-malik"], params={"lam": 1})
    methods = dict(rep.method)
    assert "symbolic" in methods["lipschitz"] and "symbolic" in methods["g_max"]
    assert "interval" in dict(verify("r/(1 + exp(-r))").method)["lipschitz"]


# -- symbolic parameters: closed forms through Phi = A F(r/c) (scaling.py) --------------------


@pytest.mark.parametrize("name", [n for n, p in ONE.items() if p])
def test_symbolic_parameter_gives_lipschitz_one_for_every_value(name: str) -> None:
    rep = verify(fluxact.catalogue[name])  # lam (or th) left symbolic
    assert rep.parameters == (ONE[name],)
    assert rep.lipschitz == pytest.approx(1.0, rel=1e-9) and rep.lipschitz >= 1.0
    assert rep.g_max == pytest.approx(1.0, rel=1e-9)
    assert rep.tau_linf == pytest.approx(0.5, rel=1e-9) and rep.tau_linf <= 0.5
    assert f"for every {ONE[name]} > 0" in str(rep)


@pytest.mark.parametrize("values", [{"a": 0.5, "b": 2.0}, {"a": 3.0, "b": 0.7}])
def test_symbolic_closed_form_agrees_with_numbers(values: dict[str, float]) -> None:
    import sympy as sp

    sym = verify("a*tanh(r/b)")
    a, b = sp.symbols("a b", positive=True)
    assert sp.simplify(sym.lipschitz - a / b) == 0  # L = a/b, exactly
    num = verify("a*tanh(r/b)", params=values)
    subs = {a: values["a"], b: values["b"]}
    for field in ("lipschitz", "g_max", "tau_linf", "tau_sign", "tau_euclid"):
        assert float(getattr(sym, field).subs(subs)) == pytest.approx(getattr(num, field),
                                                                       rel=1e-9), field
    # the shrinkage conditions become conditions on the parameters
    assert sym.shrinkage_linf is None and "a/b <= 2" in dict(sym.reasons)["shrinkage_linf"]
    assert num.shrinkage_linf == (values["a"] / values["b"] <= 2)


def test_symbolic_intervals_and_counterexamples_scale() -> None:
    import sympy as sp

    lam = sp.Symbol("lam", positive=True)
    rep = verify(fluxact.catalogue["perona-malik"])
    assert rep.decreasing_intervals == ((-math.inf, -lam), (lam, math.inf))
    tukey = verify(fluxact.catalogue["tukey"])
    (lo, hi), _ = tukey.decreasing_intervals
    assert lo == -lam and float(hi / lam) == pytest.approx(-1 / math.sqrt(5), rel=1e-9)
    sine = verify("lam*sin(r/lam)")
    assert not sine.nonnegative_diffusivity and sine.tau_linf is None
    (ce,) = [c for c in sine.counterexamples if c.property == "nonnegative_diffusivity"]
    point = float(ce.r.subs(lam, 2))
    assert point * 2 * math.sin(point / 2) < 0  # r Phi(r) < 0 there for lam = 2


def test_symbolic_numeric_factors_stay_in_F_and_conditions_decide() -> None:
    rep = verify("sqrt(2)*c*tanh(r/c)")  # A = sqrt2 c = sqrt2 * c: the sqrt2 stays in F
    assert rep.parameters == ("c",)
    assert rep.lipschitz >= math.sqrt(2) and rep.lipschitz == pytest.approx(math.sqrt(2))
    assert rep.tau_linf <= 1 / (2 * math.sqrt(2))
    summed = verify("(lam + 1)*tanh(r)")
    assert "Phi(r) = (lam/2 + 1/2)*F(r)" in dict(summed.method)["parameters"]
    cubic = verify("lam*r**3")  # g_max = oo for every lam: the shrinkage verdict is False
    assert cubic.shrinkage_linf is False and "always" in dict(cubic.reasons)["shrinkage_linf"]


def test_no_closed_form_asks_for_values() -> None:
    with pytest.raises(fluxact.ParameterError, match="'eps' has no value.*closed form"):
        verify("r/(1 + r**2/lam**2) + eps*r")


def test_translation_report_property() -> None:
    t = fluxact.translate("tanh(r)", "activation")
    assert t.report.lipschitz == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(fluxact.catalogue))
def test_every_catalogue_entry_verifies(name: str) -> None:
    entry = fluxact.catalogue[name]
    free = fluxact.translate(entry).free_parameters
    rep = verify(entry, params={p: 1 for p in free})
    assert rep.g_max > 0 and rep.lipschitz > 0
    # never claims a step without g >= 0, and a claimed step is the formula's
    if rep.tau_linf is not None:
        assert rep.nonnegative_diffusivity
        assert rep.tau_linf == pytest.approx(1 / (2 * rep.g_max))


# -- soundness cases found in review: each once let the verifier claim too much -------------


def test_pole_that_solveset_cannot_list_is_not_missed() -> None:
    rep = verify("1/(r*exp(r) - 1)**2", "diffusivity")  # pole at r = W(1) = 0.567...
    assert math.isinf(rep.g_max) and rep.tau_linf is None


def test_limits_are_taken_at_the_exact_breakpoint() -> None:
    rep = verify("1/(atan(r) - 1)**2", "diffusivity")  # pole at tan(1)
    assert math.isinf(rep.g_max) and rep.tau_linf is None


def test_no_gap_around_zero_in_branch_and_bound() -> None:
    rep = verify("(1 + 1/(1 + 10**40*r**2))*(2 + sin(r))/3", "diffusivity")
    assert rep.g_max >= 4 / 3  # g(0) = 4/3 inside a spike of width 1e-20


def test_results_are_rounded_outward() -> None:
    from fractions import Fraction

    rep = verify("3*r/(5 + r**2)")  # g_max = 3/5 exactly
    assert Fraction(rep.g_max) >= Fraction(3, 5)
    assert Fraction(rep.tau_linf) <= Fraction(5, 6)


def test_shrinkage_of_a_regulariser_uses_alpha() -> None:
    rep = verify("r**2", "regulariser", alpha=1)  # S = r - sqrt2 Psi'(sqrt2 r) = -3 r
    assert not rep.shrinkage_linf and not rep.shrinkage_sign


def test_poles_forbid_monotone() -> None:
    assert not verify("tan(r)").monotone


def test_require_raises_with_reason() -> None:
    with pytest.raises(fluxact.UnstableError, match="g < 0"):
        verify("sin(r)", require="linf")
    assert verify("tanh(r)", require="euclidean").holds("euclidean")


def test_decreasing_interval_far_out_is_found() -> None:
    rep = verify("r*exp(-r**2/800) + sin(r)/1000")
    assert not rep.monotone and rep.decreasing_intervals


def test_quotient_without_its_fill_at_zero_is_still_bounded() -> None:
    """g = Phi/r left unfilled at 0 (as when the limit step runs out of time on a busy
    machine): the mean value theorem still bounds it next to 0."""
    import sympy as sp
    from fluxact.translator.bounds import extreme

    r = sp.Symbol("r", real=True)
    phi = sp.Rational(7, 4) * sp.tanh(3 * r / 4) + sp.Rational(5, 4) * sp.atan(5 * r / 4)
    top = extreme(phi / r, r, "sup", flux=phi)
    assert top.value == pytest.approx(7 * 3 / 16 + 25 / 16, rel=1e-6)  # Phi'(0) = 2.875
    assert top.value >= 2.875


def test_critical_points_that_are_roots_of_a_polynomial_are_bounded() -> None:
    """Phi'' of a sum of two rational diffusivities has critical points that SymPy gives as
    CRootOf (degree 8); interval arithmetic had no enclosure for them, and L came out inf.
    They are enclosed by SymPy's exact isolating intervals: L = g(0) = 1."""
    rep = verify("0.5/(1 + s2/0.01) + 0.5/(1 + s2)", "diffusivity", convention="s2")
    assert rep.lipschitz == pytest.approx(1.0, rel=1e-9)
    assert rep.g_max == pytest.approx(1.0, rel=1e-9)


def test_a_sum_on_different_scales_gets_the_sum_of_its_terms_bounds() -> None:
    """Three diffusivities at scales 0.02, 0.04 and 0.08: branch and bound on the whole Phi'
    ran out of time with an upper bound of 1.4e268 for inf |Phi'|; each term's bound is exact
    and their sum is L = w1 + w2 + w3 (attained at r = 0)."""
    params = dict(w1=0.3358, w2=0.3360, w3=0.3308, l1=5.04 / 255, l2=10.079 / 255,
                  l3=19.844 / 255)
    rep = verify("w1/(1 + s2/l1**2) + w2*exp(-s2/l2**2) + w3/sqrt(1 + s2/l3**2)",
                 "diffusivity", convention="s2", params=params)
    assert 1.0026 <= rep.lipschitz <= 1.0026 * (1 + 1e-9)
    assert rep.tau_euclid == pytest.approx(2 / (4 * 1.0026), rel=1e-9)
