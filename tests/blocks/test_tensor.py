"""Tensor-driven diffusion (fluxact/tensor.py: EED, CED) and the regularised Perona-Malik
model (GridDiffusion(sigma=...)), issue 16: the operator K^T D K against its dense matrix
(symmetric, positive semidefinite, bounded by lambda_max ||K||^2), the www stencil for D = I,
the tensors' eigenvectors, Euclidean stability of the steps, the max-min principle of Catte's
model, and denoise / the command line with models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from fluxact.activation import diffusivity_to_torch
from fluxact.denoising import denoise_run
from fluxact.grid import GridDiffusion
from fluxact.operators import WWW_ALPHA, smooth
from fluxact.runtime import StabilityError
from fluxact.tensor import TensorDiffusion

torch = pytest.importorskip("torch")
F64 = torch.float64


def _g(formula: str = "1/sqrt(1 + s2/lam**2)", **params: float):
    g = diffusivity_to_torch(formula, params=params or {"lam": 0.3}).double()
    g.backend = "torch"
    return g


def _ced_g():
    return _g("1 - exp(-C/s2)", C=1e-3)


@pytest.mark.parametrize("periodic", [False, True])
def test_smooth_is_scipys_gaussian_filter(periodic):
    """Mirrored (scipy's 'reflect', u_{-1-k} = u_k) or wrapped boundary, spacing per axis,
    kernels longer than a short axis (mirrored again)."""
    u = torch.rand(2, 1, 5, 9, dtype=F64)
    out = smooth(u, 1.5, (0.5, 1.0), periodic=periodic)
    mode = "wrap" if periodic else "reflect"
    ref = gaussian_filter1d(u.numpy(), 3.0, axis=2, mode=mode, truncate=3.0)
    ref = gaussian_filter1d(ref, 1.5, axis=3, mode=mode, truncate=3.0)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-14)
    assert torch.allclose(smooth(torch.full((1, 1, 4, 4), 2.0, dtype=F64), 3.0, (1.0, 1.0)),
                          torch.full((1, 1, 4, 4), 2.0, dtype=F64))


def _dense(block: TensorDiffusion, v: torch.Tensor) -> torch.Tensor:
    """A(D) with D = D(v) frozen, as a dense matrix on images shaped like v."""
    tensor = block.tensor(v)
    shape = v.shape[1:]
    n = math.prod(shape)
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    return block.apply(basis, tuple(t.expand(n, *t.shape[1:]) for t in tensor)).reshape(n, n)


@pytest.mark.parametrize("model, channels", [("eed", 1), ("eed", 2), ("ced", 1), ("ced", 3)])
def test_operator_is_symmetric_semidefinite_and_bounded(model, channels):
    torch.manual_seed(1)
    g = _g() if model == "eed" else _ced_g()
    block = TensorDiffusion(g, model, sigma=0.7, rho=1.5 if model == "ced" else None)
    v = torch.rand(1, channels, 6, 7, dtype=F64)
    A = _dense(block, v)
    scale = float(A.abs().max())
    assert float((A - A.T).abs().max()) <= 1e-14 * scale
    eig = torch.linalg.eigvalsh((A + A.T) / 2)
    bound = float(block.lambda_max() * block.operator.norm2_bound())
    assert float(eig.min()) >= -1e-13 * scale
    assert float(eig.max()) <= bound * (1 + 1e-12)
    # A 1 = 0: the mean grey value is kept
    assert float(A.sum(1).abs().max()) <= 1e-13 * scale
    # the step's matrix has eigenvalues in [-1, 1] at the automatic tau
    tau = float(block.time_step())
    assert tau == pytest.approx(2 / bound)
    assert float((1 - tau * eig).abs().max()) <= 1 + 1e-12


def test_identity_tensor_is_the_www_stencil():
    """g = 1 (lam huge: every D = I): A u = -((1 - a) Lap5 u + a/2 LapX u) at inner pixels,
    Lap5 the 5-point and LapX the diagonal 5-point Laplacian (Weickert, Welk, Wickert 2013)."""
    block = TensorDiffusion(_g(lam=1e12), "eed", h=0.5)
    u = torch.rand(1, 1, 7, 8, dtype=F64)
    out = block.apply(u)[0, 0, 1:-1, 1:-1]
    c = u[0, 0]
    mid = c[1:-1, 1:-1]
    lap5 = c[:-2, 1:-1] + c[2:, 1:-1] + c[1:-1, :-2] + c[1:-1, 2:] - 4 * mid
    lapx = c[:-2, :-2] + c[:-2, 2:] + c[2:, :-2] + c[2:, 2:] - 4 * mid
    expected = -((1 - WWW_ALPHA) * lap5 + WWW_ALPHA / 2 * lapx) / 0.25
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_tensor_eigenvectors():
    """EED: D w = g(|w|^2) w across the edge, D w_perp = g(0) w_perp along it; CED: D v1 =
    c v1 (across the flow), D v2 = (c + (1 - c)(1 - g(kappa)/g_max)) v2, kappa = |w|^4 for the
    rank-one J = w w^T."""
    w = torch.tensor([0.3, -1.2], dtype=F64)
    a, b, d = (x.reshape(1, 1) for x in (w[0] ** 2, w[0] * w[1], w[1] ** 2))
    perp = torch.stack([-w[1], w[0]])
    s2 = float(w @ w)
    for model, g in (("eed", _g()), ("ced", _ced_g())):
        block = TensorDiffusion(g, model)
        values = g(torch.tensor([0.0, s2, s2 * s2], dtype=F64))
        across, along = ((values[1], values[0]) if model == "eed" else
                         (0.001, 0.001 + 0.999 * (1 - values[2] / g.g_max())))
        for vec, lam in ((w, across), (perp, along)):
            ox, oy = block._diffuse(a, b, d, vec[0].reshape(1, 1), vec[1].reshape(1, 1))
            torch.testing.assert_close(torch.stack([ox, oy]).reshape(2), lam * vec)


@pytest.mark.parametrize("model", ["eed", "ced"])
def test_steps_are_euclidean_stable(model):
    torch.manual_seed(2)
    g = _g(lam=0.05) if model == "eed" else _ced_g()
    block = TensorDiffusion(g, model, sigma=1.0)
    u = torch.rand(2, 3, 24, 20, dtype=F64) * 10
    norms = [float(u.norm())]
    means = u.mean(dim=(2, 3))
    for _ in range(30):
        u = block(u)
        norms.append(float(u.norm()))
    assert all(b <= a * (1 + 1e-14) for a, b in zip(norms, norms[1:]))
    assert norms[-1] < norms[0]
    torch.testing.assert_close(u.mean(dim=(2, 3)), means)
    # above the bound is refused, with the bound in the message
    with pytest.raises(StabilityError, match="euclidean bound"):
        TensorDiffusion(g, model, tau=0.5)
    with pytest.raises(StabilityError, match="Euclidean stability notion only"):
        TensorDiffusion(g, model, stability="linf")


def test_eed_smooths_along_an_edge_not_across():
    """A noisy vertical edge: EED removes more noise along the edge than Perona-Malik at the
    same time while both keep the edge; the gradient stays finite on a flat image (J = 0)."""
    rng = np.random.default_rng(3)
    img = np.zeros((40, 40))
    img[:, 20:] = 1.0
    noisy = img + 0.05 * rng.standard_normal(img.shape)
    kw = {"params": {"lam": 0.02}, "time": 4.0}
    eed = denoise_run(noisy, "charbonnier", model="eed", sigma=1.0, **kw).output
    pm = denoise_run(noisy, "charbonnier", **kw).output
    # the edge kept: the jump across columns 19 | 20 stays near 1
    assert np.mean(eed[:, 21] - eed[:, 18]) > 0.9
    # along the edge (columns 18-21, where PM's diffusivity is small) EED smooths the noise
    assert np.std(np.diff(eed[:, 18:22], axis=0)) < 0.5 * np.std(np.diff(pm[:, 18:22], axis=0))
    block = TensorDiffusion(_g(), "eed")
    flat = torch.ones(1, 1, 8, 8, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(block(flat).square().sum(), flat)
    assert bool(torch.isfinite(grad).all())


def test_catte_is_perona_malik_on_the_smoothed_image():
    """GridDiffusion(sigma=...): the flux g(|grad u_sigma|^2) d_i u, the max-min principle at
    the automatic step, and no sigma for the per-axis flux."""
    g = _g("1/(1 + s2/lam**2)", lam=0.2)
    u = torch.rand(1, 1, 9, 11, dtype=F64)
    block = GridDiffusion(g, spacing=(1.0, 0.5), sigma=1.2)
    us = smooth(u, 1.2, (1.0, 0.5))
    dy, dx = torch.diff(us, dim=2) / 1.0, torch.diff(us, dim=3) / 0.5
    s2 = torch.zeros_like(u)
    s2[..., :-1, :] += dy ** 2
    s2[..., :, :-1] += dx ** 2
    gy, gx = g(s2)[..., :-1, :], g(s2)[..., :, :-1]
    fy, fx = block.fluxes(u)
    torch.testing.assert_close(fy, gy * torch.diff(u, dim=2) / 1.0)
    torch.testing.assert_close(fx, gx * torch.diff(u, dim=3) / 0.5)
    v = torch.rand(1, 2, 12, 10, 6, dtype=F64)
    out = GridDiffusion(g, spacing=(2.0, 1.0, 1.0), sigma=1.0).run(v, 20)
    assert float(out.min()) >= float(v.min()) and float(out.max()) <= float(v.max())
    with pytest.raises(StabilityError, match="isotropic flux"):
        GridDiffusion(_g(), coupling="uncoupled", sigma=1.0)


def test_denoise_models_and_their_errors():
    rng = np.random.default_rng(4)
    img = rng.random((16, 18))
    run = denoise_run(img, "charbonnier", params={"lam": 0.1}, time=1.0, model="eed")
    assert "EED, sigma 1" in run.summary() and "euclidean bound" in run.summary()
    colour = rng.random((12, 14, 3))
    run = denoise_run(colour, "charbonnier", params={"lam": 0.1}, time=1.0, model="ced",
                      channel_axis=-1, rho=2.0, precision="float32")
    assert run.output.shape == colour.shape and "sharing one diffusion tensor" in run.summary()
    run = denoise_run(rng.random(30), "charbonnier", params={"lam": 0.1}, time=1.0,
                      model="catte", sigma=0.5)
    assert "regularised Perona-Malik, sigma 0.5" in run.summary()
    bad = [({"model": "eed"}, rng.random((5, 6, 7)), "2D images"),
           ({"model": "eed", "spacing": (1.0, 2.0)}, img, "one grid spacing"),
           ({"model": "ced", "compile": True}, img, "compile=True"),
           ({"model": "eed", "coupling": "isotropic"}, img, "drop coupling"),
           ({"model": "eed", "boundary": "periodic"}, img, "reflecting boundary"),
           ({"model": "pm", "sigma": 1.0}, img, "sigma= smooths"),
           ({"model": "eed", "rho": 1.0}, img, "rho="),
           ({"model": "catte", "coupling": "uncoupled"}, img, "isotropic flux"),
           ({"model": "eed", "scheme": "fsi"}, img, "explicit steps"),
           ({"model": "nope"}, img, "unknown model")]
    for options, signal, message in bad:
        with pytest.raises(StabilityError, match=message):
            denoise_run(signal, "charbonnier", params={"lam": 0.1}, time=1.0, **options)


def test_ced_checks_and_diffusivities_with_a_flat_derivative_at_zero():
    """coherence_alpha is checked whenever the bound is used (not only when built); CED
    refuses a g with g(0) < g_max; g = 1 - exp(-C/s2), whose printed derivative at 0 is
    0 * inf, gives finite EED steps on a step edge and finite CED gradients on a flat image;
    a sigma wider than the image is refused with one line."""
    block = TensorDiffusion(_ced_g(), "ced")
    block.coherence_alpha = 3.0
    with pytest.raises(StabilityError, match="coherence_alpha"):
        block(torch.rand(1, 1, 8, 8, dtype=F64))
    with pytest.raises(StabilityError, match="g\\(0\\) = g_max"):
        TensorDiffusion(diffusivity_to_torch("s2/(1 + s2)").double(), "ced")
    edge = np.zeros((12, 12))
    edge[:, 6:] = 1.0
    out = denoise_run(edge, "1 - exp(-C/s2)", "diffusivity", params={"C": 1e-3},
                      convention="s2", model="eed", time=2.0).output
    assert np.isfinite(out).all()
    flat = torch.ones(1, 1, 8, 8, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(TensorDiffusion(_ced_g(), "ced")(flat).sum(), flat)
    assert bool(torch.isfinite(grad).all())
    with pytest.raises(StabilityError, match="smooth the image to its mean"):
        TensorDiffusion(_g(), "eed", sigma=1e6)(torch.rand(1, 1, 8, 8, dtype=F64))
    with pytest.raises(StabilityError, match="smooth the image to its mean"):
        smooth(torch.rand(1, 1, 8, 8, dtype=F64), math.inf, (1.0, 1.0))
