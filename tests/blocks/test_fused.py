"""The fused explicit steps (one generated Triton kernel per step, forward and backward: 1D
and 2D forward differences, learned 1D kernels per channel, learned C x C kernels in 1D and
2D; the temporally blocked 1D run)
against the unfused torch block: under
TRITON_INTERPRET=1 on the CPU (tests/conftest.py), compiled on a GPU."""

from __future__ import annotations

import os

import pytest

import fluxact
from fluxact import blocks as blocks_module
from fluxact import runtime
from fluxact.activation import diffusivity_to_torch
from fluxact.blocks import DiffusionBlock, SymmetricResNet
from fluxact.operators import Operator
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def triton_activation(name: str, value: float, trainable: tuple[str, ...] = ()):
    entry = fluxact.lookup(name)
    params = {p: value for p in fluxact.translate(entry).free_parameters}
    return fluxact.to_torch(entry, params=params, trainable=trainable, backend="triton")


def assert_fused_matches(act, op, shapes, trainable: tuple[str, ...], tol: float) -> None:
    """The fused float64 block equals the unfused one in values (tol) and in the gradients of
    u, tau and the trainable parameters (10 tol), for inputs of each shape."""
    dt = torch.float64
    fused = DiffusionBlock(act, op, fused=True, train_tau=True).to(DEVICE, dt)
    plain = DiffusionBlock(act, op, fused=False, train_tau=True).to(DEVICE, dt)
    plain.tau_logit = fused.tau_logit
    for shape in shapes:
        u = (torch.randn(shape, dtype=dt, device=DEVICE) * 3).requires_grad_()
        a, b = fused(u), plain(u)
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        g = torch.randn_like(a)
        wrt = (u, fused.tau_logit, *(getattr(act, p) for p in trainable))
        for x, y in zip(torch.autograd.grad(a, wrt, g), torch.autograd.grad(b, wrt, g)):
            torch.testing.assert_close(x, y, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("name, trainable", [
    ("perona-malik", ("lam",)), ("charbonnier", ("lam",)), ("hard", ()), ("relu", ()),
    ("tukey", ("lam",)),
])
@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_step_matches_the_block(name: str, trainable: tuple[str, ...], boundary: str,
                                      dtype: str) -> None:
    dt = getattr(torch, dtype)
    torch.manual_seed(1)
    act = triton_activation(name, 1.7, trainable).to(DEVICE, dt)
    op = Operator.forward_difference(1, 2, 0.8, boundary).to(DEVICE, dt)
    fused = DiffusionBlock(act, op, fused=True, train_tau=True).to(DEVICE, dt)
    plain = DiffusionBlock(act, op, fused=False, train_tau=True).to(DEVICE, dt)
    plain.tau_logit = fused.tau_logit
    tol = {"float64": 1e-12, "float32": 2e-5}[dtype]
    for length in (2, 5, 1500):  # 1500 spans two programs of 1024
        u = (torch.randn(3, 2, length, dtype=dt, device=DEVICE) * 4).requires_grad_()
        a, b = fused(u), plain(u)
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        g = torch.randn_like(a)
        wrt = (u, fused.tau_logit, *(getattr(act, p) for p in trainable))
        for x, y in zip(torch.autograd.grad(a, wrt, g), torch.autograd.grad(b, wrt, g)):
            torch.testing.assert_close(x, y, rtol=tol * 10, atol=tol * 10)


def test_fused_gradcheck_and_deep_network() -> None:
    act = triton_activation("perona-malik", 1.3, ("lam",)).to(DEVICE, torch.float64)
    block = DiffusionBlock(act, fused=True).to(DEVICE, torch.float64)
    u = torch.randn(2, 1, 11, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(block, (u,))
    p = act.parameter_vector().detach().clone().requires_grad_()
    tau = torch.tensor(0.37, dtype=torch.float64, device=DEVICE, requires_grad=True)
    for dims, shape in ((1, (2, 1, 11)), (2, (1, 1, 4, 5))):
        v = torch.randn(shape, dtype=torch.float64, device=DEVICE, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda v, p, tau: runtime.step(act.ops, v, p, tau, 1.25, False, dims), (v, p, tau))
    net = SymmetricResNet(act, 50, K="forward", shared=True, fused=True).to(DEVICE,
                                                                          torch.float64)
    f = torch.randn(4, 1, 64, dtype=torch.float64, device=DEVICE) * 10
    with torch.no_grad():
        out = net(f)  # 50 fused linf-stable steps
    assert float(out.min()) >= float(f.min()) - 1e-9
    assert float(out.max()) <= float(f.max()) + 1e-9


@pytest.mark.parametrize("name, trainable", [("perona-malik", ("lam",)), ("garrote", ("th",)),
                                             ("relu", ())])
@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_fused_2d_step_matches_the_block(name: str, trainable: tuple[str, ...],
                                         boundary: str) -> None:
    torch.manual_seed(2)
    dt = torch.float64
    act = triton_activation(name, 0.9, trainable).to(DEVICE, dt)
    op = Operator.forward_difference(2, 2, 0.6, boundary).to(DEVICE, dt)
    # 300 columns: two programs of 256
    assert_fused_matches(act, op, [(1, 2, 2, 3), (2, 2, 7, 300)], trainable, 1e-12)


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_temporally_blocked_run(boundary: str) -> None:
    act = triton_activation("charbonnier", 2.0).to(DEVICE, torch.float64)
    op = Operator.forward_difference(1, 1, 1.0, boundary).to(DEVICE, torch.float64)
    fused = DiffusionBlock(act, op, fused=True).to(DEVICE, torch.float64)
    plain = DiffusionBlock(act, op, fused=False).to(DEVICE, torch.float64)
    calls = []
    real = blocks_module.steps1d

    def counting(*args, **kwargs):
        calls.append(args[6])  # steps
        return real(*args, **kwargs)

    blocks_module.steps1d = counting  # the temporally blocked kernel must really run
    try:
        for length in (3, 256, 1000):
            u = torch.randn(5, 1, length, dtype=torch.float64, device=DEVICE) * 10
            with torch.no_grad():
                torch.testing.assert_close(fused.run(u, 40), plain.run(u, 40), rtol=0,
                                           atol=1e-10)
        assert calls == [40, 40, 40]
        # with gradients the fused run goes step by step (autograd through each fused step)
        u = torch.randn(2, 1, 30, dtype=torch.float64, device=DEVICE, requires_grad=True)
        w = torch.randn(2, 1, 30, dtype=torch.float64, device=DEVICE)
        (grad,) = torch.autograd.grad((fused.run(u, 3) * w).sum(), u)
        (expected,) = torch.autograd.grad((plain.run(u, 3) * w).sum(), u)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
        assert calls == [40, 40, 40]
    finally:
        blocks_module.steps1d = real
    with pytest.raises(StabilityError, match="steps"):
        fused.run(u, -1)


def test_kernels_use_one_grid_axis() -> None:
    # CUDA limits grid axes 1 and 2 to 65535: batch x channels can exceed that
    import inspect

    from fluxact import kernels
    from fluxact.kernels import convolution, coupled, elementwise, step1d, step2d

    # the kernel bodies (generated modules call them) and the generated part
    source = "".join(inspect.getsource(m) for m in (kernels, convolution, coupled, elementwise,
                                                      step1d, step2d))
    source += fluxact.emit(fluxact.lookup("perona-malik"), target="triton",
                           params={"lam": 1.0}, trainable=("lam",))
    assert "program_id(0)" in source
    assert "program_id(1)" not in source and "program_id(2)" not in source


def test_fused_step_follows_a_loaded_grid_size() -> None:
    act = triton_activation("charbonnier", 1.0).to(DEVICE, torch.float64)
    fused = DiffusionBlock(act, h=1.0, fused=True).to(DEVICE, torch.float64)
    other = DiffusionBlock(act, h=0.5).to(DEVICE, torch.float64)
    fused.load_state_dict(other.state_dict())  # the stencil now says h = 0.5
    plain = DiffusionBlock(act, h=0.5, fused=False).to(DEVICE, torch.float64)
    u = torch.randn(2, 1, 40, dtype=torch.float64, device=DEVICE) * 5
    torch.testing.assert_close(fused(u), plain(u), rtol=1e-12, atol=1e-12)
    assert float(fused.time_step()) == pytest.approx(0.125)  # h^2 / (2 g_max)
    with pytest.raises(StabilityError, match="difference=True needs"):
        Operator([torch.tensor([-1.0, 3.0])], difference=True)


@pytest.mark.parametrize("channels, width", [(1, 3), (3, 4), (2, 2)])
@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_fused_learned_kernel_step(channels: int, width: int, boundary: str) -> None:
    torch.manual_seed(3)
    dt = torch.float64
    act = triton_activation("perona-malik", 2.0, ("lam",)).to(DEVICE, dt)
    op = Operator.learned(1, channels, width, init="random", boundary=boundary,
                          depthwise=True).to(DEVICE, dt)
    fused = DiffusionBlock(act, op, fused=True, train_tau=True).to(DEVICE, dt)
    plain = DiffusionBlock(act, op, fused=False, train_tau=True).to(DEVICE, dt)
    plain.tau_logit = fused.tau_logit
    for length in (width, 1100):  # 1100 spans two programs
        u = (torch.randn(2, channels, length, dtype=dt, device=DEVICE) * 3).requires_grad_()
        a, b = fused(u), plain(u)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(a)
        wrt = (u, act.lam, fused.tau_logit, op.weights[0])  # kernel weights too
        for x, y in zip(torch.autograd.grad(a, wrt, g), torch.autograd.grad(b, wrt, g)):
            torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dims, channels, width, depthwise, boundary", [
    (1, 3, 3, False, "reflect"), (1, 2, 2, False, "periodic"), (2, 2, 3, False, "reflect"),
    (2, 1, 2, False, "periodic"), (2, 3, 2, True, "reflect"),
])
def test_fused_channel_mixing_step(dims: int, channels: int, width: int, depthwise: bool,
                                   boundary: str) -> None:
    """Learned C x C kernels (and per-channel 2D ones) that the fused step computes, against
    the unfused block: values, and gradients of u, lam, tau and the kernel weights."""
    torch.manual_seed(4)
    dt = torch.float64
    act = triton_activation("charbonnier", 1.5, ("lam",)).to(DEVICE, dt)
    op = Operator.learned(dims, channels, width, init="random", boundary=boundary,
                          depthwise=depthwise).to(DEVICE, dt)
    fused = DiffusionBlock(act, op, fused=True, train_tau=True).to(DEVICE, dt)
    plain = DiffusionBlock(act, op, fused=False, train_tau=True).to(DEVICE, dt)
    plain.tau_logit = fused.tau_logit
    # on request only: fused=None keeps the torch convolutions (the kernel spills on sm_90),
    # while forward differences are fused on CUDA by default
    assert not DiffusionBlock(act, op)._auto_fuse and DiffusionBlock(act, dims=dims)._auto_fuse
    # 300 and 260 columns span two programs of 256 (the 3 x 3 kernel on a small image only:
    # the interpreter runs its 81 unrolled taps slowly)
    wide = width < 3
    shapes = ([(2, channels, 300)] if dims == 1 else
              [(1, channels, 3, 260 if wide else 9), (1, channels, 4, 3)])
    for shape in shapes:
        u = (torch.randn(*shape, dtype=dt, device=DEVICE) * 3).requires_grad_()
        a, b = fused(u), plain(u)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(a)
        wrt = (u, act.lam, fused.tau_logit, op.weights[0])
        for x, y in zip(torch.autograd.grad(a, wrt, g), torch.autograd.grad(b, wrt, g)):
            torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-11)


