"""The activation elementwise: y = Phi(x), and its backward gx = gy Phi'(x) with the per-block
partial sums of gy dPhi/dp for the trainable parameters; their launchers.

The formula enters through the globals _phi, _dphi and N_TRAIN that a bound copy of each
kernel holds (fluxact/kernels/formula.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .dtypes import to_compute, to_storage
from .formula import N_TRAIN, _dphi, _phi
from .launch import BLOCK_SIZE, launch, partial_sums


@triton.jit
def activation_fwd(x_ptr, y_ptr, p_ptr, n_elements, BLOCK_SIZE: tl.constexpr,
                   FP64: tl.constexpr):
    """y = Phi(x) elementwise; parameters from p_ptr; fp16/bf16 computed in fp32."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)  # 64-bit: > 2^31 ok
    mask = offsets < n_elements
    x = to_compute(tl.load(x_ptr + offsets, mask=mask, other=0.0), FP64)
    tl.store(y_ptr + offsets, to_storage(_phi(x, p_ptr), y_ptr), mask=mask)


@triton.jit
def activation_bwd(x_ptr, gy_ptr, gx_ptr, p_ptr, gp_ptr, n_elements, BLOCK_SIZE: tl.constexpr,
                   FP64: tl.constexpr):
    """gx = gy * Phi'(x); gp[program, k] = sum over the block of gy * dPhi/dp_k."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = to_compute(tl.load(x_ptr + offsets, mask=mask, other=0.0), FP64)
    gy = to_compute(tl.load(gy_ptr + offsets, mask=mask, other=0.0), FP64)
    dphi, grads = _dphi(x, p_ptr)
    tl.store(gx_ptr + offsets, to_storage(gy * dphi, gx_ptr), mask=mask)
    for k in tl.static_range(N_TRAIN):
        tl.store(gp_ptr + pid * N_TRAIN + k,
                 tl.sum(tl.where(mask, gy * grads[k], 0.0), axis=0).to(gp_ptr.dtype.element_ty))


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The op "act": Phi(x) on a contiguous x of any shape (fluxact/kernels/launch.py)."""
    fwd, bwd = kernel("fwd"), kernel("bwd")

    def forward(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        n = x.numel()
        launch(fwd, triton.cdiv(n, BLOCK_SIZE), x, y, p, n, BLOCK_SIZE=BLOCK_SIZE,
               FP64=x.dtype == torch.float64)
        return y

    def backward(x: torch.Tensor, gy: torch.Tensor, p: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        gx = torch.empty_like(x)
        n = x.numel()
        programs = triton.cdiv(n, BLOCK_SIZE)
        partial = partial_sums(x, programs, trainable)
        launch(bwd, programs, x, gy, gx, p, partial, n, BLOCK_SIZE=BLOCK_SIZE,
               FP64=x.dtype == torch.float64)
        return gx, partial[:, :trainable].sum(dim=0)

    return {"act": (forward, backward)}
