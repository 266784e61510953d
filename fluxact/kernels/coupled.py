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

from .dtypes import load, to_storage
from .formula import N_TRAIN, _dphi, _phi
from .launch import BLOCK_SIZE, BLOCK_SIZE_2D, launch, partial_sums, row_block
from .stencil import clamp_finite, plane_lanes, step_sizes


@triton.jit
def _group_lanes(pid, N, rows, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """(n, base, mask, zeros) of program ``pid`` over groups of ``rows`` rows of N samples
    (groups * blocks of N programs on axis 0): n = N in 64 bits (channel x pixels can exceed
    2^31), base the offsets of the lanes in the group's first row, zeros in the compute
    dtype."""
    n = N + 0 * pid
    blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    i = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    if FP64:
        zeros = tl.zeros([BLOCK_SIZE], dtype=tl.float64)
    else:
        zeros = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    return n, (pid // blocks) * rows * n + i, i < n, zeros


@triton.jit
def iso_fwd(_s_ptr, _out_ptr, p_ptr, _C, _N, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """The coupled isotropic activation (P3 19, 29, 36): out_k = g(sum_j s_j^2) s_k over the
    _C channels of each group; s of shape (groups, _C, _N), contiguous. Grid: groups * blocks
    of _N programs on axis 0. Here Phi of this module is g(s2)."""
    _n, _base, _mask, _sum = _group_lanes(tl.program_id(0).to(tl.int64), _N, _C, BLOCK_SIZE,
                                          FP64)
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
    _n, _base, _mask, _sum = _group_lanes(_pid, _N, _C, BLOCK_SIZE, FP64)
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
def _tolerance(FP64: tl.constexpr):
    """The relative gap below which eig2 takes two eigenvalues as equal: about sqrt(eps),
    where truncation and cancellation errors balance."""
    if FP64:
        out = 2e-8
    else:
        out = 3e-4
    return out


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
def _structure(s_ptr, gy_ptr, base, n, mask, V, zeros, FP64: tl.constexpr, GRAD: tl.constexpr):
    """J = sum_k s_k s_k^T = (a b / b d) over the V vectors of a group (s of shape (V, 2, N)
    from ``base``), and, where GRAD, Gamma = the symmetric part of sum_k gy_k s_k^T as (c11,
    c12, c22) (else zeros)."""
    a, b, d, c11, c12, c22 = zeros, zeros, zeros, zeros, zeros, zeros
    k = 0
    while k < V:  # a loop the interpreter runs too
        x = load(s_ptr + base + 2 * k * n, mask, FP64)
        y = load(s_ptr + base + (2 * k + 1) * n, mask, FP64)
        a += x * x
        b += x * y
        d += y * y
        if GRAD:
            wx = load(gy_ptr + base + 2 * k * n, mask, FP64)
            wy = load(gy_ptr + base + (2 * k + 1) * n, mask, FP64)
            c11 += wx * x
            c12 += 0.5 * (wx * y + wy * x)
            c22 += wy * y
        k += 1
    return a, b, d, c11, c12, c22


@triton.jit
def _eigen_g(a, b, d, p_ptr, FP64: tl.constexpr, PHI: tl.constexpr):
    """eig2 of J = (a b / b d) and g = PHI at its eigenvalues and at their mean: (mean, nu1,
    nu2, x1, y1, close, g(nu1), g(nu2), g(mean))."""
    mean, nu1, nu2, x1, y1, close = eig2(a, b, d, _tolerance(FP64))
    return mean, nu1, nu2, x1, y1, close, PHI(nu1, p_ptr), PHI(nu2, p_ptr), PHI(mean, p_ptr)


@triton.jit
def aniso_fwd(_s_ptr, _out_ptr, p_ptr, _V, _N, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """The anisotropic activation (P3 30, 40): out_k = g(J) s_k with J = sum_j s_j s_j^T over
    the _V gradient vectors of each group; s of shape (groups, _V, 2, _N). With the unit
    eigenvectors v1, v2 of J: g(J) s = g(nu1) (v1 . s) v1 + g(nu2) (v2 . s) v2, a sum without
    cancellation (rank-one J, i.e. one vector, gives g(|s|^2) s to rounding); where the
    eigenvalues coincide, g(mean) s + g'(mean) (J - mean I) s. No division by zero, no NaN
    (J = 0 included)."""
    _n, _base, _mask, _a = _group_lanes(tl.program_id(0).to(tl.int64), _N, 2 * _V, BLOCK_SIZE,
                                        FP64)
    _a, _b, _d, _, _, _ = _structure(_s_ptr, _s_ptr, _base, _n, _mask, _V, _a, FP64, False)
    _mean, _nu1, _nu2, _x1, _y1, _close, _g1, _g2, _gm = _eigen_g(_a, _b, _d, p_ptr, FP64, _phi)
    _slope, _ = _dphi(_mean, p_ptr)
    # J = mean I makes the slope's term 0: a g' that is not finite there must not make NaN
    _slope = tl.where((_slope - _slope) == 0.0, _slope, 0.0)
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
    _n, _base, _mask, _a = _group_lanes(_pid, _N, 2 * _V, BLOCK_SIZE, FP64)
    _a, _b, _d, _c11, _c12, _c22 = _structure(_s_ptr, _gy_ptr, _base, _n, _mask, _V, _a, FP64,
                                              True)
    _mean, _nu1, _nu2, _x1, _y1, _close, _g1, _g2, _gm = _eigen_g(_a, _b, _d, p_ptr, FP64, _phi)
    _d1, _grads1 = _dphi(_nu1, p_ptr)
    _d2, _grads2 = _dphi(_nu2, p_ptr)
    _slope, _grads_mean = _dphi(_mean, p_ptr)
    _slope = tl.where((_slope - _slope) == 0.0, _slope, 0.0)  # as in aniso_fwd
    _dd = (_g1 - _g2) / tl.where(_close, 1.0, _nu1 - _nu2)
    # t_ij = v_i . Gamma v_j with v1 = (x1, y1), v2 = (-y1, x1)
    _t11 = _x1 * (_c11 * _x1 + _c12 * _y1) + _y1 * (_c12 * _x1 + _c22 * _y1)
    _t22 = _y1 * (_c11 * _y1 - _c12 * _x1) - _x1 * (_c12 * _y1 - _c22 * _x1)
    _t12 = -_y1 * (_c11 * _x1 + _c12 * _y1) + _x1 * (_c12 * _x1 + _c22 * _y1)
    # nu_i = 0 only where J is rank one (nu2) or 0: the term is 0 (coupling._positive_part
    # says why), a selection rather than g'(0) t_ii, which is inf * (0 or a rounding error)
    # for a g with an infinite slope at 0 (1/(1 + sqrt(s2)/lam))
    _e1 = tl.where(_nu1 > 0.0, _d1 * _t11, 0.0)
    _e2 = tl.where(_nu2 > 0.0, _d2 * _t22, 0.0)
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
def _c2d_lanes(st_ptr, H, W, BLOCK_SIZE: tl.constexpr, FP64: tl.constexpr):
    """(program, group, row, columns, mask, where the fluxes to the right, to the left, down
    and up exist, tau, 1/h, zeros in the compute dtype) of this program: groups * H * column
    blocks programs on axis 0; st_ptr holds (tau, 1/h)."""
    pid = tl.program_id(0).to(tl.int64)
    grp, r, c, mask = plane_lanes(pid, H, W, BLOCK_SIZE)
    tau, ih = step_sizes(st_ptr, FP64)
    return (pid, grp, r, c, mask, c < W - 1, mask & (c > 0), r < H - 1, r > 0, tau, ih,
            tl.zeros([BLOCK_SIZE], dtype=tau.dtype))


@triton.jit
def _gradients(p, r, c, W, mask, right, left, down, up, ih, FP64: tl.constexpr):
    """Around pixel (r, c) of the plane at ``p``: the values at the pixel and at its right,
    down, left and upper neighbours (0 past the border), and the forward-difference
    gradients (D+x, D+y) / h at the pixel, at its left and at its upper neighbour (each
    component 0 where its flux crosses the border)."""
    uc = load(p + r * W + c, mask, FP64)
    ur = load(p + r * W + c + 1, mask & right, FP64)
    ud = load(p + (r + 1) * W + c, mask & down, FP64)
    ul = load(p + r * W + c - 1, left, FP64)
    uld = load(p + (r + 1) * W + c - 1, left & down, FP64)
    uu = load(p + (r - 1) * W + c, mask & up, FP64)
    uur = load(p + (r - 1) * W + c + 1, mask & up & right, FP64)
    x0 = tl.where(right, (ur - uc) * ih, 0.0)
    y0 = tl.where(down, (ud - uc) * ih, 0.0)
    xl = tl.where(left, (uc - ul) * ih, 0.0)
    yl = tl.where(left & down, (uld - ul) * ih, 0.0)
    xu = tl.where(up & right, (uur - uu) * ih, 0.0)
    yu = tl.where(up, (uc - uu) * ih, 0.0)
    return uc, ur, ud, ul, uu, x0, y0, xl, yl, xu, yu


@triton.jit
def _sums(u_ptr, gy_ptr, grp, M, H, W, r, c, mask, right, left, down, up, ih, zeros,
          FP64: tl.constexpr, GRAD: tl.constexpr):
    """S = sum over the group's M image channels of |K u_m|^2 at the pixel, at its left and
    at its upper neighbour, and, where GRAD, the dot products s . w = sum_m K u_m . K gy_m
    there (else zeros)."""
    s0, sl, su, q0, ql, qu = zeros, zeros, zeros, zeros, zeros, zeros
    m = 0
    while m < M:  # a loop the interpreter runs too
        plane = (grp * M + m) * H * W
        _, _, _, _, _, x0, y0, xl, yl, xu, yu = _gradients(
            u_ptr + plane, r, c, W, mask, right, left, down, up, ih, FP64)
        s0 += x0 * x0 + y0 * y0
        sl += xl * xl + yl * yl
        su += xu * xu + yu * yu
        if GRAD:
            _, _, _, _, _, wx0, wy0, wxl, wyl, wxu, wyu = _gradients(
                gy_ptr + plane, r, c, W, mask, right, left, down, up, ih, FP64)
            q0 += x0 * wx0 + y0 * wy0
            ql += xl * wxl + yl * wyl
            qu += xu * wxu + yu * wyu
        m += 1
    return s0, sl, su, q0, ql, qu


@triton.jit
def c2d_fwd(u_ptr, out_ptr, p_ptr, st_ptr, M, H, W, BLOCK_SIZE: tl.constexpr,
            FP64: tl.constexpr, CLAMP: tl.constexpr):
    """One coupled isotropic explicit step in one pass (P3 19, 29): u (groups, M, H, W),
    K = the forward-difference gradient (D+x, D+y) / h with zero flux across the image
    boundary, Phi = g(S) s with S the sum of |K u_m|^2 over the M image channels of a group:
    out_m = u_m + tau/h (Phi_x(i, j) - Phi_x(i, j-1) + Phi_y(i, j) - Phi_y(i-1, j)).
    st_ptr holds (tau, 1/h). Grid: groups * H * column blocks on axis 0. CLAMP (a scalar g
    per channel, M = 1, under the max-min bound): a finite out is clamped to the range of u
    and its existing four neighbours, a convex combination of which it is in exact arithmetic
    (a rounding correction; fluxact.operators.stencil_range)."""
    pid, grp, r, c, mask, right, left, down, up, tau, ih, s0 = _c2d_lanes(st_ptr, H, W,
                                                                          BLOCK_SIZE, FP64)
    s0, sl, su, _, _, _ = _sums(u_ptr, u_ptr, grp, M, H, W, r, c, mask, right, left, down, up,
                                ih, s0, FP64, False)
    g0 = _phi(s0, p_ptr)
    gl = _phi(sl, p_ptr)
    gu = _phi(su, p_ptr)
    m = 0
    while m < M:
        plane = (grp * M + m) * H * W
        uc, ur, ud, ul, uu, x0, y0, xl, _, _, yu = _gradients(
            u_ptr + plane, r, c, W, mask, right, left, down, up, ih, FP64)
        o = uc + tau * ih * (g0 * (x0 + y0) - gl * xl - gu * yu)
        if CLAMP:
            nr = tl.where(right, ur, uc)
            nd = tl.where(down, ud, uc)
            nl = tl.where(left, ul, uc)
            nu = tl.where(up, uu, uc)
            o = clamp_finite(o, tl.minimum(tl.minimum(uc, tl.minimum(nr, nd)), tl.minimum(nl, nu)),
                             tl.maximum(tl.maximum(uc, tl.maximum(nr, nd)), tl.maximum(nl, nu)))
        tl.store(out_ptr + plane + r * W + c, to_storage(o, out_ptr), mask=mask)
        m += 1


@triton.jit
def c2d_bwd(u_ptr, gy_ptr, gu_ptr, p_ptr, st_ptr, gp_ptr, M, H, W, BLOCK_SIZE: tl.constexpr,
            FP64: tl.constexpr):
    """Backward of the coupled 2D step: gu = gy - tau K^T Z with Z = Phi'(K u) K gy at every
    pixel, Phi'(s) w = g(S) w + 2 g'(S) s (s . w), the dot product over the group's image
    channels; partial sums per program of dL/dtau = -sum g(S) (s . w) and dL/dp =
    -tau sum (s . w) dg/dp(S), each pixel's flux once (column 0: tau)."""
    pid, grp, r, c, mask, right, left, down, up, tau, ih, s0 = _c2d_lanes(st_ptr, H, W,
                                                                          BLOCK_SIZE, FP64)
    s0, sl, su, q0, ql, qu = _sums(u_ptr, gy_ptr, grp, M, H, W, r, c, mask, right, left, down,
                                   up, ih, s0, FP64, True)
    g0 = _phi(s0, p_ptr)
    gl = _phi(sl, p_ptr)
    gu = _phi(su, p_ptr)
    h0, grads = _dphi(s0, p_ptr)
    hl = _dphi(sl, p_ptr)[0]  # not `hl, _ =`: `_` is a tensor in the loop below, and a
    hu = _dphi(su, p_ptr)[0]  # name carried into a loop must keep its type when compiled
    t0 = 2.0 * h0 * q0
    tl_ = 2.0 * hl * ql
    tu = 2.0 * hu * qu
    m = 0
    while m < M:
        plane = (grp * M + m) * H * W
        _, _, _, _, _, x0, y0, xl, _, _, yu = _gradients(
            u_ptr + plane, r, c, W, mask, right, left, down, up, ih, FP64)
        wc, _, _, _, _, wx0, wy0, wxl, _, _, wyu = _gradients(
            gy_ptr + plane, r, c, W, mask, right, left, down, up, ih, FP64)
        # Z = Phi'(s) w at this pixel (x, y), at the left (x) and the upper (y) neighbour
        z = (g0 * (wx0 + wy0) + t0 * (x0 + y0)) - (gl * wxl + tl_ * xl) - (gu * wyu + tu * yu)
        tl.store(gu_ptr + plane + r * W + c, to_storage(wc + tau * ih * z, gu_ptr), mask=mask)
        m += 1
    slot = gp_ptr + pid * (N_TRAIN + 1)
    tl.store(slot, -tl.sum(tl.where(mask, g0 * q0, 0.0), axis=0).to(gp_ptr.dtype.element_ty))
    for j in tl.static_range(N_TRAIN):
        tl.store(slot + 1 + j, (-tau * tl.sum(tl.where(mask, q0 * grads[j], 0.0), axis=0)
                                ).to(gp_ptr.dtype.element_ty))


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
