"""Rigorous extremes of a piecewise-smooth function of one real variable.

``extreme(expr, r, "sup")`` encloses the supremum of expr over the real line: an upper bound
``value``, a value ``reached`` that expr attains or approaches (so the supremum lies between
them), where, and how it was obtained:

1. The expression is cut into smooth pieces: Abs, sign, Heaviside, Min and Max are rewritten as
   Piecewise, every condition boundary (and every pole SymPy finds) is a breakpoint; the values
   at breakpoints are candidates.
2. On a piece whose poles SymPy lists and whose critical points ``solveset`` returns as a
   finite set, the supremum is the largest of the one-sided limits at its ends and the values
   at the critical points ("symbolic").
3. Otherwise the piece is bounded by interval branch and bound (interval.py): boxes cover the
   whole closed piece, its tails to +-inf and its ends included. A box reaching an end is
   bounded by the monotonicity test where the natural enclosure is unbounded there
   ("interval").

Nothing is sampled: ``value`` is an upper bound of the supremum (within a relative 1e-8 where
the search converged), infinity when no bound could be established. ``domain`` is set where a
tail beyond 2^1024 (past every float64) had no bounded enclosure: the bound then holds for
|r| <= domain, which every float64 satisfies, and the method says so.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cmp_to_key, lru_cache

import mpmath
import sympy as sp

from .budget import attempt, budget_scale
from .errors import ParameterError, missing_value
from .interval import (
    WIDE,
    bounded,
    derivative_for_bounds,
    enclosure,
    hi,
    interval,
    lo,
    refined,
    to_float,
)
from .numeric import missing_parameters

SOLVE_SECONDS = 0.6  # solveset, singularities: quick where they succeed at all
LIMIT_SECONDS = 1.0  # per one-sided limit of a piece


@dataclass(frozen=True, slots=True)
class Extreme:
    """sup (or inf) of a function: ``value`` bounds it (from above for sup), ``reached`` is
    attained or approached (at ``where``, or as described by ``where_text``)."""

    value: float
    where: float | None
    where_text: str
    method: str
    reached: float = -math.inf
    reached_at: float | None = None
    domain: int | None = None  # the bound holds for |r| <= 2^domain (None: every r)


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


_SOLVED: dict[tuple[sp.Expr, sp.Symbol], sp.Set | None] = {}


def _solve(expr: sp.Expr, r: sp.Symbol, seconds: float = SOLVE_SECONDS) -> sp.Set | None:
    """solveset over the reals, or None when SymPy fails or runs out of time (cached, a
    time-out too: the budget counts CPU time, so trying again would only repeat it; e and
    -e share their roots and their entry)."""
    if expr.could_extract_minus_sign():
        expr = -expr
    key = (expr, r)
    if key not in _SOLVED:
        result = attempt(lambda: sp.solveset(expr, r, sp.S.Reals), seconds)
        if len(_SOLVED) >= 4096:
            _SOLVED.clear()
        _SOLVED[key] = result if isinstance(result, sp.Set) else None
    return _SOLVED[key]


def _real_roots(expr: sp.Expr, r: sp.Symbol,
                seconds: float = SOLVE_SECONDS) -> tuple[sp.Expr, ...] | None:
    """All real roots of expr in r when they are finitely many and SymPy lists them, else
    None."""
    result = _solve(expr, r, seconds)
    if isinstance(result, sp.FiniteSet):
        return tuple(x for x in result if x.is_real is not False)
    if result is sp.S.EmptySet:
        return ()
    return None


def _cusps(e: sp.Expr, r: sp.Symbol) -> tuple[sp.Expr, ...] | None:
    """The real points where e' is singular (e has no derivative there: a cusp, or a pole of
    e), None when SymPy cannot list them."""
    found = attempt(lambda: sp.singularities(sp.diff(e, r), r, sp.S.Reals), SOLVE_SECONDS)
    if found is sp.S.EmptySet:
        return ()
    if isinstance(found, sp.FiniteSet):
        return tuple(found)
    return None


def _periodic_values(expr: sp.Expr, critical: sp.Set, r: sp.Symbol) -> list[sp.Expr] | None:
    """The values of expr on an infinite set of critical points that SymPy gives as a union
    of ImageSets n -> a n + b over the integers (sin r = 0: r = 2 n pi, 2 n pi + pi): each
    must simplify to a number free of n; None otherwise."""
    parts = critical.args if isinstance(critical, sp.Union) else (critical,)
    values: list[sp.Expr] = []
    for part in parts:
        if isinstance(part, sp.FiniteSet):
            values += [expr.subs(r, x) for x in part if x.is_real is not False]
            continue
        if not (isinstance(part, sp.ImageSet) and part.base_sets == (sp.S.Integers,)):
            return None
        n = sp.Symbol("n", integer=True)
        lam = part.lamda
        point = lam.expr.subs(lam.variables[0], n)
        value = attempt(lambda p=point: sp.simplify(expr.subs(r, p)), SOLVE_SECONDS)
        if value is None or value.free_symbols:
            return None
        values.append(value)
    return values


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
    lo: float  # the ends as floats (+-inf also for an end beyond the float range), for display
    hi: float
    expr: sp.Expr
    lo_exact: sp.Expr  # the ends exactly (-oo, oo, or a breakpoint): every decision uses these
    hi_exact: sp.Expr
    poles_known: bool  # SymPy listed every pole of expr (else only interval bounds are used)

    def inside(self, x: sp.Expr) -> bool | None:
        """Whether the exact number x lies strictly inside the piece (None: undecided)."""
        a, b = compare(x, self.lo_exact), compare(x, self.hi_exact)
        if a is None or b is None:
            return None
        return a > 0 and b < 0

    def beside_zero(self, right: bool) -> bool:
        """Whether the piece holds (0, e) (right) or (-e, 0) for some e > 0."""
        zero = sp.Integer(0)
        if right:
            return compare(self.lo_exact, zero) in (-1, 0) and compare(self.hi_exact, zero) == 1
        return compare(self.lo_exact, zero) == -1 and compare(self.hi_exact, zero) in (0, 1)


def compare(x: sp.Expr, y: sp.Expr) -> int | None:
    """The sign of x - y for exact real numbers (+-oo allowed): -1, 0, 1, or None when it
    cannot be decided (never guessed from a rounded value)."""
    if x == y:
        return 0
    if x.is_infinite or y.is_infinite:
        return 1 if (x is sp.oo or y is -sp.oo) else -1
    d = x - y
    if d.is_Rational:
        return (d.p > 0) - (d.p < 0)
    enclosed = enclosure(d, _NOTHING)(interval(0))
    if lo(enclosed) > 0:
        return 1
    if hi(enclosed) < 0:
        return -1
    try:  # evalf with strict accuracy: a nonzero result has its sign right
        value = d.evalf(60, strict=True)
        if value.is_Number and value != 0:
            return 1 if value > 0 else -1
    except (sp.core.evalf.PrecisionExhausted, ArithmeticError, ValueError, TypeError):
        pass
    if attempt(lambda: sp.simplify(d) == 0, SOLVE_SECONDS):
        return 0
    return None


def _ordered(points: list[sp.Expr]) -> list[sp.Expr]:
    """Distinct exact breakpoints in increasing order, decided exactly (1 and 1 + 10^-20 are
    two breakpoints)."""
    def order(x: sp.Expr, y: sp.Expr) -> int:
        c = compare(x, y)
        if c is None:
            raise ParameterError(f"cannot decide the order of the breakpoints {x} and {y}")
        return c

    out: list[sp.Expr] = []
    for p in sorted(points, key=cmp_to_key(order)):
        if not out or order(out[-1], p) != 0:
            out.append(p)
    return out


def _tidy_piece(e: sp.Expr) -> sp.Expr:
    """A smooth piece in a form with fewer operations where cancelling finds one
    (r (1 + sin(r)/r) -> r + sin(r)): the same function on the open piece, whose breakpoints
    (every point where the formula itself is undefined) are already cut out."""
    simpler = attempt(lambda: sp.cancel(e), SOLVE_SECONDS / 3)
    if simpler is None or simpler.has(sp.nan, sp.zoo):
        return e
    return simpler if sp.count_ops(simpler) < sp.count_ops(e) else e


@lru_cache(maxsize=512)
def decompose(expr: sp.Expr, r: sp.Symbol
              ) -> tuple[tuple[Piece, ...], tuple[tuple[float, sp.Expr, sp.Expr], ...]]:
    """Smooth pieces on open intervals and the (breakpoint as a float, exactly, value)
    triples between them. Cached: the key is the expression itself."""
    missing = missing_parameters(expr, r)
    if missing:
        raise missing_value(missing[0])
    folded = _expand_kinks(expr)
    points: list[sp.Expr] = []  # exact breakpoints
    if isinstance(folded, sp.Piecewise):
        for cond in (c for _, c in folded.args):
            for rel in cond.atoms(sp.core.relational.Relational):
                # a condition changes its truth where lhs - rhs is 0 or singular ((r + 1)/r)
                side = rel.lhs - rel.rhs
                roots = _real_roots(side, r)
                poles = attempt(lambda d=side: sp.singularities(d, r, sp.S.Reals),
                                SOLVE_SECONDS)
                if roots is None or not (isinstance(poles, sp.FiniteSet)
                                         or poles is sp.S.EmptySet):
                    raise ParameterError(f"cannot locate the boundary of the condition {rel}")
                points += [x for x in (*roots, *poles) if x.is_real is not False]
        branches = [e for e, _ in folded.args]
    else:
        branches = [folded]
    known: dict[sp.Expr, bool] = {}
    for branch in branches:
        poles = attempt(lambda b=branch: sp.singularities(b, r, sp.S.Reals), SOLVE_SECONDS)
        known[branch] = isinstance(poles, sp.FiniteSet) or poles is sp.S.EmptySet
        if isinstance(poles, sp.FiniteSet):
            points += [x for x in poles if x.is_real is not False]
    cuts = _ordered([p for p in points if p.is_finite is not False])
    ends = [-sp.oo, *cuts, sp.oo]
    pieces = []
    for lo_, hi_ in zip(ends, ends[1:]):
        mid = (lo_ + hi_) / 2 if lo_.is_finite and hi_.is_finite else (
            sp.Integer(0) if not (lo_.is_finite or hi_.is_finite) else
            hi_ - 1 if hi_.is_finite else lo_ + 1)
        branch = _branch_at(folded, r, mid)
        pieces.append(Piece(_to_float(lo_), _to_float(hi_), _tidy_piece(branch), lo_, hi_,
                            known.get(branch, False)))
    values = [(_to_float(p), p, _branch_at(folded, r, p).subs(r, p)) for p in cuts]
    return tuple(pieces), tuple(values)


def _branch_at(folded: sp.Expr, r: sp.Symbol, x: float | sp.Expr) -> sp.Expr:
    if not isinstance(folded, sp.Piecewise):
        return folded
    point = x if isinstance(x, sp.Basic) else sp.Float(x, 30)
    for e, c in folded.args:
        try:
            holds = _holds(c.subs(r, point))
        except TypeError:  # the condition has no value there (1/r >= 1 at r = 0)
            return sp.nan
        if holds:
            return e
    return sp.nan


def _holds(cond: sp.Basic) -> bool:
    """The truth of a condition on numbers, decided exactly where SymPy leaves a relation
    between two numbers unevaluated."""
    if cond in (sp.true, sp.false):
        return bool(cond)
    if isinstance(cond, sp.core.relational.Relational):
        c = compare(cond.lhs, cond.rhs)
        if c is None:
            raise ParameterError(f"cannot decide the condition {cond}")
        return {sp.Lt: c < 0, sp.Le: c <= 0, sp.Gt: c > 0, sp.Ge: c >= 0, sp.Eq: c == 0,
                sp.Ne: c != 0}[type(cond)]
    if isinstance(cond, sp.And):
        return all(_holds(a) for a in cond.args)
    if isinstance(cond, sp.Or):
        return any(_holds(a) for a in cond.args)
    if isinstance(cond, sp.Not):
        return not _holds(cond.args[0])
    return bool(cond)


# -- branch and bound -------------------------------------------------------------------------

SHELLS = 64  # initial geometric shells: |r| from 2^-64 to 2^64, and within 2^-64 of an end
SHELL_STEP = 4  # ... one shell per factor 2^4 (branch and bound splits further where needed)
DOMAIN_LIMIT = mpmath.mpf(2) ** 1024  # above every float64: see Extreme.domain
TAIL_LIMIT = mpmath.mpf(2) ** 16384  # tails are split up to here, then bounded as they are
MAX_BOXES = 6000
BNB_SECONDS = 6.0  # CPU time of one branch and bound; past it the best upper bound stands
REL_TOL = 1e-7  # relative tightness of a converged bound (time steps need no more)

# a box: (a, b, end) with mpf ends (a may be -inf, b +inf); end = (point, side) when the box
# reaches an end of the piece (an open breakpoint, or +-oo), else None
Box = tuple


def _round(value: sp.Expr, up: bool) -> mpmath.mpf:
    """An exact real number (or +-oo) as an mpf rounded up or down."""
    if value is sp.oo:
        return mpmath.inf
    if value is -sp.oo:
        return -mpmath.inf
    enclosed = enclosure(value, _NOTHING)(interval(0))
    if not bounded(enclosed):  # not a real number
        raise ValueError(f"{value} is not a real number")
    return hi(enclosed) if up else lo(enclosed)


_NOTHING = sp.Symbol("_nothing", real=True)


def _cover(piece: Piece) -> list[Box]:
    """Boxes covering the piece (its ends included): geometric shells out to 2^64 and within
    2^-64 of a finite end, then the end boxes."""
    two = mpmath.mpf(2)
    lo_inf, hi_inf = piece.lo_exact is -sp.oo, piece.hi_exact is sp.oo
    if lo_inf and hi_inf:
        right = _side(mpmath.mpf(0), 1, (sp.oo, "-"))
        left = [(-b, -a, None if e is None else (-sp.oo, "+")) for a, b, e in reversed(right)]
        return left + right
    if hi_inf:
        anchor = _round(piece.lo_exact, up=False)
        return _side(anchor, 1, (sp.oo, "-"), (piece.lo_exact, "+"))
    if lo_inf:
        anchor = _round(piece.hi_exact, up=True)
        return _side(anchor, -1, (-sp.oo, "+"), (piece.hi_exact, "-"))
    a, b = _round(piece.lo_exact, up=False), _round(piece.hi_exact, up=True)
    mid = (a + b) / 2
    half = (b - a) / 2
    edges = sorted({a, b, mid, *(a + half * two**-k for k in range(1, SHELLS + 1, SHELL_STEP)),
                    *(b - half * two**-k for k in range(1, SHELLS + 1, SHELL_STEP))})
    boxes = [(x, y, None) for x, y in zip(edges, edges[1:]) if y > x]
    boxes[0] = (boxes[0][0], boxes[0][1], (piece.lo_exact, "+"))
    boxes[-1] = (boxes[-1][0], boxes[-1][1], (piece.hi_exact, "-"))
    return boxes


def _side(anchor: mpmath.mpf, direction: int, tail: tuple, near: tuple | None = None
          ) -> list[Box]:
    """Boxes from ``anchor`` to +-inf (direction): within 2^-64 of the anchor (an end box
    when ``near`` is given, else a box of the interior), shells, the tail end box."""
    two = mpmath.mpf(2)
    steps = [two**k for k in range(-SHELLS, SHELLS + 1, SHELL_STEP)]
    edges = sorted({anchor, *(anchor + direction * s for s in steps)})
    boxes = [(x, y, None) for x, y in zip(edges, edges[1:]) if y > x]
    if direction > 0:
        if near is not None:
            boxes[0] = (boxes[0][0], boxes[0][1], near)
        boxes.append((edges[-1], mpmath.inf, tail))
    else:
        if near is not None:
            boxes[-1] = (boxes[-1][0], boxes[-1][1], near)
        boxes.insert(0, (-mpmath.inf, edges[0], tail))
    return boxes


def _split(box: Box) -> list[Box] | None:
    """Two boxes covering ``box``, or None when it cannot be split further: tails in the
    exponent (2^64 -> 2^128 -> ...), shells far from 0 geometrically, end boxes toward their
    end, the rest at the middle."""
    a, b, end = box
    two = mpmath.mpf(2)
    if mpmath.isinf(b) and mpmath.isinf(a):
        return None
    if mpmath.isinf(b):  # to 2^1024 (every float64) at once, then the exponent doubles
        if a >= TAIL_LIMIT:
            return None
        s = DOMAIN_LIMIT if a < DOMAIN_LIMIT / 2 else max(a * a, a + two**SHELLS)
        return [(a, s, None), (s, b, end)]
    if mpmath.isinf(a):
        if b <= -TAIL_LIMIT:
            return None
        s = -DOMAIN_LIMIT if b > -DOMAIN_LIMIT / 2 else min(-(b * b), b - two**SHELLS)
        return [(a, s, end), (s, b, None)]
    if b - a <= max(abs(a), abs(b)) * two**-58 or b - a < two**-4000:
        return None
    if end is not None:  # toward the end: the box at the end shrinks geometrically
        if end[1] == "+":
            s = a + (b - a) * two**-16
            return [(a, s, end), (s, b, None)]
        s = b - (b - a) * two**-16
        return [(a, s, None), (s, b, end)]
    if a > 0 and b > 2 * a:
        s = mpmath.sqrt(a * b)
    elif b < 0 and a < 2 * b:
        s = -mpmath.sqrt(a * b)
    else:
        s = (a + b) / 2
    if not a < s < b:
        return None
    return [(a, s, None), (s, b, None)]


def _inner_point(a: mpmath.mpf, b: mpmath.mpf) -> mpmath.mpf | None:
    """A point strictly inside (a, b)."""
    if mpmath.isinf(a) and mpmath.isinf(b):
        return mpmath.mpf(0)
    if mpmath.isinf(b):
        return 2 * a if a > 1 else a + 1
    if mpmath.isinf(a):
        return 2 * b if b < -1 else b - 1
    m = (a + b) / 2
    if a > 0 and b > 2 * a:
        m = mpmath.sqrt(a * b)
    elif b < 0 and a < 2 * b:
        m = -mpmath.sqrt(a * b)
    return m if a < m < b else None


@dataclass(frozen=True, slots=True)
class Search:
    """The result of a branch and bound: sup f lies in [reached, upper]; f attains (or
    approaches) ``reached`` at ``at``; ``domain``: the bound holds for |r| <= domain only
    (None: for every r of the piece)."""

    reached: mpmath.mpf
    at: mpmath.mpf | None
    upper: mpmath.mpf
    domain: mpmath.mpf | None


def branch_and_bound(expr: sp.Expr, r: sp.Symbol, piece: Piece, floor: mpmath.mpf,
                     also: Callable[[Box], mpmath.mpf] | None = None,
                     threshold: mpmath.mpf | None = None) -> Search:
    """Enclose sup expr over the piece (its closure: breakpoints and tails included).

    ``floor`` is a value already known to be reached (elsewhere): boxes below it are dropped.
    ``also(box)``, if given, is another valid upper bound of expr on the box. With
    ``threshold``, the question is only whether sup <= threshold: boxes at or below it are
    dropped whatever their distance to the supremum, and the search stops at a point above
    it."""
    f = enclosure(expr, r)
    slope = enclosure(derivative_for_bounds(expr, r), r)
    start = time.process_time()
    best, best_at = -mpmath.inf, None

    def cut() -> mpmath.mpf:
        level = max(best, floor)
        tolerant = level + REL_TOL * (1 + abs(level))
        return tolerant if threshold is None else min(tolerant, max(threshold, level))

    def upper(box: Box) -> mpmath.mpf:
        """The cheapest enclosure that decides the box: natural, then the mean value form,
        then ``also``, and only then the (costly) refinement."""
        a, b, end = box
        x = interval(a, b)
        top = hi(f(x))
        if top > cut() and mpmath.isfinite(a) and mpmath.isfinite(b) and b > a:
            m = (a + b) / 2
            centred = f(interval(m)) + slope(x) * (x - m)  # the mean value form
            if mpmath.isfinite(hi(centred)):
                top = min(top, hi(centred))
        if also is not None and top > cut():
            top = min(top, also(box))
        if top > cut() and (end is not None or not mpmath.isfinite(top)
                            or threshold is not None or top - lo(f(x)) > WIDE):
            top = min(top, hi(refined(expr, r, x, end)))
        return top

    def consider(box: Box) -> None:
        nonlocal best, best_at
        m = _inner_point(box[0], box[1])
        if m is not None:
            low = lo(f(interval(m)))
            if low > best:
                best, best_at = low, m

    heap: list[tuple] = []
    count = 0
    domain = None

    def push(box: Box) -> None:
        nonlocal count
        consider(box)
        count += 1
        heapq.heappush(heap, (-upper(box), count, box))

    for box in _cover(piece):
        push(box)
    boxes = 0
    while heap:
        neg, _, box = heap[0]
        top = -neg
        if top <= cut() or (threshold is not None and best > threshold):
            return Search(best, best_at, max(top, best), domain)
        a, b, end = box
        beyond = a >= DOMAIN_LIMIT or b <= -DOMAIN_LIMIT
        children = _split(box)
        if beyond and (mpmath.isinf(top) or children is None):
            # past every float64, and no bound that settles it: not claimed (domain)
            heapq.heappop(heap)
            far = a if a >= DOMAIN_LIMIT else -b
            domain = far if domain is None else min(domain, far)
            continue
        boxes += 1
        if (children is None or boxes > MAX_BOXES
                or time.process_time() - start > BNB_SECONDS * budget_scale()):
            return Search(best, best_at, max(top, best), domain)
        heapq.heappop(heap)
        for child in children:
            push(child)
    return Search(best, best_at, best, domain)


# -- extremes ----------------------------------------------------------------------------------


def exact_limit(expr: sp.Expr, r: sp.Symbol, at: sp.Expr, side: str) -> sp.Expr | None:
    """The one-sided limit of expr at the exact point ``at`` (or +-oo) as an exact SymPy
    number, +-oo, an AccumBounds (oscillation), or None when SymPy finds none in its
    budget (cached; the limit of -e is minus that of e)."""
    if expr.could_extract_minus_sign():
        value = _exact_limit(-expr, r, at, side)
        return None if value is None else -value
    return _exact_limit(expr, r, at, side)


@lru_cache(maxsize=4096)
def _exact_limit(expr: sp.Expr, r: sp.Symbol, at: sp.Expr, side: str) -> sp.Expr | None:
    if at.is_infinite:
        value = attempt(lambda: sp.limit(expr, r, at), LIMIT_SECONDS)
    else:
        value = attempt(lambda: sp.limit(expr, r, at, side), LIMIT_SECONDS)
    if isinstance(value, sp.AccumBounds):
        return value if value.min.is_real and value.max.is_real else None
    if value is None or not isinstance(value, sp.Expr) or value.has(
            sp.Limit, sp.nan, sp.zoo, sp.AccumBounds, sp.I) or value.free_symbols:
        return None
    return value


def _halves(piece: Piece) -> list[Piece]:
    """A piece spanning 0 cut at 0 (so that r = 0 is the end of a box, for a quotient)."""
    if piece.inside(sp.Integer(0)) is not True:
        return [piece]
    zero = sp.Integer(0)
    return [Piece(piece.lo, 0.0, piece.expr, piece.lo_exact, zero, piece.poles_known),
            Piece(0.0, piece.hi, piece.expr, zero, piece.hi_exact, piece.poles_known)]


def _quotient_bound(flux: sp.Expr, r: sp.Symbol, sign: int
                    ) -> Callable[[Box], mpmath.mpf]:
    """Another upper bound of sign * flux(r)/r on a box inside one smooth piece of flux, by
    the mean value theorem on [c, r], c the end of the box nearest to 0:
    flux(r)/r = (c/r) flux(c)/c + (1 - c/r) flux'(x), x between c and r, a convex
    combination; so sign * g <= max(sign * g(c), sup sign * flux' on the box), tight on
    narrow boxes where a quotient of enclosures is not. At c = 0 this needs flux -> 0 there
    (decided exactly): then g(r) is a mean of flux' on (0, r)."""
    pieces, _ = decompose(flux, r)
    zero_ok = {}
    for right in (True, False):
        beside = [p for p in pieces if p.beside_zero(right)]
        limit = exact_limit(beside[0].expr, r, sp.Integer(0), "+" if right else "-") \
            if beside else None
        zero_ok[right] = (limit is not None and not isinstance(limit, sp.AccumBounds)
                          and compare(limit, sp.Integer(0)) == 0)
    smooth = [(_round(p.lo_exact, up=True), _round(p.hi_exact, up=False),
               enclosure(p.expr, r), enclosure(sign * sp.diff(p.expr, r), r))
              for p in pieces]

    def bound(box: Box) -> mpmath.mpf:
        a, b, _ = box
        if a < 0 < b:
            return mpmath.inf
        for lo_, hi_, value, slope in smooth:
            if lo_ <= a and b <= hi_:
                break
        else:
            return mpmath.inf
        c = a if a >= 0 else b
        top = hi(slope(interval(a, b)))
        if c == 0:
            return top if zero_ok[a >= 0] else mpmath.inf
        at_c = value(interval(c)) / interval(c)
        return max(top, hi(sign * at_c))

    return bound


def extreme(expr: sp.Expr, r: sp.Symbol, which: str = "sup",
            flux: sp.Expr | None = None, threshold: float | None = None,
            points: bool = True) -> Extreme:
    """sup or inf of expr over the real line (breakpoints included), rounded outward.

    ``flux``: expr is flux/r (a diffusivity g = Phi/r) and its value at r = 0 is not part of
    it. Interval arithmetic cannot bound such a quotient next to r = 0, so there the mean
    value theorem is used where flux tends to 0: flux(r)/r is a mean of flux' between 0 and r.
    """
    if which not in ("sup", "inf"):
        raise ValueError(f"which must be 'sup' or 'inf', not {which!r}")
    sign = 1 if which == "sup" else -1
    target = sign * expr
    pieces, point_values = decompose(target, r)
    top, top_at, top_text = -mpmath.inf, None, ""
    reached, reached_at = -mpmath.inf, None
    domain = None
    methods: set[str] = set()

    def offer(up: mpmath.mpf, down: mpmath.mpf, at: float | None, text: str) -> None:
        nonlocal top, top_at, top_text, reached, reached_at
        if up > top:
            top, top_at, top_text = up, at, text
        if down > reached:
            reached, reached_at = down, at

    for p, exact, value in point_values if points else ():
        try:
            offer(_round(value, up=True), _round(value, up=False), p, f"r = {p:.6g}")
        except (ArithmeticError, ValueError, TypeError):
            if flux is not None and exact == 0:
                continue  # g = flux/r has no value at 0 of its own
            offer(mpmath.inf, -mpmath.inf, p, f"r = {p:.6g} (no real value)")
    also = None if flux is None else _quotient_bound(flux, r, sign)
    for whole in pieces:
        for piece in _halves(whole) if flux is not None else [whole]:
            e = piece.expr
            ends = []
            for at, exact, side in ((piece.lo, piece.lo_exact, "+"),
                                    (piece.hi, piece.hi_exact, "-")):
                limit = exact_limit(e, r, exact, side)
                text = ("r -> oo" if at == math.inf else "r -> -oo" if at == -math.inf
                        else f"r -> {at:.6g}{side}")
                if isinstance(limit, sp.AccumBounds):  # oscillates: its top is approached
                    limit = limit.max
                ends.append(limit)
                if limit is not None:  # approached: a lower bound of the supremum
                    offer(-mpmath.inf, _round(limit, up=False), None if math.isinf(at) else at,
                          text)
            critical = _solve(sp.diff(e, r), r) if piece.poles_known and None not in ends \
                else None
            values = None
            if isinstance(critical, sp.FiniteSet) or critical is sp.S.EmptySet:
                # where the piece has no derivative but no pole either (a cusp of
                # sqrt((r - 1)^2)) is a candidate too: the singular points of e'
                cusps = _cusps(e, r)
                values = None if cusps is None else []
                for c in () if cusps is None else (*critical, *cusps):
                    where = piece.inside(c) if c.is_real is not False else False
                    if where is False:
                        continue
                    try:
                        x = _to_float(c)
                    except (ParameterError, TypeError):
                        values = None
                        break
                    # undecided whether inside: an upper bound only, never "reached"
                    values.append((x if where else None, e.subs(r, c)))
            elif critical is not None:  # periodic critical points: an upper bound only
                periodic = _periodic_values(e, critical, r)
                cusps = _cusps(e, r)
                if periodic is not None and cusps is not None:
                    values = [(None, v) for v in periodic]
                    values += [(None, e.subs(r, c)) for c in cusps
                               if c.is_real is not False and piece.inside(c) is not False]
            if values is not None:
                methods.add("symbolic")
                for (at, side), limit in zip(((piece.lo, "+"), (piece.hi, "-")), ends):
                    text = ("r -> oo" if at == math.inf else "r -> -oo" if at == -math.inf
                            else f"r -> {at:.6g}{side}")
                    offer(_round(limit, up=True), -mpmath.inf,
                          None if math.isinf(at) else at, text)
                for x, value in values:
                    try:
                        up, down = _round(value, up=True), _round(value, up=False)
                    except (ArithmeticError, ValueError, TypeError):
                        up, down = mpmath.inf, -mpmath.inf
                    text = f"r = {x:.6g}" if x is not None else "at a critical point"
                    offer(up, down if x is not None else -mpmath.inf, x, text)
                continue
            methods.add("interval")
            if also is not None:
                methods.add("mean value form of Phi/r")
            found = branch_and_bound(
                e, r, piece, reached, also,
                None if threshold is None else mpmath.mpf(sign * threshold))
            at = None if found.at is None else to_float(found.at, 1)
            offer(found.upper, found.reached, at,
                  f"r = {at:.6g}" if at is not None else "near an end")
            if found.domain is not None:
                domain = found.domain if domain is None else min(domain, found.domain)
    method = "+".join(sorted(methods)) or "symbolic"
    exponent = None if domain is None else int(mpmath.floor(mpmath.log(domain, 2)))
    if exponent is not None:
        method += f" (for |r| <= 2^{exponent}, every float64)"
    return Extreme(sign * to_float(top, 1), top_at, top_text, method,
                   sign * to_float(reached, -1),
                   None if reached_at is None else float(reached_at), exponent)
