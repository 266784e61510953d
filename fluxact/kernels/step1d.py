"""Explicit diffusion steps in 1D (P2 11, K = D+ / h): one step per row, its backward,
and the temporally blocked run of many steps with the row in registers.

The formula enters through the globals _phi, _dphi and N_TRAIN that a bound copy of each
kernel holds (fluxact/kernels/formula.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .dtypes import load, to_storage
from .formula import N_TRAIN, _dphi, _phi
from .launch import launch, partial_sums, quiet, row_block
from .stencil import clamp_finite, neighbours, row_lanes, step_sizes


@triton.jit
def _update(u, up, um, i, n, tau, inv_h, p_ptr, PERIODIC: tl.constexpr, CLAMP: tl.constexpr,
            PHI: tl.constexpr):
    """u_i + tau/h (Phi((u_{i+1} - u_i)/h) - Phi((u_i - u_{i-1})/h)), zero flux across the ends
    unless PERIODIC; CLAMP: a finite result kept in [min, max] of u_{i-1}, u_i, u_{i+1}."""
    vp = PHI((up - u) * inv_h, p_ptr)
    vm = PHI((u - um) * inv_h, p_ptr)
    if not PERIODIC:
        vp = tl.where(i < n - 1, vp, 0.0)
        vm = tl.where(i > 0, vm, 0.0)
    out = u + tau * inv_h * (vp - vm)
    if CLAMP:
        out = clamp_finite(out, tl.minimum(u, tl.minimum(up, um)),
                           tl.maximum(u, tl.maximum(up, um)))
    return out


@triton.jit
def step1d_fwd(u_ptr, out_ptr, p_ptr, s_ptr, n, PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
               FP64: tl.constexpr, CLAMP: tl.constexpr):
    """One explicit diffusion step per row of length n in one pass (P2 11, K = D+ / h):
    out_i = u_i + tau/h (Phi((u_{i+1} - u_i)/h) - Phi((u_i - u_{i-1})/h)), zero flux across
    the ends (reflecting) or wrapped (periodic); s_ptr holds (tau, 1/h). CLAMP: a finite
    out_i is clamped to [min, max] of u_{i-1}, u_i, u_{i+1}, which under the max-min bound it
    never leaves in exact arithmetic (a rounding correction; fluxact.operators.stencil_range)."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    row, i, mask = row_lanes(pid, n, BLOCK_SIZE)
    ip, im = neighbours(i, n, PERIODIC)
    base = u_ptr + row * n
    u = load(base + i, mask, FP64)
    up = load(base + ip, mask, FP64)
    um = load(base + im, mask, FP64)
    tau, inv_h = step_sizes(s_ptr, FP64)
    out = _update(u, up, um, i, n, tau, inv_h, p_ptr, PERIODIC, CLAMP, _phi)
    tl.store(out_ptr + row * n + i, to_storage(out, out_ptr), mask=mask)


