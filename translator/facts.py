"""The stability record: the verifier's facts about Phi that diffusion blocks need, as plain
data (no SymPy, no torch, like errors.py: the torch runtime imports both). codegen/stability.py
makes it from a verifier report and writes it into generated modules as
``_rt.Stability(...)``; fluxact.runtime.Stability is this record with the run-time checks
added. One record, defined once.

``g_max`` and ``lipschitz`` are monomials in the parameters, bound(p) = coefficient *
prod p_i ** e_i, written (coefficient, ((name, exponent), ...)), or sums of such monomials
with positive coefficients (a tuple of them: the learned diffusivity's g_max = sum_k w_k),
or None where the bound is infinite or unknown (``reason``, ``lipschitz_reason`` say why).
``fixed``: the parameter values the facts were verified at, when the verifier found no
closed form in the parameters; None when they hold for every positive value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

Monomial = tuple[float, tuple[tuple[str, float], ...]]
Bound = Monomial | tuple[Monomial, ...]  # one monomial, or a sum of them


def monomials(bound: Bound) -> tuple[Monomial, ...]:
    """The terms of a bound (a single monomial is one term)."""
    return (bound,) if isinstance(bound[0], int | float) else bound  # type: ignore[return-value]


@dataclass(frozen=True)
class StabilityFacts:
    """What generated code records about Phi."""

    nonnegative: bool
    antisymmetric: bool
    monotone: bool
    g_max: Bound | None  # None: infinite, or no bound known (see reason)
    lipschitz: Bound | None
    reason: str | None  # why no time step is safe (None: every notion has one)
    lipschitz_reason: str | None
    fixed: tuple[tuple[str, float], ...] | None  # the values the facts hold at, if only there
    method: str = ""

    def source(self) -> str:
        """The runtime's constructor call, as Python source (plain literals only)."""
        values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"_rt.Stability({values})"

    def describe(self, which: str = "g_max") -> str:
        """'1.5*lam**-1' style text of a bound (terms joined by ' + '), for error messages."""
        bound = self.g_max if which == "g_max" else self.lipschitz
        if bound is None:
            return "inf"
        return " + ".join("*".join([f"{coefficient:.6g}", *(f"{n}**{e:g}" for n, e in exponents)])
                          for coefficient, exponents in monomials(bound))

    def __repr__(self) -> str:
        return (f"Stability(g_max={self.describe('g_max')}, L={self.describe('lipschitz')}, "
                f"nonnegative={self.nonnegative}, fixed={self.fixed})")
