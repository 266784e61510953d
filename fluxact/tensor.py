"""Tensor-driven diffusion on 2D images: edge- and coherence-enhancing diffusion (EED, CED).

u_t = div(D grad u), with a 2 x 2 symmetric positive semidefinite diffusion tensor D at every
point, built from the Gaussian-smoothed image u_sigma (``fluxact.operators.smooth``, mirrored
at the boundary) and held fixed during a step (computed from u at the step's start):

- EED (Weickert 1994; Weickert, Anisotropic Diffusion in Image Processing, 1998, section 5.1;
  P2 7.2.1): D = g(J_0), J_0 = sum_m grad u_sigma,m grad u_sigma,m^T over the image channels
  m (one tensor for all channels, as P3 29-30 couple them). For one channel its eigenvalues
  are g(|grad u_sigma|^2) across the edge (along grad u_sigma) and g(0) along it; g is any
  diffusivity of s2 that fluxact translates (``fluxact.activation.diffusivity_to_torch``);
- CED (Weickert, Coherence-enhancing diffusion filtering, IJCV 31, 1999, eq. 7-8): J_rho =
  K_rho * J_0, the structure tensor integrated over a Gaussian of scale ``rho``, with
  eigenvalues mu1 >= mu2 and coherence kappa = (mu1 - mu2)^2. D has J_rho's eigenvectors,
  the eigenvalue c across the flow (the eigenvector of mu1) and c + (1 - c) (1 - g(kappa) /
  g_max) along it (``coherence_alpha`` c in (0, 1]); c I where mu1 = mu2 (the limit of the
  above since g(0) = g_max is required: the coherence weight 1 - g/g_max is then 0 where the
  structure is isotropic). With g(kappa) = 1 - exp(-C / kappa) this is Weickert's
  c + (1 - c) exp(-C / kappa);
- linear: D = I, homogeneous diffusion (no g; for the linear case of inpainting).

Discretisation (Weickert, Welk and Wickert 2013, the www stencil of
``fluxact.operators.Operator.grid``): K u is five gradient vectors on each 2 x 2 cell of
pixels, D is one tensor per cell (from the mean gradient of u_sigma on the cell), and

    A(D) u = K^T D K u,      the step  u <- u - tau A(D) u.

A(D) = sum over cells and vectors of w_k K_k^T D K_k is symmetric and positive semidefinite
for every field of D >= 0 (x^T A x = sum w_k (K_k x)^T D (K_k x) >= 0), so div(D grad .) =
-A(D) is negative semidefinite; A(D) 1 = 0 (the mean grey value is kept); for D = I it is the
www Laplacian. A constant D per cell gives -h^2 times the www stencil's 3 x 3 discretisation.

Stability: Euclidean only. Every eigenvalue of every D lies in [0, lambda_max] (g_max for EED,
1 for CED) and ||K||^2 = 8 (1 - alpha) / h^2 exactly, so ||A(D)|| <= lambda_max ||K||^2 and for

    tau <= 2 / (lambda_max ||K||^2)

the step's matrix I - tau A(D) is symmetric with eigenvalues in [-1, 1]: ||u|| does not grow
(MATH.md 2), whatever D the image produces. This stencil has no max-min principle for every D
(a tensor with large off-diagonal entries gives negative weights): tensor models keep the
Euclidean notion only; the regularised Perona-Malik model (Catte et al., a scalar g of
|grad u_sigma|^2: ``GridDiffusion(sigma=...)``) keeps the max-min principle. No SymPy here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .coupling import eigen2, matrix_function
from .operators import WWW_ALPHA, Operator, smooth
from .runtime import Activation, StabilityError
from .timestep import TimeStep, positive

MODELS = ("eed", "ced", "linear")
#: CED's smallest eigenvalue and its integration scale (Weickert 1999, section 4)
COHERENCE_ALPHA = 0.001
RHO = 4.0


def value_at_zero(g: Activation) -> float:
    """g(0), evaluated in float64 on the CPU."""
    return float(g(torch.zeros(1, dtype=torch.float64)).detach())


class TensorDiffusion(torch.nn.Module):
    """u <- u - tau K^T D K u for EED or CED on u (batch, channels, H, W) (module docstring).

    ``g``: an Activation of the diffusivity g(s2) (``diffusivity_to_torch``). ``sigma``: the
    pre-smoothing scale (in units of length, grid spacing ``h``); ``rho``: CED's integration
    scale; ``coherence_alpha``: CED's smallest eigenvalue; ``alpha``: the www stencil's
    parameter (in [0, 1/2]). ``tau``, ``unsafe``, ``safety`` as for every block
    (fluxact.timestep.TimeStep): by default tau is the Euclidean bound.
    """

    def __init__(self, g: Activation | None, model: str = "eed", *, sigma: float = 1.0,
                 rho: float | None = None, h: float = 1.0, alpha: float = WWW_ALPHA,
                 coherence_alpha: float = COHERENCE_ALPHA, tau: float | None = None,
                 unsafe: bool = False, safety: float = 1.0, stability: str = "euclidean"
                 ) -> None:
        super().__init__()
        if model not in MODELS:
            raise StabilityError(f"unknown tensor model {model!r}; use one of {', '.join(MODELS)}")
        if model == "linear" and g is not None:
            raise StabilityError("the linear model has D = I and no diffusivity; pass g=None")
        if model != "linear" and not isinstance(g, Activation):
            raise StabilityError(f"{model.upper()} takes a diffusivity g(s2) "
                                 f"(fluxact.activation.diffusivity_to_torch), got "
                                 f"{type(g).__name__}")
        if stability != "euclidean":
            raise StabilityError(
                f"{model.upper()} keeps the Euclidean stability notion only (its stencil has no "
                f"max-min principle for every tensor); got stability={stability!r}: use "
                "'euclidean', or the regularised Perona-Malik model (model='catte') for the "
                "max-min principle")
        if model == "eed" and rho is not None:
            raise StabilityError("rho= (the integration scale) belongs to CED; EED takes sigma= "
                                 "only")
        if g is not None:
            g.check_role("diffusivity")
        self.g, self.model = g, model
        self.sigma = positive(sigma, "sigma")
        self.rho = positive(RHO if rho is None else rho, "rho") if model == "ced" else None
        self.coherence_alpha = positive(coherence_alpha, "coherence_alpha")
        self._check_coherence()
        if model == "ced":
            self._check_ced_g()
        self.operator = Operator.grid("www", h, alpha=alpha)
        self.policy = TimeStep(tau, unsafe=unsafe, safety=safety)
        if not unsafe:
            self.time_step()  # refuses now, with the reason

    @property
    def h(self) -> float:
        return self.operator.spacing

    def lambda_max(self) -> torch.Tensor:
        """The largest eigenvalue any D can have (float64): g_max for EED, 1 for CED (its
        eigenvalues lie in [c, 1] for c in (0, 1], checked again here: the bound must hold
        for the values the block has now) and the linear model."""
        if self.g is not None:
            self.g.check_role("diffusivity")  # also after self.g was replaced
        if self.model == "eed":
            return self.g.g_max()
        if self.model == "ced":
            self._check_coherence()
        return torch.tensor(1.0, dtype=torch.float64)

    def _check_coherence(self) -> None:
        c = self.coherence_alpha
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < c <= 1:
            raise StabilityError(f"coherence_alpha must be in (0, 1], got {c!r}")

    def _check_ced_g(self) -> None:
        """CED needs g(0) = g_max (module docstring)."""
        g0 = value_at_zero(self.g)
        g_max = float(self.g.g_max().detach())
        if not g0 >= g_max * (1 - 1e-12):
            raise StabilityError(
                f"CED needs a diffusivity with g(0) = g_max (its coherence weight 1 - g/g_max "
                f"must vanish where the structure is isotropic); this one has g(0) = {g0:.6g}, "
                f"g_max = {g_max:.6g}: use a decreasing diffusivity such as 1 - exp(-C/s2)")

    def tau_max(self) -> torch.Tensor:
        return 2 / (self.lambda_max() * self.operator.norm2_bound()).clamp_min(1e-300)

    def time_step(self) -> torch.Tensor:
        return self.policy(self.tau_max, "euclidean", detail=lambda: (
            f" = 2/(lambda_max ||K||^2) with lambda_max = {float(self.lambda_max()):.6g} "
            f"and ||K||^2 = 8 (1 - alpha)/h^2 = {float(self.operator.norm2_bound()):.6g}"))

    def check(self, u: torch.Tensor) -> None:
        if not isinstance(u, torch.Tensor) or u.dim() != 4:
            shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise StabilityError(f"{self.model.upper()} takes images (batch, channels, H, W); "
                                 f"got {shape}")
        if min(u.shape[2:]) < 2:
            raise StabilityError(f"every axis needs at least 2 pixels, got {tuple(u.shape)}")

    def tensor(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The structure tensor (a, b, d) = [[a, b], [b, d]] on each cell, (B, 1, H - 1, W - 1)
        each: J_0 from u_sigma's mean gradient on the cell, summed over channels; for CED
        integrated over a Gaussian of scale rho (mirrored at the border). The linear model's D
        does not depend on it: zeros, without smoothing."""
        self.check(u)
        h = self.h
        if self.model == "linear":
            zero = u.new_zeros((u.shape[0], 1, u.shape[2] - 1, u.shape[3] - 1))
            return zero, zero, zero
        us = smooth(u, self.sigma, (h, h))
        top, bottom = us[..., :-1, :], us[..., 1:, :]
        wx = (top[..., 1:] - top[..., :-1] + bottom[..., 1:] - bottom[..., :-1]) / (2 * h)
        wy = (bottom[..., :-1] - top[..., :-1] + bottom[..., 1:] - top[..., 1:]) / (2 * h)
        parts = [(wx * wx).sum(1, keepdim=True), (wx * wy).sum(1, keepdim=True),
                 (wy * wy).sum(1, keepdim=True)]
        if self.rho is not None:
            parts = [smooth(p, self.rho, (h, h)) for p in parts]
        return parts[0], parts[1], parts[2]

    def apply(self, u: torch.Tensor, tensor: Any = None) -> torch.Tensor:
        """A(D) u = K^T D K u = -div(D grad u), with D from the structure tensor ``tensor``
        (``tensor(v)`` of some image v: the lagged tensor of a fixed-point iteration) or from
        u itself."""
        self.check(u)
        s = self.operator(u)  # (B, M, 10, H, W): five (x, y) pairs per cell
        if self.model == "linear":  # D = I
            return self.operator.adjoint(s)
        a, b, d = self.tensor(u) if tensor is None else tensor
        sx, sy = s[:, :, 0::2], s[:, :, 1::2]
        # D on the cells (the top-left pixel of each), 0 where no cell is: K u is 0 there
        a, b, d = (F.pad(t, (0, 1, 0, 1)).unsqueeze(2) for t in (a, b, d))
        ox, oy = self._diffuse(a, b, d, sx, sy)
        out = torch.stack([ox, oy], dim=3).reshape(s.shape)
        return self.operator.adjoint(out)

    def diffusion_tensor(self, tensor: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's entries (D_xx, D_xy, D_yy) on each cell for the structure tensor ``tensor``
        (``tensor(u)``): D applied to the unit vectors."""
        a, b, d = tensor
        one, zero = torch.ones_like(a), torch.zeros_like(a)
        dxx, dxy = self._diffuse(a, b, d, one, zero)
        return dxx, dxy, self._diffuse(a, b, d, zero, one)[1]

    def diagonal(self, tensor: Any) -> torch.Tensor:
        """The diagonal of A(D) = K^T D K, (B, 1, H, W): for each cell, each of K's gradient
        vectors (k_x, k_y) and each of the cell's four pixels p, the coefficients (w_x, w_y) of
        u_p in it add w_k (w_x, w_y) D (w_x, w_y)^T to A_pp (the weights are in the kernels)."""
        dxx, dxy, dyy = self.diffusion_tensor(tensor)
        b, _, h1, w1 = dxx.shape
        out = dxx.new_zeros((b, 1, h1 + 1, w1 + 1))
        weights = self.operator.weights
        for kx, ky in zip(weights[0::2], weights[1::2]):
            kx, ky = kx.reshape(2, 2), ky.reshape(2, 2)
            for i in range(2):
                for j in range(2):
                    wx, wy = float(kx[i, j]), float(ky[i, j])
                    if wx or wy:
                        out[..., i:i + h1, j:j + w1] += (dxx * wx * wx + 2 * wx * wy * dxy
                                                         + dyy * wy * wy)
        return out

    def _diffuse(self, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, sx: torch.Tensor,
                 sy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D s for the vectors s = (sx, sy), D the model's tensor of J = [[a, b], [b, d]]."""
        if self.model == "linear":
            return sx, sy
        if self.model == "eed":
            return matrix_function(self.g, a, b, d, sx, sy)
        nu1, nu2, x1, y1, _, close = eigen2(a, b, d)
        c = self.coherence_alpha
        # kappa where the eigenvalues differ (elsewhere c I; g is not evaluated at kappa = 0,
        # where a derivative may not exist, so no NaN reaches a gradient)
        kappa = torch.where(close, torch.ones_like(nu1), (nu1 - nu2) ** 2)
        along = c + (1 - c) * (1 - self.g(kappa) / self._g_max())
        across_part = c * (x1 * sx + y1 * sy)  # (v1 . s)
        along_part = along * (x1 * sy - y1 * sx)  # (v2 . s), v2 = (-y1, x1)
        ox = torch.where(close, c * sx, across_part * x1 - along_part * y1)
        oy = torch.where(close, c * sy, across_part * y1 + along_part * x1)
        return ox, oy

    def _g_max(self) -> torch.Tensor:
        """g_max as a tensor for CED's normalisation 1 - g/g_max (in [0, 1] since 0 <= g <=
        g_max)."""
        return self.g.g_max().clamp_min(1e-300)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        tau = self.time_step()
        return u - tau.to(device=u.device, dtype=u.dtype) * self.apply(u)

    def run(self, u: torch.Tensor, steps: int) -> torch.Tensor:
        for _ in range(steps):
            u = self(u)
        return u

    def extra_repr(self) -> str:
        rho = f", rho={self.rho:g}, coherence_alpha={self.coherence_alpha:g}" if self.rho else ""
        return (f"model={self.model!r}, sigma={self.sigma:g}{rho}, h={self.h:g}, "
                f"alpha={self.operator.alpha:g}, tau={self.policy.describe()}")
