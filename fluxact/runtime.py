"""The small runtime that generated activation modules import (torch and triton only).

A generated module (codegen/render.py) holds the formula's kernels and torch functions; this
runtime gives them a uniform face:

- ``Ops``: one activation's compiled pieces: Triton forward/backward kernels, torch forward/
  backward functions, its parameters and which of them are trainable;
- ``apply(ops, x, p, backend)``: Phi(x) with autograd, on the Triton kernels (registered as
  torch custom ops through ``torch.library.triton_op``, so torch.compile sees into them) or on
  the generated torch code (an autograd.Function whose backward is the symbolic derivative:
  never autograd through torch.where, whose untaken branch leaks NaN gradients, pytorch 52248);
- ``Activation``: the nn.Module, parameters as nn.Parameter (trainable) or buffers.

Backends: "triton" runs the kernels (on CUDA tensors; on CPU tensors only under
TRITON_INTERPRET=1, Triton's interpreter, which is how CI tests them), "torch" the generated
torch code, "auto" picks Triton for CUDA tensors and torch otherwise.

Nothing here imports SymPy or Jinja2, and nothing is compiled before first use.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .translator.errors import FluxactError
from .translator.facts import StabilityFacts

BACKENDS = ("auto", "triton", "torch")
#: Elements per Triton program. Untuned: the Triton tutorials' vector-add size; to be measured
#: on a GPU (benchmarks/activation.py) before it is changed.
BLOCK_SIZE = 1024
#: columns per program of the fused 2D step (one image row segment per program); untuned
BLOCK_SIZE_2D = 256
#: The torch backend runs eagerly, so that a value never depends on the input's size:
#: torch.compile's CPU code rounds differently (fp32 erf is 0 at 1e-10 and 1.8% off at 1e-5).
#: ``ops.compile_min_elements = n`` opts in to torch.compile from n elements on (about 6x on
#: large CPU inputs, docs/benchmarks.md), with the compiler's rounding.
COMPILE_MIN_ELEMENTS: int | None = None
_HALF = (torch.float16, torch.bfloat16)


class ActivationError(FluxactError):
    """A generated activation was called in a way it cannot run (backend, device, dtype,
    parameters). A FluxactError (so a ValueError) like every error fluxact raises on bad
    input; fluxact.translator.errors imports no SymPy."""


class StabilityError(ActivationError):
    """A diffusion block cannot be made stable as asked (no bound for this activation, a time
    step above the bound, a stability notion the operator has no proof for)."""


#: a bound evaluated at run time is multiplied by this: the float64 product of a coefficient
#: and powers of the parameters is then never below the exact value
_ROUND_UP = 1.0 + 2.0**-40


#: parameter tensors (identity, storage and version) checked with a synchronisation on a CUDA
#: device: later calls at these versions are checked by a device assertion only
_SYNCED: set[tuple[Any, ...]] = set()


@dataclass(frozen=True, repr=False)
class Stability(StabilityFacts):
    """The stability record of translator/facts.py (what generated modules hold) with the
    run-time checks blocks make before they take a time step from it."""

    def check_values(self, values: Mapping[str, Any], trainable: Sequence[str] = ()) -> None:
        """Refuse parameter values the facts were not verified for."""
        if self.fixed is None:
            return
        moving = [n for n, _ in self.fixed if n in trainable]
        where = ", ".join(f"{n} = {v:g}" for n, v in self.fixed)
        if moving:
            raise StabilityError(
                f"the stability bounds of this activation hold only at {where} (the verifier "
                f"found no closed form in the parameters), so {moving[0]!r} cannot be trainable "
                "in a stable block; make it fixed, or pass tau=... with unsafe=True")
        for name, value in self.fixed:
            now = float(values[name])
            if not abs(now - value) <= 1e-6 * abs(value):
                raise StabilityError(
                    f"the stability bounds of this activation were verified at {where}, but "
                    f"{name} = {now:g} now; translate the formula with these values to verify "
                    "them, or pass tau=... with unsafe=True")

    def bound(self, which: str, values: Mapping[str, Any]) -> torch.Tensor:
        """g_max or L at the parameter values (0-dim tensors or numbers), a float64 tensor
        that carries gradients to trainable parameters."""
        mono = self.g_max if which == "g_max" else self.lipschitz
        if mono is None or (which == "g_max" and self.reason is not None):
            raise StabilityError(self.reason if which == "g_max" else (
                f"no Lipschitz bound: {self.lipschitz_reason}"))
        self.check_positive(values)
        coefficient, exponents = mono
        # a bare coefficient is exact; a product of powers is rounded up
        out = torch.tensor(coefficient * (_ROUND_UP if exponents else 1.0), dtype=torch.float64)
        for name, e in exponents:
            v = values[name]
            v = v.to(torch.float64) if isinstance(v, torch.Tensor) else torch.tensor(
                float(v), dtype=torch.float64)
            out = out.to(v.device) * v**e
        return out

    @staticmethod
    def check_positive(values: Mapping[str, Any]) -> None:
        """The verifier's facts hold for positive parameters: refuse others (a trained
        parameter that crossed 0 would otherwise give a meaningless time step).

        Checked at every call on the values themselves (a write through ``.data`` changes a
        value without a new tensor version, so no cache keyed on versions can be trusted
        alone): on the CPU one comparison; on a CUDA device the readable check (one
        synchronisation) the first time these tensors are seen at these versions, and after
        that an asynchronous device assertion, which needs no synchronisation and stops the
        stream before a step with a bad value can be read back; inside torch.compile the
        assertion, in the graph; on other devices the readable check every call."""
        if not values:
            return
        tensors = [v for v in values.values() if isinstance(v, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
        numbers = torch.stack([v.detach().to(device, torch.float64).reshape(())
                               if isinstance(v, torch.Tensor)
                               else torch.tensor(float(v), dtype=torch.float64, device=device)
                               for v in values.values()])
        ok = torch.isfinite(numbers) & (numbers > 0)
        message = ("a parameter of the activation is not positive and finite: the stability "
                   "bounds hold for positive ones only")
        if torch.compiler.is_compiling():
            torch._assert_async(torch.all(ok), message)
            return
        key = None
        if device.type == "cuda":
            key = tuple((id(v), v.data_ptr(), v._version) for v in tensors)
            if key in _SYNCED:
                torch._assert_async(torch.all(ok), message)
                return
        if not bool(ok.all()):
            k = int((~ok).nonzero()[0, 0])
            name = list(values)[k]
            raise StabilityError(
                f"parameter {name} = {float(numbers[k]):g} is not positive and finite: the "
                "stability bounds hold for positive parameters only (a trained parameter "
                "crossed 0? lower the learning rate or parameterise it)")
        if key is not None:
            if len(_SYNCED) >= 1024:
                _SYNCED.clear()
            _SYNCED.add(key)


def interpreting() -> bool:
    """Whether Triton runs its interpreter (TRITON_INTERPRET=1): kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class Ops:
    """One activation's generated pieces (built by the generated module, once): its kernels by
    name (codegen/shims.py: each calls its body in fluxact/kernels/), the torch functions and
    the verifier's facts."""

    def __init__(
        self,
        *,
        name: str,
        digest: str,
        params: Sequence[str],
        trainable: Sequence[str],
        kernels: Mapping[str, Any],
        torch_forward: Callable[..., torch.Tensor],
        torch_backward: Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]],
        stability: Stability,
        **other: Any,
    ) -> None:
        if other:  # the keywords of a module generated by another fluxact version
            raise ActivationError(
                f"activation {name} was generated by another fluxact version (it passes "
                f"{sorted(other)[0]}=); regenerate it (fluxact build)")
        self.name = name
        self.digest = digest
        self.params = tuple(params)
        self.trainable = tuple(trainable)
        self.kernels = dict(kernels)
        self.torch_forward = torch_forward
        self.torch_backward = torch_backward
        self.stability = stability
        self._step_ops: Any = None
        self._coupled_ops: Any = None
        self.compile_min_elements: int | None = COMPILE_MIN_ELEMENTS
        self._compiled: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        # registered now where the kernels can run, not on first call: torch.compile must not
        # trace the registration (dynamo refuses to trace torch.library.triton_op);
        # registering compiles nothing
        self._triton_ops: tuple[Any, Any] | None = (
            _register_triton_ops(self) if torch.cuda.is_available() or interpreting() else None)

    def kernel(self, name: str) -> Any:
        """The generated kernel ``name`` ("fwd", "step1d_fwd", "iso_bwd", ...)."""
        try:
            return self.kernels[name]
        except KeyError:
            raise ActivationError(
                f"activation {self.name} has no kernel {name!r}: it was generated by another "
                "fluxact version; regenerate it (fluxact build)") from None

    # -- torch backend ------------------------------------------------------------------------

    def torch_functions(self, numel: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(forward(x, p), backward(x, gy, p)) of the torch backend, dtype casts included (so
        that torch.compile fuses them too): compiled for large inputs only where the caller
        opted in (``compile_min_elements``)."""
        if (self.compile_min_elements is None or numel < self.compile_min_elements
                or torch.compiler.is_compiling()):
            return self._torch_forward, self._torch_backward
        if self._compiled is None:
            self._compiled = (torch.compile(self._torch_forward),
                              torch.compile(self._torch_backward))
        return self._compiled

    def _torch_forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        compute = _compute_dtype(x.dtype)
        pc = in_compute_dtype(p, compute, x.device, self.params)
        return self.torch_forward(x.to(compute), *pc.unbind()).to(x.dtype)

    def _torch_backward(self, x: torch.Tensor, gy: torch.Tensor, p: torch.Tensor
                        ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        compute = _compute_dtype(x.dtype)
        gx, gps = self.torch_backward(x.to(compute), gy.to(compute), *p.to(compute).unbind())
        return gx.to(x.dtype), gps

    # -- triton backend: custom ops -----------------------------------------------------------

    def triton_ops(self) -> tuple[Any, Any]:
        """The forward and backward torch custom ops around the kernels."""
        if self._triton_ops is None:
            self._triton_ops = _register_triton_ops(self)
        return self._triton_ops

    def step_ops(self) -> dict[str, Any]:
        """The fused explicit steps ("1d", "2d", "k1d" for learned 1D kernels, "c" for the
        channel-mixing ones) as torch custom ops (with autograd)."""
        if self._step_ops is None:
            self._step_ops = _register_step_ops(self)
        return self._step_ops

    def coupled_ops(self) -> dict[str, Any]:
        """The coupled activations ("iso", "aniso") and the fused coupled 2D step ("c2d") as
        torch custom ops with autograd; Phi of this module is read as g(s2)."""
        if self._coupled_ops is None:
            self._coupled_ops = _register_coupled_ops(self)
        return self._coupled_ops


def in_compute_dtype(values: torch.Tensor, compute: torch.dtype, device: torch.device,
                     names: Sequence[str]) -> torch.Tensor:
    """``values`` (parameters, a time step) converted to the dtype the code computes in,
    refusing a finite value that the conversion makes infinite or 0 (lam = 1e39 is inf in
    float32, and r/(1 + lam r^2) would then be 0 with a NaN gradient): one comparison on the
    CPU, a device assertion on CUDA and inside torch.compile (no synchronisation)."""
    out = values.to(device=device, dtype=compute)
    if values.dtype == compute or values.numel() == 0:
        return out
    given, got = values.detach(), out.detach().to(values.device)
    lost = torch.isfinite(given) & (~torch.isfinite(got) | ((got == 0) & (given != 0)))
    if torch.compiler.is_compiling() or lost.is_cuda:
        torch._assert_async(~lost.any(), f"a parameter is outside the range of {compute}")
    elif bool(lost.any()):
        k = int(lost.nonzero()[0, 0])
        raise ActivationError(
            f"{names[k]} = {float(given[k]):g} is outside the range of {compute}, the dtype "
            f"this input is computed in; pass a {torch.float64} input (x.double()) or rescale "
            "the formula")
    return out


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16/bf16 are computed in fp32 (loaded, upcast, stored back); fp32 and fp64 as given."""
    if dtype in _HALF:
        return torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ActivationError(f"activation input must be a floating tensor, got {dtype}")
    return dtype


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """Triton's interpreter runs the kernel on numpy: a NaN in a branch that tl.where discards
    (0/0 at x = 0 of sqrt(2) th/|x|) would raise numpy's floating-point warnings, which a GPU
    never does. Silenced there; compiled kernels are untouched."""
    if not interpreting():
        return contextlib.nullcontext()
    import numpy

    return numpy.errstate(all="ignore")


def _register_triton_ops(ops: Ops) -> tuple[Any, Any]:
    import triton
    from torch.library import register_autograd, triton_op, wrap_triton

    kernels = {k: ops.kernel(k) for k in ("fwd", "bwd")}  # looked up once, outside the ops

    tag = f"fluxact::{ops.name}_{ops.digest[:12]}"
    n_train = len(ops.trainable)

    @triton_op(f"{tag}_fwd", mutates_args=())
    def forward(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        n = x.numel()
        grid = (triton.cdiv(n, BLOCK_SIZE),)
        with _quiet():
            wrap_triton(kernels["fwd"])[grid](x, y, p, n, BLOCK_SIZE=BLOCK_SIZE,
                                              FP64=x.dtype == torch.float64)
        return y

    @triton_op(f"{tag}_bwd", mutates_args=())
    def backward(x: torch.Tensor, gy: torch.Tensor, p: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        gx = torch.empty_like(x)
        n = x.numel()
        blocks = triton.cdiv(n, BLOCK_SIZE)
        # per-program partial sums of gy * dPhi/dp, reduced below on the same device
        partial = torch.empty((blocks, max(n_train, 1)), device=x.device,
                              dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
        with _quiet():
            wrap_triton(kernels["bwd"])[(blocks,)](x, gy, gx, p, partial, n,
                                                   BLOCK_SIZE=BLOCK_SIZE,
                                                   FP64=x.dtype == torch.float64)
        return gx, partial.sum(dim=0)

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, p = inputs
        ctx.save_for_backward(x, p)

    def grad(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, p = ctx.saved_tensors
        gx, gp = backward(x, gy.contiguous(), p)
        return gx, _scatter(ops, gp[:n_train], p)

    register_autograd(f"{tag}_fwd", grad, setup_context=setup_context)
    return forward, backward


def _register_step_ops(ops: Ops) -> Any:
    import triton
    from torch.library import register_autograd, triton_op, wrap_triton

    kernels = {k: ops.kernel(k) for k in (  # looked up once, outside the ops
        "step1d_fwd", "step1d_bwd", "step2d_fwd", "step2d_bwd", "stepk_fwd", "stepk_bwd",
        "stepc_fwd", "stepc_bwd")}

    tag = f"fluxact::{ops.name}_{ops.digest[:12]}_step"
    n_train = len(ops.trainable)
    fp64 = torch.float64

    def partial_sums(u: torch.Tensor, programs: int) -> torch.Tensor:
        return torch.empty((programs, n_train + 1), device=u.device,
                           dtype=fp64 if u.dtype == fp64 else torch.float32)

    # u: (rows, n) for 1D, (planes, H, W) for 2D; s = (tau, 1/h) in the compute dtype
    @triton_op(f"{tag}1d_fwd", mutates_args=())
    def forward1d(u: torch.Tensor, p: torch.Tensor, s: torch.Tensor, periodic: bool,
                  clamp: bool) -> torch.Tensor:
        rows, n = u.shape
        out = torch.empty_like(u)
        block = row_block(n)
        with _quiet():
            wrap_triton(kernels["step1d_fwd"])[(rows * triton.cdiv(n, block),)](
                u, out, p, s, n, PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64,
                CLAMP=clamp)
        return out

    @triton_op(f"{tag}1d_bwd", mutates_args=())
    def backward1d(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, s: torch.Tensor,
                   periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        rows, n = u.shape
        gu = torch.empty_like(u)
        block = row_block(n)
        programs = rows * triton.cdiv(n, block)
        partial = partial_sums(u, programs)
        with _quiet():
            wrap_triton(kernels["step1d_bwd"])[(programs,)](
                u, gy, gu, p, s, partial, n, PERIODIC=periodic, BLOCK_SIZE=block,
                FP64=u.dtype == fp64)
        return gu, partial.sum(dim=0)

    @triton_op(f"{tag}2d_fwd", mutates_args=())
    def forward2d(u: torch.Tensor, p: torch.Tensor, s: torch.Tensor, periodic: bool,
                  clamp: bool) -> torch.Tensor:
        planes, H, W = u.shape
        out = torch.empty_like(u)
        block = row_block(W, BLOCK_SIZE_2D)
        with _quiet():
            wrap_triton(kernels["step2d_fwd"])[(planes * H * triton.cdiv(W, block),)](
                u, out, p, s, H, W, PERIODIC=periodic, BLOCK_SIZE=block,
                FP64=u.dtype == fp64, CLAMP=clamp)
        return out

    @triton_op(f"{tag}2d_bwd", mutates_args=())
    def backward2d(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, s: torch.Tensor,
                   periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        planes, H, W = u.shape
        gu = torch.empty_like(u)
        block = row_block(W, BLOCK_SIZE_2D)
        programs = planes * H * triton.cdiv(W, block)
        partial = partial_sums(u, programs)
        with _quiet():
            wrap_triton(kernels["step2d_bwd"])[(programs,)](
                u, gy, gu, p, s, partial, H, W, PERIODIC=periodic, BLOCK_SIZE=block,
                FP64=u.dtype == fp64)
        return gu, partial.sum(dim=0)

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        u, p, s, periodic, _ = inputs  # the clamp corrects values; the gradient is the step's
        ctx.save_for_backward(u, p, s)
        ctx.periodic = periodic

    def gradient(backward: Any) -> Any:
        def grad(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
            u, p, s = ctx.saved_tensors
            gu, sums = backward(u, gy.contiguous(), p, s, ctx.periodic)
            gs = torch.stack([sums[0], torch.zeros_like(sums[0])]).to(s.dtype)
            return gu, _scatter(ops, sums[1:], p), gs, None, None
        return grad

    register_autograd(f"{tag}1d_fwd", gradient(backward1d), setup_context=setup_context)
    register_autograd(f"{tag}2d_fwd", gradient(backward2d), setup_context=setup_context)

    # learned 1D kernels, one per channel: u (rows = batch * C, n), k (C, W)
    @triton_op(f"{tag}k1d_fwd", mutates_args=())
    def forwardk(u: torch.Tensor, k: torch.Tensor, p: torch.Tensor, s: torch.Tensor,
                 periodic: bool) -> torch.Tensor:
        rows, n = u.shape
        out = torch.empty_like(u)
        block = row_block(n)
        with _quiet():
            wrap_triton(kernels["stepk_fwd"])[(rows * triton.cdiv(n, block),)](
                u, out, k, p, s, n, k.shape[0], W=k.shape[1], PERIODIC=periodic,
                BLOCK_SIZE=block, FP64=u.dtype == fp64)
        return out

    @triton_op(f"{tag}k1d_bwd", mutates_args=())
    def backwardk(u: torch.Tensor, gy: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                  s: torch.Tensor, periodic: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, n = u.shape
        channels, width = k.shape
        gu = torch.empty_like(u)
        block = row_block(n)
        blocks = triton.cdiv(n, block)
        partial = partial_sums(u, rows * blocks)
        partial_k = torch.empty((rows * blocks, width), device=u.device, dtype=partial.dtype)
        with _quiet():
            wrap_triton(kernels["stepk_bwd"])[(rows * blocks,)](
                u, gy, gu, k, p, s, partial, partial_k, n, channels, W=width,
                PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        gk = partial_k.reshape(rows // channels, channels, blocks, width).sum(dim=(0, 2))
        return gu, gk, partial.sum(dim=0)

    def setup_k(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        u, k, p, s, periodic = inputs
        ctx.save_for_backward(u, k, p, s)
        ctx.periodic = periodic

    def grad_k(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        u, k, p, s = ctx.saved_tensors
        gu, gk, sums = backwardk(u, gy.contiguous(), k, p, s, ctx.periodic)
        gs = torch.stack([sums[0], torch.zeros_like(sums[0])]).to(s.dtype)
        return gu, gk.to(k.dtype), _scatter(ops, sums[1:], p), gs, None

    register_autograd(f"{tag}k1d_fwd", grad_k, setup_context=setup_k)
    made = {"1d": forward1d, "2d": forward2d, "k1d": forwardk}
    stepc_fwd, stepc_bwd = kernels["stepc_fwd"], kernels["stepc_bwd"]

    # learned C x C kernels that mix channels, 1D (H = 1) and 2D: u (B, C, H, W),
    # k (C, C, KH, KW)
    def launch_c(u: torch.Tensor) -> tuple[int, int, int]:
        batch, _, height, width = u.shape
        block = row_block(width, BLOCK_SIZE_2D)
        return block, triton.next_power_of_2(u.shape[1]), batch * height * triton.cdiv(
            width, block)

    @triton_op(f"{tag}c_fwd", mutates_args=())
    def forwardc(u: torch.Tensor, k: torch.Tensor, p: torch.Tensor, s: torch.Tensor,
                 periodic: bool) -> torch.Tensor:
        out = torch.empty_like(u)
        block, cp, programs = launch_c(u)
        with _quiet():
            wrap_triton(stepc_fwd)[(programs,)](
                u, out, k, p, s, u.shape[1], u.shape[2], u.shape[3], CP=cp, KH=k.shape[2],
                KW=k.shape[3], PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        return out

    @triton_op(f"{tag}c_bwd", mutates_args=())
    def backwardc(u: torch.Tensor, gy: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                  s: torch.Tensor, periodic: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gu = torch.empty_like(u)
        block, cp, programs = launch_c(u)
        partial = partial_sums(u, programs)
        partial_k = torch.empty((programs, k.numel()), device=u.device, dtype=partial.dtype)
        with _quiet():
            wrap_triton(stepc_bwd)[(programs,)](
                u, gy, gu, k, p, s, partial, partial_k, u.shape[1], u.shape[2], u.shape[3],
                CP=cp, KH=k.shape[2], KW=k.shape[3], PERIODIC=periodic, BLOCK_SIZE=block,
                FP64=u.dtype == fp64)
        return gu, partial_k.sum(dim=0).reshape(k.shape), partial.sum(dim=0)

    def grad_c(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        u, k, p, s = ctx.saved_tensors
        gu, gk, sums = backwardc(u, gy.contiguous(), k, p, s, ctx.periodic)
        gs = torch.stack([sums[0], torch.zeros_like(sums[0])]).to(s.dtype)
        return gu, gk.to(k.dtype), _scatter(ops, sums[1:], p), gs, None

    register_autograd(f"{tag}c_fwd", grad_c, setup_context=setup_k)
    made["c"] = forwardc
    return made


def _register_coupled_ops(ops: Ops) -> dict[str, Any]:
    import triton
    from torch.library import register_autograd, triton_op, wrap_triton

    tag = f"fluxact::{ops.name}_{ops.digest[:12]}_coupled"
    n_train = len(ops.trainable)
    fp64 = torch.float64
    made: dict[str, Any] = {}

    def partial_sums(u: torch.Tensor, programs: int, columns: int) -> torch.Tensor:
        return torch.zeros((programs, max(columns, 1)), device=u.device,
                           dtype=fp64 if u.dtype == fp64 else torch.float32)

    # the activations: s (groups, C, N) for "iso", (groups, V, 2, N) for "aniso"
    for kind in ("iso", "aniso"):
        fwd_kernel, bwd_kernel = ops.kernel(f"{kind}_fwd"), ops.kernel(f"{kind}_bwd")
        # the anisotropic backward keeps ~40 values per lane: 256 lanes a program avoid
        # register spills in fp64 (sm_90, 4 warps; a reviewer's compile)
        most = 256 if kind == "aniso" else BLOCK_SIZE

        def make(kind: str, fwd_kernel: Any, bwd_kernel: Any, most: int) -> Any:
            @triton_op(f"{tag}_{kind}_fwd", mutates_args=())
            def forward(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
                groups, channels, n = s.shape[0], s.shape[1], s.shape[-1]
                out = torch.empty_like(s)
                block = row_block(n, most)
                with _quiet():
                    wrap_triton(fwd_kernel)[(groups * triton.cdiv(n, block),)](
                        s, out, p, channels, n, BLOCK_SIZE=block, FP64=s.dtype == fp64)
                return out

            @triton_op(f"{tag}_{kind}_bwd", mutates_args=())
            def backward(s: torch.Tensor, gy: torch.Tensor, p: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
                groups, channels, n = s.shape[0], s.shape[1], s.shape[-1]
                gs = torch.empty_like(s)
                block = row_block(n, most)
                programs = groups * triton.cdiv(n, block)
                partial = partial_sums(s, programs, n_train)
                with _quiet():
                    wrap_triton(bwd_kernel)[(programs,)](
                        s, gy, gs, p, partial, channels, n, BLOCK_SIZE=block,
                        FP64=s.dtype == fp64)
                return gs, partial.sum(dim=0)[:n_train].clone()

            def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
                ctx.save_for_backward(*inputs)

            def grad(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
                s, p = ctx.saved_tensors
                gs, gp = backward(s, gy.contiguous(), p)
                return gs, _scatter(ops, gp, p)

            register_autograd(f"{tag}_{kind}_fwd", grad, setup_context=setup_context)
            return forward

        made[kind] = make(kind, fwd_kernel, bwd_kernel, most)

    # the fused coupled step: u (groups, M, H, W), st = (tau, 1/h)
    c2d_fwd, c2d_bwd = ops.kernel("c2d_fwd"), ops.kernel("c2d_bwd")

    @triton_op(f"{tag}_c2d_fwd", mutates_args=())
    def step_forward(u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, clamp: bool
                     ) -> torch.Tensor:
        groups, m, H, W = u.shape
        out = torch.empty_like(u)
        block = row_block(W, BLOCK_SIZE_2D)
        with _quiet():
            wrap_triton(c2d_fwd)[(groups * H * triton.cdiv(W, block),)](
                u, out, p, st, m, H, W, BLOCK_SIZE=block, FP64=u.dtype == fp64, CLAMP=clamp)
        return out

    @triton_op(f"{tag}_c2d_bwd", mutates_args=())
    def step_backward(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, st: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        groups, m, H, W = u.shape
        gu = torch.empty_like(u)
        block = row_block(W, BLOCK_SIZE_2D)
        programs = groups * H * triton.cdiv(W, block)
        partial = partial_sums(u, programs, n_train + 1)
        with _quiet():
            wrap_triton(c2d_bwd)[(programs,)](
                u, gy, gu, p, st, partial, m, H, W, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        return gu, partial.sum(dim=0)

    def setup_step(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs[:3])  # the clamp corrects values; the gradient is the step's

    def grad_step(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        u, p, st = ctx.saved_tensors
        gu, sums = step_backward(u, gy.contiguous(), p, st)
        gst = torch.stack([sums[0], torch.zeros_like(sums[0])]).to(st.dtype)
        return gu, _scatter(ops, sums[1:], p), gst, None

    register_autograd(f"{tag}_c2d_fwd", grad_step, setup_context=setup_step)
    made["c2d"] = step_forward
    return made


def coupled_activation(ops: Ops, s: torch.Tensor, p: torch.Tensor, kind: str) -> torch.Tensor:
    """The coupled activation with g = this module's Phi, as Triton kernels: ``kind`` "iso"
    for s of shape (groups, C, N) (g(sum over C of s^2) s), "aniso" for (groups, V, 2, N)
    (g(J) s, J the 2 x 2 sum over the V vectors); gradients for s and the parameters."""
    _compute_dtype(s.dtype)
    if not (s.is_cuda or interpreting()):
        raise ActivationError("the coupled kernels run Triton: they need a CUDA tensor (or "
                              "TRITON_INTERPRET=1 on the CPU); use backend='torch'")
    compute = torch.float64 if s.dtype == torch.float64 else torch.float32
    return ops.coupled_ops()[kind](s.contiguous(), in_compute_dtype(p, compute, s.device,
                                                                    ops.params))


def coupled_step2d(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
                   inv_h: float, couple_images: bool, clamp: bool = False) -> torch.Tensor:
    """One fused coupled isotropic step u - tau K^T g(S) K u on u (batch, M, H, W), K the
    forward-difference gradient with zero flux across the boundary, S summed over the M image
    channels (``couple_images``) or per channel; gradients for u, the parameters and tau.
    ``clamp``: keep each finite value in its stencil's range (the max-min principle, exact in
    floating point; blocks pass it under the linf bound)."""
    pc, st = _step_arguments(ops, u, p, tau, inv_h)
    b, m, hh, ww = u.shape
    flat = u.contiguous().reshape((b, m, hh, ww) if couple_images else (b * m, 1, hh, ww))
    return ops.coupled_ops()["c2d"](flat, pc, st, bool(clamp)).reshape(u.shape)


def row_block(n: int, most: int = BLOCK_SIZE) -> int:
    """Elements per program along a row of length n: a power of two from 16 up to ``most``,
    so that short rows (the paper's signals have 256 samples) waste no lanes."""
    import triton

    return max(16, min(most, triton.next_power_of_2(n)))


def _step_arguments(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
                    inv_h: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _compute_dtype(u.dtype)
    if not (u.is_cuda or interpreting()):
        raise ActivationError("the fused step runs Triton kernels: it needs a CUDA tensor (or "
                              "TRITON_INTERPRET=1 on the CPU); use fused=False")
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    # float64: a Python float is not rounded through float32 on its way to an fp64 kernel
    h1 = inv_h if isinstance(inv_h, torch.Tensor) else torch.tensor(inv_h, dtype=torch.float64)
    s = torch.stack([tau.reshape(()).to(torch.float64),
                     h1.detach().reshape(()).to(device=tau.device, dtype=torch.float64)])
    return (in_compute_dtype(p, compute, u.device, ops.params),
            in_compute_dtype(s, compute, u.device, ("the time step tau", "1/h")))


def step(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
         inv_h: float | torch.Tensor, periodic: bool, dims: int, clamp: bool = False
         ) -> torch.Tensor:
    """One fused explicit step with the forward difference (1D: the last axis) or the
    forward-difference gradient (2D: the last two axes) over every leading index, with
    gradients for u, the parameters and tau. ``clamp``: keep each finite value in its
    stencil's range (the max-min principle, exact in floating point; the gradient is the
    step's)."""
    pc, s = _step_arguments(ops, u, p, tau, inv_h)
    flat = u.contiguous().reshape(-1, *u.shape[u.dim() - dims:])
    out = ops.step_ops()[f"{dims}d"](flat, pc, s, bool(periodic), bool(clamp))
    return out.reshape(u.shape)


def step_kernel(ops: Ops, u: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                tau: torch.Tensor, periodic: bool) -> torch.Tensor:
    """One fused explicit step u - tau K^T Phi(K u) with a learned kernel per channel: u of
    shape (batch, C, n), k of shape (C, W); gradients for u, k, the parameters and tau."""
    pc, s = _step_arguments(ops, u, p, tau, 1.0)
    compute = pc.dtype
    flat = u.contiguous().reshape(-1, u.shape[-1])
    out = ops.step_ops()["k1d"](flat, k.to(device=u.device, dtype=compute).contiguous(), pc, s,
                                bool(periodic))
    return out.reshape(u.shape)


def step_mixing(ops: Ops, u: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                tau: torch.Tensor, periodic: bool) -> torch.Tensor:
    """One fused explicit step u - tau K^T Phi(K u) with a learned C x C kernel that mixes
    channels: u (batch, C, n) with k (C, C, W), or u (batch, C, H, W) with k (C, C, KH, KW);
    gradients for u, k, the parameters and tau."""
    ops_made = ops.step_ops()
    pc, s = _step_arguments(ops, u, p, tau, 1.0)
    u4 = u.contiguous() if u.dim() == 4 else u.contiguous().unsqueeze(2)
    k4 = (k if k.dim() == 4 else k.unsqueeze(2)).to(device=u.device, dtype=pc.dtype).contiguous()
    return ops_made["c"](u4, k4, pc, s, bool(periodic)).reshape(u.shape)


#: longest 1D signal the temporally blocked kernel keeps in registers
MAX_TEMPORAL = 8192


def steps1d(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
            inv_h: float | torch.Tensor, periodic: bool, steps: int, clamp: bool = False
            ) -> torch.Tensor:
    """``steps`` fused explicit 1D steps in one launch per row (temporal blocking; forward
    only: no gradients). Rows up to MAX_TEMPORAL samples. fp16/bf16 signals stay in fp32
    between the steps (rounded once at the end), so the result is more accurate than, and not
    bitwise equal to, ``steps`` separate steps."""
    n = u.shape[-1]
    if n > MAX_TEMPORAL:
        raise ActivationError(f"signals longer than {MAX_TEMPORAL} samples are run step by step")
    import triton

    pc, s = _step_arguments(ops, u, p.detach(), tau.detach(), inv_h)
    flat = u.detach().contiguous().reshape(-1, n)
    out = torch.empty_like(flat)
    block = triton.next_power_of_2(n)
    with _quiet():  # warps grow with the row held in registers (no spills up to 8192)
        ops.kernel("steps1d")[(flat.shape[0],)](flat, out, pc, s, n, int(steps),
                                           PERIODIC=bool(periodic), BLOCK_SIZE=block,
                                           FP64=u.dtype == torch.float64,
                                           CLAMP=bool(clamp),
                                           num_warps=max(4, min(16, block // 256)))
    return out.reshape(u.shape)


def _scatter(ops: Ops, grads: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The gradient of the whole parameter vector p: trainable entries, zeros elsewhere."""
    if len(ops.trainable) == len(ops.params):
        return grads.to(p.dtype)
    full = torch.zeros_like(p)
    for k, name in enumerate(ops.trainable):
        full[ops.params.index(name)] = grads[k].to(p.dtype)
    return full


class _TorchFunction(torch.autograd.Function):
    """The torch backend with the explicit symbolic backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: torch.Tensor, ops: Ops) -> torch.Tensor:
        _compute_dtype(x.dtype)  # refuses integer tensors with a clear message
        forward, _ = ops.torch_functions(x.numel())
        ctx.save_for_backward(x, p)
        ctx.ops = ops
        return forward(x, p)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        x, p = ctx.saved_tensors
        ops: Ops = ctx.ops
        _, backward = ops.torch_functions(x.numel())
        gx, gps = backward(x, gy, p)
        gp = None
        if ctx.needs_input_grad[1]:
            stacked = torch.stack(list(gps)) if gps else p.new_zeros(0)
            gp = _scatter(ops, stacked, p)
        return gx, gp, None


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ActivationError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if x.is_cuda else "torch"
    if backend == "triton" and not x.is_cuda and not interpreting():
        raise ActivationError(
            "backend 'triton' needs a CUDA tensor (or TRITON_INTERPRET=1 set before triton is "
            "imported, to run the kernels on the CPU); use backend='torch' or 'auto' on the CPU"
        )
    return backend


def apply(ops: Ops, x: torch.Tensor, p: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Phi(x) elementwise with autograd; p holds the parameters in ``ops.params`` order."""
    if not isinstance(x, torch.Tensor):
        raise ActivationError(f"activation input must be a torch.Tensor, got {type(x).__name__}")
    if p.shape != (len(ops.params),):
        raise ActivationError(f"expected {len(ops.params)} parameters {ops.params}, "
                            f"got a tensor of shape {tuple(p.shape)}")
    chosen = resolve_backend(backend, x)
    if chosen == "torch":
        return _TorchFunction.apply(x, p, ops)
    _compute_dtype(x.dtype)
    forward, _ = ops.triton_ops()
    # the kernels index a flat buffer: a non-contiguous input is copied once, explicitly
    xc = x.contiguous()
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    # never a Python float: fp64 scalars halve speed
    pc = in_compute_dtype(p, compute, x.device, ops.params)
    return forward(xc, pc).view(x.shape)


def parameter_vector(values: Sequence[object], like: torch.Tensor | None = None) -> torch.Tensor:
    """Parameters (numbers or 0-dim tensors) stacked into one vector."""
    # float64, so that a number is kept as given (float32 made lam = 1e39 inf before the
    # range check, and rounded every value of a float64 input's parameters)
    tensors = [v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)
               for v in values]
    if not tensors:
        return torch.zeros(0) if like is None else like.new_zeros(0)
    if like is not None:
        tensors = [t.to(device=like.device) for t in tensors]
    return torch.stack([t.reshape(()) for t in tensors])


class Activation(torch.nn.Module):
    """Phi as an nn.Module. Trainable parameters are nn.Parameters (they move with .to() and
    live in the state_dict); the others are buffers. Built by generated modules and by
    ``fluxact.to_torch`` / ``Translation.to_torch``."""

    def __init__(self, ops: Ops, values: Mapping[str, object], *,
                 trainable: Sequence[str] | None = None, backend: str = "auto",
                 formula: str = "") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ActivationError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        trainable = ops.trainable if trainable is None else tuple(trainable)
        extra = sorted(set(trainable) - set(ops.trainable))
        if extra:
            raise ActivationError(
                f"parameter {extra[0]!r} was not generated as trainable (trainable: "
                f"{', '.join(ops.trainable) or 'none'}); generate the code with it trainable"
            )
        clash = [n for n in ops.params  # Activation's own names too: stability, g_max, ...
                 if hasattr(Activation, n) or n in ("ops", "backend", "formula")]
        if clash:
            raise ActivationError(
                f"parameter {clash[0]!r} has the name of an attribute of fluxact.Activation (an "
                "nn.Module); rename it in the formula (e.g. lam, th, a)")
        missing = [n for n in ops.params if values.get(n) is None]
        if missing:
            raise ActivationError(f"parameter {missing[0]!r} has no value; pass {missing[0]}=...")
        self.ops = ops
        self.backend = backend
        self.formula = formula
        for name in ops.params:
            # float64, so that a value is kept as given; .to(dtype) converts as usual
            value = torch.tensor(float(values[name]), dtype=torch.float64)
            if name in trainable:
                self.register_parameter(name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def parameter_vector(self) -> torch.Tensor:
        return torch.stack([getattr(self, n) for n in self.ops.params]) if self.ops.params \
            else torch.zeros(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parameter_vector().to(x.device)
        return apply(self.ops, x, p, self.backend)

    @property
    def stability(self) -> Stability:
        """The verifier's facts (g_max, L as functions of the parameters) for blocks."""
        return self.ops.stability

    def parameter_values(self) -> dict[str, torch.Tensor]:
        """Parameter name -> its current value (a 0-dim tensor, with gradient if trainable)."""
        return {n: getattr(self, n) for n in self.ops.params}

    def clone(self) -> Activation:
        """A new module with the same generated code and the current values (for per-block
        parameters); the kernels are shared, not copied."""
        values = {n: float(v.detach()) for n, v in self.parameter_values().items()}
        return Activation(self.ops, values, trainable=self.trainable_names(),
                          backend=self.backend, formula=self.formula)

    def trainable_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.ops.params
                     if isinstance(getattr(self, n), torch.nn.Parameter))

    def g_max(self) -> torch.Tensor:
        """g_max = sup Phi(r)/r at the current parameter values (float64, differentiable)."""
        facts = self.stability
        facts.check_values(self.parameter_values(), self.trainable_names())
        return facts.bound("g_max", self.parameter_values())

    def lipschitz(self) -> torch.Tensor:
        """L = sup |Phi'| at the current parameter values (float64, differentiable)."""
        facts = self.stability
        facts.check_values(self.parameter_values(), self.trainable_names())
        return facts.bound("lipschitz", self.parameter_values())

    def extra_repr(self) -> str:
        values = ", ".join(f"{n}={float(getattr(self, n).detach()):.6g}" for n in self.ops.params)
        formula = f"{self.formula!r}, " if self.formula else ""
        return f"{formula}{values}, backend={self.backend!r}"
