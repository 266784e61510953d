"""The dictionary: the twelve rules of the corrected Table 1 of paper 001 (MATH.md 1).

All forms are functions of the real variable r in the "r" convention, grid size h = 1,
tau = time step, alpha = regularisation weight. Row = given kind, entry = computed kind:

    g   -> Psi = 2 int_0^r g(x) x dx         S = r (1 - 4 tau g(sqrt2 r))      Phi = g r
    Psi -> g = Psi'/(2r)                     S = r - sqrt2 alpha Psi'(sqrt2 r)  Phi = Psi'/2
    S   -> g = (1 - sqrt2 S(r/sqrt2)/r)/(4 tau)
           Psi = (r^2 - 2 sqrt2 int_0^r S(x/sqrt2) dx)/(4 alpha)
           Phi = (r - sqrt2 S(r/sqrt2))/(4 tau)
    Phi -> g = Phi/r                         Psi = 2 int_0^r Phi(x) dx
           S = r - 2 sqrt2 tau Phi(sqrt2 r)

(P1 Table 1; the Psi -> S entry is the corrected one of MATH.md, not the OCR'd
"r - sqrt(2 alpha) Psi'(sqrt(2r))".) Each rule is applied directly from the input's row, so
tau and alpha enter exactly as the table says; the regulariser/variational link needs
tau = alpha (P1 15).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .budget import attempt
from .errors import FluxactError

SQRT2 = sp.sqrt(2)

# every closed form of the catalogue and the 28 literature cases takes < 0.5 s; past the
# budget Psi is numeric quadrature
INTEGRATE_SECONDS = 1.5
SIMPLIFY_SECONDS = 2.0
LIMIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Form:
    """One computed form: its expression, whether it is closed-form, and remarks."""

    expr: sp.Expr
    closed_form: bool = True
    notes: tuple[str, ...] = ()


# -- helpers ---------------------------------------------------------------------------------


def _min_max_to_piecewise(expr: sp.Expr) -> sp.Expr:
    return expr.replace(
        lambda e: isinstance(e, (sp.Min, sp.Max)), lambda e: e.rewrite(sp.Piecewise)
    )


def tidy(expr: sp.Expr) -> sp.Expr:
    """Bring an expression to a readable normal form: Min/Max as Piecewise, Piecewise folded
    to the top, each branch simplified (kept only when not longer), all under time budgets."""
    folded = attempt(lambda: sp.piecewise_fold(_min_max_to_piecewise(expr)), SIMPLIFY_SECONDS)
    expr = expr if folded is None else folded

    def simpler(e: sp.Expr) -> sp.Expr:
        if e.has(sp.Integral):
            return e
        result = attempt(lambda: sp.simplify(e, ratio=1), SIMPLIFY_SECONDS)
        if result is None:
            return e
        if result.has(sp.log):  # lam**2*log(1 + s2/lam**2), not log((1 + s2/lam**2)**lam**2)
            result = attempt(lambda: sp.expand_log(result), SIMPLIFY_SECONDS) or result
        return result

    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(simpler(e), c) for e, c in expr.args])
    return simpler(expr)


def _is_bad(value: sp.Basic) -> bool:
    return value.has(sp.nan, sp.zoo, sp.oo, -sp.oo, sp.AccumBounds)


def fill_removable(expr: sp.Expr, r: sp.Symbol, what: str, raw: sp.Expr | None = None) -> Form:
    """Fill the value at r = 0 by its limit where the formula is 0/0 there
    ("g = Phi/r; at r = 0 its limit Phi'(0)").

    ``raw`` is the formula as the rule wrote it (before simplification): its value at 0 is
    what decides, because simplification may have put a meaningless value there (SymPy turns
    sign(r)/r into a Piecewise with 0 at r = 0, although g = 1/|r| is unbounded there).
    """
    raw = expr if raw is None else raw
    at0 = attempt(lambda: raw.subs(r, 0), LIMIT_SECONDS)
    if at0 is not None and not _is_bad(at0):
        return Form(expr)
    left, right = _limits_at_zero(raw, r)
    if any(v is None or v.has(sp.nan, sp.zoo, sp.Limit, sp.AccumBounds) for v in (right, left)):
        return Form(expr, notes=(f"{what} is undefined at {r} = 0",))
    expr = _drop_branch_at_zero(expr, r)
    if right == left or attempt(lambda: sp.simplify(right - left) == 0, LIMIT_SECONDS):
        filled = sp.Piecewise((right, sp.Eq(r, 0)), (expr, True))
        if right.is_infinite:
            return Form(filled, notes=(f"{what} is unbounded at {r} = 0 (limit {right})",))
        return Form(filled)
    if right.is_infinite or left.is_infinite:
        return Form(expr, notes=(
            f"{what} is unbounded at {r} = 0 (left limit {left}, right limit {right})",))
    mean = (right + left) / 2
    note = (
        f"{what} jumps at {r} = 0 (left limit {left}, right limit {right}); "
        f"its value there is set to the mean {mean}"
    )
    return Form(sp.Piecewise((mean, sp.Eq(r, 0)), (expr, True)), notes=(note,))


def _limits_at_zero(raw: sp.Expr, r: sp.Symbol) -> tuple[sp.Expr | None, sp.Expr | None]:
    """The one-sided limits at 0, each taken on the smooth piece beside 0 (SymPy's limit of a
    whole Piecewise can pick the wrong branch); SymPy's limit of the whole formula where it
    cannot be cut into pieces (symbolic parameters) and has no branches (else None: the
    numbers are filled in later, translation.py)."""
    from .bounds import decompose, exact_limit

    try:
        pieces, _ = decompose(raw, r)
    except (FluxactError, ArithmeticError, TypeError, ValueError):
        pieces = ()
    found: dict[str, sp.Expr | None] = {}
    for side, beside in (("-", [p for p in pieces if p.lo < 0 <= p.hi]),
                         ("+", [p for p in pieces if p.lo <= 0 < p.hi])):
        if beside:
            limit = exact_limit(beside[0].expr, r, sp.Integer(0), side)
        elif raw.has(sp.Piecewise, sp.Min, sp.Max, sp.Heaviside):
            limit = None
        else:
            limit = attempt(lambda s=side: sp.limit(raw, r, 0, s), LIMIT_SECONDS)
        found[side] = limit if isinstance(limit, sp.Expr) else None
    return found["-"], found["+"]


def _drop_branch_at_zero(expr: sp.Expr, r: sp.Symbol) -> sp.Expr:
    """Remove a leading (value, Eq(r, 0)) branch: the caller puts the true value there."""
    if isinstance(expr, sp.Piecewise) and expr.args[0].cond == sp.Eq(r, 0):
        rest = expr.args[1:]
        return rest[0].expr if len(rest) == 1 else sp.Piecewise(*rest)
    return expr


def integral_from_zero(f: sp.Expr, r: sp.Symbol) -> Form:
    """F(r) = int_0^r f(x) dx for real r, with no logarithm of a negative number.

    Both halves are integrated over a positive variable: for r >= 0, int_0^t f(y) dy, and for
    r < 0, -int_0^t f(-y) dy, with t = |r|. When f is odd the two agree (Psi is even) and
    F = F_+(|r|); otherwise F is the Piecewise of both halves (e.g. ReLU). Where SymPy finds
    no closed form within the budget, F is kept as an unevaluated Integral, evaluated
    numerically on demand.
    """
    y = sp.Dummy("y", positive=True)
    t = sp.Dummy("t", positive=True)
    f_pos = f.subs(r, y)
    f_neg = f.subs(r, -y)

    def integrate(g: sp.Expr) -> sp.Expr | None:
        def run(h: sp.Expr) -> sp.Expr | None:
            result = sp.integrate(h, (y, 0, t))
            return None if result.has(sp.Integral) else tidy(result)

        whole = attempt(lambda: run(g), INTEGRATE_SECONDS)
        if whole is not None:
            return whole
        # term by term (the integral is linear): SymPy may find each term of a sum of
        # diffusivities (fluxact.LearnedDiffusivity) in its budget but not the whole
        terms = sp.Add.make_args(sp.expand(g, deep=False))
        if len(terms) < 2:
            return None
        parts = []
        for term in terms:
            part = attempt(lambda h=term: run(h), INTEGRATE_SECONDS)
            # a term may diverge where only the sum converges ((1 - e^-s2)/s2 split in two:
            # oo - oo): then there is no closed form this way
            if part is None or part.has(sp.nan, sp.oo, -sp.oo, sp.zoo):
                return None
            parts.append(part)
        total = tidy(sp.Add(*parts))
        return None if total.has(sp.nan, sp.oo, -sp.oo, sp.zoo) else total

    odd = attempt(lambda: sp.simplify(f_pos + f_neg) == 0, SIMPLIFY_SECONDS) or False
    upper = integrate(f_pos)
    if upper is not None and odd:
        return Form(tidy(upper.subs(t, sp.Abs(r))))
    lower = integrate(f_neg) if upper is not None else None
    if upper is not None and lower is not None:
        expr = sp.Piecewise((upper.subs(t, r), r >= 0), (-lower.subs(t, -r), True))
        return Form(tidy(expr))
    x = sp.Dummy("x", real=True)
    unevaluated = sp.Integral(f.subs(r, x), (x, 0, r))
    return Form(
        unevaluated,
        closed_form=False,
        notes=("no closed form found for the integral; it is evaluated numerically",),
    )


def _derivative(f: sp.Expr, r: sp.Symbol) -> sp.Expr:
    return sp.diff(f, r)


def _at(f: sp.Expr, r: sp.Symbol, arg: sp.Expr) -> sp.Expr:
    """f evaluated at arg (f is a function of r)."""
    return f.subs(r, arg)


# -- the twelve rules ------------------------------------------------------------------------

Rule = Callable[[sp.Expr, sp.Symbol, sp.Expr, sp.Expr], Form]


def _g_to_psi(g: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    return integral_from_zero(2 * g * r, r)  # Psi = 2 int_0^r g(x) x dx


def _g_to_s(g: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    return Form(tidy(r * (1 - 4 * tau * _at(g, r, SQRT2 * r))))  # S = r (1 - 4 tau g(sqrt2 r))


def _g_to_phi(g: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    return Form(tidy(g * r))  # Phi = g r


def _psi_to_g(psi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # g = Psi'(r) / (2r); at r = 0 its limit Psi''(0)/2
    raw = _derivative(psi, r) / (2 * r)
    return fill_removable(tidy(raw), r, "the diffusivity", raw)


def _psi_to_s(psi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # S = r - sqrt2 alpha Psi'(sqrt2 r)  (corrected entry, MATH.md 1)
    return Form(tidy(r - SQRT2 * alpha * _at(_derivative(psi, r), r, SQRT2 * r)))


def _psi_to_phi(psi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    return Form(tidy(_derivative(psi, r) / 2))  # Phi = Psi'/2


def _s_to_g(s: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # g = (1/(4 tau)) (1 - (sqrt2/r) S(r/sqrt2))
    raw = (1 - SQRT2 / r * _at(s, r, r / SQRT2)) / (4 * tau)
    return fill_removable(tidy(raw), r, "the diffusivity", raw)


def _s_to_psi(s: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # Psi = (1/(4 alpha)) (r^2 - 2 sqrt2 int_0^r S(x/sqrt2) dx)
    integral = integral_from_zero(_at(s, r, r / SQRT2), r)
    expr = (r**2 - 2 * SQRT2 * integral.expr) / (4 * alpha)
    return Form(tidy(expr) if integral.closed_form else expr, integral.closed_form, integral.notes)


def _s_to_phi(s: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # Phi = (1/(4 tau)) (r - sqrt2 S(r/sqrt2))
    return Form(tidy((r - SQRT2 * _at(s, r, r / SQRT2)) / (4 * tau)))


def _phi_to_g(phi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # g = Phi/r; at r = 0 its limit Phi'(0)
    return fill_removable(tidy(phi / r), r, "the diffusivity", phi / r)


def _phi_to_psi(phi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    integral = integral_from_zero(phi, r)  # Psi = 2 int_0^r Phi(x) dx
    expr = 2 * integral.expr
    return Form(tidy(expr) if integral.closed_form else expr, integral.closed_form, integral.notes)


def _phi_to_s(phi: sp.Expr, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr) -> Form:
    # S = r - 2 sqrt2 tau Phi(sqrt2 r)
    return Form(tidy(r - 2 * SQRT2 * tau * _at(phi, r, SQRT2 * r)))


#: (from, to) -> rule, grouped by the kind translated from
RULES: dict[tuple[str, str], Rule] = {
    ("diffusivity", "regulariser"): _g_to_psi, ("diffusivity", "shrinkage"): _g_to_s,
    ("diffusivity", "activation"): _g_to_phi,
    ("regulariser", "diffusivity"): _psi_to_g, ("regulariser", "shrinkage"): _psi_to_s,
    ("regulariser", "activation"): _psi_to_phi,
    ("shrinkage", "diffusivity"): _s_to_g, ("shrinkage", "regulariser"): _s_to_psi,
    ("shrinkage", "activation"): _s_to_phi,
    ("activation", "diffusivity"): _phi_to_g, ("activation", "regulariser"): _phi_to_psi,
    ("activation", "shrinkage"): _phi_to_s,
}


def convert(
    expr: sp.Expr, source: str, target: str, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr
) -> Form:
    """Apply the Table 1 rule from kind ``source`` to kind ``target``."""
    if source == target:
        return Form(expr)
    return RULES[(source, target)](expr, r, tau, alpha)
