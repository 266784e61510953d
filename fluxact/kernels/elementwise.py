"""The activation elementwise: y = Phi(x), and its backward gx = gy Phi'(x) with the per-block
partial sums of gy dPhi/dp for the trainable parameters.

The formula enters as PHI(x, p_ptr) -> Phi(x) and DPHI(x, p_ptr) -> (Phi'(x), (dPhi/dp_k for
the NT trainable parameters)): @triton.jit functions of a generated module, passed as
constexpr arguments by its kernels (docs/codegen.md).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .dtypes import to_compute, to_storage


@triton.jit
def activation_fwd(x_ptr, y_ptr, p_ptr, n_elements, BLOCK_SIZE: tl.constexpr,
                   FP64: tl.constexpr, PHI: tl.constexpr):
    """y = Phi(x) elementwise; parameters from p_ptr; fp16/bf16 computed in fp32."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)  # 64-bit: > 2^31 ok
    mask = offsets < n_elements
    x = to_compute(tl.load(x_ptr + offsets, mask=mask, other=0.0), FP64)
    tl.store(y_ptr + offsets, to_storage(PHI(x, p_ptr), y_ptr), mask=mask)


@triton.jit
def activation_bwd(x_ptr, gy_ptr, gx_ptr, p_ptr, gp_ptr, n_elements, BLOCK_SIZE: tl.constexpr,
                   FP64: tl.constexpr, DPHI: tl.constexpr, NT: tl.constexpr):
    """gx = gy * Phi'(x); gp[program, k] = sum over the block of gy * dPhi/dp_k."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = to_compute(tl.load(x_ptr + offsets, mask=mask, other=0.0), FP64)
    gy = to_compute(tl.load(gy_ptr + offsets, mask=mask, other=0.0), FP64)
    dphi, grads = DPHI(x, p_ptr)
    tl.store(gx_ptr + offsets, to_storage(gy * dphi, gx_ptr), mask=mask)
    for k in tl.static_range(NT):
        tl.store(gp_ptr + pid * NT + k,
                 tl.sum(tl.where(mask, gy * grads[k], 0.0), axis=0).to(gp_ptr.dtype.element_ty))
