"""Launching the kernels of this package: block sizes, the interpreter's quiet mode, and the
one helper that turns a family's forward and backward launchers into a torch custom op with
autograd (``register``).

A family module (elementwise, step1d, ...) defines ``launchers(kernel, trainable)``: for each
of its ops, a forward and a backward launcher, plain annotated functions that allocate the
outputs and launch a bound kernel (``kernel(name)``). They follow one convention, which lets
``register`` derive the autograd formula from their signatures:

- the forward's tensor arguments are the op's inputs; ``p`` is the parameter vector and
  ``st`` the step sizes (tau, then 1/h, one per axis for the 3D step); its bool arguments
  are flags (no gradient);
- the backward takes the forward's tensor arguments with the incoming gradient ``gy`` second,
  then those of the forward's flags it needs, by name; it returns the gradients of the inputs
  other than ``p`` and ``st``, in order, then one vector of sums: dL/dtau first where there
  is ``st``, then dL/dp_k for the trainable parameters.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: Elements per Triton program. Untuned: the Triton tutorials' vector-add size; to be measured
#: on a GPU (benchmarks/activation.py) before it is changed.
BLOCK_SIZE = 1024
#: columns per program of the fused 2D steps (one image row segment per program); untuned
BLOCK_SIZE_2D = 256


def interpreting() -> bool:
    """Whether Triton runs its interpreter (TRITON_INTERPRET=1): kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def row_block(n: int, most: int = BLOCK_SIZE) -> int:
    """Elements per program along a row of length n: a power of two from 16 up to ``most``,
    so that short rows (the paper's signals have 256 samples) waste no lanes."""
    import triton

    return max(16, min(most, triton.next_power_of_2(n)))


def quiet() -> contextlib.AbstractContextManager[Any]:
    """Triton's interpreter runs a kernel on numpy: a NaN in a branch that tl.where discards
    (0/0 at x = 0 of sqrt(2) th/|x|) would raise numpy's floating-point warnings, which a GPU
    never does. Silenced there; compiled kernels are untouched."""
    if not interpreting():
        return contextlib.nullcontext()
    import numpy

    return numpy.errstate(all="ignore")


def launch(kernel: Any, programs: int, *args: Any, **constexprs: Any) -> None:
    """Run ``kernel`` on a one-axis grid of ``programs`` programs, visible to torch.compile
    (torch.library.wrap_triton)."""
    from torch.library import wrap_triton

    with quiet():
        wrap_triton(kernel)[(programs,)](*args, **constexprs)


def partial_sums(like: torch.Tensor, programs: int, columns: int) -> torch.Tensor:
    """Per-program partial sums that a backward kernel writes and its launcher reduces on the
    device: float64 for float64 data, float32 otherwise (at least one column, so that a
    kernel with nothing to sum still gets a valid pointer)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.empty((programs, max(columns, 1)), device=like.device, dtype=dtype)


def register(name: str, forward: Callable[..., torch.Tensor],
             backward: Callable[..., tuple[torch.Tensor, ...]],
             trainable_at: Sequence[int]) -> Callable[..., torch.Tensor]:
    """``forward`` and ``backward`` registered as the torch custom ops ``name``_fwd and
    ``name``_bwd (torch.library.triton_op: torch.compile sees the kernels), the forward with
    autograd by the convention above; ``trainable_at``: the positions in ``p`` of the trainable
    parameters. Returns the forward op."""
    from torch.library import register_autograd, triton_op

    names = list(inspect.signature(forward).parameters)
    flags = [n for n in names
             if inspect.signature(forward).parameters[n].annotation in (bool, "bool")]
    tensors = [n for n in names if n not in flags]
    backward_flags = [n for n in inspect.signature(backward).parameters if n in flags]
    forward_op = triton_op(f"{name}_fwd", mutates_args=())(forward)
    backward_op = triton_op(f"{name}_bwd", mutates_args=())(backward)
    where = list(trainable_at)

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        given = dict(zip(names, inputs))
        ctx.save_for_backward(*(given[n] for n in tensors))
        ctx.flags = [given[n] for n in backward_flags]

    def grad(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        saved = ctx.saved_tensors
        *grads, sums = backward_op(saved[0], gy.contiguous(), *saved[1:], *ctx.flags)
        inputs = iter(grads)
        first = 1 if "st" in tensors else 0  # dL/dtau leads the sums of a step
        out: dict[str, Any] = {}
        for n, value in zip(tensors, saved):
            if n == "p":
                out[n] = scatter(sums[first:], value, where)
            elif n == "st":  # (tau, 1/h, ...): only tau has a gradient
                out[n] = torch.cat([sums[:1], sums.new_zeros(value.numel() - 1)]
                                   ).to(value.dtype)
            else:
                out[n] = next(inputs).to(value.dtype)
        return tuple(out.get(n) for n in names)

    register_autograd(f"{name}_fwd", grad, setup_context=setup_context)
    return forward_op


def scatter(grads: torch.Tensor, p: torch.Tensor, trainable_at: Sequence[int]) -> torch.Tensor:
    """The gradient of the whole parameter vector ``p`` from the gradients of its trainable
    entries (at ``trainable_at``): zeros elsewhere."""
    if list(trainable_at) == list(range(p.numel())):
        return grads.to(p.dtype)
    full = torch.zeros_like(p)
    for k, at in enumerate(trainable_at):
        full[at] = grads[k].to(p.dtype)
    return full
