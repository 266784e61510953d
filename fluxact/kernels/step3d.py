"""Explicit diffusion steps on volumes with the per-axis flux (P2 11 on three axes, voxel
spacing h_z, h_y, h_x): one step per volume and its backward.

u <- u - tau K^T Phi(K u) with K = (D+z / h_z, D+y / h_y, D+x / h_x): the flux of each axis
on the edges between a voxel and its next neighbour, none across a reflecting border
(fluxact.grid, coupling="uncoupled"). The formula enters through the globals _phi, _dphi and
N_TRAIN that a bound copy of each kernel holds (fluxact/kernels/formula.py). ``st`` holds
(tau, 1/h_z, 1/h_y, 1/h_x).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .dtypes import load, to_compute, to_storage
from .formula import N_TRAIN, _dphi, _phi
from .launch import BLOCK_SIZE_2D, launch, partial_sums, row_block
from .stencil import clamp_finite, neighbours


@triton.jit
def _voxels(pid, D, H, W, BLOCK_SIZE: tl.constexpr, PERIODIC: tl.constexpr):
    """The voxels of program ``pid`` (volumes * D * H * column blocks programs on one grid
    axis): (volume, z, y, x, mask) and the neighbours along each axis (after, before)."""
    blocks = (W + BLOCK_SIZE - 1) // BLOCK_SIZE
    x = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    row = pid // blocks  # int64 (pid is): no product below is formed in int32
    y = row % H
    z = (row // H) % D
    volume = (row // H) // D
    xa, xb = neighbours(x, W, PERIODIC)
    ya, yb = neighbours(y, H, PERIODIC)
    za, zb = neighbours(z, D, PERIODIC)
    return volume, z, y, x, x < W, xa, xb, ya, yb, za, zb


@triton.jit
def _stencil(base, z, y, x, xa, xb, ya, yb, za, zb, H, W, mask, FP64: tl.constexpr):
    """The values at the voxel and at its neighbours after and before it along x, y and z
    (offsets z * H * W formed from the int64 z: H * W alone could wrap in int32)."""
    return (load(base + z * H * W + y * W + x, mask, FP64),
            load(base + z * H * W + y * W + xa, mask, FP64),
            load(base + z * H * W + y * W + xb, mask, FP64),
            load(base + z * H * W + ya * W + x, mask, FP64),
            load(base + z * H * W + yb * W + x, mask, FP64),
            load(base + za * H * W + y * W + x, mask, FP64),
            load(base + zb * H * W + y * W + x, mask, FP64))


@triton.jit
def _sizes(s_ptr, FP64: tl.constexpr):
    """(tau, 1/h_z, 1/h_y, 1/h_x) in the compute dtype."""
    return (to_compute(tl.load(s_ptr + 0), FP64), to_compute(tl.load(s_ptr + 1), FP64),
            to_compute(tl.load(s_ptr + 2), FP64), to_compute(tl.load(s_ptr + 3), FP64))


@triton.jit
def _owned(mask, z, y, x, D, H, W, PERIODIC: tl.constexpr):
    """Where the edges after a voxel along x, y and z exist (all of them when PERIODIC)."""
    if PERIODIC:
        return mask, mask, mask
    return mask & (x < W - 1), mask & (y < H - 1), mask & (z < D - 1)


@triton.jit
def _divergence(after_x, before_x, after_y, before_y, after_z, before_z, z, y, x, D, H, W,
                ihz, ihy, ihx, PERIODIC: tl.constexpr):
    """sum over the axes of (flux after - flux before) / h, the fluxes across the volume's
    border 0 unless PERIODIC (zero flux: reflecting)."""
    if not PERIODIC:
        after_x = tl.where(x < W - 1, after_x, 0.0)
        before_x = tl.where(x > 0, before_x, 0.0)
        after_y = tl.where(y < H - 1, after_y, 0.0)
        before_y = tl.where(y > 0, before_y, 0.0)
        after_z = tl.where(z < D - 1, after_z, 0.0)
        before_z = tl.where(z > 0, before_z, 0.0)
    return (ihx * (after_x - before_x) + ihy * (after_y - before_y)
            + ihz * (after_z - before_z))


@triton.jit
def step3d_fwd(u_ptr, out_ptr, p_ptr, s_ptr, D, H, W, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, CLAMP: tl.constexpr):
    """One explicit step on (volumes, D, H, W): out = u + tau sum_axes (Phi(after) -
    Phi(before)) / h, the differences (after - u) / h and (u - before) / h, one pass."""
    pid = tl.program_id(0).to(tl.int64)
    volume, z, y, x, mask, xa, xb, ya, yb, za, zb = _voxels(pid, D, H, W, BLOCK_SIZE, PERIODIC)
    u, uxa, uxb, uya, uyb, uza, uzb = _stencil(u_ptr + volume * D * H * W, z, y, x, xa, xb,
                                               ya, yb, za, zb, H, W, mask, FP64)
    tau, ihz, ihy, ihx = _sizes(s_ptr, FP64)
    div = _divergence(_phi((uxa - u) * ihx, p_ptr), _phi((u - uxb) * ihx, p_ptr),
                      _phi((uya - u) * ihy, p_ptr), _phi((u - uyb) * ihy, p_ptr),
                      _phi((uza - u) * ihz, p_ptr), _phi((u - uzb) * ihz, p_ptr),
                      z, y, x, D, H, W, ihz, ihy, ihx, PERIODIC)
    out = u + tau * div
    if CLAMP:  # to the range of u and its six neighbours, as in the 1D and 2D steps
        low = tl.minimum(tl.minimum(u, tl.minimum(uxa, uxb)),
                         tl.minimum(tl.minimum(uya, uyb), tl.minimum(uza, uzb)))
        high = tl.maximum(tl.maximum(u, tl.maximum(uxa, uxb)),
                          tl.maximum(tl.maximum(uya, uyb), tl.maximum(uza, uzb)))
        out = clamp_finite(out, low, high)
    tl.store(out_ptr + volume * D * H * W + z * H * W + y * W + x, to_storage(out, out_ptr),
             mask=mask)


@triton.jit
def step3d_bwd(u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, D, H, W, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the 3D step: gu = gy - tau K^T (Phi'(K u) * K gy); partial sums of
    dL/dtau = -sum_e (K gy)_e Phi((K u)_e) and dL/dp = -tau sum_e (K gy)_e dPhi/dp over the
    edges after each voxel (each edge once)."""
    pid = tl.program_id(0).to(tl.int64)
    volume, z, y, x, mask, xa, xb, ya, yb, za, zb = _voxels(pid, D, H, W, BLOCK_SIZE, PERIODIC)
    ox, oy, oz = _owned(mask, z, y, x, D, H, W, PERIODIC)
    base = volume * D * H * W
    u, uxa, uxb, uya, uyb, uza, uzb = _stencil(u_ptr + base, z, y, x, xa, xb, ya, yb, za, zb,
                                               H, W, mask, FP64)
    g, gxa, gxb, gya, gyb, gza, gzb = _stencil(gy_ptr + base, z, y, x, xa, xb, ya, yb, za, zb,
                                               H, W, mask, FP64)
    tau, ihz, ihy, ihx = _sizes(s_ptr, FP64)
    rx, ry, rz = (uxa - u) * ihx, (uya - u) * ihy, (uza - u) * ihz  # the edges after
    dx, grads_x = _dphi(rx, p_ptr)
    dy, grads_y = _dphi(ry, p_ptr)
    dz, grads_z = _dphi(rz, p_ptr)
    dxb, _ = _dphi((u - uxb) * ihx, p_ptr)
    dyb, _ = _dphi((u - uyb) * ihy, p_ptr)
    dzb, _ = _dphi((u - uzb) * ihz, p_ptr)
    kx, ky, kz = (gxa - g) * ihx, (gya - g) * ihy, (gza - g) * ihz
    div = _divergence(dx * kx, dxb * (g - gxb) * ihx, dy * ky, dyb * (g - gyb) * ihy,
                      dz * kz, dzb * (g - gzb) * ihz, z, y, x, D, H, W, ihz, ihy, ihx,
                      PERIODIC)
    tl.store(gu_ptr + base + z * H * W + y * W + x, to_storage(g + tau * div, gu_ptr),
             mask=mask)
    slot = gp_ptr + pid * (N_TRAIN + 1)
    vx, vy, vz = _phi(rx, p_ptr), _phi(ry, p_ptr), _phi(rz, p_ptr)
    tl.store(slot, -(tl.sum(tl.where(ox, kx * vx, 0.0), axis=0)
                     + tl.sum(tl.where(oy, ky * vy, 0.0), axis=0)
                     + tl.sum(tl.where(oz, kz * vz, 0.0), axis=0)
                     ).to(gp_ptr.dtype.element_ty))
    for k in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + k,
                 (-tau * (tl.sum(tl.where(ox, kx * grads_x[k], 0.0), axis=0)
                          + tl.sum(tl.where(oy, ky * grads_y[k], 0.0), axis=0)
                          + tl.sum(tl.where(oz, kz * grads_z[k], 0.0), axis=0))
                  ).to(gp_ptr.dtype.element_ty))


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The op "3d": one step on every volume of u (volumes, D, H, W), st = (tau, 1/h_z, 1/h_y,
    1/h_x) in the compute dtype (fluxact/kernels/launch.py)."""
    fwd, bwd = kernel("step3d_fwd"), kernel("step3d_bwd")

    def forward(u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, periodic: bool,
                clamp: bool) -> torch.Tensor:
        volumes, depth, height, width = u.shape
        out = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        launch(fwd, volumes * depth * height * triton.cdiv(width, block), u, out, p, st, depth,
               height, width, PERIODIC=periodic, BLOCK_SIZE=block,
               FP64=u.dtype == torch.float64, CLAMP=clamp)
        return out

    def backward(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, st: torch.Tensor,
                 periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        volumes, depth, height, width = u.shape
        gu = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        programs = volumes * depth * height * triton.cdiv(width, block)
        partial = partial_sums(u, programs, trainable + 1)
        launch(bwd, programs, u, gy, gu, p, st, partial, depth, height, width,
               PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == torch.float64)
        return gu, partial.sum(dim=0)

    return {"3d": (forward, backward)}
