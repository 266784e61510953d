"""Stability for ANY depth (MATH.md 2), as properties over random signals, catalogue
activations and parameter values, with networks up to 500 blocks at the automatic time step:

- linf: every output lies in [min f, max f];
- sign (1D): the number of sign changes never grows;
- euclidean: ||u||_2 never grows, with a new random multi-channel kernel in every block;
- FSI with its super step stays bounded in the linear case.

Each property is checked after every block. Rounding of the update itself is allowed for (a
relative 1e-12 of the signal's range), nothing more.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxact.blocks import DiffusionBlock, FSIBlock
from fluxact.operators import Operator

from .conftest import activation

torch = pytest.importorskip("torch")

#: catalogue entries with g >= 0 and a finite g_max (total variation has none)
STABLE = ["linear", "charbonnier", "huber", "perona-malik", "garrote", "hard",
          "perona-malik-rational", "weickert", "tukey", "geman-mcclure", "cauchy", "tanh",
          "relu"]

names = st.sampled_from([*STABLE, "a*tanh(r/b)"])  # the last: g_max = a/b depends on them
values = st.sampled_from([0.05, 0.5, 1.0, 3.0, 20.0])


def make(name: str, value: float):
    """A catalogue activation with its parameters at ``value``, or a*tanh(r/b) with
    a = value, b = 1/value + 0.3 (g_max = a/b from 0.01 to 61)."""
    if name in STABLE:
        return activation(name, value).double()
    return tanh_family(value).double()


@cache
def _tanh_code():
    import fluxact

    return fluxact.to_torch("a*tanh(r/b)", "activation", params={"a": 1.0, "b": 1.0},
                            backend="torch")


def tanh_family(value: float):
    act = _tanh_code().clone()
    with torch.no_grad():
        act.a.fill_(value)
        act.b.fill_(1 / value + 0.3)
    return act
depths = st.integers(1, 500)


def signals(max_len: int = 48) -> st.SearchStrategy[np.ndarray]:
    return st.builds(
        lambda n, seed, scale, jumps: _signal(n, seed, scale, jumps),
        st.integers(3, max_len), st.integers(0, 2**31 - 1),
        st.sampled_from([0.01, 1.0, 30.0, 1e4]), st.booleans())


def _signal(n: int, seed: int, scale: float, jumps: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.normal(0, scale, n)
    if jumps:
        f += np.repeat(rng.normal(0, 3 * scale, 4), -(-n // 4))[:n]
    return f


def sign_changes(u: np.ndarray, eps: float) -> int:
    s = np.sign(u[np.abs(u) > eps])
    return int(np.sum(s[1:] != s[:-1]))


@pytest.mark.slow
@given(name=names, value=values, f=signals(), depth=depths,
       boundary=st.sampled_from(["reflect", "periodic"]))
def test_linf_for_any_depth(name: str, value: float, f: np.ndarray, depth: int,
                            boundary: str) -> None:
    act = make(name, value)
    block = DiffusionBlock(act, Operator.forward_difference(1, 1, 1.0, boundary)).double()
    lo, hi = f.min(), f.max()
    slack = 1e-12 * max(hi - lo, np.abs(f).max())
    u = torch.from_numpy(f).reshape(1, 1, -1)
    with torch.no_grad():
        for _ in range(depth):
            u = block(u)
            assert float(u.min()) >= lo - slack and float(u.max()) <= hi + slack


@pytest.mark.slow
@given(name=names, value=values, f=signals(), depth=depths)
def test_sign_changes_never_grow(name: str, value: float, f: np.ndarray, depth: int) -> None:
    act = make(name, value)
    block = DiffusionBlock(act, stability="sign").double()
    eps = 1e-9 * np.abs(f).max()
    u = torch.from_numpy(f).reshape(1, 1, -1)
    count = sign_changes(f, eps)
    with torch.no_grad():
        for _ in range(depth):
            u = block(u)
            now = sign_changes(u.reshape(-1).numpy(), eps)
            assert now <= count
            count = now


@pytest.mark.slow
@given(name=names, value=values, seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 200),
       channels=st.integers(1, 3), dims=st.sampled_from([1, 2]),
       boundary=st.sampled_from(["reflect", "periodic"]))
def test_euclidean_with_random_kernels(name: str, value: float, seed: int, depth: int,
                                       channels: int, dims: int, boundary: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    act = make(name, value)
    block = DiffusionBlock(act, Operator.learned(dims, channels, 3, init="random",
                                                 boundary=boundary, generator=gen),
                           stability="euclidean").double()
    weight = block.K.weights[0]
    shape = (1, channels, 24) if dims == 1 else (1, channels, 9, 8)
    u = torch.randn(shape, generator=gen, dtype=torch.float64) * value * 10
    norm = float(u.norm())
    with torch.no_grad():
        for _ in range(depth):
            # a new random kernel for every block, as training would move it: the bound is
            # recomputed from the weights at each call
            weight.copy_(torch.randn(weight.shape, generator=gen, dtype=torch.float64) * 2)
            u = block(u)
            now = float(u.norm())
            assert now <= norm * (1 + 1e-12) + 1e-300
            norm = now


@pytest.mark.slow
@given(f=signals(), cycles=st.integers(1, 30), cycle=st.integers(1, 20))
def test_fsi_linear_super_steps_stay_bounded(f: np.ndarray, cycles: int, cycle: int) -> None:
    block = FSIBlock(activation("linear").double(), cycle=cycle,
                     stability="euclidean").double()
    u = torch.from_numpy(f).reshape(1, 1, -1)
    norm = float(u.norm())
    with torch.no_grad():
        for _ in range(cycles):  # each cycle is a polynomial in K^T K bounded by 1
            u = block(u)
            now = float(u.norm())
            assert now <= norm * (1 + 1e-9)
            norm = now
