"""Count random accepted formulas whose generated code gives a NaN (or a wrong value) for Phi
or Phi' at a finite input where the formula is finite (issue 14: "3 of 150 random accepted
formulas give NaN gradients at finite inputs").

Formulas: seeded random compositions (depth 1 to 3) of the building blocks of
tests/codegen/test_values.py (roots, |.|**p, sign, tanh, exp(-u^2), u/(1 + u^2), clamps,
Piecewise, atan), with a factor r where the composition does not start with r. Those fluxact
refuses (a Phi' infinite at 0, ...) are counted apart. Each accepted one runs through the
generated torch code (fluxact.to_torch, backend "torch") in float32 and float64 at 40 points
from -1e6 to 1e6 (0 left out: mpmath.diff's truth at a root's kink is not one); the truth is
the formula in mpmath (40 digits), Phi' by mpmath.diff, as in the tests. Not a test: run it
by hand from the repository root,

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nan_gradients.py [--count 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from fluxact.codegen.errors import CodegenError  # noqa: E402

import fluxact  # noqa: E402
from tests.codegen.test_values import Truth  # noqa: E402

LEAVES = ["r", "Abs(r)", "2*r", "r - 1/2"]
UNARY = [
    "sqrt(Abs({u}))", "Abs({u})**1.5", "sign({u})*sqrt(Abs({u}))", "tanh({u})",
    "exp(-({u})**2)", "({u})/(1 + ({u})**2)", "Min(Max({u}, -1), 1)", "Abs({u})**(1/3)",
    "Piecewise(({u}, Abs(r) < 1), (sign({u})*sqrt(Abs({u})), True))", "atan({u})",
]
POINTS = sorted({s * 10.0 ** k for k in (-30, -6, -3, -1, 0, 1, 3, 6) for s in (1, -1)}
                | {0.5, -0.5, 0.75, -0.75, 1.37, -1.37, 2.0, -2.0, 7.5, -7.5, 0.3, -0.3,
                   1.0 + 2**-20, -1.0 - 2**-20, 1e-8, -1e-8, 0.999, -0.999, 42.0, -42.0})


def formula(rng: random.Random) -> str:
    text = rng.choice(LEAVES)
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(UNARY).format(u=text)
    return text if text.startswith("r") else f"r*({text})"


def check(text: str) -> list[str]:
    """What is wrong with the generated code of ``text``: one entry per bad point."""
    act = fluxact.to_torch(text, "activation", backend="torch")
    truth = Truth(text)
    bad = []
    # rounding in the printed formula (cancellation in fp32) is not counted: an error must
    # exceed rtol |truth| + atol, atol 1e-9 (fp64) or 1e-4 (fp32), to be wrong
    for dtype, rtol, atol in ((torch.float64, 1e-6, 1e-9), (torch.float32, 1e-3, 1e-4)):
        x = torch.tensor(POINTS, dtype=dtype, requires_grad=True)
        y = act(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        for v, got_y, got_g in zip(x.detach().tolist(), y.tolist(), g.tolist()):
            want_y, want_g = truth.value(v), truth.derivative(v)
            for what, got, want in (("Phi", got_y, want_y), ("Phi'", got_g, want_g)):
                if want is None or (dtype == torch.float32 and abs(want) > 3e38):
                    continue
                if not abs(got - want) <= rtol * abs(want) + atol:
                    bad.append(f"{what}({v:g}) = {got!r} in {dtype}, truth {want:.6g}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    accepted = refused = wrong = nan = 0
    seen: set[str] = set()
    start = time.process_time()
    while accepted < args.count:
        text = formula(rng)
        if text in seen:
            continue
        seen.add(text)
        try:
            bad = check(text)
        except (fluxact.FluxactError, CodegenError):
            refused += 1
            continue
        accepted += 1
        if bad:
            wrong += 1
            nan += any("= nan" in b for b in bad)
            print(f"WRONG {text}: {'; '.join(bad[:3])}", flush=True)
    print(f"{accepted} accepted formulas (seed {args.seed}; {refused} refused): {wrong} with a "
          f"wrong Phi or Phi' at some finite point ({nan} of them NaN), "
          f"{time.process_time() - start:.0f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
