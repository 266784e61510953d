"""The anisotropic flux g(J) grad u of P3 30 on pixel grids of 2 and 3 axes (fluxact/grid.py,
coupling="anisotropic", issue 16): equal to the coupled 2D block, equal to the isotropic flux
for one channel, the 3D eigen-decomposition equal to the 2D closed form, Euclidean stability
at the bound with voxel spacing, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest

from fluxact.activation import diffusivity_to_torch
from fluxact.cli import main as cli_main
from fluxact.coupling import CoupledDiffusionBlock2D
from fluxact.denoising import denoise_run
from fluxact.grid import GridDiffusion
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")
F64 = torch.float64
PM = "1/(1 + s2/lam**2)"


def _g(lam: float = 0.3):
    g = diffusivity_to_torch(PM, params={"lam": lam}).double()
    g.backend = "torch"
    return g


def _aniso(spacing=(1.0, 1.0), **options) -> GridDiffusion:
    return GridDiffusion(_g(), coupling="anisotropic", spacing=spacing, stability="euclidean",
                         **options)


def test_equals_the_coupled_2d_block() -> None:
    """In 2D with unit spacing and three channels, the step is the anisotropic
    CoupledDiffusionBlock2D's (forward-difference gradient, J summed over the channels),
    with the same time step."""
    u = torch.rand(2, 3, 12, 10, dtype=F64, generator=torch.Generator().manual_seed(0))
    grid = _aniso()
    block = CoupledDiffusionBlock2D(_g(), mode="anisotropic")
    assert float(grid.time_step()) == float(block.time_step()) == 0.25
    torch.testing.assert_close(grid(u), block(u), rtol=0, atol=1e-14)
    # and it is not the isotropic flux: the channels' edges steer the direction
    iso = GridDiffusion(_g(), coupling="isotropic", stability="euclidean")
    assert float((grid(u) - iso(u)).abs().max()) > 1e-3


@pytest.mark.parametrize("spacing", [(1.0, 2.0), (1.0, 0.5, 2.0)])
def test_one_channel_is_the_isotropic_flux(spacing) -> None:
    """J = s s^T for one channel, and g(s s^T) s = g(|s|^2) s."""
    u = torch.rand(1, 1, *(7,) * len(spacing), dtype=F64,
                   generator=torch.Generator().manual_seed(1))
    iso = GridDiffusion(_g(), coupling="isotropic", spacing=spacing, stability="euclidean")
    with torch.no_grad():
        torch.testing.assert_close(_aniso(spacing)(u), iso(u), rtol=0, atol=1e-14)


def test_3d_eigendecomposition_equals_the_2d_closed_form() -> None:
    """A volume constant along its first axis has no gradient along it: each slice then
    steps as the 2D image does (the same tau), so torch.linalg.eigh in 3D and the closed
    form of fluxact.coupling.eigen2 in 2D give the same flux."""
    image = torch.rand(1, 3, 9, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    volume = image.unsqueeze(2).expand(1, 3, 4, 9, 8).contiguous()
    with torch.no_grad():
        flat = _aniso((1.0, 1.0), tau=0.1)(image)
        deep = _aniso((1.0, 1.0, 1.0), tau=0.1)(volume)
    for k in range(4):
        torch.testing.assert_close(deep[:, :, k], flat, rtol=0, atol=1e-13)


def _reference(u: np.ndarray, g, spacing, periodic: bool, couple: bool, tau: float
               ) -> np.ndarray:
    """The step written independently: per pixel, numpy's eigh of J = sum_c s_c s_c^T (or of
    each channel's own s s^T), F_c = V diag(g(nu)) V^T s_c, the component along axis i on the
    edge after the pixel, u - tau K^T F."""
    b, c, *shape = u.shape
    d = len(shape)
    grads = np.zeros((b, c, *shape, d))
    for i, h in enumerate(spacing):
        after = np.roll(u, -1, axis=2 + i) if periodic else np.concatenate(
            [np.take(u, range(1, shape[i]), axis=2 + i),
             np.take(u, [shape[i] - 1], axis=2 + i)], axis=2 + i)
        grads[..., i] = (after - u) / h  # 0 after the last pixel (reflecting)
    outer = grads[..., :, None] * grads[..., None, :]
    J = outer.sum(axis=1, keepdims=True) if couple else outer
    nu, V = np.linalg.eigh(J)
    gnu = g(torch.from_numpy(np.clip(nu, 0, None))).detach().numpy()
    flux = np.einsum("...ij,...j,...kj,...k->...i", V, gnu, V, grads)
    out = u.copy()
    for i, h in enumerate(spacing):
        f = flux[..., i]
        if not periodic:
            f = np.take(f, range(shape[i] - 1), axis=2 + i)
            pad = [(0, 0)] * u.ndim
            pad[2 + i] = (0, 1)
            after, before = np.pad(f, pad), np.pad(f, [(0, 0) if k != 2 + i else (1, 0)
                                                       for k in range(u.ndim)])
        else:
            after, before = f, np.roll(f, 1, axis=2 + i)
        out += tau * (after - before) / h
    return out


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 1.3), (2.0, 1.0, 0.5)])
@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
@pytest.mark.parametrize("couple", [True, False])
def test_equals_an_independent_per_pixel_reference(spacing, boundary, couple) -> None:
    """numpy's eigh per pixel (not fluxact.coupling's closed form) gives the same step, with
    unequal spacing, both boundaries, and channels coupled through J or each on its own."""
    g = _g()
    u = np.random.default_rng(5).uniform(0, 1, (2, 3, *(6,) * len(spacing)))
    block = GridDiffusion(g, coupling="anisotropic", spacing=spacing, boundary=boundary,
                          stability="euclidean", couple_channels=couple)
    tau = float(block.time_step())
    with torch.no_grad():
        got = block(torch.from_numpy(u)).numpy()
    want = _reference(u, g, spacing, boundary == "periodic", couple, tau)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 1.3), (2.0, 1.0, 0.5)])
def test_euclidean_stability_at_the_bound(spacing) -> None:
    """At tau = 2/(g_max ||K||^2), ||K||^2 = 4 sum_i 1/h_i^2, the Euclidean norm of every
    image never grows over 200 periodic steps (the lagged operator is symmetric with spectrum
    in [0, g_max ||K||^2]); at 1.05 tau it does (unsafe=True). The data are small against
    lam (g near g_max, where the bound is sharp), with an edge in one channel."""
    gen = torch.Generator().manual_seed(3)
    shape = (2, 3, *(8,) * len(spacing))
    u0 = torch.rand(shape, dtype=F64, generator=gen) * 0.003
    u0[:, 0] += 0.3 * (torch.arange(8, dtype=F64) > 3)  # an edge along the last axis
    block = _aniso(spacing, boundary="periodic")
    tau = float(block.time_step())
    assert tau == pytest.approx(2 / (4 * sum(1 / h**2 for h in spacing)), rel=1e-12)

    def growths(step: GridDiffusion) -> int:
        u, grown = u0, 0
        with torch.no_grad():
            for _ in range(200):
                new = step(u)
                grown += int((new.flatten(1).norm(dim=1)
                              > u.flatten(1).norm(dim=1) * (1 + 1e-13)).sum())
                u = new
        return grown

    assert growths(block) == 0
    over = _aniso(spacing, boundary="periodic", tau=1.05 * tau, unsafe=True)
    assert growths(over) > 0


def test_3d_extreme_values_and_half_precision() -> None:
    """J is formed from the pixel's vectors scaled by their largest entry: at |u| ~ 1e160 in
    float64 (J itself overflows) the step stays finite; bf16 and fp16 volumes compute their
    eigen-decomposition in float32 and come back in their dtype."""
    block = _aniso((1.0, 1.0, 1.0))
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        big = torch.rand(1, 2, 4, 5, 6, dtype=F64, generator=gen) * 1e160
        assert bool(torch.isfinite(block(big)).all())
        for dtype in (torch.bfloat16, torch.float16):
            small = torch.rand(1, 2, 4, 5, 6, dtype=F64, generator=gen).to(dtype)
            out = block(small)
            assert out.dtype == dtype and bool(torch.isfinite(out).all())
            assert float(out.double().norm()) <= float(small.double().norm()) * (1 + 1e-2)


def test_refusals() -> None:
    with pytest.raises(StabilityError, match="no max-min principle"):
        GridDiffusion(_g(), coupling="anisotropic", spacing=(1.0, 1.0))
    u = torch.rand(1, 2, 5, 5, 5, dtype=F64, requires_grad=True)
    with pytest.raises(StabilityError, match="runs without gradients"):
        _aniso((1.0, 1.0, 1.0))(u)
    with pytest.raises(StabilityError, match="runs eagerly"), torch.no_grad():
        _aniso().run(torch.rand(1, 2, 6, 6, dtype=F64), 3, compiled=True)


def test_2d_gradients_are_finite_on_flat_regions() -> None:
    """In 2D the closed form carries gradients, also where J = 0 (a flat region) and where J
    has rank one: no NaN."""
    g = diffusivity_to_torch(PM, params={"lam": 0.3}, trainable=("lam",)).double()
    g.backend = "torch"
    block = GridDiffusion(g, coupling="anisotropic", spacing=(1.0, 1.0), stability="euclidean")
    u = torch.zeros(1, 2, 6, 6, dtype=F64)
    u[:, 0, :, 3:] = 1.0  # flat, with one edge in one channel: J = 0 or rank one
    u.requires_grad_(True)
    block(u).pow(2).sum().backward()
    assert bool(torch.isfinite(u.grad).all()) and bool(torch.isfinite(g.lam.grad).all())


def test_one_axis_with_channels_couples_them() -> None:
    """On a 1D signal with channels the isotropic and the anisotropic flux (equal in 1D:
    J = sum_c u_c,x^2) share one g over the channels: an edge in one channel stops diffusion
    in the other (it ran the per-channel flux before)."""
    signal = np.zeros((40, 2))
    signal[:, 1] = np.random.default_rng(8).uniform(0, 1, 40)
    signal[20:, 0] = 100.0  # a large edge in channel 0 only
    runs = {c: denoise_run(signal, "perona-malik", params={"lam": 1.0}, time=2.0,
                           coupling=c, channel_axis=-1) for c in ("isotropic", "anisotropic",
                                                                  "uncoupled")}
    assert runs["anisotropic"].coupling == runs["isotropic"].coupling == "isotropic"
    np.testing.assert_array_equal(runs["anisotropic"].output, runs["isotropic"].output)
    # across the edge, channel 1 exchanges (almost) nothing when coupled, freely when not
    left = lambda run: run.output[:20, 1].sum()  # noqa: E731
    assert abs(left(runs["isotropic"]) - signal[:20, 1].sum()) < 1e-6
    assert abs(left(runs["uncoupled"]) - signal[:20, 1].sum()) > 1e-3


def test_denoise_and_the_cli(tmp_path, capsys) -> None:
    """denoise(coupling="anisotropic") on colour images and volumes: the Euclidean bound by
    default, the summary says what ran; the CLI takes --coupling anisotropic."""
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (12, 14, 3))
    run = denoise_run(image, "perona-malik", params={"lam": 30}, time=2.0,
                      coupling="anisotropic", channel_axis=-1)
    assert run.stability == "euclidean" and run.coupling == "anisotropic"
    assert "anisotropic flux, 3 channels sharing one structure tensor" in run.summary()
    assert np.linalg.norm(run.output) <= np.linalg.norm(image)
    with pytest.raises(StabilityError, match="no max-min principle"):
        denoise_run(image, "perona-malik", params={"lam": 30}, time=2.0,
                    coupling="anisotropic", channel_axis=-1, stability="linf")
    np.save(tmp_path / "vol.npy", rng.uniform(0, 255, (6, 7, 8)))
    code = cli_main(["denoise", str(tmp_path / "vol.npy"), str(tmp_path / "out.npy"),
                     "--name", "perona-malik", "--param", "lam=30", "--time", "1",
                     "--coupling", "anisotropic", "--spacing", "2,1,1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3D, anisotropic flux, spacing 2, 1, 1" in out and "euclidean bound" in out
    assert np.load(tmp_path / "out.npy").shape == (6, 7, 8)
