"""Every catalogue entry: generated Triton kernels (interpreter on CPU, compiled on a GPU) and
the generated torch code agree with a float64 reference of the translated formula, forward and
backward (input and parameter gradients), at special points and hypothesis-drawn inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fluxact
from fluxact import runtime

from .reference import PARAMS, Reference

#: one tolerance table per dtype: |got - want| <= rtol |want| + atol (1 + max |want|)
TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-9, 1e-12), torch.bfloat16: (5e-2, 1e-2)}
SPECIAL = [0.0, 1e-30, -1e-30, 1e-5, -1e-5, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e4, -1e4]
NAMES = list(fluxact.catalogue)
BACKENDS = ["torch", "triton"]


def _activation(name: str) -> tuple[torch.nn.Module, Reference]:
    entry = fluxact.catalogue[name]
    free = fluxact.translate(entry).free_parameters
    act = fluxact.to_torch(entry, params={p: PARAMS[p] for p in free}, trainable=free)
    return act, Reference(entry, PARAMS)


def explain(got: list[float], want: list[float], xs: list[float], rtol: float, atol: float,
            what: str) -> str | None:
    """None when they agree; else how many differ, where, NaN/inf disagreements."""
    scale = 1 + max((abs(w) for w in want if math.isfinite(w)), default=0.0)
    bad = []
    for x, g, w in zip(xs, got, want):
        if math.isnan(g) or math.isnan(w) or math.isinf(g) or math.isinf(w):
            if not (g == w or (math.isnan(g) and math.isnan(w))):
                bad.append(f"x = {x!r}: got {g!r}, want {w!r} (NaN/inf disagreement)")
        elif abs(g - w) > rtol * abs(w) + atol * scale:
            bad.append(f"x = {x!r}: got {g!r}, want {w!r}")
    if not bad:
        return None
    return f"{what}: {len(bad)} of {len(xs)} differ; first: " + "; ".join(bad[:4])


def check(name: str, backend: str, xs: list[float], dtype: torch.dtype, device: str,
          derivatives: bool = True) -> None:
    act, ref = _activation(name)
    act = act.to(device=device, dtype=torch.float64 if dtype == torch.float64 else None)
    with torch.no_grad():  # exactly the reference's values (not their fp32 rounding)
        for p in ref.names:
            getattr(act, p).fill_(PARAMS[p])
    act.backend = backend
    x = torch.tensor(xs, dtype=dtype, device=device, requires_grad=True)
    exact = [float(v) for v in x.detach().double().cpu()]  # the inputs as the dtype rounds them
    y = act(x)
    rtol, atol = TOL[dtype]
    problem = explain(y.detach().double().cpu().tolist(), [ref.value(v) for v in exact], exact,
                      rtol, atol, f"{name} Phi ({backend}, {dtype})")
    assert problem is None, problem
    if not derivatives:
        return
    gy = torch.linspace(0.5, 1.5, len(xs), dtype=dtype, device=device)
    params = [getattr(act, p) for p in ref.names]
    grads = torch.autograd.grad(y, [x, *params], gy)
    smooth = [i for i, v in enumerate(exact) if ref.smooth_at(v)]
    got = grads[0].double().cpu().tolist()
    problem = explain([got[i] for i in smooth],
                      [float(gy[i]) * ref.derivative(exact[i]) for i in smooth],
                      [exact[i] for i in smooth], rtol, atol, f"{name} Phi' ({backend}, {dtype})")
    assert problem is None, problem
    for k, pname in enumerate(ref.names):
        want = sum(float(gy[i]) * ref.parameter_derivative(exact[i], k) for i in smooth)
        if len(smooth) < len(exact):  # a kink in the batch: compare on the smooth points only
            x_s = x.detach()[smooth].clone().requires_grad_()
            y_s = act(x_s)
            got_p = torch.autograd.grad(y_s, params[k], gy[smooth])[0]
        else:
            got_p = grads[1 + k]
        tol = 1e-4 if dtype != torch.float64 else 1e-9
        assert float(got_p) == pytest.approx(want, rel=tol, abs=tol), (name, pname, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_special_points(name: str, backend: str, device: str) -> None:
    _, ref = _activation(name)
    xs = SPECIAL + [b * s for b in ref.breakpoints for s in (1.0, 1 - 1e-3, 1 + 1e-3)]
    check(name, backend, xs, torch.float32, device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
@given(xs=st.lists(st.one_of(st.floats(-10, 10, width=32), st.floats(-1e4, 1e4, width=32),
                             st.sampled_from(SPECIAL)), min_size=1, max_size=12))
def test_drawn_inputs(name: str, backend: str, xs: list[float]) -> None:
    from .conftest import DEVICE

    check(name, backend, xs, torch.float32, DEVICE)


@pytest.mark.parametrize("name", NAMES)
def test_float64(name: str, device: str) -> None:
    xs = [-7.5, -2.0, -0.3, 0.0, 0.2, 1.1, 4.0, 60.0]
    check(name, "torch", xs, torch.float64, device)
    check(name, "triton", xs, torch.float64, device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["perona-malik", "charbonnier", "tanh", "weickert"])
def test_bfloat16_loosely(name: str, backend: str, device: str) -> None:
    xs = [-5.0, -1.5, -0.25, 0.0, 0.125, 0.75, 2.0, 8.0]
    check(name, backend, xs, torch.bfloat16, device, derivatives=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_no_nan_from_finite_input(name: str, backend: str, device: str) -> None:
    act, ref = _activation(name)
    act.backend = backend
    xs = [s * 10.0**e for e in range(-38, 39, 4) for s in (1, -1)] + [0.0]
    x = torch.tensor(xs, dtype=torch.float32, device=device, requires_grad=True)
    y = act(x)
    (g,) = torch.autograd.grad(y.sum(), [x])
    for v, a, b in zip(xs, y.tolist(), g.tolist()):
        assert not math.isnan(a), f"{name}: Phi({v}) is NaN ({backend})"
        if ref.smooth_at(v) and math.isfinite(ref.derivative(v)):
            assert not math.isnan(b), f"{name}: Phi'({v}) is NaN ({backend})"


def test_gradcheck_with_parameters() -> None:
    for name in ["perona-malik", "charbonnier", "geman-mcclure", "huber"]:
        act, ref = _activation(name)
        act = act.double()
        x = torch.tensor([-2.3, -0.4, 0.1, 0.6, 2.9], dtype=torch.float64, requires_grad=True)
        p = act.parameter_vector().detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda x, p: runtime.apply(act.ops, x, p, "torch"),
                                        (x, p)), name
