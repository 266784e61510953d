"""Loads and stores in the dtype the kernels compute in: fp64 as it is, fp32, fp16 and bf16
in fp32. bf16 is converted by its bits, exactly (subnormals kept), because Triton's
interpreter flushes bf16 subnormals in ``.to`` (sign(9e-41) was 0 under TRITON_INTERPRET=1)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def to_compute(v, FP64: tl.constexpr):
    """A loaded value in the compute dtype: fp64 as it is, everything else in fp32."""
    if FP64:
        out = v.to(tl.float64)
    elif v.dtype == tl.bfloat16:
        out = (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        out = v.to(tl.float32)
    return out


@triton.jit
def load(ptrs, mask, FP64: tl.constexpr):
    """tl.load (0 where masked) in the compute dtype."""
    return to_compute(tl.load(ptrs, mask=mask, other=0.0), FP64)


@triton.jit
def to_storage(v, ptr):
    """A computed value in the dtype ``ptr`` points to; to bf16 rounded to nearest even by
    its bits (subnormals kept, NaN stays NaN)."""
    if ptr.dtype.element_ty == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = tl.where(v != v, 0x7FC00000, bits + 0x7FFF + ((bits >> 16) & 1))
        out = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        out = v.to(ptr.dtype.element_ty)
    return out
