"""Run-time safety (issue 14): generated code comes from memory only, every block refuses an
unsafe time step, the positivity of parameters is checked on their values, and a value never
depends on the size of the input."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fluxact
from fluxact.activation import diffusivity_to_torch
from fluxact.blocks import DiffusionBlock, DuFortFrankelBlock, FSIBlock, ImplicitBlock
from fluxact.coupling import CoupledDiffusionBlock2D, MultiscaleDiffusionBlock2D
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")

BAD_STEPS = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), "0.1", True, 1e-400j]


def test_generated_code_is_never_read_from_a_shared_folder(tmp_path, monkeypatch) -> None:
    """Another user pre-creates the folder fluxact once used ($TMPDIR/fluxact-generated-$UID),
    world-writable, with the exact generated source and a valid bytecode file for it that
    runs extra code (Python trusts a .pyc whose header matches the source's mtime and size):
    none of it runs, and fluxact writes nothing under the temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    marker = tmp_path / "ran"
    planted = tmp_path / f"fluxact-generated-{os.getuid()}"
    (planted / "__pycache__").mkdir(parents=True)
    planted.chmod(0o777)
    formula, params = "r*exp(-r**2/(2*lam**2))", {"lam": 1.37}
    spec = fluxact.activation.spec_of(formula, "activation", params=params, trainable=("lam",),
                                      name="planted_probe")
    source = fluxact.activation.render(spec, "module", fluxact.__version__)
    stem = f"{spec.name}_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    path = planted / f"{stem}.py"
    path.write_text(source, encoding="utf-8")
    payload = f"open({str(marker)!r}, 'w').write('pwned')\n"
    code = compile(source + payload, str(path), "exec")
    pyc = importlib.util.cache_from_source(str(path))
    stat = path.stat()
    Path(pyc).write_bytes(importlib._bootstrap_external._code_to_timestamp_pyc(
        code, int(stat.st_mtime), stat.st_size))
    def ours() -> list[str]:  # torch keeps its own cache there (torchinductor_$USER)
        return sorted(str(p) for p in tmp_path.rglob("*") if "torchinductor_" not in str(p))

    before = ours()
    act = fluxact.to_torch(formula, "activation", params=params, trainable=("lam",),
                           name="planted_probe")
    y = act(torch.tensor([0.5, -2.0], dtype=torch.float64))
    assert not marker.exists()
    assert ours() == before  # nothing written
    truth = [0.5 * math.exp(-0.25 / (2 * 1.37**2)), -2 * math.exp(-4 / (2 * 1.37**2))]
    torch.testing.assert_close(y, torch.tensor(truth, dtype=torch.float64))
    # Triton and inspect read the kernels' source through linecache, not a file
    module = inspect.getmodule(act.ops.torch_forward)
    assert module is not None and module.__file__.startswith("<fluxact-generated/")
    assert "def " in inspect.getsource(act.ops.torch_forward)


@pytest.mark.parametrize("tau", BAD_STEPS)
@pytest.mark.parametrize("unsafe", [False, True])
def test_every_block_refuses_a_step_that_is_no_positive_number(tau, unsafe) -> None:
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 2.0}).double()
    pm = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 1.0})
    # every block that takes a time step (SymmetricResNet and the multiscale block compute
    # theirs; FSI passes it to its explicit step; Du Fort-Frankel has no unsafe mode)
    for make in (lambda: CoupledDiffusionBlock2D(g, tau=tau, unsafe=unsafe),
                 lambda: DiffusionBlock(pm, tau=tau, unsafe=unsafe),
                 lambda: FSIBlock(pm, tau=tau, unsafe=unsafe),
                 lambda: ImplicitBlock(pm, tau=tau, unsafe=unsafe),
                 lambda: DuFortFrankelBlock(pm, tau=tau)):
        with pytest.raises(StabilityError, match="tau must be a positive, finite number"):
            make()


def test_every_block_holds_one_time_step_policy() -> None:
    from fluxact.timestep import TimeStep

    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 2.0}).double()
    pm = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 1.0})
    for block in (CoupledDiffusionBlock2D(g), MultiscaleDiffusionBlock2D(g), DiffusionBlock(pm),
                  FSIBlock(pm, tau=0.2), ImplicitBlock(pm)):
        assert isinstance(block.policy, TimeStep), type(block).__name__


