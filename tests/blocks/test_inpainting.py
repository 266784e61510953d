"""Diffusion inpainting (fluxact/inpainting.py, issue 17 part 1): the CG reference solver
against scipy's sparse direct solver on homogeneous diffusion inpainting, EED inpainting's
residual, the transfers, the coarse problem, fluxact.inpaint and `fluxact inpaint`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from fluxact.activation import diffusivity_to_torch
from fluxact.cli import main
from fluxact.denoising import SignalError
from fluxact.inpainting import Inpainting, as_mask, inpaint, inpaint_run, solve_cg
from fluxact.multigrid import prolong, restrict, restrict_mask
from fluxact.operators import WWW_ALPHA
from fluxact.runtime import StabilityError
from fluxact.tensor import TensorDiffusion

torch = pytest.importorskip("torch")
F64 = torch.float64


def _www_laplacian(h: int, w: int, alpha: float = WWW_ALPHA) -> sp.csr_matrix:
    """The www stencil's matrix for D = I, assembled cell by cell here: on each 2 x 2 cell
    (a, b / c, d) the energy (1 - alpha)/2 (sum of the four edges' squared differences)/2 +
    alpha/2 ((d - a)^2 + (c - b)^2)/2, i.e. weight (1 - alpha)/2 per edge and alpha/2 per
    diagonal in the Laplacian."""
    rows, cols, vals = [], [], []

    def couple(p: int, q: int, weight: float) -> None:
        rows.extend([p, q, p, q])
        cols.extend([p, q, q, p])
        vals.extend([weight, weight, -weight, -weight])

    for i in range(h - 1):
        for j in range(w - 1):
            a, b, c, d = i * w + j, i * w + j + 1, (i + 1) * w + j, (i + 1) * w + j + 1
            for p, q in ((a, b), (c, d), (a, c), (b, d)):
                couple(p, q, (1 - alpha) / 2)
            couple(a, d, alpha / 2)
            couple(b, c, alpha / 2)
    return sp.csr_matrix((vals, (rows, cols)), shape=(h * w, h * w))


def _disc(n: int = 48) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(n, dtype=F64), torch.arange(n, dtype=F64),
                          indexing="ij")
    return (((x - 0.45 * n) ** 2 + (y - 0.55 * n) ** 2) < (0.3 * n) ** 2).to(F64).reshape(
        1, 1, n, n)


def _mask(shape, density: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).to(F64)


def test_cg_equals_a_sparse_direct_solve_on_homogeneous_inpainting():
    """g = 1: one CG solve on the unknown pixels equals spsolve of (C + (I - C) L) u = C f,
    L assembled independently, to 1e-8."""
    h, w = 30, 37
    torch.manual_seed(3)
    f = torch.rand(1, 1, h, w, dtype=F64)
    c = _mask((1, 1, h, w), 0.05)
    problem = Inpainting(f, c, TensorDiffusion(None, "linear"))
    u, info = solve_cg(problem, tol=1e-13)
    L = _www_laplacian(h, w)
    cv, fv = c.reshape(-1).numpy(), f.reshape(-1).numpy()
    reference = spsolve((sp.diags(cv) + sp.diags(1 - cv) @ L).tocsc(), cv * fv)
    assert info.converged and info.outer == 1
    assert np.abs(u.reshape(-1).numpy() - reference).max() <= 1e-8
    # the matrix-free L is the assembled one
    basis = torch.eye(h * w, dtype=F64)[:120].reshape(120, 1, h, w)
    np.testing.assert_allclose(problem.laplacian(basis).reshape(120, -1).numpy(),
                               L[:120].toarray(), atol=1e-15)


def test_eed_inpainting_residual_and_lagged_cg():
    g = diffusivity_to_torch("1/sqrt(1 + s2/lam**2)", params={"lam": 0.93}).double()
    f = _disc()
    c = _mask(f.shape, 0.2, seed=1)
    problem = Inpainting(f, c, TensorDiffusion(g, "eed", sigma=0.97))
    u, info = solve_cg(problem, tol=1e-12, outer_tol=1e-11)
    assert info.converged and info.outer > 1  # D follows u: more than one lagged solve
    assert info.residual <= 1e-9
    # the residual is P2 29's left-hand side: (1 - c) div(D grad u) - c (u - f)
    v = torch.rand_like(f)
    by_hand = (1 - c) * -problem.laplacian(v) - c * (v - f)
    torch.testing.assert_close(problem.residual(v), by_hand)
    assert torch.equal(u[c > 0], f[c > 0])  # the known pixels are data
    # EED fills the disc: the inpainted image is nearer f than the mean of the known values
    mean = float(f[c > 0].mean())
    assert float((u - f).abs().mean()) < 0.5 * float((mean - f).abs().mean())


def test_transfers_and_the_coarse_problem():
    x = torch.rand(2, 3, 7, 9, dtype=F64)
    coarse = restrict(x)
    assert coarse.shape == (2, 3, 4, 5)
    torch.testing.assert_close(coarse[..., 0, 0], x[..., :2, :2].mean(dim=(-2, -1)))
    torch.testing.assert_close(coarse[..., 3, 4], x[..., 6, 8])  # a corner cell of one pixel
    # nearest neighbour: R P = I; bilinear: constants and (inside) linear functions kept
    torch.testing.assert_close(restrict(prolong(coarse, (8, 10))), coarse)
    torch.testing.assert_close(prolong(torch.ones(1, 1, 4, 5, dtype=F64), (7, 9), "bilinear"),
                               torch.ones(1, 1, 7, 9, dtype=F64))
    ramp = torch.arange(6, dtype=F64).reshape(1, 1, 1, 6).expand(1, 1, 6, 6)
    fine = prolong(ramp, (12, 12), "bilinear")
    centres = (torch.arange(12, dtype=F64) - 0.5) / 2  # fine centres in coarse units
    torch.testing.assert_close(fine[0, 0, 0, 1:-1], centres[1:-1])
    c = torch.zeros(1, 1, 4, 4, dtype=F64)
    c[0, 0, 1, 2] = 1
    assert restrict_mask(c).reshape(-1).tolist() == [0, 1, 0, 0]
    f = torch.arange(16, dtype=F64).reshape(1, 1, 4, 4)
    c[0, 0, 0, 3] = 1
    problem = Inpainting(f, c, TensorDiffusion(None, "linear", h=0.5)).coarse()
    assert problem.diffusion.h == 1.0
    assert problem.mask.reshape(-1).tolist() == [0, 1, 0, 0]
    assert float(problem.image[0, 0, 0, 1]) == (6 + 3) / 2  # the mean of the known values


def test_inpaint_api_and_its_errors():
    rng = np.random.default_rng(5)
    f = _disc(32)[0, 0].numpy()
    mask = rng.random(f.shape) < 0.2
    run = inpaint_run(f, mask, solver="multigrid", tol=1e-9)
    assert run.info.converged and "EED inpainting" in run.summary()
    reference = inpaint(f, mask, tol=1e-11)
    assert np.abs(run.output - reference).max() <= 1e-6
    colour = np.stack([f, 1 - f, f / 2], -1)
    out = inpaint(colour, mask, channel_axis=-1, model="homogeneous")
    assert out.shape == colour.shape
    assert np.array_equal(out[mask], colour[mask])
    for bad, message in ((np.zeros(f.shape), "no known pixel"),
                         (np.ones((4, 4)), "has shape"),
                         (np.full(f.shape, 1.5), r"in \[0, 1\]"),
                         (np.full(f.shape, np.nan), "not finite")):
        with pytest.raises(SignalError, match=message):
            inpaint(f, bad)
    assert as_mask(np.full(f.shape, 200, dtype=np.uint8), f.shape).all()  # 8-bit masks
    with pytest.raises(StabilityError, match="unknown solver"):
        inpaint(f, mask, solver="jacobi")
    with pytest.raises(SignalError, match="2D images"):
        inpaint(np.zeros((4, 5, 6)), np.ones((4, 5, 6)))
    with pytest.raises(StabilityError, match="no diffusivity"):
        inpaint(f, mask, "perona-malik", model="homogeneous")
    with pytest.raises(StabilityError, match="below 1"):
        inpaint(f, mask, tol=5.0)
    with pytest.raises(StabilityError, match="levels="):
        inpaint(f, mask, levels=3)
    with pytest.raises(StabilityError, match=r"g\(0\) > 0"):
        inpaint(f, mask, "s2/(1 + s2)", "diffusivity", convention="s2")
    # integer masks: 0/1 in any integer type, 0/255 in uint8
    ones = mask.astype(np.int64)
    np.testing.assert_array_equal(as_mask(ones, f.shape), ones)
    np.testing.assert_array_equal(as_mask(ones.astype(np.uint8) * 255, f.shape), ones)
    big_endian = (ones * 65535).astype(">u2")  # a 16-bit mask in either byte order
    np.testing.assert_array_equal(as_mask(big_endian, f.shape), ones)
    with pytest.raises(SignalError, match=r"in \[0, 1\]"):
        as_mask(ones * 255, f.shape)
    # a float32 network gets float32 inputs; its output comes back as float64
    assert inpaint(f, mask, solver=_Float32Net()).dtype == np.float64


class _Float32Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, masked, mask):
        assert masked.dtype == mask.dtype == torch.float32
        return self.conv(torch.cat([masked, mask], 1))


def test_cg_that_does_not_converge_says_so():
    f = _disc(32)
    problem = Inpainting(f, _mask(f.shape, 0.05), TensorDiffusion(None, "linear"))
    _, info = solve_cg(problem, max_cg=5)
    assert not info.converged and info.inner == 5


def test_inpaint_command_line(tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(6)
    pixels = np.where(_disc(32)[0, 0].numpy() > 0, 200, 40).astype(np.uint8)
    pil.fromarray(pixels).save(tmp_path / "in.png")
    pil.fromarray(((rng.random(pixels.shape) < 0.3) * 255).astype(np.uint8)).save(
        tmp_path / "mask.png")
    pil.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    out = tmp_path / "out.png"
    code = main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), str(out),
                 "--model", "homogeneous", "--solver", "multigrid"])
    printed = capsys.readouterr().out
    assert code == 0 and "homogeneous inpainting" in printed and ", converged;" in printed
    assert np.asarray(pil.open(out)).dtype == np.uint8
    out.write_bytes(b"keep")
    for args, message in (
            (["small.png"], "mask has shape"),
            (["mask.png", "--param", "lam=3"], "--param needs a formula"),
            (["mask.png", "--levels", "3"], "--levels"),
            (["mask.png", "--solver", "multigrid", "--levels", "9"], "at most 5 levels")):
        code = main(["inpaint", str(tmp_path / "in.png"), str(tmp_path / args[0]), str(out),
                     *args[1:]])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert out.read_bytes() == b"keep"  # a refused run leaves the output alone
    # a 0/1 8-bit PNG mask and a 0/255 uint8 .npy mask are read as the same mask
    marks = (rng.random(pixels.shape) < 0.3).astype(np.uint8)
    pil.fromarray(marks).save(tmp_path / "ones.png")
    np.save(tmp_path / "mask.npy", marks * 255)
    outputs = []
    for name in ("ones.png", "mask.npy"):
        target = tmp_path / f"from_{name}.npy"
        np.save(tmp_path / "in.npy", pixels.astype(np.float64))
        code = main(["inpaint", str(tmp_path / "in.npy"), str(tmp_path / name), str(target),
                     "--model", "homogeneous", "--quiet"])
        assert code == 0, capsys.readouterr().err
        outputs.append(np.load(target))
    np.testing.assert_array_equal(outputs[0], outputs[1])
