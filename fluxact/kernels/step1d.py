"""Explicit diffusion steps in 1D (P2 11, K = D+ / h): one step per row, its backward,
and the temporally blocked run of many steps with the row in registers.

The formula enters as PHI(x, p_ptr) -> Phi(x) and, in the backward kernels,
DPHI(x, p_ptr) -> (Phi'(x), (dPhi/dp_k for the NT trainable parameters)): @triton.jit
functions of a generated module, passed as constexpr arguments by its kernels
(docs/codegen.md).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .dtypes import to_compute, to_storage


@triton.jit
def step1d_fwd(u_ptr, out_ptr, p_ptr, s_ptr, n, PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
               FP64: tl.constexpr, CLAMP: tl.constexpr, PHI: tl.constexpr):
    """One explicit diffusion step per row of length n in one pass (P2 11, K = D+ / h):
    out_i = u_i + tau/h (Phi((u_{i+1} - u_i)/h) - Phi((u_i - u_{i-1})/h)), zero flux across
    the ends (reflecting) or wrapped (periodic); s_ptr holds (tau, 1/h). CLAMP: a finite
    out_i is clamped to [min, max] of u_{i-1}, u_i, u_{i+1}, which under the max-min bound it
    never leaves in exact arithmetic (a rounding correction; fluxact.operators.stencil_range)."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    row = pid // blocks
    i = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = i < n
    if PERIODIC:
        ip = tl.where(i + 1 < n, i + 1, 0)
        im = tl.where(i > 0, i - 1, n - 1)
    else:
        ip = tl.minimum(i + 1, n - 1)
        im = tl.maximum(i - 1, 0)
    base = u_ptr + row * n
    u = tl.load(base + i, mask=mask, other=0.0)
    up = tl.load(base + ip, mask=mask, other=0.0)
    um = tl.load(base + im, mask=mask, other=0.0)
    u = to_compute(u, FP64)
    up = to_compute(up, FP64)
    um = to_compute(um, FP64)
    tau = to_compute(tl.load(s_ptr + 0), FP64)
    inv_h = to_compute(tl.load(s_ptr + 1), FP64)
    vp = PHI((up - u) * inv_h, p_ptr)
    vm = PHI((u - um) * inv_h, p_ptr)
    if not PERIODIC:
        vp = tl.where(i < n - 1, vp, 0.0)
        vm = tl.where(i > 0, vm, 0.0)
    out = u + tau * inv_h * (vp - vm)
    if CLAMP:
        low = tl.minimum(u, tl.minimum(up, um))
        high = tl.maximum(u, tl.maximum(up, um))
        finite = tl.abs(out) < float("inf")  # NaN and inf stay as they are
        out = tl.where(finite, tl.minimum(tl.maximum(out, low), high), out)
    tl.store(out_ptr + row * n + i, to_storage(out, out_ptr), mask=mask)


@triton.jit
def step1d_bwd(u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, n, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, PHI: tl.constexpr, DPHI: tl.constexpr,
               NT: tl.constexpr):
    """Backward of the fused step: gu = gy - tau K^T (Phi'(K u) * K gy); per program the
    partial sums of dL/dtau = -sum (K gy) Phi(K u) and dL/dp = -tau sum (K gy) dPhi/dp(K u)
    (column 0: tau, then the trainable parameters), reduced on the device by the caller."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    row = pid // blocks
    i = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = i < n
    if PERIODIC:
        ip = tl.where(i + 1 < n, i + 1, 0)
        im = tl.where(i > 0, i - 1, n - 1)
        flux = mask
    else:
        ip = tl.minimum(i + 1, n - 1)
        im = tl.maximum(i - 1, 0)
        flux = mask & (i < n - 1)
    base = u_ptr + row * n
    gbase = gy_ptr + row * n
    u = tl.load(base + i, mask=mask, other=0.0)
    up = tl.load(base + ip, mask=mask, other=0.0)
    um = tl.load(base + im, mask=mask, other=0.0)
    gy = tl.load(gbase + i, mask=mask, other=0.0)
    gyp = tl.load(gbase + ip, mask=mask, other=0.0)
    gym = tl.load(gbase + im, mask=mask, other=0.0)
    u = to_compute(u, FP64)
    up = to_compute(up, FP64)
    um = to_compute(um, FP64)
    gy = to_compute(gy, FP64)
    gyp = to_compute(gyp, FP64)
    gym = to_compute(gym, FP64)
    tau = to_compute(tl.load(s_ptr + 0), FP64)
    inv_h = to_compute(tl.load(s_ptr + 1), FP64)
    rp = (up - u) * inv_h
    dp, grads = DPHI(rp, p_ptr)
    dm, _ = DPHI((u - um) * inv_h, p_ptr)
    kgp = (gyp - gy) * inv_h  # (K gy) on the flux to the right
    zp = dp * kgp
    zm = dm * (gy - gym) * inv_h
    if not PERIODIC:
        zp = tl.where(i < n - 1, zp, 0.0)
        zm = tl.where(i > 0, zm, 0.0)
    gu = gy + tau * inv_h * (zp - zm)
    tl.store(gu_ptr + row * n + i, to_storage(gu, gu_ptr), mask=mask)
    slot = gp_ptr + pid * (NT + 1)
    vp = PHI(rp, p_ptr)
    tl.store(slot, -tl.sum(tl.where(flux, kgp * vp, 0.0), axis=0).to(gp_ptr.dtype.element_ty))
    for k in tl.static_range(NT):
        tl.store(slot + 1 + k,
                 (-tau * tl.sum(tl.where(flux, kgp * grads[k], 0.0), axis=0)
                  ).to(gp_ptr.dtype.element_ty))


@triton.jit
def steps1d(u_ptr, out_ptr, p_ptr, s_ptr, n, steps, PERIODIC: tl.constexpr,
            BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, CLAMP: tl.constexpr, PHI: tl.constexpr):
    """``steps`` explicit steps (as the fused step kernel) of one row of length
    n <= BLOCK_SIZE, which stays in registers between the steps (temporal blocking): one read
    and one write of the signal for the whole run. Forward only."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_SIZE)
    mask = i < n
    if PERIODIC:
        ip = tl.where(i + 1 < n, i + 1, 0)
        im = tl.where(i > 0, i - 1, n - 1)
    else:
        ip = tl.minimum(i + 1, n - 1)
        im = tl.maximum(i - 1, 0)
    u = tl.load(u_ptr + row * n + i, mask=mask, other=0.0)
    u = to_compute(u, FP64)
    tau = to_compute(tl.load(s_ptr + 0), FP64)
    inv_h = to_compute(tl.load(s_ptr + 1), FP64)
    k = 0
    while k < steps:  # a while loop: Triton's interpreter cannot range() over an argument
        up = tl.gather(u, ip, 0)
        um = tl.gather(u, im, 0)
        vp = PHI((up - u) * inv_h, p_ptr)
        vm = PHI((u - um) * inv_h, p_ptr)
        if not PERIODIC:
            vp = tl.where(i < n - 1, vp, 0.0)
            vm = tl.where(i > 0, vm, 0.0)
        new = u + tau * inv_h * (vp - vm)
        if CLAMP:  # as in the single step
            low = tl.minimum(u, tl.minimum(up, um))
            high = tl.maximum(u, tl.maximum(up, um))
            new = tl.where(tl.abs(new) < float("inf"), tl.minimum(tl.maximum(new, low), high),
                           new)
        u = new
        k += 1
    tl.store(out_ptr + row * n + i, to_storage(u, out_ptr), mask=mask)
