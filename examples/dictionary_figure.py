"""The dictionary figure: the analogue of P1 Table 2 for the six families of P1 Table 3.

One row per family (constant / Whittaker-Tikhonov / identity, Charbonnier, truncated TV /
Huber / soft, Perona-Malik, truncated BFB / garrote, truncated quadratic / hard), columns
g, Psi, S and Phi (Table 1 with tau = alpha = 1/4, h = 1, lam = th = 1), each panel annotated
by the verifier: g_max, convex or not, the sign condition of S, monotone or not and L.

The script checks the verifier against the statements of P1 section 4.2 and fails (exit
status 1) where they disagree: the identity, Charbonnier and Huber activations are monotone;
Perona-Malik, garrote and hard shrinkage give nonmonotone activations; L = 1 for all but hard
shrinkage, whose activation jumps (L = inf); g_max = 1 everywhere (so tau = 1/4 is sign
stable, P1 16).

Run: python examples/dictionary_figure.py [--out FILE.png]   (needs matplotlib)
For any other formula: fluxact plot EXPR --from KIND --param NAME=VALUE -o out.png
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import fluxact
from fluxact.plotting import dictionary_figure

#: catalogue name -> (row label, monotone activation?, L) as P1 section 4.2 states them
EXPECTED = {
    "linear": ("constant / Whittaker-Tikhonov / identity", True, 1.0),
    "charbonnier": ("Charbonnier", True, 1.0),
    "huber": ("truncated TV / Huber / soft shrinkage", True, 1.0),
    "perona-malik": ("Perona-Malik", False, 1.0),
    "garrote": ("truncated BFB / garrote", False, 1.0),
    "hard": ("truncated quadratic / hard shrinkage", False, math.inf),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out/dictionary_figure.png"))
    args = parser.parse_args()
    rows = []
    for name, (label, _, _) in EXPECTED.items():
        entry = fluxact.lookup(name)
        free = fluxact.translate(entry).free_parameters  # lam or th, or none
        t = fluxact.translate(entry, params=dict.fromkeys(free, 1))
        rows.append((label, t))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _, reports = dictionary_figure(rows, out=args.out)
    print(f"{'family':<44}{'Phi':<13}{'L':>6}{'g_max':>7}  Psi")
    wrong = []
    for (name, (label, monotone, lipschitz)), rep in zip(EXPECTED.items(), reports):
        shape = "monotone" if rep.monotone else "nonmonotone"
        convex = "convex" if rep.regulariser_convex else "nonconvex"
        print(f"{label:<44}{shape:<13}{float(rep.lipschitz):>6g}{float(rep.g_max):>7g}  "
              f"{convex}")
        if (rep.monotone is not monotone or float(rep.lipschitz) != lipschitz
                or float(rep.g_max) != 1.0):
            wrong.append(name)
    print(f"\nwrote {args.out}")
    if wrong:
        print(f"FAILED: the verifier disagrees with P1 section 4.2 on {', '.join(wrong)}",
              file=sys.stderr)
        return 1
    print("ok: monotone, L and g_max as P1 section 4.2 states them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
