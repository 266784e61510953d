"""28 nonlinearities from robust statistics, sparse penalties, wavelet shrinkage, neural
activations and diffusion, each with its truth derived by hand (the derivation in the comment),
for tests/translator/test_literature.py and benchmarks/verify_catalogue.py.

Truth fields: L and g_max (inf where unbounded), and the verdicts g >= 0, monotone,
antisymmetric. Every parameter has a value; Table 1 with tau = alpha = 1/4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf


@dataclass(frozen=True)
class Case:
    name: str
    formula: str
    kind: str
    L: float
    g_max: float
    nonnegative: bool
    monotone: bool
    antisymmetric: bool
    params: dict[str, float] = field(default_factory=dict)
    convention: str = "r"


CASES = (
    # g = exp(-r^2/2): Phi = r e^{-r^2/2}, Phi' = (1 - r^2) e^{-r^2/2} in [-2e^{-3/2}, 1]
    Case("perona-malik", "exp(-r**2/(2*lam**2))", "diffusivity", 1, 1, True, False, True,
         {"lam": 1}),
    # g(s2) = 1/(1 + s2): Phi = r/(1 + r^2), Phi' = (1 - r^2)/(1 + r^2)^2 in [-1/8, 1]
    Case("perona-malik-rational", "1/(1 + s2/lam**2)", "diffusivity", 1, 1, True, False, True,
         {"lam": 1}, "s2"),
    # Phi = r/sqrt(1 + r^2), Phi' = (1 + r^2)^(-3/2) in (0, 1]
    Case("charbonnier", "1/sqrt(1 + r**2/lam**2)", "diffusivity", 1, 1, True, True, True,
         {"lam": 1}),
    # Phi = r on |r| <= sqrt2, sqrt2 sign r beyond: slopes 1 and 0
    Case("huber", "Piecewise((1, Abs(r) <= sqrt(2)*th), (sqrt(2)*th/Abs(r), True))",
         "diffusivity", 1, 1, True, True, True, {"th": 1}),
    # g = 1 - exp(-C lam^8/r^8) in [0, 1), -> 1 at 0; Phi' = g - 8C/r^8 e^(..) dips below 0
    Case("weickert", "1 - exp(-3.31488/(s2/lam**2)**4)", "diffusivity", 2.3348963, 1, True,
         False, True, {"lam": 1}, "s2"),
    # g = 1/|r| unbounded; Phi = sign r jumps at 0 (from -1 to 1 through 0): monotone
    Case("total-variation", "1/Abs(r)", "diffusivity", INF, INF, True, True, True),
    # Phi = r (1 - r^2)^2 on |r| <= 1: Phi' = (1 - r^2)(1 - 5 r^2) in [-0.8, 1]; g = (1-r^2)^2
    Case("tukey", "Piecewise((r*(1 - r**2/lam**2)**2, Abs(r) <= lam), (0, True))",
         "activation", 1, 1, True, False, True, {"lam": 1}),
    # Psi = r^2/(1 + r^2): Phi = Psi'/2 = r/(1 + r^2)^2, Phi'(0) = 1 = sup |Phi'|
    Case("geman-mcclure", "r**2/(1 + r**2/lam**2)", "regulariser", 1, 1, True, False, True,
         {"lam": 1}),
    # Psi = log(1 + r^2): Phi = r/(1 + r^2)
    Case("cauchy", "lam**2*log(1 + r**2/lam**2)", "regulariser", 1, 1, True, False, True,
         {"lam": 1}),
    # Psi = 1 - exp(-r^2): Phi = r exp(-r^2), Phi' = (1 - 2 r^2) e^{-r^2} in [-2e^{-3/2}, 1]
    Case("welsch", "lam**2*(1 - exp(-r**2/lam**2))", "regulariser", 1, 1, True, False, True,
         {"lam": 1}),
    # Psi = |r| - log(1 + |r|): Psi' = r/(1 + |r|), Phi = r/(2 (1 + |r|)): slope 1/2 at 0
    Case("fair", "c**2*(Abs(r)/c - log(1 + Abs(r)/c))", "regulariser", 0.5, 0.5, True, True,
         True, {"c": 1}),
    # Psi = 2 (sqrt(1 + r^2/2) - 1): Phi = r/(2 sqrt(1 + r^2/2)), Phi'(0) = 1/2
    Case("l1-l2", "2*(sqrt(1 + r**2/2) - 1)", "regulariser", 0.5, 0.5, True, True, True),
    # Psi = log cosh r: Phi = tanh(r)/2
    Case("log-cosh", "log(cosh(r))", "regulariser", 0.5, 0.5, True, True, True),
    # MCP: Phi = (sign r - r/3)/2 on |r| <= 3, 0 beyond: jump at 0, g = 1/(2|r|) - 1/6 >= 0
    Case("mcp", "Piecewise((lam*Abs(r) - r**2/(2*gam), Abs(r) <= gam*lam), (gam*lam**2/2, True))",
         "regulariser", INF, INF, True, False, True, {"lam": 1, "gam": 3}),
    # SCAD (a = 3.7): Phi = sign(r)/2 on 0 < |r| <= 1 (a jump at 0), decreasing to 0 at 3.7
    Case("scad", "Piecewise((lam*Abs(r), Abs(r) <= lam), ((2*a*lam*Abs(r) - r**2 - lam**2)"
         "/(2*(a - 1)), Abs(r) <= a*lam), (lam**2*(a + 1)/2, True))", "regulariser", INF, INF,
         True, False, True, {"lam": 1, "a": 3.7}),
    # log-sum: Phi = sign(r)/(2 (1 + |r|)): jumps up at 0, decreasing on each side
    Case("log-sum", "log(1 + Abs(r)/eps)", "regulariser", INF, INF, True, False, True,
         {"eps": 1}),
    # soft shrinkage: Phi = (r - sqrt2 S(r/sqrt2))/(4 tau) = r on |r| <= sqrt2, sqrt2 sign r
    Case("soft", "sign(r)*Max(0, Abs(r) - th)", "shrinkage", 1, 1, True, True, True,
         {"th": 1}),
    # hard shrinkage: Phi = r on |r| <= sqrt2, 0 beyond: jumps down
    Case("hard", "Piecewise((0, Abs(r) <= th), (r, True))", "shrinkage", INF, 1, True, False,
         True, {"th": 1}),
    # garrote: Phi = r on |r| <= sqrt2, 2/r beyond
    Case("garrote", "r*Max(0, 1 - th**2/r**2)", "shrinkage", 1, 1, True, False, True,
         {"th": 1}),
    # firm (t1 = 2, t2 = 3): S has slope 3 on [2, 3], so Phi' = 1 - 3 = -2 there
    Case("firm", "Piecewise((r*Max(0, t2*(1 - t1/Abs(r))/(t2 - t1)), Abs(r) <= t2), (r, True))",
         "shrinkage", 2, 1, True, False, True, {"t1": 2, "t2": 3}),
    Case("tanh", "tanh(r)", "activation", 1, 1, True, True, True),
    Case("relu", "Max(0, r)", "activation", 1, 1, True, True, False),
    Case("leaky-relu", "Max(r, r/10)", "activation", 1, 1, True, True, False),
    # swish: Phi' = s(r)(1 + r (1 - s(r))), max 1.0998393 at r = 2.3994
    Case("swish", "r/(1 + exp(-r))", "activation", 1.0998393, 1, True, False, False),
    # GELU: Phi' = Phi_N(r) + r phi_N(r), Phi'' = phi_N(r) (2 - r^2): max at r = sqrt2,
    # (1 + erf 1)/2 + 1/(e sqrt(pi)) = 1.1289041452; min at -sqrt2, -0.1289
    Case("gelu", "r*(1 + erf(r/sqrt(2)))/2", "activation", 1.1289041452, 1, True, False,
         False),
    # Mish: Phi' in [-0.1125, 1.0884982]
    Case("mish", "r*tanh(log(1 + exp(r)))", "activation", 1.0884982, 1, True, False, False),
    # softsign: Phi' = 1/(1 + |r|)^2
    Case("softsign", "r/(1 + Abs(r))", "activation", 1, 1, True, True, True),
    # ELU: r for r > 0, e^r - 1 below: Phi' = e^r <= 1, g = (e^r - 1)/r in (0, 1)
    Case("elu", "Piecewise((r, r > 0), (exp(r) - 1, True))", "activation", 1, 1, True, True,
         False),
)
