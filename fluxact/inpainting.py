"""Diffusion inpainting (P2 29): the equation, its residual and a reference solver.

Given an image f known where the binary mask c is 1, the inpainted u solves (P2 29)

    (1 - c) div(D grad u) - c (u - f) = 0,

D the diffusion tensor of EED (fluxact.tensor: D = g(grad u_sigma grad u_sigma^T), P2
7.2.1), or D = I for homogeneous diffusion inpainting (``model="homogeneous"``, the linear
case), with reflecting boundaries. With L(v) = K^T D(v) K = -div(D(v) grad) (the www stencil,
symmetric positive semidefinite for every D) it reads A(u) = b with

    A(u) = c u + (1 - c) L(u) u,     b = c f,     r = b - A(u) = P2 29's left-hand side,

the form the multigrid solvers of fluxact.multigrid take (P2 24). ``Inpainting.residual`` is
r, ``Inpainting.loss`` its mean absolute value (the training loss of P2 7.2.2).

The reference solver (``solve_cg``, P2 Fig. 8's "CG solver"): lagged diffusivity. D is
frozen at the current u (D_k = D(u_k)); with the known pixels as Dirichlet data, the unknown
ones x solve L_uu(D_k) x = -L_uk(D_k) f, a principal submatrix of a symmetric positive
semidefinite matrix, positive definite when every region of unknown pixels reaches a known
one through positive diffusivities (g > 0 on the values that occur, a nonempty mask): CG
applies. Outer iterations stop when u changes by at most ``outer_tol`` (relative, in the
Euclidean norm); each CG solve stops at the relative residual ``tol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .multigrid import SolveInfo, levels_for, restrict, solve_multigrid
from .runtime import StabilityError
from .tensor import TensorDiffusion, value_at_zero
from .timestep import positive

MODELS = ("eed", "homogeneous")
#: P2 7.2.1's EED inpainting parameters: Charbonnier's lambda and the pre-smoothing scale
LAMBDA, SIGMA = 0.93, 0.97


class Inpainting(torch.nn.Module):
    """The inpainting problem A(u) = b on one grid (module docstring).

    ``image`` (B, C, H, W): f (only its values where the mask is 1 matter); ``mask``
    (B or 1, 1, H, W): c, 0 or 1; ``diffusion``: the TensorDiffusion whose A(D) = K^T D K is
    L, on its grid of spacing h (model "eed", or "linear" for D = I).
    """

    def __init__(self, image: torch.Tensor, mask: torch.Tensor,
                 diffusion: TensorDiffusion) -> None:
        super().__init__()
        if image.dim() != 4 or mask.dim() != 4 or mask.shape[1] != 1 or (
                mask.shape[2:] != image.shape[2:]) or mask.shape[0] not in (1, image.shape[0]):
            raise StabilityError(f"the mask must be (1 or B, 1, H, W) for an image (B, C, H, W); "
                                 f"got {tuple(mask.shape)} for {tuple(image.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise StabilityError("the mask must be binary: 1 where the image is known, 0 where "
                                 "it is inpainted")
        if min(image.shape[2:]) < 2:
            raise StabilityError(f"every axis needs at least 2 pixels, got {tuple(image.shape)}")
        self.register_buffer("image", image)
        self.register_buffer("mask", mask.to(image.dtype))
        self.diffusion = diffusion

    @property
    def rhs(self) -> torch.Tensor:
        """b = c f."""
        return self.mask * self.image

    def tensor(self, u: torch.Tensor) -> Any:
        """The structure tensor D is made of at u (the lagged tensor of a fixed point)."""
        return self.diffusion.tensor(u)

    def laplacian(self, u: torch.Tensor, tensor: Any = None) -> torch.Tensor:
        """L(u) u = -div(D grad u), D from ``tensor`` or from u."""
        return self.diffusion.apply(u, tensor)

    def operator(self, u: torch.Tensor, tensor: Any = None) -> torch.Tensor:
        """A(u) = c u + (1 - c) L u."""
        c = self.mask
        return c * u + (1 - c) * self.laplacian(u, tensor)

    def diagonal(self, tensor: Any) -> torch.Tensor:
        """The diagonal of A with D frozen: 1 on known pixels, L's diagonal on the others."""
        c = self.mask
        return c + (1 - c) * self.diffusion.diagonal(tensor)

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """r = b - A(u) = (1 - c) div(D grad u) - c (u - f): P2 29's left-hand side."""
        return self.rhs - self.operator(u)

    def loss(self, u: torch.Tensor) -> torch.Tensor:
        """The mean absolute residual (P2 7.2.2's training loss: no ground truth needed)."""
        return self.residual(u).abs().mean()

    def coarse(self) -> Inpainting:
        """The problem on the grid of spacing 2h (P2 7.2.2): 2 x 2 cells (half a cell at an
        odd border), a coarse pixel known where any of its fine pixels is, f the mean of the
        known ones there; the same diffusivity and sigma (in units of length)."""
        c = self.mask
        known = restrict(c)
        image = restrict(c * self.image) / torch.where(known > 0, known, torch.ones_like(known))
        mask = (known > 0).to(c.dtype)
        d = self.diffusion
        return Inpainting(image, mask, TensorDiffusion(
            d.g, d.model, sigma=d.sigma, rho=d.rho, h=2 * d.h, alpha=d.operator.alpha,
            coherence_alpha=d.coherence_alpha))

    def clamp_known(self, u: torch.Tensor) -> torch.Tensor:
        """u with f on the known pixels."""
        return torch.where(self.mask > 0, self.image, u)


