"""A tiny user package that generates its activation kernels at build time and trains one.

    python examples/build_time_kernels/train.py [--out DIR]

1. `fluxact build activations.toml --out DIR/kernels` (what the package's Makefile or build hook
   runs; skipped when `--check` says the files are fresh);
2. import the generated package (it needs torch, triton and fluxact.runtime, not SymPy);
3. fit the contrast lam of the generated Perona-Malik activation to samples of
   Phi(r) = r exp(-r^2/(2*1.7^2)) with gradients from the generated backward.
Ends with a check that fails loudly when lam is not recovered.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the generated package")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fluxact-example-"))

    from fluxact.cli import main as fluxact_main

    spec, kernels = str(HERE / "activations.toml"), str(out / "kernels")
    if fluxact_main(["build", spec, "--out", kernels, "--check"]) != 0:
        assert fluxact_main(["build", spec, "--out", kernels]) == 0
    sys.path.insert(0, str(out))
    kernels_pkg = importlib.import_module("kernels")

    import torch

    torch.manual_seed(0)
    act = kernels_pkg.PeronaMalik(lam=1.0)  # lam is an nn.Parameter
    r = torch.linspace(-6, 6, 401)
    target = r * torch.exp(-r * r / (2 * 1.7**2))
    opt = torch.optim.Adam(act.parameters(), lr=0.05)
    for _ in range(args.steps):
        opt.zero_grad()
        loss = ((act(r) - target) ** 2).mean()
        loss.backward()
        opt.step()
    lam = act.lam.item()
    print(f"generated modules in {kernels}: "
          f"{sorted(p.name for p in Path(kernels).glob('*.py'))}")
    print(f"fitted lam = {lam:.4f} (true 1.7), final loss {loss.item():.2e}")
    if abs(lam - 1.7) > 1e-2:
        raise SystemExit(f"FAILED: lam = {lam} was not recovered")


if __name__ == "__main__":
    main()
