"""LearnedDiffusivity (issue 18): g(s2) = sum_k w_k b_k(s2/l_k^2) with positive trainable
weights and scales, and g_max = L = sum_k w_k for every parameter value."""

from __future__ import annotations

import math

import pytest

import fluxact
from fluxact.blocks import DiffusionBlock
from fluxact.coupling import CoupledDiffusionBlock2D
from fluxact.kernels.launch import interpreting
from fluxact.learned import BASES, LearnedDiffusivity
from fluxact.runtime import ActivationError

torch = pytest.importorskip("torch")
F64 = torch.float64


@pytest.fixture(scope="module")
def phi() -> LearnedDiffusivity:
    return LearnedDiffusivity().double()


@pytest.fixture(scope="module")
def g() -> LearnedDiffusivity:
    return LearnedDiffusivity(("rational", "exponential"), role="diffusivity").double()


@pytest.mark.parametrize("name", sorted(BASES))
def test_each_basis_is_what_the_proof_needs(name: str) -> None:
    """The verifier on b(s2) (l = 1): g >= 0, sup g = b(0) = 1 and L of x b(x^2) = 1, the
    facts the construction's g_max = L = sum_k w_k rests on (fluxact/learned.py)."""
    rep = fluxact.verify(BASES[name].format(t="s2"), "diffusivity", convention="s2")
    assert rep.nonnegative_diffusivity is True
    assert rep.g_max == pytest.approx(1.0, rel=1e-12)
    assert rep.lipschitz == pytest.approx(1.0, rel=1e-12)
    t = fluxact.translate(BASES[name].format(t="s2"), "diffusivity", convention="s2")
    assert float(t.diffusivity.subs(t.variable, 0)) == 1.0


def _random_values(seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.empty(k, dtype=F64).uniform_(-14, 14, generator=gen),
            torch.empty(k, dtype=F64).uniform_(-7, 7, generator=gen))


def test_the_bound_holds_and_is_attained_for_every_drawn_value(phi) -> None:
    """At 200 random parameter values (weights e^-14..e^14, scales e^-7..e^7), g on s2 from
    0 to 1e30 stays in [0, g_max] and g(0) = g_max = L (to rounding): the bound is exact,
    and it is what the blocks use; so does Phi(r)/r from the generated code. (Sampled: the
    proof is in fluxact/learned.py.)"""
    act = phi.clone()
    s2 = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-30, 30, 601, dtype=F64)])
    torch.set_grad_enabled(False)
    try:
        _check_drawn_values(act, s2)
    finally:
        torch.set_grad_enabled(True)


def _check_drawn_values(act: LearnedDiffusivity, s2: torch.Tensor) -> None:
    for seed in range(200):
        act.log_weights.copy_(_random_values(seed, 3)[0])
        act.log_scales.copy_(_random_values(seed, 3)[1])
        g_max = float(act.g_max())
        values = act.g(s2)
        assert float(values.min()) >= 0.0
        assert float(values.max()) <= g_max
        # g_max is rounded up: 2^-40 for each w_k^1 term and 2^-40 for their sum
        assert g_max >= float(values[0]) >= g_max * (1 - 2**-38)
        assert float(act.lipschitz()) == g_max
        assert g_max >= float(act.weights().sum()) >= g_max * (1 - 2**-38)
        # the generated code the blocks run: 0 <= Phi(r)/r <= g_max (where Phi is a normal
        # float64: a subnormal result has lost its relative precision)
        r = s2[1:].sqrt()
        flux = act(r)
        normal = flux.abs() >= 2.2250738585072014e-308
        assert bool((flux >= 0).all()) and bool((flux[normal] / r[normal] <= g_max).all())


def test_generated_code_equals_the_formula_with_gradients(phi, g) -> None:
    """Phi = r g(r^2) and g(s2) from the generated code (both roles) equal the torch formula,
    and so do the gradients with respect to the input and to every weight and scale."""
    r = torch.linspace(-5, 5, 41, dtype=F64)
    for act, x in ((phi, r), (g, r.abs() * 3)):
        act = act.clone()
        with torch.no_grad():
            act.log_weights.add_(0.1 * torch.arange(len(act.basis), dtype=F64))

        def truth(a: LearnedDiffusivity = act, x: torch.Tensor = x) -> torch.Tensor:
            return x * a.g(x**2) if a.role == "activation" else a.g(x)

        xin = x.clone().requires_grad_(True)
        got = act(xin)
        assert torch.allclose(got, truth(), rtol=1e-12, atol=1e-15)
        weights = torch.linspace(0.5, 1.5, len(x), dtype=F64)
        got_grads = torch.autograd.grad((got * weights).sum(),
                                        [xin, act.log_weights, act.log_scales])
        xref = x.clone().requires_grad_(True)
        want_grads = torch.autograd.grad((truth(act, xref) * weights).sum(),
                                         [xref, act.log_weights, act.log_scales])
        for a, b in zip(got_grads, want_grads):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-14), (a, b)


