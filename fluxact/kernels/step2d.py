"""Explicit diffusion steps in 2D with the forward-difference gradient (P2 11): one step per
plane and its backward.

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
from .launch import BLOCK_SIZE_2D, launch, partial_sums, row_block
from .stencil import clamp_finite, neighbours, plane_lanes, step_sizes


@triton.jit
def _pixels(pid, H, W, BLOCK_SIZE: tl.constexpr, PERIODIC: tl.constexpr):
    """The pixels of program ``pid`` (planes * H * column blocks programs on axis 0: CUDA
    limits axes 1 and 2 to 65535): (plane, y, x, mask, x right, x left, y down, y up)."""
    plane, y, x, mask = plane_lanes(pid, H, W, BLOCK_SIZE)
    xr, xl = neighbours(x, W, PERIODIC)
    yd, yu = neighbours(y, H, PERIODIC)
    return plane, y, x, mask, xr, xl, yd, yu


@triton.jit
def _stencil(base, y, x, xr, xl, yd, yu, W, mask, FP64: tl.constexpr):
    """The values at the pixel and its right, left, down and up neighbours."""
    return (load(base + y * W + x, mask, FP64), load(base + y * W + xr, mask, FP64),
            load(base + y * W + xl, mask, FP64), load(base + yd * W + x, mask, FP64),
            load(base + yu * W + x, mask, FP64))


@triton.jit
def _divergence(right, left, down, up, x, y, H, W, PERIODIC: tl.constexpr):
    """right - left + down - up for the fluxes through a pixel's four sides, those across the
    image's border 0 unless PERIODIC (zero flux: reflecting)."""
    if not PERIODIC:
        right = tl.where(x < W - 1, right, 0.0)
        left = tl.where(x > 0, left, 0.0)
        down = tl.where(y < H - 1, down, 0.0)
        up = tl.where(y > 0, up, 0.0)
    return right - left + down - up


@triton.jit
def step2d_fwd(u_ptr, out_ptr, p_ptr, s_ptr, H, W, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, CLAMP: tl.constexpr):
    """One explicit step on (planes, H, W) with the forward-difference gradient (K = (D+x,
    D+y)/h): out = u + tau/h (Phi_right - Phi_left + Phi_down - Phi_up), one pass."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: planes * H * blocks programs
    plane, y, x, mask, xr, xl, yd, yu = _pixels(pid, H, W, BLOCK_SIZE, PERIODIC)
    u, ur, ul, ud, uu = _stencil(u_ptr + plane * H * W, y, x, xr, xl, yd, yu, W, mask, FP64)
    tau, inv_h = step_sizes(s_ptr, FP64)
    vr = _phi((ur - u) * inv_h, p_ptr)
    vl = _phi((u - ul) * inv_h, p_ptr)
    vd = _phi((ud - u) * inv_h, p_ptr)
    vu = _phi((u - uu) * inv_h, p_ptr)
    out = u + tau * inv_h * _divergence(vr, vl, vd, vu, x, y, H, W, PERIODIC)
    if CLAMP:  # to the range of u and its four neighbours, as in the 1D step
        out = clamp_finite(out, tl.minimum(tl.minimum(u, tl.minimum(ur, ul)), tl.minimum(ud, uu)),
                           tl.maximum(tl.maximum(u, tl.maximum(ur, ul)), tl.maximum(ud, uu)))
    tl.store(out_ptr + plane * H * W + y * W + x, to_storage(out, out_ptr), mask=mask)


@triton.jit
def step2d_bwd(u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, H, W, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the 2D fused step: gu = gy - tau K^T (Phi'(K u) * K gy); partial sums of
    dL/dtau and dL/dp over the right and down fluxes of each pixel (each flux once)."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: planes * H * blocks programs
    plane, y, x, mask, xr, xl, yd, yu = _pixels(pid, H, W, BLOCK_SIZE, PERIODIC)
    flux_r = mask  # the fluxes this program owns
    flux_d = mask
    if not PERIODIC:
        flux_r = mask & (x < W - 1)
        flux_d = mask & (y < H - 1)
    u, ur, ul, ud, uu = _stencil(u_ptr + plane * H * W, y, x, xr, xl, yd, yu, W, mask, FP64)
    gy, gr, gl, gd, gu_ = _stencil(gy_ptr + plane * H * W, y, x, xr, xl, yd, yu, W, mask, FP64)
    tau, inv_h = step_sizes(s_ptr, FP64)
    rr = (ur - u) * inv_h
    rd = (ud - u) * inv_h
    dr, grads_r = _dphi(rr, p_ptr)
    dd, grads_d = _dphi(rd, p_ptr)
    dl, _ = _dphi((u - ul) * inv_h, p_ptr)
    du, _ = _dphi((u - uu) * inv_h, p_ptr)
    kgr = (gr - gy) * inv_h
    kgd = (gd - gy) * inv_h
    zr = dr * kgr
    zl = dl * (gy - gl) * inv_h
    zd = dd * kgd
    zu = du * (gy - gu_) * inv_h
    g = gy + tau * inv_h * _divergence(zr, zl, zd, zu, x, y, H, W, PERIODIC)
    tl.store(gu_ptr + plane * H * W + y * W + x, to_storage(g, gu_ptr), mask=mask)
    slot = gp_ptr + pid * (N_TRAIN + 1)
    vr = _phi(rr, p_ptr)
    vd = _phi(rd, p_ptr)
    tl.store(slot, -(tl.sum(tl.where(flux_r, kgr * vr, 0.0), axis=0)
                     + tl.sum(tl.where(flux_d, kgd * vd, 0.0), axis=0)
                     ).to(gp_ptr.dtype.element_ty))
    for k in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + k,
                 (-tau * (tl.sum(tl.where(flux_r, kgr * grads_r[k], 0.0), axis=0)
                          + tl.sum(tl.where(flux_d, kgd * grads_d[k], 0.0), axis=0))
                  ).to(gp_ptr.dtype.element_ty))


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The op "2d": one step on every plane of u (planes, H, W), st = (tau, 1/h) in the
    compute dtype (fluxact/kernels/launch.py)."""
    fwd, bwd = kernel("step2d_fwd"), kernel("step2d_bwd")

    def forward(u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, periodic: bool,
                clamp: bool) -> torch.Tensor:
        planes, height, width = u.shape
        out = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        launch(fwd, planes * height * triton.cdiv(width, block), u, out, p, st, height, width,
               PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == torch.float64, CLAMP=clamp)
        return out

    def backward(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, st: torch.Tensor,
                 periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        planes, height, width = u.shape
        gu = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        programs = planes * height * triton.cdiv(width, block)
        partial = partial_sums(u, programs, trainable + 1)
        launch(bwd, programs, u, gy, gu, p, st, partial, height, width, PERIODIC=periodic,
               BLOCK_SIZE=block, FP64=u.dtype == torch.float64)
        return gu, partial.sum(dim=0)

    return {"2d": (forward, backward)}
