"""The generated Triton kernels of the coupled activations (isotropic over operator, image and
scale channels; anisotropic with the closed-form 2 x 2 eigen-decomposition; uncoupled) and
the fused coupled 2D step, against the float64 torch path: under TRITON_INTERPRET=1 on the
CPU (tests/conftest.py), compiled on a GPU."""

from __future__ import annotations

import pytest

from fluxact.activation import diffusivity_to_torch
from fluxact.coupling import CoupledActivation, CoupledDiffusionBlock2D, MultiscaleDiffusionBlock2D
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F64 = torch.float64
PM = "1/(1 + s2/lam**2)"
CHARBONNIER = "1/sqrt(1 + s2/lam**2)"


def pair(formula: str = PM, lam: float = 1.5):
    """The same g twice: generated Triton kernels and the generated torch code."""
    kw = {"params": {"lam": lam}, "trainable": ("lam",)}
    tri = diffusivity_to_torch(formula, backend="triton", **kw).to(DEVICE, F64)
    ref = diffusivity_to_torch(formula, backend="torch", **kw).to(DEVICE, F64)
    return tri, ref


def compare(a_fn, b_fn, x: torch.Tensor, params: tuple[torch.Tensor, torch.Tensor],
            tol: float) -> None:
    """Values and gradients (of x and of lam) of two functions agree."""
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya, yb = a_fn(xa), b_fn(xb)
    torch.testing.assert_close(ya, yb, rtol=tol, atol=tol)
    w = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, (xa, params[0]), w)
    gb = torch.autograd.grad(yb, (xb, params[1]), w)
    for p, q in zip(ga, gb):
        torch.testing.assert_close(p, q, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("mode", ["isotropic", "anisotropic", "uncoupled"])
@pytest.mark.parametrize("couple_images", [True, False])
@pytest.mark.parametrize("formula", [PM, CHARBONNIER])
def test_activation_kernels_match_torch(mode: str, couple_images: bool, formula: str) -> None:
    torch.manual_seed(1)
    tri, ref = pair(formula)
    a = CoupledActivation(tri, mode, couple_images)
    b = CoupledActivation(ref, mode, couple_images)
    # (B, M, c, H, W): 3 image channels, 2 gradient vectors (4 channels), 1100 pixels span two
    # programs of 1024
    s = torch.randn(2, 3, 4, 20, 55, dtype=F64, device=DEVICE) * 2
    compare(a, b, s, (tri.lam, ref.lam), 1e-11)


def test_anisotropic_kernel_where_eigenvalues_coincide() -> None:
    """J = 0, J = nu I, J of rank one: finite values and gradients, equal to the torch path."""
    tri, ref = pair(PM, 0.8)
    a, b = CoupledActivation(tri, "anisotropic"), CoupledActivation(ref, "anisotropic")
    s = torch.zeros(1, 2, 2, 3, 4, dtype=F64, device=DEVICE)
    s[0, 0, 0, 1] = 1.0        # pixel row 1: s_1 = (1, 0), s_2 = (0, 1): J = I
    s[0, 1, 1, 1] = 1.0
    s[0, 0, :, 2] = 0.7        # pixel row 2: J of rank one
    compare(a, b, s, (tri.lam, ref.lam), 1e-11)
    assert torch.isfinite(a(s)).all()
    # J = nu I exactly: g(J) = g(nu) I, the kernel's dL/dJ = g'(nu) Gamma
    x = s.clone().requires_grad_()
    torch.autograd.gradcheck(lambda t: a(t), (x,))


def test_activation_kernels_gradcheck_and_half_precision() -> None:
    tri, torch_g = pair(CHARBONNIER, 1.1)
    for mode in ("isotropic", "anisotropic"):
        phi = CoupledActivation(tri, mode)
        s = torch.randn(1, 2, 2, 2, 3, dtype=F64, device=DEVICE, requires_grad=True)
        assert torch.autograd.gradcheck(phi, (s,))
        lam = tri.lam

        def of_lam(v: torch.Tensor, phi: CoupledActivation = phi) -> torch.Tensor:
            with torch.no_grad():
                lam.copy_(v)
            return phi(s.detach())

        out = phi(s.detach())
        (grad,) = torch.autograd.grad(out, lam, torch.ones_like(out))
        eps = 1e-6
        value = float(lam.detach())
        numeric = ((of_lam(torch.tensor(value + eps, dtype=F64)).sum()
                    - of_lam(torch.tensor(value - eps, dtype=F64)).sum()) / (2 * eps))
        of_lam(torch.tensor(value, dtype=F64))
        torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-8)
    # float32 in, float32 out, computed in float32 inside (bf16 and fp16 on a GPU)
    dtypes = [torch.float32] + ([torch.bfloat16, torch.float16] if DEVICE == "cuda" else [])
    for dt in dtypes:
        phi32 = CoupledActivation(tri, "anisotropic")
        s = torch.randn(2, 2, 2, 8, 8, device=DEVICE).to(dt)
        ref = CoupledActivation(torch_g, "anisotropic")(s.double())
        out = phi32(s)
        assert out.dtype == dt
        tol = 2e-5 if dt == torch.float32 else 3e-2
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("couple_images", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 3, 300), (1, 1, 2, 2), (1, 2, 17, 5)])  # 300: two
# programs of 256 columns
def test_fused_coupled_step_matches_the_block(couple_images: bool, shape: tuple[int, ...]
                                              ) -> None:
    torch.manual_seed(2)
    tri, ref = pair(PM, 2.0)
    fused = CoupledDiffusionBlock2D(tri, couple_images=couple_images, fused=True, h=0.7,
                                    safety=0.9)
    plain = CoupledDiffusionBlock2D(ref, couple_images=couple_images, fused=False, h=0.7,
                                    safety=0.9)
    u = torch.randn(*shape, dtype=F64, device=DEVICE) * 3
    compare(fused, plain, u, (tri.lam, ref.lam), 1e-11)