def test_a_block_stays_certified_while_training_pushes_g_max_up(phi) -> None:
    """Plain gradient ascent on the flux with a huge learning rate: whatever values the
    weights take, the block's time step is 2/(g_max ||K||^2) of the current weights and every
    output stays in its input's range (the max-min principle, linf bound)."""
    act = phi.clone()
    block = DiffusionBlock(act, stability="linf")
    optimiser = torch.optim.SGD(act.parameters(), lr=50.0)
    u = torch.rand(4, 1, 32, dtype=F64, generator=torch.Generator().manual_seed(0))
    for _ in range(6):
        optimiser.zero_grad()
        out = block(u)
        (-(out - u).abs().sum()).backward()  # make the step as large as possible
        optimiser.step()
        g_max = float(act.weights().detach().sum())
        assert float(block.time_step().detach()) == pytest.approx(2 / (4 * g_max), rel=1e-9)
        with torch.no_grad():
            out = block(u)
        assert float(out.min()) >= float(u.min()) and float(out.max()) <= float(u.max())
    assert float(act.weights().detach().sum()) > 1.5  # training did move g_max


def test_coupled_block_with_a_learned_diffusivity(g) -> None:
    """The coupled 2D block's time step 2/(g_max ||K||^2) (||K||^2 <= 8) follows the
    learned weights, and lam-like scales train through the generated backward."""
    act = g.clone()
    block = CoupledDiffusionBlock2D(act)
    with torch.no_grad():
        act.log_weights.copy_(torch.tensor([math.log(0.7), math.log(2.0)], dtype=F64))
    assert float(block.time_step().detach()) == pytest.approx(2 / (2.7 * 8), rel=1e-9)
    u = torch.rand(2, 1, 10, 10, dtype=F64)
    block(u).pow(2).sum().backward()
    assert act.log_scales.grad is not None and torch.isfinite(act.log_scales.grad).all()
    assert float(act.log_scales.grad.abs().max()) > 0


def test_translation_and_report_at_the_current_values(g) -> None:
    """translation() gives g, Psi, S and Phi at the current values; the verifier's report on
    it agrees with the construction (g >= 0, g_max = sum w)."""
    t = g.translation()
    values = g._current()
    r = 0.7
    phi = float(t.activation.subs(t.variable, r))
    want = r * float(g.g(torch.tensor(r * r, dtype=F64)).detach())
    assert phi == pytest.approx(want, rel=1e-12)
    rep = g.report()
    assert rep.nonnegative_diffusivity is True
    assert rep.g_max == pytest.approx(values["w1"] + values["w2"], rel=1e-9)


def test_state_dict_round_trip(phi) -> None:
    act = phi.clone()
    with torch.no_grad():
        act.log_weights.add_(0.5)
    fresh = LearnedDiffusivity().double()
    assert set(fresh.state_dict()) == {"log_weights", "log_scales"}
    fresh.load_state_dict(act.state_dict())
    x = torch.linspace(-2, 2, 9, dtype=F64)
    assert torch.equal(fresh(x), act(x))


@pytest.mark.parametrize("kwargs, message", [
    ({"basis": ("rational", "gaussian")}, "unknown basis function 'gaussian'"),
    ({"basis": ()}, "basis needs at least one"),
    ({"weights": (1.0, 2.0)}, "weights needs 3 values"),
    ({"scales": (1.0, 0.0, 2.0)}, "scales must be positive and finite"),
    ({"weights": (1.0, math.nan, 2.0)}, "weights must be positive and finite"),
    ({"scales": (1.0, 1e30, 2.0)}, "scales must lie in"),
    ({"role": "shrinkage"}, "unknown role"),
])
def test_bad_arguments_get_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ActivationError, match=message):
        LearnedDiffusivity(**kwargs)


@pytest.mark.parametrize("role", ["activation", "diffusivity"])
def test_triton_kernels_equal_the_torch_path(role: str) -> None:
    """backend="triton" (under TRITON_INTERPRET=1 on the CPU) gives the torch path's values
    and gradients for every weight and scale."""
    pytest.importorskip("triton")
    if not (torch.cuda.is_available() or interpreting()):
        pytest.skip("Triton needs a GPU or TRITON_INTERPRET=1")
    basis = ("rational", "charbonnier")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kernels = LearnedDiffusivity(basis, role=role, backend="triton").to(device)
    plain = LearnedDiffusivity(basis, role=role, backend="torch").to(device)
    x = torch.linspace(-4, 4, 50, device=device)
    x = x.abs() if role == "diffusivity" else x
    outs = []
    for act in (kernels, plain):
        y = act(x)
        grads = torch.autograd.grad((y * torch.cos(x)).sum(), [act.log_weights,
                                                               act.log_scales])
        outs.append((y.detach(), *grads))
    for a, b in zip(*outs):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6), (a, b)