def test_fused_channel_mixing_gradcheck() -> None:
    act = triton_activation("perona-malik", 1.2, ("lam",)).to(DEVICE, torch.float64)
    op = Operator.learned(1, 2, 2, init="random").to(DEVICE, torch.float64)
    u = torch.randn(1, 2, 4, dtype=torch.float64, device=DEVICE)
    k = op.full_kernel().detach().clone().requires_grad_()
    p = act.parameter_vector().detach().clone().requires_grad_()
    tau = torch.tensor(0.3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, kk, pp, t: runtime.step_mixing(act.ops, x, kk, pp, t, False),
        (u.requires_grad_(), k, p, tau))


def test_fused_refusals() -> None:
    act = triton_activation("perona-malik", 1.0)
    with pytest.raises(StabilityError, match="fused=True needs"):  # two parts, not a gradient
        DiffusionBlock(act, Operator([torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 0.5]])],
                                     dims=2), fused=True)
    # a fixed 1D kernel per channel (the second difference) runs on the learned-kernel step
    second = DiffusionBlock(act.double(), "second", fused=True)
    u = torch.randn(2, 1, 20, dtype=torch.float64, device=DEVICE)
    expected = DiffusionBlock(act, "second", fused=False)(u)
    torch.testing.assert_close(second(u), expected, rtol=1e-12, atol=1e-12)
    torch_act = fluxact.to_torch(fluxact.lookup("perona-malik"), params={"lam": 1.0},
                                 backend="torch")
    with pytest.raises(StabilityError, match="backend"):
        DiffusionBlock(torch_act, fused=True)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_steps_keep_the_max_min_principle_exactly(dtype: str) -> None:
    """The fused 1D and 2D steps, the temporally blocked run and the fused coupled step clamp
    to the stencil's range as the torch path does (g = 1 at the linf bound rounds below min f
    for many positive signals with values from 1e-6 to 1e6; the fused kernels compute in
    float32 for bfloat16 and round differently from the convolutions, so the two paths agree
    to rounding, not bitwise)."""
    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(14)
    # about 13% of these signals round below min f without the clamp (issue 14: 270 of
    # 2,000), so CI's 60 per case miss them all with probability 0.87^60 < 1e-3; the
    # interpreter's time grows with the count
    count = 60 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 200

    def signals(shape):
        return (10.0 ** (12 * torch.rand((count, 1, *shape), generator=gen,
                                         dtype=torch.float64) - 6)).to(DEVICE, dt)

    def inside(out, f):
        lo = f.flatten(1).amin(1).reshape(-1, *[1] * (f.dim() - 1))
        hi = f.flatten(1).amax(1).reshape(-1, *[1] * (f.dim() - 1))
        return bool(((out >= lo) & (out <= hi)).all())

    linear = fluxact.to_torch("r", "activation", backend="triton")
    for dims, shape in ((1, (9,)), (2, (5, 5))):
        for boundary in ("reflect", "periodic"):
            f = signals(shape)
            fused = DiffusionBlock(linear, dims=dims, boundary=boundary, fused=True).to(DEVICE)
            assert inside(fused(f), f), (dims, boundary)
            if dims == 1:
                assert inside(fused.run(f, 3), f)
    g = fluxact.activation.diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 1.0},
                                                backend="triton")
    from fluxact.coupling import CoupledDiffusionBlock2D

    f = signals((5, 5))
    fused = CoupledDiffusionBlock2D(g, stability="linf", couple_images=False, fused=True)
    assert inside(fused(f), f)


