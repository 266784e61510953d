"""Diffusion on pixel grids of any dimension (fluxact/grid.py, issue 16): the time-step bound
1/(2 g_max sum_i 1/h_i^2) against the dense operator, the isotropic and per-axis fluxes
against the blocks that compute them in 2D, medpy's scheme computed here, and denoise on
volumes with voxel spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fluxact
from fluxact.activation import diffusivity_to_torch
from fluxact.coupling import CoupledDiffusionBlock2D
from fluxact.denoising import denoise_run
from fluxact.grid import GridDiffusion
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")
F64 = torch.float64


def _g(formula: str = "1/(1 + s2/lam**2)", lam: float = 0.7):
    params = {"lam": lam} if "lam" in formula else None
    g = diffusivity_to_torch(formula, params=params).double()
    g.backend = "torch"
    return g


def _matrix(block: GridDiffusion, shape: tuple[int, ...]) -> torch.Tensor:
    """The linear map u -> K^T F(K u) as a dense matrix (F linear: g = 1)."""
    n = math.prod(shape)
    cols = [block.flux(torch.eye(n, dtype=F64)[k].reshape(1, 1, *shape)).reshape(-1)
            for k in range(n)]
    return torch.stack(cols, 1)


@pytest.mark.parametrize("spacing, boundary", [
    ((1.0,), "reflect"), ((0.5, 2.0), "reflect"), ((1.0, 1.0), "periodic"),
    ((1.0, 0.7, 1.3), "reflect"), ((2.0, 1.0, 0.5), "periodic")])
@pytest.mark.parametrize("coupling", ["isotropic", "uncoupled"])
def test_the_bound_against_the_dense_operator(spacing, boundary, coupling) -> None:
    """With g = 1 the step is I - tau A, A = K^T K: at tau = 1/(2 sum_i h_i^-2) every entry
    of I - tau A is >= 0 (the max-min principle: rows sum to 1) and ||I - tau A|| <= 1
    (Euclidean); a larger tau makes a diagonal entry negative (the bound is the exact one)."""
    g = _g("1") if coupling == "isotropic" else fluxact.to_torch("r", "activation").double()
    g.backend = "torch"
    block = GridDiffusion(g, coupling=coupling, spacing=spacing, boundary=boundary)
    shape = (5, 4, 3)[:len(spacing)]
    A = _matrix(block, shape)
    tau = float(block.time_step())
    assert tau == pytest.approx(1 / (2 * sum(h**-2 for h in spacing)), rel=1e-15)
    eig = torch.linalg.eigvalsh((A + A.T) / 2)
    torch.testing.assert_close(A, A.T)  # K^T K: symmetric
    assert eig.min() > -1e-12 and eig.max() <= block.norm2_bound() * (1 + 1e-12)
    M = torch.eye(A.shape[0], dtype=F64) - tau * A
    assert M.min() >= -1e-12
    torch.testing.assert_close(M.sum(1), torch.ones(A.shape[0], dtype=F64))
    assert torch.linalg.matrix_norm(M, 2) <= 1 + 1e-12
    assert (torch.eye(A.shape[0], dtype=F64) - 1.01 * tau * A).diagonal().min() < 0


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_the_fluxes_are_those_of_the_2d_blocks(boundary) -> None:
    """Isotropic: CoupledDiffusionBlock2D with the forward-difference gradient and a scalar g;
    uncoupled: DiffusionBlock with the 2D forward differences."""
    torch.manual_seed(0)
    u = torch.randn(2, 1, 7, 9, dtype=F64)
    g = _g()
    grid = GridDiffusion(g, spacing=(1.0, 1.0), boundary=boundary, stability="euclidean")
    if boundary == "reflect":  # the coupled block has no periodic boundary
        coupled = CoupledDiffusionBlock2D(g, couple_images=False, stability="euclidean")
        torch.testing.assert_close(grid(u), coupled(u), rtol=0, atol=1e-14)
    phi = fluxact.to_torch("r/(1 + r**2/lam**2)", "activation", params={"lam": 0.7}).double()
    phi.backend = "torch"
    grid = GridDiffusion(phi, coupling="uncoupled", spacing=(1.0, 1.0), boundary=boundary,
                         stability="euclidean")
    block = fluxact.DiffusionBlock(phi, dims=2, boundary=boundary, stability="euclidean")
    torch.testing.assert_close(grid(u), block(u), rtol=0, atol=1e-14)


def test_nonlinear_steps_keep_both_guarantees_without_the_clamp() -> None:
    """Perona-Malik's g on random volumes with anisotropic spacing, stability "euclidean" (no
    clamp): each step stays in [min u, max u] up to rounding and never grows ||u||."""
    torch.manual_seed(3)
    g = _g("exp(-s2/(2*lam**2))", lam=0.3)
    for spacing in ((1.0, 1.0, 1.0), (2.5, 1.0, 0.8)):
        block = GridDiffusion(g, spacing=spacing, stability="euclidean")
        u = torch.randn(1, 1, 6, 7, 8, dtype=F64) * 3
        for _ in range(20):
            v = block(u)
            assert v.min() >= u.min() - 1e-12 and v.max() <= u.max() + 1e-12
            assert v.norm() <= u.norm() * (1 + 1e-14)
            u = v


def medpy_scheme(img: np.ndarray, niter: int, kappa: float, gamma: float,
                  option: int) -> np.ndarray:
    """medpy.filter.smoothing.anisotropic_diffusion at unit spacing, from its equations (not
    its code): float32 throughout; per axis the difference to the next pixel, delta (0 at
    the last one), its flux c(delta) delta, and the update by gamma times the sum over axes
    of the flux minus the flux of the previous pixel (zero flux across the border). c is
    exp(-(d/k)^2) (option 1), 1/(1 + (d/k)^2) (option 2), Tukey's 0.5 (1 - (d/ks)^2)^2 for
    |d| <= ks = sqrt2 k, else 0 (option 3)."""
    u = img.astype(np.float32)
    k = np.float32(kappa)
    ks = np.float32(kappa * 2**0.5)
    for _ in range(niter):
        total = np.zeros_like(u)
        for axis in range(u.ndim):
            delta = np.zeros_like(u)
            n = u.shape[axis]
            delta[(slice(None),) * axis + (slice(0, n - 1),)] = np.diff(u, axis=axis)
            if option == 1:
                c = np.exp(-((delta / k) ** 2))
            elif option == 2:
                c = 1 / (1 + (delta / k) ** 2)
            else:
                c = np.where(np.abs(delta) <= ks, 0.5 * (1 - (delta / ks) ** 2) ** 2, 0)
            flux = (c * delta).astype(np.float32)
            total += flux
            total[(slice(None),) * axis + (slice(1, n),)] -= flux[(slice(None),) * axis
                                                                  + (slice(0, n - 1),)]
        u = u + np.float32(gamma) * total
    return u


MEDPY_G = {1: "exp(-r**2/kappa**2)", 2: "1/(1 + r**2/kappa**2)",
           3: "Piecewise((0.5*(1 - r**2/(2*kappa**2))**2, Abs(r) <= sqrt(2)*kappa), (0, True))"}


@pytest.mark.parametrize("option", [1, 2, 3])
@pytest.mark.parametrize("shape, gamma", [((24, 31), 0.25), ((9, 10, 11), 1 / 6)])
def test_uncoupled_is_medpys_scheme(option, shape, gamma) -> None:
    """denoise(coupling="uncoupled") with medpy's c as the diffusivity, tau = gamma, equals
    medpy's anisotropic_diffusion to float32 rounding (fluxact computes in float64)."""
    rng = np.random.default_rng(option)
    img = rng.uniform(0, 100, size=shape)
    kappa, niter = 30.0, 10
    theirs = medpy_scheme(img, niter, kappa, gamma, option)
    run = denoise_run(img, MEDPY_G[option], "diffusivity", params={"kappa": kappa},
                      time=niter * gamma, tau=gamma, coupling="uncoupled")
    assert run.steps == niter
    # float32 rounding: ulp(100) = 7.6e-6 per operation, over 10 steps (measured: <= 3.3e-5)
    np.testing.assert_allclose(run.output, theirs, rtol=0, atol=1e-4)
    assert np.abs(run.output - img).max() > 25  # and the filter did move the values


