"""Rigorous extremes of a piecewise-smooth function of one real variable.

``extreme(expr, r, "sup")`` returns the supremum of expr over the real line (or a given
interval) with where it is attained and how it was obtained:

1. The expression is cut into smooth pieces: Abs, sign, Heaviside, Min and Max are rewritten as
   Piecewise, every condition boundary (and every pole SymPy finds) is a breakpoint.
2. On each open piece the candidates are the one-sided limits at its ends and the values at
   the critical points. Critical points come from ``solveset`` when it returns a finite set
   ("symbolic"); values at breakpoints are candidates too.
3. Where ``solveset`` cannot decide, the piece is bounded by interval arithmetic
   (mpmath.iv) with branch and bound over geometric shells that reach |r| = 2^64 and within
   2^-64 of a finite end; what lies beyond is covered by the one-sided limit at the end
   ("interval"; the method string says so).

Nothing is sampled: every number is an upper bound of the supremum (a lower bound of the
infimum) up to the tolerance, or infinity when no bound could be established.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import sympy as sp
from mpmath import iv

from .budget import attempt
from .errors import ParameterError, missing_value
from .numeric import HUGE, missing_parameters

SOLVE_SECONDS = 1.5
LIMIT_SECONDS = 1.5  # per one-sided limit of a piece (dictionary.py allows 3 s for its fills)
SHELLS = 64  # geometric shells: up to |r| = 2^64, down to 2^-64 from a finite end
MAX_BOXES = 6000
REL_TOL = 1e-8


@dataclass(frozen=True, slots=True)
class Extreme:
    """sup (or inf) of a function: value, where (a point, or a limit like 'r -> oo'),
    whether it is attained, and how it was found."""

    value: float
    where: float | None
    where_text: str
    method: str


# -- piecewise decomposition -----------------------------------------------------------------


def _expand_kinks(expr: sp.Expr) -> sp.Expr:
    """Abs, sign, Heaviside, Min, Max -> Piecewise, folded to the top."""
    def rewrite(e: sp.Expr) -> sp.Expr:
        return e.rewrite(sp.Piecewise)

    kinds = (sp.Abs, sp.sign, sp.Heaviside, sp.Min, sp.Max)
    out = expr.replace(lambda e: isinstance(e, kinds), rewrite)
    return sp.piecewise_fold(out)


def derivative(expr: sp.Expr, r: sp.Symbol) -> sp.Expr:
    """The derivative away from breakpoints (kinks are expanded first, so no DiracDelta
    appears; jumps are found separately from one-sided limits)."""
    return sp.piecewise_fold(sp.diff(_expand_kinks(expr), r))


_ROOTS: dict[tuple[sp.Expr, sp.Symbol], tuple[sp.Expr, ...]] = {}


def _real_roots(expr: sp.Expr, r: sp.Symbol,
                seconds: float = SOLVE_SECONDS) -> tuple[sp.Expr, ...] | None:
    """All real roots of expr in r, or None when SymPy cannot tell within ``seconds``.
    Decided answers are cached (the key is the expression); a time-out is not, so that a
    busy machine cannot make an undecided answer permanent."""
    key = (expr, r)
    if key in _ROOTS:
        return _ROOTS[key]
    result = attempt(lambda: sp.solveset(expr, r, sp.S.Reals), seconds)
    if isinstance(result, sp.FiniteSet):
        roots = tuple(x for x in result if x.is_real is not False)
    elif result is sp.S.EmptySet:
        roots = ()
    else:
        return None
    if len(_ROOTS) < 4096:
        _ROOTS[key] = roots
    return roots


def _to_float(value: sp.Expr, up: bool = False) -> float:
    """A real number as a float; with ``up``, never below the exact value."""
    if value is sp.oo:
        return math.inf
    if value is -sp.oo:
        return -math.inf
    number = value.evalf(40)
    if not number.is_number or number.is_real is False or number.has(sp.I):
        raise ParameterError(f"{value} is not a real number")
    if not number.is_real:
        raise ParameterError(f"cannot compare {value} numerically; give parameter values")
    out = float(number)
    if up and sp.Float(out, 40) < number:
        out = math.nextafter(out, math.inf)
    return out


@dataclass(frozen=True, slots=True)
class Piece:
    lo: float
    hi: float
    expr: sp.Expr
    lo_exact: sp.Expr  # the ends exactly (-oo, oo, or a breakpoint), for limits
    hi_exact: sp.Expr
    poles_known: bool  # SymPy listed every pole of expr (else only interval bounds are used)


@lru_cache(maxsize=512)
def decompose(expr: sp.Expr, r: sp.Symbol
              ) -> tuple[tuple[Piece, ...], tuple[tuple[float, sp.Expr], ...]]:
    """Smooth pieces on open intervals and the (breakpoint, value) pairs between them.
    Cached: the key is the expression itself."""
    missing = missing_parameters(expr, r)
    if missing:
        raise missing_value(missing[0])
    folded = _expand_kinks(expr)
    points: dict[float, sp.Expr] = {}  # breakpoint as a float -> its exact value
    if isinstance(folded, sp.Piecewise):
        for cond in (c for _, c in folded.args):
            for rel in cond.atoms(sp.core.relational.Relational):
                roots = _real_roots(rel.lhs - rel.rhs, r)
                if roots is None:
                    raise ParameterError(f"cannot locate the boundary of the condition {rel}")
                points.update((_to_float(x), x) for x in roots)
        branches = [e for e, _ in folded.args]
    else:
        branches = [folded]
    known: dict[sp.Expr, bool] = {}
    for branch in branches:
        poles = attempt(lambda b=branch: sp.singularities(b, r, sp.S.Reals), SOLVE_SECONDS)
        known[branch] = isinstance(poles, sp.FiniteSet) or poles is sp.S.EmptySet
        if isinstance(poles, sp.FiniteSet):
            points.update((_to_float(x), x) for x in poles if x.is_real is not False)
    cuts = sorted(p for p in points if math.isfinite(p))
    exact = {-math.inf: -sp.oo, math.inf: sp.oo, **{p: points[p] for p in cuts}}
    ends = [-math.inf, *cuts, math.inf]
    pieces = []
    for lo, hi in zip(ends, ends[1:]):
        branch = _branch_at(folded, r, _midpoint(lo, hi))
        pieces.append(Piece(lo, hi, branch, exact[lo], exact[hi], known.get(branch, False)))
    values = [(p, _branch_at(folded, r, points[p]).subs(r, points[p])) for p in cuts]
    return tuple(pieces), tuple(values)


def _midpoint(lo: float, hi: float) -> float:
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(lo):
        return hi - 1.0
    if math.isinf(hi):
        return lo + 1.0
    return (lo + hi) / 2


def _branch_at(folded: sp.Expr, r: sp.Symbol, x: float | sp.Expr) -> sp.Expr:
    if not isinstance(folded, sp.Piecewise):
        return folded
    point = x if isinstance(x, sp.Basic) else sp.Float(x, 30)
    for e, c in folded.args:
        if bool(c.subs(r, point)):
            return e
    return sp.nan


# -- interval evaluation -----------------------------------------------------------------------


def _monotone(point_fn: Callable[[object], object]):
    """Interval extension of an increasing function: endpoints evaluated at a higher
    precision and widened outward by a few units in the last place."""

    def f(x):
        x = iv.mpf(x)
        with mpmath.workprec(iv.prec + 30):  # pad at a precision where the pad is visible
            lo, hi = point_fn(mpmath.mpf(x.a)), point_fn(mpmath.mpf(x.b))
            lo = lo - abs(lo) * mpmath.mpf(2) ** -(iv.prec - 4) - mpmath.mpf(2) ** -1000
            hi = hi + abs(hi) * mpmath.mpf(2) ** -(iv.prec - 4) + mpmath.mpf(2) ** -1000
            return iv.mpf([lo, hi])

    return f


def _iv_exp(x):
    x = iv.mpf(x)
    if x.b <= HUGE:
        return iv.exp(x)
    lo = iv.exp(iv.mpf(min(x.a, HUGE))).a  # exp is increasing: exp(min(a, HUGE)) <= exp(a)
    return iv.mpf([lo, mpmath.inf])


def _iv_cosh(x):
    x = iv.mpf(x)
    if max(abs(x.a), abs(x.b)) > HUGE:
        return iv.mpf([1, mpmath.inf])
    with mpmath.workprec(iv.prec + 30):
        a, b = mpmath.cosh(mpmath.mpf(x.a)), mpmath.cosh(mpmath.mpf(x.b))
        hi = max(a, b) * (1 + mpmath.mpf(2) ** -(iv.prec - 4))
        lo = mpmath.mpf(1) if x.a <= 0 <= x.b else min(a, b) * (1 - mpmath.mpf(2) ** -(iv.prec - 4))
        return iv.mpf([lo, hi])


_IV_NAMESPACE = {
    "mpf": iv.mpf,
    "exp": _iv_exp,
    "log": iv.log,
    "sqrt": iv.sqrt,
    "sin": iv.sin,
    "cos": iv.cos,
    "tan": iv.tan,
    "pi": iv.pi,
    "e": iv.e,
    "tanh": _monotone(mpmath.tanh),
    "sinh": _monotone(lambda v: mpmath.sinh(v) if abs(v) <= HUGE else mpmath.sign(v) * mpmath.inf),
    "asinh": _monotone(mpmath.asinh),
    "atan": _monotone(mpmath.atan),
    "erf": _monotone(mpmath.erf),
    "cbrt": _monotone(mpmath.cbrt),
    "cosh": _iv_cosh,
}


def interval_function(expr: sp.Expr, r: sp.Symbol) -> Callable[[float, float], tuple[float, float]]:
    """(a, b) -> an enclosure (lo, hi) of expr over [a, b]; (-inf, inf) where undefined."""
    compiled = sp.lambdify(r, expr, modules=[_IV_NAMESPACE, "mpmath"])

    def enclose(a: float, b: float) -> tuple[float, float]:
        saved = iv.prec
        iv.prec = 64
        try:
            y = iv.mpf(compiled(iv.mpf([a, b])))
            lo, hi = float(y.a), float(y.b)
            # round outward: a float nearest to an endpoint may lie inside the enclosure
            if lo > y.a:
                lo = math.nextafter(lo, -math.inf)
            if hi < y.b:
                hi = math.nextafter(hi, math.inf)
        except (ArithmeticError, ValueError, TypeError, ZeroDivisionError, NameError):
            return -math.inf, math.inf  # no enclosure: no bound from this box
        finally:
            iv.prec = saved
        if math.isnan(lo) or math.isnan(hi):
            return -math.inf, math.inf
        return lo, hi

    return enclose


# -- branch and bound --------------------------------------------------------------------------


def _initial_boxes(lo: float, hi: float) -> list[tuple[float, float]]:
    """Geometric shells covering (lo, hi) up to 2^64 towards infinity and 2^-64 towards a
    finite end."""
    if math.isinf(lo) and math.isinf(hi):  # split at 0, whose neighbourhood is a box too
        tiny = 2.0**-SHELLS
        return (_initial_boxes(-math.inf, 0.0) + [(-tiny, tiny)]
                + _initial_boxes(0.0, math.inf))
    if math.isinf(hi):
        anchor = lo
        edges = [anchor + 2.0**-k for k in range(SHELLS, 0, -1)] + [anchor + 1.0]
        edges += [anchor + 2.0**k for k in range(1, SHELLS + 1)]
        return list(zip(edges, edges[1:]))
    if math.isinf(lo):
        return [(-b, -a) for a, b in _initial_boxes(-hi, math.inf)]
    width = hi - lo
    mid = lo + width / 2
    left = [lo + width / 2 * 2.0**-k for k in range(SHELLS, 0, -1)] + [mid]
    right = [mid] + [hi - width / 2 * 2.0**-k for k in range(1, SHELLS + 1)]
    edges = left + right[1:]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def branch_and_bound_sup(
    expr: sp.Expr, r: sp.Symbol, lo: float, hi: float, floor: float,
    second_upper: Callable[[float, float], float] | None = None,
) -> tuple[float, float, float | None]:
    """Enclosure (lower, upper) of sup expr over the shells of (lo, hi), with the best point.

    ``floor`` is a value already known to be reached (a limit or another piece): boxes whose
    upper bound is below it are dropped. ``second_upper(a, b)``, if given, is another valid
    upper bound of expr on [a, b]; the smaller of the two is used.
    """
    direct = interval_function(expr, r)
    slope = interval_function(sp.diff(expr, r), r)

    def enclose(a: float, b: float) -> tuple[float, float]:
        lo_, hi_ = direct(a, b)
        # centred form f(m) + f'([a, b]) ([a, b] - m): quadratic convergence near a maximum;
        # the float operations are padded by their worst relative error
        m = (a + b) / 2
        d_lo, d_hi = slope(a, b)
        f_m = direct(m, m)[1]
        term = max(abs(d_lo), abs(d_hi)) * max(m - a, b - m) * (1 + 2.0**-50)
        centred = f_m + term + (abs(f_m) + term) * 2.0**-50 + 2.0**-1000
        if math.isfinite(centred):
            hi_ = min(hi_, centred)
        if second_upper is not None:
            hi_ = min(hi_, second_upper(a, b))
        return lo_, hi_

    best, best_at = -math.inf, None  # the best value seen in this piece, and where

    def consider(m: float) -> None:
        nonlocal best, best_at
        low = direct(m, m)[0]
        if low > best:
            best, best_at = low, m

    def prune() -> float:
        return max(best, floor)

    heap: list[tuple[float, float, float]] = []
    for a, b in _initial_boxes(lo, hi):
        consider((a + b) / 2)
        heapq.heappush(heap, (-enclose(a, b)[1], a, b))
    boxes = 0
    while heap:
        neg_up, a, b = heapq.heappop(heap)
        up = -neg_up
        level = prune()
        if up <= level + REL_TOL * (1 + abs(level)):
            return best, max(up, best), best_at
        boxes += 1
        if boxes > MAX_BOXES or b - a <= 1e-15 * max(abs(a), abs(b)):
            return best, up, best_at  # could not tighten further: the upper bound stands
        m = (a + b) / 2
        for c, d in ((a, m), (m, b)):
            consider((c + d) / 2)
            u = enclose(c, d)[1]
            if u > prune():
                heapq.heappush(heap, (-u, c, d))
    return best, best, best_at


# -- extremes ----------------------------------------------------------------------------------


def _limit(expr: sp.Expr, r: sp.Symbol, at: sp.Expr | float, side: str,
           upper: bool = False) -> float | None:
    """The one-sided limit of expr at the exact point ``at`` (or +-oo) as a float, rounded
    up; None if SymPy finds none. With ``upper``, an oscillating limit (AccumBounds) gives
    the top of its range (limsup)."""
    if isinstance(at, float):
        at = sp.oo if at == math.inf else -sp.oo if at == -math.inf else sp.nsimplify(at)
    if at.is_infinite:
        value = attempt(lambda: sp.limit(expr, r, at), LIMIT_SECONDS)
    else:
        value = attempt(lambda: sp.limit(expr, r, at, side), LIMIT_SECONDS)
    if upper and isinstance(value, sp.AccumBounds):
        value = value.max
    if value is None or not isinstance(value, sp.Expr) or value.has(
        sp.Limit, sp.nan, sp.zoo, sp.AccumBounds
    ):
        return None
    if value.is_infinite:
        return math.inf if value.is_extended_positive else -math.inf
    try:
        return _to_float(value, up=True)
    except (ParameterError, TypeError):
        return None


NEAR_ZERO = 2.0**-30


def _smooth_reach(slope: sp.Expr, r: sp.Symbol, right: bool) -> float:
    """How far from 0 (to the right, or to the left as a negative number) Phi' stays one
    smooth piece."""
    pieces, _ = decompose(slope, r)
    for piece in pieces:
        if right and piece.lo <= 0 < piece.hi:
            return min(piece.hi, 2.0**64)
        if not right and piece.lo < 0 <= piece.hi:
            return max(piece.lo, -(2.0**64))
    return NEAR_ZERO if right else -NEAR_ZERO


def extreme(expr: sp.Expr, r: sp.Symbol, which: str = "sup",
            flux: sp.Expr | None = None) -> Extreme:
    """sup or inf of expr over the real line (breakpoints included), rounded outward.

    ``flux``: expr is flux/r with flux(0) = 0 (a diffusivity g = Phi/r). Interval arithmetic
    cannot bound such a quotient near r = 0, so there the mean value theorem is used:
    for 0 < |r| <= 2^-30, Phi(r)/r is a mean of Phi' between 0 and r.
    """
    if which not in ("sup", "inf"):
        raise ValueError(f"which must be 'sup' or 'inf', not {which!r}")
    sign = 1 if which == "sup" else -1
    slope = None if flux is None else derivative(flux, r)
    target = sign * expr
    pieces, point_values = decompose(target, r)
    best = -math.inf
    where: float | None = None
    where_text = ""
    methods: set[str] = set()

    def offer(value: float, at: float | None, text: str) -> None:
        nonlocal best, where, where_text
        if value > best:
            best, where, where_text = value, at, text

    for p, value in point_values:
        try:
            offer(_to_float(value, up=True), p, f"r = {p:.6g}")
        except (ParameterError, TypeError):
            if slope is not None and p == 0:
                continue  # Phi/r at 0 is its limit Phi'(0): the mean value bound covers it
            offer(math.inf, p, f"r = {p:.6g} (no real value)")
    for piece in pieces:
        lo, hi, e = piece.lo, piece.hi, piece.expr
        for at, exact, side in ((lo, piece.lo_exact, "+"), (hi, piece.hi_exact, "-")):
            value = _limit(e, r, exact, side, upper=True)
            if value is None:
                value = math.inf  # no limit established: no bound there
                methods.add("no limit found at an end")
            text = ("r -> oo" if at == math.inf else "r -> -oo" if at == -math.inf
                    else f"r -> {at:.6g}{side}")
            offer(value, None if math.isinf(at) else at, text)
        critical = _real_roots(sp.diff(e, r), r) if piece.poles_known else None
        if critical is not None:
            methods.add("symbolic")
            for c in critical:
                try:
                    x = _to_float(c)
                except ParameterError:
                    continue
                if lo < x < hi:
                    try:
                        offer(_to_float(e.subs(r, c), up=True), x, f"r = {x:.6g}")
                    except ParameterError:
                        offer(math.inf, x, f"r = {x:.6g} (no real value)")
            continue
        methods.add("interval")
        # a quotient Phi/r is bounded next to 0 by the mean value theorem, so a piece that
        # spans 0 (its fill at 0 missing, e.g. when a limit ran out of time) is cut there
        parts = [(lo, 0.0), (0.0, hi)] if slope is not None and lo < 0 < hi else [(lo, hi)]
        for part_lo, part_hi in parts:
            second = None
            if slope is not None and (part_lo == 0 or part_hi == 0):
                # Phi(r)/r is a mean of Phi' between 0 and r, where Phi' is one smooth piece
                reach = _smooth_reach(slope, r, part_lo == 0)
                near = interval_function(sign * _branch_at(slope, r, reach / 2), r)

                def second(a: float, b: float, near=near, reach=reach) -> float:
                    if (b <= reach) if reach > 0 else (a >= reach):
                        return near(0.0, b)[1] if reach > 0 else near(a, 0.0)[1]
                    return math.inf

                a, b = (0.0, NEAR_ZERO) if part_lo == 0 else (-NEAR_ZERO, 0.0)
                offer(second(a, b), None, "r -> 0")
                methods.add("mean value near 0")
                part_lo, part_hi = ((NEAR_ZERO, part_hi) if part_lo == 0
                                    else (part_lo, -NEAR_ZERO))
            _, upper, at = branch_and_bound_sup(e, r, part_lo, part_hi, best, second)
            if upper > best or (upper == best and where is None and at is not None):
                best, where = upper, at
                where_text = f"r = {at:.6g}" if at is not None else "near an end"
    method = "+".join(sorted(methods)) or "symbolic"
    return Extreme(sign * best, where, where_text, method)
