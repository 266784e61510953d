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

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .kernels.launch import interpreting, scatter
from .translator.errors import FluxactError
from .translator.facts import StabilityFacts, monomials

BACKENDS = ("auto", "triton", "torch")
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
        bound = self.g_max if which == "g_max" else self.lipschitz
        if bound is None or (which == "g_max" and self.reason is not None):
            raise StabilityError(self.reason if which == "g_max" else (
                f"no Lipschitz bound: {self.lipschitz_reason}"))
        self.check_positive(values)
        terms = monomials(bound)
        out = None
        for coefficient, exponents in terms:
            # a bare coefficient is exact; a product of powers is rounded up
            term = torch.tensor(coefficient * (_ROUND_UP if exponents else 1.0),
                                dtype=torch.float64)
            for name, e in exponents:
                v = values[name]
                v = v.to(torch.float64) if isinstance(v, torch.Tensor) else torch.tensor(
                    float(v), dtype=torch.float64)
                term = term.to(v.device) * v**e
            out = term if out is None else out.to(term.device) + term
        # a float64 sum of k positive terms is at most (k - 1) 2^-53 below the exact one
        return out * _ROUND_UP if len(terms) > 1 else out

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


class UnpicklableError(ActivationError, pickle.PicklingError):
    """An activation generated at run time cannot be pickled (also a PicklingError, which
    is what code that tries pickling and falls back, as torch's compile caches, catches)."""


def _ops_of(module: str) -> Ops:
    """The Ops of a generated module, imported by name (what a pickled Ops refers to)."""
    import importlib

    found = list({id(v): v for v in vars(importlib.import_module(module)).values()
                  if isinstance(v, Ops)}.values())
    if len(found) != 1:
        raise ActivationError(f"{module} is not a module generated by fluxact build (it holds "
                              f"{len(found)} activations); regenerate it")
    return found[0]


