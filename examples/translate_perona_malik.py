"""Translate the Perona-Malik diffusivity into a regulariser, a shrinkage function and an
activation (P1 Table 3), and print the values of all four at a few points.

Run: python examples/translate_perona_malik.py
"""

import fluxact

t = fluxact.translate("exp(-r**2/(2*lam**2))", kind="diffusivity")
print(t)  # symbolic in lam

numeric = fluxact.translate("exp(-r**2/(2*lam**2))", kind="diffusivity", params={"lam": 1.0})
print("\n   r        g        Psi        S       Phi")
for r in (0.0, 0.5, 1.0, 2.0, 4.0):
    row = [numeric.numeric(kind)(r) for kind in fluxact.KINDS]
    print(f"{r:4.1f}  " + "  ".join(f"{v:8.5f}" for v in row))

# The activation is the flux of the diffusion step u <- u - tau K^T Phi(K u)  (P2 11).
print("\nactivation:", numeric.activation)
