"""The coupled activations of paper 003 (isotropic P3 19, 29, 36; anisotropic with the 2 x 2
eigen-decomposition) and the fused coupled isotropic 2D step, with Phi read as a diffusivity
g(s2).

The formula enters through the globals _phi, _dphi and N_TRAIN that a bound copy of each
kernel holds (fluxact/kernels/formula.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .dtypes import load, to_compute, to_storage
from .formula import N_TRAIN, _dphi, _phi
from .launch import BLOCK_SIZE, BLOCK_SIZE_2D, launch, partial_sums, row_block


@triton.jit
def iso_fwd(_s_ptr, _out_ptr, p_ptr, _C, _N, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """The coupled isotropic activation (P3 19, 29, 36): out_k = g(sum_j s_j^2) s_k over the
    _C channels of each group; s of shape (groups, _C, _N), contiguous. Grid: groups * blocks
    of _N programs on axis 0. Here Phi of this module is g(s2)."""
    _pid = tl.program_id(0).to(tl.int64)
    _n = _N + 0 * _pid  # 64-bit offsets: channel x pixels can exceed 2^31
    _blocks = (_n + BLOCK_SIZE - 1) // BLOCK_SIZE
    _i = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _i < _n
    _base = (_pid // _blocks) * _C * _n + _i
    if FP64:
        _sum = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        _sum = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    _k = 0
    while _k < _C:  # a loop the interpreter runs too
        _v = load(_s_ptr + _base + _k * _n, _mask, FP64)
        _sum += _v * _v
        _k += 1
    _g = _phi(_sum, p_ptr)
    _k = 0
    while _k < _C:  # a loop the interpreter runs too
        _v = load(_s_ptr + _base + _k * _n, _mask, FP64)
        tl.store(_out_ptr + _base + _k * _n, to_storage(_g * _v, _out_ptr),
                 mask=_mask)
        _k += 1


@triton.jit
def iso_bwd(_s_ptr, _gy_ptr, _gs_ptr, p_ptr, _gp_ptr, _C, _N, BLOCK_SIZE: tl.constexpr,
            FP64: tl.constexpr):
    """Backward of the coupled isotropic activation: with S = sum_j s_j^2 and
    q = sum_j gy_j s_j, gs_k = g(S) gy_k + 2 g'(S) q s_k (the Jacobian is symmetric); per
    program the partial sums of dL/dp = sum q dg/dp(S) for the trainable parameters."""
    _pid = tl.program_id(0).to(tl.int64)
    _n = _N + 0 * _pid
    _blocks = (_n + BLOCK_SIZE - 1) // BLOCK_SIZE
    _i = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _i < _n
    _base = (_pid // _blocks) * _C * _n + _i
    if FP64:
        _sum = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        _sum = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    _dot = _sum
    _k = 0
    while _k < _C:  # a loop the interpreter runs too
        _v = load(_s_ptr + _base + _k * _n, _mask, FP64)
        _w = load(_gy_ptr + _base + _k * _n, _mask, FP64)
        _sum += _v * _v
        _dot += _v * _w
        _k += 1
    _g = _phi(_sum, p_ptr)
    _gd, _grads = _dphi(_sum, p_ptr)
    _two = 2.0 * _gd * _dot
    _k = 0
    while _k < _C:  # a loop the interpreter runs too
        _v = load(_s_ptr + _base + _k * _n, _mask, FP64)
        _w = load(_gy_ptr + _base + _k * _n, _mask, FP64)
        tl.store(_gs_ptr + _base + _k * _n, to_storage(_g * _w + _two * _v, _gs_ptr),
                 mask=_mask)
        _k += 1
    for _j in tl.static_range(N_TRAIN):
        tl.store(_gp_ptr + _pid * N_TRAIN + _j,
                 tl.sum(tl.where(_mask, _dot * _grads[_j], 0.0), axis=0).to(
                     _gp_ptr.dtype.element_ty))


@triton.jit
def eig2(_a, _b, _d, _tol):
    """The closed-form eigen-decomposition of the 2 x 2 J = (a b / b d) >= 0, computed on J /
    tr J (no overflow): the mean eigenvalue, nu1 >= nu2, a unit eigenvector (x1, y1) of nu1
    (from the column without cancellation) and whether the eigenvalues coincide (gap <= tol
    x mean, J = 0 included; the vector is then arbitrary)."""
    _t = _a + _d
    _inv = 1.0 / tl.where(_t > 0, _t, 1.0)
    _half = 0.5 * (_a - _d) * _inv
    _b1 = _b * _inv
    _root = tl.sqrt(_half * _half + _b1 * _b1)  # <= 1/2
    _mean = 0.5 * _t
    _nu1 = _mean + _t * _root
    _nu2 = tl.maximum(_mean - _t * _root, 0.0)  # J >= 0: no rounding below 0
    _close = 2.0 * _root <= _tol * 0.5
    # nu1 - d = t (half + root) and nu1 - a = t (root - half): both sums of nonnegatives
    _vx = tl.where(_half >= 0, _half + _root, _b1)
    _vy = tl.where(_half >= 0, _b1, _root - _half)
    _len = tl.sqrt(_vx * _vx + _vy * _vy)
    _len = tl.where(_len > 0, _len, 1.0)
    return _mean, _nu1, _nu2, _vx / _len, _vy / _len, _close


@triton.jit
def aniso_fwd(_s_ptr, _out_ptr, p_ptr, _V, _N, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """The anisotropic activation (P3 30, 40): out_k = g(J) s_k with J = sum_j s_j s_j^T over
    the _V gradient vectors of each group; s of shape (groups, _V, 2, _N). With the unit
    eigenvectors v1, v2 of J: g(J) s = g(nu1) (v1 . s) v1 + g(nu2) (v2 . s) v2, a sum without
    cancellation (rank-one J, i.e. one vector, gives g(|s|^2) s to rounding); where the
    eigenvalues coincide, g(mean) s + g'(mean) (J - mean I) s. No division by zero, no NaN
    (J = 0 included)."""
    _pid = tl.program_id(0).to(tl.int64)
    _n = _N + 0 * _pid  # 64-bit offsets: channel x pixels can exceed 2^31
    _blocks = (_n + BLOCK_SIZE - 1) // BLOCK_SIZE
    _i = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _i < _n
    _base = (_pid // _blocks) * _V * 2 * _n + _i
    if FP64:
        _a = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
        _tol = 2e-8  # about sqrt(eps): truncation and cancellation errors balance
    else:
        _a = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        _tol = 3e-4
    _b = _a
    _d = _a
    _k = 0
    while _k < _V:  # a loop the interpreter runs too
        _x = load(_s_ptr + _base + 2 * _k * _n, _mask, FP64)
        _y = load(_s_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _a += _x * _x
        _b += _x * _y
        _d += _y * _y
        _k += 1
    _mean, _nu1, _nu2, _x1, _y1, _close = eig2(_a, _b, _d, _tol)
    _g1 = _phi(_nu1, p_ptr)
    _g2 = _phi(_nu2, p_ptr)
    _gm = _phi(_mean, p_ptr)
    _slope, _ = _dphi(_mean, p_ptr)
    _k = 0
    while _k < _V:
        _x = load(_s_ptr + _base + 2 * _k * _n, _mask, FP64)
        _y = load(_s_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _p1 = _g1 * (_x1 * _x + _y1 * _y)  # g(nu1) (v1 . s); v2 = (-y1, x1)
        _p2 = _g2 * (_x1 * _y - _y1 * _x)
        _ox = tl.where(_close, _gm * _x + _slope * ((_a - _mean) * _x + _b * _y),
                       _p1 * _x1 - _p2 * _y1)
        _oy = tl.where(_close, _gm * _y + _slope * (_b * _x + (_d - _mean) * _y),
                       _p1 * _y1 + _p2 * _x1)
        tl.store(_out_ptr + _base + 2 * _k * _n, to_storage(_ox, _out_ptr), mask=_mask)
        tl.store(_out_ptr + _base + (2 * _k + 1) * _n, to_storage(_oy, _out_ptr),
                 mask=_mask)
        _k += 1


@triton.jit
def aniso_bwd(_s_ptr, _gy_ptr, _gs_ptr, p_ptr, _gp_ptr, _V, _N, BLOCK_SIZE: tl.constexpr,
              FP64: tl.constexpr):
    """Backward of the anisotropic activation. With G = g(J), Gamma the symmetric part of
    sum_k gy_k s_k^T and the eigenprojections P_i = v_i v_i^T: gs_k = G gy_k + 2 Jbar s_k,
    Jbar = dL/dJ = sum_ij D_ij P_i Gamma P_j (Daleckii-Krein: D_ii = g'(nu_i), D_12 the
    divided difference (g(nu1) - g(nu2)) / (nu1 - nu2)) = g'(nu1) t11 P_1 + g'(nu2) t22 P_2 +
    D t12 (v1 v2^T + v2 v1^T), t_ij = v_i . Gamma v_j; g'(mean) Gamma where the eigenvalues
    coincide. dL/dp = <Gamma, dg/dp(J)> = dg/dp(nu1) t11 + dg/dp(nu2) t22 (dg/dp(mean) tr
    Gamma where they coincide)."""
    _pid = tl.program_id(0).to(tl.int64)
    _n = _N + 0 * _pid
    _blocks = (_n + BLOCK_SIZE - 1) // BLOCK_SIZE
    _i = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _i < _n
    _base = (_pid // _blocks) * _V * 2 * _n + _i
    if FP64:
        _a = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
        _tol = 2e-8
    else:
        _a = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        _tol = 3e-4
    _b = _a
    _d = _a
    _c11 = _a
    _c12 = _a
    _c22 = _a
    _k = 0
    while _k < _V:
        _x = load(_s_ptr + _base + 2 * _k * _n, _mask, FP64)
        _y = load(_s_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _wx = load(_gy_ptr + _base + 2 * _k * _n, _mask, FP64)
        _wy = load(_gy_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _a += _x * _x
        _b += _x * _y
        _d += _y * _y
        _c11 += _wx * _x
        _c12 += 0.5 * (_wx * _y + _wy * _x)
        _c22 += _wy * _y
        _k += 1
    _mean, _nu1, _nu2, _x1, _y1, _close = eig2(_a, _b, _d, _tol)
    _g1 = _phi(_nu1, p_ptr)
    _g2 = _phi(_nu2, p_ptr)
    _gm = _phi(_mean, p_ptr)
    _d1, _grads1 = _dphi(_nu1, p_ptr)
    _d2, _grads2 = _dphi(_nu2, p_ptr)
    _slope, _grads_mean = _dphi(_mean, p_ptr)
    _dd = (_g1 - _g2) / tl.where(_close, 1.0, _nu1 - _nu2)
    # t_ij = v_i . Gamma v_j with v1 = (x1, y1), v2 = (-y1, x1)
    _t11 = _x1 * (_c11 * _x1 + _c12 * _y1) + _y1 * (_c12 * _x1 + _c22 * _y1)
    _t22 = _y1 * (_c11 * _y1 - _c12 * _x1) - _x1 * (_c12 * _y1 - _c22 * _x1)
    _t12 = -_y1 * (_c11 * _x1 + _c12 * _y1) + _x1 * (_c12 * _x1 + _c22 * _y1)
    _e1 = _d1 * _t11
    _e2 = _d2 * _t22
    _e3 = _dd * _t12
    _j11 = tl.where(_close, _slope * _c11, _e1 * _x1 * _x1 + _e2 * _y1 * _y1
                    - 2.0 * _e3 * _x1 * _y1)
    _j12 = tl.where(_close, _slope * _c12, (_e1 - _e2) * _x1 * _y1
                    + _e3 * (_x1 * _x1 - _y1 * _y1))
    _j22 = tl.where(_close, _slope * _c22, _e1 * _y1 * _y1 + _e2 * _x1 * _x1
                    + 2.0 * _e3 * _x1 * _y1)
    _k = 0
    while _k < _V:
        _x = load(_s_ptr + _base + 2 * _k * _n, _mask, FP64)
        _y = load(_s_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _wx = load(_gy_ptr + _base + 2 * _k * _n, _mask, FP64)
        _wy = load(_gy_ptr + _base + (2 * _k + 1) * _n, _mask, FP64)
        _q1 = _g1 * (_x1 * _wx + _y1 * _wy)  # G gy = g(nu1) (v1 . gy) v1 + g(nu2) (v2 . gy) v2
        _q2 = _g2 * (_x1 * _wy - _y1 * _wx)
        _ox = tl.where(_close, _gm * _wx + _slope * ((_a - _mean) * _wx + _b * _wy),
                       _q1 * _x1 - _q2 * _y1) + 2.0 * (_j11 * _x + _j12 * _y)
        _oy = tl.where(_close, _gm * _wy + _slope * (_b * _wx + (_d - _mean) * _wy),
                       _q1 * _y1 + _q2 * _x1) + 2.0 * (_j12 * _x + _j22 * _y)
        tl.store(_gs_ptr + _base + 2 * _k * _n, to_storage(_ox, _gs_ptr), mask=_mask)
        tl.store(_gs_ptr + _base + (2 * _k + 1) * _n, to_storage(_oy, _gs_ptr),
                 mask=_mask)
        _k += 1
    for _j in tl.static_range(N_TRAIN):
        _gpv = tl.where(_close, _grads_mean[_j] * (_c11 + _c22),
                        _grads1[_j] * _t11 + _grads2[_j] * _t22)
        tl.store(_gp_ptr + _pid * N_TRAIN + _j,
                 tl.sum(tl.where(_mask, _gpv, 0.0), axis=0).to(_gp_ptr.dtype.element_ty))


@triton.jit
def c2d_fwd(_u_ptr, _out_ptr, p_ptr, _st_ptr, _M, _H, _W, BLOCK_SIZE: tl.constexpr,
            FP64: tl.constexpr, CLAMP: tl.constexpr):
    """One coupled isotropic explicit step in one pass (P3 19, 29): u (groups, _M, _H, _W),
    K = the forward-difference gradient (D+x, D+y) / h with zero flux across the image
    boundary, Phi = g(S) s with S the sum of |K u_m|^2 over the _M image channels of a group:
    out_m = u_m + tau/h (Phi_x(i, j) - Phi_x(i, j-1) + Phi_y(i, j) - Phi_y(i-1, j)).
    _st_ptr holds (tau, 1/h). Grid: groups * _H * column blocks on axis 0. CLAMP (a scalar g
    per channel, _M = 1, under the max-min bound): a finite out is clamped to the range of u
    and its existing four neighbours, a convex combination of which it is in exact arithmetic
    (a rounding correction; fluxact.operators.stencil_range)."""
    _pid = tl.program_id(0).to(tl.int64)
    _blocks = (_W + BLOCK_SIZE - 1) // BLOCK_SIZE
    _grp = _pid // (_H * _blocks)
    _r = (_pid // _blocks) % _H
    _c = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _c < _W
    _right = _c < _W - 1  # a flux to the right exists
    _left = _mask & (_c > 0)
    _down = _r < _H - 1
    _up = _r > 0
    if FP64:
        _s0 = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        _s0 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    _sl = _s0
    _su = _s0
    _tau = to_compute(tl.load(_st_ptr + 0), FP64)
    _ih = to_compute(tl.load(_st_ptr + 1), FP64)
    # S at this pixel, at its left and at its upper neighbour
    _m = 0
    while _m < _M:  # a loop the interpreter runs too
        _p = _u_ptr + (_grp * _M + _m) * _H * _W
        _uc = load(_p + _r * _W + _c, _mask, FP64)
        _ur = load(_p + _r * _W + _c + 1, _mask & _right, FP64)
        _ud = load(_p + (_r + 1) * _W + _c, _mask & _down, FP64)
        _ul = load(_p + _r * _W + _c - 1, _left, FP64)
        _uld = load(_p + (_r + 1) * _W + _c - 1, _left & _down, FP64)
        _uu = load(_p + (_r - 1) * _W + _c, _mask & _up, FP64)
        _uur = load(_p + (_r - 1) * _W + _c + 1, _mask & _up & _right, FP64)
        _x0 = tl.where(_right, (_ur - _uc) * _ih, 0.0)
        _y0 = tl.where(_down, (_ud - _uc) * _ih, 0.0)
        _xl = tl.where(_left, (_uc - _ul) * _ih, 0.0)
        _yl = tl.where(_left & _down, (_uld - _ul) * _ih, 0.0)
        _xu = tl.where(_up & _right, (_uur - _uu) * _ih, 0.0)
        _yu = tl.where(_up, (_uc - _uu) * _ih, 0.0)
        _s0 += _x0 * _x0 + _y0 * _y0
        _sl += _xl * _xl + _yl * _yl
        _su += _xu * _xu + _yu * _yu
        _m += 1
    _g0 = _phi(_s0, p_ptr)
    _gl = _phi(_sl, p_ptr)
    _gu = _phi(_su, p_ptr)
    _m = 0
    while _m < _M:  # a loop the interpreter runs too
        _p = _u_ptr + (_grp * _M + _m) * _H * _W
        _uc = load(_p + _r * _W + _c, _mask, FP64)
        _ur = load(_p + _r * _W + _c + 1, _mask & _right, FP64)
        _ud = load(_p + (_r + 1) * _W + _c, _mask & _down, FP64)
        _ul = load(_p + _r * _W + _c - 1, _left, FP64)
        _uu = load(_p + (_r - 1) * _W + _c, _mask & _up, FP64)
        _x0 = tl.where(_right, (_ur - _uc) * _ih, 0.0)
        _y0 = tl.where(_down, (_ud - _uc) * _ih, 0.0)
        _xl = tl.where(_left, (_uc - _ul) * _ih, 0.0)
        _yu = tl.where(_up, (_uc - _uu) * _ih, 0.0)
        _o = _uc + _tau * _ih * (_g0 * (_x0 + _y0) - _gl * _xl - _gu * _yu)
        if CLAMP:
            _nr = tl.where(_right, _ur, _uc)
            _nd = tl.where(_down, _ud, _uc)
            _nl = tl.where(_left, _ul, _uc)
            _nu = tl.where(_up, _uu, _uc)
            _lo = tl.minimum(tl.minimum(_uc, tl.minimum(_nr, _nd)), tl.minimum(_nl, _nu))
            _hi = tl.maximum(tl.maximum(_uc, tl.maximum(_nr, _nd)), tl.maximum(_nl, _nu))
            _o = tl.where(tl.abs(_o) < float("inf"), tl.minimum(tl.maximum(_o, _lo), _hi), _o)
        tl.store(_out_ptr + (_grp * _M + _m) * _H * _W + _r * _W + _c,
                 to_storage(_o, _out_ptr), mask=_mask)
        _m += 1


@triton.jit
def c2d_bwd(_u_ptr, _gy_ptr, _gu_ptr, p_ptr, _st_ptr, _gp_ptr, _M, _H, _W,
            BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """Backward of the coupled 2D step: gu = gy - tau K^T Z with Z = Phi'(K u) K gy at every
    pixel, Phi'(s) w = g(S) w + 2 g'(S) s (s . w), the dot product over the group's image
    channels; partial sums per program of dL/dtau = -sum g(S) (s . w) and dL/dp =
    -tau sum (s . w) dg/dp(S), each pixel's flux once (column 0: tau)."""
    _pid = tl.program_id(0).to(tl.int64)
    _blocks = (_W + BLOCK_SIZE - 1) // BLOCK_SIZE
    _grp = _pid // (_H * _blocks)
    _r = (_pid // _blocks) % _H
    _c = (_pid % _blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    _mask = _c < _W
    _right = _c < _W - 1
    _left = _mask & (_c > 0)
    _down = _r < _H - 1
    _up = _r > 0
    if FP64:
        _s0 = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        _s0 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    _sl = _s0
    _su = _s0
    _q0 = _s0
    _ql = _s0
    _qu = _s0
    _tau = to_compute(tl.load(_st_ptr + 0), FP64)
    _ih = to_compute(tl.load(_st_ptr + 1), FP64)
    _m = 0
    while _m < _M:  # a loop the interpreter runs too
        _off = (_grp * _M + _m) * _H * _W
        _p = _u_ptr + _off
        _w = _gy_ptr + _off
        _uc = load(_p + _r * _W + _c, _mask, FP64)
        _ur = load(_p + _r * _W + _c + 1, _mask & _right, FP64)
        _ud = load(_p + (_r + 1) * _W + _c, _mask & _down, FP64)
        _ul = load(_p + _r * _W + _c - 1, _left, FP64)
        _uld = load(_p + (_r + 1) * _W + _c - 1, _left & _down, FP64)
        _uu = load(_p + (_r - 1) * _W + _c, _mask & _up, FP64)
        _uur = load(_p + (_r - 1) * _W + _c + 1, _mask & _up & _right, FP64)
        _wc = load(_w + _r * _W + _c, _mask, FP64)
        _wr = load(_w + _r * _W + _c + 1, _mask & _right, FP64)
        _wd = load(_w + (_r + 1) * _W + _c, _mask & _down, FP64)
        _wl = load(_w + _r * _W + _c - 1, _left, FP64)
        _wld = load(_w + (_r + 1) * _W + _c - 1, _left & _down, FP64)
        _wu = load(_w + (_r - 1) * _W + _c, _mask & _up, FP64)
        _wur = load(_w + (_r - 1) * _W + _c + 1, _mask & _up & _right, FP64)
        _x0 = tl.where(_right, (_ur - _uc) * _ih, 0.0)
        _y0 = tl.where(_down, (_ud - _uc) * _ih, 0.0)
        _xl = tl.where(_left, (_uc - _ul) * _ih, 0.0)
        _yl = tl.where(_left & _down, (_uld - _ul) * _ih, 0.0)
        _xu = tl.where(_up & _right, (_uur - _uu) * _ih, 0.0)
        _yu = tl.where(_up, (_uc - _uu) * _ih, 0.0)
        _s0 += _x0 * _x0 + _y0 * _y0
        _sl += _xl * _xl + _yl * _yl
        _su += _xu * _xu + _yu * _yu
        _q0 += _x0 * (_wr - _wc) * _ih + _y0 * (_wd - _wc) * _ih
        _ql += _xl * (_wc - _wl) * _ih + _yl * (_wld - _wl) * _ih
        _qu += _xu * (_wur - _wu) * _ih + _yu * (_wc - _wu) * _ih
        _m += 1
    _g0 = _phi(_s0, p_ptr)
    _gl = _phi(_sl, p_ptr)
    _gu = _phi(_su, p_ptr)
    _h0, _grads = _dphi(_s0, p_ptr)
    _hl, _ = _dphi(_sl, p_ptr)
    _hu, _ = _dphi(_su, p_ptr)
    _t0 = 2.0 * _h0 * _q0
    _tl = 2.0 * _hl * _ql
    _tu = 2.0 * _hu * _qu
    _m = 0
    while _m < _M:  # a loop the interpreter runs too
        _off = (_grp * _M + _m) * _H * _W
        _p = _u_ptr + _off
        _w = _gy_ptr + _off
        _uc = load(_p + _r * _W + _c, _mask, FP64)
        _ur = load(_p + _r * _W + _c + 1, _mask & _right, FP64)
        _ud = load(_p + (_r + 1) * _W + _c, _mask & _down, FP64)
        _ul = load(_p + _r * _W + _c - 1, _left, FP64)
        _uu = load(_p + (_r - 1) * _W + _c, _mask & _up, FP64)
        _wc = load(_w + _r * _W + _c, _mask, FP64)
        _wr = load(_w + _r * _W + _c + 1, _mask & _right, FP64)
        _wd = load(_w + (_r + 1) * _W + _c, _mask & _down, FP64)
        _wl = load(_w + _r * _W + _c - 1, _left, FP64)
        _wu = load(_w + (_r - 1) * _W + _c, _mask & _up, FP64)
        # Z = Phi'(s) w at this pixel (x, y), at the left (x) and the upper (y) neighbour
        _zx0 = tl.where(_right, _g0 * (_wr - _wc) * _ih + _t0 * (_ur - _uc) * _ih, 0.0)
        _zy0 = tl.where(_down, _g0 * (_wd - _wc) * _ih + _t0 * (_ud - _uc) * _ih, 0.0)
        _zxl = tl.where(_left, _gl * (_wc - _wl) * _ih + _tl * (_uc - _ul) * _ih, 0.0)
        _zyu = tl.where(_up, _gu * (_wc - _wu) * _ih + _tu * (_uc - _uu) * _ih, 0.0)
        _o = _wc + _tau * _ih * (_zx0 + _zy0 - _zxl - _zyu)
        tl.store(_gu_ptr + _off + _r * _W + _c, to_storage(_o, _gu_ptr), mask=_mask)
        _m += 1
    _slot = _gp_ptr + _pid * (N_TRAIN + 1)
    tl.store(_slot, -tl.sum(tl.where(_mask, _g0 * _q0, 0.0), axis=0).to(
        _gp_ptr.dtype.element_ty))
    for _j in tl.static_range(N_TRAIN):
        tl.store(_slot + 1 + _j,
                 (-_tau * tl.sum(tl.where(_mask, _q0 * _grads[_j], 0.0), axis=0)).to(
                     _gp_ptr.dtype.element_ty))


def launchers(kernel: Callable[[str], Any], trainable: int) -> dict[str, tuple[Any, Any]]:
    """The ops "iso" (s (groups, C, N)), "aniso" (s (groups, V, 2, N)) and "c2d" (u (groups,
    M, H, W), st = (tau, 1/h) in the compute dtype) (fluxact/kernels/launch.py)."""
    fp64 = torch.float64
    out: dict[str, tuple[Any, Any]] = {}
    # the anisotropic backward keeps ~40 values per lane: 256 lanes a program avoid register
    # spills in fp64 (sm_90, 4 warps; a reviewer's compile)
    for kind, most in (("iso", BLOCK_SIZE), ("aniso", 256)):
        out[kind] = _activation(kernel(f"{kind}_fwd"), kernel(f"{kind}_bwd"), most, trainable)
    fwd, bwd = kernel("c2d_fwd"), kernel("c2d_bwd")

    def forward(u: torch.Tensor, p: torch.Tensor, st: torch.Tensor, clamp: bool
                ) -> torch.Tensor:
        groups, m, height, width = u.shape
        result = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        launch(fwd, groups * height * triton.cdiv(width, block), u, result, p, st, m, height,
               width, BLOCK_SIZE=block, FP64=u.dtype == fp64, CLAMP=clamp)
        return result

    def backward(u: torch.Tensor, gy: torch.Tensor, p: torch.Tensor, st: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        groups, m, height, width = u.shape
        gu = torch.empty_like(u)
        block = row_block(width, BLOCK_SIZE_2D)
        programs = groups * height * triton.cdiv(width, block)
        partial = partial_sums(u, programs, trainable + 1)
        launch(bwd, programs, u, gy, gu, p, st, partial, m, height, width, BLOCK_SIZE=block,
               FP64=u.dtype == fp64)
        return gu, partial.sum(dim=0)

    out["c2d"] = (forward, backward)
    return out


def _activation(fwd: Any, bwd: Any, most: int, trainable: int) -> tuple[Any, Any]:
    """The launchers of a coupled activation on s (groups, channels, ..., N), ``most`` lanes
    per program at most."""

    def forward(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        groups, channels, n = s.shape[0], s.shape[1], s.shape[-1]
        result = torch.empty_like(s)
        block = row_block(n, most)
        launch(fwd, groups * triton.cdiv(n, block), s, result, p, channels, n,
               BLOCK_SIZE=block, FP64=s.dtype == torch.float64)
        return result

    def backward(s: torch.Tensor, gy: torch.Tensor, p: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        groups, channels, n = s.shape[0], s.shape[1], s.shape[-1]
        gs = torch.empty_like(s)
        block = row_block(n, most)
        programs = groups * triton.cdiv(n, block)
        partial = partial_sums(s, programs, trainable)
        launch(bwd, programs, s, gy, gs, p, partial, channels, n, BLOCK_SIZE=block,
               FP64=s.dtype == torch.float64)
        return gs, partial[:, :trainable].sum(dim=0)

    return forward, backward
