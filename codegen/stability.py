"""stability: the verifier's facts that a diffusion block needs, as data for generated code.

A block computes its time step from g_max = sup Phi(r)/r (MATH.md 2) every forward pass, so a
trainable parameter cannot leave the stable region; the implicit block needs the Lipschitz
constant L. Generated modules import no SymPy, so the bounds travel as monomials in the
parameters: bound(p) = coefficient * prod p_i ** e_i. The verifier gives exactly that form
when Phi(r) = A(p) F(r/c(p)) (translator/scaling.py: bounds scale by k = A/c, a monomial);
otherwise the facts hold only at the parameter values given, and the record says which
(``fixed``), so that the runtime refuses other values.
"""

from __future__ import annotations

import math
from dataclasses import replace

import sympy as sp

from ..translator.errors import FluxactError
from ..translator.facts import Bound, Monomial, StabilityFacts
from ..translator.parse import parameter_symbol
from ..translator.translation import Translation, translate_nonlinearity
from ..translator.verify import StabilityReport, verify_translation


def stability_facts(t: Translation, trainable: tuple[str, ...] = ()) -> StabilityFacts:
    """The facts for the activation of ``t``: in closed form in all its parameters when the
    verifier finds one, else in the trainable ones with the others fixed at their values
    (r/(1 + (r/a)^2)^b with b given: L = g_max = 1 for every a), else at the values ``t``
    gives them, else none (with the reason)."""
    nl = t.input
    names = tuple(sorted({*nl.free, *(k for k, _ in nl.values)}))
    first = ""
    given = dict(nl.values)
    tries = [names]
    moving = tuple(n for n in names if n in trainable or n in nl.free)
    if moving and moving != names:
        tries.append(moving)
    for free in tries:
        keep = tuple((k, v) for k, v in sorted(given.items()) if k not in free)
        symbolic = t
        if set(free) != set(nl.free):
            symbolic = translate_nonlinearity(
                replace(nl, expr=nl.symbolic.subs({parameter_symbol(k): v for k, v in keep}),
                        values=keep, free=free), tau=t.tau, alpha=t.alpha)
        try:
            fixed = tuple((k, float(v)) for k, v in keep) or None
            return _facts(verify_translation(symbolic), names, fixed)
        except FluxactError as exc:
            first = first or str(exc)
    if names and not nl.free:  # every parameter has a value: verify there
        try:
            fixed = tuple((k, float(v)) for k, v in sorted(nl.values))
            return _facts(verify_translation(t), names, fixed)
        except FluxactError as exc:
            first = str(exc)
    return StabilityFacts(
        nonnegative=False, antisymmetric=False, monotone=False, g_max=None, lipschitz=None,
        reason=f"the verifier gave no bound: {first}", lipschitz_reason="no bound known",
        fixed=None, method="none")


def _facts(rep: StabilityReport, names: tuple[str, ...],
           fixed: tuple[tuple[str, float], ...] | None) -> StabilityFacts:
    """The record from a report. A g_max is recorded only where the report gives a time step
    (g >= 0 proven, Phi(0) = 0, g_max finite): blocks derive their step from it."""
    reasons = dict(rep.reasons)
    steps = rep.tau_euclid is not None
    g_max = _monomial(rep.g_max, names) if steps else None
    reason = None
    if rep.nonnegative_diffusivity is False:
        bad = [ce for ce in rep.counterexamples if ce.property == "nonnegative_diffusivity"]
        reason = "no time step is safe: " + (
            bad[0].reason if bad else reasons.get("nonnegative_diffusivity", "g < 0 somewhere"))
    elif g_max is None:
        reason = reasons.get("tau_euclid", f"g_max = {rep.g_max} has no usable bound")
    lipschitz = _monomial(rep.lipschitz, names)
    lip_reason = None if lipschitz is not None else reasons.get(
        "lipschitz", f"L = {rep.lipschitz}: Phi jumps or grows superlinearly")
    method = dict(rep.method)
    return StabilityFacts(
        nonnegative=rep.nonnegative_diffusivity is True,  # proven (False: no or unknown)
        antisymmetric=rep.antisymmetric is True,
        monotone=rep.monotone is True,
        g_max=g_max,
        lipschitz=lipschitz,
        reason=reason,
        lipschitz_reason=lip_reason,
        fixed=fixed,
        method=method.get("parameters", method.get("g_max", "")),
    )


def _monomial(value: float | sp.Expr | None, names: tuple[str, ...]) -> Bound | None:
    """(coefficient, exponents) of a verifier bound, or a tuple of them for a sum of
    monomials with positive coefficients; None when it is infinite or of another form. The
    verifier's coefficients are floats (exact binary values, already rounded outward), so
    the conversion loses nothing."""
    if value is None:
        return None
    if isinstance(value, float | int):
        return (float(value), ()) if math.isfinite(value) else None
    value = sp.sympify(value)
    if isinstance(value, sp.Add):
        terms = [_term(t, names) for t in value.args]
        if any(t is None or not t[0] > 0 for t in terms):
            return None
        return tuple(terms)  # type: ignore[arg-type]
    return _term(value, names)


def _term(value: sp.Expr, names: tuple[str, ...]) -> Monomial | None:
    coeff, rest = value.as_coeff_Mul()
    exponents: list[tuple[str, float]] = []
    for base, e in sorted(rest.as_powers_dict().items(), key=lambda be: sp.sstr(be[0])):
        if base == 1:
            continue
        if not (isinstance(base, sp.Symbol) and base.name in names and e.is_Rational):
            return None
        exponents.append((base.name, float(e)))
    c = float(coeff)
    return (c, tuple(exponents)) if math.isfinite(c) else None
