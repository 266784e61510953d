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


def test_fused_is_refused_where_there_is_no_kernel() -> None:
    act = fluxact.to_torch("r*exp(-r**2/(2*lam**2))", "activation", params={"lam": 0.2},
                           backend="torch")
    with pytest.raises(StabilityError, match="fused=True runs the per-axis flux"):
        GridDiffusion(act, coupling="uncoupled", spacing=(1.0, 1.0, 1.0), fused=True)
    with pytest.raises(StabilityError, match="fused=True runs the per-axis flux"):
        GridDiffusion(act, coupling="uncoupled", spacing=(1.0, 1.0), fused=True)