class Ops:
    """One activation's generated pieces (built by the generated module, once): its Phi and
    (Phi', dPhi/dp) as @triton.jit functions, which the kernels of fluxact/kernels/ are bound
    to, the torch functions and the verifier's facts."""

    def __init__(
        self,
        *,
        name: str,
        digest: str,
        params: Sequence[str],
        trainable: Sequence[str],
        torch_forward: Callable[..., torch.Tensor],
        torch_backward: Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]],
        stability: Stability,
        phi: Any = None,
        dphi: Any = None,
        torch_forward_raw: Callable[..., torch.Tensor] | None = None,
        **other: Any,
    ) -> None:
        if other or phi is None or dphi is None or torch_forward_raw is None:
            # a module of another fluxact version
            passes = (f"it passes {sorted(other)[0]}=" if other else
                      "it has no phi=, dphi= and torch_forward_raw=")
            raise ActivationError(
                f"activation {name} was generated by another fluxact version ({passes}); "
                "regenerate it (fluxact build)")
        self.name = name
        self.digest = digest
        self.params = tuple(params)
        self.trainable = tuple(trainable)
        self.phi, self.dphi = phi, dphi
        self.torch_forward = torch_forward
        self.torch_forward_raw = torch_forward_raw
        self.torch_backward = torch_backward
        self.stability = stability
        self.compile_min_elements: int | None = COMPILE_MIN_ELEMENTS
        self._compiled: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._kernels: Any = None
        # registered now where the kernels can run, not on first call: torch.compile must not
        # trace the registration (dynamo refuses to trace torch.library.triton_op);
        # registering compiles nothing
        self._custom: dict[str, Any] | None = (
            self._register() if torch.cuda.is_available() or interpreting() else None)

    def __copy__(self) -> Ops:
        return self  # one activation's generated code: immutable, shared by every copy

    def __deepcopy__(self, memo: dict[int, Any]) -> Ops:
        return self  # (copy.deepcopy(model) keeps working: it never pickles)

    def __reduce_ex__(self, protocol: object) -> Any:
        """Pickled by reference to the generated module (a build-time package, importable
        where it is loaded); code generated at run time lives only in this process's memory
        and is refused with what to do instead."""
        module = getattr(self.torch_forward, "__module__", None) or ""
        if module.startswith("fluxact_generated."):
            raise UnpicklableError(
                f"activation {self.name} was generated at run time (fluxact.to_torch) and "
                "exists only in this process, so a model holding it cannot be pickled whole "
                "(torch.save(model)): save model.state_dict() and load it into a model built "
                "the same way, or generate the activation ahead of time with `fluxact build` "
                "and build the model from that package")
        return (_ops_of, (module,))

    def kernel(self, name: str) -> Any:
        """The kernel ``name`` of fluxact.kernels.library.KERNELS ("fwd", "step1d_fwd",
        "iso_bwd", ...) bound to this activation's formula."""
        if self._kernels is None:
            from .kernels.library import Bound

            self._kernels = Bound(self.phi, self.dphi, len(self.trainable))
        return self._kernels(name)

    def custom(self, op: str) -> Any:
        """The torch custom op (with autograd) ``op`` around the kernels: "act" (Phi), "1d",
        "2d" (the fused explicit steps), "k1d" (learned 1D kernels), "c" (channel-mixing
        kernels), "iso", "aniso" (the coupled activations, this module's Phi read as g(s2))
        and "c2d" (the fused coupled 2D step)."""
        if self._custom is None:
            self._custom = self._register()
        return self._custom[op]

    def _register(self) -> dict[str, Any]:
        from .kernels.library import custom_ops

        self.kernel("fwd")  # binds the formula
        return custom_ops(f"fluxact::{self.name}_{self.digest[:12]}", self._kernels,
                          [self.params.index(n) for n in self.trainable])

    # -- torch backend ------------------------------------------------------------------------

    def torch_functions(self, numel: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(forward(x, p), backward(x, gy, p)) of the torch backend, dtype casts included (so
        that torch.compile fuses them too): compiled for large inputs only where the caller
        opted in (``compile_min_elements``)."""
        if (self.compile_min_elements is None or numel < self.compile_min_elements
                or torch.compiler.is_compiling()):
            return self._torch_forward, self._torch_backward
        if self._compiled is None:
            from .files import private_compiler_cache

            private_compiler_cache()
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


def in_compute_dtype(values: torch.Tensor, compute: torch.dtype, device: torch.device,
                     names: Sequence[str]) -> torch.Tensor:
    """``values`` (parameters, a time step) converted to the dtype the code computes in,
    refusing a value <= 0, -inf included (the generated code computes the formula for
    positive parameters: its forms are simplified under that assumption, and Phi = A F(r/c)
    is computed through x = r/c, codegen/prepare.py) and a finite value that the conversion
    makes infinite or 0 (lam = 1e39 is inf in float32, and r/(1 + lam r^2) would then be 0
    with a NaN gradient); NaN and +inf pass, and the result is what floating point makes of
    them. One comparison on the CPU, a device assertion on CUDA and inside torch.compile
    (no synchronisation)."""
    out = values.to(device=device, dtype=compute)
    if values.numel() == 0:
        return out
    given = values.detach()
    finite = torch.isfinite(given)
    bad = given <= 0  # NaN compares False
    if values.dtype != compute:
        got = out.detach().to(values.device)
        bad = bad | (finite & (~torch.isfinite(got) | ((got == 0) & (given != 0))))
    if torch.compiler.is_compiling() or bad.is_cuda:
        torch._assert_async(~bad.any(), f"a parameter is not positive, or outside the range "
                                        f"of {compute}")
    elif bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        value = float(given[k])
        if value <= 0:
            raise ActivationError(
                f"{names[k]} = {value:g} is not positive: fluxact's generated code computes "
                "for positive parameters and time steps (a trained value crossed 0? lower the "
                "learning rate or parameterise it, e.g. lam = exp(w))")
        raise ActivationError(
            f"{names[k]} = {value:g} is outside the range of {compute}, the dtype "
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


def coupled_activation(ops: Ops, s: torch.Tensor, p: torch.Tensor, kind: str) -> torch.Tensor:
    """The coupled activation with g = this module's Phi, as Triton kernels: ``kind`` "iso"
    for s of shape (groups, C, N) (g(sum over C of s^2) s), "aniso" for (groups, V, 2, N)
    (g(J) s, J the 2 x 2 sum over the V vectors); gradients for s and the parameters."""
    _compute_dtype(s.dtype)
    if not (s.is_cuda or interpreting()):
        raise ActivationError("the coupled kernels run Triton: they need a CUDA tensor (or "
                              "TRITON_INTERPRET=1 on the CPU); use backend='torch'")
    compute = torch.float64 if s.dtype == torch.float64 else torch.float32
    return ops.custom(kind)(s.contiguous(), in_compute_dtype(p, compute, s.device,
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
    return ops.custom("c2d")(flat, pc, st, bool(clamp)).reshape(u.shape)


def _step_arguments(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
                    inv_h: float | torch.Tensor | Sequence[float], axes: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the parameters, st = (tau, 1/h, ...)) in the compute dtype; ``inv_h`` one number, or
    ``axes`` of them, one per axis (the 3D step)."""
    _compute_dtype(u.dtype)
    if not (u.is_cuda or interpreting()):
        raise ActivationError("the fused step runs Triton kernels: it needs a CUDA tensor (or "
                              "TRITON_INTERPRET=1 on the CPU); use fused=False")
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    # float64: a Python float is not rounded through float32 on its way to an fp64 kernel
    sizes = list(inv_h) if isinstance(inv_h, list | tuple) else [inv_h]
    if len(sizes) != axes:
        raise ActivationError(f"the fused step takes {axes} value(s) of 1/h, got {len(sizes)}")
    hs = [h if isinstance(h, torch.Tensor) else torch.tensor(float(h), dtype=torch.float64)
          for h in sizes]
    s = torch.stack([tau.reshape(()).to(torch.float64),
                     *(h.detach().reshape(()).to(device=tau.device, dtype=torch.float64)
                       for h in hs)])
    return (in_compute_dtype(p, compute, u.device, ops.params),
            in_compute_dtype(s, compute, u.device, ("the time step tau", *(["1/h"] * len(hs)))))


def step(ops: Ops, u: torch.Tensor, p: torch.Tensor, tau: torch.Tensor,
         inv_h: float | torch.Tensor | Sequence[float], periodic: bool, dims: int,
         clamp: bool = False) -> torch.Tensor:
    """One fused explicit step with the forward difference (1D: the last axis) or the
    forward-difference gradient (2D: the last two axes; 3D: the last three, the per-axis
    flux, ``inv_h`` one 1/h per axis) over every leading index, with gradients for u, the
    parameters and tau. ``clamp``: keep each finite value in its stencil's range (the
    max-min principle, exact in floating point; the gradient is the step's)."""
    pc, s = _step_arguments(ops, u, p, tau, inv_h, 3 if dims == 3 else 1)
    flat = u.contiguous().reshape(-1, *u.shape[u.dim() - dims:])
    out = ops.custom(f"{dims}d")(flat, pc, s, bool(periodic), bool(clamp))
    return out.reshape(u.shape)


def step_kernel(ops: Ops, u: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                tau: torch.Tensor, periodic: bool) -> torch.Tensor:
    """One fused explicit step u - tau K^T Phi(K u) with a learned kernel per channel: u of
    shape (batch, C, n), k of shape (C, W); gradients for u, k, the parameters and tau."""
    pc, s = _step_arguments(ops, u, p, tau, 1.0)
    compute = pc.dtype
    flat = u.contiguous().reshape(-1, u.shape[-1])
    out = ops.custom("k1d")(flat, k.to(device=u.device, dtype=compute).contiguous(), pc, s,
                            bool(periodic))
    return out.reshape(u.shape)


def step_mixing(ops: Ops, u: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                tau: torch.Tensor, periodic: bool) -> torch.Tensor:
    """One fused explicit step u - tau K^T Phi(K u) with a learned C x C kernel that mixes
    channels: u (batch, C, n) with k (C, C, W), or u (batch, C, H, W) with k (C, C, KH, KW);
    gradients for u, k, the parameters and tau."""
    pc, s = _step_arguments(ops, u, p, tau, 1.0)
    u4 = u.contiguous() if u.dim() == 4 else u.contiguous().unsqueeze(2)
    k4 = (k if k.dim() == 4 else k.unsqueeze(2)).to(device=u.device, dtype=pc.dtype).contiguous()
    return ops.custom("c")(u4, k4, pc, s, bool(periodic)).reshape(u.shape)


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
    from .kernels.step1d import run_steps

    pc, s = _step_arguments(ops, u, p.detach(), tau.detach(), inv_h)
    flat = u.detach().contiguous().reshape(-1, n)
    return run_steps(ops.kernel("steps1d"), flat, pc, s, periodic, steps, clamp).reshape(u.shape)


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
            gp = scatter(stacked, p, [ops.params.index(n) for n in ops.trainable])
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
    forward = ops.custom("act")
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


#: what an Activation computes: Phi(r), or a diffusivity g(s2) for coupled blocks
ROLES = ("activation", "diffusivity")


class Activation(torch.nn.Module):
    """Phi as an nn.Module. Trainable parameters are nn.Parameters (they move with .to() and
    live in the state_dict); the others are buffers. Built by generated modules and by
    ``fluxact.to_torch`` / ``Translation.to_torch``."""

    def __init__(self, ops: Ops, values: Mapping[str, object], *,
                 trainable: Sequence[str] | None = None, backend: str = "auto",
                 formula: str = "", role: str = "activation") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ActivationError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if role not in ROLES:
            raise ActivationError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
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
        # what the module computes, which decides what its stability facts bound: "activation"
        # Phi(r) (g_max = sup Phi(r)/r), "diffusivity" g(s2) (g_max = sup g). A block that
        # reads one as the other would take its time step from the wrong bound.
        self.role = role
        self._register_values(values, trainable)

    def _register_values(self, values: Mapping[str, object], trainable: Sequence[str]) -> None:
        """Each parameter of the formula as an nn.Parameter (trainable) or a buffer, under
        its own name (a subclass may parametrise them: fluxact.learned)."""
        for name in self.ops.params:
            # float64, so that a value is kept as given; .to(dtype) converts as usual
            value = torch.tensor(float(values[name]), dtype=torch.float64)
            if name in trainable:
                self.register_parameter(name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def check_role(self, role: str) -> None:
        """Refuse to serve as ``role`` when this module computes the other thing: Phi read as
        a diffusivity g(s2), or g(s2) read as Phi, would take its time step from a bound of
        the other function (4 tanh(r/4) read as g: sup Phi(r)/r = 1, sup g = 4)."""
        if self.role == role:
            return
        if role == "diffusivity":
            raise StabilityError(
                "this Activation computes Phi(r) (fluxact.to_torch), not a diffusivity g(s2); "
                "a coupled block or the isotropic flux needs g: pass its formula, a catalogue "
                "name or fluxact.activation.diffusivity_to_torch(...), or filter with the "
                "per-axis flux (coupling='uncoupled')")
        raise StabilityError(
            "this Activation computes a diffusivity g(s2) (diffusivity_to_torch), not Phi(r); "
            "a diffusion block needs Phi: pass the formula, a catalogue name or "
            "fluxact.to_torch(...)")

    def parameter_vector(self) -> torch.Tensor:
        # each 0-dim parameter times ones(1), concatenated: the same numbers as torch.stack,
        # but no view of a 0-dim tensor, which AOTInductor lowers as a Constant and then
        # cannot unsqueeze ("'Constant' object has no attribute 'data'", torch 2.13)
        values = [getattr(self, n) for n in self.ops.params]
        if not values:
            return torch.zeros(0)
        return torch.cat([v * torch.ones(1, dtype=v.dtype, device=v.device) for v in values])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parameter_vector().to(x.device)
        return apply(self.ops, x, p, self.backend)

    def raw_parameters(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The parameters as they are now, checked and converted once for Phi (or g(s2)) as
        printed, ``ops.torch_forward_raw(x, *values)``: no autograd and no NaN repair, for
        fused steps that check their result and compute it again through this module where
        it is not finite (GridDiffusion.run(compiled=True))."""
        if dtype not in (torch.float32, torch.float64):
            raise ActivationError(f"the printed Phi computes float32 or float64, not {dtype}")
        return in_compute_dtype(self.parameter_vector().detach().to(device), dtype, device,
                                self.ops.params)

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
                          backend=self.backend, formula=self.formula, role=self.role)

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
        role = ", role='diffusivity'" if self.role == "diffusivity" else ""
        return f"{formula}{values}, backend={self.backend!r}{role}"
