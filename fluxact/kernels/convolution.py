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
from .stencil import row_lanes


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
def learned1d_fwd(u_ptr, out_ptr, k_ptr, p_ptr, s_ptr, n, C, W: tl.constexpr,
                  PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """One explicit step with a learned kernel per channel, in one pass: (K u)_j =
    sum_q k_q u_{j+q} (valid correlation, or periodic), out_i = u_i - tau sum_m k_m
    Phi((K u)_{i-m}). Rows are (batch, channel) pairs; channel = row % C; s_ptr holds tau."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    row, i, mask = row_lanes(pid, n, BLOCK_SIZE)
    chan = row % C
    base = u_ptr + row * n
    u = load(base + i, mask, FP64)
    tau = to_compute(tl.load(s_ptr + 0), FP64)
    nflux = n - W + 1  # valid correlation: the fluxes that read no sample past the end
    if PERIODIC:
        nflux = n
    acc = tl.zeros_like(u)
    for m in tl.static_range(W):
        j = i - m  # the flux that sample i receives through tap m
        v = _phi(_correlate(base, j, u, n, k_ptr, chan, mask, W, PERIODIC, FP64), p_ptr)
        if not PERIODIC:
            v = tl.where((j >= 0) & (j < nflux), v, 0.0)
        acc += to_compute(tl.load(k_ptr + chan * W + m), FP64) * v
    out = u - tau * acc
    tl.store(out_ptr + row * n + i, to_storage(out, out_ptr), mask=mask)


@triton.jit
def learned1d_bwd(u_ptr, gy_ptr, gu_ptr, k_ptr, p_ptr, s_ptr, gp_ptr, gk_ptr, n, C,
                  W: tl.constexpr, PERIODIC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                  FP64: tl.constexpr):
    """Backward of the learned-kernel step: gu = gy - tau K^T (Phi'(K u) * K gy); per program
    the partial sums of dL/dtau = -sum_j (K gy)_j Phi((K u)_j), dL/dp = -tau sum_j (K gy)_j
    dPhi/dp((K u)_j) (gp_ptr, column 0 tau) and dL/dk_m = -tau sum_j (gy_{j+m} Phi((K u)_j)
    + (K gy)_j Phi'((K u)_j) u_{j+m}) (gk_ptr)."""
    pid = tl.program_id(0).to(tl.int64)  # one grid axis: rows * blocks programs
    row, i, mask = row_lanes(pid, n, BLOCK_SIZE)
    chan = row % C
    base = u_ptr + row * n
    gbase = gy_ptr + row * n
    gy = load(gbase + i, mask, FP64)
    tau = to_compute(tl.load(s_ptr + 0), FP64)
    nflux = n - W + 1  # valid correlation: the fluxes that read no sample past the end
    if PERIODIC:
        nflux = n
    acc = tl.zeros_like(gy)
    for m in tl.static_range(W):
        j = i - m
        d, _ = _dphi(_correlate(base, j, gy, n, k_ptr, chan, mask, W, PERIODIC, FP64), p_ptr)
        z = d * _correlate(gbase, j, gy, n, k_ptr, chan, mask, W, PERIODIC, FP64)
        if not PERIODIC:
            z = tl.where((j >= 0) & (j < nflux), z, 0.0)
        acc += to_compute(tl.load(k_ptr + chan * W + m), FP64) * z
    g = gy - tau * acc
    tl.store(gu_ptr + row * n + i, to_storage(g, gu_ptr), mask=mask)
    # sums over the fluxes j = i of this program
    valid = mask & (i < nflux)
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
def mixing_fwd(_u_ptr, _out_ptr, _k_ptr, p_ptr, _st_ptr, _C, _H, _W, CP: tl.constexpr,
               KH: tl.constexpr, KW: tl.constexpr, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """One explicit step with a learned C x C kernel k (C, C, KH, KW) that mixes channels, in
    one pass (P2 11 with W1 = K, W2 = -K^T): (K u)_{c, j} = sum_{d, q} k[c, d, q] u_{d, j+q}
    (valid correlation, or periodic), out_{e, i} = u_{e, i} - tau sum_{c, m} k[c, e, m]
    Phi((K u)_{c, i-m}). u (B, C, H, W), 1D signals as H = 1; each program computes all C
    channels of one row block as a (CP, BLOCK_SIZE) tile. Grid: B * H * blocks on axis 0."""
    _pid = tl.program_id(0).to(tl.int64)
    _blocks = (_W + BLOCK_SIZE - 1) // BLOCK_SIZE
    _b = _pid // (_H * _blocks)
    _y = (_pid // _blocks) % _H
    _x = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _xm = _x < _W
    _hw = (_H + 0 * _pid) * _W  # 64-bit: channel x pixels can exceed 2^31
    _ch = tl.arange(0, CP)
    _cm = _ch < _C
    _tile = _cm[:, None] & _xm[None, :]
    _plane = _u_ptr + _b * _C * _hw
    _uc = tl.load(_plane + _ch[:, None] * _hw + _y * _W + _x[None, :], mask=_tile,
                  other=0.0)
    _uc = to_compute(_uc, FP64)
    _tau = to_compute(tl.load(_st_ptr + 0), FP64)
    _fh = _H - KH + 1  # fluxes per column and row: the valid correlation
    _fw = _W - KW + 1
    if PERIODIC:
        _fh = _H
        _fw = _W
    _acc = tl.zeros([CP, BLOCK_SIZE], dtype=_uc.dtype)
    for _ma in tl.static_range(KH):
        for _mb in tl.static_range(KW):
            _jy = _y - _ma  # the flux this sample receives through tap (ma, mb)
            _jx = _x - _mb
            if PERIODIC:
                _jy = tl.where(_jy < 0, _jy + _H, _jy)
                _jx = tl.where(_jx < 0, _jx + _W, _jx)
                _ok = _xm
            else:
                _ok = _xm & (_jx >= 0) & (_jx < _fw) & (_jy >= 0) & (_jy < _fh)
            _c = 0
            while _c < _C:  # flux channel; a runtime loop the interpreter runs too
                _r = tl.zeros([BLOCK_SIZE], dtype=_uc.dtype)
                for _a in tl.static_range(KH):
                    for _q in tl.static_range(KW):
                        _iy = _jy + _a
                        _ix = _jx + _q
                        if PERIODIC:
                            _iy = tl.where(_iy >= _H, _iy - _H, _iy)
                            _ix = tl.where(_ix >= _W, _ix - _W, _ix)
                        else:
                            _iy = tl.minimum(tl.maximum(_iy, 0), _H - 1)
                            _ix = tl.minimum(tl.maximum(_ix, 0), _W - 1)
                        _v = load(_plane + _ch[:, None] * _hw + _iy * _W + _ix[None, :], _tile,
                                   FP64)
                        _kv = load(_k_ptr + ((_c * _C + _ch) * KH + _a) * KW + _q, _cm, FP64)
                        _r += tl.sum(_kv[:, None] * _v, axis=0)
                _f = tl.where(_ok, _phi(_r, p_ptr), 0.0)
                _ko = load(_k_ptr + ((_c * _C + _ch) * KH + _ma) * KW + _mb, _cm, FP64)
                _acc += _ko[:, None] * _f[None, :]
                _c += 1
    _o = _uc - _tau * _acc
    tl.store(_out_ptr + _b * _C * _hw + _ch[:, None] * _hw + _y * _W + _x[None, :],
             to_storage(_o, _out_ptr), mask=_tile)


@triton.jit
def mixing_bwd(_u_ptr, _gy_ptr, _gu_ptr, _k_ptr, p_ptr, _st_ptr, _gp_ptr, _gk_ptr, _C, _H, _W,
               CP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, PERIODIC: tl.constexpr,
               BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the channel-mixing step: gu = gy - tau K^T (Phi'(K u) * K gy); per program
    and over the fluxes j = i it owns, the partial sums of dL/dtau = -sum (K gy) Phi(K u),
    dL/dp = -tau sum (K gy) dPhi/dp(K u) (_gp_ptr: tau, then the trainable parameters) and
    dL/dk[c, d, q] = -tau sum_j (Phi((K u)_{c, j}) gy_{d, j+q} + Phi'((K u)_{c, j})
    (K gy)_{c, j} u_{d, j+q}) (_gk_ptr: C * C * KH * KW per program)."""
    _pid = tl.program_id(0).to(tl.int64)
    _blocks = (_W + BLOCK_SIZE - 1) // BLOCK_SIZE
    _b = _pid // (_H * _blocks)
    _y = (_pid // _blocks) % _H
    _x = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _xm = _x < _W
    _hw = (_H + 0 * _pid) * _W  # 64-bit: channel x pixels can exceed 2^31
    _ch = tl.arange(0, CP)
    _cm = _ch < _C
    _tile = _cm[:, None] & _xm[None, :]
    _plane = _u_ptr + _b * _C * _hw
    _gplane = _gy_ptr + _b * _C * _hw
    _gc = tl.load(_gplane + _ch[:, None] * _hw + _y * _W + _x[None, :], mask=_tile,
                  other=0.0)
    _gc = to_compute(_gc, FP64)
    _tau = to_compute(tl.load(_st_ptr + 0), FP64)
    _fh = _H - KH + 1
    _fw = _W - KW + 1
    if PERIODIC:
        _fh = _H
        _fw = _W
    _acc = tl.zeros([CP, BLOCK_SIZE], dtype=_gc.dtype)
    for _ma in tl.static_range(KH):
        for _mb in tl.static_range(KW):
            _jy = _y - _ma
            _jx = _x - _mb
            if PERIODIC:
                _jy = tl.where(_jy < 0, _jy + _H, _jy)
                _jx = tl.where(_jx < 0, _jx + _W, _jx)
                _ok = _xm
            else:
                _ok = _xm & (_jx >= 0) & (_jx < _fw) & (_jy >= 0) & (_jy < _fh)
            _c = 0
            while _c < _C:
                _r = tl.zeros([BLOCK_SIZE], dtype=_gc.dtype)
                _kg = tl.zeros([BLOCK_SIZE], dtype=_gc.dtype)
                for _a in tl.static_range(KH):
                    for _q in tl.static_range(KW):
                        _iy = _jy + _a
                        _ix = _jx + _q
                        if PERIODIC:
                            _iy = tl.where(_iy >= _H, _iy - _H, _iy)
                            _ix = tl.where(_ix >= _W, _ix - _W, _ix)
                        else:
                            _iy = tl.minimum(tl.maximum(_iy, 0), _H - 1)
                            _ix = tl.minimum(tl.maximum(_ix, 0), _W - 1)
                        _off = _ch[:, None] * _hw + _iy * _W + _ix[None, :]
                        _kv = load(_k_ptr + ((_c * _C + _ch) * KH + _a) * KW + _q, _cm, FP64)
                        _r += tl.sum(_kv[:, None] * load(_plane + _off, _tile, FP64), axis=0)
                        _kg += tl.sum(_kv[:, None] * load(_gplane + _off, _tile, FP64), axis=0)
                _d, _ = _dphi(_r, p_ptr)
                _z = tl.where(_ok, _d * _kg, 0.0)
                _ko = load(_k_ptr + ((_c * _C + _ch) * KH + _ma) * KW + _mb, _cm, FP64)
                _acc += _ko[:, None] * _z[None, :]
                _c += 1
    tl.store(_gu_ptr + _b * _C * _hw + _ch[:, None] * _hw + _y * _W + _x[None, :],
             to_storage(_gc - _tau * _acc, _gu_ptr), mask=_tile)
    # the sums over the fluxes j = (y, x) of this program
    _own = _xm & (_x < _fw) & (_y < _fh)
    _sum_t = tl.zeros([BLOCK_SIZE], dtype=_gc.dtype)
    # the dPhi/dp sums, one row per trainable parameter (N_TRAIN_P2 >= N_TRAIN rows, a power of 2)
    _rows = tl.arange(0, N_TRAIN_P2)
    _sum_p = tl.zeros([N_TRAIN_P2, BLOCK_SIZE], dtype=_gc.dtype)
    _kslot = _gk_ptr + _pid * _C * _C * KH * KW
    _c = 0
    while _c < _C:
        _r = tl.zeros([BLOCK_SIZE], dtype=_gc.dtype)
        _kg = tl.zeros([BLOCK_SIZE], dtype=_gc.dtype)
        for _a in tl.static_range(KH):
            for _q in tl.static_range(KW):
                _iy = _y + _a
                _ix = _x + _q
                if PERIODIC:
                    _iy = tl.where(_iy >= _H, _iy - _H, _iy)
                    _ix = tl.where(_ix >= _W, _ix - _W, _ix)
                else:
                    _iy = tl.minimum(_iy, _H - 1)
                    _ix = tl.minimum(_ix, _W - 1)
                _off = _ch[:, None] * _hw + _iy * _W + _ix[None, :]
                _kv = load(_k_ptr + ((_c * _C + _ch) * KH + _a) * KW + _q, _cm, FP64)
                _r += tl.sum(_kv[:, None] * load(_plane + _off, _tile, FP64), axis=0)
                _kg += tl.sum(_kv[:, None] * load(_gplane + _off, _tile, FP64), axis=0)
        _f = tl.where(_own, _phi(_r, p_ptr), 0.0)
        _d, _grads = _dphi(_r, p_ptr)
        _z = tl.where(_own, _d * _kg, 0.0)
        _sum_t += _kg * _f
        for _k in tl.static_range(N_TRAIN):
            _sum_p += tl.where((_rows[:, None] == _k) & _own[None, :],
                               (_kg * _grads[_k])[None, :], 0.0)
        for _a in tl.static_range(KH):
            for _q in tl.static_range(KW):
                _iy = _y + _a
                _ix = _x + _q
                if PERIODIC:
                    _iy = tl.where(_iy >= _H, _iy - _H, _iy)
                    _ix = tl.where(_ix >= _W, _ix - _W, _ix)
                else:
                    _iy = tl.minimum(_iy, _H - 1)
                    _ix = tl.minimum(_ix, _W - 1)
                _off = _ch[:, None] * _hw + _iy * _W + _ix[None, :]
                _ud = load(_plane + _off, _tile, FP64)
                _gd = load(_gplane + _off, _tile, FP64)
                _part = tl.sum(_f[None, :] * _gd + _z[None, :] * _ud, axis=1)
                tl.store(_kslot + ((_c * _C + _ch) * KH + _a) * KW + _q,
                         (-_tau * _part).to(_gk_ptr.dtype.element_ty), mask=_cm)
        _c += 1
    _slot = _gp_ptr + _pid * (N_TRAIN + 1)
    tl.store(_slot, -tl.sum(_sum_t, axis=0).to(_gp_ptr.dtype.element_ty))
    _totals = tl.sum(_sum_p, axis=1)
    for _k in tl.static_range(N_TRAIN):
        tl.store(_slot + 1 + _k,
                 (-_tau * tl.sum(tl.where(_rows == _k, _totals, 0.0), axis=0)
                  ).to(_gp_ptr.dtype.element_ty))


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
