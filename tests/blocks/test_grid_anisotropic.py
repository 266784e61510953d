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


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 1.3), (2.0, 1.0, 0.5)])
def test_euclidean_stability_at_the_bound(spacing) -> None:
    """At tau = 2/(g_max ||K||^2), ||K||^2 = 4 sum_i 1/h_i^2, the Euclidean norm of every
    image never grows over 40 steps (the lagged operator is symmetric with spectrum in
    [0, g_max ||K||^2]), for noisy colour data with edges."""
    gen = torch.Generator().manual_seed(3)
    shape = (2, 3, *(8,) * len(spacing))
    u = torch.rand(shape, dtype=F64, generator=gen) * 100
    u = u + 200 * (torch.arange(8, dtype=F64) > 3)  # an edge along the last axis
    block = _aniso(spacing)
    want = 2 / (4 * sum(1 / h**2 for h in spacing))
    assert float(block.time_step()) == pytest.approx(want, rel=1e-12)
    with torch.no_grad():
        norms = [u.flatten(1).norm(dim=1)]
        for _ in range(40):
            u = block(u)
            norms.append(u.flatten(1).norm(dim=1))
    for before, after in zip(norms, norms[1:]):
        assert bool((after <= before * (1 + 1e-13)).all())
    assert bool((norms[-1] < norms[0]).all())  # it did diffuse


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
