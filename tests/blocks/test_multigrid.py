"""Multigrid as U-nets (fluxact/multigrid.py, issue 17 part 2): one FAS two-grid cycle of
the four-channel modules against a plain FAS two-grid cycle written here, FAS with a linear A
against linear multigrid, V-cycle rates that do not grow with the grid, fewer fine-grid
operations than the smoother alone, nonlinear FAS on EED inpainting against the CG
reference, and the walk of the FMG level order (P2 Fig. 9)."""

from __future__ import annotations

import math

import pytest

from fluxact.activation import diffusivity_to_torch
from fluxact.inpainting import Inpainting, solve_cg
from fluxact.multigrid import (
    P2_ORDER,
    FASRestriction,
    FullMultigrid,
    Smoother,
    TwoGridFAS,
    cycle,
    hierarchy,
    levels_for,
    prolong,
    restrict,
    solve_multigrid,
    stack,
    unstack,
)
from fluxact.runtime import StabilityError
from fluxact.tensor import TensorDiffusion

torch = pytest.importorskip("torch")
F64 = torch.float64


def _problem(n: int, density: float, model: str = "linear", seed: int = 0) -> Inpainting:
    g = torch.Generator().manual_seed(seed)
    f = torch.rand((1, 1, n, n), generator=g, dtype=F64)
    c = (torch.rand((1, 1, n, n), generator=g) < density).to(F64)
    if model == "linear":
        return Inpainting(f, c, TensorDiffusion(None, "linear"))
    charbonnier = diffusivity_to_torch("1/sqrt(1 + s2/lam**2)", params={"lam": 0.93}).double()
    return Inpainting(f, c, TensorDiffusion(charbonnier, "eed", sigma=0.97))


def _jacobi(p: Inpainting, x, rhs, sweeps: int, omega: float = 0.8):
    """Damped Jacobi for A(x) = rhs, D frozen at the start, known rows solved exactly."""
    tensor = p.tensor(x)
    for _ in range(sweeps):
        defect = rhs - p.operator(x, tensor)
        step = torch.where(p.mask > 0, defect, omega * defect / p.diagonal(tensor))
        x = x + step
    return x


def _plain_fas(fine: Inpainting, coarse: Inpainting, x, b, nu: int, coarse_sweeps: int):
    """One FAS two-grid cycle (P2 24-26) written out: presmooth, r = b - A(x), y = R x,
    coarse solve of A^H(x^H) = A^H(y) + R r from y, x += P(x^H - y), postsmooth."""
    x = _jacobi(fine, x, b, nu)
    r = b - fine.operator(x)
    y = restrict(x)
    xc = _jacobi(coarse, y, coarse.operator(y) + restrict(r), coarse_sweeps)
    x = x + prolong(xc - y, x.shape[-2:])
    return _jacobi(fine, x, b, nu)


def test_two_grid_module_is_the_plain_fas_cycle():
    fine = _problem(24, 0.2, "eed")
    coarse = fine.coarse()
    b = fine.rhs
    x0 = torch.rand_like(b)
    module = TwoGridFAS(Smoother(fine, 2), Smoother(coarse, 7), Smoother(fine, 2))
    out = module(stack(x0, torch.zeros_like(b), b, torch.zeros_like(b)))
    expected = _plain_fas(fine, coarse, x0, b, 2, 7)
    torch.testing.assert_close(unstack(out)[0], expected, rtol=1e-13, atol=1e-13)
    # the residual channel is b - A(x) of the result, y and b pass through
    _, y, b_out, r = unstack(out)
    torch.testing.assert_close(r, b - fine.operator(expected), rtol=1e-12, atol=1e-12)
    assert not bool(y.any()) and torch.equal(b_out, b)


