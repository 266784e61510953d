"""The fused 3D step (fluxact/kernels/step3d.py, issue 16): GridDiffusion with the per-axis
flux on volumes, one generated Triton kernel per step, under TRITON_INTERPRET=1 on the CPU
(compiled on a GPU): the torch path's values and gradients (input, parameters, and tau where
it depends on them), with voxel spacing, channels, both boundaries and the max-min clamp."""

from __future__ import annotations

import pytest

import fluxact
from fluxact.grid import GridDiffusion
from fluxact.kernels.launch import interpreting
from fluxact.runtime import StabilityError

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() or interpreting()),
                                reason="Triton needs a GPU or TRITON_INTERPRET=1")


def _pair(formula: str, params: dict, trainable: tuple[str, ...], **options):
    act = fluxact.to_torch(formula, "activation", params=params, trainable=trainable,
                           backend="triton").to(DEVICE)
    ref = act.clone()
    ref.backend = "torch"
    return (act, GridDiffusion(act, coupling="uncoupled", fused=True, **options),
            ref, GridDiffusion(ref, coupling="uncoupled", fused=False, **options))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
@pytest.mark.parametrize("stability", ["linf", "euclidean"])
def test_fused_3d_step_equals_the_torch_path(dtype, tol, boundary, stability) -> None:
    """a tanh(r/b) with a and b trainable: g_max = a/b, so tau = 1/(2 g_max sum 1/h^2)
    carries gradients to both, through the kernel's dL/dtau as well as dL/dp."""
    act, fused, ref, plain = _pair("a*tanh(r/b)", {"a": 1.3, "b": 0.4}, ("a", "b"),
                                   spacing=(2.0, 1.0, 0.5), boundary=boundary,
                                   stability=stability)
    gen = torch.Generator().manual_seed(0)
    u = (torch.rand(2, 3, 5, 6, 7, generator=gen, dtype=torch.float64) * 4).to(DEVICE, dtype)
    w = torch.rand(u.shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    grads = []
    for module, block in ((act, fused), (ref, plain)):
        x = u.clone().requires_grad_(True)
        y = block(x)
        gx, ga, gb = torch.autograd.grad((y * w).sum(), [x, module.a, module.b])
        grads.append((y.detach(), gx, ga, gb))
    for got, want in zip(*grads):
        torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)
    assert float(grads[0][2].abs()) > 0 and float(grads[0][3].abs()) > 0


def test_fused_runs_keep_the_max_min_principle() -> None:
    """20 fused steps at the bound: every value stays in its volume's [min, max]."""
    _, fused, _, plain = _pair("r*exp(-r**2/(2*lam**2))", {"lam": 0.2}, (),
                               spacing=(1.0, 1.0, 1.0))
    u = torch.rand(1, 1, 6, 7, 8, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1)).to(DEVICE)
    with torch.no_grad():
        out = fused.run(u, 20)
        torch.testing.assert_close(out, plain.run(u, 20), rtol=1e-12, atol=1e-12)
    assert float(out.min()) >= float(u.min()) and float(out.max()) <= float(u.max())


@pytest.mark.parametrize("boundary", ["reflect", "periodic"])
def test_the_kernels_clamp_is_the_stencil_range(boundary) -> None:
    """At 3 times the bound the unclamped step leaves its stencil's range; the kernel's clamp
    (CLAMP) then gives exactly the torch step clamped to stencil_range."""
    from fluxact.operators import clamp_finite, stencil_range
    from fluxact.runtime import step

    act = fluxact.to_torch("r*exp(-r**2/(2*lam**2))", "activation", params={"lam": 2.0},
                           backend="triton").to(DEVICE)
    u = torch.rand(2, 1, 5, 6, 7, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(2)).to(DEVICE)
    periodic = boundary == "periodic"
    tau = torch.tensor(3 * 1 / 6, dtype=torch.float64)  # the bound is 1/6 (g_max = 1, h = 1)
    with torch.no_grad():
        free = step(act.ops, u, act.parameter_vector(), tau, (1.0, 1.0, 1.0), periodic, 3)
        clamped = step(act.ops, u, act.parameter_vector(), tau, (1.0, 1.0, 1.0), periodic, 3,
                       clamp=True)
        lo, hi = stencil_range(u, 3, periodic)
    assert bool(((free < lo) | (free > hi)).any())  # the clamp has something to do
    torch.testing.assert_close(clamped, clamp_finite(free, lo, hi), rtol=0, atol=1e-15)
    with pytest.raises(fluxact.ActivationError, match="takes 3 value"):
        step(act.ops, u, act.parameter_vector(), tau, 1.0, periodic, 3)


def test_fused_is_refused_where_there_is_no_kernel() -> None:
    triton_act = fluxact.to_torch("r*exp(-r**2/(2*lam**2))", "activation", params={"lam": 0.2},
                                  backend="triton")
    torch_act = triton_act.clone()
    torch_act.backend = "torch"
    for act, spacing in ((torch_act, (1.0, 1.0, 1.0)), (triton_act, (1.0, 1.0))):
        with pytest.raises(StabilityError, match="fused=True runs the per-axis flux"):
            GridDiffusion(act, coupling="uncoupled", spacing=spacing, fused=True)
    g = fluxact.activation.diffusivity_to_torch("exp(-s2/(2*lam**2))", params={"lam": 0.2})
    with pytest.raises(StabilityError, match="fused=True runs the per-axis flux"):
        GridDiffusion(g, coupling="isotropic", spacing=(1.0, 1.0, 1.0), fused=True)
    # fused=None: the kernel only on CUDA tensors
    block = GridDiffusion(triton_act, coupling="uncoupled", spacing=(1.0, 1.0, 1.0))
    assert block._use_fused(torch.zeros(1, 1, 2, 2, 2)) is False
