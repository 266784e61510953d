"""Multigrid as U-nets (P2 5-6): FAS two-grid cycles on four channels, V- and W-cycles and
full multigrid (FMG), with classical smoothers, for problems A(x) = b such as inpainting.

A problem on grid h is an ``Inpainting`` (fluxact.inpainting: A(x) = c x + (1 - c) L(x) x,
or anything with ``operator``, ``diagonal``, ``tensor``, ``mask``, ``rhs``, ``coarse``); its
coarse version on grid 2h is ``problem.coarse()``. The full approximation scheme (P2 24-26;
P2 5.1 prints r = A(x) - b, the sign of 6 and of (25) is r = b - A(x)):

    A^H(x^H) = A^H(y^H) + b^H,   y^H = R x~^h,  b^H = R r^h,  r^h = b^h + A^h(y^h) - A^h(x~^h),
    x~^h <- x~^h + P (x~^H - y^H)                                                     (P2 26)

As a U-net (P2 6, Fig. 4b) every module maps a state of four channels (x, y, b, r) -- the
iteration variable, the nonlinear and the linear right-hand side and the residual -- stacked
as (B, 4, C, H, W). A solver S maps (x0, y, b, .) to (x~, y, b, r~) for A(x) = A(y) + b; the
restriction is the 4 x 4 block matrix with rows (0 0 0 0), (R 0 0 0), (0 0 0 R), (0 0 0 0)
(``start="zero"``: P2 starts the coarse solve at x0^H = 0) or with first row (R 0 0 0)
(``start="restricted"``, classical FAS: x0^H = y^H, so that a coarse solver that only
smooths starts from the restricted approximation); the prolongation has rows (P -P 0 0), 0,
0, 0 and is added to the fine state (the skip connection). R is the mean over 2 x 2 cells, P
nearest neighbour (``restrict``, ``prolong``, P2 7.2.2).

Classical solvers (``Smoother``): damped Jacobi with D frozen at the x a call starts from
(lagged diffusivity; exact on the known pixels, whose rows are the identity), or explicit
diffusion steps of length 1 / (lambda_max ||K||^2), half the Euclidean bound of
fluxact.tensor. With them the
U-net IS a multigrid solver; for a linear A (homogeneous diffusion inpainting) FAS is linear
multigrid (P2 6). No SymPy here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .runtime import StabilityError

SMOOTHERS = ("jacobi", "explicit")
STARTS = ("restricted", "zero")
#: the level order of P2's FMG network on three grids h, 2h, 4h (P2 Fig. 9), as level
#: numbers (0 = finest)
P2_ORDER = (2, 1, 2, 1, 0, 1, 2, 1, 2, 1, 0)


@dataclass(frozen=True, slots=True)
class SolveInfo:
    """What a solver did: outer (lagged-diffusivity or multigrid) iterations, inner CG
    iterations, the final mean absolute residual of P2 29 and whether the tolerance was met."""

    outer: int
    inner: int
    residual: float
    converged: bool


def restrict(x: torch.Tensor) -> torch.Tensor:
    """R: the mean over 2 x 2 cells (over the pixels there are at an odd border)."""
    return F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False)


PROLONGATIONS = ("nearest", "bilinear")


def prolong(x: torch.Tensor, size: Sequence[int], mode: str = "nearest") -> torch.Tensor:
    """P, cut to ``size``: "nearest" (P2 7.2.2) copies each coarse pixel to its 2 x 2 cell;
    "bilinear" interpolates between the coarse cell centres (weights 3/4 and 1/4 per axis,
    the border value repeated beyond the image), which with R's averaging makes the orders of
    the transfers sum to 3 > 2, the classical condition for V-cycles on second-order
    problems whose rate does not grow with the grid (nearest + averaging: 2)."""
    if mode == "nearest":
        up = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    elif mode == "bilinear":
        up = x
        for axis in (-2, -1):
            n = up.shape[axis]
            before = torch.cat([up.narrow(axis, 0, 1), up.narrow(axis, 0, n - 1)], axis)
            after = torch.cat([up.narrow(axis, 1, n - 1), up.narrow(axis, n - 1, 1)], axis)
            even, odd = 0.75 * up + 0.25 * before, 0.75 * up + 0.25 * after
            # interleaved: (.., n, 2, ..) flattened to 2n along the axis
            up = torch.stack([even, odd], axis).flatten(axis - 1, axis) if axis == -1 else (
                torch.stack([even, odd], -2).flatten(-3, -2))
    else:
        raise StabilityError(f"unknown prolongation {mode!r}; use one of "
                             f"{', '.join(PROLONGATIONS)}")
    return up[..., :size[-2], :size[-1]]


def restrict_mask(c: torch.Tensor) -> torch.Tensor:
    """A coarse pixel is known where any pixel of its 2 x 2 cell is (P2 7.2.2)."""
    return F.max_pool2d(c, 2, ceil_mode=True)


def stack(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The state (x, y, b, r) as one tensor (B, 4, C, H, W)."""
    return torch.stack([x, y, b, r], 1)


