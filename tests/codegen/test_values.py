"""Values and gradients of generated code against truths computed without it (issue 14).

Truths: the formula evaluated in mpmath (40 digits) as a real function, Phi' by mpmath.diff, or
numbers worked out by hand in the comments. The generated code runs through the public API
(``fluxact.to_torch``), on the torch backend and, under TRITON_INTERPRET=1 (tests/conftest.py),
on the Triton kernels.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp
from fluxact.codegen.errors import CodegenError
from hypothesis import assume, given
from hypothesis import strategies as st

import fluxact

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

BACKENDS = ("torch", pytest.param("triton", marks=pytest.mark.interpreter))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

PIECEWISE_ROOT = "Piecewise((r, Abs(r) < 1), (sign(r)*sqrt(Abs(r)), True))"
CLAMPED_POWER = "Min(Max(Abs(r)**1.5, -1), 1)"


def _run(act: torch.nn.Module, xs: list[float], dtype: torch.dtype
         ) -> tuple[list[float], list[float]]:
    """(Phi(xs), Phi'(xs)) of the generated code, as floats."""
    x = torch.tensor(xs, dtype=dtype, device=DEVICE, requires_grad=True)
    y = act(x)
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return [float(v) for v in y.detach().cpu()], [float(v) for v in gx.cpu()]


class Truth:
    """Phi of a formula (kind activation unless given) as a real function in mpmath."""

    def __init__(self, formula: object, kind: str | None = "activation",
                 params: dict | None = None):
        t = fluxact.translate(formula, kind, params=params or {})
        self.f = sp.lambdify([t.variable], t.activation, modules="mpmath")

    def value(self, x: float) -> float | None:
        """Phi(x); None where it is not a finite real number."""
        with mpmath.workdps(40):
            try:
                v = self.f(mpmath.mpf(x))
            except (ValueError, ZeroDivisionError, TypeError):
                return None
        if isinstance(v, mpmath.mpc):
            if abs(v.imag) > 1e-30 * (1 + abs(v.real)):
                return None
            v = v.real
        v = float(v)
        return v if math.isfinite(v) else None

    def derivative(self, x: float) -> float | None:
        """Phi'(x) where the one-sided derivatives agree (not at a kink); else None."""
        with mpmath.workdps(40):
            try:
                left = mpmath.diff(self.f, mpmath.mpf(x), direction=-1)
                right = mpmath.diff(self.f, mpmath.mpf(x), direction=1)
            except (ValueError, ZeroDivisionError, TypeError):
                return None
        if isinstance(left, mpmath.mpc) or isinstance(right, mpmath.mpc):
            return None
        left, right = float(left), float(right)
        if not (math.isfinite(left) and math.isfinite(right)):
            return None
        if abs(left - right) > 1e-6 * (1 + abs(left)):
            return None
        return (left + right) / 2


def _close(got: float, want: float, rtol: float, atol: float = 0.0) -> bool:
    return abs(got - want) <= atol + rtol * abs(want)


# -- 1, 2: derivatives real wherever the function is --------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_piecewise_root_derivative_left_of_minus_one(backend: str, dtype: torch.dtype) -> None:
    # Phi = sign(r) sqrt|r| for |r| >= 1: Phi' = 1/(2 sqrt|r|), 0.5 at -1, 0.25 at -4
    act = fluxact.to_torch(PIECEWISE_ROOT, "activation", backend=backend)
    y, g = _run(act, [-4.0, -1.0, -2.25, 4.0], dtype)
    assert y == pytest.approx([-2.0, -1.0, -1.5, 2.0], rel=1e-6)
    assert g == pytest.approx([0.25, 0.5, 1 / 3, 0.25], rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clamped_power_derivative(backend: str) -> None:
    # Phi = min(|r|**1.5, 1): Phi' = 1.5 sqrt|r| sign(r) inside |r| < 1, 0 outside
    act = fluxact.to_torch(CLAMPED_POWER, "activation", backend=backend)
    _, g = _run(act, [-0.5, 0.5, -2.0, -1.5, 3.0], torch.float64)
    s = 1.5 * math.sqrt(0.5)
    assert g == pytest.approx([-s, s, 0.0, 0.0, 0.0], rel=1e-9, abs=1e-300)


def test_no_root_of_a_negative_base_in_derivatives() -> None:
    # simplify writes sqrt(|r|) as |sqrt(r)|: the printed code must never hold the latter
    for formula in (PIECEWISE_ROOT, CLAMPED_POWER, "Abs(r)**2.5", "sign(r)*Abs(r)**(4/3)"):
        source = fluxact.emit(formula, "activation", target="torch")
        assert "torch.abs(torch.sqrt(" not in source, formula


FORMULAS = [
    PIECEWISE_ROOT,
    CLAMPED_POWER,
    "sign(r)*Abs(r)**1.5",
    "r*Abs(r)**0.5/(1 + Abs(r))",
    "Max(Min(r, 1), -1)*sqrt(1 + Abs(r))",
    "tanh(r)*Abs(r)**(1/3)",
    "Piecewise((r**3, Abs(r) < 2), (8*sign(r)*sqrt(Abs(r)/2), True))",
    "r/sqrt(1 + r**2)",
    "r*exp(-Abs(r)**1.5)",
    "atan(r)*sqrt(Abs(r))",
    # simplify wrote Phi' over sqrt|2r - 1|: 0/0 at r = 1/2, and the limit repair put in
    # Phi'(0) = sqrt(2)/4 there (truth 0): a simplified derivative may not add a denominator
    "r*Abs(r - 1/2)**1.5",
    "r*Abs(r + 3/4)**2.5",
]
POINTS = [-1e3, -7.5, -2.0, -1.37, -1.0, -0.75, -0.5, -1e-3, 1e-3, 0.5, 0.75, 1.37, 2.0, 7.5, 1e3]


def _check_against_truth(formula: str, xs: list[float]) -> bool:
    """Generated torch forward and backward in float64 equal the mpmath truth at every x where
    it is a finite real number; never NaN there. False where no code is generated (a formula
    refused, e.g. one whose Phi' is infinite at 0)."""
    try:
        act = fluxact.to_torch(formula, "activation", backend="torch")
    except (fluxact.FluxactError, CodegenError):
        return False
    truth = Truth(formula)
    y, g = _run(act, xs, torch.float64)
    bad = []
    for x, got_y, got_g in zip(xs, y, g):
        want_y, want_g = truth.value(x), truth.derivative(x)
        if want_y is not None and not _close(got_y, want_y, 1e-9, 1e-300):
            bad.append(f"Phi({x!r}) = {got_y!r}, want {want_y!r}")
        if want_g is not None and not _close(got_g, want_g, 1e-6, 1e-12):
            bad.append(f"Phi'({x!r}) = {got_g!r}, want {want_g!r}")
    assert not bad, f"{formula}: " + "; ".join(bad)
    return True


@pytest.mark.parametrize("formula", FORMULAS)
def test_formulas_against_mpmath(formula: str) -> None:
    assert _check_against_truth(formula, POINTS)


_LEAVES = st.sampled_from(["r", "Abs(r)", "2*r", "r - 1/2"])
_UNARY = st.sampled_from([
    "sqrt(Abs({u}))", "Abs({u})**1.5", "sign({u})*sqrt(Abs({u}))", "tanh({u})",
    "exp(-({u})**2)", "({u})/(1 + ({u})**2)", "Min(Max({u}, -1), 1)", "Abs({u})**(1/3)",
    "Piecewise(({u}, Abs(r) < 1), (sign({u})*sqrt(Abs({u})), True))", "atan({u})",
])
_FORMULA = st.recursive(_LEAVES, lambda inner: st.builds(str.format, _UNARY, u=inner),
                        max_leaves=3)


@given(formula=_FORMULA.map(lambda f: f"r*({f})" if "r" not in f[:3] else f),
       xs=st.lists(st.floats(-30, 30, allow_nan=False).filter(lambda v: abs(v) > 1e-6),
                   min_size=4, max_size=8))
def test_random_formulas_against_mpmath(formula: str, xs: list[float]) -> None:
    assume(_check_against_truth(formula, xs))


# -- 3: NaN stays NaN ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hard_shrinkage_keeps_nan(backend: str, dtype: torch.dtype) -> None:
    # Phi = x where |x| <= sqrt2 th, else 0: NaN -> NaN (docs/codegen.md)
    act = fluxact.to_torch(fluxact.catalogue["hard"], params={"th": 1.0}, backend=backend)
    x = torch.tensor([math.nan, 0.5, 3.0, -math.nan], dtype=dtype, device=DEVICE)
    y = act(x).float().cpu()
    assert math.isnan(y[0]) and math.isnan(y[3])
    assert y[1:3].tolist() == [0.5, 0.0]


@pytest.mark.parametrize("formula", ["Min(Max(r, -1), 1)", "sign(r)", "Heaviside(r)*r",
                                     "Piecewise((0, r < 0), (r, True))", "Max(r, r/4)"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_input_gives_nan(formula: str, backend: str) -> None:
    act = fluxact.to_torch(formula, "activation", backend=backend)
    y = act(torch.tensor([math.nan, 2.0], device=DEVICE))
    assert math.isnan(float(y[0]))


# -- 4: overflow of intermediates ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
def test_charbonnier_at_huge_inputs(backend: str, dtype: torch.dtype, rtol: float) -> None:
    # r/sqrt(1 + r^2/lam^2) -> lam sign(r) as |r| -> oo; at 1e20 the difference is 1e-40
    act = fluxact.to_torch("r/sqrt(1 + r**2/lam**2)", "activation", params={"lam": 2.0},
                           backend=backend)
    y, g = _run(act, [1e20, -1e20, 1e30, -3e38], dtype)
    assert y == pytest.approx([2.0, -2.0, 2.0, -2.0], rel=rtol)
    # Phi' = lam^3/(lam^2 + r^2)^(3/2): 8e-60 at 1e20, 0 in fp32
    assert all(v == 0.0 or (math.isfinite(v) and abs(v) < 1e-37) for v in g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rational_perona_malik_at_huge_inputs(backend: str) -> None:
    # r/(1 + r^2) = 1/(r + 1/r): 1e-20 at 1e20, 1e-30 at 1e30 (fp32 normal down to 1.2e-38)
    act = fluxact.to_torch("r/(1 + r**2/lam**2)", "activation", params={"lam": 1.0},
                           backend=backend)
    y, _ = _run(act, [1e20, -1e20, 1e30, 1e-20], torch.float32)
    want = [1e-20, -1e-20, 1e-30, 1e-20]
    assert all(_close(a, b, 1e-6) for a, b in zip(y, want)), y


@pytest.mark.parametrize("backend", BACKENDS)
def test_weickert_far_from_zero(backend: str) -> None:
    # 1 - exp(-C/y^4) cancels for large y: use the truth from mpmath at 40 digits
    entry = fluxact.catalogue["weickert"]
    act = fluxact.to_torch(entry, params={"lam": 1.0}, backend=backend)
    truth = Truth(entry, None, {"lam": 1.0})
    xs = [3.0, 10.0, 100.0, -100.0, 1e4]
    y, g = _run(act, xs, torch.float64)
    want_y = [truth.value(x) for x in xs]
    want_g = [truth.derivative(x) for x in xs]
    assert all(_close(a, b, 1e-9) for a, b in zip(y, want_y)), (y, want_y)
    assert all(_close(a, b, 1e-6) for a, b in zip(g, want_g)), (g, want_g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["charbonnier", "perona-malik", "weickert", "hard"])
def test_no_wrong_finite_value_at_any_scale(name: str, backend: str) -> None:
    """At +-10^k in fp32 the result is the truth or not finite: never a wrong finite number.
    rtol 1e-2: Weickert's Phi at 1e5 (2.7e-34) is computed through exp(y) - 1 with y = -2.6e-39,
    an fp32 subnormal, which keeps 3 digits; atol: fp32's smallest normal number."""
    entry = fluxact.catalogue[name]
    params = {p: 1.3 for p in ("lam",) if p in entry.formula} | (
        {"th": 0.7} if "th" in entry.formula else {})
    act = fluxact.to_torch(entry, params=params, backend=backend)
    truth = Truth(entry, None, params)
    xs = [s * 10.0 ** k for k in range(-30, 31, 5) for s in (1, -1)]
    y, _ = _run(act, xs, torch.float32)
    bad = []
    for x, got in zip(xs, y):
        x32 = float(torch.tensor(x, dtype=torch.float32))
        want = truth.value(x32)
        if math.isfinite(got) and not _close(got, want, 1e-2, 1.2e-38):
            bad.append(f"Phi({x32!r}) = {got!r}, want {want!r}")
    assert not bad, "; ".join(bad)


# -- 5: bf16 subnormals --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_subnormals_are_kept(backend: str) -> None:
    # 9e-41 is a bf16 subnormal (bf16 has fp32's exponent range): sign is 1, r*1 is itself
    x = torch.tensor([9e-41, -9e-41, 1e-39], dtype=torch.bfloat16, device=DEVICE)
    sign = fluxact.to_torch("sign(r)", "activation", backend=backend)
    assert sign(x).float().cpu().tolist() == [1.0, -1.0, 1.0]
    ident = fluxact.to_torch("r*(1 + 0*r)", "activation", backend=backend)
    assert torch.equal(ident(x).cpu(), x.cpu())


def test_hypot_quotients_keep_gradients_at_huge_inputs() -> None:
    """A numerator that overflows itself (1 - 3 r^2) is not chained through hypot (-inf/h/h
    was the result; inf * 0 = NaN goes to the repair's limit, 0); a hypot power that common
    subexpression elimination bound to a name is inlined again (1/h^3 was 0 at lam = 1e12,
    r = 1e13 in fp32 with lam trainable, so Phi' was 0 instead of 9.85e-4)."""
    def grads(formula, x, **kw):
        act = fluxact.to_torch(formula, "activation", backend="torch", **kw).float()
        t = torch.tensor([x], dtype=torch.float32, requires_grad=True)
        act(t).sum().backward()
        return float(t.grad), [float(p.grad) for p in act.parameters()]

    assert grads("r/(1 + r**2)**2", 1e20)[0] == 0.0  # truth -3e-80
    assert grads("r*(1 + r**2)**(-3/2)", -1e30)[0] == 0.0
    lam, x = 1e12, 1e13
    gx, (glam,) = grads("r/sqrt(1 + r**2/lam**2)", x, params={"lam": lam}, trainable=("lam",))
    truth_x = lam**3 / (lam**2 + x**2) ** 1.5  # d/dr of r lam / sqrt(lam^2 + r^2)
    truth_lam = x**3 / (lam**2 + x**2) ** 1.5
    assert gx == pytest.approx(truth_x, rel=1e-5) and glam == pytest.approx(truth_lam, rel=1e-5)


def test_triton_hypot_keeps_fp64_constants() -> None:
    """A number inside hypot takes the input's dtype: tl.abs(0.1) alone is an fp32 scalar
    (r/sqrt(r^2 + 1/10) in fp64 was 6.7e-9 off at r = 1e-3)."""
    formula = "r/sqrt(r**2 + 1/10)"
    x = torch.tensor([1e-3, 5.0], dtype=torch.float64)
    truth = [float(mpmath.mpf(v) / mpmath.sqrt(mpmath.mpf(v) ** 2 + mpmath.mpf(1) / 10))
             for v in x.tolist()]
    act = fluxact.to_torch(formula, "activation", backend="triton").double()
    assert act(x).tolist() == pytest.approx(truth, rel=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_simplify_brings_in_no_growing_exponential(backend: str) -> None:
    """simplify writes Phi' of r (2 - 2 e^(-r^2))/(1 + r^2) with e^(r^2) e^(-r^2): inf * 0 in
    fp32 at r = 10 (the repair then gave 0). A simplified derivative is kept only if it has no
    exponential of an argument the plain one lacks."""
    formula = "r*(2 - 2*exp(-r**2))/(1 + r**2)"
    act = fluxact.to_torch(formula, "activation", backend=backend)
    truth = Truth(formula)
    xs = [10.0, -10.0, 30.0, 1e3, 0.5]
    _, g = _run(act, xs, torch.float32)
    want = [truth.derivative(x) for x in xs]
    assert all(_close(a, b, 1e-5, 1e-30) for a, b in zip(g, want)), (g, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lam", [1e39, 1e-50])
def test_parameter_outside_the_compute_dtype_is_refused(backend: str, lam: float) -> None:
    """lam = 1e39 is inf in float32: r/(1 + lam r^2) would be 0 with a NaN gradient. The
    parameter is checked in the dtype the input is computed in (float64 computes it)."""
    act = fluxact.to_torch("r/(1 + lam*r**2)", "activation", params={"lam": 1.0},
                           backend=backend)
    with torch.no_grad():
        act.lam.fill_(lam)
    x = torch.tensor([1.0, 2.0], device=DEVICE)
    with pytest.raises(fluxact.FluxactError, match="outside the range of torch.float32"):
        act(x)
    with pytest.raises(fluxact.FluxactError, match="outside the range of torch.float32"):
        act(x.to(torch.bfloat16))
    y = act(x.double())
    assert y.tolist() == pytest.approx([1 / (1 + lam), 2 / (1 + 4 * lam)], rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lam", [-1e39, -1.0, 0.0, -5e-324, float("-inf")])
def test_a_parameter_that_is_not_positive_is_refused(backend: str, lam: float) -> None:
    """The code computes the formula for positive parameters (r/(1 + lam r^2) through
    x = r sqrt(lam)): one line in every dtype, never a NaN or another function's value."""
    act = fluxact.to_torch("r/(1 + lam*r**2)", "activation", params={"lam": 1.0},
                           backend=backend, trainable=("lam",))
    with torch.no_grad():
        act.lam.fill_(lam)
    x = torch.tensor([1.0, 2.0], device=DEVICE)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        with pytest.raises(fluxact.FluxactError, match="lam = .* is not positive"):
            act(x.to(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_quotient_of_squares_at_tiny_and_huge_scales(backend: str) -> None:
    """r^2/lam^2 prints as (r/lam)^2: with lam = r = 1e-25 in fp32, r*r/(lam*lam) was 0/0 (the
    NaN repair then put in Phi(0) = 0), and inf/inf with lam = r = 1e25."""
    formula = "r*exp(-r**2/lam**2)"
    for lam in (1e-25, 1e25):
        act = fluxact.to_torch(formula, "activation", params={"lam": lam}, backend=backend)
        truth = Truth(formula, params={"lam": lam})
        xs = [float(torch.tensor(x, dtype=torch.float32)) for x in (lam, -lam, 0.5 * lam)]
        y, _ = _run(act, xs, torch.float32)
        want = [truth.value(x) for x in xs]
        assert all(_close(a, b, 1e-5) for a, b in zip(y, want)), (lam, y, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp32_nan_is_computed_again_in_float64(backend: str, dtype: torch.dtype) -> None:
    """Phi' = (lam^2 - 2 r^2) exp(-r^2/lam^2)/lam^2 prints with 1/lam^2 and r*r apart (common
    subexpressions): 0 * inf = NaN at lam = r = 1e-25 in fp32, where the limit repair gave
    Phi'(0) = 1 and the truth is -exp(-1). Below float64 such lanes are computed again in
    float64; the limit repair is left for NaNs that float64 makes too."""
    act = fluxact.to_torch("r*exp(-r**2/lam**2)", "activation", params={"lam": 1e-5},
                           trainable=("lam",), backend=backend)
    with torch.no_grad():
        act.lam.fill_(1e-25)
    lam = float(act.lam.detach().to(dtype))
    x = torch.tensor([lam, 2 * lam], dtype=dtype, device=DEVICE, requires_grad=True)
    y = act(x)
    gx, glam = torch.autograd.grad(y.sum(), (x, act.lam))
    q = [float(v) / lam for v in x.detach().cpu()]
    # Phi' = (1 - 2 q^2) e^(-q^2), dPhi/dlam = 2 q^3 e^(-q^2) with q = r/lam
    want_x = [(1 - 2 * v * v) * math.exp(-v * v) for v in q]
    want_lam = sum(2 * v**3 * math.exp(-v * v) for v in q)
    rtol = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    assert all(_close(float(a), b, rtol) for a, b in zip(gx.cpu(), want_x)), (gx, want_x)
    assert _close(float(glam), want_lam, rtol), (float(glam), want_lam)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_no_limit_put_in_at_a_moderate_input(backend: str, dtype: torch.dtype) -> None:
    """Phi' of r sign(r - 1/2) sqrt|r - 1/2| is 0 * inf at r = 1/2 in every precision (the
    truth: +inf, a cusp). The limit repair put in Phi'(0) = -sqrt(1/2) there; it now applies
    only at |r| <= 2^-40 and |r| >= 2^40, so the value is NaN, not a wrong number. Beside the
    cusp, and at the extreme inputs, the values are the truth."""
    formula = "r*sign(r - 1/2)*sqrt(Abs(r - 1/2))"
    act = fluxact.to_torch(formula, "activation", backend=backend)
    truth = Truth(formula)
    xs = [0.5, 0.75, -2.0, 1e-20, 3e12]
    y, g = _run(act, xs, dtype)
    assert math.isnan(g[0])
    rtol = 1e-9 if dtype == torch.float64 else 1e-5
    for x, got in zip(xs[1:], g[1:]):
        want = truth.derivative(float(torch.tensor(x, dtype=dtype)))
        assert _close(got, want, rtol, 1e-30), (x, got, want)
    assert _close(y[1], truth.value(0.75), rtol)


def test_functional_form_keeps_parameters_in_float64() -> None:
    """The generated function NAME(x, lam=...) takes Python numbers: they were made float32
    tensors, so lam = 1e39 was inf before the range check (r/(1 + lam r^2) gave 0 at 1e-20
    in float64, truth 1e-20) and lam = 1.1 was rounded for float64 inputs."""
    from fluxact.activation import load_spec, spec_of

    mod = load_spec(spec_of("r/(1 + lam*r**2)", "activation", params={"lam": 1.0}))
    x = torch.tensor([1e-20, 2.0], dtype=torch.float64)
    assert mod.activation(x, lam=1.1, backend="torch").tolist() == [1e-20, 2.0 / (1 + 1.1 * 4)]
    y = mod.activation(x, lam=1e39, backend="torch")
    assert y.tolist() == pytest.approx([1e-20 / (1 + 1e39 * 1e-40), 2.0 / (1 + 4e39)], rel=1e-15)
    with pytest.raises(fluxact.FluxactError, match="outside the range of torch.float32"):
        mod.activation(x.float(), lam=1e39, backend="torch")


# -- extreme parameters: Phi = A F(r/c) computed through x = r/c (codegen/prepare.py) -----------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["perona-malik", "perona-malik-rational", "weickert",
                                  "geman-mcclure", "cauchy", "charbonnier", "huber"])
def test_extreme_parameters_keep_values_and_gradients(name: str, backend: str) -> None:
    """With every parameter 1e200 or 1e-200, Phi and Phi' are the truth at inputs from 1e-300
    to 1e300 in float64 (printed in r, lam^4 or r^2/lam^2 overflowed: NaN from 1e-12 up).
    atol 1e-150 for Phi': far out, where the truth is below it, F'(x) = (1 - x^2)/(1 + x^2)^2
    at x = 1e100 underflows to 0 through x^4."""
    entry = fluxact.catalogue[name]
    t = fluxact.translate(entry)
    params = [sp.Symbol(p, positive=True) for p in t.free_parameters]
    args = [t.variable, *params]
    phi = sp.lambdify(args, t.activation, modules="mpmath")
    dphi = sp.lambdify(args, sp.diff(t.activation, t.variable), modules="mpmath")
    xs = [s * 10.0 ** k for k in (-300, -12, -3, 0, 3, 100, 200, 300) for s in (1, -1)]
    for scale in (1e200, 1e-200):
        act = fluxact.to_torch(entry, params=dict.fromkeys(t.free_parameters, scale),
                               backend=backend)
        y, g = _run(act, xs, torch.float64)
        bad = []
        with mpmath.workdps(40):
            ps = [mpmath.mpf(scale)] * len(params)
            for x, got_y, got_g in zip(xs, y, g):
                want_y = float(phi(mpmath.mpf(x), *ps))
                want_g = float(dphi(mpmath.mpf(x), *ps))
                if not (_close(got_y, want_y, 1e-12, 1e-300)
                        and _close(got_g, want_g, 1e-9, 1e-150)):
                    bad.append(f"at {x:g}: ({got_y!r}, {got_g!r}), want ({want_y!r}, {want_g!r})")
        assert not bad, f"{name} with parameters {scale:g}: " + "; ".join(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_gradients_keep_their_digits_near_zero(backend: str) -> None:
    """dPhi/dlam of Perona-Malik ~ r^3 near 0, of r/(1 + lam r^2) -r^3/(1 + lam r^2)^2: the
    form A'(p) F - A (c'/c) x F' of Phi = A F(r/c) subtracts two terms ~ r (fp32 gave 0 at
    r = 1e-4, and summed gradients 3.6 % off at lam = 1e-6); -x^2 (F/x)' does not."""
    pm = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 1.0},
                          trainable=("lam",), backend=backend)
    rs = [1e-2, 1e-3, 1e-4, -1e-4]
    for r in rs:
        pm.lam.grad = None
        pm(torch.tensor([r], device=DEVICE)).sum().backward()
        want = r**3 * math.exp(-r * r / 2)  # d/dlam r exp(-r^2/(2 lam^2)) at lam = 1
        assert _close(float(pm.lam.grad), want, 1e-5), (r, float(pm.lam.grad), want)
    act = fluxact.to_torch("r/(1 + lam*r**2)", "activation", params={"lam": 1e-6},
                           trainable=("lam",), backend=backend)
    x = torch.randn(2000, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    act(x).sum().backward()
    xd = x.double()
    want = float(-(xd**3 / (1 + 1e-6 * xd**2) ** 2).sum())
    assert _close(float(act.lam.grad), want, 1e-5), (float(act.lam.grad), want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("formula", ["sign(r)*lam*log(1 + Abs(r)/lam)", "r/(1 + Abs(r)/lam)"])
def test_parameter_gradients_far_out(formula: str, backend: str) -> None:
    """The near-0 form -x^2 (F/x)' of dPhi/dlam is used for |x| <= 1 only: x^2 overflows far
    out (float64 past 1.3e154, float32 past 1.8e19: it gave inf and NaN). The rational one's
    F' was printed 1/(1 + |x|) - x sign(x)/(1 + |x|)^2, whose second term underflows past
    x ~ 1e154: x F' was then 1 (truth 1/x) and dPhi/dlam 0 at x = 1e200 (truth 1)."""
    t = fluxact.translate(formula, "activation")
    lam, r = sp.Symbol("lam", positive=True), t.variable
    truth = sp.lambdify([r, lam], sp.diff(t.activation, lam), modules="mpmath")
    cases = [(1.0, [1e155, -1e155, 1e160, -1e300, 3.0], torch.float64, 1e-12),
             (1e-3, [1e17, -2.5], torch.float32, 1e-5),
             (1e-200, [1.0, -3.0, 1e100], torch.float64, 1e-12)]
    for value, xs, dtype, rtol in cases:
        act = fluxact.to_torch(formula, "activation", params={"lam": value},
                               trainable=("lam",), backend=backend)
        for x in xs:
            act.lam.grad = None
            act(torch.tensor([x], dtype=dtype, device=DEVICE)).sum().backward()
            with mpmath.workdps(40):
                want = float(truth(mpmath.mpf(x), mpmath.mpf(value)))
            assert _close(float(act.lam.grad), want, rtol), (x, value, float(act.lam.grad), want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_sided_limit_at_zero_of_a_diffusivity(backend: str, dtype: torch.dtype) -> None:
    """g(s2) = 1 - exp(-C/s2): g'(s2) = -C/s2^2 exp(-C/s2) prints 0 * inf at and next to
    s2 = 0 and has a limit from the right only (0); s2 >= 0, so that is the value there (it
    was NaN: EED with this g stepped to NaN on flat regions). Left of 0 nothing is put in."""
    from fluxact.activation import diffusivity_to_torch

    g = diffusivity_to_torch("1 - exp(-C/s2)", params={"C": 1e-3}, backend=backend)
    x = torch.tensor([0.0, 1e-300 if dtype == torch.float64 else 1e-38, 1e-5, 1.0],
                     dtype=dtype, device=DEVICE, requires_grad=True)
    y = g(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert y.detach().tolist()[:3] == [1.0, 1.0, 1.0]
    want = -1e-3 * math.exp(-1e-3)
    assert grad.tolist()[:2] == [0.0, 0.0] and abs(grad.tolist()[3] - want) <= 1e-6 * -want
    left = torch.tensor([-1e-300 if dtype == torch.float64 else -1e-38], dtype=dtype,
                        device=DEVICE, requires_grad=True)
    (grad_left,) = torch.autograd.grad(g(left).sum(), left)
    assert not math.isfinite(grad_left.item()) or grad_left.item() != 0.0


def test_a_complex_one_sided_limit_is_not_a_repair() -> None:
    """sqrt(r)/sqrt(|r|) is 1 from the right and I from the left: only the real limits are
    kept (a complex one has no printed form and made code generation fail)."""
    from fluxact.codegen.prepare import _repair

    r = sp.Symbol("r", real=True)
    left, right, at_pos, at_neg = _repair(sp.sqrt(r) / sp.sqrt(sp.Abs(r)), r)
    assert left is None and at_neg is None
    assert right[0] == 1 and at_pos == (1, ((2.0**40, ()),))


def test_a_repair_holds_only_where_it_is_proven() -> None:
    """A NaN of float64 is replaced by a limit only on a region where interval arithmetic
    proves every value within float64 rounding of it (2^-52 relative; a limit 0 below
    2^-1075). It was every |x| <= 2^-40 and >= 2^40, whatever the function: 1 + |x|^(1/20)
    is 1.25 at 2^-40 and still 1 + 2^-50 at 2^-1000, not its limit 1."""
    from fluxact.codegen.prepare import _repair

    x = sp.Symbol("x", real=True)

    def region(radius: float, *conditions: tuple) -> tuple:
        return ((radius, conditions),)

    # near 0: 1 + x^2 is 1 to rounding below 2^-40; 1 + |x|^(1/20) nowhere in float range
    assert _repair(1 + x**2, x)[:2] == ((1, region(2.0**-40)), (1, region(2.0**-40)))
    assert _repair(1 + sp.Abs(x) ** sp.Rational(1, 20), x)[:2] == (None, (1, ()))
    # far out: 1/(1 + x^2) rounds to 0 past 2^538 (2^540 is proven, 2^300 is not); x e^-x
    # at once; x/(1 + x^2) only past 2^1075, beyond every float64: never
    assert _repair(1 / (1 + x**2), x)[2:] == ((0, region(2.0**540)),) * 2
    assert _repair(x / (1 + x**2), x)[2:] == (None, None)
    assert _repair(x * sp.exp(-x), x)[2] == (0, region(2.0**40))
    # a sum of parameter multiples: each term proven by itself
    lam = sp.Symbol("lam", positive=True)
    assert _repair(lam * sp.tanh(x) + lam**2 * sp.atan(x), x)[2] == (
        lam + sp.pi * lam**2 / 2, region(2.0**120))
    # a limit 0 times a parameter: |lam x/(1 + x^2)| < 2^-1075 needs lam small enough, which
    # the code checks at run time (2^-1075 / 2^-1000 rounded down)
    limit, ((radius, ((factor, bound),)),) = _repair(lam * x / (1 + x**2), x)[2]
    assert (limit, radius, factor) == (0, 2.0**1000, lam)
    assert 2.0**-76 < bound <= 2.0**-75
    assert _repair(sp.tanh(lam * x), x)[2] is None
