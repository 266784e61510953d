"""prepare: Translation -> ActivationSpec, the record every target is rendered from.

The spec holds the activation Phi with its parameters symbolic (they are run-time arguments of
the generated code, so one kernel serves every value and a trainable parameter can move), its
derivative Phi' for the backward pass and dPhi/dp for each trainable parameter p, all taken
symbolically, plus the values at which the generated code must not produce NaN:

- a point condition such as Eq(r, 0) (a removable singularity filled by the translator) is
  dropped before differentiating and the derivative is filled again by its limit at 0;
- DiracDelta from differentiating a jump is 0 (the derivative almost everywhere, as autograd
  gives for a step);
- ``repairs``: for each output, its limits at 0 (from the left and from the right) and at
  +-oo (SymPy, in the parameters). The template replaces a NaN of floating point (0*inf,
  inf/inf in an underflowed or overflowed intermediate, e.g. Weickert's Phi' next to 0) by the
  limit of the region it lies in, only where interval arithmetic proves every value there
  within float64 rounding of the limit (REPAIR_EXPONENTS); at 0 itself by the limit from the
  right when the two differ (the one-sided derivative: a diffusivity module's variable s2 is
  never negative, and g = 1 - exp(-C/s2) has g'(0+) = 0 but no limit from the left).

Where Phi(r; p) = A(p) F(r/c(p)) with F free of the parameters (translator/scaling.py, a proof
by SymPy, not a sample), the outputs are written in the reduced variable x = r/c, which the
code computes first (``reduced``): Phi = A F(x), Phi' = (A/c) F'(x) and
dPhi/dp = A'(p) F(x) - A (c'(p)/c) x F'(x) (near x = 0 written without the subtraction of two
terms ~ x, ``_scaled_outputs``). Then no intermediate leaves float range only because
a parameter is extreme (Perona-Malik's r^2/lam^2 or Charbonnier's lam r overflow at lam = 1e200
where Phi is an ordinary number), and the repair decides its region on x, the argument F
really sees.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import sympy as sp

from ..translator.budget import attempt
from ..translator.dictionary import LIMIT_SECONDS, fill_removable
from ..translator.errors import ParameterError, missing_value
from ..translator.facts import StabilityFacts
from ..translator.interval import enclosure, hi, interval, lo, refined, to_float
from ..translator.nonlinearity import KINDS, exact_number, parameter_values
from ..translator.parse import normal_name, parameter_symbol
from ..translator.scaling import find_scaling
from ..translator.translation import Translation, symbolic_forms
from .errors import CodegenError
from .names import check_parameter_names, class_name, python_name
from .stability import stability_facts

#: Where float64 still makes NaN from a finite input (0 * inf or inf/inf in an intermediate
#: that under- or overflowed), the NaN is replaced by the limit at 0 or at +-oo, but only on a
#: region proven (interval arithmetic, translator/interval.py) to hold values within float64's
#: rounding of that limit: 0 < |x| <= 2^-k near 0, |x| >= 2^k far out, for the first k here
#: that is proven. Elsewhere the NaN stays: a NaN at a moderate x is the formula's own (0 * inf
#: at a cusp of a root: the truth is then often infinite), which no limit describes. A float64
#: intermediate such as x^2 under- or overflows past 2^+-511, x^8 past 2^+-127; the regions
#: run to 2^+-1000: a limit 0 of a power x^-n (n >= 2) is proven past 2^540.
REPAIR_EXPONENTS = (40, 120, 300, 540, 1000)
#: float64's unit roundoff 2^-53, doubled: the proof's tolerance relative to each limit
REPAIR_TOLERANCE = 2.0**-52
#: a limit 0 is proven where the values round to 0 in float64 (below half of 2^-1074)
REPAIR_ZERO = mpmath.mpf(2) ** -1075

#: the reduced variable x = r/c of a scaled activation; no parameter's name starts with '_'
REDUCED = sp.Symbol("_xr", real=True)


@dataclass(frozen=True, slots=True)
class ActivationSpec:
    """Everything a generated activation module is rendered from.

    ``outputs`` pairs a name with an expression in ``variable`` and the parameter symbols:
    "phi" (Phi), "dphi" (Phi') and "dphi_<p>" for each trainable p. ``repairs`` pairs the same
    names with the (limit at 0 from the left, from the right, limit at +oo, at -oo) used where
    floating point gives NaN, each a ``Repair``: (limit, regions), the limit replacing a NaN
    at 0 < |x| <= radius (near 0) or |x| >= radius (far out) of a region proven
    (_proven_regions) where its conditions on the parameters hold; None where a limit is not
    finite, SymPy found none in its budget, or no region is proven. The limit from the right
    is also the value at r = 0 itself (a removable singularity filled, or the one-sided
    derivative), with or without a region.
    ``reduced``: None, or
    (x, r/c) when the outputs are written in the reduced variable x of Phi = A F(r/c); the
    limits are then those in x.
    """

    name: str  # a Python identifier
    formula: str
    kind: str
    convention: str
    tau: str
    alpha: str
    variable: sp.Symbol
    params: tuple[str, ...]
    defaults: tuple[float | None, ...]
    trainable: tuple[str, ...]
    outputs: tuple[tuple[str, sp.Expr], ...]
    repairs: tuple[tuple[str, tuple[Repair, ...]], ...]
    digest: str
    stability: StabilityFacts | None = None
    reduced: tuple[sp.Symbol, sp.Expr] | None = None

    @property
    def class_name(self) -> str:
        return class_name(self.name)

    @property
    def argument(self) -> sp.Symbol:
        """The symbol the outputs and the repair regions are written in (r, or x = r/c)."""
        return self.variable if self.reduced is None else self.reduced[0]

    @property
    def phi(self) -> sp.Expr:
        """Phi in the variable r."""
        phi = self.output("phi")
        return phi if self.reduced is None else phi.xreplace({self.reduced[0]: self.reduced[1]})

    def output(self, name: str) -> sp.Expr:
        return dict(self.outputs)[name]


def prepare(
    t: Translation,
    *,
    name: str | None = None,
    trainable: Sequence[str] = (),
    values: Mapping[str, object] | None = None,
    facts: StabilityFacts | None = None,
) -> ActivationSpec:
    """The spec for the activation of ``t``.

    Parameters are those of the formula; their default values come from ``values`` or from the
    translation (parameters given numbers there). ``trainable`` names parameters whose gradient
    the backward pass computes. ``facts``: the stability facts to record, when they are not
    those of ``t``'s activation (the diffusivity g(s2) of a coupled block records g's range).
    """
    nl = t.input
    given = dict(nl.values)
    extra = parameter_values(values)
    for key, value in extra.items():
        given[key] = exact_number(value, f"parameter {key!r}")
    params = tuple(sorted({*nl.free, *(k for k, _ in nl.values)}))
    check_parameter_names(params)
    trainable = tuple(normal_name(p) for p in trainable)
    unknown = sorted((set(trainable) | set(extra)) - set(params))
    if unknown:
        have = ", ".join(params) if params else "none"
        raise ParameterError(
            f"parameter {unknown[0]!r} does not occur in the formula (its parameters: {have})"
        )
    defaults = tuple(None if p not in given else float(given[p]) for p in params)
    for p, d in zip(params, defaults):
        if d is not None and not d > 0:
            raise ParameterError(f"parameter {p!r} must be positive, got {d}")
    trainable = tuple(p for p in params if p in set(trainable))
    symbolic = _symbolic_activation(t)
    scaled = _scaled_outputs(symbolic, nl.variable, trainable)
    if scaled is None:
        reduced = None
        outputs = _outputs(symbolic, nl.variable, trainable)
    else:
        reduced, outputs = scaled
    argument = nl.variable if reduced is None else reduced[0]
    repairs = tuple((key, _repair(expr, argument)) for key, expr in outputs)
    ident = python_name(name or nl.name or "activation")
    facts = stability_facts(t, trainable) if facts is None else facts
    description = {
        "name": ident, "formula": nl.text, "kind": nl.kind, "convention": nl.convention,
        "tau": str(t.tau), "alpha": str(t.alpha), "params": list(params),
        "trainable": list(trainable),
        "stability": facts.source(),
        # the scaling is found within a CPU-time budget: the code it gives is another module
        "reduced": None if reduced is None else sp.srepr(reduced[1]),
    }
    # the values are not in the hash: the kernels take them at run time, so one generated
    # module serves every value (the files still differ in their defaults), unless the
    # stability facts hold only at these values (then they are in ``stability``)
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    return ActivationSpec(
        name=ident, formula=nl.text, kind=nl.kind, convention=nl.convention, tau=str(t.tau),
        alpha=str(t.alpha), variable=nl.variable, params=params, defaults=defaults,
        trainable=trainable, outputs=outputs, repairs=repairs, digest=digest,
        stability=facts, reduced=reduced,
    )


def require_defaults(spec: ActivationSpec) -> tuple[float, ...]:
    """The parameter values a module is built with; each must be known."""
    for p, d in zip(spec.params, spec.defaults):
        if d is None:
            raise missing_value(p, "the activation")
    return tuple(d for d in spec.defaults if d is not None)


def _symbolic_activation(t: Translation) -> sp.Expr:
    """Phi with every parameter a positive symbol (the translator's cached symbolic forms)."""
    nl = t.input
    forms, _, _ = symbolic_forms(nl.symbolic, nl.kind, nl.variable, t.tau, t.alpha,
                                  nl.convention)
    phi = dict(zip(KINDS, forms))["activation"]
    if not phi.closed_form:
        raise CodegenError(f"the activation of {nl.text} has no closed form to print")
    return phi.expr


def _outputs(phi: sp.Expr, r: sp.Symbol, trainable: tuple[str, ...]
             ) -> tuple[tuple[str, sp.Expr], ...]:
    out = [("phi", real_form(phi)), ("dphi", derivative(phi, r, r))]
    out += [(f"dphi_{p}", derivative(phi, parameter_symbol(p), r)) for p in trainable]
    return tuple(out)


@lru_cache(maxsize=256)
def _scaled_outputs(phi: sp.Expr, r: sp.Symbol, trainable: tuple[str, ...]
                    ) -> tuple[tuple[sp.Symbol, sp.Expr] | None, tuple[tuple[str, sp.Expr], ...]
                               ] | None:
    """The outputs in x = r/c where Phi = A F(r/c) (with (x, r/c), or None for c = 1), else
    None: Phi = A F(x), Phi' = (A/c) F'(x), dPhi/dp = A'(p) F(x) - A (c'(p)/c) x F'(x)."""
    params = tuple(sorted(phi.free_symbols - {r}, key=lambda p: p.name))
    found = find_scaling(phi, None, r, params, REDUCED)
    if found is None:
        return None
    x, A, c = REDUCED, found.amplitude, found.scale
    F = found.reduced
    dF = derivative(F, x, x)
    out = [("phi", real_form(A * F)), ("dphi", sp.powsimp(A / c) * dF)]
    for p in trainable:
        # A, c are monomials: A' = alpha A/p, c'/c = beta/p, so dPhi/dp = (A/p) G with
        # G = alpha F - beta x F'. For alpha = beta (A/c free of p: Perona-Malik's lam) that
        # is beta (F - x F'), two terms ~ x near 0 whose difference is ~ x^3 (fp32 lost every
        # digit below x ~ 1e-4); -beta x^2 (F/x)' is the same function, without that
        # subtraction where SymPy's derivative of F/x cancels (Perona-Malik, Charbonnier; not
        # atan(x)/x), and used for |x| <= 1 only: x^2 overflows far out
        ps = parameter_symbol(p)
        alpha, beta = (sp.simplify(sp.diff(m, ps) * ps / m) for m in (A, c))
        far = alpha * real_form(F) - beta * x * dF
        if alpha == beta:
            near = -beta * x**2 * derivative(F / x, x, x)
            G = sp.Piecewise((near, sp.Abs(x) <= 1), (far, True))
        else:
            G = far
        out.append((f"dphi_{p}", sp.powsimp(A / ps) * G))
    if c == 1:  # x = r: no variable of its own
        return None, tuple((key, expr.xreplace({x: r})) for key, expr in out)
    return (x, r / c), tuple(out)


def real_form(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every root or power of a real base written so that it is real wherever
    the function is: |b**e| -> |b|**e (simplify turns sqrt(|r|) into |sqrt(r)|, which is the
    same number for real r but NaN in real arithmetic for r < 0)."""
    def is_abs_power(e: sp.Basic) -> bool:
        return (isinstance(e, sp.Abs) and isinstance(e.args[0], sp.Pow)
                and e.args[0].base.is_extended_real is True
                and e.args[0].exp.is_extended_real is True)

    return expr.replace(is_abs_power, lambda e: sp.Abs(e.args[0].base) ** e.args[0].exp)


def _complex_powers(expr: sp.Expr) -> set[sp.Basic]:
    """The powers b**e that real arithmetic prints as NaN where b < 0: e not an integer and not
    a rational of odd denominator (printed as the real root), b not known to be >= 0."""
    found = set()
    for node in sp.preorder_traversal(expr):
        if not isinstance(node, sp.Pow) or node.exp.is_integer:
            continue
        e = node.exp
        if isinstance(e, sp.Float):
            e = sp.Rational(float(e))
        if e.is_Rational and e.q % 2 == 1:
            continue
        if node.base.is_nonnegative is not True:
            found.add(node)
    return found


def _exp_arguments(expr: sp.Expr) -> set[sp.Expr]:
    """The arguments of every exponential in ``expr`` (exp(a) and E**a)."""
    return {node.exp if isinstance(node, sp.Pow) else node.args[0]
            for node in sp.preorder_traversal(expr)
            if isinstance(node, sp.exp) or (isinstance(node, sp.Pow) and node.base is sp.E)}


def _denominators(expr: sp.Expr) -> set[sp.Expr]:
    """The factors of the denominators in ``expr`` that may vanish: the bases b of b**e with
    e < 0, split into their factors (1/(u v) has u and v), those SymPy proves nonzero (numbers,
    lam^2 + r^2 with lam > 0) left out."""
    found = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_negative:
            for factor in sp.Mul.make_args(node.base):
                base = factor.base if isinstance(factor, sp.Pow) else factor
                if base.is_zero is not False:
                    found.add(base)
    return found


def derivative(expr: sp.Expr, wrt: sp.Symbol, r: sp.Symbol) -> sp.Expr:
    """d expr / d wrt for code: point branches dropped, DiracDelta = 0, 0/0 at r = 0 filled."""
    smooth = _with_signs(_drop_point_branches(expr, r))
    d = sp.diff(smooth, wrt)
    d = d.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    d = _abs_products(sp.piecewise_fold(d))
    tidy = attempt(lambda: sp.simplify(d), LIMIT_SECONDS)
    d = real_form(d)
    if tidy is not None:
        tidy = real_form(tidy)
    # simplify must not bring in a root of a possibly negative base that d did not have, an
    # exponential of a new argument (it writes (1 - e^-s) e^-s as (e^s - 1) e^(-2s), whose e^s
    # overflows where the value is small: inf * 0 = NaN), nor a new denominator (it writes
    # |u|^1.5 + 1.5 r |u|^0.5 sign(u) over sqrt|u|: 0/0 where u = 0, a finite input)
    if (tidy is not None and not tidy.has(sp.zoo, sp.nan, sp.oo)
            and sp.count_ops(tidy) <= sp.count_ops(d)
            and _complex_powers(tidy) <= _complex_powers(d)
            and _exp_arguments(tidy) <= _exp_arguments(d)
            and _denominators(tidy) <= _denominators(d)):
        d = tidy
    # simplify may add point branches of its own (zoo at r = 0 where the formula is 0 - 0)
    return real_form(fill_removable(_drop_point_branches(d, r), r, "the derivative").expr)


def _with_signs(expr: sp.Expr) -> sp.Expr:
    """u/|u| written sign(u) (the same function where u != 0): its derivative is then 0, not
    sqrt(2)/|u| - sqrt(2) sign(u)/u, which rounds to a number that is not 0 (Huber's Phi')."""
    def is_ratio(e: sp.Basic) -> bool:
        return isinstance(e, sp.Mul) and any(
            isinstance(f, sp.Pow) and f.exp == -1 and isinstance(f.base, sp.Abs)
            and f.base.args[0] in e.args for f in e.args)

    def signed(e: sp.Mul) -> sp.Expr:
        for f in e.args:
            if (isinstance(f, sp.Pow) and f.exp == -1 and isinstance(f.base, sp.Abs)
                    and f.base.args[0] in e.args):
                u = f.base.args[0]
                rest = list(e.args)
                rest.remove(f)
                rest.remove(u)
                return sp.Mul(sp.sign(u), *rest)
        return e

    return expr.replace(is_ratio, signed)


def _abs_products(expr: sp.Expr) -> sp.Expr:
    """u sign(u) written |u| (the same number for real u): the derivative of x/(1 + |x|) is
    1/(1 + |x|) - x sign(x)/(1 + |x|)^2, which simplify cannot join while x sign(x) hides
    |x|; printed so, its second term underflows past x ~ 1e154 and the difference of two
    terms ~ 1/x is left (x F' was 1 there, truth 1/x); joined it is 1/(1 + |x|)^2."""
    def is_product(e: sp.Basic) -> bool:
        return isinstance(e, sp.Mul) and any(
            isinstance(f, sp.sign) and f.args[0] in e.args for f in e.args)

    def joined(e: sp.Mul) -> sp.Expr:
        rest = list(e.args)
        for f in e.args:
            if isinstance(f, sp.sign) and f.args[0] in rest:
                rest.remove(f)
                rest.remove(f.args[0])
                rest.append(sp.Abs(f.args[0]))
        return sp.Mul(*rest)

    return expr.replace(is_product, joined)


def _drop_point_branches(expr: sp.Expr, r: sp.Symbol) -> sp.Expr:
    """Piecewise branches that hold at single points (Eq(r, 0), Eq(r**2, 0)) removed: the rest
    is the same function almost everywhere, and its derivative is what the code needs."""
    if not isinstance(expr, sp.Piecewise):
        return expr.func(*[_drop_point_branches(a, r) for a in expr.args]) if expr.args else expr
    kept = [(e, c) for e, c in expr.args if not (isinstance(c, sp.Eq) and c.has(r))]
    if not kept:
        return expr
    if len(kept) == 1:
        return kept[0][0]
    return sp.Piecewise(*kept)


#: A region where a NaN is replaced by the limit: its radius, and conditions |P| <= bound on
#: parameter factors P that must also hold there (empty: none).
Region = tuple[float, tuple[tuple[sp.Expr, float], ...]]
#: (limit, regions): regions () for the limit from the right that is only the value at 0
#: itself. None: no finite limit, or none known.
Repair = tuple[sp.Expr, tuple[Region, ...]] | None
#: (point, direction) of the four limits a repair takes, in the order of ``repairs``
_ENDS = ((sp.S.Zero, "-"), (sp.S.Zero, "+"), (sp.oo, "-"), (-sp.oo, "+"))
#: x = r/c can be as small as 2^-1074/2^1024 or as large as 2^1024/2^-1074 (it may under- or
#: overflow itself): the proofs cover |x| from 2^-2100 to 2^2100
_FURTHEST = mpmath.mpf(2) ** -2100


@lru_cache(maxsize=1024)
def _repair(expr: sp.Expr, r: sp.Symbol) -> tuple[Repair, ...]:
    """For each end of _ENDS, (the limit of expr, the regions where replacing a NaN by it is
    proven right), or None. The limit from the right is also the value at r = 0 itself (the
    translator fills removable singularities so), with or without a proven region."""
    out: list[Repair] = []
    for point, direction in _ENDS:
        limit = _finite_limit(expr, r, point, direction)
        regions = () if limit is None else _proven_regions(expr, r, point, direction)
        keep = limit is not None and (regions or (point == 0 and direction == "+"))
        out.append((limit, regions) if keep else None)
    return tuple(out)


def _proven_regions(expr: sp.Expr, r: sp.Symbol, point: object, direction: str
                    ) -> tuple[Region, ...]:
    """The regions 0 < |x| <= 2^-k (point 0) or |x| >= 2^k (point +-oo), k in
    REPAIR_EXPONENTS, on which expr is proven within float64 rounding of its limit there.

    expr is written sum_P P F_P(x), each P a product of parameters (one kernel serves every
    value) and each F_P free of them, with its finite limit L_P. Over the region an
    enclosure of F_P must lie within REPAIR_TOLERANCE |L_P| of L_P; where L_P = 0, |P F_P|
    must round to 0 (below REPAIR_ZERO): when the enclosure's bound D is not that small
    itself, the region holds only where |P| <= REPAIR_ZERO / D, a condition the code checks
    at run time. Then |expr - sum_P P L_P| <= REPAIR_TOLERANCE sum_P |P L_P| plus what rounds
    to 0: what rounding makes of the sum evaluated in float64 anyway. One region at most: the
    largest without conditions, else the smallest with (its bounds are the loosest), so that
    the generated code stays short. Nothing is proven where some F_P has a parameter or no
    finite limit."""
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(expr):
        factor, part = term.as_independent(r, as_Add=False)
        number, factor = factor.as_coeff_Mul()
        groups[factor] = groups.get(factor, sp.S.Zero) + number * part
    terms = []
    for factor, part in groups.items():
        if part.free_symbols - {r}:
            return ()
        limit = _finite_limit(part, r, point, direction) if part.has(r) else part
        if limit is None:
            return ()
        terms.append((factor, part, limit))
    near = point == 0
    negative = point == -sp.oo or (near and direction == "-")
    if near:
        end = (point, direction)
    else:
        # far out, in y = 1/|x| on (0, 2^-k]: natural enclosures of x^2/(1 + x^2)^2 or
        # x/|x| over an unbounded box are loose (inf/inf), their forms in y are not
        y = sp.Dummy("y", positive=True)
        terms = [(f, _in_reciprocal(part, r, y, negative), limit) for f, part, limit in terms]
        r, end = y, (sp.S.Zero, "+")
    conditional: tuple[Region, ...] = ()
    for k in REPAIR_EXPONENTS:
        high = mpmath.mpf(2) ** -k
        box = interval(-high, -_FURTHEST) if near and negative else interval(_FURTHEST, high)
        conditions = []
        for factor, part, limit in terms:
            bound = _deviation_bound(part, limit, r, box, end)
            if bound is None or (bound < math.inf and factor.is_number):
                break
            if bound < math.inf:
                conditions.append((factor, bound))
        else:
            region = (2.0**-k if near else 2.0**k, tuple(conditions))
            if not conditions:
                return (region,)
            conditional = (region,)  # the smallest region: the weakest conditions
    return conditional


def _in_reciprocal(expr: sp.Expr, r: sp.Symbol, y: sp.Dummy, negative: bool) -> sp.Expr:
    """expr at r = 1/y (-1/y when ``negative``), y > 0, as a cancelled fraction where SymPy
    finds one within its budget."""
    at = expr.xreplace({r: (-1 if negative else 1) / y})
    return attempt(lambda: sp.cancel(at), LIMIT_SECONDS) or at


def _deviation_bound(part: sp.Expr, limit: sp.Expr, r: sp.Symbol, box: object,
                     end: tuple[object, str]) -> float | None:
    """inf when an enclosure of ``part`` over ``box`` lies within REPAIR_TOLERANCE |limit| of
    a nonzero ``limit`` or below REPAIR_ZERO around a zero one (proven for every parameter
    value); for a zero limit with a wider enclosure, the largest |P| (a float rounded down)
    for which |P part| < REPAIR_ZERO; None when nothing is proven."""
    if not part.has(r):
        return math.inf
    got = refined(part, r, box, end)
    want = enclosure(limit, r)(interval(0))
    size = max(abs(lo(want)), abs(hi(want)))
    if size > 0:
        tolerance = REPAIR_TOLERANCE * size
        ok = lo(got) >= hi(want) - tolerance and hi(got) <= lo(want) + tolerance
        return math.inf if ok else None
    spread = max(abs(lo(got)), abs(hi(got)))
    if not mpmath.isfinite(spread):
        return None
    if spread <= REPAIR_ZERO:
        return math.inf
    with mpmath.workprec(64):
        bound = to_float(mpmath.fdiv(REPAIR_ZERO, spread, rounding="d"), -1)
    return bound if bound > 0 else None


def _finite_limit(expr: sp.Expr, r: sp.Symbol, point: object, direction: str
                  ) -> sp.Expr | None:
    """The limit of expr as r -> point from ``direction``, None unless SymPy finds it finite.
    A Piecewise SymPy cannot take the limit of whole (Huber's at +oo) has the limit of the
    piece whose condition holds on a whole one-sided neighbourhood of the point, when the
    conditions before it are shown to fail on one."""
    value = attempt(lambda: sp.limit(expr, r, point, direction), LIMIT_SECONDS)
    if value is not None and not value.has(sp.oo, -sp.oo, sp.zoo, sp.nan, sp.Limit,
                                            sp.AccumBounds, sp.I):
        return value  # finite and real (a complex limit, sqrt(r) at 0-, has no printed form)
    folded = attempt(lambda: sp.piecewise_fold(expr), LIMIT_SECONDS)
    if not isinstance(folded, sp.Piecewise):
        return None
    for piece, cond in folded.args:
        holds = _eventually(cond, r, point, direction)
        if holds is None:
            return None
        if holds:
            return _finite_limit(piece, r, point, direction)
    return None


def _eventually(cond: sp.Basic, r: sp.Symbol, point: object, direction: str) -> bool | None:
    """Whether ``cond`` holds for every r close enough to ``point`` on the ``direction`` side
    (True), fails for every such r (False), or neither is shown (None). A relation a ~ b is
    decided by the sign of lim (a - b), which must be a nonzero number or +-oo."""
    if cond in (sp.true, sp.false):
        return bool(cond)
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        parts = [_eventually(a, r, point, direction) for a in cond.args]
        if isinstance(cond, sp.Not):
            return None if parts[0] is None else not parts[0]
        if isinstance(cond, sp.And):
            return False if False in parts else (None if None in parts else True)
        return True if True in parts else (None if None in parts else False)
    if not isinstance(cond, sp.core.relational.Relational):
        return None
    d = attempt(lambda: sp.limit(cond.lhs - cond.rhs, r, point, direction), LIMIT_SECONDS)
    if d is None or d == 0 or not (d.is_extended_real and (d.is_number or d.is_infinite)):
        return None
    value = cond.func(d, 0)
    return bool(value) if value in (sp.true, sp.false) else None
