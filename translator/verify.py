"""verify: Translation -> StabilityReport (MATH.md 2). The stability bounds live here.

Every number comes from ``bounds.extreme`` (symbolic critical points, else interval branch
and bound) and is an upper bound of a supremum / lower bound of an infimum, never a sample.
The derived facts use the identities of Table 1:
- regulariser: Psi' = 2 Phi, so Psi is convex iff Phi is nondecreasing (no downward jump), and
  Psi increases in |r| iff r Phi(r) >= 0;
- shrinkage: S(r)/r = 1 - 4 tau g(sqrt2 r), so -r <= S <= r (L-inf, P1 12) iff
  0 <= g <= 1/(2 tau), and 0 <= S <= r (sign, P1 13) iff 0 <= g <= 1/(4 tau).
Time steps (each needs g >= 0 and a finite g_max): tau_linf = h^2/(2 g_max),
tau_sign = h^2/(4 g_max), tau_euclid = 2/(g_max ||K||^2) with ||K||^2 = 4/h^2 by default
(1D forward differences); the paper's versions use L instead of g_max (P1 16, P2 Theorem 2).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy as sp

from .bounds import Extreme, _expand_kinks, _limit, decompose, derivative, extreme
from .budget import attempt
from .dictionary import SIMPLIFY_SECONDS
from .errors import FluxactError, FormulaError, ParameterError, missing_value
from .numeric import POINT_MODULES, numeric_function
from .scaling import find_scaling
from .translation import Translation, translate

#: stability notion -> the report field holding its time step
STEP_OF = {"linf": "tau_linf", "sign": "tau_sign", "euclidean": "tau_euclid"}
REQUIREMENTS = tuple(STEP_OF)
ROOTS_SECONDS = 1.0  # the decreasing intervals fall back to bracketing, so little is lost


class UnstableError(FluxactError):
    """A required stability notion has no safe time step for this activation."""


@dataclass(frozen=True, slots=True)
class Counterexample:
    property: str
    r: float | sp.Expr  # an expression in the parameters when they are symbolic
    value: float | sp.Expr
    reason: str


@dataclass(frozen=True, slots=True)
class StabilityReport:
    """Stability facts about the activation Phi of a translation (MATH.md 2)."""

    formula: str
    antisymmetric: bool
    nonnegative_diffusivity: bool
    monotone: bool
    decreasing_intervals: tuple[tuple[float, float], ...]
    nonlinearity_class: int | None  # 1 or 2 as in MATH.md 1, None for neither
    lipschitz: float
    lipschitz_at: str
    g_max: float
    g_max_at: str
    g_min: float
    shrinkage_linf: bool
    shrinkage_sign: bool
    regulariser_convex: bool
    regulariser_increasing: bool
    h: float
    norm_K2: float
    tau_linf: float | None
    tau_sign: float | None
    tau_euclid: float | None
    tau_linf_paper: float | None
    tau_sign_paper: float | None
    tau_euclid_paper: float | None
    counterexamples: tuple[Counterexample, ...]
    reasons: tuple[tuple[str, str], ...]
    method: tuple[tuple[str, str], ...]
    # symbolic parameters: the report holds for every positive value of these; numbers that
    # depend on them are SymPy expressions (the verdicts never do: see scaling.py)
    parameters: tuple[str, ...] = ()

    def holds(self, requirement: str) -> bool:
        """Whether a stability notion (linf, sign, euclidean) has a guaranteed time step."""
        if requirement not in REQUIREMENTS:
            raise ParameterError(
                f"unknown requirement {requirement!r}; use one of {', '.join(REQUIREMENTS)}"
            )
        return getattr(self, STEP_OF[requirement]) is not None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["class"] = data.pop("nonlinearity_class")
        data["reasons"] = dict(self.reasons)
        data["method"] = dict(self.method)
        data["decreasing_intervals"] = [list(i) for i in self.decreasing_intervals]
        return {k: _jsonable(v) for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_report(self)


def _jsonable(value: object) -> object:
    if isinstance(value, sp.Basic):
        return sp.sstr(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _fmt(x: float | sp.Expr | None) -> str:
    if x is None:
        return "none"
    if isinstance(x, sp.Basic):
        return sp.sstr(x.evalf(6) if x.has(sp.Float) else x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def format_report(rep: StabilityReport) -> str:
    yes = {True: "yes", False: "no"}
    lines = [
        f"  antisymmetric: {yes[rep.antisymmetric]};  g >= 0: {yes[rep.nonnegative_diffusivity]};"
        f"  monotone: {yes[rep.monotone]};  class: {rep.nonlinearity_class or 'neither'}",
        f"  L = {_fmt(rep.lipschitz)} ({rep.lipschitz_at});  g_max = {_fmt(rep.g_max)}"
        f" ({rep.g_max_at})",
        f"  time steps (h = {rep.h:g}, ||K||^2 = {rep.norm_K2:g}): linf {_fmt(rep.tau_linf)},"
        f" sign {_fmt(rep.tau_sign)}, euclidean {_fmt(rep.tau_euclid)};"
        f" paper (L-based): {_fmt(rep.tau_linf_paper)}, {_fmt(rep.tau_sign_paper)},"
        f" {_fmt(rep.tau_euclid_paper)}",
    ]
    if rep.decreasing_intervals:
        parts = ", ".join(f"({_fmt(a)}, {_fmt(b)})" for a, b in rep.decreasing_intervals)
        lines.append(f"  Phi decreases on: {parts}")
    for c in rep.counterexamples:
        lines.append(f"  counterexample ({c.property}): r = {_fmt(c.r)}: {c.reason}")
    if rep.parameters:
        how = dict(rep.method)["parameters"]
        lines.append(f"  for every {', '.join(rep.parameters)} > 0: {how}")
    return "\n".join(lines)


# -- the checks --------------------------------------------------------------------------------


def _is_antisymmetric(phi: sp.Expr, r: sp.Symbol, phi_at: Callable[[float], float]
                      ) -> tuple[bool, Counterexample | None, str]:
    total = _expand_kinks(phi.subs(r, -r) + phi)
    decided = attempt(lambda: sp.simplify(total) == 0, SIMPLIFY_SECONDS)
    if decided:
        return True, None, "symbolic: Phi(-r) + Phi(r) simplifies to 0"
    for k in sorted(range(-40, 41), key=abs):  # points near 1 first
        x = 1.37 ** k * 0.731
        a, b = phi_at(x), phi_at(-x)
        if abs(a + b) > 1e-15 * (1 + abs(a)):
            return False, Counterexample(
                "antisymmetric", x, a + b, f"Phi({x:.6g}) + Phi({-x:.6g}) = {a + b:.6g} != 0"
            ), "counterexample by evaluation"
    return False, None, "not proven: SymPy could not simplify Phi(-r) + Phi(r) to 0"


def _check_real(phi: sp.Expr, r: sp.Symbol) -> Callable[[float], float]:
    """Refuse an activation that is not a real function on the whole line (sqrt(r), r/0);
    return Phi as a float function (30-digit evaluation) for the point checks."""
    if phi.has(sp.zoo, sp.nan, sp.I, sp.AccumBounds):
        raise FormulaError(f"the activation {phi} is undefined or complex somewhere; "
                           "give a real function of r on the whole line")
    phi_at = numeric_function(phi, r, "the activation")
    for x in (-1e6, -7.3, -1.0, -0.37, 0.0, 0.37, 1.0, 7.3, 1e6):
        try:
            value = phi_at(x)
        except (ArithmeticError, ValueError, TypeError):
            value = math.nan
        if math.isnan(value):
            raise FormulaError(
                f"the activation {phi} has no real value at r = {x:g}; verification needs a "
                "real function of r on the whole line (e.g. use Abs(r) inside sqrt or log)"
            )
    return phi_at


def _negative_g_point(phi_at: Callable[[float], float], g_min: Extreme) -> Counterexample:
    """A point where r Phi(r) < 0, checked by evaluation; where the infimum is a limit
    (r -> p+), a point next to p is tried, and r = +-2^k where it is a limit at infinity."""
    at = g_min.where
    tries = [] if at is None else [at]
    if at is not None and "->" in g_min.where_text:
        step = 1e-6 * (1 + abs(at))
        tries = [at + step, at - step] if g_min.where_text.endswith("+") else [at - step,
                                                                               at + step]
    if "oo" in g_min.where_text:  # the infimum is a limit at infinity: a finite witness
        sign = -1.0 if "-oo" in g_min.where_text else 1.0
        tries += [sign * 2.0**k for k in range(-4, 64)]
    for x in tries:
        if x != 0:
            value = phi_at(x) / x
            if value < 0:
                return Counterexample("nonnegative_diffusivity", x, value,
                                      f"r Phi(r) < 0 at r = {x:.6g} (g = {value:.6g}):"
                                      " backward diffusion")
    return Counterexample("nonnegative_diffusivity", math.nan, g_min.value,
                          f"inf g = {g_min.value:.6g} ({g_min.where_text}): backward diffusion")


def _jumps(phi: sp.Expr, r: sp.Symbol) -> list[tuple[float, float, float]]:
    """(point, left limit, right limit) where Phi is discontinuous."""
    pieces, _ = decompose(phi, r)
    out = []
    for left, right in zip(pieces, pieces[1:]):
        p = left.hi
        a = _limit(left.expr, r, left.hi_exact, "-")
        b = _limit(right.expr, r, right.lo_exact, "+")
        if a is None or b is None or abs(a - b) > 1e-12 * (1 + abs(a)):
            out.append((p, a if a is not None else math.nan, b if b is not None else math.nan))
    return out


def _decreasing_intervals(dphi: sp.Expr, r: sp.Symbol, jumps: list[tuple[float, float, float]]
                          ) -> tuple[list[tuple[float, float]], str]:
    """Where Phi' < 0: between consecutive roots of Phi' on each piece, by the sign at a
    point in between. Roots are symbolic where solveset finds them all; otherwise they are
    bracketed by sign changes on a log-spaced grid and bisected (then the list may miss a
    pair of close roots, and the method says so; the monotone verdict does not rely on it)."""
    from .bounds import _midpoint, _real_roots, _to_float

    pieces, _ = decompose(dphi, r)
    intervals: list[tuple[float, float]] = []
    methods = set()
    for piece in pieces:
        f = sp.lambdify(r, piece.expr, modules=POINT_MODULES)
        roots = _real_roots(piece.expr, r, ROOTS_SECONDS)
        if roots is not None:
            methods.add("symbolic roots of Phi'")
            cuts = sorted(x for x in (_to_float(c) for c in roots) if piece.lo < x < piece.hi)
        else:
            methods.add("roots of Phi' bracketed on a grid (may miss close pairs)")
            cuts = _bracketed_roots(f, piece.lo, piece.hi)
        ends = [piece.lo, *cuts, piece.hi]
        for lo, hi in zip(ends, ends[1:]):
            if _value(f, _midpoint(lo, hi)) < 0:
                intervals.append((lo, hi))
    for p, left, right in jumps:
        if right < left:
            intervals.append((p, p))
    return _merge(intervals), "; ".join(sorted(methods))


def _value(f, x: float):
    """f(x) as an mpmath number (a float would underflow to 0 and lose the sign)."""
    with mpmath.workdps(30):
        v = f(mpmath.mpf(x))
    if isinstance(v, mpmath.mpc):
        return v.real if v.imag == 0 else mpmath.nan
    return v


def _bracketed_roots(f, lo: float, hi: float) -> list[float]:
    # log-spaced from 2^-30 to 2^64 on each side
    grid = sorted({x for k in range(-30, 65, 1) for j in range(4)
                   for x in (2.0 ** (k + j / 4), -(2.0 ** (k + j / 4)))} | {0.0})
    grid = [x for x in grid if lo < x < hi]
    roots = []
    for a, b in zip(grid, grid[1:]):
        fa, fb = _value(f, a), _value(f, b)
        if fa == 0:
            roots.append(a)
        elif fa * fb < 0:
            for _ in range(80):
                m = (a + b) / 2
                if _value(f, m) * fa > 0:
                    a = m
                else:
                    b = m
            roots.append((a + b) / 2)
    return roots


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1e-9 * (1 + abs(a)):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def verify_translation(t: Translation, *, h: float = 1.0,
                       norm_K2: float | None = None) -> StabilityReport:
    """The stage: Translation -> StabilityReport (cached per translation, h and ||K||^2)."""
    return _verify_cached(t, float(h), None if norm_K2 is None else float(norm_K2))


@lru_cache(maxsize=256)
def _verify_cached(t: Translation, h: float, norm_K2: float | None) -> StabilityReport:
    if not (h > 0 and math.isfinite(h)):
        raise ParameterError(f"grid size h must be positive and finite, got {h}")
    given_norm = norm_K2  # None: ||D+||^2 <= 4/h^2 in 1D (MATH.md 2), kept exact below
    norm_K2 = 4.0 / h**2 if norm_K2 is None else norm_K2
    if not (norm_K2 > 0 and math.isfinite(norm_K2)):
        raise ParameterError(f"norm_K2 must be positive and finite, got {norm_K2}")
    r = t.variable
    phi, g = t.activation, t.diffusivity
    if t.free_parameters:  # a closed form in the parameters, or ask for their values
        return _verify_scaled(t, h, given_norm)
    phi_at = _check_real(phi, r)
    methods: dict[str, str] = {}
    reasons: dict[str, str] = {}
    counter: list[Counterexample] = []

    antisym, ce, how = _is_antisymmetric(phi, r, phi_at)
    methods["antisymmetric"] = how
    if ce:
        counter.append(ce)
        reasons["antisymmetric"] = ce.reason

    g_min = extreme(g, r, "inf", flux=phi)
    g_max = extreme(g, r, "sup", flux=phi)
    methods["g_max"] = g_max.method
    methods["nonnegative_diffusivity"] = f"inf g = {_fmt(g_min.value + 0.0)} ({g_min.method})"
    nonneg = g_min.value >= 0
    if not nonneg:
        counter.append(_negative_g_point(phi_at, g_min))
        reasons["nonnegative_diffusivity"] = "g takes negative values: backward diffusion"

    jumps = _jumps(phi, r)
    dphi = derivative(phi, r)
    dphi_min = extreme(dphi, r, "inf")
    if jumps:
        p, a, b = jumps[0]
        L = Extreme(math.inf, p, f"Phi jumps at r = {p:.6g} (from {a:.6g} to {b:.6g})",
                    "one-sided limits")
    else:
        up = extreme(dphi, r, "sup")
        down = dphi_min
        L = up if abs(up.value) >= abs(down.value) else down
        L = Extreme(abs(L.value), L.where, L.where_text, f"{up.method}; {down.method}")
        if math.isinf(L.value):
            reasons["lipschitz"] = "Phi' is unbounded (superlinear growth or a cusp)"
    methods["lipschitz"] = L.method

    decreasing, roots_method = _decreasing_intervals(dphi, r, jumps)
    # a downward jump, a pole, or poles SymPy cannot list (tan r) all forbid "monotone"
    downward = any(not b >= a for _, a, b in jumps)
    poles_unknown = not all(piece.poles_known for piece in decompose(phi, r)[0])
    monotone = not downward and not poles_unknown and dphi_min.value >= 0
    if poles_unknown:
        methods["poles"] = "SymPy could not list the poles of Phi: monotonicity is not proven"
    methods["monotone"] = "inf Phi' and the one-sided limits at breakpoints"
    methods["decreasing_intervals"] = roots_method
    if not monotone:
        if decreasing:
            a, b = decreasing[0]
            x = a if a == b else (a + b) / 2 if math.isfinite(a + b) else (
                b - 1 if math.isfinite(b) else a + 1)
            why = (f"Phi jumps down at r = {a:.6g}" if a == b
                   else f"Phi decreases on ({_fmt(a)}, {_fmt(b)})")
        else:  # the root grid missed it: the infimum of Phi' says where
            x = dphi_min.where if dphi_min.where is not None else math.nan
            why = f"Phi' = {dphi_min.value:.6g} < 0 ({dphi_min.where_text})"
        counter.append(Counterexample("monotone", x, float("nan"), why))
        reasons["monotone"] = "Phi is nonmonotone (forward-backward diffusion)"

    g_pieces, _ = decompose(g, r)
    tails = [_limit(g_pieces[-1].expr, r, math.inf, "-"),
             _limit(g_pieces[0].expr, r, -math.inf, "+")]
    g_inf_limit = max(math.inf if v is None else abs(v) for v in tails)
    klass = None
    if nonneg and monotone:
        klass = 1
    elif nonneg and not monotone and g_inf_limit == 0:
        klass = 2

    # S(r)/r = 1 - 4 w g(sqrt2 r) with w = alpha in the regulariser's row of Table 1, else tau
    w_name, w = ("alpha", t.alpha) if t.input.kind == "regulariser" else ("tau", t.tau)
    w = float(w)
    shrink_linf = nonneg and g_max.value <= 1 / (2 * w)
    shrink_sign = nonneg and g_max.value <= 1 / (4 * w)
    methods["shrinkage"] = (f"S(r)/r = 1 - 4 {w_name} g(sqrt2 r) (Table 1, the input's row) "
                            "with the bounds of g")
    if not shrink_linf:
        reasons["shrinkage_linf"] = (
            "g < 0 somewhere" if not nonneg else
            f"g_max = {_fmt(g_max.value)} > 1/(2 {w_name}) = {1 / (2 * w):g}: S leaves [-r, r]")
    if not shrink_sign:
        reasons["shrinkage_sign"] = (
            "g < 0 somewhere" if not nonneg else
            f"g_max = {_fmt(g_max.value)} > 1/(4 {w_name}) = {1 / (4 * w):g}: S leaves [0, r]")
    methods["regulariser"] = "Psi' = 2 Phi: convex iff Phi nondecreasing; increasing iff g >= 0"

    taus = _time_steps(nonneg, g_max.value, L.value, h, given_norm, reasons)
    return StabilityReport(
        formula=t.input.text,
        antisymmetric=antisym,
        nonnegative_diffusivity=nonneg,
        monotone=monotone,
        decreasing_intervals=tuple(decreasing),
        nonlinearity_class=klass,
        lipschitz=L.value,
        lipschitz_at=L.where_text,
        g_max=g_max.value,
        g_max_at=g_max.where_text,
        g_min=g_min.value + 0.0,
        shrinkage_linf=shrink_linf,
        shrinkage_sign=shrink_sign,
        regulariser_convex=monotone,
        regulariser_increasing=nonneg,
        h=h,
        norm_K2=norm_K2,
        **taus,
        counterexamples=tuple(counter),
        reasons=tuple(sorted(reasons.items())),
        method=tuple(sorted(methods.items())),
    )


# -- symbolic parameters: Phi(r) = A F(r/c), verify F, scale (scaling.py) ----------------------


def _verify_scaled(t: Translation, h: float, norm_K2: float | None) -> StabilityReport:
    """The report for symbolic parameters: verify the parameter-free F of Phi = A F(r/c) and
    scale every bound by k = A/c (Phi' = k F', g = k G), the time steps by 1/k."""
    params = tuple(sorted(t.activation.free_symbols - {t.variable}, key=lambda p: p.name))
    x = sp.Symbol("x" if "x" not in t.free_parameters else "x_", real=True)
    found = find_scaling(t.activation, t.diffusivity, t.variable, params, x)
    if found is None or t.tau.free_symbols or t.alpha.free_symbols:
        raise ParameterError(
            f"{missing_value(t.free_parameters[0])} (the verifier needs numbers here: Phi is "
            "not of the form A(p) F(r/c(p)) with F free of the parameters, so no closed form "
            "in them is known)"
        )
    c, k = found.scale, found.factor
    reduced = replace(
        t,
        input=replace(t.input, expr=found.reduced, symbolic=found.reduced, variable=x,
                      values=(), free=()),
        activation=found.reduced,
        diffusivity=found.reduced_diffusivity,
    )
    rep = _verify_cached(reduced, h, norm_K2)
    unit = f"r/{sp.sstr(c)}" if len(c.args) < 2 else f"r/({sp.sstr(c)})"

    def at(text: str) -> str:  # F's locations are in x = r/c
        return text if c == 1 else re.sub(r"\br (=|->|<|>)", unit + r" \1", text)

    shrink: dict[str, bool | None] = {}
    reasons = dict(rep.reasons)
    w_name, w = ("alpha", t.alpha) if t.input.kind == "regulariser" else ("tau", t.tau)
    for field, bound in (("shrinkage_linf", 1 / (2 * w)), ("shrinkage_sign", 1 / (4 * w))):
        shrink[field] = getattr(rep, field)
        if rep.nonnegative_diffusivity and k.free_symbols:
            # g_max = k G_max <= bound, a condition on the parameters
            condition = attempt(
                lambda b=bound: sp.reduce_inequalities(k * _exact(rep.g_max) <= b, params)
                if len(params) == 1 else k * _exact(rep.g_max) <= b, SIMPLIFY_SECONDS)
            if condition is sp.false:
                shrink[field] = False
                reasons[field] = f"g_max = {sp.sstr(k * _exact(rep.g_max))} > {bound} always"
            elif condition is not sp.true:
                shrink[field] = None
                text = sp.sstr(k * _exact(rep.g_max) <= bound) if condition is None else (
                    sp.sstr(condition))
                reasons[field] = f"depends on the parameters: holds iff {text}"
    counter = tuple(
        Counterexample(ce.property, _scaled(ce.r, c),
                       _scaled(ce.value, {"antisymmetric": found.amplitude}.get(ce.property, k)),
                       at(ce.reason))
        for ce in rep.counterexamples)
    steps = {name: _scaled(getattr(rep, name), 1 / k)
             for name in ("tau_linf", "tau_sign", "tau_euclid", "tau_linf_paper",
                          "tau_sign_paper", "tau_euclid_paper")}
    method = dict(rep.method)
    method["parameters"] = (
        f"Phi(r) = {_factor_text(found.amplitude)}F({'r' if c == 1 else unit}), "
        f"F(x) = {sp.sstr(found.reduced)} (shown by SymPy); F verified, bounds scaled by "
        f"{sp.sstr(k)}")
    return replace(
        rep,
        formula=t.input.text,
        decreasing_intervals=tuple((_scaled(a, c), _scaled(b, c))
                                   for a, b in rep.decreasing_intervals),
        lipschitz=_scaled(rep.lipschitz, k),
        lipschitz_at=at(rep.lipschitz_at),
        g_max=_scaled(rep.g_max, k),
        g_max_at=at(rep.g_max_at),
        g_min=_scaled(rep.g_min, k),
        **shrink,
        **steps,
        counterexamples=counter,
        reasons=tuple(sorted(reasons.items())),
        method=tuple(sorted(method.items())),
        parameters=tuple(p.name for p in params),
    )


def _factor_text(a: sp.Expr) -> str:
    """'A*' for Phi = A*F(...), with parentheses where A is a sum; '' for A = 1."""
    if a == 1:
        return ""
    return f"({sp.sstr(a)})*" if isinstance(a, sp.Add) else f"{sp.sstr(a)}*"


def _exact(value: float) -> sp.Expr:
    """A float as a SymPy number with exactly its binary value (53 bits), inf as oo."""
    if math.isinf(value):
        return sp.oo if value > 0 else -sp.oo
    return sp.Integer(int(value)) if value.is_integer() and abs(value) < 1e6 else sp.Float(value)


def _scaled(value: float | None, k: sp.Expr) -> float | sp.Expr | None:
    """value * k for k > 0: the float itself when k == 1, else an exact expression in the
    parameters. k is never another number: F = Phi at p = 1, so A(1) = c(1) = 1 and every
    numeric factor stays in F, and no rounding is needed."""
    if value is None or math.isnan(value) or math.isinf(value) or value == 0 or k == 1:
        return value
    if not k.free_symbols:  # cannot happen (see above); refuse rather than round wrongly
        raise AssertionError(f"scaling factor {k} is a number other than 1")
    return _exact(value) * k


def _down(exact: Fraction) -> float:
    """A positive rational as a float never above it (a time step must not be rounded up)."""
    q = float(exact)
    return math.nextafter(q, 0.0) if Fraction(q) > exact else q


def _time_steps(nonneg: bool, g_max: float, L: float, h: float, norm_K2: float | None,
                reasons: dict[str, str]) -> dict[str, float | None]:
    """tau bounds of MATH.md 2 from g_max (and the paper's from L)."""
    names = ("tau_linf", "tau_sign", "tau_euclid")
    if not nonneg:
        for n in names:
            reasons[n] = "no time step is safe: g < 0 somewhere (backward diffusion)"
        return {n: None for n in names} | {f"{n}_paper": None for n in names}

    def steps(bound: float) -> tuple[float | None, float | None, float | None]:
        if math.isinf(bound):
            return None, None, None
        if bound <= 0:  # g == 0: nothing moves, any step is stable
            return math.inf, math.inf, math.inf
        h2, b = Fraction(h) ** 2, Fraction(bound)
        norm = Fraction(4) / h2 if norm_K2 is None else Fraction(norm_K2)
        return _down(h2 / (2 * b)), _down(h2 / (4 * b)), _down(2 / (b * norm))

    ours, paper = steps(g_max), steps(L)
    if math.isinf(g_max):
        for n in names:
            reasons[n] = "no finite time step: g_max is infinite (g is unbounded)"
    out: dict[str, float | None] = dict(zip(names, ours))
    out.update({f"{n}_paper": v for n, v in zip(names, paper)})
    return out


def verify(
    expr: object,
    kind: str = "activation",
    *,
    params: Mapping[str, object] | None = None,
    convention: str | None = None,
    h: float = 1.0,
    norm_K2: float | None = None,
    require: str | None = None,
    tau: object = sp.Rational(1, 4),
    alpha: object = sp.Rational(1, 4),
    variable: str = "r",
) -> StabilityReport:
    """Translate ``expr`` (as ``translate`` does) and verify its activation.

    ``require`` (linf, sign, euclidean): raise UnstableError, with the reason, when that
    stability notion has no safe time step (the CLI's --require exits 1 instead).
    """
    from .catalogue import CatalogueEntry

    if require is not None and require not in REQUIREMENTS:
        raise ParameterError(
            f"unknown requirement {require!r}; use one of {', '.join(REQUIREMENTS)}"
        )
    if isinstance(expr, Translation):
        t = expr
    else:
        k = None if isinstance(expr, CatalogueEntry) and kind == "activation" else kind
        t = translate(expr, k, params=params, convention=convention, tau=tau, alpha=alpha,
                      variable=variable)
    report = verify_translation(t, h=h, norm_K2=norm_K2)
    if require is not None and not report.holds(require):
        reason = dict(report.reasons).get(STEP_OF[require], "no guarantee")
        raise UnstableError(f"{require} stability fails for {t.input.text}: {reason}")
    return report
