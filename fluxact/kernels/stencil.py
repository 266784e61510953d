"""Pieces the stencil kernels share: the lanes of a program along a row, the neighbours of an
index at the boundary, the time step and grid size, and the clamp that keeps a step in its
stencil's range."""

from __future__ import annotations

import triton
import triton.language as tl

from .dtypes import to_compute


@triton.jit
def row_lanes(pid, n, BLOCK_SIZE: tl.constexpr):
    """(row, i, mask) of program ``pid`` over rows of length n, one grid axis: rows * blocks
    programs (CUDA limits axes 1 and 2 to 65535)."""
    blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    i = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    return pid // blocks, i, i < n


@triton.jit
def plane_lanes(pid, H, W, BLOCK_SIZE: tl.constexpr):
    """(plane, y, x, mask) of program ``pid`` over planes of H rows of W columns, one grid
    axis: planes * H * column blocks programs."""
    blocks = (W + BLOCK_SIZE - 1) // BLOCK_SIZE
    x = (pid % blocks) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    return pid // (H * blocks), (pid // blocks) % H, x, x < W


@triton.jit
def neighbours(i, n, PERIODIC: tl.constexpr):
    """(i + 1, i - 1) on 0..n-1: wrapped (periodic) or clamped to the ends (reflecting: the
    flux across an end is then masked by the caller)."""
    if PERIODIC:
        after = tl.where(i + 1 < n, i + 1, 0)
        before = tl.where(i > 0, i - 1, n - 1)
    else:
        after = tl.minimum(i + 1, n - 1)
        before = tl.maximum(i - 1, 0)
    return after, before


@triton.jit
def step_sizes(s_ptr, FP64: tl.constexpr):
    """(tau, 1/h) from s_ptr, in the compute dtype."""
    return to_compute(tl.load(s_ptr + 0), FP64), to_compute(tl.load(s_ptr + 1), FP64)


@triton.jit
def clamp_finite(out, low, high):
    """``out`` clamped to [low, high] where it is finite (NaN and inf stay as they are): the
    range of the stencil, which a step under the max-min bound never leaves in exact
    arithmetic (a rounding correction; fluxact.operators.stencil_range)."""
    return tl.where(tl.abs(out) < float("inf"), tl.minimum(tl.maximum(out, low), high), out)

