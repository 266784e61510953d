"""Coupled 2D diffusion blocks of paper 003 (MATH.md 4), on the torch path.

u (batch, M, H, W) with M image channels; K has c operator channels, each a 2D stencil
applied to every image channel and placed on the pixel grid: the "valid" correlation, padded
with zeros where the stencil does not fit (zero flux across the image boundary). K^T is its
exact transpose. The activation couples channels inside a rotation invariant:

- isotropic (P3 19, 29): Phi(s) = g(sum |s|^2) s, the sum over the c operator channels and,
  with ``couple_images``, over the M image channels;
- anisotropic (P3 30, gradient only): Phi(s_m) = g(J) s_m, J = sum_m s_m s_m^T (2 x 2), g(J)
  from the closed-form eigen-decomposition, written as g(J) = g(nu_2) I + D (J - nu_2 I)
  with D the divided difference (g(nu_1) - g(nu_2)) / (nu_1 - nu_2), and g'(nu) where the
  eigenvalues coincide: no division by zero, no NaN, also for J = 0;
- uncoupled: g(s^2) s per channel (for comparisons: not rotation invariant).

g is a generated module of g(s2) (``fluxact.activation.diffusivity_to_torch``) whose
stability facts are g's range: the time step is tau <= 2 / (g_max ||K||^2) (Euclidean, every
eigenvalue of g(.) in [0, g_max]), or h^2 / (4 g_max) for the max-min principle with the
forward-difference gradient and a scalar g (isotropic or uncoupled). No SymPy here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .runtime import Activation, StabilityError

MODES = ("isotropic", "anisotropic", "uncoupled")


def _stencils(operator: str, h: float) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """(kernel (kh, kw), centre (ci, cj)) per operator channel, float64."""
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    if operator == "gradient":  # forward differences D+x, D+y
        return [(t([[-1.0, 1.0]]) / h, (0, 0)), (t([[-1.0], [1.0]]) / h, (0, 0))]
    if operator == "central_gradient":
        return [(t([[-0.5, 0.0, 0.5]]) / h, (0, 1)), (t([[-0.5], [0.0], [0.5]]) / h, (1, 0))]
    if operator == "laplacian":
        return [(t([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) / h**2, (1, 1))]
    if operator == "hessian":  # (xx, xy, yx, yy), the centred mixed difference
        mixed = t([[0.25, 0.0, -0.25], [0.0, 0.0, 0.0], [-0.25, 0.0, 0.25]]) / h**2
        return [(t([[1.0, -2.0, 1.0]]) / h**2, (0, 1)), (mixed, (1, 1)), (mixed, (1, 1)),
                (t([[1.0], [-2.0], [1.0]]) / h**2, (1, 0))]
    raise StabilityError(f"unknown operator {operator!r}; use {', '.join(OPERATORS)}")


OPERATORS = ("gradient", "central_gradient", "laplacian", "hessian", "gaussian_gradient")


def gaussian_kernel(sigma: float, h: float) -> torch.Tensor:
    """The sampled 1D Gaussian of standard deviation sigma (in units of length), truncated at
    3 sigma and normalised to sum 1 (float64)."""
    radius = max(1, math.ceil(3 * sigma / h))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64) * h
    k = torch.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


class GridOperator(torch.nn.Module):
    """K: u (B, M, H, W) -> (B, M, c, H, W), each channel a stencil on the pixel grid (zero
    where it does not fit); ``adjoint`` is K^T; ``norm2_bound`` the sum of squared kernel
    1-norms (Young): 8/h^2 for the gradient, 2/h^2 for the central and the Gaussian-smoothed
    gradient (smoothing has norm <= 1), 64/h^4 for the Laplacian, 34/h^4 for the Hessian."""

    def __init__(self, operator: str = "gradient", h: float = 1.0, sigma: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
            raise StabilityError(f"grid size h must be a positive number, got {h!r}")
        self.sigma = None
        if operator == "gaussian_gradient":
            if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
                raise StabilityError(f"sigma must be a positive number, got {sigma!r}")
            self.sigma = float(sigma)
            # smoothing: zero-padded 'same' correlation with the symmetric, normalised
            # Gaussian: a symmetric matrix of norm <= 1 (Young), its own transpose
            self.register_buffer("smooth", gaussian_kernel(sigma, h).to(
                torch.get_default_dtype()))
            stencils = _stencils("central_gradient", h)
        else:
            stencils = _stencils(operator, h)
        self.operator, self.h = operator, float(h)
        self.centres = [c for _, c in stencils]
        for k, (w, _) in enumerate(stencils):
            self.register_buffer(f"kernel{k}", w.to(torch.get_default_dtype()))
        self.channels = len(stencils)

    @property
    def kernels(self) -> list[torch.Tensor]:
        return [getattr(self, f"kernel{k}") for k in range(self.channels)]

    def _pads(self, k: torch.Tensor, centre: tuple[int, int]) -> list[int]:
        kh, kw = k.shape
        ci, cj = centre
        return [cj, kw - 1 - cj, ci, kh - 1 - ci]  # F.pad order: left, right, top, bottom

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 4:
            raise StabilityError(f"a 2D block takes (batch, channels, H, W); got shape "
                                 f"{tuple(u.shape)}")
        b, m, hh, ww = u.shape
        need = max(max(k.shape) for k in self.kernels)
        if min(hh, ww) < need:
            raise StabilityError(f"image of size {hh} x {ww} is smaller than the stencil")
        flat = self._smooth(u.reshape(b * m, 1, hh, ww))
        parts = [F.pad(F.conv2d(flat, k.to(device=u.device, dtype=u.dtype)[None, None]),
                       self._pads(k, c))
                 for k, c in zip(self.kernels, self.centres)]
        return torch.cat(parts, 1).reshape(b, m, self.channels, hh, ww)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        b, m, c, hh, ww = v.shape
        total = None
        for j, (k, centre) in enumerate(zip(self.kernels, self.centres)):
            left, right, top, bottom = self._pads(k, centre)
            part = v[:, :, j, top:hh - bottom, left:ww - right].reshape(b * m, 1, hh - top - bottom,
                                                                       ww - left - right)
            y = F.conv_transpose2d(part, k.to(device=v.device, dtype=v.dtype)[None, None])
            total = y if total is None else total + y
        assert total is not None
        return self._smooth(total).reshape(b, m, hh, ww)  # the smoothing is symmetric

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma is None:
            return x
        k = self.smooth.to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        x = F.conv2d(x, k.reshape(1, 1, -1, 1), padding=(r, 0))
        return F.conv2d(x, k.reshape(1, 1, 1, -1), padding=(0, r))

    def norm2_bound(self) -> float:
        """Sum over channels of the squared kernel 1-norms; smoothing has norm <= 1."""
        return float(sum(float(k.double().abs().sum()) ** 2 for k in self.kernels))


class CoupledActivation(torch.nn.Module):
    """Phi on the operator channels (see the module docstring); ``g`` computes g(s2)."""

    def __init__(self, g: Activation, mode: str = "isotropic", couple_images: bool = True
                 ) -> None:
        super().__init__()
        if mode not in MODES:
            raise StabilityError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.g, self.mode, self.couple_images = g, mode, couple_images

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s: (B, M, c, H, W)."""
        if self.mode == "uncoupled":
            return self.g(s * s) * s
        if self.mode == "isotropic":
            dims = (1, 2) if self.couple_images else (2,)
            return self.g((s * s).sum(dim=dims, keepdim=True)) * s
        if s.shape[2] != 2:
            raise StabilityError("the anisotropic activation needs a 2-channel operator (a "
                                 "gradient); use mode='isotropic' for this one")
        sx, sy = s[:, :, 0], s[:, :, 1]
        dims = 1 if self.couple_images else None
        a = (sx * sx).sum(dim=1, keepdim=True) if dims else sx * sx
        bb = (sx * sy).sum(dim=1, keepdim=True) if dims else sx * sy
        d = (sy * sy).sum(dim=1, keepdim=True) if dims else sy * sy
        half = (a - d) / 2
        q = half * half + bb * bb
        positive = q > 0
        root = torch.where(positive, torch.sqrt(torch.where(positive, q, torch.ones_like(q))),
                           torch.zeros_like(q))  # no infinite gradient of sqrt at 0
        mean = (a + d) / 2
        nu1, nu2 = mean + root, mean - root
        g1, g2 = self.g(nu1), self.g(nu2)
        gap = nu1 - nu2  # = 2 root >= 0
        # divided difference; where the eigenvalues (nearly) coincide, g'(nu) instead
        close = gap <= 1e-6 * (1 + mean.abs())
        safe_gap = torch.where(close, torch.ones_like(gap), gap)
        slope = _derivative(self.g, mean)
        dd = torch.where(close, slope, (g1 - g2) / safe_gap)
        # g(J) s = g2 s + dd (J - nu2 I) s
        jx = a * sx + bb * sy - nu2 * sx
        jy = bb * sx + d * sy - nu2 * sy
        return torch.stack([g2 * sx + dd * jx, g2 * sy + dd * jy], dim=2)