@pytest.mark.parametrize("safety", [0.0, -0.5, 1.5, float("nan"), "1", True])
def test_every_block_refuses_a_safety_outside_0_1(safety) -> None:
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 2.0}).double()
    pm = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 1.0})
    for make in (lambda: CoupledDiffusionBlock2D(g, safety=safety),
                 lambda: MultiscaleDiffusionBlock2D(g, safety=safety),
                 lambda: DiffusionBlock(pm, safety=safety)):
        with pytest.raises(StabilityError, match="safety"):
            make()


def test_unsafe_is_a_bool_and_a_coupled_step_above_the_bound_is_refused() -> None:
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 2.0}).double()
    with pytest.raises(StabilityError, match="unsafe must be True or False"):
        CoupledDiffusionBlock2D(g, tau=0.1, unsafe="yes")
    bound = float(CoupledDiffusionBlock2D(g).tau_max())  # 2/(g_max ||K||^2) = 2/8
    assert bound == 0.25
    with pytest.raises(StabilityError, match="breaks the euclidean bound"):
        CoupledDiffusionBlock2D(g, tau=0.2500001)
    u = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    block = CoupledDiffusionBlock2D(g, tau=0.3, unsafe=True)
    assert float(block.time_step()) == 0.3 and torch.isfinite(block(u)).all()


def test_positivity_is_checked_on_values_not_versions() -> None:
    """A write through .data bumps no tensor version: the check still sees the value."""
    act = fluxact.to_torch("a*tanh(r/b)", "activation", params={"a": 1.0, "b": 1.0},
                           trainable=("a", "b"))
    block = DiffusionBlock(act)
    u = torch.tensor([[[0.0, 1.0, 5.0, -3.0, 0.0]]])
    assert torch.isfinite(block(u)).all()  # checked once at these tensors and versions
    version = act.a._version
    act.a.data.fill_(-1)
    assert act.a._version == version
    with pytest.raises(StabilityError, match="a = -1 is not positive"):
        block(u)
    act.a.data.fill_(1.0)
    act.b.data.fill_(float("nan"))
    with pytest.raises(StabilityError, match="b = nan is not positive"):
        block.time_step()
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 2.0}, trainable=("lam",))
    coupled = CoupledDiffusionBlock2D(g)
    coupled(torch.zeros(1, 1, 4, 4))
    g.lam.data.fill_(0.0)
    with pytest.raises(StabilityError, match="lam = 0 is not positive"):
        coupled(torch.zeros(1, 1, 4, 4))


def test_an_activation_is_never_read_as_a_diffusivity_or_back() -> None:
    """Phi = 4 tanh(r/4) has sup Phi(r)/r = 1 but, read as g(s2), sup g = 4: a coupled block
    took tau = 1/4 from the first and its norm grew from 160 to 1.9e43 in 50 steps. Each
    module says what it computes (Activation.role); blocks refuse the other kind."""
    phi = fluxact.to_torch("4*tanh(r/4)", "activation").double()
    g = diffusivity_to_torch("4/(1 + s2)").double()
    assert (phi.role, g.role, phi.clone().role, g.clone().role) == (
        "activation", "diffusivity", "activation", "diffusivity")
    for make in (lambda: CoupledDiffusionBlock2D(phi), lambda: MultiscaleDiffusionBlock2D(phi),
                 lambda: fluxact.denoise(np.eye(5), phi, time=1.0, coupling="isotropic")):
        with pytest.raises(StabilityError, match="computes Phi"):
            make()
    for make in (lambda: DiffusionBlock(g), lambda: FSIBlock(g, tau=0.1),
                 lambda: ImplicitBlock(g), lambda: fluxact.denoise(np.arange(5.0), g, time=1.0)):
        with pytest.raises(StabilityError, match="computes a diffusivity"):
            make()
    assert float(CoupledDiffusionBlock2D(g).time_step()) == pytest.approx(2 / (4 * 8))


