"""Explicit steps u - tau K^T Phi(K u) with learned kernels: one kernel per channel in 1D, and
C x C kernels that mix channels in 1D and 2D (SymmetricResNet, P2 12).

The formula enters through the globals _phi, _dphi, N_TRAIN and N_TRAIN_P2 that a bound copy
of each kernel holds (fluxact/kernels/formula.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .dtypes import load, to_compute, to_storage
from .formula import N_TRAIN, N_TRAIN_P2, _dphi, _phi
from .launch import BLOCK_SIZE_2D, launch, partial_sums, row_block
from .stencil import plane_lanes, row_lanes


@triton.jit
def _wrap(idx, n, PERIODIC: tl.constexpr):
    """An index of a row of length n: wrapped (periodic) or clamped to the ends (the fluxes
    that would read past them are masked by the caller)."""
    if PERIODIC:
        out = tl.where(idx < 0, idx + n, tl.where(idx >= n, idx - n, idx))
    else:
        out = tl.minimum(tl.maximum(idx, 0), n - 1)
    return out


@triton.jit
def _correlate(base, j, like, n, k_ptr, chan, mask, W: tl.constexpr, PERIODIC: tl.constexpr,
               FP64: tl.constexpr):
    """(K u)_j = sum_q k_q u_{j+q} of the row at ``base`` with the kernel of channel ``chan``
    (a tensor like ``like``)."""
    r = tl.zeros_like(like)
    for q in tl.static_range(W):
        r += to_compute(tl.load(k_ptr + chan * W + q), FP64) * load(
            base + _wrap(j + q, n, PERIODIC), mask, FP64)
    return r


@triton.jit
def _fluxes(n, W: tl.constexpr, PERIODIC: tl.constexpr):
    """The number of fluxes of a row of n samples: n - W + 1 for the valid correlation (the
    fluxes that read no sample past the end), n if PERIODIC."""
    if PERIODIC:
        out = n
    else:
        out = n - W + 1
    return out


@triton.jit
def _transposed1d(base, gbase, i, like, n, k_ptr, p_ptr, chan, mask, W: tl.constexpr,
                  PERIODIC: tl.constexpr, FP64: tl.constexpr, GRAD: tl.constexpr,
                  PHI: tl.constexpr, DPHI: tl.constexpr):
    """(K^T F)_i = sum_m k_m F_{i-m} of the row at ``base`` with the kernel of channel
    ``chan``, F = Phi(K u) or, where GRAD, Phi'(K u) K gy (gy the row at ``gbase``); 0 on the
    fluxes that do not exist."""
    nflux = _fluxes(n, W, PERIODIC)
    acc = tl.zeros_like(like)
    for m in tl.static_range(W):
        j = i - m  # the flux that sample i receives through tap m
        r = _correlate(base, j, like, n, k_ptr, chan, mask, W, PERIODIC, FP64)
        if GRAD:
            d, _ = DPHI(r, p_ptr)
            f = d * _correlate(gbase, j, like, n, k_ptr, chan, mask, W, PERIODIC, FP64)
        else:
            f = PHI(r, p_ptr)
        if not PERIODIC:
            f = tl.where((j >= 0) & (j < nflux), f, 0.0)
        acc += to_compute(tl.load(k_ptr + chan * W + m), FP64) * f
    return acc


@triton.jit
def _channel_row(s_ptr, n, C, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """(program, row, lanes, mask, channel, tau) of this program: rows (batch, channel pairs,
    channel = row % C) * blocks programs on one grid axis; s_ptr holds tau."""
    pid = tl.program_id(0).to(tl.int64)
    row, i, mask = row_lanes(pid, n, BLOCK_SIZE)
    return pid, row, i, mask, row % C, to_compute(tl.load(s_ptr + 0), FP64)


@triton.jit
def learned1d_fwd(u_ptr, out_ptr, k_ptr, p_ptr, s_ptr, n, C, W: tl.constexpr,
                  PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """One explicit step with a learned kernel per channel, in one pass: (K u)_j =
    sum_q k_q u_{j+q} (valid correlation, or periodic), out_i = u_i - tau sum_m k_m
    Phi((K u)_{i-m}). Rows are (batch, channel) pairs; channel = row % C; s_ptr holds tau."""
    _, row, i, mask, chan, tau = _channel_row(s_ptr, n, C, BLOCK_SIZE, FP64)
    base = u_ptr + row * n
    u = load(base + i, mask, FP64)
    out = u - tau * _transposed1d(base, base, i, u, n, k_ptr, p_ptr, chan, mask, W, PERIODIC,
                                  FP64, False, _phi, _dphi)
    tl.store(out_ptr + row * n + i, to_storage(out, out_ptr), mask=mask)


@triton.jit
def learned1d_bwd(u_ptr, gy_ptr, gu_ptr, k_ptr, p_ptr, s_ptr, gp_ptr, gk_ptr, n, C,
                  W: tl.constexpr, PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                  FP64: tl.constexpr):
    """Backward of the learned-kernel step: gu = gy - tau K^T (Phi'(K u) * K gy); per program
    the partial sums of dL/dtau = -sum_j (K gy)_j Phi((K u)_j), dL/dp = -tau sum_j (K gy)_j
    dPhi/dp((K u)_j) (gp_ptr, column 0 tau) and dL/dk_m = -tau sum_j (gy_{j+m} Phi((K u)_j)
    + (K gy)_j Phi'((K u)_j) u_{j+m}) (gk_ptr)."""
    pid, row, i, mask, chan, tau = _channel_row(s_ptr, n, C, BLOCK_SIZE, FP64)
    base = u_ptr + row * n
    gbase = gy_ptr + row * n
    gy = load(gbase + i, mask, FP64)
    g = gy - tau * _transposed1d(base, gbase, i, gy, n, k_ptr, p_ptr, chan, mask, W, PERIODIC,
                                 FP64, True, _phi, _dphi)
    tl.store(gu_ptr + row * n + i, to_storage(g, gu_ptr), mask=mask)
    # sums over the fluxes j = i of this program
    valid = mask & (i < _fluxes(n, W, PERIODIC))
    r = _correlate(base, i, gy, n, k_ptr, chan, mask, W, PERIODIC, FP64)
    kg = _correlate(gbase, i, gy, n, k_ptr, chan, mask, W, PERIODIC, FP64)
    v = _phi(r, p_ptr)
    d, grads = _dphi(r, p_ptr)
    slot = gp_ptr + pid * (N_TRAIN + 1)
    tl.store(slot, -tl.sum(tl.where(valid, kg * v, 0.0), axis=0).to(gp_ptr.dtype.element_ty))
    for k in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + k,
                 (-tau * tl.sum(tl.where(valid, kg * grads[k], 0.0), axis=0)
                  ).to(gp_ptr.dtype.element_ty))
    kslot = gk_ptr + pid * W
    for m in tl.static_range(W):
        idx = _wrap(i + m, n, PERIODIC)
        um = load(base + idx, mask, FP64)
        gm = load(gbase + idx, mask, FP64)
        tl.store(kslot + m, (-tau * tl.sum(tl.where(valid, gm * v + kg * d * um, 0.0), axis=0)
                             ).to(gk_ptr.dtype.element_ty))


@triton.jit
def _flux(plane, gplane, k_ptr, c, ch, cm, tile, hw, jy, jx, C, H, W, KH: tl.constexpr,
          KW: tl.constexpr, PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
          FP64: tl.constexpr, GRAD: tl.constexpr):
    """(K u)_{c, j} = sum_{d, a, q} k[c, d, a, q] u_{d, jy+a, jx+q} of the flux channel c at
    the fluxes (jy, jx) of a row block (``ch``: the channels d as a (CP, BLOCK_SIZE) tile's
    rows), and the same of gy (``gplane``) where GRAD (else 0)."""
    if FP64:
        r = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        r = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    kg = r
    for a in tl.static_range(KH):
        for q in tl.static_range(KW):
            off = ch[:, None] * hw + _wrap(jy + a, H, PERIODIC) * W + _wrap(jx + q, W,
                                                                             PERIODIC)[None, :]
            kv = load(k_ptr + ((c * C + ch) * KH + a) * KW + q, cm, FP64)
            r += tl.sum(kv[:, None] * load(plane + off, tile, FP64), axis=0)
            if GRAD:
                kg += tl.sum(kv[:, None] * load(gplane + off, tile, FP64), axis=0)
    return r, kg


@triton.jit
def _row_tile(st_ptr, C, H, W, CP: tl.constexpr, BLOCK_SIZE: tl.constexpr,
              FP64: tl.constexpr):
    """The (CP, BLOCK_SIZE) tile of this program (B * H * column blocks programs on axis 0):
    (program, y, x, lanes mask, channels, channel mask, tile mask, H * W in 64 bits (channel x
    pixels can exceed 2^31), the offset of the batch's first channel, the tile's offsets from
    it, tau)."""
    pid = tl.program_id(0).to(tl.int64)
    b, y, x, xm = plane_lanes(pid, H, W, BLOCK_SIZE)
    ch = tl.arange(0, CP)
    cm = ch < C
    hw = (H + 0 * pid) * W
    return (pid, y, x, xm, ch, cm, cm[:, None] & xm[None, :], hw, b * C * hw,
            ch[:, None] * hw + y * W + x[None, :], to_compute(tl.load(st_ptr + 0), FP64))


@triton.jit
def _receiving(y, x, xm, ma, mb, H, W, KH: tl.constexpr, KW: tl.constexpr,
               PERIODIC: tl.constexpr):
    """(jy, jx, ok): the flux that sample (y, x) receives through tap (ma, mb), and where it
    exists (the valid correlation: fluxes that read no sample past the end, unless
    PERIODIC)."""
    jy = y - ma
    jx = x - mb
    if PERIODIC:
        jy = tl.where(jy < 0, jy + H, jy)
        jx = tl.where(jx < 0, jx + W, jx)
        ok = xm
    else:
        ok = xm & (jx >= 0) & (jx < W - KW + 1) & (jy >= 0) & (jy < H - KH + 1)
    return jy, jx, ok


@triton.jit
def _transposed(plane, gplane, k_ptr, p_ptr, ch, cm, tile, hw, y, x, xm, C, H, W,
                CP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, PERIODIC: tl.constexpr,
                BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr, GRAD: tl.constexpr,
                PHI: tl.constexpr, DPHI: tl.constexpr):
    """(K^T F)_{e, i} = sum_{c, m} k[c, e, m] F_{c, i-m} on the program's (CP, BLOCK_SIZE)
    tile, with F = Phi(K u) or, where GRAD, Phi'(K u) K gy; 0 on the fluxes that do not
    exist."""
    if FP64:
        acc = tl.zeros([CP, BLOCK_SIZE], dtype=tl.float64)
    else:
        acc = tl.zeros([CP, BLOCK_SIZE], dtype=tl.float32)
    for ma in tl.static_range(KH):
        for mb in tl.static_range(KW):
            jy, jx, ok = _receiving(y, x, xm, ma, mb, H, W, KH, KW, PERIODIC)
            c = 0
            while c < C:  # flux channel; a runtime loop the interpreter runs too
                r, kg = _flux(plane, gplane, k_ptr, c, ch, cm, tile, hw, jy, jx, C, H, W, KH,
                              KW, PERIODIC, BLOCK_SIZE, FP64, GRAD)
                if GRAD:
                    d, _ = DPHI(r, p_ptr)
                    f = d * kg
                else:
                    f = PHI(r, p_ptr)
                ko = load(k_ptr + ((c * C + ch) * KH + ma) * KW + mb, cm, FP64)
                acc += ko[:, None] * tl.where(ok, f, 0.0)[None, :]
                c += 1
    return acc


@triton.jit
def mixing_fwd(u_ptr, out_ptr, k_ptr, p_ptr, st_ptr, C, H, W, CP: tl.constexpr,
               KH: tl.constexpr, KW: tl.constexpr, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """One explicit step with a learned C x C kernel k (C, C, KH, KW) that mixes channels, in
    one pass (P2 11 with W1 = K, W2 = -K^T): (K u)_{c, j} = sum_{d, q} k[c, d, q] u_{d, j+q}
    (valid correlation, or periodic), out_{e, i} = u_{e, i} - tau sum_{c, m} k[c, e, m]
    Phi((K u)_{c, i-m}). u (B, C, H, W), 1D signals as H = 1; each program computes all C
    channels of one row block as a (CP, BLOCK_SIZE) tile. Grid: B * H * blocks on axis 0."""
    _, y, x, xm, ch, cm, tile, hw, batch, here, tau = _row_tile(st_ptr, C, H, W, CP, BLOCK_SIZE,
                                                                FP64)
    acc = _transposed(u_ptr + batch, u_ptr + batch, k_ptr, p_ptr, ch, cm, tile, hw, y, x, xm, C,
                      H, W, CP, KH, KW, PERIODIC, BLOCK_SIZE, FP64, False, _phi, _dphi)
    out = load(u_ptr + batch + here, tile, FP64) - tau * acc
    tl.store(out_ptr + batch + here, to_storage(out, out_ptr), mask=tile)


@triton.jit
def mixing_bwd(u_ptr, gy_ptr, gu_ptr, k_ptr, p_ptr, st_ptr, gp_ptr, gk_ptr, C, H, W,
               CP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the channel-mixing step: gu = gy - tau K^T (Phi'(K u) * K gy); per program
    and over the fluxes j = i it owns, the partial sums of dL/dtau = -sum (K gy) Phi(K u),
    dL/dp = -tau sum (K gy) dPhi/dp(K u) (gp_ptr: tau, then the trainable parameters) and
    dL/dk[c, d, q] = -tau sum_j (Phi((K u)_{c, j}) gy_{d, j+q} + Phi'((K u)_{c, j})
    (K gy)_{c, j} u_{d, j+q}) (gk_ptr: C * C * KH * KW per program)."""
    pid, y, x, xm, ch, cm, tile, hw, batch, here, tau = _row_tile(st_ptr, C, H, W, CP,
                                                                  BLOCK_SIZE, FP64)
    plane = u_ptr + batch
    gplane = gy_ptr + batch
    acc = _transposed(plane, gplane, k_ptr, p_ptr, ch, cm, tile, hw, y, x, xm, C, H, W, CP, KH,
                      KW, PERIODIC, BLOCK_SIZE, FP64, True, _phi, _dphi)
    gc = load(gplane + here, tile, FP64)
    tl.store(gu_ptr + batch + here, to_storage(gc - tau * acc, gu_ptr), mask=tile)
    # the sums over the fluxes j = (y, x) of this program
    if PERIODIC:
        own = xm
    else:
        own = xm & (x < W - KW + 1) & (y < H - KH + 1)
    sum_t = tl.zeros([BLOCK_SIZE], dtype=gc.dtype)
    # the dPhi/dp sums, one row per trainable parameter (N_TRAIN_P2 >= N_TRAIN rows, a power
    # of 2)
    rows = tl.arange(0, N_TRAIN_P2)
    sum_p = tl.zeros([N_TRAIN_P2, BLOCK_SIZE], dtype=gc.dtype)
    kslot = gk_ptr + pid * C * C * KH * KW
    c = 0
    while c < C:
        r, kg = _flux(plane, gplane, k_ptr, c, ch, cm, tile, hw, y, x, C, H, W, KH, KW,
                      PERIODIC, BLOCK_SIZE, FP64, True)
        f = tl.where(own, _phi(r, p_ptr), 0.0)
        d, grads = _dphi(r, p_ptr)
        z = tl.where(own, d * kg, 0.0)
        sum_t += kg * f
        for k in tl.static_range(N_TRAIN):
            sum_p += tl.where((rows[:, None] == k) & own[None, :], (kg * grads[k])[None, :], 0.0)
        for a in tl.static_range(KH):
            for q in tl.static_range(KW):
                off = ch[:, None] * hw + _wrap(y + a, H, PERIODIC) * W + _wrap(x + q, W,
                                                                               PERIODIC)[None, :]
                part = tl.sum(f[None, :] * load(gplane + off, tile, FP64)
                              + z[None, :] * load(plane + off, tile, FP64), axis=1)
                tl.store(kslot + ((c * C + ch) * KH + a) * KW + q,
                         (-tau * part).to(gk_ptr.dtype.element_ty), mask=cm)
        c += 1
    slot = gp_ptr + pid * (N_TRAIN + 1)
    tl.store(slot, -tl.sum(sum_t, axis=0).to(gp_ptr.dtype.element_ty))
    totals = tl.sum(sum_p, axis=1)
    for k in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + k, (-tau * tl.sum(tl.where(rows == k, totals, 0.0), axis=0)
                                ).to(gp_ptr.dtype.element_ty))


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The ops "k1d" (u (rows = batch * C, n), k (C, W): a learned kernel per channel) and "c"
    (u (B, C, H, W), k (C, C, KH, KW): kernels that mix channels, 1D as H = 1); st = (tau,
    1/h) in the compute dtype (fluxact/kernels/launch.py)."""
    fwd_k, bwd_k = kernel("stepk_fwd"), kernel("stepk_bwd")
    fwd_c, bwd_c = kernel("stepc_fwd"), kernel("stepc_bwd")
    fp64 = torch.float64

    def forward_k(u: torch.Tensor, k: torch.Tensor, p: torch.Tensor, st: torch.Tensor,
                  periodic: bool) -> torch.Tensor:
        rows, n = u.shape
        out = torch.empty_like(u)
        block = row_block(n)
        launch(fwd_k, rows * triton.cdiv(n, block), u, out, k, p, st, n, k.shape[0],
               W=k.shape[1], PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        return out

    def backward_k(u: torch.Tensor, gy: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                   st: torch.Tensor, periodic: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, n = u.shape
        channels, width = k.shape
        gu = torch.empty_like(u)
        block = row_block(n)
        blocks = triton.cdiv(n, block)
        partial = partial_sums(u, rows * blocks, trainable + 1)
        partial_k = partial_sums(u, rows * blocks, width)
        launch(bwd_k, rows * blocks, u, gy, gu, k, p, st, partial, partial_k, n, channels,
               W=width, PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        gk = partial_k.reshape(rows // channels, channels, blocks, width).sum(dim=(0, 2))
        return gu, gk, partial.sum(dim=0)

    def grid_c(u: torch.Tensor) -> tuple[int, int, int]:
        """(block, channels rounded up to a power of two, programs) of a launch on u."""
        batch, channels, height, width = u.shape
        block = row_block(width, BLOCK_SIZE_2D)
        return (block, triton.next_power_of_2(channels),
                batch * height * triton.cdiv(width, block))

    def forward_c(u: torch.Tensor, k: torch.Tensor, p: torch.Tensor, st: torch.Tensor,
                  periodic: bool) -> torch.Tensor:
        out = torch.empty_like(u)
        block, cp, programs = grid_c(u)
        launch(fwd_c, programs, u, out, k, p, st, *u.shape[1:], CP=cp, KH=k.shape[2],
               KW=k.shape[3], PERIODIC=periodic, BLOCK_SIZE=block, FP64=u.dtype == fp64)
        return out

    def backward_c(u: torch.Tensor, gy: torch.Tensor, k: torch.Tensor, p: torch.Tensor,
                   st: torch.Tensor, periodic: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gu = torch.empty_like(u)
        block, cp, programs = grid_c(u)
        partial = partial_sums(u, programs, trainable + 1)
        partial_k = partial_sums(u, programs, k.numel())
        launch(bwd_c, programs, u, gy, gu, k, p, st, partial, partial_k, *u.shape[1:], CP=cp,
               KH=k.shape[2], KW=k.shape[3], PERIODIC=periodic, BLOCK_SIZE=block,
               FP64=u.dtype == fp64)
        return gu, partial_k.sum(dim=0).reshape(k.shape), partial.sum(dim=0)

    return {"k1d": (forward_k, backward_k), "c": (forward_c, backward_c)}