def test_denoise_volumes_and_spacing() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(6, 7, 8))
    run = denoise_run(vol, "perona-malik", params={"lam": 1.0}, time=1.0,
                      spacing=(2.0, 1.0, 1.0))
    assert run.coupling == "isotropic" and run.spacing == (2.0, 1.0, 1.0)
    assert run.bound == pytest.approx(1 / (2 * (0.25 + 1 + 1)))
    assert "3D, isotropic flux, spacing 2, 1, 1" in run.summary()
    assert vol.min() <= run.output.min() and run.output.max() <= vol.max()
    # a constant volume stays constant, and the spacing matters: a wider axis diffuses less
    ramp = np.broadcast_to(np.arange(6.0)[:, None, None] ** 2, (6, 6, 6)).copy()
    near = fluxact.denoise(ramp, "linear", time=0.5, spacing=(1.0, 1.0, 1.0))
    far = fluxact.denoise(ramp, "linear", time=0.5, spacing=(3.0, 1.0, 1.0))
    assert np.abs(far - ramp).max() < np.abs(near - ramp).max() / 4
    for kwargs, message in [
            (dict(spacing=(1.0, 2.0)), "spacing has 2 entries for 3 axes"),
            (dict(spacing=(1.0, 0.0, 1.0)), "spacing of axis 1 must be a positive"),
            (dict(spacing=1.0, h=2.0), "not both"),
            (dict(scheme="fsi"), "1D and 2D grids of one spacing"),
            (dict(coupling="rotated"), "unknown coupling"),
            (dict(stability="sign"), "sign stability .* is a 1D notion"),
            (dict(stability="l2"), "unknown stability 'l2'")]:
        with pytest.raises(StabilityError, match=message):
            denoise_run(vol, "perona-malik", params={"lam": 1.0}, time=1.0, **kwargs)
    with pytest.raises(StabilityError, match="isotropic flux, or coupling='uncoupled'"):
        denoise_run(vol[0], "perona-malik", params={"lam": 1.0}, time=1.0, scheme="implicit",
                    coupling="isotropic")