def cg(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, x: torch.Tensor, *,
       tol: float, max_iter: int) -> tuple[torch.Tensor, int, bool]:
    """Conjugate gradients for the symmetric positive (semi)definite ``apply``: x with
    ||rhs - apply(x)|| <= tol ||rhs|| (or max_iter iterations), the iterations taken and
    whether the tolerance was met."""
    r = rhs - apply(x)
    target = tol * float(rhs.norm())
    p, rr = r.clone(), float((r * r).sum())
    for k in range(max_iter):
        if rr ** 0.5 <= target:
            return x, k, True
        q = apply(p)
        pq = float((p * q).sum())
        if not pq > 0:  # a direction of zero curvature: the system is singular there
            return x, k, False
        step = rr / pq
        x = x + step * p
        r = r - step * q
        rr_new = float((r * r).sum())
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, max_iter, rr ** 0.5 <= target


def solve_cg(problem: Inpainting, u: torch.Tensor | None = None, *, tol: float = 1e-10,
             outer_tol: float = 1e-8, max_outer: int = 200, max_cg: int = 20_000,
             progress: Callable[[int, float], None] | None = None
             ) -> tuple[torch.Tensor, SolveInfo]:
    """The lagged-diffusivity CG reference solution of ``problem`` (module docstring), from u
    (default: the mean of the known values on the unknown pixels). ``progress(k, change)``
    is called after each outer iteration."""
    c = problem.mask
    if not bool((c > 0).any()):
        raise StabilityError("the mask has no known pixel: there is nothing to inpaint from")
    if u is None:
        known = (c * problem.image).sum(dim=(2, 3), keepdim=True)
        mean = known / c.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        u = mean.expand_as(problem.image)
    u = problem.clamp_known(u)
    free = 1 - c
    inner = 0
    linear = problem.diffusion.model == "linear"
    for k in range(1, max_outer + 1):
        tensor = problem.tensor(u)
        known = c * problem.image
        rhs = -free * problem.laplacian(known, tensor)
        x, its, solved = cg(lambda v, t=tensor: free * problem.laplacian(free * v, t), rhs,
                            free * u, tol=tol, max_iter=max_cg)
        inner += its
        new = known + free * x
        change = float((new - u).norm() / new.norm().clamp_min(1e-300))
        u = new
        if progress is not None:
            progress(k, change)
        if not solved:  # the frozen system was not solved: more lagged solves would not be
            return u, SolveInfo(k, inner, float(problem.loss(u)), False)
        if linear or change <= outer_tol:
            return u, SolveInfo(k, inner, float(problem.loss(u)), True)
    return u, SolveInfo(max_outer, inner, float(problem.loss(u)), False)