@triton.jit
def step1d_bwd(u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, n, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the fused step: gu = gy - tau K^T (Phi'(K u) * K gy); per program the
    partial sums of dL/dtau = -sum (K gy) Phi(K u) and dL/dp = -tau sum (K gy) dPhi/dp(K u)
    (column 0: tau, then the trainable parameters), reduced on the device by the caller."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    row, i, mask = row_lanes(pid, n, BLOCK_SIZE)
    ip, im = neighbours(i, n, PERIODIC)
    flux = mask  # the fluxes this program owns: all, or all but the one past the end
    if not PERIODIC:
        flux = mask & (i < n - 1)
    base = u_ptr + row * n
    gbase = gy_ptr + row * n
    u = load(base + i, mask, FP64)
    up = load(base + ip, mask, FP64)
    um = load(base + im, mask, FP64)
    gy = load(gbase + i, mask, FP64)
    gyp = load(gbase + ip, mask, FP64)
    gym = load(gbase + im, mask, FP64)
    tau, inv_h = step_sizes(s_ptr, FP64)
    rp = (up - u) * inv_h
    dp, grads = _dphi(rp, p_ptr)
    dm, _ = _dphi((u - um) * inv_h, p_ptr)
    kgp = (gyp - gy) * inv_h  # (K gy) on the flux to the right
    zp = dp * kgp
    zm = dm * (gy - gym) * inv_h
    if not PERIODIC:
        zp = tl.where(i < n - 1, zp, 0.0)
        zm = tl.where(i > 0, zm, 0.0)
    gu = gy + tau * inv_h * (zp - zm)
    tl.store(gu_ptr + row * n + i, to_storage(gu, gu_ptr), mask=mask)
    slot = gp_ptr + pid * (N_TRAIN + 1)
    vp = _phi(rp, p_ptr)
    tl.store(slot, -tl.sum(tl.where(flux, kgp * vp, 0.0), axis=0).to(gp_ptr.dtype.element_ty))
    for k in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + k,
                 (-tau * tl.sum(tl.where(flux, kgp * grads[k], 0.0), axis=0)
                  ).to(gp_ptr.dtype.element_ty))


@triton.jit
def steps1d(u_ptr, out_ptr, p_ptr, s_ptr, n, steps, PERIODIC: tl.constexpr,
            BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, CLAMP: tl.constexpr):
    """``steps`` explicit steps (as the fused step kernel) of one row of length
    n <= BLOCK_SIZE, which stays in registers between the steps (temporal blocking): one read
    and one write of the signal for the whole run. Forward only."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_SIZE)
    mask = i < n
    ip, im = neighbours(i, n, PERIODIC)
    u = load(u_ptr + row * n + i, mask, FP64)
    tau, inv_h = step_sizes(s_ptr, FP64)
    k = 0
    while k < steps:  # a while loop: Triton's interpreter cannot range() over an argument
        u = _update(u, tl.gather(u, ip, 0), tl.gather(u, im, 0), i, n, tau, inv_h, p_ptr,
                    PERIODIC, CLAMP, _phi)
        k += 1
    tl.store(out_ptr + row * n + i, to_storage(u, out_ptr), mask=mask)


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The op "1d": one step on every row of u (rows, n), st = (tau, 1/h) in the compute
    dtype (fluxact/kernels/launch.py)."""
    fwd, bwd = kernel("step1d_fwd"), kernel("step1d_bwd")

    def forward(u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, periodic: bool,
                clamp: bool) -> torch.Tensor:
        rows, n = u.shape
        out = torch.empty_like(u)
        block = row_block(n)
        launch(fwd, rows * triton.cdiv(n, block), u, out, p, st, n, PERIODIC=periodic,
               BLOCK_SIZE=block, FP64=u.dtype == torch.float64, CLAMP=clamp)
        return out

    def backward(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, st: torch.Tensor,
                 periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        rows, n = u.shape
        gu = torch.empty_like(u)
        block = row_block(n)
        programs = rows * triton.cdiv(n, block)
        partial = partial_sums(u, programs, trainable + 1)
        launch(bwd, programs, u, gy, gu, p, st, partial, n, PERIODIC=periodic,
               BLOCK_SIZE=block, FP64=u.dtype == torch.float64)
        return gu, partial.sum(dim=0)

    return {"1d": (forward, backward)}


def run_steps(kernel: Any, u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, periodic: bool,
              steps: int, clamp: bool) -> torch.Tensor:
    """``steps`` steps of every row of u (rows, n) in one launch per row with the bound
    ``steps1d`` kernel (no gradient); the number of warps grows with the row held in
    registers (no spills up to 8192 samples)."""
    rows, n = u.shape
    out = torch.empty_like(u)
    block = triton.next_power_of_2(n)
    with quiet():
        kernel[(rows,)](u, out, p, st, n, int(steps), PERIODIC=bool(periodic), BLOCK_SIZE=block,
                        FP64=u.dtype == torch.float64, CLAMP=bool(clamp),
                        num_warps=max(4, min(16, block // 256)))
    return out