def test_restriction_is_p2s_block_matrix():
    x, r = torch.rand(1, 1, 8, 8, dtype=F64), torch.rand(1, 1, 8, 8, dtype=F64)
    junk = torch.rand_like(x)
    for start, first in (("zero", torch.zeros(1, 1, 4, 4, dtype=F64)), ("restricted", None)):
        x0, y, b, r0 = unstack(FASRestriction(start)(stack(x, junk, junk, r)))
        torch.testing.assert_close(y, restrict(x))
        torch.testing.assert_close(b, restrict(r))
        torch.testing.assert_close(x0, restrict(x) if first is None else first)
        assert not bool(r0.any())
    with pytest.raises(StabilityError, match="unknown start"):
        FASRestriction("middle")
    # the trainable restriction starts as the mean (odd sizes too) and trains
    learned = FASRestriction(trainable=True).double()
    odd = torch.rand(2, 3, 7, 9, dtype=F64)
    torch.testing.assert_close(learned.restrict(odd), restrict(odd))
    learned.restrict(odd).square().sum().backward()
    assert learned.weight.grad is not None and bool(learned.weight.grad.any())


def test_fas_with_a_linear_operator_is_linear_multigrid():
    """Homogeneous inpainting: the FAS two-grid cycle equals the correction scheme
    (coarse error equation A^H e = R r solved from e = 0, x += P e) to rounding (P2 6)."""
    fine = _problem(32, 0.1)
    coarse = fine.coarse()
    b = fine.rhs
    x0 = torch.rand_like(b)
    fas = TwoGridFAS(Smoother(fine, 3), Smoother(coarse, 10), Smoother(fine, 3))
    out = unstack(fas(stack(x0, torch.zeros_like(b), b, torch.zeros_like(b))))[0]
    x = _jacobi(fine, x0, b, 3)
    e = _jacobi(coarse, torch.zeros_like(restrict(x)), restrict(b - fine.operator(x)), 10)
    linear = _jacobi(fine, x + prolong(e, x.shape[-2:]), b, 3)
    torch.testing.assert_close(out, linear, rtol=1e-12, atol=1e-12)


def rate(problem: Inpainting, module, cycles: int) -> float:
    """The mean residual reduction per application of ``module`` over the last half of
    ``cycles`` applications (the asymptotic rate)."""
    b = problem.rhs
    zero = torch.zeros_like(b)
    state = stack(problem.clamp_known(zero), zero, b, zero)
    norms = []
    for _ in range(cycles):
        state = module(state)
        norms.append(float(problem.residual(unstack(state)[0]).norm()))
    half = cycles // 2
    return (norms[-1] / norms[half - 1]) ** (1 / (cycles - half))


def test_v_cycle_rate_does_not_grow_with_the_grid():
    rates = {}
    for n in (32, 64, 128):
        problem = _problem(n, 0.05, seed=n)
        rates[n] = rate(problem, cycle(hierarchy(problem, levels_for((n, n), 4)), "V",
                                       prolongation="bilinear"), 12)
    assert max(rates.values()) < 0.6, rates
    assert rates[128] <= rates[32] * 1.25, rates


class Counting:
    """Counts the fine grid's operator evaluations (one per sweep and one per residual)."""

    def __init__(self, problem: Inpainting) -> None:
        self.count = 0
        original = problem.operator

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        problem.operator = counted


def test_multigrid_needs_fewer_fine_grid_operations_than_the_smoother():
    problem = _problem(64, 0.03, seed=7)
    reference, _ = solve_cg(problem, tol=1e-13)
    counter = Counting(problem)
    u, info = solve_multigrid(problem, levels=5, tol=1e-9, fmg=False)
    multigrid_ops = counter.count
    assert info.converged and float((u - reference).abs().max()) <= 1e-7
    counter.count = 0
    smoother = Smoother(problem, 1)
    b = problem.rhs
    zero = torch.zeros_like(b)
    start = problem.clamp_known(zero)
    state = stack(start, zero, b, problem.residual(start))
    target = 1e-9 * float(b.norm())
    while float(unstack(state)[3].norm()) > target and counter.count < 10 * multigrid_ops:
        state = smoother(state)
    assert counter.count >= 3 * multigrid_ops, (counter.count, multigrid_ops)


