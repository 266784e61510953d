"""A learned diffusivity whose stability bound holds for every value training can reach.

    g(s2) = sum_k w_k b_k(s2 / l_k^2),    w_k = exp(a_k) > 0,  l_k = exp(c_k) > 0,

with a_k, c_k the trainable parameters and b_k from BASES. Every basis function has
b(0) = 1 and 0 < b(t) <= 1 for t >= 0 (it decreases), so for every parameter value

    0 <= g(s2) <= g(0) = sum_k w_k = g_max        (exact: the bound is attained at s2 = 0),

and Phi(r) = r g(r^2) = sum_k w_k l_k F_k(r / l_k) with F_k(x) = x b_k(x^2) has
Phi'(0) = g(0) and |F_k'| <= F_k'(0) = 1, so its Lipschitz constant is L = sum_k w_k too
(exact: attained at r = 0). A DiffusionBlock or coupled block built on it takes its time step
from this g_max at every forward pass, so the step stays certified throughout training. This
is the stable counterpart of the learned influence functions of trainable nonlinear
reaction diffusion (TNRD, Chen and Pock 2017), which are free combinations of radial basis
functions and may be negative.

The stability facts come from this construction (``facts``), as a sum of monomials in the
weights; tests/blocks/test_learned.py checks each basis's b(0) = 1, g >= 0, g_max = 1 and
L = 1 with the verifier. The code is generated from the formula like any other (Triton
kernels, torch path, gradients for every w_k and l_k), and ``translation()``, ``report()``
give its Psi, S, Phi and the verifier's report at the current values.

The exponents a_k, c_k are clamped to [-LOG_LIMIT, LOG_LIMIT] before exp: w_k and l_k then
stay positive and finite in float32, whose range the generated code may compute in (past the
clamp, their gradient is 0).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch

from .runtime import Activation, ActivationError
from .translator.facts import StabilityFacts

#: basis name -> b(t) as formula text in t (b(0) = 1, 0 < b <= 1, decreasing; F(x) = x b(x^2)
#: has sup |F'| = F'(0) = 1)
BASES = {
    "rational": "1/(1 + {t})",  # Perona-Malik's rational diffusivity (P1 Table 2)
    "exponential": "exp(-{t})",  # Perona-Malik's exponential diffusivity
    "charbonnier": "1/sqrt(1 + {t})",  # Charbonnier's diffusivity
}
LOG_LIMIT = 40.0  # exp(+-40): 2.4e17 and 4.2e-18, squares inside float32's range


def formula(basis: Sequence[str]) -> str:
    """g(s2) as formula text in the parameters w1, l1, w2, l2, ..."""
    terms = []
    for k, name in enumerate(basis, start=1):
        terms.append(f"w{k}*" + BASES[name].format(t=f"s2/l{k}**2"))
    return " + ".join(terms)


def named(weights: Sequence[object], scales: Sequence[object]) -> dict[str, object]:
    """The formula's parameter names w1, w2, ..., l1, l2, ... with their values."""
    return {**{f"w{j}": w for j, w in enumerate(weights, 1)},
            **{f"l{j}": s for j, s in enumerate(scales, 1)}}


def facts(k: int) -> StabilityFacts:
    """g >= 0, Phi odd, g_max = L = w1 + ... + wk for every positive parameter value (the
    module docstring's proof)."""
    total = tuple((1.0, ((f"w{j}", 1.0),)) for j in range(1, k + 1))
    return StabilityFacts(
        nonnegative=True, antisymmetric=True, monotone=False, g_max=total, lipschitz=total,
        reason=None, lipschitz_reason=None, fixed=None,
        method="construction: a nonnegative combination of b(s2/l^2) with b(0) = max b = 1")


