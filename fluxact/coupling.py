"""Coupled 2D diffusion blocks of paper 003 (MATH.md 4), on the torch path.

u (batch, M, H, W) with M image channels; K (``Operator.grid``) has c operator channels, each
a 2D stencil applied to every image channel and placed on the pixel grid: the "valid"
correlation, padded with zeros where the stencil does not fit (zero flux across the image
boundary). K^T is its exact transpose. The activation couples channels inside a rotation invariant:

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

from typing import Any

import torch

from . import runtime
from .operators import WWW_ALPHA, Operator, clamp_finite, stencil_range
from .runtime import Activation, StabilityError
from .timestep import TimeStep

MODES = ("isotropic", "anisotropic", "uncoupled")
#: the pixel-grid operators under the name the coupled blocks gave them first
GridOperator = Operator.grid


class CoupledActivation(torch.nn.Module):
    """Phi on the operator channels (see the module docstring); ``g`` computes g(s2)."""

    def __init__(self, g: Activation, mode: str = "isotropic", couple_images: bool = True
                 ) -> None:
        super().__init__()
        if mode not in MODES:
            raise StabilityError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if not isinstance(g, Activation):
            raise StabilityError(f"a coupled activation takes a diffusivity g(s2) "
                                 f"(fluxact.activation.diffusivity_to_torch), got "
                                 f"{type(g).__name__}")
        g.check_role("diffusivity")
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
        ox, oy = matrix_function(self.g, a, bb, d, sx, sy)
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


def eigen2(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The eigen-decomposition of the symmetric positive semidefinite J = [[a, b], [b, d]]
    (elementwise tensors), in closed form from J / tr J (no overflow): (nu1 >= nu2 >= 0, the
    unit eigenvector (x1, y1) of nu1, computed from the column without cancellation (0 where
    J = c I), the mean eigenvalue, and ``close``: where the eigenvalues coincide to rounding).
    The where()s keep every branch not taken finite, so no NaN leaks into a gradient."""
    t = a + d
    inv = 1 / torch.where(t > 0, t, torch.ones_like(t))
    half, b1 = (a - d) / 2 * inv, b * inv
    q = half * half + b1 * b1
    positive = q > 0
    root = torch.where(positive, torch.sqrt(torch.where(positive, q, torch.ones_like(q))),
                       torch.zeros_like(q))
    mean = t / 2
    nu1, nu2 = mean + t * root, (mean - t * root).clamp_min(0)  # J >= 0
    close = 2 * root <= (2e-8 if a.dtype == torch.float64 else 3e-4) / 2
    # v2 = (-y1, x1)
    vx = torch.where(half >= 0, half + root, b1)
    vy = torch.where(half >= 0, b1, root - half)
    n2 = vx * vx + vy * vy
    length = torch.sqrt(torch.where(n2 > 0, n2, torch.ones_like(n2)))
    return nu1, nu2, vx / length, vy / length, mean, close


def _positive_part(v: torch.Tensor) -> torch.Tensor:
    """v, through which no gradient flows where v = 0. An eigenvalue of J = sum s s^T is 0
    only where J is rank one (nu2) or 0, where every s is orthogonal to its eigenvector v2:
    d nu2 = v2^T dJ v2 = 2 sum (v2 . ds)(v2 . s) = 0, so for a finite g'(0) the term is 0;
    for an infinite one (g = 1/(1 + sqrt(s2)/lam)) g(nu2) has a kink there (nu2 grows as
    |ds|^2) and 0 is the symmetric choice, as autograd's for |x| at 0. A selection, not
    inf * 0 = NaN; the parameters' gradients through g(0) are kept."""
    return torch.where(v > 0, v, v.detach())


def matrix_function(g: Activation, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                    sx: torch.Tensor, sy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g(J) s for J = [[a, b], [b, d]] >= 0 and the vectors s = (sx, sy) (broadcast): every
    eigenvalue of g(J) is a value of g, so in [0, g_max]. g(nu1) (v1 . s) v1 + g(nu2)
    (v2 . s) v2 (no cancellation), and where the eigenvalues coincide the first-order
    expansion g(mean) s + g'(mean) (J - mean I) s: no division by zero, no NaN, also for
    J = 0."""
    nu1, nu2, x1, y1, mean, close = eigen2(a, b, d)
    p1 = g(_positive_part(nu1)) * (x1 * sx + y1 * sy)
    p2 = g(_positive_part(nu2)) * (x1 * sy - y1 * sx)
    gm, slope = g(_positive_part(mean)), _derivative(g, mean)
    # J = mean I exactly makes the slope's term 0; a g whose derivative is not finite there
    # (1 - exp(-C/s2) at 0, printed as 0 * inf) must not turn it into NaN
    slope = torch.where(torch.isfinite(slope), slope, torch.zeros_like(slope))
    ox = torch.where(close, gm * sx + slope * ((a - mean) * sx + b * sy), p1 * x1 - p2 * y1)
    oy = torch.where(close, gm * sy + slope * (b * sx + (d - mean) * sy), p1 * y1 + p2 * x1)
    return ox, oy


class CoupledDiffusionBlock2D(torch.nn.Module):
    """u <- u - tau K^T Phi(K u) with a coupled activation (P3 19, 29, 30), tau from g's range.

    ``g``: an Activation of g(s2) (``fluxact.activation.diffusivity_to_torch``), or a formula
    / Translation / catalogue entry of a diffusivity with ``params`` and ``trainable``.
    ``operator``: one of fluxact.operators.OPERATORS (``alpha`` for www, ``sigma`` to smooth first).
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
            # generation needs SymPy; an Activation (role checked by CoupledActivation) not
            from .activation import as_activation

            g = as_activation(g, role="diffusivity", params=params, trainable=trainable)
        self.K = Operator.grid(operator, h, sigma=sigma, alpha=alpha)
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
            diagonal = 4 - 2 * self.K.alpha if self.K.name == "www" else 4
            return self.K.spacing**2 / (diagonal * g_max).clamp_min(1e-300)
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
                                          self.time_step(), 1 / self.K.spacing,
                                          self.phi.couple_images, self._clamps())
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        out = u - tau * self.K.adjoint(self.phi(self.K(u)))
        if self._clamps():
            # exact arithmetic keeps out in this range; rounding may not (stencil_range)
            lo, hi = stencil_range(u, 2, False, box=self.K.name == "www")
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
            # generation needs SymPy; an Activation (role checked by CoupledActivation) not
            from .activation import as_activation

            g = as_activation(g, role="diffusivity", params=params, trainable=trainable)
        sigmas = [float(x) for x in sigmas]
        if not sigmas:
            raise StabilityError("give at least one scale")
        if operator not in ("www", "central_gradient", "gradient"):
            raise StabilityError(f"a multiscale block takes a gradient operator (www, "
                                 f"central_gradient, gradient), got {operator!r}")
        self.operators = torch.nn.ModuleList(
            [Operator.grid(operator, h, sigma=sigma, alpha=alpha) for sigma in sigmas])
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
        norms = torch.stack([op.norm2_bound().to(self.beta.device) for op in self.operators])
        total = (self.beta.double() ** 2 * norms).sum()
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
