"""Regression tests for issue 13: every reproducer of the two probes of the verifier, each
with a truth derived here (by hand, or from the test's own formula evaluated with mpmath), never
taken from fluxact.

- false certificates: bounds that missed part of the real line, isolated values, tiny jumps,
  breakpoints closer than a float;
- hangs and crashes: each input answers within the budget, soundly;
- the literature's nonlinearities: the right verdict, not only a safe one;
- interface: strict JSON, Phi(0) = 0 for a time step.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import mpmath
import pytest
from fluxact.translator.budget import budget_scale
from fluxact.translator.errors import ParameterError

import fluxact
from fluxact import verify

verify_module = importlib.import_module("fluxact.translator.verify")


def nested(f, depth: int):
    def phi(x):
        for _ in range(depth):
            x = f(x)
        return x
    return phi


# -- false certificates ------------------------------------------------------------------------


def test_bump_of_g_beyond_2_to_the_64_is_found() -> None:
    text = "r*(1 + 1/(1 + (log(1 + r**2) - 115)**2))"

    def phi(r):
        return r * (1 + 1 / (1 + (mpmath.log(1 + r**2) - 115) ** 2))

    r_bump = mpmath.sqrt(mpmath.exp(115) - 1)  # log(1 + r^2) = 115: g = 2 there
    assert phi(r_bump) / r_bump == pytest.approx(2, rel=1e-12)
    rep = verify(text)
    assert rep.g_max >= 2.0 and rep.g_max <= 2 * (1 + 1e-6)
    assert rep.tau_linf <= 0.25  # h^2/(2 g_max)


def test_bump_of_g_beyond_every_float64_is_found() -> None:
    rep = verify("r*(1 + 1/(1 + (log(1 + r**2) - 2000)**2))")  # g = 2 at r = e^1000
    assert rep.g_max >= 2.0


def test_block_keeps_the_max_min_principle_at_the_bump() -> None:
    torch = pytest.importorskip("torch")
    t = fluxact.translate("r*(1 + 1/(1 + (log(1 + r**2) - 115)**2))", "activation")
    block = fluxact.DiffusionBlock(fluxact.to_torch(t, backend="torch"), stability="linf")
    u = torch.tensor([[[0.0, 0.0, 9.374e24, 0.0, 0.0]]], dtype=torch.float64)
    out = block(u)
    assert out.min() >= -1e-6 * 9.374e24 and out.max() <= 9.374e24 * (1 + 1e-12)


def test_decrease_beyond_2_to_the_64_is_found() -> None:
    text = "atan(r)*(1 + exp(-(r - 1e20)**2/1e38))"

    def phi(r):
        return mpmath.atan(r) * (1 + mpmath.exp(-(r - mpmath.mpf(10) ** 20) ** 2
                                                / mpmath.mpf(10) ** 38))

    assert phi(mpmath.mpf(2e20)) < phi(mpmath.mpf(1e20))  # Phi decreases between them
    rep = verify(text)
    assert rep.monotone is False


@pytest.mark.parametrize("text, at, value", [
    ("Piecewise((r, Abs(r) > 0), (1, True))", 0, 1),
    ("r + Piecewise((1, Eq(r, 0)), (0, True))", 0, 1),
    ("Piecewise((tanh(r), Ne(r, 0)), (-1, True))", 0, -1),
])
def test_a_value_at_zero_other_than_zero_gives_no_time_step(text: str, at: float,
                                                            value: float) -> None:
    rep = verify(text)
    # Phi(0) != 0: a constant signal is not a steady state, whatever g is
    assert rep.tau_linf is None and rep.tau_sign is None and rep.tau_euclid is None
    assert "Phi(0)" in dict(rep.reasons)["tau_linf"]
    assert math.isinf(rep.lipschitz)  # an isolated value is a discontinuity
    assert rep.monotone is not True
    with pytest.raises(fluxact.UnstableError):
        verify(text, require="linf")


def test_an_isolated_value_elsewhere_is_seen() -> None:
    rep = verify("Piecewise((r, Ne(r, 1)), (5, True))")  # Phi(1) = 5, g(1) = 5
    assert math.isinf(rep.lipschitz) and rep.monotone is False
    assert rep.g_max >= 5 and rep.tau_linf <= 0.1


def test_a_jump_of_1e_13_is_a_jump() -> None:
    rep = verify("Piecewise((r, r < 1), (r - 1e-13, True))")
    assert math.isinf(rep.lipschitz) and rep.monotone is False
    assert any(c.property == "monotone" and c.r == 1 for c in rep.counterexamples)


def test_breakpoints_closer_than_a_float_stay_apart() -> None:
    # the middle piece lives on [1, 1 + 10^-20): g = (1 + 5)/1 = 6 there
    rep = verify("Piecewise((r, r < 1), (r + 5, r < 1 + 10**-20), (r, True))")
    assert rep.g_max >= 6 and math.isinf(rep.lipschitz) and rep.monotone is False


def test_a_pole_is_not_monotone_and_has_no_bound() -> None:
    rep = verify("-1/r", "activation")  # Phi' = 1/r^2 > 0, but Phi jumps from +inf to -inf
    assert rep.monotone is False and math.isinf(rep.lipschitz) and rep.tau_linf is None


# -- hangs, crashes: every input answers within its budget -------------------------------------


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(verify_module, "VERIFY_SECONDS", 6.0)
    monkeypatch.setattr(importlib.import_module("fluxact.translator.translation"),
                        "TRANSLATE_SECONDS", 6.0)


@pytest.mark.parametrize("text, phi", [
    ("r*exp(-exp(r**2/1000))", lambda r: r * mpmath.exp(-mpmath.exp(r**2 / 1000))),
    ("r*exp(-exp(r**2))**2", lambda r: r * mpmath.exp(-mpmath.exp(r**2)) ** 2),
    ("r*exp(-exp(exp(exp(r))))", lambda r: r * mpmath.exp(-nested(mpmath.exp, 3)(r))),
    ("tanh(" * 12 + "r" + ")" * 12, nested(mpmath.tanh, 12)),
])
def test_hostile_inputs_answer_soundly_within_the_budget(text: str, phi, small_budget) -> None:
    import time

    start = time.process_time()
    try:
        rep = verify(text)
    except fluxact.FluxactError as exc:  # the translation's budget: one clear line
        assert "CPU time" in str(exc)
        return
    finally:
        # both budgets, and slack
        assert time.process_time() - start < (6.0 + 6.0 + 6.0) * budget_scale()
    for x in (1e-3, 0.5, 1.0):  # no claim contradicted where the truth is computable
        g = phi(x) / x
        assert g <= rep.g_max * (1 + 1e-9)
        if rep.nonnegative_diffusivity:
            assert g >= 0


def test_exp_of_a_huge_negative_argument_does_not_hang() -> None:
    from fluxact.translator.numeric import safe_exp

    assert safe_exp(-mpmath.mpf(10) ** 300) == 0 and safe_exp(mpmath.mpf(10) ** 300) == mpmath.inf


# -- the literature's nonlinearities: right, not only safe -------------------------------------


@pytest.mark.parametrize("lam", [1.1, 3])
def test_weickert_at_any_contrast(lam: float) -> None:
    # g(s2) = 1 - exp(-C/(s2/lam^2)^4) lies in [0, 1): g >= 0, g_max = 1 (its limit at 0)
    rep = verify("1 - exp(-3.31488/(s2/lam**2)**4)", "diffusivity", convention="s2",
                 params={"lam": lam})
    assert rep.nonnegative_diffusivity is True and rep.monotone is False
    assert rep.g_max == pytest.approx(1, rel=1e-6) and rep.tau_linf == pytest.approx(0.5, rel=1e-6)


def test_minimax_concave_penalty() -> None:
    # Psi = lam |r| - r^2/(2 gam) for |r| <= gam lam: Phi = Psi'/2 = (lam sign r - r/gam)/2,
    # g = 1/(2|r|) - 1/(2 gam) >= 0 on |r| <= gam lam (unbounded at 0), 0 beyond
    rep = verify("Piecewise((lam*Abs(r) - r**2/(2*gam), Abs(r) <= gam*lam), (gam*lam**2/2, True))",
                 "regulariser", params={"lam": 1, "gam": 3})
    assert rep.nonnegative_diffusivity is True and math.isinf(rep.g_max)
    assert rep.monotone is False and math.isinf(rep.lipschitz)
    assert rep.decreasing_intervals == ((-3.0, 0.0), (0.0, 3.0))  # Phi jumps up at 0


def test_mish_has_a_lipschitz_constant() -> None:
    text = "r*tanh(log(1 + exp(r)))"

    def phi(r):
        return r * mpmath.tanh(mpmath.log(1 + mpmath.exp(r)))

    slope = max(mpmath.diff(phi, mpmath.mpf(x) / 1000) for x in range(1400, 1600))
    rep = verify(text)
    assert rep.lipschitz >= float(slope) * (1 - 1e-9)
    assert rep.lipschitz <= 1.0884982 * (1 + 1e-6)  # sup Phi' = 1.0884982 at r = 1.49
    assert rep.g_max == pytest.approx(1) and rep.nonnegative_diffusivity is True


def test_firm_shrinkage_as_pywavelets_writes_it() -> None:
    t = fluxact.translate(
        "Piecewise((r*Max(0, t2*(1 - t1/Abs(r))/(t2 - t1)), Abs(r) <= t2), (r, True))",
        "shrinkage", params={"t1": 2, "t2": 3})
    assert t.numeric("activation")(0.0) == 0  # S(0) = 0, so Phi(0) = 0
    assert t.numeric("diffusivity")(0.0) == pytest.approx(1)  # its limit at 0
    rep = verify(t)
    # Phi = r - sqrt2 S(r/sqrt2): slope 1 - 3 = -2 where S has slope t2/(t2 - t1) = 3
    assert rep.lipschitz == pytest.approx(2, rel=1e-6) and rep.g_max == pytest.approx(1)
    assert rep.antisymmetric is True


def test_garrote_as_a_maximum_is_filled_at_zero() -> None:
    rep = verify("r*Max(0, 1 - th**2/r**2)", "shrinkage", params={"th": 1})
    # S = r - th^2/r beyond th: Phi = r for |r| <= sqrt2, 2/r beyond
    assert rep.g_max == pytest.approx(1) and rep.lipschitz == pytest.approx(1)


def test_soft_shrinkage_is_antisymmetric() -> None:
    rep = verify("sign(r)*Max(0, Abs(r) - th)", "shrinkage", params={"th": 1})
    assert rep.antisymmetric is True and rep.monotone is True


def test_unproven_antisymmetry_is_unknown_not_no() -> None:
    for rep in (verify("atan(r)*(1 + exp(-(r - 1e20)**2/1e38))"), verify("tanh(r)")):
        no = rep.antisymmetric is False
        assert not no or any(c.property == "antisymmetric" for c in rep.counterexamples)


def test_cube_root_is_real() -> None:
    rep = verify("cbrt(r)")
    assert rep.antisymmetric is True and rep.monotone is True
    assert math.isinf(rep.g_max) and math.isinf(rep.lipschitz)  # |r|^(-2/3), a cusp


def test_sinc_rewritten() -> None:
    rep = verify("r*(1 + sin(r)/r)")  # g = 1 + sin(r)/r in [0.78, 2]
    assert rep.g_max == pytest.approx(2, rel=1e-6) and rep.nonnegative_diffusivity is True


def test_decreasing_intervals_of_sin_are_right() -> None:
    rep = verify("sin(r)/r", "diffusivity")  # Phi = sin r
    assert rep.decreasing_intervals
    for a, b in rep.decreasing_intervals:
        assert math.isfinite(a) and math.isfinite(b)
        for k in range(1, 20):
            assert math.cos(a + (b - a) * k / 20) <= 1e-12  # Phi' = cos <= 0 inside


def test_log_sum_penalty_jumps_up_at_zero() -> None:
    rep = verify("log(1 + Abs(r)/eps)", "regulariser", params={"eps": 1})
    # Phi = sign(r)/(2 (1 + |r|)): decreasing on each side, a jump up at 0
    assert rep.decreasing_intervals == ((-math.inf, 0.0), (0.0, math.inf))


def test_bound_for_every_value_of_one_parameter_trains() -> None:
    torch = pytest.importorskip("torch")
    t = fluxact.translate("r/(1 + (r/a)**2)**b", "activation", params={"a": 2, "b": 1.5})
    block = fluxact.DiffusionBlock(fluxact.to_torch(t, trainable=("a",), backend="torch"))
    u = torch.linspace(-3, 3, 9, dtype=torch.float64).reshape(1, 1, 9)
    block(u).sum().backward()  # a trains; L = g_max = 1 for every a > 0


# -- interface ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sin(r)", "Piecewise((r, Abs(r) > 0), (1, True))",
                                  "r/(1 + exp(-r))"])
def test_json_is_strict(text: str) -> None:
    data = json.loads(verify(text).to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["antisymmetric"] in (True, False, None)


def test_symbolic_counterexamples_speak_of_r() -> None:
    rep = verify(fluxact.catalogue["perona-malik"])
    (ce,) = [c for c in rep.counterexamples if c.property == "monotone"]
    assert "lam" in ce.reason  # Phi decreases on (lam, ...), not on (1, ...)


@pytest.mark.parametrize("text", [
    "Max((r - r)*r**r, cbrt(sign(r)))",  # SymPy: "Invalid comparison of non-real (-1)**(1/3)"
    "Min(Min(Min(r, 1e-3), cosh(r)), log(3*r))",  # SymPy: "log(-3*_y) is not comparable"
    "r*Max(0, 1 - 1/r**2)",  # a condition with no value at r = 0 (zoo)
])
def test_what_sympy_cannot_handle_is_one_clear_answer(text: str) -> None:
    try:
        rep = verify(text)
    except fluxact.FluxactError as exc:  # one line, what and how to fix
        assert "\n" not in str(exc)
        return
    assert rep.tau_linf is None or rep.nonnegative_diffusivity is True


# -- found in review: breakpoints decided exactly, cusps, branch derivatives, domains -----------


def test_a_breakpoint_next_to_zero_is_not_zero() -> None:
    # Phi(e^-1000) = -1: r Phi < 0 there; Phi(0) = 1 with a breakpoint at -e^-1000 beside it
    assert verify("Piecewise((0, Eq(r, 0)), (-1, Eq(r, exp(-1000))), (r, True))").tau_linf is None
    rep = verify("Piecewise((0, Eq(r, -exp(-1000))), (1, Eq(r, 0)), (r, True))")
    assert rep.tau_linf is None and "Phi(0) = 1" in dict(rep.reasons)["tau_linf"]


def test_a_critical_point_within_a_float_of_the_end_counts() -> None:
    # g(1 + 10^-19) = 1 + 10 = 11: the spike's top is 10^-19 from the breakpoint at 1
    rep = verify("Piecewise((1, r < 1), (1 + 10/(1 + (10**20*(r - 1) - 10)**2), True))",
                 "diffusivity")
    assert rep.g_max >= 11 and rep.tau_linf <= 0.5 / 11


def test_a_cusp_is_a_candidate() -> None:
    rep = verify("sqrt(r**2 - 2*r + 1) - 1/2", "diffusivity")  # g(1) = -1/2: |r - 1| - 1/2
    assert rep.nonnegative_diffusivity is not True and rep.tau_linf is None


def test_the_derivative_of_an_isolated_branch_is_not_phi_prime() -> None:
    rep = verify("Piecewise((r, Ne(r, 1)), (2 - r, True))")  # 2 - r = r at r = 1: Phi = r
    assert rep.monotone is True and rep.lipschitz == pytest.approx(1)


def test_an_unknown_g_max_with_a_parameter_leaves_the_shrinkage_open() -> None:
    # g/a lies in [1, 2]: L-inf shrinkage (g <= 2) holds for a <= 1, sign shrinkage (g <= 1)
    # for a <= 1/2; the verdict depends on a, so it is never "no"
    rep = verify("a*Piecewise((1, r <= pi), (1 + exp(-1/(r - pi))*(3 + sin(r))/4, True))",
                 "diffusivity")
    assert rep.shrinkage_linf is not False and rep.shrinkage_sign is not False


def test_extreme_grids_give_a_safe_step_or_a_reason() -> None:
    """h^2/(2 g_max) is computed exactly: past the largest float64 the step is that float
    (smaller, so as safe), below the smallest it is none with the reason; an h whose
    ||K||^2 = 4/h^2 is no float64 is refused with one line (was ZeroDivisionError)."""
    for h in (1e-300, 1e300, 0.0, -1.0, math.inf):
        with pytest.raises(ParameterError, match="grid size h must be"):
            verify("r/(1 + r**2)", h=h)
    rep = verify("r/(1 + r**2)", norm_K2=1e-320)
    assert rep.tau_euclid == sys.float_info.max and rep.tau_linf == 0.5
    tiny = verify("r*exp(-1e299)")  # g = e^-1e299 > 0: every float64 step is safe
    assert tiny.g_max > 0 and tiny.tau_linf == sys.float_info.max
    assert tiny.antisymmetric is True and tiny.monotone is True
    rep = verify("1e300*r", h=1e-150)  # the safe step 5e-601 is no float64
    assert rep.tau_linf is None and rep.tau_euclid is None
    assert "below the smallest positive float64" in dict(rep.reasons)["tau_linf"]
