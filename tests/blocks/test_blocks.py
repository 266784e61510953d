"""Diffusion blocks: the residual-block identity, operators and their norm bounds, the
automatic time step and its refusals, the other schemes (Du Fort-Frankel, FSI, implicit), the
plain ResNet block and the symmetric ResNet."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fluxact
from fluxact.blocks import (
    DiffusionBlock,
    DuFortFrankelBlock,
    FSIBlock,
    ImplicitBlock,
    ResNetBlock,
    SymmetricResNet,
    fsi_weights,
)
from fluxact.operators import Operator
from fluxact.runtime import StabilityError

from .conftest import activation

torch = pytest.importorskip("torch")
F = torch.nn.functional


def val(t: torch.Tensor) -> float:
    return float(t.detach())


def dense(op: Operator, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of K (all parts stacked) on inputs of ``shape`` (channels, *size)."""
    n = int(np.prod(shape))
    cols = []
    with torch.no_grad():
        for k in range(n):
            e = torch.zeros(n, dtype=torch.float64)
            e[k] = 1
            cols.append(torch.cat([p.reshape(-1) for p in op(e.reshape(1, *shape))]))
    return torch.stack(cols, dim=1)


# -- the block is a residual block (P2 Theorem 1) ---------------------------------------------


def test_explicit_step_is_a_residual_block_1d() -> None:
    act = activation("perona-malik", 2.0).double()
    block = DiffusionBlock(act).double()
    u = torch.randn(4, 1, 37, dtype=torch.float64) * 5
    k = torch.tensor([[[-1.0, 1.0]]], dtype=torch.float64)  # W1 = K = D+
    tau = block.time_step()
    residual = u + F.conv_transpose1d(-tau * act(F.conv1d(u, k)), k)  # W2 = -K^T, s1 = tau Phi
    torch.testing.assert_close(block(u), residual, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dims, name, lam, shape", [
    (1, "charbonnier", 0.7, (2, 3, 20)), (2, "perona-malik", 1.0, (2, 2, 9, 11)),
])
def test_explicit_step_is_a_residual_block_learned(dims: int, name: str, lam: float,
                                                   shape: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    act = activation(name, lam).double()
    op = Operator.learned(dims, channels=shape[1], width=3, init="random").double()
    block = DiffusionBlock(act, op).double()
    u = torch.randn(shape, dtype=torch.float64)
    w = op.weights[0]
    conv, transpose = ((F.conv1d, F.conv_transpose1d) if dims == 1
                       else (F.conv2d, F.conv_transpose2d))
    expected = u - block.time_step() * transpose(act(conv(u, w)), w)
    torch.testing.assert_close(block(u), expected, rtol=0, atol=1e-13)


# -- operators -----------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
@pytest.mark.parametrize("dims", [1, 2])
def test_adjoint_is_the_transpose(boundary: str, dims: int) -> None:
    torch.manual_seed(5)
    shape = (2, 7) if dims == 1 else (2, 5, 6)
    for op in (Operator.forward_difference(dims, 2, 0.5, boundary),
               Operator.learned(dims, 2, 3, init="random", boundary=boundary)):
        op = op.double()
        u = torch.randn(1, *shape, dtype=torch.float64)
        v = [torch.randn_like(p) for p in op(u)]
        lhs = sum((p * q).sum() for p, q in zip(op(u), v))
        rhs = (u * op.adjoint(v, u)).sum()
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_norm_bounds(boundary: str) -> None:
    torch.manual_seed(6)
    h = 0.5
    cases = [
        (Operator.forward_difference(1, 1, h, boundary), (1, 16), 4 / h**2),
        (Operator.forward_difference(2, 1, h, boundary), (1, 6, 7), 8 / h**2),
        (Operator.second_difference(1, h, boundary), (1, 16), 16 / h**4),
    ]
    for op, shape, exact in cases:
        op = op.double()
        bound = float(op.norm2_bound())
        assert bound == pytest.approx(exact, rel=1e-12)  # the known constants (MATH.md 2)
        true = float(torch.linalg.matrix_norm(dense(op, shape), ord=2)) ** 2
        assert true <= bound * (1 + 1e-12)
    for dims, shape in ((1, (3, 12)), (2, (2, 6, 5))):
        for _ in range(5):
            op = Operator.learned(dims, shape[0], 3, init="random", boundary=boundary).double()
            true = float(torch.linalg.matrix_norm(dense(op, shape), ord=2)) ** 2
            assert true <= float(op.norm2_bound().detach()) * (1 + 1e-12)  # Schur / Young


def test_operator_errors() -> None:
    with pytest.raises(StabilityError, match="boundary"):
        Operator.forward_difference(1, 1, 1.0, "mirror")
    with pytest.raises(StabilityError, match="grid size"):
        Operator.forward_difference(1, 1, -1.0)
    op = Operator.forward_difference(1, 2)
    with pytest.raises(StabilityError, match="input channel"):
        op(torch.zeros(1, 3, 10))
    with pytest.raises(StabilityError, match="shape"):
        op(torch.zeros(10))


# -- the time step -----------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.3, 1.0, 40.0])
def test_time_steps_of_perona_malik(lam: float) -> None:
    act = activation("perona-malik", lam)  # g_max = 1 for every lam (verifier, closed form)
    for h in (1.0, 0.5):
        assert val(DiffusionBlock(act, h=h).time_step()) == pytest.approx(h**2 / 2)
        assert val(DiffusionBlock(act, h=h, stability="sign").time_step()) == pytest.approx(
            h**2 / 4)
        assert val(DiffusionBlock(act, h=h, dims=2).time_step()) == pytest.approx(h**2 / 4)
    assert val(DiffusionBlock(act, safety=0.5).time_step()) == pytest.approx(0.25)
    assert DiffusionBlock(act).time_step() <= 0.5  # never rounded up


def test_time_step_follows_a_trainable_parameter() -> None:
    act = fluxact.to_torch("a*tanh(r/b)", "activation", params={"a": 2.0, "b": 3.0},
                           trainable=("a", "b"))
    block = DiffusionBlock(act)  # g_max = a/b: tau = b/(2a)
    assert val(block.time_step()) == pytest.approx(0.75, rel=1e-9)
    assert val(block.time_step()) <= 0.75
    block.time_step().backward()
    assert act.a.grad is not None and float(act.a.grad) == pytest.approx(-3 / 8, rel=1e-9)
    with torch.no_grad():
        act.a.fill_(6.0)
    assert val(block.time_step()) == pytest.approx(0.25, rel=1e-9)


def test_trained_tau_stays_below_the_bound() -> None:
    torch.manual_seed(7)
    act = activation("perona-malik", 1.0, ("lam",))
    block = DiffusionBlock(act, "learned", train_tau=True)
    opt = torch.optim.Adam(block.parameters(), lr=0.2)
    u = torch.randn(8, 1, 30)
    for _ in range(30):  # push tau up as hard as possible
        opt.zero_grad()
        loss = -block.time_step() + ((block(u) - u.mean()) ** 2).mean()
        loss.backward()
        opt.step()
        assert val(block.time_step()) <= val(block.tau_max())
    assert block.K.weights[0].grad is not None and act.lam.grad is not None


def test_gradcheck_block() -> None:
    act = activation("perona-malik", 1.3, ("lam",)).double()
    block = DiffusionBlock(act, "learned").double()
    u = torch.randn(2, 1, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (u,))
    lam = act.lam

    def of_lam(value: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            lam.copy_(value)
        return block(u.detach())

    (grad,) = torch.autograd.grad(block(u.detach()).sum(), lam)
    analytic = float(grad)
    eps = 1e-6
    start = float(lam.detach())
    numeric = (val(of_lam(torch.tensor(start + eps, dtype=torch.float64)).sum())
               - val(of_lam(torch.tensor(start - eps, dtype=torch.float64)).sum())) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_refusals() -> None:
    pm = activation("perona-malik")
    with pytest.raises(StabilityError, match=r"r Phi\(r\) < 0"):
        DiffusionBlock(fluxact.to_torch("sin(r)", "activation"))
    with pytest.raises(StabilityError, match="g_max is infinite"):
        DiffusionBlock(activation("total-variation"))
    with pytest.raises(StabilityError, match=r"tau = 0.6 breaks the linf bound tau <= 0.5"):
        DiffusionBlock(pm, tau=0.6)
    with pytest.raises(StabilityError, match="forward-difference operators only"):
        DiffusionBlock(pm, "learned", stability="linf")
    with pytest.raises(StabilityError, match="1D notion"):
        DiffusionBlock(pm, dims=2, stability="sign")
    with pytest.raises(StabilityError, match="needs an explicit tau"):
        DiffusionBlock(pm, unsafe=True)
    with pytest.raises(StabilityError, match="safety"):
        DiffusionBlock(pm, safety=1.5)
    unsafe = DiffusionBlock(fluxact.to_torch("sin(r)", "activation"), tau=0.9, unsafe=True)
    assert val(unsafe.time_step()) == 0.9
    assert DiffusionBlock(pm, tau=0.3).time_step() == pytest.approx(0.3)


def test_parameters_must_stay_positive() -> None:
    act = fluxact.to_torch("a*tanh(r/b)", "activation", params={"a": 2.0, "b": 3.0},
                           trainable=("a",))
    block = DiffusionBlock(act)
    with torch.no_grad():
        act.a.fill_(-0.137)  # as a trained parameter that crossed 0
    with pytest.raises(StabilityError, match="a = -0.137 is not positive"):
        block(torch.zeros(1, 1, 5))
    with torch.no_grad():
        act.a.fill_(float("nan"))
    with pytest.raises(StabilityError, match="not positive and finite"):
        block.time_step()


def test_input_errors_are_stability_errors() -> None:
    pm = activation("perona-malik")
    with pytest.raises(StabilityError, match="channels must be a positive integer"):
        DiffusionBlock(pm, channels=0)
    with pytest.raises(StabilityError, match="smaller than a kernel"):
        DiffusionBlock(pm, "learned", dims=2)(torch.zeros(1, 1, 2, 10))
    with pytest.raises(StabilityError, match="contraction"):
        ImplicitBlock(pm, contraction="0.5")
    with pytest.raises(StabilityError, match="1/h beyond"):
        Operator.forward_difference(1, 1, 1e-200)
    assert float(DiffusionBlock(pm, tau=np.float32(0.25)).time_step()) == 0.25
    zero = fluxact.to_torch("0*r", "activation")  # g_max = 0: alpha_min = 0
    assert val(DuFortFrankelBlock(zero).alpha()) > 0


def test_bounds_verified_only_at_given_values() -> None:
    # no closed form in lam and eps, nor in lam alone with eps fixed (tanh(r) does not scale
    # with lam): the verifier's bounds hold at these values only; g_max = 1 + eps at r = 0
    formula = "r/(1 + r**2/lam**2) + eps*tanh(r)"
    act = fluxact.to_torch(formula, "activation", params={"lam": 2.0, "eps": 0.1})
    assert act.stability.fixed == (("eps", 0.1), ("lam", 2.0))
    block = DiffusionBlock(act)
    assert val(block.time_step()) == pytest.approx(2 / (1.1 * 4))
    with torch.no_grad():
        act.lam.fill_(3.0)
    with pytest.raises(StabilityError, match="verified at eps = 0.1, lam = 2"):
        block(torch.zeros(1, 1, 5))
    trainable = fluxact.to_torch(formula, "activation", params={"lam": 2.0, "eps": 0.1},
                                 trainable=("lam",))
    with pytest.raises(StabilityError, match="cannot be trainable"):
        DiffusionBlock(trainable)


# -- other schemes -----------------------------------------------------------------------------


def test_du_fort_frankel_reduces_to_the_explicit_step() -> None:
    act = activation("perona-malik", 2.0).double()
    dff = DuFortFrankelBlock(act).double()
    a = val(dff.alpha())
    with torch.no_grad():  # tau a = 1/2: the explicit step of length 1/(2a) (P2 20)
        dff.log_tau.fill_(math.log(1 / (2 * a)))
    u, older = torch.randn(3, 1, 25, dtype=torch.float64), torch.randn(3, 1, 25,
                                                                       dtype=torch.float64)
    new, current = dff(u, older)
    explicit = DiffusionBlock(act, tau=1 / (2 * a), unsafe=True).double()
    torch.testing.assert_close(new, explicit(u), rtol=0, atol=1e-12)
    assert current is u


def test_du_fort_frankel_step_written_out() -> None:
    torch.manual_seed(10)
    act = activation("charbonnier", 1.5).double()
    dff = DuFortFrankelBlock(act, tau=0.9, alpha=3.0).double()  # tau a = 2.7, not 1/2
    assert val(dff.alpha()) == pytest.approx(3.0) and val(dff.tau()) == pytest.approx(0.9)
    u, older = (torch.randn(2, 1, 15, dtype=torch.float64) for _ in range(2))
    ta = 0.9 * 3.0
    flux = dff.K.adjoint([act(v) for v in dff.K(u)], u)
    expected = ((4 * ta / (1 + 2 * ta)) * (u - flux / 6.0)
                + ((1 - 2 * ta) / (1 + 2 * ta)) * older)
    new, current = dff(u, older)  # (P2 20)
    torch.testing.assert_close(new, expected, rtol=1e-12, atol=1e-12)
    first, _ = dff(u)  # u_prev defaults to u
    torch.testing.assert_close(first, dff(u, u)[0])


def test_du_fort_frankel_alpha_stays_above_the_bound() -> None:
    torch.manual_seed(8)
    act = activation("charbonnier", 1.0)
    with pytest.raises(StabilityError, match="not above"):
        DuFortFrankelBlock(act, alpha=0.5)  # g_max ||K||^2 / 4 = 1
    dff = DuFortFrankelBlock(act, "learned")
    opt = torch.optim.SGD(dff.parameters(), lr=0.5)
    u = torch.randn(4, 1, 20)
    for _ in range(20):
        opt.zero_grad()
        (dff.alpha() + dff(u)[0].pow(2).mean()).backward()  # push alpha down
        opt.step()
        assert val(dff.alpha()) > val(dff.alpha_min())


def test_du_fort_frankel_linear_spectral_radius() -> None:
    # P2 Appendix A: for a > rho(A)/4 the two-step map has spectral radius <= 1, any tau; the
    # map's matrix is read off the block itself (linear Phi) by applying it to basis vectors
    act = activation("linear").double()
    op = Operator.forward_difference(1, 1).double()
    n = 10

    def radius(block: DuFortFrankelBlock) -> float:
        cols = []
        with torch.no_grad():
            for k in range(2 * n):
                e = torch.zeros(2 * n, dtype=torch.float64)
                e[k] = 1
                new, cur = block(e[:n].reshape(1, 1, n), e[n:].reshape(1, 1, n))
                cols.append(torch.cat([new.reshape(-1), cur.reshape(-1)]))
        return float(torch.linalg.eigvals(torch.stack(cols, 1)).abs().max())

    for tau in (0.01, 0.5, 3.0, 100.0):
        block = DuFortFrankelBlock(act, op, tau=tau, alpha=1.001).double()  # a_min = 1
        assert val(block.alpha()) == pytest.approx(1.001)
        assert radius(block) <= 1 + 1e-9
        with torch.no_grad():  # below the bound (bypassing the block's constraint)
            block.alpha_theta.fill_(-50.0)
        block.alpha_min = lambda: torch.tensor(0.9 / (1 + 1e-6), dtype=torch.float64)
        if tau >= 3.0:
            assert radius(block) > 1.01  # the scheme blows up


def test_fsi_cycle() -> None:
    assert fsi_weights(3) == pytest.approx([2 / 3, 6 / 5, 10 / 7])
    act = activation("perona-malik", 3.0).double()
    fsi = FSIBlock(act, cycle=5).double()
    assert float(fsi.super_step()) == pytest.approx(5 * 6 / 3 * 0.5)
    u = torch.randn(2, 1, 30, dtype=torch.float64)
    step = DiffusionBlock(act).double()
    prev, cur = u, u
    for a in fsi_weights(5):  # P2 21 written out
        prev, cur = cur, a * step(cur) + (1 - a) * prev
    torch.testing.assert_close(fsi(u), cur, rtol=0, atol=1e-12)
    trained = FSIBlock(act, cycle=3, train_weights=True)
    assert isinstance(trained.weights, torch.nn.Parameter)
    assert fsi.step.stability == "euclidean"
    with pytest.raises(StabilityError, match="no linf guarantee"):
        FSIBlock(act, cycle=3, stability="linf")


def test_implicit_block_solves_the_implicit_step() -> None:
    act = activation("charbonnier", 2.0).double()
    block = ImplicitBlock(act, tau=0.2, tol=1e-14).double()
    u = torch.randn(2, 1, 40, dtype=torch.float64) * 3
    v = block(u)
    residual = v - u + 0.2 * block.K.adjoint([act(w) for w in block.K(v)], u)
    assert float(residual.abs().max()) < 1e-12
    assert 1 < block.last_iterations < block.iterations
    with pytest.raises(StabilityError, match="not a contraction"):
        ImplicitBlock(act, tau=0.3)  # 0.3 * L * ||K||^2 = 1.2
    with pytest.raises(StabilityError, match="Lipschitz"):
        ImplicitBlock(activation("hard"))
    assert val(ImplicitBlock(act).time_step()) == pytest.approx(0.5 / 4)


# -- networks ----------------------------------------------------------------------------------


def test_resnet_block() -> None:
    block = ResNetBlock(torch.nn.ReLU(), channels=2, width=3)
    u = torch.randn(3, 2, 17)
    expected = u + block.W2(torch.relu(block.W1(u)))
    torch.testing.assert_close(block(u), expected)
    assert sum(p.numel() for p in block.parameters()) == 2 * (2 * 2 * 3 + 2)


def test_symmetric_resnet() -> None:
    torch.manual_seed(9)
    act = activation("perona-malik", 1.0, ("lam",))
    shared = SymmetricResNet(act, 4, shared=True)
    assert len(shared.blocks) == 4
    assert shared.blocks[0].K is shared.blocks[3].K and shared.blocks[0].act is shared.blocks[3].act
    assert shared.blocks[0].tau_logit is shared.blocks[3].tau_logit  # one tau
    assert sum(p.numel() for p in shared.parameters()) == 3 + 1 + 1  # kernel, lam, tau
    for scheme in ("dufort_frankel", "fsi"):
        tied = SymmetricResNet(act, 3, shared=True, scheme=scheme)
        assert len(list(tied.parameters())) == len(list(tied.blocks[0].parameters()))
    assert val(shared.smoothness_penalty(10.0)) == 0.0
    dynamic = SymmetricResNet(act, 3)
    kernels = {id(b.K.weights[0]) for b in dynamic.blocks}
    assert len(kernels) == 3  # one kernel per block: time-dynamic weights
    # a symmetric block has half the kernel parameters of a ResNet block, and no biases
    sym = sum(p.numel() for p in dynamic.blocks[0].K.parameters())
    plain = sum(p.numel() for p in ResNetBlock(torch.nn.ReLU()).parameters())
    assert sym == 3 and plain == 8
    with torch.no_grad():
        dynamic.blocks[2].K.weights[0].add_(0.1)
    taus = [b.time_step() for b in dynamic.blocks]
    expected = 10.0 * (0.03 / taus[2])  # only block 2 differs: 3 entries of 0.1, squared
    assert val(dynamic.smoothness_penalty(10.0)) == pytest.approx(val(expected), rel=1e-5)
    with torch.no_grad():  # tau is a numerical parameter: not regularised (P2 7.1.4)
        dynamic.blocks[1].tau_logit.add_(1.0)
    taus = [b.time_step() for b in dynamic.blocks]
    penalty = dynamic.smoothness_penalty(10.0)
    assert val(penalty) == pytest.approx(val(10.0 * (0.03 / taus[2])), rel=1e-5)
    penalty.backward()
    assert all(b.tau_logit.grad is None for b in dynamic.blocks)
    u = torch.randn(2, 1, 32)
    out = dynamic(u)
    out.sum().backward()
    assert all(b.K.weights[0].grad is not None for b in dynamic.blocks)
    for scheme in ("dufort_frankel", "fsi"):
        net = SymmetricResNet(act, 3, scheme=scheme)
        assert net(u).shape == u.shape
    with pytest.raises(StabilityError, match="scheme"):
        SymmetricResNet(act, 3, scheme="rk4")


def test_block_compiles_without_graph_breaks() -> None:
    act = activation("perona-malik", 2.0, ("lam",))
    block = DiffusionBlock(act, "learned", train_tau=True)
    compiled = torch.compile(block, fullgraph=True)  # the bound and its checks are in-graph
    u = torch.randn(4, 1, 64)
    torch.testing.assert_close(compiled(u), block(u))
    with torch.no_grad():
        act.lam.fill_(-1.0)
    with pytest.raises(RuntimeError, match="not positive"):
        compiled(u)
