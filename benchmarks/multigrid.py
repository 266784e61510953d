"""Multigrid against CG and the smoother alone on inpainting (issue 17), side by side in one
run on the CPU.

Problems: homogeneous diffusion inpainting (linear) of a test image (a disc and a ramp,
values in [0, 1]) and EED inpainting (Charbonnier, lambda = 0.93, sigma = 0.97, P2 7.2.1) of
the same image scaled to [0, ``--eed-range``] (default 1: mildly nonlinear; 255, an 8-bit
image, makes EED strongly nonlinear), from random masks, on n x n grids. For each solver:
the wall-clock time and the number of fine-grid operator evaluations A(x) to reach
||b - A(u)|| <= 1e-8 ||b||, and the error against the CG reference:

- CG: fluxact.inpainting.solve_cg (lagged diffusivity, each CG solve to 1e-12);
- multigrid: fluxact.multigrid.solve_multigrid (V(2,2)-cycles, damped Jacobi, bilinear
  prolongation, levels down to 8 x 8), without and with the FMG start;
- Jacobi: the smoother alone (damped Jacobi), stopped at 20 times multigrid's operator
  evaluations if it has not converged by then ("-" in the table).

Also the V-cycle's residual reduction per cycle (the mean over cycles 7-12) for the grid
sizes, which should not grow with n. Not a test: run it by hand from the repository root,

    .venv/bin/python benchmarks/multigrid.py [--quick] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluxact.activation import diffusivity_to_torch  # noqa: E402
from fluxact.inpainting import Inpainting, solve_cg  # noqa: E402
from fluxact.multigrid import (  # noqa: E402
    Smoother,
    cycle,
    hierarchy,
    levels_for,
    solve_multigrid,
    stack,
    unstack,
)
from fluxact.tensor import TensorDiffusion  # noqa: E402
from tests.blocks.test_multigrid import Counting, rate  # noqa: E402

TOL = 1e-8


def image(n: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, n, dtype=torch.float64),
                          torch.linspace(0, 1, n, dtype=torch.float64), indexing="ij")
    disc = ((x - 0.45) ** 2 + (y - 0.55) ** 2 < 0.09).to(torch.float64)
    return (0.6 * disc + 0.4 * x * y).reshape(1, 1, n, n)


EED_RANGE = [1.0]


def problem(n: int, density: float, model: str, seed: int = 0) -> Inpainting:
    g = torch.Generator().manual_seed(seed)
    c = (torch.rand((1, 1, n, n), generator=g) < density).to(torch.float64)
    if model == "homogeneous":
        return Inpainting(image(n), c, TensorDiffusion(None, "linear"))
    charbonnier = diffusivity_to_torch("1/sqrt(1 + s2/lam**2)", params={"lam": 0.93}).double()
    return Inpainting(EED_RANGE[0] * image(n), c, TensorDiffusion(charbonnier, "eed", sigma=0.97))


def jacobi(p: Inpainting, budget: int, counter: Counting) -> tuple[torch.Tensor, bool]:
    smoother = Smoother(p, 1)
    b = p.rhs
    zero = torch.zeros_like(b)
    x = p.clamp_known(zero)
    state = stack(x, zero, b, p.residual(x))
    target = TOL * float(b.norm())
    while counter.count < budget:
        state = smoother(state)
        if float(unstack(state)[3].norm()) <= target:
            return unstack(state)[0], True
    return unstack(state)[0], False


def v_cycle_rate(p: Inpainting, cycles: int = 12) -> float:
    return rate(p, cycle(hierarchy(p, levels_for(p.image.shape[-2:])), "V",
                         prolongation="bilinear"), cycles)


def run(sizes: list[int], density: float, threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"\n### {threads} thread{'s' if threads > 1 else ''}, mask density {density:.0%}\n")
    print("| problem | n | solver | time (s) | fine-grid A(x) | max error vs CG / max f "
          "| converged |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model in ("homogeneous", "eed"):
        for n in sizes:
            p = problem(n, density, model)
            t = time.perf_counter()
            reference, info = solve_cg(p, tol=1e-12, outer_tol=1e-12)
            cg_time = time.perf_counter() - t
            print(f"| {model} | {n} | CG ({info.outer} lagged, {info.inner} CG iterations) | "
                  f"{cg_time:.3f} | {info.inner}* | 0 "
                  f"| {info.converged} |")
            ops = 0
            for fmg in (False, True):
                p = problem(n, density, model)
                counter = Counting(p)
                t = time.perf_counter()
                u, info = solve_multigrid(p, levels=levels_for((n, n)), tol=TOL, fmg=fmg)
                elapsed = time.perf_counter() - t
                ops = max(ops, counter.count)
                error = float((u - reference).abs().max()) / float(p.image.max())
                print(f"| {model} | {n} | multigrid V(2,2){' with FMG start' if fmg else ''} "
                      f"({info.outer} cycles) | {elapsed:.3f} | {counter.count} | {error:.1e} | "
                      f"{info.converged} |")
            p = problem(n, density, model)
            counter = Counting(p)
            t = time.perf_counter()
            u, converged = jacobi(p, 20 * ops, counter)
            elapsed = time.perf_counter() - t
            error = float((u - reference).abs().max()) / float(p.image.max())
            print(f"| {model} | {n} | damped Jacobi alone | {elapsed:.3f}"
                  f"{'' if converged else ' (stopped)'} | {counter.count} | {error:.1e} | "
                  f"{converged} |")
    print("\n(*) CG: its iterations, one product with the reduced matrix L_uu each\n")
    print("| n | V-cycle residual reduction per cycle (homogeneous) | (EED) |")
    print("| --- | --- | --- |")
    for n in sizes:
        print(f"| {n} | {v_cycle_rate(problem(n, density, 'homogeneous')):.3f} | "
              f"{v_cycle_rate(problem(n, density, 'eed')):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 64 and 128 only")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--eed-range", dest="eed_range", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    args = parser.parse_args()
    EED_RANGE[0] = args.eed_range
    sizes = args.sizes or ([64, 128] if args.quick else [64, 128, 256])
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads available; EED image range [0, {args.eed_range:g}]")
    for threads in args.threads:
        run(sizes, args.density, threads)


if __name__ == "__main__":
    main()