def unstack(state: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return state.unbind(1)


def fas_rhs(problem: Any, y: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The right-hand side A(y) + b of a solver's system (A(0) = 0 is not computed)."""
    return b if not bool(y.any()) else problem.operator(y) + b


class Smoother(torch.nn.Module):
    """A classical solver on one level: ``steps`` sweeps for A(x) = A(y) + b (module
    docstring), D computed once from the x it starts from; returns the state with x~ and
    r~ = A(y) + b - A(x~) (D from x~)."""

    def __init__(self, problem: Any, steps: int = 2, method: str = "jacobi",
                 omega: float = 0.8) -> None:
        super().__init__()
        if method not in SMOOTHERS:
            raise StabilityError(f"unknown smoother {method!r}; use one of {', '.join(SMOOTHERS)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise StabilityError(f"steps must be a non-negative integer, got {steps!r}")
        if not 0 < omega <= 1:
            raise StabilityError(f"the Jacobi damping omega must be in (0, 1], got {omega!r}")
        self.problem, self.steps, self.method, self.omega = problem, steps, method, omega

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x, y, b, _ = unstack(state)
        p = self.problem
        rhs = fas_rhs(p, y, b)
        known = p.mask > 0
        if self.method == "explicit":
            d = p.diffusion
            step = 1 / float(d.lambda_max() * d.operator.norm2_bound())
        if self.steps:
            tensor = p.tensor(x)  # D lagged: frozen for the sweeps of this call
            if self.method == "jacobi":  # 0 where a zero diagonal leaves a row without an
                diag = p.diagonal(tensor)  # update (a g that vanishes: no diffusion there)
                scale = torch.where(diag > 0, self.omega / torch.where(diag > 0, diag, 1), 0)
            else:
                scale = torch.full_like(x, step)
            scale = torch.where(known, torch.ones_like(scale), scale)  # known rows: exact
            for _ in range(self.steps):
                x = x + scale * (rhs - p.operator(x, tensor))
        return stack(x, y, b, rhs - p.operator(x))


class FASRestriction(torch.nn.Module):
    """(x, y, b, r) -> (x0^H, R x, R r, 0) (P2 Fig. 4b), x0^H = R x or 0 (``start``).
    ``trainable``: R's 2 x 2 weights are parameters, starting at the mean (1/4 each; at an odd
    border the image is extended by its last row or column, so the start is ``restrict``)."""

    def __init__(self, start: str = "restricted", trainable: bool = False) -> None:
        super().__init__()
        if start not in STARTS:
            raise StabilityError(f"unknown start {start!r}; use one of {', '.join(STARTS)}")
        if not isinstance(trainable, bool):
            raise StabilityError(f"trainable must be True or False, got {trainable!r}")
        self.start = start
        self.weight = torch.nn.Parameter(torch.full((1, 1, 2, 2), 0.25)) if trainable else None

    def restrict(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return restrict(x)
        b, c, h, w = x.shape
        x = F.pad(x.reshape(b * c, 1, h, w), (0, w % 2, 0, h % 2), mode="replicate")
        out = F.conv2d(x, self.weight.to(x.dtype), stride=2)
        return out.reshape(b, c, *out.shape[-2:])

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x, _, _, r = unstack(state)
        y, b = self.restrict(x), self.restrict(r)
        x0 = y if self.start == "restricted" else torch.zeros_like(y)
        return stack(x0, y, b, torch.zeros_like(y))


class FASProlongation(torch.nn.Module):
    """(x^H, y^H, b^H, r^H) -> (P x^H - P y^H, 0, 0, 0) on the fine grid (P2 Fig. 4b), to be
    added to the fine state (the skip connection, P2 26); P nearest neighbour (P2) or
    bilinear (``mode``, ``prolong``)."""

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in PROLONGATIONS:
            raise StabilityError(f"unknown prolongation {mode!r}; use one of "
                                 f"{', '.join(PROLONGATIONS)}")
        self.mode = mode

    def forward(self, state: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        x, y, _, _ = unstack(state)
        e = prolong(x, size, self.mode) - prolong(y, size, self.mode)
        zero = torch.zeros_like(e)
        return stack(e, zero, zero, zero)


class TwoGridFAS(torch.nn.Module):
    """One FAS two-grid cycle as a U-net (P2 Fig. 4b): presmoothing, restriction, the
    coarse solver (any module on coarse states: a smoother, or another cycle for V- and
    W-cycles), prolongation added through the skip connection, postsmoothing."""

    def __init__(self, pre: torch.nn.Module, coarse: torch.nn.Module, post: torch.nn.Module,
                 start: str = "restricted", prolongation: str = "nearest") -> None:
        super().__init__()
        self.pre, self.coarse, self.post = pre, coarse, post
        self.restriction = FASRestriction(start)
        self.prolongation = FASProlongation(prolongation)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        state = self.pre(state)
        coarse = self.coarse(self.restriction(state))
        return self.post(state + self.prolongation(coarse, state.shape[-2:]))


class Repeat(torch.nn.Module):
    """``module`` applied ``times`` times (gamma = 2 coarse cycles make a W-cycle)."""

    def __init__(self, module: torch.nn.Module, times: int) -> None:
        super().__init__()
        self.module, self.times = module, times

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            state = self.module(state)
        return state


def hierarchy(problem: Any, levels: int) -> list[Any]:
    """[problem, problem.coarse(), ...]: ``levels`` grids h, 2h, 4h, ...; each needs at least
    2 pixels per axis."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise StabilityError(f"levels must be a positive integer, got {levels!r}")
    shape = tuple(problem.image.shape[-2:])
    if (min(shape) - 1) // 2 ** (levels - 1) < 1:  # ceil(n / 2^(levels-1)) >= 2
        raise StabilityError(f"{levels} levels coarsen a {shape} image below 2 pixels per axis; "
                             f"use at most {levels_for(shape, 2)} levels")
    out = [problem]
    for _ in range(levels - 1):
        out.append(out[-1].coarse())
    return out


def cycle(problems: Sequence[Any], kind: str = "V", *, pre: int = 2, post: int = 2,
          coarsest: int = 50, smoother: str = "jacobi", start: str = "restricted",
          prolongation: str = "nearest") -> torch.nn.Module:
    """The V- (gamma = 1) or W-cycle (gamma = 2) over ``problems`` (finest first), built by
    recursion from TwoGridFAS; the coarsest grid is solved by ``coarsest`` smoothing sweeps."""
    if kind not in ("V", "W"):
        raise StabilityError(f"unknown cycle {kind!r}; use 'V' or 'W'")
    if len(problems) == 1:
        return Smoother(problems[0], coarsest, smoother)
    inner = cycle(problems[1:], kind, pre=pre, post=post, coarsest=coarsest,
                  smoother=smoother, start=start, prolongation=prolongation)
    if kind == "W" and len(problems) > 2:
        inner = Repeat(inner, 2)
    return TwoGridFAS(Smoother(problems[0], pre, smoother), inner,
                      Smoother(problems[0], post, smoother), start, prolongation)


class FullMultigrid(torch.nn.Module):
    """FMG with an explicit level order (P2 7.2.3, Fig. 9: P2_ORDER on three grids).

    ``solvers[l]`` is the solver of level l (0 finest; one module per level, shared by every
    visit, as P2 shares weights per grid). The order is read as a walk over the grids: it
    starts on the coarse problem of its first level (x0 = 0); a move to a grid finer than any
    visited before interpolates the solution (P x, FMG) onto that grid's own problem; a move
    to a coarser grid is an FAS restriction; a move back up is the FAS correction of the state
    it came from. ``problems``: the problem of every level, for the right-hand sides b = c f.
    """

    def __init__(self, problems: Sequence[Any], solvers: Sequence[torch.nn.Module],
                 order: Sequence[int] = P2_ORDER, start: str = "restricted",
                 prolongation: str = "nearest",
                 restriction: FASRestriction | None = None) -> None:
        super().__init__()
        if len(solvers) != len(problems):
            raise StabilityError(f"one solver per level: {len(problems)} levels, "
                                 f"{len(solvers)} solvers")
        order = tuple(order)
        if not order or any(not isinstance(k, int) or not 0 <= k < len(problems)
                            for k in order) or any(abs(a - b) != 1 for a, b in
                                                   zip(order, order[1:])):
            raise StabilityError(f"the order must be levels 0..{len(problems) - 1} moving one "
                                 f"grid at a time, got {order}")
        if order[-1] != 0:
            raise StabilityError(f"the order must end on the finest grid (0), got {order}")
        self.problems, self.order = list(problems), order
        self.solvers = torch.nn.ModuleList(solvers)
        self.restriction = FASRestriction(start) if restriction is None else restriction
        self.prolongation = FASProlongation(prolongation)

    def forward(self, x0: torch.Tensor | None = None) -> torch.Tensor:
        """The final fine state (x, 0, b, r); ``x0`` the start on the first level (zeros)."""
        first = self.order[0]
        p = self.problems[first]
        b = p.rhs
        x = torch.zeros_like(b) if x0 is None else x0
        state = self.solvers[first](stack(x, torch.zeros_like(b), b, torch.zeros_like(b)))
        finest, level, below = first, first, []  # below: the fine states of open corrections
        for nxt in self.order[1:]:
            if nxt < finest:  # a new, finer grid: FMG interpolation of the solution
                p = self.problems[nxt]
                x = prolong(unstack(state)[0], p.rhs.shape[-2:], self.prolongation.mode)
                zero = torch.zeros_like(x)
                state = stack(x, zero, p.rhs, zero)
                finest, below = nxt, []
            elif nxt > level:  # down: FAS restriction, the fine state kept for its correction
                below.append(state)
                state = self.restriction(state)
            else:  # back up: the FAS correction (P2 26)
                fine = below.pop()
                state = fine + self.prolongation(state, fine.shape[-2:])
            level = nxt
            state = self.solvers[level](state)
        return state


def solve_multigrid(problem: Any, u: torch.Tensor | None = None, *, levels: int = 4,
                    kind: str = "V", tol: float = 1e-10, max_cycles: int = 200,
                    pre: int = 2, post: int = 2, smoother: str = "jacobi",
                    prolongation: str = "bilinear", fmg: bool = True, progress: Any = None
                    ) -> tuple[torch.Tensor, SolveInfo]:
    """Solve A(u) = b by an FMG start (coarse to fine, one V-cycle per grid) and then
    ``kind``-cycles until ||r|| <= tol ||b|| (Euclidean norms) or ``max_cycles``. SolveInfo:
    outer = cycles (the FMG start counts as one), inner = fine-grid smoothing sweeps."""
    problems = hierarchy(problem, levels)
    b = problem.rhs
    if not bool((problem.mask > 0).any()):
        raise StabilityError("the mask has no known pixel: there is nothing to inpaint from")
    target = tol * float(b.norm())
    options = {"pre": pre, "post": post, "smoother": smoother, "prolongation": prolongation}
    one = cycle(problems, kind, **options)
    sweeps = pre + post
    if u is not None:
        state = stack(problem.clamp_known(u), torch.zeros_like(b), b, torch.zeros_like(b))
        done = 0
    elif fmg:
        solvers = [cycle(problems[k:], kind, **options) for k in range(levels)]
        state = FullMultigrid(problems, solvers, _fmg_order(levels),
                              prolongation=prolongation)()
        done = 1
    else:
        zero = torch.zeros_like(b)
        state = stack(problem.clamp_known(zero), zero, b, zero)
        done = 0
    residual = float(problem.residual(unstack(state)[0]).norm())
    while residual > target and done < max_cycles:
        state = one(state)
        done += 1
        residual = float(problem.residual(unstack(state)[0]).norm())
        if progress is not None:
            progress(done, residual)
    x = unstack(state)[0]
    return x, SolveInfo(done, done * sweeps, float(problem.loss(x)), residual <= target)


def levels_for(shape: Sequence[int], smallest: int = 8) -> int:
    """Grids for an image of ``shape``: halve while the coarser grid keeps ``smallest``
    pixels per axis (at least one level)."""
    levels, n = 1, min(shape)
    while (n + 1) // 2 >= smallest:
        n, levels = (n + 1) // 2, levels + 1
    return levels


def _fmg_order(levels: int) -> list[int]:
    """Coarsest first, then each finer grid once (the solver of a grid being a cycle down
    from it): [L-1, L-2, ..., 0]."""
    return list(range(levels - 1, -1, -1))


class ConvSolver(torch.nn.Module):
    """A trainable solver for one grid (P2 7.2.2): ``layers`` convolutions of ``channels``
    channels with ReLU between them, on the state (x, y, b, r) and the mask c of the grid
    (4 C + 1 input channels for C image channels), giving the update of x: x~ = x + net(.); then
    r~ = A(y) + b - A(x~) with the grid's problem, as every solver of the U-net returns it.
    ``bind(problem)`` gives the solver of one problem (the weights shared)."""

    def __init__(self, image_channels: int = 1, layers: int = 12, channels: int = 20,
                 kernel: int = 3) -> None:
        super().__init__()
        for name, value, least in (("layers", layers, 2), ("channels", channels, 1),
                                   ("image_channels", image_channels, 1), ("kernel", kernel, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise StabilityError(f"{name} must be an integer >= {least}, got {value!r}")
        if kernel % 2 == 0:
            raise StabilityError(f"kernel must be odd (centred), got {kernel}")
        sizes = [4 * image_channels + 1] + [channels] * (layers - 1) + [image_channels]
        convs: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
            # reflecting boundaries, as the PDE's
            convs.append(torch.nn.Conv2d(a, b, kernel, padding=kernel // 2,
                                         padding_mode="replicate"))
            if k < layers - 1:
                convs.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*convs)

    def update(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, four, c, h, w = state.shape
        inputs = torch.cat([state.reshape(b, four * c, h, w), mask.expand(b, -1, h, w)], 1)
        return self.net(inputs)

    def bind(self, problem: Any) -> torch.nn.Module:
        return _Bound(self, problem)


class _Bound(torch.nn.Module):
    """A ConvSolver on one problem (its operator for the residual, its mask as an input)."""

    def __init__(self, solver: ConvSolver, problem: Any) -> None:
        super().__init__()
        self.solver, self.problem = solver, problem

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x, y, b, _ = unstack(state)
        x = x + self.solver.update(state, self.problem.mask)
        return stack(x, y, b, fas_rhs(self.problem, y, b) - self.problem.operator(x))


class FMGNetwork(torch.nn.Module):
    """P2's trainable full multigrid network (7.2.2-7.2.3): FullMultigrid over ``levels``
    grids in ``order`` (P2_ORDER for three), one ConvSolver per grid shared by all its visits,
    restriction (2 x 2 mean), prolongation (nearest neighbour) and the walk fixed, the coarse
    solves started from 0 (P2 Fig. 4b); ``trainable_restriction``: R's 2 x 2 weights train
    (one R for every grid, starting at the mean). No Dirichlet clamp: the network reproduces
    the known data itself (P2 7.2.2). ``problem(f, c)`` builds the fine problem of a batch
    (the PDE whose residuals the solvers see and whose mean absolute residual is the loss).
    Called as net(f * c, c) -> u."""

    def __init__(self, problem: Any, *, levels: int = 3, order: Sequence[int] = P2_ORDER,
                 image_channels: int = 1, layers: int = 12, channels: int = 20,
                 kernel: int = 3, trainable_restriction: bool = False) -> None:
        super().__init__()
        self.problem, self.levels, self.order = problem, levels, tuple(order)
        self.restriction = FASRestriction("zero", trainable_restriction)
        self.solvers = torch.nn.ModuleList(
            ConvSolver(image_channels, layers, channels, kernel) for _ in range(levels))

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        problems = hierarchy(self.problem(masked, mask), self.levels)
        walk = FullMultigrid(problems, [s.bind(p) for s, p in zip(self.solvers, problems)],
                             self.order, start="zero", prolongation="nearest",
                             restriction=self.restriction)
        return unstack(walk())[0]


class SingleGridNetwork(torch.nn.Module):
    """The single-grid comparison of P2 Fig. 8: one ConvSolver of ``layers`` layers on the
    fine grid (P2: 25 layers, 24 channels, the FMG network's parameter count), applied once to
    the state (0, 0, b, b)."""

    def __init__(self, problem: Any, *, image_channels: int = 1, layers: int = 25,
                 channels: int = 24, kernel: int = 3) -> None:
        super().__init__()
        self.problem = problem
        self.solver = ConvSolver(image_channels, layers, channels, kernel)

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.problem(masked, mask)
        zero = torch.zeros_like(p.rhs)
        return unstack(self.solver.bind(p)(stack(zero, zero, p.rhs, p.rhs)))[0]