SOLVERS = ("cg", "multigrid")


@dataclass(frozen=True, slots=True)
class InpaintRun:
    """What ``inpaint`` did: the output (the input's shape, float64), the solver and its
    SolveInfo (None for a network)."""

    output: np.ndarray
    model: str
    solver: str
    info: SolveInfo | None
    known: float  # the fraction of known pixels

    def summary(self) -> str:
        what = f"{self.model.upper() if self.model == 'eed' else self.model} inpainting"
        if self.info is None:
            return f"{what} by a network ({self.known:.1%} of the pixels known)"
        i = self.info
        steps = (f"{i.outer} lagged-diffusivity iterations, {i.inner} CG iterations"
                 if self.solver == "cg" else f"{i.outer} multigrid cycles")
        status = "converged" if i.converged else "NOT converged (the tolerance was not met)"
        return (f"{what}, {self.known:.1%} of the pixels known: {steps}, {status}; mean "
                f"|residual of P2 29| = {i.residual:.3g}")


def as_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The binary mask c (1 = known) of an image of spatial ``shape``: an array of bools, or
    of numbers in [0, 1], known where >= 1/2; uint8 and uint16 masks (the pixel types of mask
    images) with values above 1 are read as fractions of their type's maximum (0 and 255 in
    an 8-bit mask). Refused (SignalError) unless it has the image's shape, is finite, within
    [0, 1], and has at least one known pixel."""
    from .denoising import SignalError

    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise SignalError(f"the mask must hold numbers, got dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise SignalError(f"the mask has shape {m.shape}, the image {tuple(shape)}: give one "
                          f"mask value per pixel")
    if m.dtype.kind == "u" and m.dtype.itemsize <= 2 and m.size and m.max() > 1:
        m = m / np.iinfo(m.dtype).max
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise SignalError("the mask has values that are not finite (nan or inf)")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise SignalError(f"the mask's values must be in [0, 1] (1 = known), got "
                          f"{m.min():g} to {m.max():g}")
    c = (m >= 0.5).astype(np.float64)
    if not c.any():
        raise SignalError("the mask has no known pixel (no value >= 1/2): there is nothing "
                          "to inpaint from")
    return c


def inpaint_run(image: Any, mask: Any, nonlinearity: Any = "charbonnier",
                kind: str | None = None, *, params: Any = None, model: str = "eed",
                sigma: float = SIGMA, solver: Any = "cg", tol: float = 1e-8,
                channel_axis: int | None = None, levels: int | None = None,
                progress: bool | None = None, convention: str | None = None) -> InpaintRun:
    """``inpaint`` with a record of what it did (InpaintRun)."""
    from .denoising import SignalError, _channel_axis, as_signal, progress_bar

    if model not in MODELS:
        raise StabilityError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    if isinstance(solver, str) and solver not in SOLVERS:
        raise StabilityError(f"unknown solver {solver!r}; use one of {', '.join(SOLVERS)}, or "
                             "a trained network (a torch module)")
    if not isinstance(solver, str | torch.nn.Module):
        raise StabilityError(f"solver must be 'cg', 'multigrid' or a torch module, got "
                             f"{type(solver).__name__}")
    tol = positive(tol, "tol")
    if tol >= 1:
        raise StabilityError(f"tol is a relative tolerance and must be below 1, got {tol!r}")
    sigma = positive(sigma, "sigma")
    if levels is not None and solver != "multigrid":
        raise StabilityError("levels= is the number of multigrid grids: use it with "
                             "solver='multigrid'")
    channel_axis = _channel_axis(channel_axis)
    a = as_signal(image, channel_axis)
    if channel_axis is not None:
        a = np.moveaxis(a, channel_axis, 0)
    grid = a.shape[1:] if channel_axis is not None else a.shape
    if len(grid) != 2:
        raise SignalError(f"inpainting runs on 2D images (with a channel axis for colour), "
                          f"got {len(grid)}D data of shape {a.shape}")
    c = as_mask(mask, grid)
    f = torch.from_numpy(a).reshape(1, -1, *grid)
    cm = torch.from_numpy(c).reshape(1, 1, *grid)
    default = isinstance(nonlinearity, str) and nonlinearity == "charbonnier"
    if model == "homogeneous":
        if params or kind is not None or convention is not None or not default:
            raise StabilityError("homogeneous inpainting has D = I and no diffusivity: drop the "
                                 "formula, kind= and params=")
        diffusion = TensorDiffusion(None, "linear")
    else:
        from .activation import as_activation

        if default and kind is None and params is None:
            params = {"lam": LAMBDA}  # P2 7.2.1
        g = as_activation(nonlinearity, kind, role="diffusivity", params=params,
                          convention=convention).clone().to(torch.float64)
        g0 = value_at_zero(g)
        if not g0 > 0:
            raise StabilityError(f"EED inpainting needs g(0) > 0 (diffusion along edges fills "
                                 f"the image in); this diffusivity has g(0) = {g0:.6g}")
        diffusion = TensorDiffusion(g, "eed", sigma=sigma)
    problem = Inpainting(f, cm, diffusion)
    bar = None if isinstance(solver, torch.nn.Module) else progress_bar(
        progress, unit="iteration" if solver == "cg" else "cycle", desc="fluxact inpaint")
    report = None if bar is None else (lambda k, value: bar.update())
    with torch.no_grad():
        if isinstance(solver, torch.nn.Module):
            weights = next(iter(solver.parameters()), None)
            like = {} if weights is None else {"dtype": weights.dtype, "device": weights.device}
            u = solver((f * cm).to(**like), cm.to(**like))
            info, name = None, type(solver).__name__
            if isinstance(u, torch.Tensor):
                u = u.detach().cpu()
        elif solver == "cg":
            u, info = solve_cg(problem, tol=tol, outer_tol=tol, progress=report)
            name = "cg"
        else:
            
            u, info = solve_multigrid(problem, tol=tol, progress=report, levels=(
                levels_for(grid) if levels is None else levels))
            name = "multigrid"
    if bar is not None:
        bar.close()
    if not isinstance(u, torch.Tensor) or u.shape != f.shape:
        raise StabilityError(f"the network returned {getattr(u, 'shape', type(u).__name__)}; "
                             f"it must return the image's shape {tuple(f.shape)}")
    if not bool(torch.isfinite(u).all()):
        raise StabilityError("the inpainted image is not finite")
    out = u.detach().to(torch.float64).reshape(a.shape).numpy()
    if channel_axis is not None:
        out = np.moveaxis(out, 0, channel_axis)
    return InpaintRun(output=out, model=model, solver=name, info=info, known=float(c.mean()))


def inpaint(image: Any, mask: Any, nonlinearity: Any = "charbonnier", kind: str | None = None,
            **options: Any) -> np.ndarray:
    """Inpaint ``image`` (2D, or with ``channel_axis``) from the pixels where ``mask`` is
    1 (P2 29). ``model``: "eed" (default: D = g(grad u_sigma grad u_sigma^T), ``nonlinearity``
    its diffusivity, by default Charbonnier with lambda = 0.93 and ``sigma`` = 0.97 as in P2
    7.2.1) or "homogeneous" (D = I). ``solver``: "cg" (lagged diffusivity with conjugate
    gradients, the reference), "multigrid" (FAS: FMG start and V-cycles,
    fluxact.multigrid, ``levels`` grids) or a trained network (a torch module called as
    net(f * c, c) on (1, C, H, W) and (1, 1, H, W) tensors). ``tol``: the solvers' relative
    tolerance. ``progress``: a bar on a terminal by default. Returns a float64 array of the
    image's shape."""
    return inpaint_run(image, mask, nonlinearity, kind, **options).output
