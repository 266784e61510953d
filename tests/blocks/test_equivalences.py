"""The equivalences of MATH.md 3, each against an independent computation:

- wavelets (P1 3.2): one explicit step with Phi from a shrinkage function S (tau = 1/4,
  h = 1) equals one step of shift-invariant Haar shrinkage on the finest scale, computed with
  PyWavelets and a NumPy S;
- variational (P1 14-15): the implicit step with Phi = Psi'/2 and tau = alpha is the minimiser
  of sum (u - f)^2 + alpha sum Psi(D+ u), found by scipy.optimize.
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxact
from fluxact.blocks import DiffusionBlock, ImplicitBlock
from fluxact.operators import Operator

torch = pytest.importorskip("torch")
pywt = pytest.importorskip("pywt")
optimize = pytest.importorskip("scipy.optimize")

TH, LAM = 1.3, 2.0
#: name -> (S as formula text, the same S in NumPy, its parameter)
SHRINKAGES = {
    "soft": ("Piecewise((0, Abs(r) <= th), (r - th*sign(r), True))",
             lambda c: np.where(np.abs(c) <= TH, 0.0, c - TH * np.sign(c)), {"th": TH}),
    "garrote": ("Piecewise((0, Abs(r) <= th), (r - th**2/r, True))",
                lambda c: np.where(np.abs(c) <= TH, 0.0, c - TH**2 / np.where(c == 0, 1, c)),
                {"th": TH}),
    "hard": ("Piecewise((0, Abs(r) <= th), (r, True))",
             lambda c: np.where(np.abs(c) <= TH, 0.0, c), {"th": TH}),
    "perona-malik": ("r*(1 - exp(-r**2/lam**2))",
                     lambda c: c * (1 - np.exp(-(c**2) / LAM**2)), {"lam": LAM}),
}


def haar_shrinkage(f: np.ndarray, shrink) -> np.ndarray:
    """Shift-invariant Haar shrinkage on the finest scale: orthonormal Haar, S on the detail
    coefficients, inverse, averaged over the two shifts (periodic)."""
    out = np.zeros_like(f)
    for shift in (0, 1):
        approx, detail = pywt.dwt(np.roll(f, -shift), "haar", mode="periodization")
        out += np.roll(pywt.idwt(approx, shrink(detail), "haar", mode="periodization"), shift)
    return out / 2


@pytest.mark.parametrize("name", sorted(SHRINKAGES))
def test_explicit_step_is_haar_shrinkage(name: str) -> None:
    formula, shrink, params = SHRINKAGES[name]
    t = fluxact.translate(formula, "shrinkage", params=params)  # Table 1 with tau = 1/4
    act = fluxact.to_torch(t, backend="torch").double()
    rng = np.random.default_rng(11)
    for n in (16, 64):
        f = rng.normal(0, 3, n) + np.repeat(rng.normal(0, 5, 4), n // 4)
        expected = haar_shrinkage(f, shrink)
        u = torch.from_numpy(f).reshape(1, 1, n)
        periodic = DiffusionBlock(act, Operator.forward_difference(1, 1, 1.0, "periodic"),
                                  tau=0.25).double()
        got = periodic(u).reshape(n).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
        reflecting = DiffusionBlock(act, tau=0.25).double()  # zero flux at the ends
        got = reflecting(u).reshape(n).detach().numpy()
        np.testing.assert_allclose(got[1:-1], expected[1:-1], rtol=0, atol=1e-10)
        assert not np.allclose(got, f)  # the step did something


def charbonnier(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    psi = 2 * LAM**2 * np.sqrt(1 + r**2 / LAM**2) - 2 * LAM**2
    return psi, 2 * r / np.sqrt(1 + r**2 / LAM**2)


def huber(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inner = np.abs(r) <= np.sqrt(2) * TH
    psi = np.where(inner, r**2, 2 * TH * (np.sqrt(2) * np.abs(r) - TH))
    return psi, np.where(inner, 2 * r, 2 * np.sqrt(2) * TH * np.sign(r))


REGULARISERS = {
    "charbonnier": ("2*lam**2*sqrt(1 + r**2/lam**2) - 2*lam**2", {"lam": LAM}, charbonnier),
    "huber": ("Piecewise((r**2, Abs(r) <= sqrt(2)*th), (2*th*(sqrt(2)*Abs(r) - th), True))",
              {"th": TH}, huber),
}


@pytest.mark.parametrize("name", sorted(REGULARISERS))
def test_implicit_step_is_the_variational_minimiser(name: str) -> None:
    formula, params, psi = REGULARISERS[name]
    alpha = 0.2  # tau = alpha; the fixed-point iteration contracts for tau L ||K||^2 < 1
    t = fluxact.translate(formula, "regulariser", params=params)  # Phi = Psi'/2
    act = fluxact.to_torch(t, backend="torch").double()
    block = ImplicitBlock(act, tau=alpha, iterations=2000, tol=1e-15).double()
    rng = np.random.default_rng(12)
    f = np.repeat(rng.normal(0, 6, 5), 8) + rng.normal(0, 2, 40)

    def energy(u: np.ndarray) -> tuple[float, np.ndarray]:
        d = np.diff(u)
        value, dpsi = psi(d)
        grad = 2 * (u - f)
        grad[:-1] -= alpha * dpsi
        grad[1:] += alpha * dpsi
        return float(np.sum((u - f) ** 2) + alpha * np.sum(value)), grad

    best = optimize.minimize(energy, f, jac=True, method="BFGS",
                             options={"gtol": 1e-12, "maxiter": 10000})
    got = block(torch.from_numpy(f).reshape(1, 1, -1)).reshape(-1).detach().numpy()
    np.testing.assert_allclose(got, best.x, rtol=0, atol=1e-6)
    assert energy(got)[0] <= energy(best.x)[0] + 1e-9
    assert np.abs(got - f).max() > 0.1  # the regulariser did something
