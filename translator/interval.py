"""Rigorous interval enclosures of a SymPy expression in one real variable (mpmath.iv).

``enclosure(expr, r)`` compiles expr once into a function box -> interval: for every real x in
the box, expr(x) lies in the interval, endpoints rounded outward. Boxes may be unbounded
([2^64, +inf]) and may contain breakpoints. Where the expression has no real value somewhere in
the box (log of a negative number, a pole, 0/0), the enclosure is the whole line, which bounds
nothing. Every function the parser accepts has an enclosure here; an unknown one gives the whole
line too. Nothing is sampled.

Arguments that would make mpmath compute for a very long time are bounded instead of computed:
exp(x) for x beyond +-EXP_CAP (2^1100, past every float64) is bounded by exp(+-EXP_CAP) and
+inf, 0 (exp is increasing, so these are valid bounds; mpmath would need about |x| bits to
compute exp(exp(x)) exactly), and trigonometric functions of huge or unbounded arguments by
[-1, 1].

``refined(expr, r, box, end)`` is the enclosure for a box that reaches an end of a smooth piece
(+-inf, or an open end p): where the natural enclosure of a subexpression is unbounded there
(r e^-r, rational functions at infinity), the monotonicity test tightens it: if the derivative
of the subexpression has one sign on the box, the subexpression lies between its value at the
inner edge and its limit at the end (SymPy's one-sided limit; where SymPy finds none, the
natural bound at that end).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import mpmath
import sympy as sp
from mpmath import iv

from .budget import attempt, within_budget

PREC = 64  # bits of the interval endpoints
EXP_CAP = 2**1100  # exp beyond +-EXP_CAP is bounded, not computed (past every float64)
TRIG_CAP = 2**50  # sin/cos of larger (or unbounded) arguments: [-1, 1]
LIMIT_SECONDS = 0.5  # a limit in the monotonicity test (it only tightens a bound)
REFINE_DEPTH = 2  # derivatives tried by the monotonicity test (f', then f'' for f')
FACTOR_SECONDS = 0.5  # rewriting an expression for tighter enclosures

Interval = object  # mpmath.ctx_iv.ivmpf
Box = Callable[[object], object]

INF = mpmath.inf


class NotReal(ArithmeticError):
    """The expression has no real value somewhere on the box."""


def _whole():
    return iv.mpf([-INF, INF])


def lo(x) -> mpmath.mpf:
    """Lower endpoint of an interval as an mpf, exactly (no rounding to the current
    precision)."""
    return mpmath.mp.make_mpf(x._mpi_[0])


def hi(x) -> mpmath.mpf:
    return mpmath.mp.make_mpf(x._mpi_[1])


def interval(a, b=None):
    """[a, b] (or the point a) at the working precision, endpoints rounded outward."""
    with _Precision():
        return iv.mpf([a, a if b is None else b])


def hull(*xs):
    return iv.mpf([min(lo(x) for x in xs), max(hi(x) for x in xs)])


def _check(x):
    if mpmath.isnan(lo(x)) or mpmath.isnan(hi(x)):
        return _whole()
    return x


# -- elementary functions ---------------------------------------------------------------------


def _pad_down(v: mpmath.mpf) -> mpmath.mpf:
    """v lowered by a few units in the last place of the working precision: v was computed
    30 bits more precisely, and mpmath's functions err by less than one unit there, relative
    to the result (mpmath has no underflow, and returns an exact 0 only at an exact zero, as
    tanh(0))."""
    if mpmath.isinf(v):
        return v
    return v - abs(v) * mpmath.mpf(2) ** -(PREC - 4)


def _pad_up(v: mpmath.mpf) -> mpmath.mpf:
    if mpmath.isinf(v):
        return v
    return v + abs(v) * mpmath.mpf(2) ** -(PREC - 4)


def _increasing(point: Callable[[mpmath.mpf], mpmath.mpf]) -> Callable[[object], object]:
    """Interval extension of an increasing function from its values at the endpoints
    (computed 30 bits past the working precision, then widened)."""

    def f(x):
        a, b = point(lo(x)), point(hi(x))
        return iv.mpf([_pad_down(a), _pad_up(b)])

    return f


def _clamped(fn, cap, low, high):
    """fn(v), or the given value beyond +-cap (where fn is flat to working precision)."""

    def point(v):
        if v > cap:
            return high
        if v < -cap:
            return low
        return fn(v)

    return point


def _exp(x):
    a, b = lo(x), hi(x)
    if -EXP_CAP <= a and b <= EXP_CAP:
        return iv.exp(x)
    if a > EXP_CAP:
        down = mpmath.exp(EXP_CAP)
    elif a < -EXP_CAP:
        down = mpmath.mpf(0)
    else:
        down = mpmath.exp(a)
    if b > EXP_CAP:
        up = INF
    elif b < -EXP_CAP:
        up = mpmath.exp(-EXP_CAP)
    else:
        up = mpmath.exp(b)
    return iv.mpf([max(_pad_down(down), 0), _pad_up(up)])


def _log(x):
    if lo(x) < 0:
        raise NotReal("log of a negative number")
    return iv.log(x)


def _sqrt(x):
    if lo(x) < 0:
        raise NotReal("square root of a negative number")
    return iv.sqrt(x)


def _capped(fn, below: mpmath.mpf):
    """Interval extension of an increasing fn whose values past +-EXP_CAP are not computed:
    an end beyond the cap is bounded by fn(+-EXP_CAP) on the inner side and by +inf (or the
    limit ``below`` at -inf) on the outer side, so the enclosure stays valid (never
    [inf, inf], which would exclude every finite value)."""

    def f(x):
        a, b = lo(x), hi(x)
        down = fn(max(a, -EXP_CAP)) if a <= EXP_CAP else fn(mpmath.mpf(EXP_CAP))
        up = fn(min(b, EXP_CAP)) if b >= -EXP_CAP else fn(-mpmath.mpf(EXP_CAP))
        if a < -EXP_CAP:
            down = below
        if b > EXP_CAP:
            up = INF
        return iv.mpf([_pad_down(down), _pad_up(up)])

    return f


def _cosh(x):
    a, b = lo(x), hi(x)
    top = max(abs(a), abs(b))
    up = INF if top > EXP_CAP else mpmath.cosh(top)
    if a <= 0 <= b:
        down = mpmath.mpf(1)
    else:
        bottom = min(abs(a), abs(b))
        down = mpmath.cosh(mpmath.mpf(EXP_CAP)) if bottom > EXP_CAP else mpmath.cosh(bottom)
    return iv.mpf([max(_pad_down(down), 1), _pad_up(up)])


def _periodic(fn):
    def f(x):
        a, b = lo(x), hi(x)
        if not (mpmath.isfinite(a) and mpmath.isfinite(b)) or max(abs(a), abs(b)) > TRIG_CAP \
                or b - a >= 7:
            return iv.mpf([-1, 1])
        return fn(x)

    return f


def _tan(x):
    a, b = lo(x), hi(x)
    if not (mpmath.isfinite(a) and mpmath.isfinite(b)) or max(abs(a), abs(b)) > TRIG_CAP:
        return _whole()
    return iv.tan(x)


def _abs(x):
    a, b = lo(x), hi(x)
    if a >= 0:
        return x
    if b <= 0:
        return -x
    return iv.mpf([0, max(-a, b)])


def _sign(x):
    a, b = lo(x), hi(x)
    if a > 0:
        return iv.mpf(1)
    if b < 0:
        return iv.mpf(-1)
    if a == 0 and b == 0:
        return iv.mpf(0)
    return iv.mpf([-1 if a < 0 else 0, 1 if b > 0 else 0])


def _heaviside(x, at0=None):
    a, b = lo(x), hi(x)
    h0 = [mpmath.mpf(0.5)] if at0 is None else [at0]
    if a > 0:
        return iv.mpf(1)
    if b < 0:
        return iv.mpf(0)
    values = h0 + ([mpmath.mpf(0)] if a < 0 else []) + ([mpmath.mpf(1)] if b > 0 else [])
    return iv.mpf([min(values), max(values)])


def _ipow(x, n: int):
    """x**n for an integer n (even powers are >= 0)."""
    if n == 0:
        return iv.mpf(1)
    if n < 0:
        return 1 / _ipow(x, -n)
    a, b = lo(x), hi(x)
    if n % 2 == 0 and a < 0 < b:
        return iv.mpf([0, hi(iv.mpf(max(-a, b)) ** n)])
    return x**n


def _rpow(x, p: int, q: int):
    """x**(p/q), real only for x >= 0 (SymPy's principal power of a negative base is complex)."""
    a, b = lo(x), hi(x)
    if a < 0:
        raise NotReal("fractional power of a negative number")
    e = mpmath.mpf(p) / q
    if p > 0:
        return iv.mpf([_pad_down(a**e) if a > 0 else 0, _pad_up(b**e)])
    if a == 0:
        return iv.mpf([_pad_down(b**e), INF])
    return iv.mpf([_pad_down(b**e), _pad_up(a**e)])


class Expm1(sp.Function):
    """e^u - 1, only inside enclosures (for_intervals): 1 - e^(-c/r^8) next to 0 from below
    without the cancellation of 1 - e^u."""

    nargs = 1


_UNARY: dict[type, Callable[[object], object]] = {
    sp.exp: _exp,
    sp.log: _log,
    sp.sin: _periodic(iv.sin),
    sp.cos: _periodic(iv.cos),
    sp.tan: _tan,
    sp.tanh: _increasing(_clamped(mpmath.tanh, 64, mpmath.mpf(-1), mpmath.mpf(1))),
    sp.atan: _increasing(mpmath.atan),
    sp.erf: _increasing(_clamped(mpmath.erf, 64, mpmath.mpf(-1), mpmath.mpf(1))),
    sp.asinh: _increasing(mpmath.asinh),
    sp.sinh: _capped(mpmath.sinh, -INF),
    sp.cosh: _cosh,
    Expm1: _capped(mpmath.expm1, mpmath.mpf(-1)),
    sp.Abs: _abs,
    sp.sign: _sign,
}


# -- conditions (three-valued: True, False, None = undecided on this box) --------------------


def _relation(rel: sp.Basic, compile_: Callable[[sp.Expr], Box]) -> Callable[[object], bool | None]:
    diff = compile_(rel.lhs - rel.rhs)
    kind = type(rel)

    def decide(x) -> bool | None:
        try:
            d = diff(x)
        except NotReal:
            return None
        a, b = lo(d), hi(d)
        if kind is sp.StrictLessThan:
            return True if b < 0 else False if a >= 0 else None
        if kind is sp.LessThan:
            return True if b <= 0 else False if a > 0 else None
        if kind is sp.StrictGreaterThan:
            return True if a > 0 else False if b <= 0 else None
        if kind is sp.GreaterThan:
            return True if a >= 0 else False if b < 0 else None
        if kind is sp.Equality:
            return True if a == 0 == b else False if (a > 0 or b < 0) else None
        if kind is sp.Unequality:
            return False if a == 0 == b else True if (a > 0 or b < 0) else None
        return None

    return decide


def _condition(cond: sp.Basic, compile_: Callable[[sp.Expr], Box]
               ) -> Callable[[object], bool | None]:
    if cond is sp.true:
        return lambda x: True
    if cond is sp.false:
        return lambda x: False
    if isinstance(cond, sp.core.relational.Relational):
        return _relation(cond, compile_)
    parts = [_condition(c, compile_) for c in cond.args]
    if isinstance(cond, sp.And):
        def both(x):
            values = [p(x) for p in parts]
            return False if False in values else True if all(values) else None
        return both
    if isinstance(cond, sp.Or):
        def either(x):
            values = [p(x) for p in parts]
            return True if True in values else False if all(v is False for v in values) else None
        return either
    if isinstance(cond, sp.Not):
        inner = parts[0]

        def negation(x):
            v = inner(x)
            return None if v is None else not v
        return negation
    return lambda x: None


# -- the compiler ------------------------------------------------------------------------------


class Unsupported(Exception):
    """A node the interval compiler has no rule for."""


def _constant(e: sp.Expr):
    """An enclosure of a real constant (evaluated with SymPy at 40 digits, widened)."""
    if e.is_Rational:
        with mpmath.workprec(PREC):
            return iv.mpf(int(e.p)) / iv.mpf(int(e.q))
    if isinstance(e, sp.Float):  # its exact binary value (no rounding to the precision)
        return interval(mpmath.mp.make_mpf(e._mpf_))
    value = e.evalf(40)
    if not value.is_real or value.has(sp.I) or not value.is_number:
        raise NotReal(f"{e} is not a real number")
    if value.is_infinite:
        raise NotReal(f"{e} is infinite")
    v = mpmath.mpf(value._mpf_) if isinstance(value, sp.Float) else mpmath.mpf(str(value))
    return iv.mpf([_pad_down(v) - mpmath.mpf(2) ** -120 * abs(v),
                   _pad_up(v) + mpmath.mpf(2) ** -120 * abs(v)])


def _root(e: sp.CRootOf):
    """An enclosure of a real root of a polynomial (a critical point SymPy found: Phi'' of a
    sum of rational terms has degree 8): SymPy's isolating-interval bisection gives a
    rational within dx of it, exactly, so [q - dx, q + dx] holds it."""
    if e.is_real is not True:
        raise NotReal(f"{e} is not a real number")
    dx = sp.Rational(1, 2**100) * max(1, sp.ceiling(abs(e.evalf(20))))
    q = e.eval_rational(dx=dx, dy=dx)
    if not q.is_Rational:
        raise NotReal(f"{e} has no rational approximation")
    return hull(_constant(q - dx), _constant(q + dx))


def _compile(e: sp.Expr, r: sp.Symbol) -> Box:
    def sub(x: sp.Expr) -> Box:
        return _compile(x, r)

    if e == r:
        return lambda x: x
    if not e.has(r):
        try:  # atoms through SymPy's evalf; composite constants (exp(-1e299)) by the rules below
            c = (_constant(e) if e.is_Atom else _root(e) if isinstance(e, sp.CRootOf)
                 else _compile_rules(e, r, sub)(iv.mpf(0)))
        except (NotReal, ArithmeticError, ValueError, TypeError, OverflowError):
            def undefined(x):
                raise NotReal(f"{e} has no real value")
            return undefined
        return lambda x: c
    return _compile_rules(e, r, sub)


def _compile_rules(e: sp.Expr, r: sp.Symbol, sub: Callable[[sp.Expr], Box]) -> Box:
    if isinstance(e, sp.Add):
        terms = [sub(a) for a in e.args]

        def add(x):
            total = terms[0](x)
            for t in terms[1:]:
                total = total + t(x)
            return total
        return add
    if isinstance(e, sp.Mul):
        factors = [sub(a) for a in e.args]

        def mul(x):
            total = factors[0](x)
            for f in factors[1:]:
                total = total * f(x)
            return total
        return mul
    if isinstance(e, sp.Pow):
        base, exponent = e.args
        fb = sub(base)
        if exponent.is_Integer:
            n = int(exponent)
            return lambda x: _ipow(fb(x), n)
        if exponent.is_Rational:
            p, q = int(exponent.p), int(exponent.q)
            if q == 2 and p == 1:
                return lambda x: _sqrt(fb(x))
            return lambda x: _rpow(fb(x), p, q)
        if base == sp.E:
            fe = sub(exponent)
            return lambda x: _exp(fe(x))
        fe = sub(exponent)
        return lambda x: _exp(fe(x) * _log(fb(x)))  # b**e = exp(e log b), b > 0
    if isinstance(e, sp.Piecewise):
        branches = [(sub(ex), _condition(c, sub)) for ex, c in e.args]

        def piecewise(x):
            taken = []
            for value, cond in branches:
                holds = cond(x)
                if holds is False:
                    continue
                taken.append(value(x))
                if holds is True:
                    break
            if not taken:
                raise NotReal("no branch of the Piecewise applies")
            return hull(*taken)
        return piecewise
    if isinstance(e, (sp.Min, sp.Max)):
        args = [sub(a) for a in e.args]
        pick = min if isinstance(e, sp.Min) else max

        def extremum(x):
            values = [a(x) for a in args]
            return iv.mpf([pick(lo(v) for v in values), pick(hi(v) for v in values)])
        return extremum
    if isinstance(e, sp.Heaviside):
        f = sub(e.args[0])
        at0 = None
        if len(e.args) > 1:
            at0 = mpmath.mpf(str(sp.Float(e.args[1], 30)))
        return lambda x: _heaviside(f(x), at0)
    rule = _UNARY.get(type(e))
    if rule is not None and len(e.args) == 1:
        f = sub(e.args[0])
        return lambda x: rule(f(x))
    raise Unsupported(f"no interval rule for {type(e).__name__}")


class _Precision:
    """mpmath's interval context at the working precision and its real context 30 bits
    above it, for endpoint values that are then widened (restored on exit)."""

    def __enter__(self) -> None:
        self.saved = mpmath.mp.prec, iv.prec
        mpmath.mp.prec, iv.prec = PREC + 30, PREC

    def __exit__(self, *exc: object) -> None:
        mpmath.mp.prec, iv.prec = self.saved


_FAILURES = (NotReal, ArithmeticError, ValueError, TypeError, ZeroDivisionError, OverflowError,
             RecursionError)


def _sigmoid_form(mul: sp.Expr) -> sp.Expr:
    """e^u / (e^u + c) -> 1/(1 + c e^-u): the same function, without the growing factor in
    numerator and denominator whose ratio an interval cannot see."""
    factors = list(mul.args)
    for i, f in enumerate(factors):
        if not isinstance(f, sp.exp):
            continue
        for j, d in enumerate(factors):
            if (isinstance(d, sp.Pow) and d.exp.is_Integer and d.exp < 0
                    and isinstance(d.base, sp.Add) and f in d.base.args):
                n = -int(d.exp)  # e^u / A^n = (A e^(-u/n))^-n
                rest = [x for k, x in enumerate(factors) if k not in (i, j)]
                flat = _as_cosh(sp.expand(d.base * sp.exp(-f.args[0] / n)))
                return sp.Mul(*rest, flat ** -n)
    return mul


def _as_cosh(add: sp.Expr) -> sp.Expr:
    """c e^v + c e^-v -> 2 c cosh(v)."""
    if isinstance(add, sp.Add) and len(add.args) == 2:
        (c1, e1), (c2, e2) = (a.as_independent(sp.exp) for a in add.args)
        if (isinstance(e1, sp.exp) and isinstance(e2, sp.exp) and c1 == c2
                and sp.expand(e1.args[0] + e2.args[0]) == 0):
            return 2 * c1 * sp.cosh(e1.args[0])
    return add


def _expm1_form(add: sp.Expr) -> sp.Expr:
    """c - c e^u -> -c expm1(u)."""
    terms = add.as_coefficients_dict()
    one = terms.get(sp.Integer(1), 0)
    for key, c in terms.items():
        if isinstance(key, sp.exp) and c == -one and c != 0:
            return add - one - c * key + c * Expm1(key.args[0])
    return add


def _has_exp_term(e: sp.Expr) -> bool:
    return isinstance(e, sp.Add) and any(isinstance(t, sp.exp) for t in
                                         (a.as_coeff_Mul()[1] for a in e.args))


def _tanh_form(mul: sp.Expr) -> sp.Expr:
    """sinh(u)^a / cosh(u)^b -> tanh(u)^k cosh(u)^(k - b) sinh(u)^(a - k), k = min(a, b)."""
    powers = mul.as_powers_dict()
    out = mul
    for base, a in powers.items():
        if isinstance(base, sp.sinh) and a.is_Integer and a > 0:
            b = -powers.get(sp.cosh(base.args[0]), 0)
            if b.is_Integer and b > 0:
                k = min(a, b)
                out = out * (sp.tanh(base.args[0]) * sp.cosh(base.args[0]) / base) ** k
    return out


def _sech_form(add: sp.Expr) -> sp.Expr:
    """c - c tanh(u)^2 -> c/cosh(u)^2."""
    terms = add.as_coefficients_dict()
    one = terms.get(sp.Integer(1), 0)
    for key, c in terms.items():
        if (isinstance(key, sp.Pow) and key.exp == 2 and isinstance(key.base, sp.tanh)
                and c == -one and c != 0):
            return add - one - c * key + one / sp.cosh(key.base.args[0]) ** 2
    return add


def _has_tanh_square(e: sp.Expr) -> bool:
    return isinstance(e, sp.Add) and any(
        isinstance(a, sp.Pow) and a.exp == 2 and isinstance(a.base, sp.tanh)
        for t in e.args for a in sp.Mul.make_args(t))


def for_intervals(expr: sp.Expr) -> sp.Expr:
    """The same function written for tighter enclosures: 1 - tanh(u)^2 as 1/cosh(u)^2 and
    1 - e^u as -expm1(u) (no cancellation next to 1), sinh(u)/cosh(u) as tanh(u), e^u/(e^u + c)
    as 1/(1 + c e^-u)."""
    out = expr
    if out.has(sp.tanh):
        out = out.replace(_has_tanh_square, _sech_form)
    if out.has(sp.sinh) and out.has(sp.cosh):
        out = out.replace(lambda e: isinstance(e, sp.Mul) and e.has(sp.sinh)
                          and e.has(sp.cosh), _tanh_form)
    if out.has(sp.exp):
        out = out.replace(lambda e: isinstance(e, sp.Mul) and e.has(sp.exp), _sigmoid_form)
        out = out.replace(_has_exp_term, _expm1_form)
    return out


@lru_cache(maxsize=2048)
def _rewritten(expr: sp.Expr) -> sp.Expr:
    return attempt(lambda: for_intervals(expr), FACTOR_SECONDS) or expr


@lru_cache(maxsize=2048)
def enclosure(expr: sp.Expr, r: sp.Symbol) -> Callable[[object], object]:
    """box (an iv interval) -> an interval enclosing expr over the box; the whole line where
    no enclosure is known (not real somewhere, a pole, an unsupported function)."""
    try:
        with _Precision():
            compiled = _compile(_rewritten(expr), r)
    except (Unsupported, RecursionError):
        return lambda box: _whole()

    def run(box):
        with _Precision():
            try:
                return _check(compiled(box))
            except _FAILURES:
                return _whole()

    return run


def to_float(v: mpmath.mpf, direction: int) -> float:
    """An mpf as a float rounded down (direction -1) or up (+1)."""
    if mpmath.isnan(v):
        return -math.inf if direction < 0 else math.inf
    if mpmath.isinf(v):
        return math.inf if v > 0 else -math.inf
    try:
        f = float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf
    if math.isinf(f):
        if direction < 0 and f > 0:
            return 1.7976931348623157e308
        if direction > 0 and f < 0:
            return -1.7976931348623157e308
        return f
    if direction < 0 and mpmath.mpf(f) > v:
        return math.nextafter(f, -math.inf)
    if direction > 0 and mpmath.mpf(f) < v:
        return math.nextafter(f, math.inf)
    return f


# -- refinement at the end of a piece: the monotonicity test ----------------------------------


@lru_cache(maxsize=4096)
def derivative_for_bounds(e: sp.Expr, r: sp.Symbol) -> sp.Expr:
    """e', rewritten for enclosures (for_intervals)."""
    return _rewritten(sp.diff(e, r))


@lru_cache(maxsize=4096)
def _derivative_forms(e: sp.Expr, r: sp.Symbol, depth: int) -> tuple[sp.Expr, ...]:
    """e' written two ways whose enclosures are intersected: as differentiated, and over one
    denominator with common factors pulled out of its sums (e^-r^2 (1 - 2 r^2), not
    e^-r^2 - 2 r^2 e^-r^2), so that its sign shows (the second only at the first level)."""
    forms = _forms(sp.diff(e, r), r)
    return forms if depth == 0 else forms[:1]


_LIMITS: dict[tuple[sp.Expr, sp.Symbol, sp.Expr, str], mpmath.mpf | None] = {}
MAX_NEW_LIMITS = 4  # SymPy limits one refinement may compute (each up to LIMIT_SECONDS)
_new_limits = [0]


def end_limit(e: sp.Expr, r: sp.Symbol, at: sp.Expr, side: str):
    """The one-sided limit of e at ``at`` (+-oo or a number) as an interval, None if SymPy
    finds none (cached, a time-out too) or the refinement has used its share of limits."""
    key = (e, r, at, side)
    if key in _LIMITS:
        return _LIMITS[key]
    if _new_limits[0] >= MAX_NEW_LIMITS:
        return None
    _new_limits[0] += 1
    value = attempt(lambda: sp.limit(e, r, at, side) if at.is_finite else sp.limit(e, r, at),
                    LIMIT_SECONDS)
    if value is None:
        return None
    out = None
    if isinstance(value, sp.Expr) and not value.has(sp.Limit, sp.nan, sp.zoo, sp.AccumBounds,
                                                     sp.I):
        if value is sp.oo:
            out = iv.mpf([INF, INF])
        elif value is -sp.oo:
            out = iv.mpf([-INF, -INF])
        else:
            try:
                out = _constant(value)
            except (NotReal, TypeError, ValueError):
                out = None
    if len(_LIMITS) < 8192:
        _LIMITS[key] = out
    return out


REFINE_SECONDS = 0.5  # CPU time of one refinement; past it the natural enclosure stands


def refined(expr: sp.Expr, r: sp.Symbol, box, end: tuple[sp.Expr, str] | None,
            depth: int = 0):
    """An enclosure of expr over ``box``; ``end`` = (point, side) when the box reaches an end
    of a smooth piece (point +-oo, or a finite breakpoint with side '+' for the piece right
    of it, '-' left of it), None for a bounded box inside. Subexpressions whose natural
    enclosure is unbounded or absurdly wide are tightened by the monotonicity test and in
    the log domain (module docstring), within REFINE_SECONDS of CPU time."""

    def run():
        out = None
        _new_limits[0] = 0
        _memo.clear()  # remembered results hold for one box only
        for form in _forms(expr, r):
            with _Precision():
                try:
                    y = _check(_refine(form, r, box, end, depth))
                except (*_FAILURES, Unsupported):
                    y = _whole()
            out = y if out is None else iv.mpf([max(lo(y), lo(out)), min(hi(y), hi(out))])
        return out

    return within_budget(run, REFINE_SECONDS, lambda: enclosure(expr, r)(box))


@lru_cache(maxsize=2048)
def _forms(expr: sp.Expr, r: sp.Symbol) -> tuple[sp.Expr, ...]:
    """expr rewritten (for_intervals), and over one denominator with common factors pulled
    out, where that differs: the sum e^r (1 + r) + 1 at -oo has the sign a sum of separately
    enclosed terms hides."""
    plain = _rewritten(expr)
    joined = attempt(lambda: for_intervals(sp.factor_terms(sp.together(expr))), FACTOR_SECONDS)
    return (plain,) if joined is None or joined == plain else (plain, joined)


def bounded(x) -> bool:
    return mpmath.isfinite(lo(x)) and mpmath.isfinite(hi(x))


WIDE = mpmath.mpf(2) ** 100  # an enclosure this wide is worth the refinement below


def narrow(x) -> bool:
    """Bounded and not absurdly wide (dependency: r^2 e^x e^(-e^x) over [1024, 2048])."""
    return bounded(x) and hi(x) - lo(x) <= WIDE


def _product(values):
    total = values[0]
    for v in values[1:]:
        total = total * v
    return _check(total)


_memo: dict[tuple[sp.Expr, int], object] = {}


def _refine(e: sp.Expr, r: sp.Symbol, box, end, depth: int):
    """_refine_node, remembered for the box of the running refinement (derivative forms
    share most of their subexpressions)."""
    key = (e, depth)
    if key not in _memo:
        _memo[key] = _refine_node(e, r, box, end, depth)
    return _memo[key]


def _refine_node(e: sp.Expr, r: sp.Symbol, box, end, depth: int):
    if not e.has(r):
        return enclosure(e, r)(box)
    if isinstance(e, sp.Add):
        parts = [_refine(a, r, box, end, depth) for a in e.args]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        natural = _check(total)
    elif isinstance(e, sp.Mul):
        parts = [_refine(a, r, box, end, depth) for a in e.args]
        natural = _product(parts)
        if not narrow(natural) and depth < REFINE_DEPTH:
            return _regroup(e, r, box, end, depth, parts, natural)
    elif e.args and type(e) in _UNARY and len(e.args) == 1:
        natural = _check(_UNARY[type(e)](_refine(e.args[0], r, box, end, depth)))
    elif isinstance(e, sp.Pow) and e.args[1].is_Rational:
        inner = _refine(e.args[0], r, box, end, depth)
        p, q = int(e.args[1].p), int(e.args[1].q)
        natural = _check(_ipow(inner, p) if q == 1 else _sqrt(inner) if (p, q) == (1, 2)
                         else _rpow(inner, p, q))
    else:
        natural = enclosure(e, r)(box)
    if narrow(natural) or depth >= REFINE_DEPTH:
        return natural
    return _monotone_test(e, r, box, end, depth, natural)


def _log_abs(e: sp.Expr, sign: int) -> sp.Expr:
    """log|e| for a factor of known sign, with exp and powers taken apart (log e^u = u,
    log |b^k| = k log|b|), so that growth and decay meet in one sum."""
    if isinstance(e, sp.exp):
        return e.args[0]
    if isinstance(e, sp.Pow):
        base, k = e.args
        if base == sp.E:
            return k
        if k.is_Integer and int(k) % 2 == 0:
            return k * sp.log(sp.Abs(base))
        if sign > 0 and k.is_real:
            return k * sp.log(base)
    return sp.log(sign * e)


def _log_domain(e, r, box, end, depth, parts):
    """A product of factors of known signs as sign * exp(sum of log|factor|), the sum
    bounded by the monotonicity test: r e^-r/(1 + e^-r)^2 at -oo is e^(log|r| - r - 2 log(1 +
    e^-r)) with a sum that increases."""
    signs = []
    for p in parts:
        if lo(p) >= 0:
            signs.append(1)
        elif hi(p) <= 0:
            signs.append(-1)
        else:
            return None
    total = sp.Add(*[_log_abs(a, s) for a, s in zip(e.args, signs)])
    log_range = _refine(total, r, box, end, depth + 1)
    if not mpmath.isfinite(hi(log_range)):
        return None
    magnitude = _exp(log_range)
    sign = 1
    for s in signs:
        sign *= s
    return magnitude if sign > 0 else -magnitude


def _regroup(e, r, box, end, depth, parts, natural):
    """A product of a growing and a vanishing factor (r e^r at -oo): in the log domain, else
    the monotonicity test on the sub-product of the unbounded factors and the factors whose
    enclosure holds 0."""
    logs = _log_domain(e, r, box, end, depth, parts)
    if logs is not None and narrow(logs):
        return logs
    core = [i for i, p in enumerate(parts) if not bounded(p) or lo(p) <= 0 <= hi(p)]
    if len(core) < 2 or len(core) == len(parts) and len(parts) == 2:
        return _monotone_test(e, r, box, end, depth, natural)
    sub = sp.Mul(*[e.args[i] for i in core])
    inner = _monotone_test(sub, r, box, end, depth, _product([parts[i] for i in core]))
    rest = [p for i, p in enumerate(parts) if i not in core]
    grouped = _product([inner, *rest])
    if narrow(grouped):
        return grouped
    return _monotone_test(e, r, box, end, depth, natural)


POLES_SECONDS = 0.5


@lru_cache(maxsize=4096)
def _poles(e: sp.Expr, r: sp.Symbol) -> tuple[tuple[sp.Expr, object], ...] | None:
    """The real points where e is singular (SymPy's singularities), each exact and as an
    enclosure; None when SymPy cannot list them (tan r) in its budget."""
    found = attempt(lambda: sp.singularities(e, r, sp.S.Reals), POLES_SECONDS)
    if found is sp.S.EmptySet:
        return ()
    if not isinstance(found, sp.FiniteSet):
        return None
    out = []
    for p in found:
        if p.is_real is False:
            continue
        try:
            out.append((p, _constant(p)))
        except (NotReal, TypeError, ValueError):
            return None
    return tuple(out)


def _pole_free(e: sp.Expr, r: sp.Symbol, box, end) -> bool:
    """Whether e is known to have no singularity in the box, but for the end of the piece
    the box reaches (a one-sided derivative sign means monotone only between poles: tan r)."""
    poles = _poles(e, r)
    if poles is None:
        return False
    at = None if end is None or not end[0].is_finite else end[0]
    return all(hi(enc) < lo(box) or lo(enc) > hi(box) or (at is not None and p == at)
               for p, enc in poles)


def _monotone_test(e, r, box, end, depth, natural):
    """If e' has one sign on the box (and e no pole there), e lies between its value at the
    inner edge of the box and its limit at the end."""
    if not _pole_free(e, r, box, end):
        return natural
    slope = None
    for form in _derivative_forms(e, r, depth):
        y = _refine(form, r, box, end, depth + 1)
        slope = y if slope is None else iv.mpf([max(lo(y), lo(slope)), min(hi(y), hi(slope))])
    increasing, decreasing = lo(slope) >= 0, hi(slope) <= 0
    if not (increasing or decreasing):
        return natural
    f = enclosure(e, r)
    if end is None:  # a bounded box: e lies between its values at the two edges
        both = hull(f(interval(lo(box))), f(interval(hi(box))))
        return iv.mpf([max(lo(both), lo(natural)), min(hi(both), hi(natural))])
    at, side = end  # side: '+' when the end is the lower edge of the box (-oo has side '+')
    inner = hi(box) if side == "+" else lo(box)
    if not mpmath.isfinite(inner):
        return natural
    value = f(interval(inner))
    # e runs monotonically from its limit at the end to its value at the inner edge
    toward_end_up = (increasing and inner == lo(box)) or (decreasing and inner == hi(box))
    far = hi(natural) if toward_end_up else lo(natural)
    near = lo(value) if toward_end_up else hi(value)
    # the limit only where it is needed: an unbounded side, or one that decides a sign
    needed = not mpmath.isfinite(far) or (far > 0) != (near > 0) or far == 0
    limit = end_limit(e, r, at, side) if needed else None
    if toward_end_up:  # e grows toward the end: below by the inner value, above by the limit
        top = hi(natural) if limit is None else min(hi(limit), hi(natural))
        return iv.mpf([max(lo(value), lo(natural)), top])
    bottom = lo(natural) if limit is None else max(lo(limit), lo(natural))
    return iv.mpf([bottom, min(hi(value), hi(natural))])
