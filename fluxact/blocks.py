"""Stable diffusion blocks and the networks of paper 002 (MATH.md 2 and 3).

An explicit diffusion step is a residual block (P2 11, Theorem 1):

    u <- u - tau K^T Phi(K u)        (s1 = tau Phi, W1 = K, W2 = -K^T, no biases)

and its time step is never a free number here: it comes from the verifier's g_max (carried by
the activation, as a monomial in its parameters) and a bound of ||K||^2 (operators.py), both
evaluated at every forward pass, so that training the contrast parameter or the kernel cannot
leave the stable region:

- "linf" (max-min principle) and "sign" (no new sign changes, 1D): forward-difference
  operators, tau <= 2 / (g_max ||K||^2) and tau <= 1 / (g_max ||K||^2), i.e. h^2/(2 g_max) and
  h^2/(4 g_max) in 1D, h^2/(4 g_max) in 2D (MATH.md 2);
- "euclidean" (||u||_2 never grows, P2 Theorem 2 with g_max for L): any operator,
  tau <= 2 / (g_max ||K||^2).

Each needs g = Phi(r)/r >= 0; where the verifier found none (g < 0 somewhere, g_max infinite)
a block is refused with its reason, unless the caller passes tau and unsafe=True.

Nothing here imports SymPy: blocks take a generated ``Activation`` (``fluxact.to_torch``,
``fluxact build``). Passing a formula or catalogue entry instead generates one on the spot.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F

from .operators import Operator, clamp_finite, stencil_range
from .runtime import (
    MAX_TEMPORAL,
    Activation,
    StabilityError,
    step,
    step_kernel,
    step_mixing,
    steps1d,
)
from .timestep import TimeStep, positive

NOTIONS = ("linf", "sign", "euclidean")
#: names of the numerical parameters of blocks: tau (explicit, FSI), the Du Fort-Frankel
#: tau and alpha, the FSI extrapolation weights
NUMERICAL = frozenset({"tau_logit", "log_tau", "alpha_theta", "weights"})
SCHEMES = ("explicit", "dufort_frankel", "fsi")


def activation_of(act: Any) -> Activation:
    """An Activation for a block (fluxact.activation.as_activation: an Activation, a
    Translation, a catalogue entry or its name)."""
    if isinstance(act, Activation):
        act.check_role("activation")
        return act
    from .activation import as_activation  # generation needs SymPy; blocks themselves do not

    return as_activation(act)


def operator_of(K: Any, *, dims: int = 1, channels: int = 1, h: float = 1.0,
                boundary: str = "reflect", width: int = 3) -> Operator:
    """K for a block: None or "forward" (forward differences / gradient), "second" (second
    difference, 1D), "learned" (a trainable C x C kernel), an Operator, or a fixed kernel."""
    if isinstance(K, Operator):
        if K.centres is not None:
            raise StabilityError(
                f"the pixel-grid operator {K.name!r} (Operator.grid) acts on each image channel "
                "and belongs to the coupled blocks (CoupledDiffusionBlock2D); give a block "
                "'forward', 'second', 'learned', Operator.forward_difference or a kernel")
        return K
    if K is None or K == "forward":
        return Operator.forward_difference(dims, channels, h, boundary)
    if K == "second":
        if dims != 1:
            raise StabilityError("the second difference operator is 1D; use dims=1")
        return Operator.second_difference(channels, h, boundary)
    if K == "learned":
        return Operator.learned(dims, channels, width, boundary=boundary)
    if isinstance(K, torch.Tensor):
        return Operator([K], dims=dims, boundary=boundary)
    raise StabilityError(
        f"unknown operator {K!r}; use 'forward', 'second', 'learned', an Operator or a kernel")


def _notion(stability: str | None, K: Operator) -> str:
    if stability is None:
        return "linf" if K.difference else "euclidean"
    if stability not in NOTIONS:
        raise StabilityError(f"unknown stability {stability!r}; use one of {', '.join(NOTIONS)}")
    if stability in ("linf", "sign") and not K.difference:
        raise StabilityError(
            f"{stability} stability is proven for forward-difference operators only "
            f"(MATH.md 2), not for a {K.name} operator; use stability='euclidean'")
    if stability == "sign" and K.dims != 1:
        raise StabilityError("sign stability (no new sign changes) is a 1D notion; use 'linf' "
                             "or 'euclidean' in 2D")
    return stability


class DiffusionBlock(torch.nn.Module):
    """One explicit diffusion step u <- u - tau K^T Phi(K u) (P2 11) with its time step
    computed from the verifier's bound (see the module docstring).

    ``act``: a generated Activation (or a Translation / catalogue name). ``K``: see
    ``operator_of``; ``dims`` and ``channels`` shape the default operators, whose input is
    (batch, channels, length) or (batch, channels, H, W). ``stability``: "linf", "sign" or
    "euclidean" (default: linf for difference operators, else euclidean). ``safety`` in (0, 1]
    scales the bound; ``train_tau`` makes tau = safety * bound * sigmoid(theta) with theta
    trainable (the paper trains tau), which stays below the bound. An explicit ``tau`` must
    satisfy the bound at every call, unless ``unsafe=True``. ``fused``: run the whole step as
    one generated Triton kernel (forward differences in 1D and 2D, and any single kernel: C x C
    or per channel, 1D or 2D; None: on CUDA tensors for forward differences and 1D kernels per
    channel, True: always, also under TRITON_INTERPRET=1 and for the channel-mixing kernel,
    False: never).
    """

    def __init__(self, act: Any, K: Any = None, *, stability: str | None = None,
                 h: float = 1.0, safety: float = 1.0, tau: float | None = None,
                 unsafe: bool = False, train_tau: bool = False, dims: int = 1,
                 channels: int = 1, boundary: str = "reflect", width: int = 3,
                 fused: bool | None = None) -> None:
        super().__init__()
        self.act = activation_of(act)
        self.K = operator_of(K, dims=dims, channels=channels, h=h, boundary=boundary,
                             width=width)
        self.stability = _notion(stability, self.K)
        self.policy = TimeStep(tau, unsafe=unsafe, safety=safety, train_tau=train_tau)
        self.tau_logit = self.policy.parameter()
        self.fused = fused
        fusable = ((self.K.difference and self.K.spacing is not None)
                   or self.K.single_kernel) and self.act.backend != "torch"
        if fused and not fusable:
            raise StabilityError(
                "fused=True needs a forward-difference operator (1D, or the 2D gradient) or "
                "a single kernel (C x C or one per channel, e.g. Operator.learned), and an "
                "activation whose backend is not 'torch'; use fused=False")
        self._fusable = fusable
        # fused=None fuses only where the kernels are known to be lean: the channel-mixing
        # step spills registers on sm_90 (a reviewer's ptxas -v), so it runs on request
        self._auto_fuse = fusable and (self.K.difference or self.K.per_channel_1d)
        if not self.policy.unsafe:
            self.time_step()  # refuses now, with the verifier's reason, what cannot be stable

    def tau_max(self) -> torch.Tensor:
        """The largest stable time step at the current parameters (float64 tensor)."""
        g = self.act.g_max()
        n2 = self.K.norm2_bound().to(g.device)
        c = 1.0 if self.stability == "sign" else 2.0
        return c / (g * n2).clamp_min(1e-300)  # g_max = 0: Phi = 0, any step is stable

    def time_step(self) -> torch.Tensor:
        """tau used by the next forward pass (float64 tensor)."""
        c = "1" if self.stability == "sign" else "2"
        return self.policy(
            self.tau_max, self.stability, logit=self.tau_logit,
            detail=lambda: (f" = {c}/(g_max ||K||^2) with g_max = "
                            f"{float(self.act.g_max().detach()):.6g} and ||K||^2 <= "
                            f"{float(self.K.norm2_bound().detach()):.6g}"))

    def flux(self, u: torch.Tensor) -> torch.Tensor:
        """K^T Phi(K u)."""
        return self.K.adjoint([self.act(v) for v in self.K(u)], u)

    def _inv_h(self) -> torch.Tensor:
        """1/h as stored in the stencil now (a tensor: no device sync, follows
        load_state_dict), so that fused and unfused steps agree to rounding."""
        return self.K.weights[0].reshape(-1)[1]

    def _clamps(self) -> bool:
        """Whether a step is clamped to its stencil's range: under the linf and sign bounds
        (docs/blocks.md, the guarantees in floating point), for the forward difference with
        adjacent taps (Operator.forward_difference: ``spacing`` is set; another difference
        kernel has another stencil), not with unsafe=True."""
        return (self.stability in ("linf", "sign") and not self.policy.unsafe
                and self.K.spacing is not None)

    def _use_fused(self, u: torch.Tensor) -> bool:
        if self.fused is None:
            return self._auto_fuse and u.is_cuda
        return self._fusable and bool(self.fused)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self._use_fused(u):
            self.K.check(u)
            periodic = self.K.boundary == "periodic"
            if self.K.spacing is None and self.K.per_channel_1d:  # one 1D kernel per channel
                k = self.K.weights[0]
                return step_kernel(self.act.ops, u, k.reshape(k.shape[0], k.shape[-1]),
                                   self.act.parameter_vector(), self.time_step(), periodic)
            if self.K.spacing is None:  # C x C (or per channel in 2D), learned or fixed
                return step_mixing(self.act.ops, u, self.K.full_kernel(),
                                   self.act.parameter_vector(), self.time_step(), periodic)
            return step(self.act.ops, u, self.act.parameter_vector(), self.time_step(),
                        self._inv_h(), periodic, self.K.dims, self._clamps())
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        out = u - tau * self.flux(u)
        if self._clamps():
            # exact arithmetic keeps out in this range; rounding may not (stencil_range)
            lo, hi = stencil_range(u, self.K.dims, self.K.boundary == "periodic")
            out = clamp_finite(out, lo, hi)
        return out

    def run(self, u: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` applications of the block. With the fused kernels, no gradient needed and
        a 1D signal of at most MAX_TEMPORAL samples, all steps run in one launch per signal
        (temporally blocked kernel); otherwise step by step."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise StabilityError(f"steps must be a non-negative integer, got {steps!r}")
        needs_grad = torch.is_grad_enabled() and (
            u.requires_grad or any(q.requires_grad for q in self.parameters()))
        if (self._use_fused(u) and self.K.spacing is not None and self.K.dims == 1
                and not needs_grad
                and steps > 1
                and u.shape[-1] <= MAX_TEMPORAL):
            self.K.check(u)
            return steps1d(self.act.ops, u, self.act.parameter_vector(), self.time_step(),
                           self._inv_h(), self.K.boundary == "periodic", steps,
                           self._clamps())
        for _ in range(steps):
            u = self(u)
        return u

    def extra_repr(self) -> str:
        return (f"stability={self.stability!r}, tau={self.policy.describe()}, "
                f"safety={self.policy.safety}")


class DuFortFrankelBlock(torch.nn.Module):
    """A Du Fort-Frankel step (P2 20) on (u^k, u^{k-1}):

        u^{k+1} = (4 tau a / (1 + 2 tau a)) (u^k - (1/(2a)) K^T Phi(K u^k))
                  + ((1 - 2 tau a) / (1 + 2 tau a)) u^{k-1}

    ``forward(u, u_prev=None)`` returns (u^{k+1}, u^k); u_prev defaults to u. tau a = 1/2 is
    the explicit step. P2 Appendix A: the step matrix has spectral radius <= 1 for every tau
    when a > rho(K^T G K)/4, and rho <= g_max ||K||^2, so a is kept above
    a_min = g_max ||K||^2 / 4 as a = a_min (1 + 1e-6) + softplus(theta), recomputed at every
    call. tau and theta are trainable when ``train=True``. Defaults: tau the explicit
    Euclidean bound, a = 2 a_min.

    What this guarantees is P2's spectral condition, not a norm bound: the two-step matrix
    is not normal, so ||u|| can grow for a while before it decays (measured: 99.6 times after
    78 linear blocks at a = 1.0001 a_min, tau = 1e4, on an alternating signal). Keep tau a
    moderate multiple of the explicit step where that matters.
    """

    def __init__(self, act: Any, K: Any = None, *, tau: float | None = None,
                 alpha: float | None = None, train: bool = True, h: float = 1.0,
                 dims: int = 1, channels: int = 1, boundary: str = "reflect",
                 width: int = 3) -> None:
        super().__init__()
        self.act = activation_of(act)
        self.K = operator_of(K, dims=dims, channels=channels, h=h, boundary=boundary,
                             width=width)
        a_min = float(self.alpha_min().detach())
        tau0 = (2.0 / (4.0 * a_min) if a_min > 0 else 1.0) if tau is None else positive(
            tau, "tau")
        if alpha is None:
            excess = a_min if a_min > 0 else 1.0
        else:
            excess = positive(alpha, "alpha") - a_min * (1 + 1e-6)
            if excess <= 0:
                raise StabilityError(
                    f"alpha = {alpha:g} is not above g_max ||K||^2 / 4 = {a_min:.6g} (P2 "
                    "Appendix A); the scheme would not be stable")
        theta = excess + math.log(-math.expm1(-excess))  # softplus^-1
        f64 = torch.float64  # as the activation's parameters: values kept as given
        self.log_tau = torch.nn.Parameter(torch.tensor(math.log(tau0), dtype=f64),
                                          requires_grad=train)
        self.alpha_theta = torch.nn.Parameter(torch.tensor(theta, dtype=f64),
                                              requires_grad=train)

    def alpha_min(self) -> torch.Tensor:
        return self.act.g_max() * self.K.norm2_bound().to(self.act.g_max().device) / 4

    def alpha(self) -> torch.Tensor:
        return self.alpha_min() * (1 + 1e-6) + F.softplus(self.alpha_theta.double())

    def tau(self) -> torch.Tensor:
        return self.log_tau.double().exp()

    def forward(self, u: torch.Tensor, u_prev: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        u_prev = u if u_prev is None else u_prev
        a = self.alpha().to(device=u.device, dtype=u.dtype)
        tau = self.tau().to(device=u.device, dtype=u.dtype)
        ta = tau * a
        flux = self.K.adjoint([self.act(v) for v in self.K(u)], u)
        new = ((4 * ta / (1 + 2 * ta)) * (u - flux / (2 * a))
               + ((1 - 2 * ta) / (1 + 2 * ta)) * u_prev)
        return new, u


def fsi_weights(cycle: int) -> list[float]:
    """a_l = (4l + 2) / (2l + 3), l = 0..L-1 (P2 21)."""
    return [(4 * i + 2) / (2 * i + 3) for i in range(cycle)]


class FSIBlock(torch.nn.Module):
    """One cycle of Fast Semi-Iterative diffusion (P2 21), cycle length L:

        u^{k+(l+1)/L} = a_l (u^{k+l/L} - tau K^T Phi(K u^{k+l/L})) + (1 - a_l) u^{k+(l-1)/L}

    with u^{k-1/L} = u^k, a_l = (4l + 2)/(2l + 3), tau the explicit block's (stable) step: one
    cycle reaches the super step L(L+1)/3 tau with L evaluations. The weights are trainable
    with ``train_weights=True`` (the paper's FSI networks learn them; trained weights carry no
    guarantee). tau is the explicit Euclidean bound: the weights a_l > 1 extrapolate, so a
    cycle keeps no max-min principle (it can leave [min f, max f] for nonlinear Phi), and
    ``stability`` must be "euclidean"; the norm of a cycle never grows in the linear case.
    Other arguments as for ``DiffusionBlock``.
    """

    def __init__(self, act: Any, K: Any = None, *, cycle: int = 4,
                 train_weights: bool = False, **block: Any) -> None:
        super().__init__()
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 1:
            raise StabilityError(f"cycle length must be a positive integer, got {cycle!r}")
        stability = block.pop("stability", None) or "euclidean"
        if stability != "euclidean":
            raise StabilityError(
                f"FSI cycles extrapolate (weights a_l > 1) and keep no {stability} guarantee; "
                "use stability='euclidean' (or the explicit scheme)")
        self.step = DiffusionBlock(act, K, stability="euclidean", **block)
        self.cycle = cycle
        weights = torch.tensor(fsi_weights(cycle), dtype=torch.float64)
        if train_weights:
            self.weights = torch.nn.Parameter(weights)
        else:
            self.register_buffer("weights", weights)

    @property
    def act(self) -> Activation:
        return self.step.act

    @property
    def K(self) -> Operator:
        return self.step.K

    @property
    def policy(self) -> TimeStep:
        """The time-step policy of the explicit step a cycle is made of."""
        return self.step.policy

    def super_step(self) -> torch.Tensor:
        """L(L+1)/3 tau: the time one cycle covers."""
        return self.cycle * (self.cycle + 1) / 3 * self.step.time_step()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        tau = self.step.time_step().to(device=u.device, dtype=u.dtype)
        prev, cur = u, u
        for i in range(self.cycle):
            a = self.weights[i].to(device=u.device, dtype=u.dtype)
            new = a * (cur - tau * self.step.flux(cur)) + (1 - a) * prev
            prev, cur = cur, new
        return cur


class ImplicitBlock(torch.nn.Module):
    """An implicit step u^{k+1} = u^k - tau K^T Phi(K u^{k+1}) (P2 22-23) by fixed-point
    iteration from u^k. The iteration map has Lipschitz constant q = tau L ||K||^2, a
    contraction for q < 1 (MATH.md 2): an explicit tau with q >= 1 is refused (unless
    ``unsafe=True``), and by default tau = contraction / (L ||K||^2). Stops after
    ``iterations`` or when max |v_{j+1} - v_j| <= tol (1 + max |u|); ``last_iterations`` and
    ``last_change`` tell how it went. Gradients flow through the unrolled iterations.
    """

    def __init__(self, act: Any, K: Any = None, *, tau: float | None = None,
                 contraction: float = 0.5, iterations: int = 200, tol: float = 1e-10,
                 unsafe: bool = False, h: float = 1.0, dims: int = 1, channels: int = 1,
                 boundary: str = "reflect", width: int = 3) -> None:
        super().__init__()
        self.act = activation_of(act)
        self.K = operator_of(K, dims=dims, channels=channels, h=h, boundary=boundary,
                             width=width)
        if (isinstance(contraction, bool) or not isinstance(contraction, numbers.Real)
                or not 0 < contraction < 1):
            raise StabilityError(f"contraction must be a number in (0, 1), got {contraction!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise StabilityError(f"iterations must be a positive integer, got {iterations!r}")
        self.contraction = contraction
        # the default tau is contraction / (L ||K||^2): the bound 1 / (L ||K||^2) scaled
        self.policy = TimeStep(tau, unsafe=unsafe, safety=contraction)
        self.iterations, self.tol = iterations, float(tol)
        self.last_iterations = 0
        self.last_change = math.nan
        if not self.policy.unsafe:
            self.time_step()

    def factor(self) -> torch.Tensor:
        """L ||K||^2: tau times this is the contraction factor of the iteration."""
        lip = self.act.lipschitz()
        return lip * self.K.norm2_bound().to(lip.device)

    def time_step(self) -> torch.Tensor:
        """tau of the next step: tau L ||K||^2 < 1 (strictly), contraction / (L ||K||^2) by
        default (float64 tensor)."""
        # rounded down by 2^-50 (float64 division errs by 2^-53): tau below it has tau L ||K||^2
        # < 1 exactly, not just in floating point
        return self.policy(
            lambda: (1 - 2.0**-50) / self.factor().clamp_min(1e-300), "contraction", strict=True,
            detail=lambda: (f" = 1/(L ||K||^2), L ||K||^2 = {float(self.factor().detach()):.6g}"
                            ": beyond it the fixed-point iteration is not a contraction"))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        tau = self.time_step().to(device=u.device, dtype=u.dtype)
        scale = 1 + float(u.detach().abs().max()) if u.numel() else 1.0
        v = u
        self.last_iterations, self.last_change = 0, math.nan
        for j in range(self.iterations):
            new = u - tau * self.K.adjoint([self.act(w) for w in self.K(v)], u)
            change = float((new - v).detach().abs().max())
            v = new
            self.last_iterations, self.last_change = j + 1, change
            if change <= self.tol * scale:
                break
        return v


class ResNetBlock(torch.nn.Module):
    """The plain ResNet block of P2 6, u + W2 act(W1 u + b1) + b2, with two independent
    trainable kernels and biases ('same' size, replicate padding); for comparisons."""

    def __init__(self, act: Any, channels: int = 1, width: int = 3, dims: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        conv = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
        self.act = act if isinstance(act, torch.nn.Module) else activation_of(act)
        self.W1 = conv(channels, channels, width, padding="same", bias=bias,
                       padding_mode="replicate")
        self.W2 = conv(channels, channels, width, padding="same", bias=bias,
                       padding_mode="replicate")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.W2(self.act(self.W1(u)))


class SymmetricResNet(torch.nn.Module):
    """m stable diffusion blocks (P2 section 3): ``scheme`` "explicit" (DiffusionBlock),
    "dufort_frankel" (DuFortFrankelBlock, two-step) or "fsi" (FSIBlock, one cycle each).

    ``shared=True``: one kernel, one activation and one set of numerical parameters (tau,
    the Du Fort-Frankel alpha, the FSI weights) for all blocks; else each block has its own
    (time-dynamic weights, P2 27; see ``smoothness_penalty``). ``K`` defaults to a learned
    kernel of width ``width`` over ``channels`` channels. Explicit and FSI blocks train tau
    within the bound (``train_tau``); other keyword arguments go to the blocks.
    """

    def __init__(self, act: Any, blocks: int, *, channels: int = 1, shared: bool = False,
                 K: Any = "learned", width: int = 3, dims: int = 1, scheme: str = "explicit",
                 stability: str | None = None, train_tau: bool = True,
                 boundary: str = "reflect", **options: Any) -> None:
        super().__init__()
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise StabilityError(f"blocks must be a positive integer, got {blocks!r}")
        if scheme not in SCHEMES:
            raise StabilityError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        self.scheme, self.shared = scheme, shared
        base_act = activation_of(act)
        base_K = operator_of(K, dims=dims, channels=channels, boundary=boundary, width=width)
        made = []
        for k in range(blocks):
            a = base_act if shared or k == 0 else base_act.clone()
            op = base_K if shared or k == 0 else copy.deepcopy(base_K)
            if scheme == "dufort_frankel":
                made.append(DuFortFrankelBlock(a, op, **options))
            elif scheme == "fsi":
                made.append(FSIBlock(a, op, stability=stability or "euclidean",
                                     train_tau=train_tau, **options))
            else:
                made.append(DiffusionBlock(a, op, stability=stability, train_tau=train_tau,
                                           **options))
        if shared:  # the same time step and extrapolation parameters in every block
            for block in made[1:]:
                for name, _ in list(block.named_parameters()):
                    owner, _, leaf = name.rpartition(".")
                    if leaf in NUMERICAL:
                        setattr(block.get_submodule(owner), leaf, made[0].get_parameter(name))
        self.blocks = torch.nn.ModuleList(made)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.scheme == "dufort_frankel":
            prev = None
            for block in self.blocks:
                u, prev = block(u, prev)
            return u
        for block in self.blocks:
            u = block(u)
        return u

    def _theta(self, block: torch.nn.Module) -> torch.Tensor:
        """The trainable model parameters of a block (kernel, activation), not its numerical
        ones (tau, alpha, extrapolation weights), which P2 7.1.4 leaves unregularised."""
        own = [p.reshape(-1).double() for name, p in block.named_parameters()
               if p.requires_grad and name.rpartition(".")[2] not in NUMERICAL]
        return torch.cat(own) if own else torch.zeros(0, dtype=torch.float64)

    def _tau(self, block: torch.nn.Module) -> torch.Tensor:
        if isinstance(block, DuFortFrankelBlock):
            return block.tau()
        step = block.step if isinstance(block, FSIBlock) else block
        return step.time_step()

    def smoothness_penalty(self, beta: float) -> torch.Tensor:
        """beta * sum_k tau_k ||(theta_k - theta_{k-1}) / tau_k||^2 (P2 27), theta_k the
        kernel and activation parameters of block k; tau_k enters as a value (no gradient):
        numerical parameters are not affected by the regulariser (P2 7.1.4). 0 for shared
        weights."""
        total = torch.zeros((), dtype=torch.float64)
        if self.shared:
            return total
        for prev, block in zip(self.blocks, self.blocks[1:]):
            diff = (self._theta(block) - self._theta(prev)).double()
            total = total + (diff**2).sum() / self._tau(block).detach().to(diff.device)
        return beta * total
