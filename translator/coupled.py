"""Coupled (rotation-invariant) nonlinearities of paper 003 (MATH.md 4): the report.

A coupled activation applies a scalar diffusivity g to a rotation invariant of all operator
channels (P3 19, Design Principle 1): Phi(s) = g(|s|^2) s, s = K u in R^c. The anisotropic
variant applies g to the eigenvalues of the structure tensor J = sum (K u)(K u)^T (P3 30);
"uncoupled" applies g to each channel separately (for comparisons: not rotation invariant).

The stability facts come from the verifier, applied to g as a diffusivity in convention s2
(so g_max = sup g and g_min = inf g over s2 >= 0): every eigenvalue of g(.) lies in
[g_min, g_max], and with g_min >= 0 the explicit step is Euclidean stable for
tau <= 2 / (g_max sum_l w_l ||K_l||^2) (P3, MATH.md 4); an isotropic scalar g with the
forward-difference gradient also keeps the max-min principle for tau <= h^2 / (4 g_max)
(MATH.md 2). Tensor diffusivities get no max-min principle in general.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

import sympy as sp

from .errors import ParameterError
from .translation import Translation, translate
from .verify import StabilityReport, verify_translation

MODES = ("isotropic", "anisotropic", "uncoupled")

#: operator -> (channels c, ||K||^2 h^p, p): bounds from kernel 1-norms (Young), which are the
#: exact suprema for these stencils on unbounded grids
OPERATORS: dict[str, tuple[int, int, int]] = {
    "gradient": (2, 8, 2),          # forward differences D+x, D+y: 4/h^2 each
    "central_gradient": (2, 2, 2),  # (u_{i+1} - u_{i-1}) / (2h): 1/h^2 each
    "laplacian": (1, 64, 4),        # 5-point stencil, sum |k| = 8/h^2
    "hessian": (4, 34, 4),          # xx, yy: [1, -2, 1] (16/h^4 each); xy = yx: the centred
                                    # mixed difference, corners +-1/4 (1/h^4 each)
    "gaussian_gradient": (2, 2, 2),  # central gradient of a Gaussian-smoothed image (the
                                     # normalised Gaussian has 1-norm 1)
    "www": (10, 8, 2),  # Weickert-Welk-Wickert (2013), P3 section 6: five gradient vectors per
                        # 2 x 2 cell; ||K||^2 = 8 (1 - alpha) / h^2 exactly (times 1 - alpha)
}


@dataclass(frozen=True, slots=True)
class CoupledReport:
    """What fluxact.coupled says about a coupled nonlinearity."""

    formula: str
    mode: str
    operator: str
    channels: int
    rotation_invariant: bool
    why: str
    g_min: float | sp.Expr
    g_max: float | sp.Expr
    eigenvalues_in_range: bool  # 0 <= g_min: every eigenvalue of g(.) in [0, g_max]
    norm_K2: float  # sum_l w_l ||K_l||^2 (bound)
    tau_euclid: float | sp.Expr | None
    tau_maxmin: float | sp.Expr | None
    reasons: tuple[tuple[str, str], ...]
    parameters: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["reasons"] = dict(self.reasons)
        return {k: sp.sstr(v) if isinstance(v, sp.Basic) else v for k, v in data.items()}

    def __str__(self) -> str:
        def fmt(x: object) -> str:
            if x is None:
                return "none"
            if isinstance(x, sp.Basic):
                return sp.sstr(x)
            return f"{x:.6g}" if isinstance(x, float) else str(x)

        lines = [
            f"coupled {self.mode} g = {self.formula} on the {self.operator} "
            f"({self.channels} channel{'s' if self.channels > 1 else ''})",
            f"  rotation invariant: {'yes' if self.rotation_invariant else 'no'} ({self.why})",
            f"  eigenvalues of g in [{fmt(self.g_min)}, {fmt(self.g_max)}]"
            f"{'' if self.eigenvalues_in_range else ': not in [0, g_max]'}",
            "  Euclidean stability: "
            + (f"tau <= {fmt(self.tau_euclid)} = 2/(g_max sum w ||K||^2)"
               if self.tau_euclid is not None else "no guarantee")
            + f", sum w ||K||^2 <= {self.norm_K2:.6g}",
            "  max-min principle: "
            + (f"tau <= {fmt(self.tau_maxmin)}" if self.tau_maxmin is not None
               else "no guarantee"),
        ]
        lines += [f"  {k}: {v}" for k, v in self.reasons]
        return "\n".join(lines)


def coupled(g: object, *, mode: str = "isotropic", operator: str | Sequence[str] = "gradient",
            params: Mapping[str, object] | None = None, convention: str = "s2",
            h: float = 1.0, weights: Sequence[float] | None = None, alpha: float = 0.41
            ) -> CoupledReport:
    """Report on the coupled nonlinearity with diffusivity ``g`` (a formula in s2 = |s|^2, or
    in r with convention "r"; a Translation or catalogue entry of a diffusivity).

    ``mode``: isotropic (g(|s|^2) s, P3 19), anisotropic (g of the structure tensor, P3 30)
    or uncoupled (g per channel). ``operator``: one of OPERATORS, or several (scales / paths
    of a ResNeXt block, P3 36-38) with ``weights`` w_l (default 1 each). ``alpha``: the
    parameter of the www operator, in [0, 1/2] (0.41 as in P3 section 6).
    """
    if mode not in MODES:
        raise ParameterError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    ops = [operator] if isinstance(operator, str) else list(operator)
    unknown = [o for o in ops if o not in OPERATORS]
    if not ops or unknown:
        raise ParameterError(f"unknown operator {(unknown or [''])[0]!r}; use one of "
                             f"{', '.join(OPERATORS)}")
    if not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
        raise ParameterError(f"grid size h must be a positive number, got {h!r}")
    if not (isinstance(alpha, int | float) and 0 <= alpha <= 0.5):
        raise ParameterError(f"alpha of the www operator must be in [0, 1/2], got {alpha!r}")
    w = [1.0] * len(ops) if weights is None else [float(x) for x in weights]
    if len(w) != len(ops) or not all(math.isfinite(x) and x > 0 for x in w):
        raise ParameterError(f"weights must be {len(ops)} positive numbers, got {weights!r}")
    channels = {OPERATORS[o][0] for o in ops}
    if len(channels) != 1:
        raise ParameterError("all operators of a coupled block must have the same channels")
    c = channels.pop()
    t = g if isinstance(g, Translation) else translate(g, "diffusivity", params=params,
                                                       convention=convention)
    if t.input.kind != "diffusivity":
        raise ParameterError(f"a coupled nonlinearity is given by its diffusivity g; got a "
                             f"{t.input.kind}")
    rep: StabilityReport = verify_translation(t)
    norm = sum(wl * OPERATORS[o][1] * (1 - alpha if o == "www" else 1) / h ** OPERATORS[o][2]
               for wl, o in zip(w, ops))
    reasons: dict[str, str] = {}
    if mode == "uncoupled":
        invariant, why = False, ("g acts on each operator channel separately (violates Design "
                                 "Principle 1, P3)")
    elif c == 1 and mode == "isotropic":
        invariant, why = True, "one channel: g(s^2) s of a rotation invariant operator"
    else:
        invariant, why = True, (f"g couples all {c} operator channels through "
                                + ("|s|^2" if mode == "isotropic" else "the structure tensor")
                                + " (Design Principle 1)")
    if any(o == "gradient" for o in ops) and invariant:
        why += "; the forward-difference gradient is rotation invariant only up to O(h)"
    if any(o == "www" for o in ops) and invariant:
        why += "; www is rotation invariant up to O(h^2), best near alpha = 0.41 (P3 section 6)"
    in_range = rep.nonnegative_diffusivity
    g_max = rep.g_max
    finite = not (isinstance(g_max, float) and math.isinf(g_max))
    tau_e = tau_m = None
    if not in_range:
        reasons["euclidean"] = "g < 0 somewhere: an eigenvalue of g(.) leaves [0, g_max]"
    elif not finite:
        reasons["euclidean"] = "g_max is infinite"
    else:
        tau_e = _step(2, g_max, norm)
        if ops == ["gradient"] and mode in ("isotropic", "uncoupled"):
            tau_m = _step(1, g_max, 4 / h**2)  # h^2 / (4 g_max)
        elif ops == ["www"] and mode == "isotropic":
            # the stencil's off-diagonal weights are >= 0 for a scalar g: a convex
            # combination while tau (4 - 2 alpha) g_max / h^2 <= 1
            tau_m = _step(1, g_max, (4 - 2 * alpha) / h**2)
        elif mode == "anisotropic":
            reasons["max-min"] = "tensor diffusivities have no max-min principle in general"
        else:
            reasons["max-min"] = ("the max-min principle is proven for the forward-difference "
                                  "gradient and for www with an isotropic g only")
    return CoupledReport(
        formula=t.input.text, mode=mode, operator="+".join(ops), channels=c,
        rotation_invariant=invariant, why=why, g_min=rep.g_min, g_max=g_max,
        eigenvalues_in_range=in_range, norm_K2=norm, tau_euclid=tau_e, tau_maxmin=tau_m,
        reasons=tuple(sorted(reasons.items())), parameters=rep.parameters)


def _step(numerator: float, g_max: float | sp.Expr, norm: float) -> float | sp.Expr:
    """numerator / (g_max norm), rounded down for numbers; exact in the parameters."""
    if isinstance(g_max, sp.Basic):
        return sp.nsimplify(numerator / norm) / g_max
    if g_max == 0:
        return math.inf
    exact = Fraction(numerator) / (Fraction(g_max) * Fraction(norm))
    value = float(exact)
    return math.nextafter(value, 0.0) if Fraction(value) > exact else value  # never rounded up