def _derivative(g: Activation, x: torch.Tensor) -> torch.Tensor:
    """g'(x) from the generated backward (a value: its own derivative is not propagated, which
    only matters where two eigenvalues coincide)."""
    with torch.enable_grad():
        xd = x.detach().requires_grad_()
        (grad,) = torch.autograd.grad(g(xd).sum(), xd)
    return grad.detach()


class CoupledDiffusionBlock2D(torch.nn.Module):
    """u <- u - tau K^T Phi(K u) with a coupled activation (P3 19, 29, 30), tau from g's range.

    ``g``: an Activation of g(s2) (``fluxact.activation.diffusivity_to_torch``), or a formula
    / Translation / catalogue entry of a diffusivity with ``params`` and ``trainable``.
    ``stability``: "euclidean" (any mode) or "linf" (max-min principle: forward-difference
    gradient with a scalar g, i.e. isotropic without image coupling, or uncoupled). tau as for
    DiffusionBlock: ``safety``, ``tau`` (checked), ``unsafe``.
    """

    def __init__(self, g: Any, *, mode: str = "isotropic", operator: str = "gradient",
                 stability: str = "euclidean", h: float = 1.0, couple_images: bool = True,
                 safety: float = 1.0, tau: float | None = None, unsafe: bool = False,
                 params: dict[str, object] | None = None, trainable: tuple[str, ...] = ()
                 ) -> None:
        super().__init__()
        if not isinstance(g, Activation):
            from .activation import diffusivity_to_torch

            g = diffusivity_to_torch(g, params=params, trainable=trainable)
        self.K = GridOperator(operator, h)
        self.phi = CoupledActivation(g, mode, couple_images)
        if stability not in ("euclidean", "linf"):
            raise StabilityError(f"unknown stability {stability!r}; use 'euclidean' or 'linf'")
        if stability == "linf" and not (operator == "gradient" and (
                mode == "uncoupled" or (mode == "isotropic" and not couple_images))):
            raise StabilityError(
                "the max-min principle is proven for the forward-difference gradient with a "
                "scalar g per image channel (isotropic with couple_images=False, or uncoupled); "
                "use stability='euclidean'")
        if not (0 < safety <= 1):
            raise StabilityError(f"safety must be in (0, 1], got {safety!r}")
        if unsafe and tau is None:
            raise StabilityError("unsafe=True needs an explicit tau=...")
        self.stability, self.safety, self.tau_given, self.unsafe = stability, safety, tau, unsafe
        if not unsafe:
            self.time_step()

    @property
    def g(self) -> Activation:
        return self.phi.g

    def tau_max(self) -> torch.Tensor:
        g_max = self.g.g_max()
        if self.stability == "linf":
            return self.K.h**2 / (4 * g_max).clamp_min(1e-300)
        return 2 / (g_max * self.K.norm2_bound()).clamp_min(1e-300)

    def time_step(self) -> torch.Tensor:
        if self.unsafe:
            return torch.tensor(float(self.tau_given), dtype=torch.float64)
        bound = self.tau_max()
        if self.tau_given is not None:
            if self.tau_given > float(bound.detach()):
                raise StabilityError(
                    f"tau = {self.tau_given:g} breaks the {self.stability} bound tau <= "
                    f"{float(bound.detach())!r}; use a smaller tau, or unsafe=True")
            return torch.tensor(float(self.tau_given), dtype=torch.float64)
        return self.safety * bound

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        return u - tau * self.K.adjoint(self.phi(self.K(u)))