def test_a_bound_that_is_no_positive_number_is_refused() -> None:
    """A learned kernel that training made NaN gives a NaN bound: the block refuses to step
    (tau = NaN would otherwise pass as the certified step)."""
    act = fluxact.to_torch("r/(1 + r**2/lam**2)", "activation", params={"lam": 1.0})
    block = DiffusionBlock(act, K="learned")
    u = torch.randn(2, 1, 8)
    assert torch.isfinite(block(u)).all()
    block.K.kernel0.data.fill_(float("nan"))
    with pytest.raises(StabilityError, match="time step is not a positive finite"):
        block(u)
    scales = MultiscaleDiffusionBlock2D(diffusivity_to_torch("1/(1 + s2)"), (1.0,))
    scales.beta.data.fill_(float("inf"))
    with pytest.raises(StabilityError, match="time step is not a positive finite"):
        scales.time_step()
    trained = DiffusionBlock(act, train_tau=True)
    trained.tau_logit.data.fill_(float("nan"))  # a NaN that training put into theta
    with pytest.raises(StabilityError, match="time step is not a positive finite"):
        trained(u)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_do_not_depend_on_the_input_size(dtype) -> None:
    """torch.compile's CPU code rounds differently (fp32 erf(1e-10) = 0): the torch backend
    stays eager at every size unless the caller opts in."""
    act = fluxact.to_torch("erf(r)", "activation", backend="torch")
    small = torch.tensor([1e-10, 1e-5, 0.3, -2.0], dtype=dtype)
    big = torch.cat([small, torch.zeros((1 << 16) + 3, dtype=dtype)])
    assert torch.equal(act(big)[:4], act(small))
    assert float(act(small)[0]) == pytest.approx(2 / math.sqrt(math.pi) * 1e-10, rel=1e-6)


def _positive_signals(n: int, shape: tuple[int, ...], dtype) -> torch.Tensor:
    """Positive values from 1e-6 to 1e6, log-uniform (a fixed seed)."""
    gen = torch.Generator().manual_seed(14)
    return (10.0 ** (12 * torch.rand((n, 1, *shape), generator=gen, dtype=torch.float64) - 6)
            ).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_max_min_principle_is_exact_in_floating_point(dtype) -> None:
    """g = 1 at tau = h^2/2 (1D) and h^2/4 (2D): u - tau K^T Phi(K u) rounds below min f in
    float32 for many of these signals (an exact 0 where min f = 1e-6); the block's output
    never leaves [min f, max f], at any step."""
    linear = fluxact.to_torch("r", "activation")
    for dims, shape in ((1, (9,)), (2, (5, 5))):
        for boundary in ("reflect", "periodic"):
            block = DiffusionBlock(linear, dims=dims, boundary=boundary)
            assert block.stability == "linf"
            assert float(block.time_step()) == (0.5 if dims == 1 else 0.25)
            f = _positive_signals(2000, shape, dtype)
            lo = f.flatten(1).amin(1).reshape(-1, *[1] * (f.dim() - 1))
            hi = f.flatten(1).amax(1).reshape(-1, *[1] * (f.dim() - 1))
            u = f
            for _ in range(3):
                u = block(u)
                assert bool(((u >= lo) & (u <= hi)).all()), (dims, boundary)
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 1.0}).to(dtype)
    for operator in ("gradient", "www"):
        block = CoupledDiffusionBlock2D(g, operator=operator, stability="linf",
                                        couple_images=False)
        f = _positive_signals(500, (5, 5), dtype)
        out = block(f)
        assert bool(((out >= f.flatten(1).amin(1)[:, None, None, None])
                     & (out <= f.flatten(1).amax(1)[:, None, None, None])).all()), operator


@pytest.mark.parametrize("dims, boundary, stability", [
    (1, "reflect", "linf"), (1, "periodic", "linf"), (1, "reflect", "sign"),
    (1, "periodic", "sign"), (2, "reflect", "linf"), (2, "periodic", "linf")])
def test_the_clamp_changes_only_rounding(dims, boundary, stability) -> None:
    """On rough float64 data (where a wrong stencil, e.g. one that ignores the periodic wrap,
    would change values by far more than rounding) the clamped and the plain step agree to
    rounding: the clamp is no change of the scheme."""
    pm = fluxact.to_torch(fluxact.catalogue["perona-malik"], params={"lam": 0.5}).double()
    block = DiffusionBlock(pm, dims=dims, channels=3, h=0.7, boundary=boundary,
                           stability=stability).double()
    gen = torch.Generator().manual_seed(3)
    u = torch.randn((4, 3, *((40,) if dims == 1 else (9, 11))), generator=gen,
                    dtype=torch.float64)
    plain = u - block.time_step() * block.flux(u)
    torch.testing.assert_close(block(u), plain, rtol=0, atol=1e-14)


@pytest.mark.parametrize("operator, mode", [("gradient", "isotropic"), ("gradient", "uncoupled"),
                                            ("www", "isotropic")])
def test_the_coupled_clamp_changes_only_rounding(operator, mode) -> None:
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 0.5}).double()
    block = CoupledDiffusionBlock2D(g, operator=operator, mode=mode, stability="linf",
                                    couple_images=False, h=0.7)
    gen = torch.Generator().manual_seed(4)
    u = torch.randn((2, 3, 9, 11), generator=gen, dtype=torch.float64)
    plain = u - block.time_step() * block.K.adjoint(block.phi(block.K(u)))
    torch.testing.assert_close(block(u), plain, rtol=0, atol=1e-14)