def test_fused_coupled_step_gradcheck_and_tau_gradient() -> None:
    tri, _ = pair(CHARBONNIER, 1.3)
    block = CoupledDiffusionBlock2D(tri, fused=True)
    u = torch.randn(1, 2, 2, 3, dtype=F64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(block, (u,))
    from fluxact import runtime

    p = tri.parameter_vector().detach().clone().requires_grad_()
    tau = torch.tensor(0.2, dtype=F64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, q, t: runtime.coupled_step2d(tri.ops, x, q, t, 1.0, True),
        (u.detach(), p, tau))


def test_multiscale_block_on_the_kernels() -> None:
    torch.manual_seed(3)
    tri, ref = pair(PM, 3.0)
    for mode in ("isotropic", "anisotropic", "uncoupled"):
        a = MultiscaleDiffusionBlock2D(tri, (0.5, 1.5), mode=mode).to(DEVICE, F64)
        b = MultiscaleDiffusionBlock2D(ref, (0.5, 1.5), mode=mode).to(DEVICE, F64)
        u = torch.randn(2, 2, 12, 12, dtype=F64, device=DEVICE) * 5
        torch.testing.assert_close(a(u), b(u), rtol=1e-11, atol=1e-11)


def test_fused_refusals() -> None:
    _, ref = pair()
    with pytest.raises(StabilityError, match="fused=True needs"):
        CoupledDiffusionBlock2D(ref, mode="anisotropic", fused=True)
    with pytest.raises(StabilityError, match="fused=True needs"):
        CoupledDiffusionBlock2D(ref, fused=True)  # a torch-backend g


def test_anisotropic_accuracy_far_from_the_contrast() -> None:
    """One gradient vector makes J of rank one and g(J) s = g(|s|^2) s: the eigenvector form
    has no cancellation, so |s| >> lam keeps float32 accuracy; J is scaled by its trace, so
    |s| = 1e10 (J = 1e20) does not overflow into Phi(s) = s."""
    tri, ref = pair(PM, 1.5)
    for g in (tri, ref):
        aniso = CoupledActivation(g.float(), "anisotropic")
        iso = CoupledActivation(g.float(), "isotropic")
        for scale in (1.0, 1e2, 1e3, 1e4, 1e10):
            s = torch.tensor([0.6, 0.8], device=DEVICE).reshape(1, 1, 2, 1, 1) * scale
            torch.testing.assert_close(aniso(s), iso(s), rtol=2e-6, atol=0)
        g.double()


def test_anisotropic_gradients_near_coinciding_eigenvalues() -> None:
    """Against the exact matrix function g(J) = (I + J / lam^2)^-1 of rational Perona-Malik,
    differentiated by autograd, on J whose relative eigenvalue gap runs across the threshold
    (2e-8 in float64)."""
    tri, _ = pair(PM, 1.5)
    phi = CoupledActivation(tri, "anisotropic")
    lam = torch.tensor(1.5, dtype=F64, device=DEVICE, requires_grad=True)
    for gap in (1e-3, 1e-6, 3e-8, 1e-8, 1e-10, 0.0):
        # two vectors: J = diag(1 + gap, 1) rotated by 0.3
        c, s_ = torch.cos(torch.tensor(0.3, dtype=F64)), torch.sin(torch.tensor(0.3, dtype=F64))
        e1 = torch.stack([c, s_]) * (1 + gap) ** 0.5
        e2 = torch.stack([-s_, c])
        s = torch.stack([e1, e2]).reshape(1, 2, 2, 1, 1).to(DEVICE).requires_grad_()
        w = torch.tensor([0.3, -1.1, 0.7, 0.2], dtype=F64, device=DEVICE).reshape(1, 2, 2, 1, 1)
        got = torch.autograd.grad((phi(s) * w).sum(), (s, tri.lam))
        vec = s.reshape(2, 2)
        J = vec.T @ vec
        exact = torch.linalg.solve(torch.eye(2, dtype=F64, device=DEVICE) + J / lam**2, vec.T).T
        want = torch.autograd.grad((exact.reshape(1, 2, 2, 1, 1) * w).sum(), (s, lam))
        for x, y in zip(got, want):
            torch.testing.assert_close(x, y, rtol=1e-7, atol=1e-7)


def test_kernels_use_64_bit_channel_offsets() -> None:
    """channel * pixels can exceed 2^31 (240 coupled channels of a 3000 x 3000 image): the
    kernels scale channel indices by a 64-bit copy of the pixel count."""
    import inspect

    from fluxact.kernels import coupled

    source = inspect.getsource(coupled)
    lanes = source.split("def _group_lanes(")[1].split("@triton.jit")[0]
    assert "n = N + 0 * pid" in lanes and "* n + i" in lanes and "* N" not in lanes
    for kernel in ("iso_fwd", "iso_bwd", "aniso_fwd", "aniso_bwd"):
        body = source.split(f"def {kernel}(")[1].split("@triton.jit")[0]
        code = "\n".join(line.split("#")[0] for line in body.splitlines())
        # the offsets scale by _n, the 64-bit copy _group_lanes returns, never by _N
        assert "_n, _base, _mask" in code and "* _N" not in code


def test_fused_step_refuses_what_the_unfused_step_refuses() -> None:
    tri, _ = pair()
    with pytest.raises(StabilityError, match="smaller than the stencil"):
        CoupledDiffusionBlock2D(tri, fused=True)(torch.zeros(1, 2, 1, 6, dtype=F64))


def test_anisotropic_activation_where_g_has_no_finite_slope_at_zero() -> None:
    """g = 1/(1 + sqrt(s2)/lam) has g'(0) = -inf; where J = 0 the first-order term
    g'(mean) (J - mean I) s is 0, not -inf * 0 = NaN, on both paths."""
    tri, ref = pair("1/(1 + sqrt(s2)/lam)", 0.5)
    s = torch.zeros(1, 1, 4, 3, 3, dtype=F64, device=DEVICE)
    s[..., 0, 0] = 1.0
    for g in (tri, ref):
        out = CoupledActivation(g, "anisotropic")(s)
        assert bool(torch.isfinite(out).all())
        assert not bool(out[..., 1:, 1:].any())  # J = 0 and s = 0 there


def test_gradients_where_g_has_no_finite_slope_at_zero() -> None:
    """Rank-one J (one gradient vector: nu2 = 0) and J = 0 with g'(0) = -inf: the gradients
    of the anisotropic activation are finite and the same on both paths (the true derivative
    through nu2 is 0 there: J stays rank one), and EED's step has finite gradients too."""
    from fluxact.tensor import TensorDiffusion

    tri, ref = pair("1/(1 + sqrt(s2)/lam)", 0.5)
    torch.manual_seed(3)
    s = torch.zeros(1, 1, 2, 4, 4, dtype=F64, device=DEVICE)
    s[..., :2, :2] = torch.rand(1, 1, 2, 2, 2, dtype=F64, device=DEVICE)
    compare(CoupledActivation(tri, "anisotropic"), CoupledActivation(ref, "anisotropic"), s,
            (tri.lam, ref.lam), 1e-10)
    u = torch.zeros(1, 1, 10, 10, dtype=F64)
    u[..., 5:] = 1.0
    u = (u + 0.01 * torch.rand_like(u)).requires_grad_()
    cpu = diffusivity_to_torch("1/(1 + sqrt(s2)/lam)", params={"lam": 0.5},
                               backend="torch").double()
    (grad,) = torch.autograd.grad(TensorDiffusion(cpu, "eed")(u).square().sum(), u)
    assert bool(torch.isfinite(grad).all())
