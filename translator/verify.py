"""verify: Translation -> StabilityReport (MATH.md 2). The stability bounds live here.

Every number comes from ``bounds.extreme`` (symbolic critical points, else interval branch
and bound over the whole line) and is an upper bound of a supremum / lower bound of an
infimum, never a sample. Breakpoints are decided exactly: the value there and both one-sided
limits are SymPy numbers compared exactly (a jump of 1e-13 is a jump). Each verdict is True
(proven), False (disproven, with a counterexample checked by interval evaluation) or None
(unknown, with the reason).

The derived facts use the identities of Table 1:
- regulariser: Psi' = 2 Phi, so Psi is convex iff Phi is nondecreasing (no downward jump), and
  Psi increases in |r| iff r Phi(r) >= 0;
- shrinkage: S(r)/r = 1 - 4 tau g(sqrt2 r), so -r <= S <= r (L-inf, P1 12) iff
  0 <= g <= 1/(2 tau), and 0 <= S <= r (sign, P1 13) iff 0 <= g <= 1/(4 tau).
Time steps (each needs g >= 0, Phi(0) = 0 and a finite g_max): tau_linf = h^2/(2 g_max),
tau_sign = h^2/(4 g_max), tau_euclid = 2/(g_max ||K||^2) with ||K||^2 = 4/h^2 by default
(1D forward differences); the paper's versions use L instead of g_max (P1 16, P2 Theorem 2).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import sys
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING

import mpmath
import sympy as sp

from .bounds import (
    Extreme,
    Piece,
    _expand_kinks,
    _real_roots,
    _to_float,
    branch_and_bound,
    compare,
    decompose,
    derivative,
    exact_limit,
    extreme,
)
from .budget import attempt, within_budget
from .dictionary import SIMPLIFY_SECONDS
from .errors import FluxactError, FormulaError, ParameterError, missing_value
from .interval import bounded, enclosure, hi, interval, lo, to_float
from .numeric import numeric_function
from .scaling import find_scaling

if TYPE_CHECKING:
    from .translation import Translation

#: stability notion -> the report field holding its time step
STEP_OF = {"linf": "tau_linf", "sign": "tau_sign", "euclidean": "tau_euclid"}
REQUIREMENTS = tuple(STEP_OF)
ROOTS_SECONDS = 0.6  # the decreasing intervals fall back to certified boxes, so little is lost
VERIFY_SECONDS = 30.0  # CPU time of one whole verification; past it every verdict is unknown
TAIL_SECONDS = 0.3  # for an infinite run of Phi' < 0 whole (see _certified_run)
TAIL_SPAN = 16
MAX_INTERVALS = 12  # decreasing intervals listed (the method says when there may be more)
DECREASING_SECONDS = 2.5  # CPU time to find them (they inform; no verdict rests on them)

Verdict = bool | None  # True proven, False disproven (counterexample), None unknown (reason)


class UnstableError(FluxactError):
    """A required stability notion has no safe time step for this activation."""


@dataclass(frozen=True, slots=True)
class Counterexample:
    """A point (or the start of an interval) where a property fails, and why. ``template``
    holds the reason with {0}, {1}, ... for the r-values in ``points`` (so that a report for
    symbolic parameters can rescale them)."""

    property: str
    r: float | sp.Expr  # an expression in the parameters when they are symbolic
    value: float | sp.Expr | None
    reason: str
    template: str = ""
    points: tuple[float, ...] = ()


def _counterexample(prop: str, r: float, value: float | None, template: str,
                    *points: float) -> Counterexample:
    return Counterexample(prop, r, value, template.format(*(_fmt(p) for p in points)),
                          template, points)


@dataclass(frozen=True, slots=True)
class StabilityReport:
    """Stability facts about the activation Phi of a translation (MATH.md 2). Verdicts are
    True, False (with a counterexample) or None (unknown; ``reasons`` says why)."""

    formula: str
    antisymmetric: Verdict
    nonnegative_diffusivity: Verdict
    monotone: Verdict
    decreasing_intervals: tuple[tuple[float, float], ...]
    nonlinearity_class: int | None  # 1 or 2 as in MATH.md 1, None for neither (or unknown)
    lipschitz: float
    lipschitz_at: str
    g_max: float
    g_max_at: str
    g_min: float
    shrinkage_linf: Verdict
    shrinkage_sign: Verdict
    regulariser_convex: Verdict
    regulariser_increasing: Verdict
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
    # the bounds hold for |r| <= 2^domain (every float64) where a tail past 2^1024 had no
    # bounded enclosure; None: on the whole real line
    domain: int | None = None
    g_unbounded: bool = False  # g certainly takes arbitrarily large values (not only no bound)

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
        for c in data["counterexamples"]:
            del c["template"], c["points"]
        return {k: _jsonable(v) for k, v in data.items()}

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity literals: infinity is "inf", an unknown number
        null)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def __str__(self) -> str:
        return format_report(self)


def _jsonable(value: object) -> object:
    if isinstance(value, sp.Basic):
        return sp.sstr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
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
    if math.isnan(x):
        return "unknown"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


_WORDS = {True: "yes", False: "no", None: "unknown"}


def format_report(rep: StabilityReport) -> str:
    yes = _WORDS
    klass = rep.nonlinearity_class or "neither"
    lines = [
        f"  antisymmetric: {yes[rep.antisymmetric]};  g >= 0: {yes[rep.nonnegative_diffusivity]};"
        f"  monotone: {yes[rep.monotone]};  class: {klass}",
        f"  L = {_fmt(rep.lipschitz)} ({rep.lipschitz_at});  g_max = {_fmt(rep.g_max)}"
        f" ({rep.g_max_at})",
        f"  time steps (h = {rep.h:g}, ||K||^2 = {rep.norm_K2:g}): linf {_fmt(rep.tau_linf)},"
        f" sign {_fmt(rep.tau_sign)}, euclidean {_fmt(rep.tau_euclid)};"
        f" paper (L-based): {_fmt(rep.tau_linf_paper)}, {_fmt(rep.tau_sign_paper)},"
        f" {_fmt(rep.tau_euclid_paper)}",
    ]
    if rep.decreasing_intervals:
        parts = ", ".join(f"({_fmt(a)}, {_fmt(b)})" if a != b else f"a jump down at {_fmt(a)}"
                          for a, b in rep.decreasing_intervals)
        lines.append(f"  Phi decreases on: {parts}")
    for c in rep.counterexamples:
        lines.append(f"  counterexample ({c.property}): r = {_fmt(c.r)}: {c.reason}")
    reasons = dict(rep.reasons)
    for field, label in (("antisymmetric", "antisymmetric"),
                         ("nonnegative_diffusivity", "g >= 0"), ("monotone", "monotone")):
        if getattr(rep, field) is None and field in reasons:
            lines.append(f"  {label} unknown: {reasons[field]}")
    if rep.domain is not None:
        lines.append(f"  bounds hold for |r| <= 2^{rep.domain} (every float64 value); beyond: "
                     "unknown")
    if rep.parameters:
        how = dict(rep.method)["parameters"]
        lines.append(f"  for every {', '.join(rep.parameters)} > 0: {how}")
    return "\n".join(lines)


# -- exact decisions ---------------------------------------------------------------------------


def _real_number(value: sp.Expr | None) -> bool:
    return (value is not None and isinstance(value, sp.Expr) and not value.free_symbols
            and not value.has(sp.nan, sp.zoo, sp.I, sp.oo, -sp.oo, sp.AccumBounds)
            and value.is_real is not False)


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """Phi at a breakpoint p: its value and one-sided limits (exact, None when unknown), and
    what they decide."""

    at: float
    exact: sp.Expr
    value: sp.Expr | None
    left: sp.Expr | None
    right: sp.Expr | None
    continuous: Verdict  # left = value = right
    nondecreasing: Verdict  # left <= value <= right


def _breakpoint(p: float, exact: sp.Expr, value: sp.Expr, left: Piece, right: Piece,
                r: sp.Symbol) -> Breakpoint:
    a = exact_limit(left.expr, r, exact, "-")
    b = exact_limit(right.expr, r, exact, "+")
    a = a if a is not None and not isinstance(a, sp.AccumBounds) else None
    b = b if b is not None and not isinstance(b, sp.AccumBounds) else None
    v = value if _real_number(value) else None
    if v is None and any(x is not None and x.is_infinite for x in (a, b)):
        return Breakpoint(p, exact, v, a, b, False, False)  # a pole: neither continuous nor
        # monotone (a nondecreasing function cannot tend to +-inf at a finite point from
        # both sides)
    if a is None or b is None or v is None:
        return Breakpoint(p, exact, v, a, b, None, None)
    av, vb, ab = compare(a, v), compare(v, b), compare(a, b)
    continuous: Verdict
    if av == 0 and vb == 0:
        continuous = True
    elif (av is not None and av != 0) or (vb is not None and vb != 0) or (
            ab is not None and ab != 0):
        continuous = False
    else:
        continuous = None
    if av is not None and vb is not None and av <= 0 and vb <= 0:
        nondecreasing: Verdict = True
    elif (av is not None and av > 0) or (vb is not None and vb > 0):
        nondecreasing = False
    else:
        nondecreasing = None
    return Breakpoint(p, exact, v, a, b, continuous, nondecreasing)


def _describe_jump(bp: Breakpoint) -> str:
    parts = [f"left limit {_fmt_exact(bp.left)}", f"value {_fmt_exact(bp.value)}",
             f"right limit {_fmt_exact(bp.right)}"]
    return ", ".join(parts)


def _fmt_exact(x: sp.Expr | None) -> str:
    """An exact number as text: SymPy's form where short (1 - 1/10^13 stays exact), else 17
    digits."""
    if x is None:
        return "unknown"
    if x.is_infinite:
        return "inf" if x is sp.oo else "-inf"
    text = sp.sstr(x)
    return text if len(text) <= 32 else f"{_to_float(x):.17g}"


# -- certified point checks -------------------------------------------------------------------


def _certified(expr: sp.Expr, r: sp.Symbol, x: float) -> tuple[float, float]:
    """An enclosure (lo, hi) of expr at the point x (floats rounded outward)."""
    y = enclosure(expr, r)(interval(x))
    if not bounded(y):
        return -math.inf, math.inf
    return to_float(lo(y), -1), to_float(hi(y), 1)


def _witness(expr: sp.Expr, r: sp.Symbol, found: Extreme, below: bool) -> float | None:
    """A point where expr is certainly < 0 (below) or > 0, near where the extreme said: the
    point itself, or next to the breakpoint / far out where it was a limit."""
    tries: list[float] = []
    if found.reached_at is not None:
        tries.append(found.reached_at)
    if found.where is not None:
        tries.append(found.where)
    text = found.where_text
    match = re.search(r"r -> (-?[0-9.e+-]+?)([+-])$", text)
    if match:
        p, side = float(match.group(1)), match.group(2)
        step = 1.0 if side == "+" else -1.0
        tries += [p + step * 2.0**-k * max(1.0, abs(p)) for k in range(1, 60, 3)]
    if "oo" in text:
        sign = -1.0 if "-oo" in text else 1.0
        tries += [sign * 2.0**k for k in range(-4, 1024, 4)]
    for x in tries:
        if _sign_at(expr, r, x) == (-1 if below else 1):
            return x
    return None


# -- the checks --------------------------------------------------------------------------------


def _pieces_vanish(expr: sp.Expr, r: sp.Symbol) -> bool:
    """Whether expr is 0 everywhere: on every smooth piece (symbolically) and at every
    breakpoint (exactly)."""
    pieces, values = decompose(expr, r)
    for _, _, value in values:
        if not _real_number(value) or compare(value, sp.Integer(0)) != 0:
            return False
    for piece in pieces:
        e = piece.expr
        if e == 0:
            continue
        if not attempt(lambda e=e: sp.simplify(e) == 0, SIMPLIFY_SECONDS):
            return False
    return True


def _is_antisymmetric(phi: sp.Expr, r: sp.Symbol, breaks: list[Breakpoint]
                      ) -> tuple[Verdict, Counterexample | None, str]:
    total = _expand_kinks(phi.subs(r, -r) + phi)
    if attempt(lambda: sp.simplify(total) == 0, SIMPLIFY_SECONDS):
        return True, None, "symbolic: Phi(-r) + Phi(r) simplifies to 0"
    if attempt(lambda: _pieces_vanish(total, r), 2 * SIMPLIFY_SECONDS):
        return True, None, "symbolic: Phi(-r) + Phi(r) is 0 on every piece and breakpoint"
    points = [bp.at for bp in breaks] + [1.37**k * 0.731 for k in range(-40, 41)]
    points += [2.0**k for k in range(-64, 1024, 8)]  # far out, where a bump may hide
    for x in [0.0, *sorted(points, key=lambda x: abs(math.log(abs(x))) if x else math.inf)]:
        if _sign_at(total, r, x):
            low, high = _certified(total, r, x)
            value = (low + high) / 2
            return False, _counterexample(
                "antisymmetric", x, value, "Phi({0}) + Phi({1}) != 0 (certified)", x, -x
            ), "counterexample by interval evaluation"
    return None, None, "not proven: SymPy could not show Phi(-r) + Phi(r) = 0 and no point " \
        "disproves it"


def _check_real(phi: sp.Expr, r: sp.Symbol) -> None:
    """Refuse an activation that is not a real function on the whole line (sqrt(r), r/0):
    a quick look at a few points, for a clear message; soundness does not rest on it (where
    Phi has no real value, interval enclosures bound nothing)."""
    if phi.has(sp.zoo, sp.nan, sp.I, sp.AccumBounds):
        raise FormulaError(f"the activation {phi} is undefined or complex somewhere; "
                           "give a real function of r on the whole line")
    phi_at = numeric_function(phi, r, "the activation")
    for x in (-1e6, -7.3, -1.0, -0.37, 0.37, 1.0, 7.3, 1e6):
        try:
            value = phi_at(x)
        except (ArithmeticError, ValueError, TypeError):
            value = math.nan
        if math.isnan(value):
            raise FormulaError(
                f"the activation {phi} has no real value at r = {x:g}; verification needs a "
                "real function of r on the whole line (e.g. use Abs(r) inside sqrt or log)"
            )


def _diffusivity(phi: sp.Expr, r: sp.Symbol, pieces: tuple[Piece, ...],
                 values: tuple[tuple[float, sp.Expr, sp.Expr], ...]) -> sp.Expr:
    """g = Phi/r built from Phi's own pieces and breakpoint values (g has no value at 0:
    flux/r there is left out of every bound)."""
    branches: list[tuple[sp.Expr, sp.Basic]] = []
    for _, exact, value in values:
        if compare(exact, sp.Integer(0)) != 0:  # exactly: e^-1000 is not 0
            branches.append((value / exact, sp.Eq(r, exact)))
    for piece in pieces:
        cond = sp.And(r > piece.lo_exact if piece.lo_exact != -sp.oo else sp.true,
                      r < piece.hi_exact if piece.hi_exact != sp.oo else sp.true)
        branches.append((sp.factor_terms(piece.expr / r), cond))
    branches.append((sp.nan, True))
    return sp.Piecewise(*branches, evaluate=False)


def _decreasing(phi: sp.Expr, dphi: sp.Expr, r: sp.Symbol, breaks: list[Breakpoint]
                ) -> tuple[list[tuple[float, float]], str]:
    """Where Phi decreases (Phi' <= 0, and < 0 inside): between consecutive roots of Phi' on
    each piece where its sign is negative. Symbolic roots make the list complete; otherwise
    roots are bracketed by certified signs on a grid and bisected, and each interval is
    certified by interval branch and bound (one that cannot be is left out, and the method
    says the list may be incomplete). A downward jump at p is (p, p). Adjacent intervals
    merge only across a breakpoint where Phi is continuous."""
    pieces, _ = decompose(dphi, r)
    found: list[tuple[float, float]] = []
    methods: set[str] = set()
    for piece in pieces:
        roots = _real_roots(piece.expr, r, ROOTS_SECONDS) if piece.poles_known else None
        cuts = None
        if roots is not None and _float_ends(piece):
            where = [piece.inside(c) for c in roots]
            try:
                if None not in where:
                    cuts = sorted(_to_float(c) for c, w in zip(roots, where) if w)
            except (ParameterError, TypeError):
                cuts = None
        if cuts is not None:
            methods.add("symbolic roots of Phi'")
            ends = [piece.lo, *cuts, piece.hi]
            for a, b in zip(ends, ends[1:]):
                if _sign_at(piece.expr, r, _middle(a, b)) < 0:
                    found.append((a, b))
            continue
        methods.add("roots of Phi' bracketed by certified signs, each interval certified by "
                    "interval branch and bound")
        candidates = _negative_runs(piece, r)
        nearest = sorted(candidates, key=lambda ab: min(abs(ab[0]), abs(ab[1])))
        certified: list[tuple[float, float]] = []

        def certify(todo=nearest[:MAX_INTERVALS], e=piece.expr, done=certified) -> bool:
            for a, b in todo:
                span = _certified_run(e, r, a, b, methods)
                if span is not None:
                    done.append(span)
                else:
                    methods.add("an interval that could not be certified is not listed")
            return True

        if not within_budget(certify, DECREASING_SECONDS, lambda: False):
            methods.add(f"certification stopped after {DECREASING_SECONDS:g} s: the list may "
                        "be incomplete")
        found += certified
        if len(candidates) > MAX_INTERVALS:
            methods.add(f"the {MAX_INTERVALS} nearest to 0 are listed")
    continuous = {bp.at for bp in breaks if bp.continuous}
    merged: list[tuple[float, float]] = []
    for a, b in sorted(found):
        if merged and merged[-1][1] == a and a in continuous:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    jumps = [(bp.at, bp.at) for bp in breaks if bp.nondecreasing is False]
    out = sorted(merged + jumps)
    if len(out) > MAX_INTERVALS:
        out = sorted(sorted(out, key=lambda ab: min(abs(ab[0]), abs(ab[1])))[:MAX_INTERVALS])
    return out, "; ".join(sorted(methods))


def _middle(a: float, b: float) -> float:
    if math.isinf(a) and math.isinf(b):
        return 0.0
    if math.isinf(a):
        return b - 1.0 if b <= 0 else b / 2
    if math.isinf(b):
        return a + 1.0 if a >= 0 else a / 2
    return (a + b) / 2


def _float_ends(piece: Piece) -> bool:
    """Whether the piece's float ends name it (an end like e^800 is +inf as a float)."""
    return (math.isinf(piece.lo) == (piece.lo_exact is -sp.oo)
            and math.isinf(piece.hi) == (piece.hi_exact is sp.oo))


def _sign_at(expr: sp.Expr, r: sp.Symbol, x: float) -> int:
    """The certified sign of expr at x: -1, 1, or 0 when the enclosure holds 0 (compared
    before any rounding to a float, which would flush 1e-400 to 0)."""
    y = enclosure(expr, r)(interval(x))
    return -1 if hi(y) < 0 else 1 if lo(y) > 0 else 0


def _negative_runs(piece: Piece, r: sp.Symbol) -> list[tuple[float, float]]:
    """Candidate intervals where Phi' < 0: runs of grid points (0, |r| = 2^(k/4) from 2^-30
    to 2^64, then 2^72, 2^80, ... 2^1016) with a certified negative sign, each end pushed by
    bisection to the last point of certified negative sign before the next grid point, or to
    the end of the piece."""
    e = piece.expr
    if not _float_ends(piece):
        return []  # an end beyond the float range: no float interval names the piece
    steps = [2.0 ** (k / 4) for k in range(-120, 257)] + [2.0**k for k in range(72, 1017, 8)]
    grid = sorted({0.0, *(s * x for x in steps for s in (-1, 1))})
    grid = [x for x in grid if piece.lo < x < piece.hi]
    signs = [_sign_at(e, r, x) for x in grid]
    runs: list[tuple[float, float]] = []
    i = 0
    while i < len(grid):
        if signs[i] >= 0:
            i += 1
            continue
        j = i
        while j + 1 < len(grid) and signs[j + 1] < 0:
            j += 1
        left = piece.lo if i == 0 else _last_negative(e, r, grid[i], grid[i - 1])
        right = piece.hi if j == len(grid) - 1 else _last_negative(e, r, grid[j], grid[j + 1])
        runs.append((left, right))
        i = j + 1
    return runs


def _last_negative(e: sp.Expr, r: sp.Symbol, inside: float, outside: float) -> float:
    """Bisect between a point of certified negative sign and one that is not: the last point
    found with a certified negative sign."""
    for _ in range(60):
        m = (inside + outside) / 2
        if m in (inside, outside):
            break
        if _sign_at(e, r, m) < 0:
            inside = m
        else:
            outside = m
    return inside


def _certified_run(e: sp.Expr, r: sp.Symbol, a: float, b: float, methods: set[str]
                   ) -> tuple[float, float] | None:
    """The run (a, b) of Phi' < 0 signs, or the part of it where e <= 0 is certified. A run to
    infinity gets TAIL_SECONDS whole (enough when the tail's enclosure converges, as for
    swish), then only its finite span (_finite_span). None: nothing certified."""
    if not (math.isinf(a) or math.isinf(b)):
        return (a, b) if _nonpositive_on(e, r, a, b) else None
    if within_budget(lambda: _nonpositive_on(e, r, a, b), TAIL_SECONDS, lambda: False):
        return a, b
    methods.add(f"a run to infinity not certified whole in {TAIL_SECONDS:g} s is cut at "
                f"2^{TAIL_SPAN} times its finite end")
    a, b = _finite_span(a, b)
    return (a, b) if _nonpositive_on(e, r, a, b) else None


def _finite_span(a: float, b: float) -> tuple[float, float]:
    """A finite part of a run of negative signs: an infinite end becomes +-2^TAIL_SPAN times the
    finite end's magnitude (at least 1). Phi' -> 0 in the tail (Weickert: -7C/r^8) defeats an
    enclosure of the whole tail, while a bounded part is certified in a fraction of a second;
    the listed interval is then a certified part of the decreasing run."""
    span = min(max(abs(x) for x in (a, b, 1.0) if not math.isinf(x)) * 2.0**TAIL_SPAN,
               sys.float_info.max)
    return (-span if math.isinf(a) else a), (span if math.isinf(b) else b)


def _nonpositive_on(e: sp.Expr, r: sp.Symbol, a: float, b: float) -> bool:
    """Whether e <= 0 on [a, b] (a, b may be infinite), certified by branch and bound."""
    lo_exact = -sp.oo if math.isinf(a) else sp.Rational(a)
    hi_exact = sp.oo if math.isinf(b) else sp.Rational(b)
    piece = Piece(a, b, e, lo_exact, hi_exact, True)
    found = branch_and_bound(e, r, piece, -mpmath.inf, threshold=mpmath.mpf(0))
    return found.upper <= 0 and found.domain is None


def _value_at_zero(phi: sp.Expr, r: sp.Symbol, pieces: tuple[Piece, ...],
                   values: tuple[tuple[float, sp.Expr, sp.Expr], ...]) -> sp.Expr | None:
    """Phi(0), decided on the exact breakpoints (one at -e^-1000 is not at 0)."""
    for _, exact, value in values:
        if compare(exact, sp.Integer(0)) == 0:
            return value if _real_number(value) else None
    for piece in pieces:
        if piece.inside(sp.Integer(0)):
            value = attempt(lambda e=piece.expr: e.subs(r, 0), SIMPLIFY_SECONDS)
            return value if _real_number(value) else None
    return None


#: grid sizes h accepted (by the verifier, blocks built by denoise and the command line):
#: ||K||^2 = 4/h^2 (1D), 8/h^2 (2D) and the steps c h^2/g stay normal float64 numbers for
#: moderate g
GRID_RANGE = (1e-150, 1e150)


def check_grid_size(h: object) -> float:
    """``h`` as a float, refused with one line outside GRID_RANGE (the one home of the check)."""
    low, high = GRID_RANGE
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not low <= h <= high:
        raise ParameterError(f"grid size h must be a number between {low:g} and {high:g} (the "
                             f"time step ~ h^2 must stay a positive finite float64), got {h!r}; "
                             "rescale the grid")
    return float(h)


def verify_translation(t: Translation, *, h: float = 1.0,
                       norm_K2: float | None = None) -> StabilityReport:
    """The stage: Translation -> StabilityReport (cached per translation, h and ||K||^2)."""
    h = float(h)
    norm = None if norm_K2 is None else float(norm_K2)
    if not (h > 0 and math.isfinite(h)):
        raise ParameterError(f"grid size h must be positive and finite, got {h}")
    if norm is not None and not (norm > 0 and math.isfinite(norm)):
        raise ParameterError(f"norm_K2 must be positive and finite, got {norm_K2}")
    return _verify_cached(t, check_grid_size(h), norm)


_CACHE: dict[tuple[Translation, float, float | None], StabilityReport] = {}


def _verify_cached(t: Translation, h: float, norm_K2: float | None) -> StabilityReport:
    """Cached per (translation, h, ||K||^2); a report cut short by the budget is not cached,
    so that it is tried again."""
    key = (t, h, norm_K2)
    if key in _CACHE:
        return _CACHE[key]
    timed_out = False

    def out_of_time() -> StabilityReport:
        nonlocal timed_out
        timed_out = True
        return _unknown(t, h, norm_K2, f"the verifier used its budget of {VERIFY_SECONDS:g} s "
                        "of CPU time before deciding")

    report = within_budget(lambda: _verify(t, h, norm_K2), VERIFY_SECONDS, out_of_time)
    if not timed_out and len(_CACHE) < 256:
        _CACHE[key] = report
    return report


#: what SymPy (or mpmath) raises on formulas it cannot handle; the verifier then knows nothing
SYMPY_FAILURES = (TypeError, ValueError, ArithmeticError, NotImplementedError, AttributeError,
                  IndexError, KeyError, RecursionError, MemoryError)


def _verify(t: Translation, h: float, norm_K2: float | None) -> StabilityReport:
    if t.free_parameters:  # a closed form in the parameters, or ask for their values
        return _verify_scaled(t, h, norm_K2)
    try:
        return _verify_numbers(t, h, norm_K2)
    except FluxactError:
        raise
    except SYMPY_FAILURES as exc:  # sound: nothing is claimed
        return _unknown(t, h, norm_K2, f"SymPy could not analyse this formula "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")


TERMWISE_SECONDS = 4.0  # the sum of the terms' bounds of Phi' (``_termwise``)


def _loose(e: Extreme, sign: int) -> bool:
    """Whether a search stopped before its bound met what it reached (the budget ran out)."""
    gap = sign * (e.value - e.reached)
    return not gap <= 1e-6 * max(abs(e.value), abs(e.reached), 1e-300)


def _termwise(phi: sp.Expr, r: sp.Symbol, up: Extreme, down: Extreme
              ) -> tuple[Extreme, Extreme]:
    """sup Phi' <= sum_k sup Phi_k' and inf Phi' >= sum_k inf Phi_k' for Phi = sum_k Phi_k:
    where branch and bound on the whole Phi' ran out of time before its bound met the value
    it reached (a sum of terms on very different scales: the learned diffusivity's bases
    at l = 0.02, 0.04, 0.08 left an upper bound of 1.4e268 for L = 1.0026), each term's
    extreme is often exact (one scale each: symbolic), and their sum bounds the whole."""
    if not (_loose(up, 1) or _loose(down, -1)):
        return up, down
    terms = sp.Add.make_args(sp.expand(phi, deep=False))
    if len(terms) < 2:
        return up, down
    tops, bottoms = [], []
    for term in terms:
        d = derivative(term, r)
        tops.append(extreme(d, r, "sup", points=False))
        bottoms.append(extreme(d, r, "inf", points=False))
    # float sums rounded outward: each bound is a float already rounded outward
    top = math.fsum(e.value for e in tops)
    top = math.nextafter(top, math.inf) if math.isfinite(top) else top
    bottom = math.fsum(e.value for e in bottoms)
    bottom = math.nextafter(bottom, -math.inf) if math.isfinite(bottom) else bottom
    domain = _widest(*(e.domain for e in (*tops, *bottoms)))
    if top < up.value:
        up = replace(up, value=max(top, up.reached), method=f"{up.method}; sum of the terms' "
                     "bounds", domain=_widest(up.domain, domain))
    if bottom > down.value:
        down = replace(down, value=min(bottom, down.reached), method=f"{down.method}; sum of "
                       "the terms' bounds", domain=_widest(down.domain, domain))
    return up, down


def _unknown(t: Translation, h: float, norm_K2: float | None, why: str) -> StabilityReport:
    """A report that claims nothing: every verdict unknown, no bound, no time step."""
    norm = 4.0 / h**2 if norm_K2 is None else norm_K2
    reasons = {name: why for name in ("antisymmetric", "nonnegative_diffusivity", "monotone",
                                      "lipschitz", "tau_linf", "tau_sign", "tau_euclid")}
    return StabilityReport(
        formula=t.input.text, antisymmetric=None, nonnegative_diffusivity=None, monotone=None,
        decreasing_intervals=(), nonlinearity_class=None, lipschitz=math.inf,
        lipschitz_at="unknown", g_max=math.inf, g_max_at="unknown", g_min=-math.inf,
        shrinkage_linf=None, shrinkage_sign=None, regulariser_convex=None,
        regulariser_increasing=None, h=h, norm_K2=norm, tau_linf=None, tau_sign=None,
        tau_euclid=None, tau_linf_paper=None, tau_sign_paper=None, tau_euclid_paper=None,
        counterexamples=(), reasons=tuple(sorted(reasons.items())),
        method=(("all", why),),
        parameters=tuple(t.free_parameters))


def _verify_numbers(t: Translation, h: float, given_norm: float | None) -> StabilityReport:
    norm_K2 = 4.0 / h**2 if given_norm is None else given_norm
    r, phi = t.variable, t.activation
    _check_real(phi, r)
    methods: dict[str, str] = {}
    reasons: dict[str, str] = {}
    counter: list[Counterexample] = []

    pieces, values = decompose(phi, r)
    breaks = [_breakpoint(p, exact, value, left, right, r)
              for (p, exact, value), left, right in zip(values, pieces, pieces[1:])]
    for bp in breaks:
        if bp.value is None and bp.continuous is not False:
            raise FormulaError(
                f"the activation {phi} has no real value at r = {bp.at:.6g} (its one-sided "
                f"limits there are {_fmt_exact(bp.left)} and {_fmt_exact(bp.right)}); give "
                "its value with Piecewise((value, Eq(r, ...)), (formula, True))")

    antisym, ce, how = _is_antisymmetric(phi, r, breaks)
    methods["antisymmetric"] = how
    if ce:
        counter.append(ce)
        reasons["antisymmetric"] = ce.reason
    elif antisym is None:
        reasons["antisymmetric"] = how

    # Phi(0) = 0: otherwise a constant signal is not a steady state (no time step)
    at_zero = _value_at_zero(phi, r, pieces, values)
    sign0 = None if at_zero is None else compare(at_zero, sp.Integer(0))
    zero_ok: Verdict = None if sign0 is None else sign0 == 0

    g = _diffusivity(phi, r, pieces, values)
    g_max = extreme(g, r, "sup", flux=phi)
    g_min = extreme(g, r, "inf", flux=phi, threshold=0.0)  # only its sign matters
    methods["g_max"] = g_max.method
    methods["nonnegative_diffusivity"] = f"inf g >= {_fmt(g_min.value + 0.0)} ({g_min.method})"
    nonneg: Verdict
    if g_min.value >= 0:
        nonneg = True
    else:
        x = _witness(r * phi, r, g_min, below=True) if g_min.reached < 0 else None
        if x is not None:
            nonneg = False
            value = _certified(phi / r, r, x)[1]
            counter.append(_counterexample(
                "nonnegative_diffusivity", x, value,
                "r Phi(r) < 0 at r = {0} (g <= {1}): backward diffusion", x, value))
            reasons["nonnegative_diffusivity"] = "g takes negative values: backward diffusion"
        else:
            nonneg = None
            reasons["nonnegative_diffusivity"] = (
                f"not proven: the lower bound of g is {_fmt(g_min.value)} "
                f"({g_min.where_text}) and no point with g < 0 was certified")

    dphi = derivative(phi, r)
    # Phi' at a breakpoint is one branch's derivative at one point: left out (continuity
    # and monotonicity there are decided from the exact values and limits)
    up = extreme(dphi, r, "sup", points=False)
    down = extreme(dphi, r, "inf", points=False)
    up, down = within_budget(lambda: _termwise(phi, r, up, down), TERMWISE_SECONDS,
                             lambda: (up, down))
    if down.value < 0 <= down.reached:  # the sign of inf Phi' is open: decide it alone
        down_sign = extreme(dphi, r, "inf", threshold=0.0, points=False)
    else:
        down_sign = down
    jumps = [bp for bp in breaks if bp.continuous is False]
    undecided = [bp for bp in breaks if bp.continuous is None]
    if jumps:
        bp = jumps[0]
        what = "has an isolated value" if compare(bp.left, bp.right) == 0 else "jumps"
        L = Extreme(math.inf, bp.at, f"Phi {what} at r = {bp.at:.6g} ({_describe_jump(bp)})",
                    "exact one-sided limits")
        reasons["lipschitz"] = L.where_text
    elif undecided:
        bp = undecided[0]
        L = Extreme(math.inf, bp.at, f"unknown: continuity at r = {bp.at:.6g} could not be "
                    f"decided ({_describe_jump(bp)})", "exact one-sided limits")
        reasons["lipschitz"] = L.where_text
    else:
        big = up if abs(up.value) >= abs(down.value) else down
        L = Extreme(abs(big.value), big.where, big.where_text, f"{up.method}; {down.method}",
                    domain=_widest(up.domain, down.domain))
        if math.isinf(L.value):
            reasons["lipschitz"] = "no bound of |Phi'| was found (Phi' unbounded: superlinear " \
                "growth or a cusp, or too hard to bound)"
    methods["lipschitz"] = L.method

    decreasing, roots_method = _decreasing(phi, dphi, r, breaks)
    methods["decreasing_intervals"] = roots_method
    poles_known = all(piece.poles_known for piece in pieces)
    monotone: Verdict
    downs = [bp for bp in breaks if bp.nondecreasing is False]
    if downs:
        bp = downs[0]
        monotone = False
        counter.append(_counterexample(
            "monotone", bp.at, None, "Phi jumps down at r = {0} (" + _describe_jump(bp) + ")",
            bp.at))
    elif down_sign.reached < 0 and (x := _witness(dphi, r, down_sign, below=True)) is not None:
        monotone = False
        span = next(((a, b) for a, b in decreasing if a <= x <= b and a != b), None)
        if span is not None:
            counter.append(_counterexample("monotone", x, _certified(dphi, r, x)[1],
                                           "Phi decreases on ({0}, {1})", *span))
        else:
            counter.append(_counterexample("monotone", x, _certified(dphi, r, x)[1],
                                           "Phi' < 0 at r = {0}", x))
    elif down_sign.value >= 0 and all(bp.nondecreasing for bp in breaks) and (
            poles_known or math.isfinite(L.value)):
        monotone = True
    elif any(a < b for a, b in decreasing):  # a certified interval where Phi' <= 0, < 0 inside
        monotone = False
        a, b = next((a, b) for a, b in decreasing if a < b)
        counter.append(_counterexample("monotone", _middle(a, b), None,
                                       "Phi decreases on ({0}, {1})", a, b))
    else:
        monotone = None
        reasons["monotone"] = (
            "not proven: SymPy could not list the poles of Phi" if not poles_known else
            "not proven: undecided at a breakpoint" if any(bp.nondecreasing is None
                                                           for bp in breaks) else
            f"not proven: the lower bound of Phi' is {_fmt(down_sign.value)} and no point "
            "with Phi' < 0 was certified")
    if monotone is False:
        reasons["monotone"] = "Phi is nonmonotone (forward-backward diffusion)"
    methods["monotone"] = "inf Phi' and the exact one-sided limits at breakpoints"

    g_pieces, _ = decompose(g, r)
    tails = [exact_limit(g_pieces[-1].expr, r, sp.oo, "-"),
             exact_limit(g_pieces[0].expr, r, -sp.oo, "+")]
    to_zero = all(v is not None and not isinstance(v, sp.AccumBounds) and v == 0
                  for v in tails)
    klass = None
    if nonneg and monotone:
        klass = 1
    elif nonneg and monotone is False and to_zero:
        klass = 2

    # S(r)/r = 1 - 4 w g(sqrt2 r) with w = alpha in the regulariser's row of Table 1, else tau
    w_name, w = ("alpha", t.alpha) if t.input.kind == "regulariser" else ("tau", t.tau)
    w = float(w)
    shrink = {}
    for field, bound, what in (("shrinkage_linf", 1 / (2 * w), "[-r, r]"),
                               ("shrinkage_sign", 1 / (4 * w), "[0, r]")):
        verdict: Verdict
        if nonneg is False:
            verdict, why = False, "g < 0 somewhere"
        elif g_max.reached > bound:
            verdict = False
            why = f"g reaches {_fmt(g_max.reached)} > {bound:g}: S leaves {what}"
        elif nonneg and g_max.value <= bound:
            verdict, why = True, ""
        else:
            verdict, why = None, "not decided: g_max is not known to be below " \
                f"1/{'2' if field == 'shrinkage_linf' else '4'} {w_name} = {bound:g}"
        shrink[field] = verdict
        if why:
            reasons[field] = why
    methods["shrinkage"] = (f"S(r)/r = 1 - 4 {w_name} g(sqrt2 r) (Table 1, the input's row) "
                            "with the bounds of g")
    methods["regulariser"] = "Psi' = 2 Phi: convex iff Phi nondecreasing; increasing iff g >= 0"
    if zero_ok is not True:
        methods["phi_at_zero"] = (f"Phi(0) = {_fmt_exact(at_zero)}" if zero_ok is False else
                                  "Phi(0) = 0 could not be decided")

    domain = _widest(g_max.domain, L.domain, g_min.domain, down_sign.domain)
    if domain is not None:
        methods["domain"] = (f"a tail past 2^{domain} had no bounded enclosure: the bounds "
                             f"hold for |r| <= 2^{domain}, which holds every float64")
    taus = _time_steps(nonneg, zero_ok, at_zero, g_max.value, L.value, h, given_norm, reasons)
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
        shrinkage_linf=shrink["shrinkage_linf"],
        shrinkage_sign=shrink["shrinkage_sign"],
        regulariser_convex=monotone,
        regulariser_increasing=nonneg,
        h=h,
        norm_K2=norm_K2,
        **taus,
        counterexamples=tuple(counter),
        reasons=tuple(sorted(reasons.items())),
        method=tuple(sorted(methods.items())),
        domain=domain,
        g_unbounded=math.isinf(g_max.reached) and g_max.reached > 0,
    )


def _widest(*domains: int | None) -> int | None:
    """The domain both bounds hold on (the smaller limit; None = the whole line)."""
    known = [d for d in domains if d is not None]
    return min(known) if known else None


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
    rep = _verify(reduced, h, norm_K2)
    unit = f"r/{sp.sstr(c)}" if len(c.args) < 2 else f"r/({sp.sstr(c)})"

    def at(text: str) -> str:  # F's locations are in x = r/c
        return text if c == 1 else re.sub(r"\br (=|->|<|>)", unit + r" \1", text)

    shrink: dict[str, Verdict] = {}
    reasons = dict(rep.reasons)
    w_name, w = ("alpha", t.alpha) if t.input.kind == "regulariser" else ("tau", t.tau)
    for field, bound in (("shrinkage_linf", 1 / (2 * w)), ("shrinkage_sign", 1 / (4 * w))):
        shrink[field] = getattr(rep, field)
        if rep.nonnegative_diffusivity and k.free_symbols and rep.g_unbounded:
            shrink[field] = False
            reasons[field] = f"g is unbounded: g_max = oo > {bound} always"
        elif rep.nonnegative_diffusivity and k.free_symbols and math.isinf(rep.g_max):
            # no finite bound of G was found; k G_max <= bound for small k cannot be
            # excluded (the verdict of F was about k = 1)
            shrink[field] = None
            reasons[field] = "depends on the parameters, and g_max is not known to be finite"
        elif rep.nonnegative_diffusivity and k.free_symbols:
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
    counter = []
    for ce in rep.counterexamples:
        factor = {"antisymmetric": found.amplitude}.get(ce.property, k)
        reason = ce.reason
        if ce.template:
            reason = ce.template.format(*(_fmt(_scaled(p, c)) for p in ce.points))
        counter.append(Counterexample(ce.property, _scaled(ce.r, c),
                                      _scaled(ce.value, factor), reason))
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
        counterexamples=tuple(counter),
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


def _down(exact: Fraction) -> float | None:
    """A positive rational as a float never above it (a time step must not be rounded up):
    past the largest float64 that float (a smaller step is as safe), None when it is below the
    smallest positive float64 (no step can be written)."""
    if exact > Fraction(sys.float_info.max):
        return sys.float_info.max
    q = float(exact)
    q = math.nextafter(q, 0.0) if Fraction(q) > exact else q
    return q if q > 0 else None


def _time_steps(nonneg: Verdict, zero_ok: Verdict, at_zero: sp.Expr | None, g_max: float,
                L: float, h: float, norm_K2: float | None, reasons: dict[str, str]
                ) -> dict[str, float | None]:
    """tau bounds of MATH.md 2 from g_max (and the paper's from L)."""
    names = ("tau_linf", "tau_sign", "tau_euclid")
    none = {n: None for n in names} | {f"{n}_paper": None for n in names}
    if nonneg is not True:
        why = ("no time step is safe: g < 0 somewhere (backward diffusion)" if nonneg is False
               else "no time step is certified: g >= 0 is not proven")
        for n in names:
            reasons[n] = why
        return none
    if zero_ok is not True:
        why = (f"no time step is safe: Phi(0) = {_fmt_exact(at_zero)} != 0, so a constant "
               "signal is not a steady state" if zero_ok is False else
               "no time step is certified: Phi(0) = 0 could not be decided")
        for n in names:
            reasons[n] = why
        return none

    def steps(bound: float) -> tuple[float | None, float | None, float | None]:
        if math.isinf(bound) or math.isnan(bound):
            return None, None, None
        if bound <= 0:  # g == 0: nothing moves, any step is stable
            return math.inf, math.inf, math.inf
        h2, b = Fraction(h) ** 2, Fraction(bound)
        norm = Fraction(4) / h2 if norm_K2 is None else Fraction(norm_K2)
        return _down(h2 / (2 * b)), _down(h2 / (4 * b)), _down(2 / (b * norm))

    ours, paper = steps(g_max), steps(L)
    if math.isinf(g_max):
        for n in names:
            reasons[n] = "no finite time step: g_max is infinite (g is unbounded) or unknown"
    for n, tau in zip(names, ours):
        if tau is None and n not in reasons:
            reasons[n] = (f"the safe time step is below the smallest positive float64 at h = "
                          f"{h:g}" + ("" if norm_K2 is None else f", ||K||^2 = {norm_K2:g}")
                          + f" and g_max = {g_max:g}: rescale the grid")
    out: dict[str, float | None] = dict(zip(names, ours))
    out.update({f"{n}_paper": v for n, v in zip(names, paper)})
    return out