def test_isotropic_flux_from_any_form() -> None:
    """A regulariser (Geman-McClure) or an activation formula gives its diffusivity g (P1
    Table 1) to the isotropic flux, with g's bound."""
    img = np.add.outer(np.arange(8.0), np.arange(9.0)) % 3
    a = denoise_run(img, "geman-mcclure", params={"lam": 2.0}, time=1.0)
    b = denoise_run(img, "1/(1 + r**2/4)**2", "diffusivity", time=1.0)
    np.testing.assert_allclose(a.output, b.output, rtol=0, atol=1e-12)
    c = denoise_run(img, "r/(1 + r**2/4)**2", "activation", time=1.0)
    np.testing.assert_allclose(a.output, c.output, rtol=0, atol=1e-12)


def test_colour_channels_share_one_diffusivity() -> None:
    """channel_axis: the isotropic flux takes g(sum_c |grad u_c|^2) (P3 29). Two equal
    channels double s2, which is Perona-Malik with lam / sqrt2 on one channel; an edge in one
    channel slows the diffusion of the other across it; each channel keeps its own range."""
    rng = np.random.default_rng(2)
    u = rng.normal(size=(12, 14))
    pair = fluxact.denoise(np.stack([u, u], axis=-1), "perona-malik", params={"lam": 1.0},
                           time=2.0, channel_axis=-1)
    single = fluxact.denoise(u, "perona-malik", params={"lam": 1 / math.sqrt(2)}, time=2.0)
    np.testing.assert_allclose(pair[..., 0], single, rtol=0, atol=1e-13)
    np.testing.assert_allclose(pair[..., 1], single, rtol=0, atol=1e-13)
    edge = np.zeros((2, 16, 16))
    edge[0, :, 8:] = 100.0
    edge[1] = rng.normal(size=(16, 16))
    run = denoise_run(edge, "perona-malik", params={"lam": 1.0}, time=2.0, channel_axis=0)
    alone = fluxact.denoise(edge[1], "perona-malik", params={"lam": 1.0}, time=2.0)
    # channel 0's jump makes g = exp(-5000) = 0 on the edge between columns 7 and 8, for
    # channel 1 too: nothing crosses it, so the left half keeps its mass
    left = edge[1, :, :8].sum()
    assert abs(run.output[1, :, :8].sum() - left) < 1e-11
    assert abs(alone[:, :8].sum() - left) > 0.1
    assert "2 channels sharing one diffusivity" in run.summary()
    for c in range(2):
        assert edge[c].min() <= run.output[c].min() and run.output[c].max() <= edge[c].max()
    for bad, message in [(dict(channel_axis=3), "has no axis 3"),
                         (dict(channel_axis=1.0), "channel_axis must be an axis number"),
                         (dict(channel_axis=0, scheme="fsi"), "one channel")]:
        with pytest.raises(StabilityError, match=message):
            denoise_run(edge, "perona-malik", params={"lam": 1.0}, time=1.0, **bad)