def test_nonlinear_fas_converges_to_the_cg_reference_on_eed_inpainting():
    problem = _problem(48, 0.2, "eed", seed=2)
    reference, info = solve_cg(problem, tol=1e-13, outer_tol=1e-13)
    assert info.converged
    for kind in ("V", "W"):
        u, info = solve_multigrid(problem, levels=3, kind=kind, tol=1e-11)
        assert info.converged
        assert float((u - reference).abs().max()) <= 1e-8


class _Recorder(torch.nn.Module):
    """A solver that records its level and the state's grid, and smooths once."""

    def __init__(self, level: int, log: list, problem: Inpainting) -> None:
        super().__init__()
        self.level, self.log, self.smoother = level, log, Smoother(problem, 1)

    def forward(self, state):
        self.log.append((self.level, tuple(state.shape[-2:])))
        return self.smoother(state)


def test_fmg_walks_p2s_level_order():
    problem = _problem(16, 0.2)
    problems = hierarchy(problem, 3)
    log: list = []
    fmg = FullMultigrid(problems, [_Recorder(k, log, p) for k, p in enumerate(problems)])
    state = fmg()
    sizes = {0: (16, 16), 1: (8, 8), 2: (4, 4)}
    assert log == [(k, sizes[k]) for k in P2_ORDER]
    assert state.shape == (1, 4, 1, 16, 16)
    # with V-cycles as the solvers FMG approaches the solution
    solvers = [cycle(problems[k:], "V") for k in range(3)]
    x = unstack(FullMultigrid(problems, solvers)())[0]
    assert float(problem.residual(x).norm()) < 0.05 * float(problem.rhs.norm())
    for bad in ((2, 0), (1, 2, 1), (0, 1, 3)):
        with pytest.raises(StabilityError, match="order"):
            FullMultigrid(problems, solvers, bad)
    with pytest.raises(StabilityError, match="below 2 pixels"):
        hierarchy(problem, 5)
    assert math.isfinite(float(x.sum()))


def test_trainable_fmg_network_shares_one_solver_per_grid():
    """P2 7.2.2-7.2.3: three ConvSolvers for the 11 solver visits of P2's order, every one
    reached by the loss's gradient; the single-grid network's output has the image's shape."""
    from fluxact.multigrid import ConvSolver, FMGNetwork, SingleGridNetwork

    charbonnier = diffusivity_to_torch("1/sqrt(1 + s2/lam**2)", params={"lam": 0.93}).double()

    def problem(masked, mask):
        return Inpainting(masked, mask, TensorDiffusion(charbonnier, "eed", sigma=0.97))

    net = FMGNetwork(problem, layers=3, channels=4).double()
    one = sum(p.numel() for p in ConvSolver(1, 3, 4).parameters())
    assert sum(p.numel() for p in net.parameters()) == 3 * one
    learned = FMGNetwork(problem, layers=3, channels=4, trainable_restriction=True)
    assert sum(p.numel() for p in learned.parameters()) == 3 * one + 4
    g = torch.Generator().manual_seed(4)
    f = torch.rand((2, 1, 16, 16), generator=g, dtype=F64)
    c = (torch.rand((2, 1, 16, 16), generator=g) < 0.2).to(F64)
    u = net(f * c, c)
    assert u.shape == f.shape
    problem(f * c, c).loss(u).backward()
    for solver in net.solvers:
        grads = [p.grad for p in solver.parameters()]
        assert all(gr is not None and bool(torch.isfinite(gr).all()) for gr in grads)
        assert any(bool(gr.any()) for gr in grads)
    single = SingleGridNetwork(problem, layers=3, channels=4).double()
    assert single(f * c, c).shape == f.shape
    with pytest.raises(StabilityError, match="odd"):
        ConvSolver(kernel=4)
    colour = FMGNetwork(problem, layers=2, channels=3, image_channels=3).double()
    rgb = torch.rand((1, 3, 16, 16), generator=g, dtype=F64)
    assert colour(rgb * c[:1], c[:1]).shape == rgb.shape
