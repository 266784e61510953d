"""Explicit nonlinear diffusion on a pixel grid of any dimension: signals, images, volumes.

u (batch, channels, n_1, ..., n_d) with grid spacing h_i along axis i. The forward difference
along axis i, (d_i u)_p = (u_{p+e_i} - u_p) / h_i, lives on the edge from pixel p to its
neighbour; a reflecting boundary has no edge across it (no flux leaves the image), a periodic
one wraps round. K = (d_1, ..., d_d) and the step is u <- u - tau K^T F with the fluxes F:

- ``coupling="isotropic"`` (the Perona-Malik model u_t = div(g(|grad u|^2) grad u), rotation
  invariant up to the discretisation): at each pixel p, s2_p = sum_i (d_i u)_p^2 over the
  edges leaving p forward (a missing edge counts 0), and F_i,p = g(s2_p) (d_i u)_p;
- with ``sigma`` (isotropic; the regularised Perona-Malik model of Catte, Lions, Morel and
  Coll 1992, u_t = div(g(|grad u_sigma|^2) grad u)): s2_p from u_sigma, u smoothed by a
  Gaussian of standard deviation sigma (``fluxact.operators.smooth``, mirrored at a
  reflecting boundary), the flux still g d_i u: the same bound and max-min principle below,
  since every edge's diffusivity is still in [0, g_max];
- ``coupling="uncoupled"``: F_i = Phi(d_i u) on each edge, one axis at a time (medpy's and
  SimpleITK's classic scheme; with Phi(r) = g(r^2) r, medpy's ``anisotropic_diffusion`` at unit
  spacing);
- ``coupling="anisotropic"`` (P3 30, on d axes): at each pixel the gradient vector s_c,p =
  ((d_1 u_c)_p, ..., (d_d u_c)_p) of each channel c from the edges leaving p forward (0 where
  none), the structure tensor J_p = sum_c s_c,p s_c,p^T, and the flux vector
  F_c,p = g(J_p) s_c,p, whose component i lies on the edge leaving p along axis i. g(J) has
  the eigenvalues g(nu) of J's eigenvalues nu >= 0, so it is symmetric with spectrum in
  [0, g_max]: across an edge in any channel (a large nu) diffusion stops in that direction
  only. With one channel (or ``couple_channels=False``) J = s s^T and g(J) s = g(|s|^2) s,
  the isotropic flux. Its operator u -> K^T P^T G P K u (P places edge values at pixels,
  G = diag of the g(J_p)) is symmetric positive semidefinite with norm <= g_max ||K||^2: the
  Euclidean bound below holds; the max-min principle does not (g(J) has off-diagonal
  entries of either sign), so only stability="euclidean" is offered.

(K^T F)_p = -sum_i (F_i,p - F_i,p-e_i) / h_i. Time step (MATH.md 2), with g_max = sup g
(isotropic) or sup Phi(r)/r (uncoupled) and g >= 0: the new u_p is

    u_p + tau sum_i [c_i,p (u_{p+e_i} - u_p) - c_i,p-e_i (u_p - u_{p-e_i})] / h_i^2,

c the edge's diffusivity in [0, g_max]; the weight of u_p is at least
1 - 2 tau g_max sum_i 1/h_i^2, so for

    tau <= 1 / (2 g_max sum_i 1/h_i^2)

every new value is a convex combination of u_p and its 2d neighbours: the max-min principle
(linf). The same tau is the Euclidean bound 2 / (g_max ||K||^2) with ||K||^2 <= 4 sum_i 1/h_i^2
(each d_i has norm <= 2/h_i). In 2D at h = 1 it is medpy's "gamma <= 0.25"; in 3D 1/6.

In floating point a convex combination can round past its neighbours' range: under the linf
bound each step is clamped to it (``stencil_range``), which changes nothing in exact
arithmetic (docs/blocks.md, the guarantees in floating point). No SymPy here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .coupling import matrix_function
from .operators import BOUNDARIES, clamp_finite, padded, smooth, stencil_range
from .runtime import Activation, StabilityError, step
from .timestep import TimeStep, positive

COUPLINGS = ("isotropic", "uncoupled", "anisotropic")
NOTIONS = ("linf", "euclidean")


def spacing_of(spacing: object, dims: int | None = None) -> tuple[float, ...]:
    """Grid spacing per axis: one positive number for every one of ``dims`` axes, or one per
    axis (a sequence, whose length is the number of axes when ``dims`` is None)."""
    if isinstance(spacing, torch.Tensor) and spacing.numel() != 1:
        spacing = spacing.tolist()
    if isinstance(spacing, int | float | torch.Tensor) and not isinstance(spacing, bool):
        if dims is None:
            raise StabilityError("give the spacing of each axis (a tuple, first axis first): "
                                 "its length is the number of axes")
        return (positive(spacing, "grid spacing"),) * dims
    try:
        values = tuple(spacing)  # type: ignore[arg-type]
    except TypeError:
        raise StabilityError(f"spacing must be a number or one number per axis, got "
                             f"{spacing!r}") from None
    if dims is None and not 1 <= len(values) <= 3:
        raise StabilityError(f"grids have 1, 2 or 3 axes; got a spacing of {len(values)}")
    if dims is not None and len(values) == 1:
        values = values * dims
    if dims is not None and len(values) != dims:
        raise StabilityError(f"spacing has {len(values)} entries for {dims} axes; give one per "
                             f"axis (first axis first, as the array's shape) or one number")
    return tuple(positive(h, f"spacing of axis {i}") for i, h in enumerate(values))


class GridDiffusion(torch.nn.Module):
    """One explicit step on a d-dimensional grid (see the module docstring).

    ``act``: an Activation; for ``coupling="isotropic"`` the diffusivity g as a function of
    s2 = |grad u|^2 (``fluxact.activation.diffusivity_to_torch``), for "uncoupled" the flux
    Phi. ``spacing``: h_i per axis (its length is d). ``stability``: "linf" (default: the
    max-min principle, clamped in floating point) or "euclidean" (the same bound, no clamp).
    ``tau``, ``unsafe``, ``safety`` as for every block (fluxact.timestep.TimeStep).
    ``couple_channels`` (isotropic flux): one diffusivity g(sum_c |grad u_c|^2) for all
    channels of a pixel (colour images, P3 29: an edge in any channel stops diffusion in all;
    each channel's step is still a convex combination of its own neighbours, so the bound and
    the max-min principle per channel are unchanged), or one per channel. ``sigma``
    (isotropic only): the diffusivity from the Gaussian-smoothed u (Catte et al.), in units of
    length. ``fused`` (the per-axis flux on 3 axes): each step one generated Triton kernel
    (fluxact/kernels/step3d.py) with gradients; None: on CUDA tensors, True: always (also
    under TRITON_INTERPRET=1), False: never.
    """

    def __init__(self, act: Activation, *, coupling: str = "isotropic",
                 spacing: Sequence[float] = (1.0, 1.0), boundary: str = "reflect",
                 stability: str = "linf", tau: float | None = None, unsafe: bool = False,
                 safety: float = 1.0, couple_channels: bool = True,
                 sigma: float | None = None, fused: bool | None = None) -> None:
        super().__init__()
        if not isinstance(act, Activation):
            raise StabilityError(f"expected an Activation, got {type(act).__name__}")
        if coupling not in COUPLINGS:
            raise StabilityError(f"unknown coupling {coupling!r}; use one of "
                                 f"{', '.join(COUPLINGS)}")
        if sigma is not None and coupling != "isotropic":
            raise StabilityError("sigma= (the regularised Perona-Malik model) needs the isotropic "
                                 "flux: its diffusivity g(|grad u_sigma|^2) is one per pixel")
        if boundary not in BOUNDARIES:
            raise StabilityError(f"unknown boundary {boundary!r}; use one of "
                                 f"{', '.join(BOUNDARIES)}")
        if stability == "sign":
            raise StabilityError("sign stability (no new sign changes) is a 1D notion; use "
                                 "'linf' or 'euclidean' for images and volumes")
        if stability not in NOTIONS:
            raise StabilityError(f"unknown stability {stability!r}; use one of "
                                 f"{', '.join(NOTIONS)}")
        if coupling == "anisotropic" and stability != "euclidean":
            raise StabilityError(
                "the anisotropic flux g(J) grad u has no max-min principle (g(J) has "
                "off-diagonal entries of either sign); use stability='euclidean', whose bound "
                "2/(g_max ||K||^2) it keeps")
        if not isinstance(couple_channels, bool):
            raise StabilityError(f"couple_channels must be True or False, got "
                                 f"{couple_channels!r}")
        # what the flux needs: g(s2) for the isotropic flux, Phi for the per-axis one (their
        # g_max bound different functions: Activation.role)
        self._role = "activation" if coupling == "uncoupled" else "diffusivity"
        act.check_role(self._role)
        self.act, self._coupling, self.boundary, self.stability = act, coupling, boundary, stability
        self.couple_channels = couple_channels
        self.spacing = spacing_of(spacing)
        self.sigma = None if sigma is None else positive(sigma, "sigma")
        self.policy = TimeStep(tau, unsafe=unsafe, safety=safety)
        self.fused = fused
        if fused and not self._fusable():
            raise StabilityError("fused=True runs the per-axis flux (coupling='uncoupled') on 3 "
                                 "axes with an activation whose backend is not 'torch'; use "
                                 "fused=False")
        if not unsafe:
            self.time_step()  # refuses now, with the verifier's reason

    def _fusable(self) -> bool:
        """Whether the fused 3D step applies (decided at each call: ``act`` may be replaced)."""
        return (self.coupling == "uncoupled" and self.dims == 3
                and self.act.backend != "torch")

    def _use_fused(self, u: torch.Tensor) -> bool:
        if self.fused is False or not self._fusable():
            return False
        return bool(self.fused) or u.is_cuda

    @property
    def dims(self) -> int:
        return len(self.spacing)

    @property
    def coupling(self) -> str:
        return self._coupling

    def norm2_bound(self) -> float:
        """||K||^2 <= 4 sum_i 1/h_i^2."""
        return 4 * math.fsum(1 / h**2 for h in self.spacing)

    def tau_max(self) -> torch.Tensor:
        self.act.check_role(self._role)  # also after self.act was replaced
        g = self.act.g_max()
        return 2 / (g * self.norm2_bound()).clamp_min(1e-300)

    def time_step(self) -> torch.Tensor:
        return self.policy(self.tau_max, self.stability, detail=lambda: (
            f" = 1/(2 g_max sum_i 1/h_i^2) with g_max = {float(self.act.g_max().detach()):.6g}"
            f" and spacing {self.spacing}"))

    def check(self, u: torch.Tensor) -> None:
        if not isinstance(u, torch.Tensor) or u.dim() != self.dims + 2:
            shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise StabilityError(f"a {self.dims}D grid step takes (batch, channels, "
                                 f"{self.dims} axes); got {shape}")
        if min(u.shape[2:]) < 2:
            raise StabilityError(f"every axis needs at least 2 samples, got {tuple(u.shape)}")

    def fluxes(self, u: torch.Tensor) -> list[torch.Tensor]:
        """F_i on the edges of each axis (n_i - 1 along axis i; n_i when periodic)."""
        return _fluxes(u, self.act, self._layout())

    def _layout(self) -> tuple[Any, ...]:
        return (self.spacing, self.coupling, self.boundary == "periodic", self.couple_channels,
                self.sigma)

    def flux(self, u: torch.Tensor) -> torch.Tensor:
        """K^T F(K u) (the step is u - tau times this)."""
        out = torch.zeros_like(u)
        return self._add(out, u, self.fluxes(u), -1.0)

    def _add(self, out: torch.Tensor, u: torch.Tensor, fluxes: list[torch.Tensor],
             scale: float) -> torch.Tensor:
        """out - scale K^T F, in place: (K^T F)_p = sum_i (F_i,p-e_i - F_i,p) / h_i."""
        periodic = self.boundary == "periodic"
        axes = range(u.dim() - self.dims, u.dim())
        for axis, h, f in zip(axes, self.spacing, fluxes):
            c = scale / h
            if periodic:
                out.add_(f, alpha=c).sub_(torch.roll(f, 1, axis), alpha=c)
            else:
                n = f.shape[axis]
                out.narrow(axis, 0, n).add_(f, alpha=c)
                out.narrow(axis, 1, n).sub_(f, alpha=c)
        return out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        self.check(u)
        tau = self.time_step()
        if self._use_fused(u):  # the same step, one kernel (docstring)
            clamp = self.stability == "linf" and not self.policy.unsafe
            return step(self.act.ops, u, self.act.parameter_vector(), tau,
                        tuple(1 / h for h in self.spacing), self.boundary == "periodic", 3,
                        clamp)
        if tau.requires_grad:  # tau depends on trainable parameters (g_max): keep its gradient
            out = u - tau.to(device=u.device, dtype=u.dtype) * self.flux(u)
        else:  # tau as a float (one synchronisation on CUDA): the update added in place
            out = self._add(u.clone(), u, self.fluxes(u), float(tau))
        if self.stability == "linf" and not self.policy.unsafe:
            lo, hi = stencil_range(u, self.dims, self.boundary == "periodic")
            out = clamp_finite(out, lo, hi)
        return out

    def run(self, u: torch.Tensor, steps: int, *, compiled: bool = False) -> torch.Tensor:
        """``steps`` steps. ``compiled``: each step one fused loop nest from torch.compile (on
        the CPU, C++ from Inductor), for filtering without gradients: Phi as printed without
        its NaN repair, and the result of the whole run checked once: where it is not finite,
        the run is computed again step by step as without ``compiled`` (the same result where
        nothing overflows, up to the compiler's rounding). The first run of a formula, dtype
        and shape compiles (seconds; cached under a private folder, docs/files.md)."""
        if not compiled or self._use_fused(u):  # a fused step is one kernel already
            for _ in range(steps):
                u = self(u)
            return u
        return self._run_compiled(u, steps)

    def _run_compiled(self, u: torch.Tensor, steps: int) -> torch.Tensor:
        self.check(u)
        if self.coupling == "anisotropic":
            raise StabilityError("compiled=True runs the isotropic and per-axis fluxes; the "
                                 "anisotropic one runs eagerly (compiled=False)")
        if torch.is_grad_enabled() and (u.requires_grad or any(
                p.requires_grad for p in self.parameters())):
            raise StabilityError("compiled=True runs without gradients: call it under "
                                 "torch.no_grad(), or train with compiled=False")
        if u.dtype not in (torch.float32, torch.float64):
            raise StabilityError(f"compiled=True computes float32 or float64, not {u.dtype}")
        if not bool(torch.isfinite(u).all()):  # would be computed again: eagerly at once
            return self.run(u, steps)
        tau = self.time_step().detach().to(u.device, u.dtype)
        forward = self.act.ops.torch_forward_raw
        params = self.act.raw_parameters(u.dtype, u.device)
        clamp = self.stability == "linf" and not self.policy.unsafe
        step = _compiled_step()
        out = u
        # one compiled graph per formula, layout, dtype, shape and thread count: more than
        # torch's default of 8 per function (past it, every step ran eagerly)
        with torch._dynamo.config.patch(recompile_limit=max(
                RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)):
            for _ in range(steps):
                out = step(out, tau, params, forward, self._layout(), clamp)
        if not bool(torch.isfinite(out).all()):  # an intermediate left the dtype's range
            return self.run(u, steps)
        return out

    def extra_repr(self) -> str:
        return (f"coupling={self.coupling!r}, spacing={self.spacing}, "
                + (f"sigma={self.sigma:g}, " if self.sigma is not None else "")
                + f"couple_channels={self.couple_channels}, "
                f"boundary={self.boundary!r}, stability={self.stability!r}, "
                f"tau={self.policy.describe()}")


def _fluxes(u: torch.Tensor, phi: Any, layout: tuple[Any, ...]) -> list[torch.Tensor]:
    """F_i on the edges of each axis, with Phi (uncoupled) or g(s2) (isotropic) ``phi``."""
    spacing, coupling, periodic, couple_channels, sigma = layout
    axes = range(u.dim() - len(spacing), u.dim())
    diffs = [_scaled(_forward(u, axis, periodic), 1 / h) for axis, h in zip(axes, spacing)]
    if coupling == "uncoupled":
        return [phi(d) for d in diffs]
    if coupling == "anisotropic" and len(diffs) > 1:
        return _anisotropic(diffs, phi, list(axes), periodic, couple_channels)
    if sigma is not None:  # g from u_sigma (Catte et al.), the flux from u
        smoothed = smooth(u, sigma, spacing, periodic=periodic)
        s2 = _placed_sum([_scaled(_forward(smoothed, axis, periodic), 1 / h) ** 2
                          for axis, h in zip(axes, spacing)], axes, periodic)
    else:
        s2 = _placed_sum([d * d for d in diffs], axes, periodic)
    if couple_channels and s2.shape[1] > 1:
        s2 = s2.sum(dim=1, keepdim=True)  # one g for all channels (P3 29)
    g = phi(s2)
    return [d * (g if periodic else _edges(g, axis)) for axis, d in zip(axes, diffs)]


def _anisotropic(diffs: list[torch.Tensor], g: Any, axes: list[int], periodic: bool,
                 couple_channels: bool) -> list[torch.Tensor]:
    """F_c = g(J) s_c on the edges (module docstring): in 2D by the closed-form
    eigen-decomposition of fluxact.coupling.matrix_function (gradients included), in 3D by
    torch.linalg.eigh (without gradients: its backward divides by differences of
    eigenvalues, which coincide on flat regions)."""
    s = [d if periodic else padded(d, axis, 0, 1) for axis, d in zip(axes, diffs)]
    summed = (1,) if couple_channels else ()

    def total(x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=summed, keepdim=True) if summed else x

    if len(s) == 2:
        a, b, d = total(s[0] * s[0]), total(s[0] * s[1]), total(s[1] * s[1])
        out = list(matrix_function(g, a, b, d, s[0], s[1]))
    else:
        if torch.is_grad_enabled() and any(x.requires_grad for x in s):
            raise StabilityError("the anisotropic flux on 3 axes runs without gradients (its "
                                 "eigen-decomposition has none where eigenvalues coincide); "
                                 "call it under torch.no_grad()")
        vec = torch.stack(s, dim=-1)  # (B, C, *n, d)
        # J / m^2 with m the largest |entry| of the pixel's vectors: eigh sees entries in
        # [0, C d], never an overflowed square (J itself was inf at |u| ~ 1e160 in float64);
        # float32 at least (eigh has no half-precision kernels)
        work = vec if vec.dtype in (torch.float32, torch.float64) else vec.float()
        m = work.abs().amax(dim=-1, keepdim=True)
        m = m.amax(dim=1, keepdim=True) if summed else m
        m = torch.where(m > 0, m, torch.ones_like(m))
        unit = work / m
        J = total(unit.unsqueeze(-1) * unit.unsqueeze(-2))  # (B, 1 or C, *n, d, d)
        if not bool(torch.isfinite(J).all()):
            raise StabilityError("the anisotropic flux met a non-finite gradient (NaN or inf "
                                 "in the data)")
        nu, V = torch.linalg.eigh(J)
        # J >= 0: a negative eigenvalue is rounding; nu m^2 the eigenvalues of J itself
        # (0 * m * m = 0), kept finite and in float32 at least: g is promised finite values
        # for finite inputs only (|grad u|^2 of 0..255 data overflows fp16)
        s2 = (nu.clamp_min(0) * m * m).clamp(max=torch.finfo(work.dtype).max)
        gnu = g(s2)
        coords = (V.transpose(-1, -2) @ work.unsqueeze(-1)).squeeze(-1)  # V^T s
        flux = (V @ (gnu * coords).unsqueeze(-1)).squeeze(-1).to(vec.dtype)
        out = list(flux.unbind(-1))
    return [o if periodic else _edges(o, axis) for axis, o in zip(axes, out)]


def _raw_step(u: torch.Tensor, tau: torch.Tensor, params: torch.Tensor, forward: Any,
              layout: tuple[Any, ...], clamp: bool) -> torch.Tensor:
    """One step u - tau K^T F with the printed Phi ``forward`` (no NaN repair), clamped to
    the stencil's range under the linf bound: what torch.compile fuses."""
    spacing, _, periodic, _, _ = layout
    values = params.unbind()
    fluxes = _fluxes(u, lambda x: forward(x, *values), layout)
    out = u
    for axis, h, f in zip(range(u.dim() - len(spacing), u.dim()), spacing, fluxes):
        f = f * (tau / h)
        # out_p += F_p - F_p-e (functional: in place on views, torch.compile copies for each)
        if periodic:
            out = out + f - torch.roll(f, 1, axis)
        else:
            out = out + padded(f, axis, 0, 1) - padded(f, axis, 1, 0)
    if clamp:
        lo, hi = stencil_range(u, len(spacing), periodic)
        out = clamp_finite(out, lo, hi)
    return out


_COMPILED: list[Any] = []
RECOMPILE_LIMIT = 64


def _compiled_step() -> Any:
    """_raw_step under torch.compile (one wrapper per process: its compiled graphs are cached
    per formula, dtype and shape), the compiler's cache in a private folder."""
    if not _COMPILED:
        from .files import private_compiler_cache

        private_compiler_cache()
        _COMPILED.append(torch.compile(_raw_step, dynamic=False))
    return _COMPILED[0]


def _forward(u: torch.Tensor, axis: int, periodic: bool) -> torch.Tensor:
    """u_{p+e} - u_p on the edges: n - 1 of them along ``axis``, n when periodic."""
    if periodic:
        return torch.roll(u, -1, axis) - u
    return torch.diff(u, dim=axis)


def _scaled(x: torch.Tensor, c: float) -> torch.Tensor:
    """c x, without a pass over x when c is 1 (unit spacing)."""
    return x if c == 1 else x * c


def _edges(x: torch.Tensor, axis: int) -> torch.Tensor:
    """A pixel quantity on the edges leaving each pixel forward along ``axis`` (all but the
    last pixel)."""
    return x.narrow(axis, 0, x.shape[axis] - 1)


def _placed_sum(parts: list[torch.Tensor], axes: Any, periodic: bool) -> torch.Tensor:
    """sum_i of edge quantities placed at the pixel the edge leaves (0 where none leaves)."""
    if periodic or torch.compiler.is_compiling():
        total = parts[0] if periodic else padded(parts[0], next(iter(axes)), 0, 1)
        for axis, p in list(zip(axes, parts))[1:]:
            total = total + (p if periodic else padded(p, axis, 0, 1))
        return total
    shape = list(parts[0].shape)
    first = next(iter(axes))
    shape[first] += 1
    total = parts[0].new_zeros(shape)
    for axis, p in zip(axes, parts):
        total.narrow(axis, 0, p.shape[axis]).add_(p)
    return total