def test_cli_volumes_spacing_and_channels(tmp_path, capsys) -> None:
    from fluxact.cli import main

    rng = np.random.default_rng(4)
    vol, rgb = tmp_path / "vol.npy", tmp_path / "rgb.npy"
    np.save(vol, rng.normal(size=(5, 6, 7)))
    np.save(rgb, rng.uniform(0, 255, size=(9, 10, 3)))
    out = tmp_path / "out.npy"
    base = ["denoise", "--name", "perona-malik", "--param", "lam=20", "--time", "1"]
    assert main([*base[:1], str(vol), str(out), *base[1:], "--spacing", "2,1,1"]) == 0
    assert "3D, isotropic flux, spacing 2, 1, 1" in capsys.readouterr().out
    assert main([*base[:1], str(vol), str(out), *base[1:], "--spacing", "2"]) == 0
    assert "spacing 2, 2, 2" in capsys.readouterr().out
    assert np.load(out).shape == (5, 6, 7)
    assert main([*base[:1], str(rgb), str(out), *base[1:], "--channel-axis", "-1",
                 "--coupling", "uncoupled"]) == 0
    assert "2D, uncoupled flux, 3 channels" in capsys.readouterr().out
    for extra, message in [(["--spacing", "2,1"], "spacing has 2 entries for 3 axes"),
                           (["--spacing", "1,nan,1"], "--spacing"),
                           (["--channel-axis", "4"], "has no axis 4"),
                           (["--h", "1", "--spacing", "2"], "not both")]:
        assert main([*base[:1], str(vol), str(out), *base[1:], *extra]) == 2
        assert message in capsys.readouterr().err


def test_the_grid_refuses_the_other_kind_of_module() -> None:
    """Phi = 4 tanh(r/4) read as g (sup 4, not sup Phi(r)/r = 1), or g = 1/(1 + s2) read as
    Phi (Phi(r)/r unbounded near 0): either would step with a tau its bound does not cover."""
    phi = fluxact.to_torch("4*tanh(r/4)", "activation").double()
    g = _g("1/(1 + s2)")
    with pytest.raises(StabilityError, match="computes Phi"):
        GridDiffusion(phi, coupling="isotropic")
    with pytest.raises(StabilityError, match="computes a diffusivity"):
        GridDiffusion(g, coupling="uncoupled")
    block = GridDiffusion(g)
    block.act = phi  # replaced after construction: the next step refuses it
    with pytest.raises(StabilityError, match="computes Phi"):
        block(torch.zeros(1, 1, 4, 4, dtype=F64))
    with pytest.raises(AttributeError):
        block.coupling = "uncoupled"  # the role check depends on it
    for spacing, message in [(1.0, "spacing of each axis"), ((), "1, 2 or 3 axes"),
                             ((1.0,) * 4, "1, 2 or 3 axes"), ((1.0, -1.0), "axis 1")]:
        with pytest.raises(StabilityError, match=message):
            GridDiffusion(g, spacing=spacing)


