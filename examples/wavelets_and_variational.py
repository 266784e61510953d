"""One nonlinearity, three numerical methods that agree (MATH.md 3, P1 3.2 and 14-15).

On a noisy piecewise-constant signal:

1. wavelets: one step of shift-invariant Haar shrinkage on the finest scale (orthonormal
   Haar, the shrinkage S on the detail coefficients, averaged over both shifts, periodic;
   written here in NumPy) equals one explicit diffusion step u - tau D+^T Phi(D+ u) with
   h = 1, tau = 1/4 and Phi translated from S (P1 3.2);
2. variational: one implicit step of length alpha with Phi = Psi'/2 (fluxact's
   ImplicitBlock, a fixed-point iteration) is the minimiser of
   E(u) = sum (u - f)^2 + alpha sum Psi(D+ u) (P1 14-15): the gradient of E, computed here
   in NumPy from Psi', vanishes there;
3. diffusion: the explicit step with the same Phi is the first step towards it.

It prints the four forms of each nonlinearity, the measured differences, and fails (exit
status 1) when the equivalences do not hold to 1e-10 and 1e-8.

Run: python examples/wavelets_and_variational.py [--length N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import fluxact
from fluxact.blocks import DiffusionBlock, ImplicitBlock
from fluxact.operators import Operator

TH = 20.0  # the soft threshold
LAM = 10.0  # the Charbonnier contrast
ALPHA = 0.2  # the regularisation weight = the implicit time step


def haar_shrinkage(f: np.ndarray, shrink) -> np.ndarray:
    """Shift-invariant Haar shrinkage on the finest scale (periodic signal of even length)."""
    out = np.zeros_like(f)
    for shift in (0, 1):
        g = np.roll(f, -shift)
        approx = (g[0::2] + g[1::2]) / np.sqrt(2)
        detail = shrink((g[0::2] - g[1::2]) / np.sqrt(2))
        back = np.empty_like(g)
        back[0::2] = (approx + detail) / np.sqrt(2)
        back[1::2] = (approx - detail) / np.sqrt(2)
        out += np.roll(back, shift)
    return out / 2


def signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy): 8 constant pieces in [0, 255] with Gaussian noise of sigma 10."""
    rng = np.random.default_rng(seed)
    clean = np.repeat(rng.uniform(0, 255, 8), n // 8)
    return clean, clean + rng.normal(0, 10, clean.size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=256, help="signal length (multiple of 8)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.length < 8 or args.length % 8:
        parser.error(f"--length must be a positive multiple of 8, got {args.length}")
    clean, f = signal(args.length, args.seed)
    u0 = torch.from_numpy(f).reshape(1, 1, -1)

    # 1. wavelets: soft shrinkage S, the explicit step with Phi from S (tau = 1/4, P1 3.2)
    soft = fluxact.translate("Piecewise((0, Abs(r) <= th), (r - th*sign(r), True))",
                             "shrinkage", params={"th": TH})
    print(soft, end="\n\n")
    act = fluxact.to_torch(soft, backend="torch").double()
    step = DiffusionBlock(act, Operator.forward_difference(1, 1, 1.0, "periodic"),
                          tau=0.25).double()
    with torch.no_grad():
        explicit = step(u0).reshape(-1).numpy()
    wavelet = haar_shrinkage(f, lambda c: np.where(np.abs(c) <= TH, 0.0,
                                                   c - TH * np.sign(c)))
    d_wave = float(np.abs(explicit - wavelet).max())

    # 2. variational: Charbonnier Psi, the implicit step of length alpha with Phi = Psi'/2
    charb = fluxact.translate("2*lam**2*sqrt(1 + r**2/lam**2) - 2*lam**2", "regulariser",
                              params={"lam": LAM})
    print(charb, end="\n\n")
    act = fluxact.to_torch(charb, backend="torch").double()
    implicit = ImplicitBlock(act, tau=ALPHA, iterations=5000, tol=1e-14).double()
    with torch.no_grad():
        u = implicit(u0).reshape(-1).numpy()
    d = np.diff(u)
    dpsi = 2 * d / np.sqrt(1 + d**2 / LAM**2)  # Psi'(r), written independently
    grad = 2 * (u - f)
    grad[:-1] -= ALPHA * dpsi
    grad[1:] += ALPHA * dpsi
    d_var = float(np.abs(grad).max())

    # 3. diffusion: one explicit step with the same Phi (stable: tau = 1/4 <= 1/(2 g_max))
    with torch.no_grad():
        diffused = DiffusionBlock(act, tau=ALPHA).double()(u0).reshape(-1).numpy()

    def err(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean((v - clean) ** 2)))

    rows = [("noisy input", f), (f"Haar shrinkage (soft, th = {TH:g})", wavelet),
            ("explicit step, Phi from S, tau = 1/4", explicit),
            (f"explicit step, Charbonnier, tau = {ALPHA:g}", diffused),
            ("implicit step = variational minimiser", u)]
    print(f"{'method':<44}RMS error to the clean signal")
    for label, v in rows:
        print(f"{label:<44}{err(v):8.3f}")
    print(f"\nmax |explicit step - Haar shrinkage|        = {d_wave:.3g}")
    print(f"max |grad E| at the implicit step's result = {d_var:.3g}")
    if not (d_wave <= 1e-10 and d_var <= 1e-8):
        print("FAILED: the equivalences of MATH.md 3 do not hold", file=sys.stderr)
        return 1
    print("ok: wavelet shrinkage = explicit diffusion step; implicit step = variational "
          "minimiser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
