"""Scaling: Phi(r; p) = A(p) F(r / c(p)) with F free of the parameters.

With symbolic positive parameters the verifier needs a closed form in them. Most families of
the papers have one: the contrast lam sets the scale of r (Perona-Malik: Phi(r) = lam F(r/lam)
with F(x) = x exp(-x^2/2)), an amplitude sets the scale of Phi. Because A > 0 and c > 0, every
qualitative property of Phi (antisymmetry, sign of r Phi, monotonicity, jumps) is that of F,
and every bound scales by k = A/c:

    Phi'(r) = k F'(x),   g(r) = Phi(r)/r = k F(x)/x,   x = r/c,

so L = k L_F, g_max = k G_max and the time steps divide by k (MATH.md 2). The search tries
c and A among monomials of the parameters with exponents in EXPONENTS; a candidate is accepted
only when SymPy shows Phi(c x)/A to be free of the parameters on every piece (conditions
included), which is a proof, not a sample.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from .budget import attempt

EXPONENTS = (0, 1, -1, sp.Rational(1, 2), sp.Rational(-1, 2), 2, -2)
SCALING_SECONDS = 3.0
FULL_SEARCH = 3  # parameters up to which every exponent vector is tried


@dataclass(frozen=True, slots=True)
class Scaling:
    """Phi(r) = amplitude * reduced(r / scale); ``variable`` is the reduced variable x."""

    scale: sp.Expr  # c(p) > 0
    amplitude: sp.Expr  # A(p) > 0
    reduced: sp.Expr  # F(x), no parameters
    reduced_diffusivity: sp.Expr  # F(x)/x with its value at 0, no parameters
    variable: sp.Symbol

    @property
    def factor(self) -> sp.Expr:
        """k = A/c: Phi', g and their bounds scale by k; time steps by 1/k."""
        return sp.powsimp(self.amplitude / self.scale)


def find_scaling(phi: sp.Expr, g: sp.Expr | None, r: sp.Symbol,
                 params: tuple[sp.Symbol, ...], x: sp.Symbol) -> Scaling | None:
    """Phi = A F(r/c) and g = (A/c) G(r/c) with F, G free of ``params``; None when no
    monomial scaling works (or SymPy runs out of its time budget). ``g`` None: Phi alone (the
    generated code computes x = r/c first: then no intermediate leaves float range while
    Phi is representable at extreme parameter values, and its NaN repair decides on x);
    ``reduced_diffusivity`` is then F(x)/x unfilled at 0."""
    if not params:
        return None
    return attempt(lambda: _search(phi, g, r, params, x), SCALING_SECONDS)


def _search(phi: sp.Expr, g: sp.Expr | None, r: sp.Symbol, params: tuple[sp.Symbol, ...],
            x: sp.Symbol) -> Scaling | None:
    for exps in _candidates(len(params)):
        c = sp.Mul(*[p**e for p, e in zip(params, exps)])
        reduced = _reduce(phi.subs(r, c * x), params, x)
        if reduced is None:
            continue
        amplitude, F = reduced
        if g is None:
            F = sp.piecewise_fold(F)
            return Scaling(c, amplitude, F, F / x, x)
        scaled_g = _reduce(g.subs(r, c * x), params, x)
        if scaled_g is None:
            continue
        k_g, G = scaled_g
        # g must scale by A/c exactly: compare k_g G with (A/c) G_
        ratio = sp.simplify(k_g * c / amplitude)
        if ratio.free_symbols:
            continue
        return Scaling(c, amplitude, sp.piecewise_fold(F), sp.piecewise_fold(G * ratio), x)
    return None


def _candidates(n: int) -> list[tuple[sp.Expr, ...]]:
    """The exponent vectors of c to try, simplest first: every one for up to FULL_SEARCH
    parameters, else those with at most two nonzero exponents (7^n grows too fast: 5.8
    million for 8 parameters)."""
    if n <= FULL_SEARCH:
        vectors = list(itertools.product(EXPONENTS, repeat=n))
    else:
        nonzero = EXPONENTS[1:]
        vectors = [tuple(dict(zip(at, es)).get(i, 0) for i in range(n))
                   for k in range(3) for at in itertools.combinations(range(n), k)
                   for es in itertools.product(nonzero, repeat=k)]
    return sorted(vectors, key=lambda es: sum(abs(e) for e in es))


def _reduce(expr: sp.Expr, params: tuple[sp.Symbol, ...], x: sp.Symbol
            ) -> tuple[sp.Expr, sp.Expr] | None:
    """(A, F) with expr = A F, A positive and free of x, F free of the parameters."""
    expr = _normalise(expr, x)
    pieces = expr.args if isinstance(expr, sp.Piecewise) else ((expr, sp.true),)
    at_one = {p: 1 for p in params}
    amplitude: sp.Expr | None = None
    out = []
    for piece, cond in pieces:
        if cond.free_symbols & set(params):
            return None
        base = piece.subs(at_one)
        if base.free_symbols & set(params):
            return None
        if base == 0:
            if piece != 0 and sp.simplify(piece) != 0:
                return None
            out.append((base, cond))
            continue
        ratio = _ratio(piece, base, x)
        if ratio is None or x in ratio.free_symbols or ratio.is_positive is not True:
            return None
        if amplitude is None:
            amplitude = ratio
        elif sp.simplify(amplitude - ratio) != 0:
            return None
        out.append((base, cond))
    if amplitude is None:  # Phi == 0: any amplitude
        amplitude = sp.Integer(1)
    F = sp.Piecewise(*out) if isinstance(expr, sp.Piecewise) else out[0][0]
    return amplitude, F


def _ratio(piece: sp.Expr, base: sp.Expr, x: sp.Symbol) -> sp.Expr | None:
    """piece / base as an expression free of x, where rewriting shows it to be."""
    quotient = sp.factor_terms(piece / base, radical=True)
    for rewrite in (lambda q: sp.powsimp(sp.factor_terms(q)),
                    lambda q: sp.cancel(sp.factor_terms(sp.together(q))),
                    sp.simplify):
        candidate = rewrite(quotient)
        if x not in candidate.free_symbols:
            return candidate
    return None


def _normalise(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """Every relation a ~ b in a condition becomes (a - b)/m ~ 0 with m the positive factor
    of a - b that is free of x (dividing by m > 0 keeps the relation): lam |x| <= lam gives
    |x| - 1 <= 0."""
    def tidy(rel: sp.Basic) -> sp.Basic:
        diff = sp.factor_terms(sp.factor(rel.lhs - rel.rhs))
        coeff, rest = diff.as_independent(x, as_Add=False)
        if coeff.is_positive:
            return rel.func(rest, 0)
        if coeff.is_negative:  # a - b ~ 0 iff rest ~' 0 with the relation turned round
            return rel.reversed.func(rest, 0)
        return rel

    relations = {rel: tidy(rel) for rel in expr.atoms(sp.core.relational.Relational)
                 if rel.has(x)}
    # Rel(A, 0) for a positive constant A simplifies to a truth value on its own
    return sp.piecewise_fold(expr.xreplace(relations)) if relations else sp.piecewise_fold(expr)