def test_no_clamp_for_other_difference_kernels() -> None:
    """A difference kernel with another stencil ([-1, 0, 1]) has other neighbours: it is not
    clamped to those of the adjacent taps (that would change the scheme)."""
    from fluxact.operators import Operator

    lin = fluxact.to_torch("r", "activation").double()
    K = Operator([torch.tensor([[[-1.0, 0.0, 1.0]]], dtype=torch.float64)], dims=1,
                 difference=True)
    block = DiffusionBlock(lin, K, stability="linf")
    u = torch.randn((3, 1, 30), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    plain = u - block.time_step() * block.flux(u)
    torch.testing.assert_close(block(u), plain, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dims", [1, 2])
def test_euclidean_stability_holds_up_to_the_stated_rounding_bound(dtype, dims) -> None:
    """docs/blocks.md: a computed Euclidean-stable step has ||u+|| <= (1 + delta) ||u||, delta =
    (3 + 4 d + 4 L/g_max) u_r + 2 eps_Phi to first order (d axes, u_r the unit roundoff,
    eps_Phi the relative error of the computed Phi). For Phi(r) = r (eps_Phi = 0, L = g_max)
    on signals where the step is almost the identity (rounding decides the sign of the
    change) and on rough ones."""
    linear = fluxact.to_torch("r", "activation")
    block = DiffusionBlock(linear, dims=dims, stability="euclidean")
    u_r = torch.finfo(dtype).eps / 2
    delta = (3 + 4 * dims + 4) * u_r
    shape = (9,) if dims == 1 else (5, 5)
    gen = torch.Generator().manual_seed(7)
    families = [
        1e3 + 1e-4 * torch.randn((2000, 1, *shape), generator=gen, dtype=torch.float64),
        torch.randn((2000, 1, *shape), generator=gen, dtype=torch.float64),
        _positive_signals(2000, shape, torch.float64),
    ]
    worst = 0.0
    for f in families:
        u = f.to(dtype)
        out = block(u)
        n0 = u.double().flatten(1).norm(dim=1)
        n1 = out.double().flatten(1).norm(dim=1)
        worst = max(worst, float(((n1 - n0) / n0).max()))
    assert worst <= delta


def test_every_runtime_error_is_a_fluxact_error() -> None:
    """One root for every error on bad input, and the runtime still imports no SymPy."""
    from fluxact.denoising import SignalError
    from fluxact.runtime import ActivationError

    for cls in (ActivationError, StabilityError, SignalError):
        assert issubclass(cls, fluxact.FluxactError) and issubclass(cls, ValueError)
    with pytest.raises(fluxact.FluxactError, match="complex"):
        fluxact.denoise(np.array([1 + 1j, 2.0, 3.0]), "linear", time=1.0)
    code = ("import sys, fluxact.runtime, fluxact.translator.errors; "
            "sys.exit(int(any(m.split('.')[0] in ('sympy', 'mpmath') for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], env=os.environ | {
        "PYTHONPATH": str(Path(fluxact.__file__).resolve().parents[1])}).returncode == 0


def test_the_clamp_passes_the_gradient_of_the_step_and_keeps_overflow() -> None:
    from fluxact.operators import clamp_finite

    out = torch.tensor([-1e-7, 0.5, 2.0, math.inf, math.nan], requires_grad=True)
    lo, hi = torch.full((5,), 1e-6), torch.ones(5)
    y = clamp_finite(out, lo, hi)
    values = y.detach().tolist()
    assert values[:4] == [torch.tensor(1e-6).item(), 0.5, 1.0, math.inf]
    assert math.isnan(values[4])
    y[:3].sum().backward()
    assert out.grad[:3].tolist() == [1.0, 1.0, 1.0]


def test_parameter_names_of_activations_and_diffusivities() -> None:
    """A parameter named like an attribute of Activation is refused with one line; a
    diffusivity may have a parameter named x (the kernels' input is renamed)."""
    with pytest.raises(fluxact.ActivationError, match="attribute of fluxact.Activation"):
        fluxact.to_torch("stability*tanh(r)", "activation", params={"stability": 1.0})
    g = diffusivity_to_torch("1/(1 + s2/x**2)", params={"x": 2.0}).double()
    torch.testing.assert_close(g(torch.tensor([0.0, 4.0], dtype=torch.float64)),
                               torch.tensor([1.0, 0.5], dtype=torch.float64))