@pytest.mark.parametrize("name, params", [("huber", {"th": 1.0}), ("tukey", {"lam": 1.5}),
                                          ("hard", {"th": 1.0}), ("garrote", {"th": 0.5})])
def test_piecewise_entries_as_functions_of_s2(name, params) -> None:
    """|r| <= c conditions become s2 <= c^2: g(s2) = Phi(r)/r at r = sqrt(s2) on both sides of
    each break, and the isotropic flux runs them."""
    entry = fluxact.catalogue[name]
    g = diffusivity_to_torch(entry, params=params).double()
    phi = fluxact.to_torch(entry, params=params).double()
    r = torch.tensor([0.1, 0.6, 0.9, 1.2, 1.6, 2.5, 4.0], dtype=F64)
    torch.testing.assert_close(g(r * r), phi(r) / r, rtol=1e-12, atol=1e-14)
    img = np.add.outer(np.arange(8.0), np.arange(9.0)) % 3
    run = denoise_run(img, name, params=params, time=0.5)
    assert run.coupling == "isotropic" and 0 <= run.output.min() <= run.output.max() <= 2


def test_grid_stencils_of_another_h_are_not_loaded() -> None:
    """The www bound 8 (1 - alpha)/h^2 and the max-min step are computed from h and alpha: a
    state dict saved at h = 0.5 would give a block at h = 1 a tau four times too large."""
    g = _g("1/(1 + s2/lam**2)", lam=100.0)
    fine = CoupledDiffusionBlock2D(g, operator="www", h=0.5)
    coarse = CoupledDiffusionBlock2D(g, operator="www", h=1.0)
    before = coarse.K.kernel0.clone()
    with pytest.raises(StabilityError, match="stencils of another grid size"):
        coarse.load_state_dict(fine.state_dict())
    assert torch.equal(coarse.K.kernel0, before)  # refused before anything was loaded
    coarse.load_state_dict(CoupledDiffusionBlock2D(g, operator="www").state_dict())
    smooth = CoupledDiffusionBlock2D(g, operator="gaussian_gradient", sigma=1.0)
    state = smooth.state_dict()
    state["K.smooth"] = state["K.smooth"] * 10  # a smoothing of norm 10
    with pytest.raises(StabilityError, match="sigma"):
        smooth.load_state_dict(state)


def test_spacing_given_once() -> None:
    img = np.zeros((4, 5))
    assert denoise_run(img, "linear", time=0.1, spacing=2.0).spacing == (2.0, 2.0)
    assert denoise_run(img, "linear", time=0.1, spacing=[3.0]).spacing == (3.0, 3.0)
    assert denoise_run(img, "linear", time=0.1, h=2.0).spacing == (2.0, 2.0)
    with pytest.raises(StabilityError, match="not both"):
        denoise_run(img, "linear", time=0.1, h=1.0, spacing=2.0)
    assert denoise_run(img, "linear", time=0.1,
                       spacing=torch.tensor([1.0, 2.0])).spacing == (1.0, 2.0)


def test_a_trained_scale_of_g_gets_its_gradient_through_tau() -> None:
    """g = a/(1 + s2) with a trainable: tau = 1/(2 a sum 1/h^2) depends on a, and the step's
    gradient in a must be the derivative of the step (checked against finite differences)."""
    g = diffusivity_to_torch("a/(1 + s2)", params={"a": 2.0}, trainable=("a",)).double()
    g.backend = "torch"
    block = GridDiffusion(g, spacing=(1.0, 1.0), stability="euclidean")
    torch.manual_seed(6)
    u = torch.randn(1, 1, 6, 7, dtype=F64)
    assert torch.autograd.gradcheck(lambda a: _step_with(block, g, a, u), (
        torch.tensor(2.0, dtype=F64, requires_grad=True),))


def _step_with(block: GridDiffusion, g, a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        g.a.copy_(a.detach())
    saved = g.a
    try:
        del g.a
        g.a = a  # the tensor gradcheck perturbs
        return block(u)
    finally:
        del g.a
        g.a = saved