class MultiscaleDiffusionBlock2D(torch.nn.Module):
    """The ResNeXt form of P3 36-38: u <- u - tau sum_l K_l^T Phi_l with K_l = beta_l
    grad_sigma_l (central gradients of Gaussian-smoothed images at the scales ``sigmas``,
    beta_l trainable scale weights) and one activation coupling all scales (Design Principle
    3): isotropic g(sum_l sum_m |K_l u_m|^2) K_l u_m, anisotropic g(sum_{l,m} (K_l u_m)
    (K_l u_m)^T) K_l u_m, or uncoupled. tau = safety * 2 / (g_max sum_l ||K_l||^2) with
    ||K_l||^2 <= beta_l^2 2/h^2, recomputed at every call (beta trains). ``scales``: P3 uses 8
    scales exponentially spaced from 0.4 to 10.
    """

    def __init__(self, g: Any, sigmas: Any = (0.5, 1.0, 2.0), *, mode: str = "isotropic",
                 h: float = 1.0, safety: float = 1.0, params: dict[str, object] | None = None,
                 trainable: tuple[str, ...] = (), beta: float = 1.0) -> None:
        super().__init__()
        if not isinstance(g, Activation):
            from .activation import diffusivity_to_torch

            g = diffusivity_to_torch(g, params=params, trainable=trainable)
        sigmas = [float(x) for x in sigmas]
        if not sigmas:
            raise StabilityError("give at least one scale")
        self.operators = torch.nn.ModuleList(
            [GridOperator("gaussian_gradient", h, sigma) for sigma in sigmas])
        self.beta = torch.nn.Parameter(torch.full((len(sigmas),), float(beta),
                                                  dtype=torch.float64))
        self.phi = CoupledActivation(g, mode, couple_images=True)
        if not (0 < safety <= 1):
            raise StabilityError(f"safety must be in (0, 1], got {safety!r}")
        self.safety = safety
        self.time_step()

    @property
    def g(self) -> Activation:
        return self.phi.g

    def time_step(self) -> torch.Tensor:
        norms = torch.tensor([op.norm2_bound() for op in self.operators], dtype=torch.float64)
        total = (self.beta.double() ** 2 * norms.to(self.beta.device)).sum()
        return self.safety * 2 / (self.g.g_max() * total).clamp_min(1e-300)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, m, hh, ww = u.shape
        beta = self.beta.to(u.dtype)
        s = torch.cat([beta[k] * op(u) for k, op in enumerate(self.operators)], dim=1)
        flux = self.phi(s)  # (B, L*M, 2, H, W): all scales and image channels coupled
        total = torch.zeros_like(u)
        for k, op in enumerate(self.operators):
            total = total + beta[k] * op.adjoint(flux[:, k * m:(k + 1) * m])
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        return u - tau * total