class LearnedDiffusivity(Activation):
    """g(s2) = sum_k w_k b_k(s2/l_k^2) with trainable w_k = exp(a_k) and l_k = exp(c_k) (module
    docstring): 0 <= g <= g_max = sum_k w_k for every parameter value.

    ``basis``: names from BASES, one per term (the same name may repeat). ``weights`` and
    ``scales``: the starting w_k and l_k (default: w_k = 1/K, so g(0) = 1, and scales
    spread geometrically over [0.1, 10]). ``role``: "activation" (Phi(r) = r g(r^2), for
    DiffusionBlock and SymmetricResNet) or "diffusivity" (g(s2), for the coupled blocks).
    ``backend`` as for fluxact.to_torch.
    """

    def __init__(self, basis: Sequence[str] = ("rational", "exponential", "charbonnier"), *,
                 weights: Sequence[float] | None = None,
                 scales: Sequence[float] | None = None, role: str = "activation",
                 backend: str = "auto") -> None:
        basis = tuple(basis) if not isinstance(basis, str) else (basis,)
        unknown = [b for b in basis if b not in BASES]
        if not basis or unknown:
            raise ActivationError(
                f"unknown basis function {unknown[0]!r}; use {', '.join(BASES)}" if unknown
                else "basis needs at least one of " + ", ".join(BASES))
        k = len(basis)
        weights = [1.0 / k] * k if weights is None else [float(w) for w in weights]
        scales = ([10.0 ** (2 * j / (k - 1) - 1) for j in range(k)] if scales is None and k > 1
                  else [1.0] if scales is None else [float(s) for s in scales])
        for label, given in (("weights", weights), ("scales", scales)):
            if len(given) != k:
                raise ActivationError(f"{label} needs {k} values (one per basis function), "
                                      f"got {len(given)}")
            bad = [v for v in given if not (math.isfinite(v) and v > 0)]
            if bad:
                raise ActivationError(f"{label} must be positive and finite, got {bad[0]!r}")
            low, high = math.exp(-LOG_LIMIT), math.exp(LOG_LIMIT)
            if any(not low <= v <= high for v in given):
                raise ActivationError(f"{label} must lie in [exp(-{LOG_LIMIT:g}), "
                                      f"exp({LOG_LIMIT:g})] (float32's range)")
        self.basis = basis
        self._start = (weights, scales)
        ops, text = _generate(basis, weights, scales, role)
        super().__init__(ops, named(weights, scales), trainable=ops.params, backend=backend,
                         formula=text, role=role)

    def _register_values(self, values: Mapping[str, object], trainable: Sequence[str]) -> None:
        weights, scales = self._start
        self.log_weights = torch.nn.Parameter(torch.tensor(weights, dtype=torch.float64).log())
        self.log_scales = torch.nn.Parameter(torch.tensor(scales, dtype=torch.float64).log())

    def weights(self) -> torch.Tensor:
        return self.log_weights.clamp(-LOG_LIMIT, LOG_LIMIT).exp()

    def scales(self) -> torch.Tensor:
        return self.log_scales.clamp(-LOG_LIMIT, LOG_LIMIT).exp()

    def parameter_values(self) -> dict[str, torch.Tensor]:
        return named(self.weights().unbind(), self.scales().unbind())  # type: ignore[return-value]

    def parameter_vector(self) -> torch.Tensor:
        values = self.parameter_values()
        return torch.stack([values[n] for n in self.ops.params])

    def trainable_names(self) -> tuple[str, ...]:
        return self.ops.params

    def clone(self) -> LearnedDiffusivity:
        """An independent copy with the current values (the generated code is shared)."""
        return copy.deepcopy(self)

    def g(self, s2: torch.Tensor) -> torch.Tensor:
        """g(s2) at the current parameters, in torch (for plots and checks; the blocks call
        the generated code)."""
        total = torch.zeros_like(s2)
        for name, w, s in zip(self.basis, self.weights(), self.scales()):
            t = s2 / s.to(s2) ** 2
            b = {"rational": lambda: 1 / (1 + t), "exponential": lambda: torch.exp(-t),
                 "charbonnier": lambda: torch.rsqrt(1 + t)}[name]()
            total = total + w.to(s2) * b
        return total

    def translation(self):  # type: ignore[no-untyped-def]
        """The fluxact Translation (g, Psi, S, Phi) at the current values."""
        from .translator.translation import translate

        return translate(self.formula, "diffusivity", convention="s2",
                         params=self._current())

    def report(self):  # type: ignore[no-untyped-def]
        """The verifier's report (fluxact.verify) at the current values."""
        from .translator.translation import verify

        return verify(self.translation())

    def _current(self) -> dict[str, float]:
        return {n: float(v.detach()) for n, v in self.parameter_values().items()}

    def extra_repr(self) -> str:
        terms = ", ".join(f"{b}(w={float(w):.4g}, l={float(s):.4g})" for b, w, s in
                          zip(self.basis, self.weights().detach(), self.scales().detach()))
        return f"{terms}, role={self.role!r}, backend={self.backend!r}"


def _generate(basis: tuple[str, ...], weights: Sequence[float], scales: Sequence[float],
              role: str):  # type: ignore[no-untyped-def]
    """The generated module's Ops for g (role "diffusivity") or Phi (role "activation"), with
    every w_k and l_k trainable and the facts of the construction."""
    from .activation import _diffusivity_module, load_spec
    from .codegen.prepare import prepare
    from .translator.translation import translate

    text = formula(basis)
    values = named(weights, scales)
    names = tuple(values)
    known = facts(len(basis))
    if role == "diffusivity":
        return _diffusivity_module(text, params=values, trainable=names, facts=known,
                                   name="learned_g").ops, text
    if role != "activation":
        raise ActivationError(f"unknown role {role!r}; use 'activation' or 'diffusivity'")
    t = translate(text, "diffusivity", convention="s2", params=values)
    spec = prepare(t, name="learned_phi", trainable=names, facts=known)
    return load_spec(spec).OPS, text
