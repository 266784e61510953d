"""Coupled 2D diffusion blocks of paper 003 (MATH.md 4), on the torch path.

u (batch, M, H, W) with M image channels; K has c operator channels, each a 2D stencil
applied to every image channel and placed on the pixel grid: the "valid" correlation, padded
with zeros where the stencil does not fit (zero flux across the image boundary). K^T is its
exact transpose. The activation couples channels inside a rotation invariant:

- isotropic (P3 19, 29): Phi(s) = g(sum |s|^2) s, the sum over the c operator channels and,
  with ``couple_images``, over the M image channels;
- anisotropic (P3 30, 40; operators made of gradient vectors: the gradients, www, the
  Hessian's rows): Phi(s_k) = g(J) s_k, J = sum_k s_k s_k^T (2 x 2) over the operator's
  vectors (and image channels, scales), g(J)
  from the closed-form eigen-decomposition of J / tr J (no overflow) as g(nu_1) (v_1 . s) v_1
  + g(nu_2) (v_2 . s) v_2 (no cancellation), and g(mean) s + g'(mean) (J - mean I) s where
  the eigenvalues coincide: no division by zero, no NaN, also for J = 0;
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

from . import runtime
from .operators import clamp_finite, stencil_range
from .runtime import Activation, StabilityError
from .timestep import TimeStep

MODES = ("isotropic", "anisotropic", "uncoupled")
#: the parameter of the nonstandard discretisation used in P3 section 6
WWW_ALPHA = 0.41


def _stencils(operator: str, h: float, alpha: float = WWW_ALPHA
              ) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """(kernel (kh, kw), centre (ci, cj)) per operator channel, float64. Channels that form
    gradient vectors come in (x, y) pairs: rows are y, columns x."""
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
    if operator == "www":
        return _www_stencils(h, alpha)
    raise StabilityError(f"unknown operator {operator!r}; use {', '.join(OPERATORS)}")


def _www_stencils(h: float, alpha: float) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """The 3 x 3 nonstandard discretisation of Weickert, Welk and Wickert (2013), used by P3
    section 6, as five gradient vectors on each 2 x 2 cell of pixels (a, b / c, d):

    - the four one-sided gradients at the cell's corners, (b - a, c - a), (b - a, d - b),
      (d - c, c - a), (d - c, d - b), each weighted sqrt((1 - alpha) / 4): the mean of their
      products is Mickens' nonstandard approximation of grad u grad u^T;
    - the averaged gradient ((b - a + d - c) / 2, (c - a + d - b) / 2), weighted sqrt(alpha):
      the standard one.

    sum_k s_k s_k^T is then (1 - alpha) x nonstandard + alpha x standard structure tensor, and
    K^T diag(g) K with one g per cell is, for constant g, g x the 9-point Laplacian
    (1 - alpha) x 5-point + alpha x diagonal 5-point / 2, whose h^2 error is rotation
    invariant near alpha = 1/3. ||K||^2 = 8 (1 - alpha) / h^2 exactly (the symbol's maximum,
    at the checkerboard) for alpha in [0, 1/2].
    """
    corner = math.sqrt((1 - alpha) / 4) / h
    dx_top, dx_bottom = [[-1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [-1.0, 1.0]]
    dy_left, dy_right = [[-1.0, 0.0], [1.0, 0.0]], [[0.0, -1.0], [0.0, 1.0]]
    pairs = [(dx_top, dy_left), (dx_top, dy_right), (dx_bottom, dy_left),
             (dx_bottom, dy_right)]
    out = []
    for kx, ky in pairs:
        out += [(torch.tensor(kx, dtype=torch.float64) * corner, (0, 0)),
                (torch.tensor(ky, dtype=torch.float64) * corner, (0, 0))]
    mean = math.sqrt(alpha) / h / 2
    out += [(torch.tensor([[-1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) * mean, (0, 0)),
            (torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) * mean, (0, 0))]
    return out


OPERATORS = ("gradient", "central_gradient", "laplacian", "hessian", "gaussian_gradient",
             "www")


def gaussian_kernel(sigma: float, h: float) -> torch.Tensor:
    """The sampled 1D Gaussian of standard deviation sigma (in units of length), truncated at
    3 sigma and normalised to sum 1 (float64)."""
    radius = max(1, math.ceil(3 * sigma / h))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64) * h
    k = torch.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


class GridOperator(torch.nn.Module):
    """K: u (B, M, H, W) -> (B, M, c, H, W), each channel a stencil on the pixel grid (zero
    where it does not fit); ``adjoint`` is K^T; ``norm2_bound`` a bound of ||K||^2: the sum of
    squared kernel 1-norms (Young), 8/h^2 for the gradient, 2/h^2 for the central and the
    Gaussian-smoothed gradient (smoothing has norm <= 1), 64/h^4 for the Laplacian, 34/h^4 for
    the Hessian; the exact 8 (1 - alpha)/h^2 for ``www`` (Weickert, Welk and Wickert, with
    ``alpha`` in [0, 1/2], default 0.41 as in P3 section 6).

    ``sigma``: smooth the image with a sampled Gaussian of that standard deviation first (the
    Gaussian-smoothed operators of P3 36-38); ``gaussian_gradient`` is the central gradient
    with sigma = 1 unless given.
    """

    def __init__(self, operator: str = "gradient", h: float = 1.0, sigma: float | None = None,
                 alpha: float = WWW_ALPHA) -> None:
        super().__init__()
        if not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
            raise StabilityError(f"grid size h must be a positive number, got {h!r}")
        if operator == "gaussian_gradient" and sigma is None:
            sigma = 1.0
        self.sigma = None
        if sigma is not None:
            if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
                raise StabilityError(f"sigma must be a positive number, got {sigma!r}")
            self.sigma = float(sigma)
            # smoothing: zero-padded 'same' correlation with the symmetric, normalised
            # Gaussian: a symmetric matrix of norm <= 1 (Young), its own transpose
            self.register_buffer("smooth", gaussian_kernel(sigma, h))
        if not (isinstance(alpha, int | float) and 0 <= alpha <= 0.5):
            raise StabilityError(f"alpha of the www operator must be in [0, 1/2], got "
                                 f"{alpha!r}")
        self.alpha = float(alpha)
        stencils = _stencils("central_gradient" if operator == "gaussian_gradient" else operator,
                             h, self.alpha)
        self.operator, self.h = operator, float(h)
        self.centres = [c for _, c in stencils]
        for k, (w, _) in enumerate(stencils):
            # float64 (cast to the input's dtype on use): a .double() block gets weights
            # such as sqrt((1 - alpha) / 4) exact, not rounded through float32
            self.register_buffer(f"kernel{k}", w)
        self.channels = len(stencils)

    @property
    def kernels(self) -> list[torch.Tensor]:
        return [getattr(self, f"kernel{k}") for k in range(self.channels)]

    def _pads(self, k: torch.Tensor, centre: tuple[int, int]) -> list[int]:
        kh, kw = k.shape
        ci, cj = centre
        return [cj, kw - 1 - cj, ci, kh - 1 - ci]  # F.pad order: left, right, top, bottom

    def check(self, u: torch.Tensor) -> None:
        """Refuse what the operator cannot take: not (batch, channels, H, W), or an image
        smaller than a stencil."""
        if u.dim() != 4:
            raise StabilityError(f"a 2D block takes (batch, channels, H, W); got shape "
                                 f"{tuple(u.shape)}")
        need = max(max(k.shape) for k in self.kernels)
        if min(u.shape[2:]) < need:
            raise StabilityError(f"image of size {u.shape[2]} x {u.shape[3]} is smaller than "
                                 f"the stencil ({need} x {need})")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        self.check(u)
        b, m, hh, ww = u.shape
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
        """Sum over channels of the squared kernel 1-norms (Young); the exact 8 (1 - alpha)/h^2
        for www (below Young's 8/h^2). Smoothing has norm <= 1."""
        if self.operator == "www":
            return 8 * (1 - self.alpha) / self.h**2
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
        """s: (B, M, c, H, W). Triton kernels where g's backend resolves to Triton (CUDA
        tensors with backend "auto"; backend "triton" under TRITON_INTERPRET=1), torch
        otherwise."""
        if runtime.resolve_backend(self.g.backend, s) == "triton":
            return self._triton(s)
        if self.mode == "uncoupled":
            return self.g(s * s) * s
        if self.mode == "isotropic":
            dims = (1, 2) if self.couple_images else (2,)
            return self.g((s * s).sum(dim=dims, keepdim=True)) * s
        b, m, c, hh, ww = s.shape
        self._check_vectors(c)
        v = s.reshape(b, m, c // 2, 2, hh, ww)  # the (x, y) pairs: gradient vectors
        sx, sy = v[:, :, :, 0], v[:, :, :, 1]
        dims = (1, 2) if self.couple_images else (2,)
        a = (sx * sx).sum(dim=dims, keepdim=True)
        bb = (sx * sy).sum(dim=dims, keepdim=True)
        d = (sy * sy).sum(dim=dims, keepdim=True)
        # the eigen-decomposition of J / tr J (no overflow); the where()s keep the branch not
        # taken finite, so that no NaN leaks into the gradient
        t = a + d
        inv = 1 / torch.where(t > 0, t, torch.ones_like(t))
        half, b1 = (a - d) / 2 * inv, bb * inv
        q = half * half + b1 * b1
        positive = q > 0
        root = torch.where(positive, torch.sqrt(torch.where(positive, q, torch.ones_like(q))),
                           torch.zeros_like(q))
        mean = t / 2
        nu1, nu2 = mean + t * root, (mean - t * root).clamp_min(0)  # J >= 0
        close = 2 * root <= (2e-8 if s.dtype == torch.float64 else 3e-4) / 2
        # a unit eigenvector of nu1 from the column without cancellation; v2 = (-y1, x1)
        vx = torch.where(half >= 0, half + root, b1)
        vy = torch.where(half >= 0, b1, root - half)
        n2 = vx * vx + vy * vy
        length = torch.sqrt(torch.where(n2 > 0, n2, torch.ones_like(n2)))
        x1, y1 = vx / length, vy / length
        # g(J) s = g(nu1) (v1 . s) v1 + g(nu2) (v2 . s) v2: no cancellation
        p1 = self.g(nu1) * (x1 * sx + y1 * sy)
        p2 = self.g(nu2) * (x1 * sy - y1 * sx)
        # where the eigenvalues coincide: g(mean) s + g'(mean) (J - mean I) s
        gm, slope = self.g(mean), _derivative(self.g, mean)
        ox = torch.where(close, gm * sx + slope * ((a - mean) * sx + bb * sy), p1 * x1 - p2 * y1)
        oy = torch.where(close, gm * sy + slope * (bb * sx + (d - mean) * sy), p1 * y1 + p2 * x1)
        return torch.stack([ox, oy], dim=3).reshape(s.shape)

    def _check_vectors(self, c: int) -> None:
        if c % 2:
            raise StabilityError(
                f"the anisotropic activation needs an operator made of gradient vectors (an "
                f"even number of channels, 2-channel gradients, www, the Hessian's rows); this "
                f"one has {c}: use mode='isotropic'")

    def _triton(self, s: torch.Tensor) -> torch.Tensor:
        """The generated kernels (templates/triton/coupled.py.j2) on a view of s."""
        b, m, c, hh, ww = s.shape
        groups = b if self.couple_images else b * m
        p = self.g.parameter_vector().to(s.device)
        s = s.contiguous()
        if self.mode == "uncoupled":
            view, kind = s.reshape(b * m * c, 1, hh * ww), "iso"
        elif self.mode == "isotropic":
            view, kind = s.reshape(groups, -1, hh * ww), "iso"
        else:
            self._check_vectors(c)
            view, kind = s.reshape(groups, -1, 2, hh * ww), "aniso"
        return runtime.coupled_activation(self.g.ops, view, p, kind).reshape(s.shape)


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
    ``operator``: one of OPERATORS (``alpha`` for www, ``sigma`` to smooth first).
    ``stability``: "euclidean" (any mode) or "linf" (max-min principle: the forward-difference
    gradient with a scalar g, i.e. isotropic without image coupling, or uncoupled; www with
    isotropic g without image coupling). tau as for DiffusionBlock: ``safety``, ``tau``
    (checked), ``unsafe``. ``fused``: run the whole step as one generated Triton kernel
    (the forward-difference gradient with the isotropic activation, no smoothing; None: on
    CUDA tensors when possible, True: always, also under TRITON_INTERPRET=1, False: never).
    """

    def __init__(self, g: Any, *, mode: str = "isotropic", operator: str = "gradient",
                 stability: str = "euclidean", h: float = 1.0, couple_images: bool = True,
                 safety: float = 1.0, tau: float | None = None, unsafe: bool = False,
                 params: dict[str, object] | None = None, trainable: tuple[str, ...] = (),
                 alpha: float = WWW_ALPHA, sigma: float | None = None,
                 fused: bool | None = None) -> None:
        super().__init__()
        if not isinstance(g, Activation) or params or trainable:
            from .activation import as_activation

            g = as_activation(g, role="diffusivity", params=params, trainable=trainable)
        self.K = GridOperator(operator, h, sigma=sigma, alpha=alpha)
        self.phi = CoupledActivation(g, mode, couple_images)
        if stability not in ("euclidean", "linf"):
            raise StabilityError(f"unknown stability {stability!r}; use 'euclidean' or 'linf'")
        scalar = mode == "isotropic" and not couple_images
        if stability == "linf" and not (sigma is None and (
                (operator == "gradient" and (scalar or mode == "uncoupled"))
                or (operator == "www" and scalar))):
            raise StabilityError(
                "the max-min principle is proven for a scalar g per image channel with the "
                "forward-difference gradient (isotropic with couple_images=False, or "
                "uncoupled) or www (isotropic with couple_images=False), without smoothing; "
                "use stability='euclidean'")
        self.policy = TimeStep(tau, unsafe=unsafe, safety=safety)
        self.stability = stability
        self.fusable = (operator == "gradient" and mode == "isotropic" and sigma is None
                        and g.backend != "torch")
        if fused and not self.fusable:
            raise StabilityError(
                "fused=True needs the forward-difference gradient with the isotropic activation, "
                "no smoothing, and an activation whose backend is not 'torch'")
        self.fused = fused
        if not unsafe:
            self.time_step()

    @property
    def g(self) -> Activation:
        return self.phi.g

    def tau_max(self) -> torch.Tensor:
        g_max = self.g.g_max()
        if self.stability == "linf":
            # h^2 / (g_max max_i A_ii), A = K^T K: 4 for the gradient, 4 - 2 alpha for www
            diagonal = 4 - 2 * self.K.alpha if self.K.operator == "www" else 4
            return self.K.h**2 / (diagonal * g_max).clamp_min(1e-300)
        return 2 / (g_max * self.K.norm2_bound()).clamp_min(1e-300)

    def time_step(self) -> torch.Tensor:
        return self.policy(self.tau_max, self.stability)

    def _clamps(self) -> bool:
        """Whether a step is clamped to its stencil's range (docs/blocks.md, the guarantees
        in floating point): under the linf bound, not with unsafe=True."""
        return self.stability == "linf" and not self.policy.unsafe

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.fused or (self.fused is None and self.fusable and u.is_cuda):
            self.K.check(u)  # the same inputs as the unfused path
            return runtime.coupled_step2d(self.g.ops, u, self.g.parameter_vector().to(u.device),
                                          self.time_step(), 1 / self.K.h, self.phi.couple_images,
                                          self._clamps())
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        out = u - tau * self.K.adjoint(self.phi(self.K(u)))
        if self._clamps():
            # exact arithmetic keeps out in this range; rounding may not (stencil_range)
            lo, hi = stencil_range(u, 2, False, box=self.K.operator == "www")
            out = clamp_finite(out, lo, hi)
        return out


class MultiscaleDiffusionBlock2D(torch.nn.Module):
    """The ResNeXt form of P3 36-38: u <- u - tau sum_l K_l^T Phi_l with K_l = beta_l D G_l,
    D the ``operator`` (default www, the nonstandard 3 x 3 discretisation P3 section 6 uses,
    with ``alpha``; or central_gradient, gradient) applied to the image smoothed by a Gaussian
    G_l of standard deviation sigma_l (``sigmas``), beta_l trainable scale weights, and one
    activation coupling all scales (Design Principle 3): isotropic g(sum_l sum_m |K_l u_m|^2)
    K_l u_m, anisotropic g(sum_{l,m} (K_l u_m)(K_l u_m)^T) K_l u_m (P3 40), or uncoupled.
    tau = safety * 2 / (g_max sum_l beta_l^2 ||D||^2) (smoothing has norm <= 1), recomputed
    at every call (beta trains); ``train_tau``: tau = that bound * sigmoid(theta) with theta
    trainable (P3 trains tau), which never leaves it. P3 uses 8 scales exponentially spaced
    from 0.4 to 10.
    """

    def __init__(self, g: Any, sigmas: Any = (0.5, 1.0, 2.0), *, mode: str = "isotropic",
                 operator: str = "www", alpha: float = WWW_ALPHA, h: float = 1.0,
                 safety: float = 1.0, params: dict[str, object] | None = None,
                 trainable: tuple[str, ...] = (), beta: float = 1.0, train_tau: bool = False
                 ) -> None:
        super().__init__()
        if not isinstance(g, Activation) or params or trainable:
            from .activation import as_activation

            g = as_activation(g, role="diffusivity", params=params, trainable=trainable)
        sigmas = [float(x) for x in sigmas]
        if not sigmas:
            raise StabilityError("give at least one scale")
        if operator not in ("www", "central_gradient", "gradient"):
            raise StabilityError(f"a multiscale block takes a gradient operator (www, "
                                 f"central_gradient, gradient), got {operator!r}")
        self.operators = torch.nn.ModuleList(
            [GridOperator(operator, h, sigma=sigma, alpha=alpha) for sigma in sigmas])
        self.beta = torch.nn.Parameter(torch.full((len(sigmas),), float(beta),
                                                  dtype=torch.float64))
        self.phi = CoupledActivation(g, mode, couple_images=True)
        self.policy = TimeStep(safety=safety, train_tau=train_tau)
        self.tau_logit = self.policy.parameter(torch.float64)
        self.time_step()

    @property
    def g(self) -> Activation:
        return self.phi.g

    def tau_max(self) -> torch.Tensor:
        norms = torch.tensor([op.norm2_bound() for op in self.operators], dtype=torch.float64)
        total = (self.beta.double() ** 2 * norms.to(self.beta.device)).sum()
        return 2 / (self.g.g_max() * total).clamp_min(1e-300)

    def time_step(self) -> torch.Tensor:
        return self.policy(self.tau_max, "euclidean", logit=self.tau_logit)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, m, hh, ww = u.shape
        beta = self.beta.to(u.dtype)
        s = torch.cat([beta[k] * op(u) for k, op in enumerate(self.operators)], dim=1)
        flux = self.phi(s)  # (B, L*M, c, H, W): all scales and image channels coupled
        total = torch.zeros_like(u)
        for k, op in enumerate(self.operators):
            total = total + beta[k] * op.adjoint(flux[:, k * m:(k + 1) * m])
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        return u - tau * total