def test_fused_kernels_keep_bf16_subnormals() -> None:
    """A constant signal is a fixed point of every explicit step (K u = 0, Phi(0) = 0): in
    bf16 a subnormal constant (9e-41) must come back unchanged from the fused 1D, 2D,
    temporally blocked, learned-kernel, channel-mixing and coupled kernels, and the coupled
    activation g(s^2) s with g(0) = 1 returns a subnormal s itself (converting bf16 with
    .to flushes subnormals to 0 under the interpreter)."""
    act = triton_activation("perona-malik", 1.0)
    ops, p = act.ops, act.parameter_vector().to(DEVICE)
    g = diffusivity_to_torch(fluxact.lookup("perona-malik"), params={"lam": 1.0},
                             backend="triton")
    pg = g.parameter_vector().to(DEVICE)
    tau = torch.tensor(0.2, dtype=torch.float64, device=DEVICE)
    tiny = 9e-41
    u1 = torch.full((2, 3, 17), tiny, dtype=torch.bfloat16, device=DEVICE)
    u2 = torch.full((2, 3, 5, 7), tiny, dtype=torch.bfloat16, device=DEVICE)
    assert float(u1[0, 0, 0]) != 0.0
    outs = [
        runtime.step(ops, u1, p, tau, 1.0, False, 1),
        runtime.step(ops, u2, p, tau, 1.0, True, 2),
        runtime.steps1d(ops, u1, p, tau, 1.0, False, 3),
        runtime.step_kernel(ops, u1, torch.tensor([[-1.0, 1.0]] * 3, device=DEVICE), p, tau,
                            False),
        runtime.step_mixing(ops, u2, torch.randn(3, 3, 2, 2, device=DEVICE) * 0.1, p, tau,
                            False),
        runtime.coupled_step2d(g.ops, u2, pg, tau, 1.0, True),
        runtime.coupled_activation(g.ops, u1, pg, "iso"),
    ]
    for k, out in enumerate(outs):
        assert torch.equal(out.cpu(), u1.cpu() if out.dim() == 3 else u2.cpu()), k


@pytest.mark.parametrize("trainable", [("c", "lam"), ("lam",), ()])
@pytest.mark.parametrize("dims", [1, 2])
def test_fused_steps_with_several_parameters(trainable: tuple[str, ...], dims: int) -> None:
    """DPHI returns (Phi', (dPhi/dp for each trainable p)): with two parameters, both, one or
    none trainable, the fused steps equal the unfused block in values and every gradient."""
    torch.manual_seed(3)
    dt = torch.float64
    act = fluxact.to_torch("c*r/(1 + r**2/lam**2)", "activation", params={"c": 0.8, "lam": 1.3},
                           trainable=trainable, backend="triton").to(DEVICE, dt)
    op = Operator.forward_difference(dims, 2, 0.7, "reflect").to(DEVICE, dt)
    assert_fused_matches(act, op, [(2, 2, 9) if dims == 1 else (2, 2, 5, 9)], trainable, 1e-12)
