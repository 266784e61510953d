"""Checkpoints and export of models built from generated activations (issue 18): the
state_dict into a freshly built model in a new process, the whole model pickled where its
activation comes from a build-time package (and one clear error where it was generated at
run time), copy.deepcopy, and torch.export round trips on the CPU."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fluxact
from fluxact.blocks import DiffusionBlock, SymmetricResNet
from fluxact.cli import main as cli_main
from fluxact.runtime import ActivationError

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
BUILD = '''import torch, fluxact
from fluxact.blocks import SymmetricResNet
act = fluxact.to_torch(fluxact.lookup("perona-malik"), params={"lam": 2.0}, trainable=("lam",))
torch.manual_seed(0)
model = SymmetricResNet(act, 3, channels=2)
'''


def _python(code: str, *paths: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, paths)])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _model() -> torch.nn.Module:
    namespace: dict = {}
    exec(BUILD, namespace)  # the same code as in the new process
    return namespace["model"]


def test_state_dict_into_a_fresh_model_in_a_new_process(tmp_path):
    model = _model()
    with torch.no_grad():  # trained values (lam included), not those it is built with
        for p in model.parameters():
            p.add_(0.01)
    x = torch.rand(4, 2, 32)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save({"x": x, "y": model(x).detach()}, tmp_path / "io.pt")
    out = _python(BUILD + f'''
io = torch.load({str(tmp_path / "io.pt")!r})
fresh = float((model(io["x"]) - io["y"]).abs().max())
model.load_state_dict(torch.load({str(tmp_path / "model.pt")!r}))
print(fresh, float((model(io["x"]) - io["y"]).abs().max()))
''')
    fresh, loaded = map(float, out.split())
    assert fresh > 0 and loaded == 0.0


def test_whole_model_pickles_only_with_a_build_time_activation(tmp_path):
    model = _model()
    with pytest.raises(ActivationError, match="state_dict.*fluxact build"):
        torch.save(model, tmp_path / "whole.pt")
    twin = copy.deepcopy(model)  # never pickles: still works
    x = torch.rand(2, 2, 16)
    assert torch.equal(twin(x), model(x))
    spec = ROOT / "examples" / "build_time_kernels" / "activations.toml"
    assert cli_main(["build", str(spec), "--out", str(tmp_path / "kernels")]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        import kernels

        act = kernels.PeronaMalik(lam=1.5)
    finally:
        sys.path.remove(str(tmp_path))
    block = SymmetricResNet(act, 2, channels=1)
    torch.save(block, tmp_path / "whole.pt")
    torch.save({"x": x[:, :1], "y": block(x[:, :1]).detach()}, tmp_path / "io.pt")
    out = _python(f'''import torch
model = torch.load({str(tmp_path / "whole.pt")!r}, weights_only=False)
io = torch.load({str(tmp_path / "io.pt")!r})
print(float((model(io["x"]) - io["y"]).abs().max()))
''', tmp_path)
    assert float(out) == 0.0
    for name in [m for m in sys.modules if m == "kernels" or m.startswith("kernels.")]:
        del sys.modules[name]


@pytest.mark.parametrize("which", ["resnet", "block"])
def test_torch_export_round_trip(which):
    torch.manual_seed(1)
    act = fluxact.to_torch(fluxact.lookup("charbonnier"), params={"lam": 0.7},
                           trainable=("lam",), backend="torch")
    if which == "resnet":
        model = SymmetricResNet(act, 3, channels=2)
        x = torch.rand(3, 2, 24)
    else:
        model = DiffusionBlock(act, fluxact.Operator.forward_difference(1, 1))
        x = torch.rand(3, 1, 24)
    program = torch.export.export(model, (x,))
    y = torch.rand_like(x)
    torch.testing.assert_close(program.module()(y), model(y), rtol=0, atol=0)


# torch's own deprecation, raised inside aoti_compile_and_package (torch 2.13)
@pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec.*:FutureWarning")
def test_aotinductor_package_runs_without_fluxact(tmp_path):
    """torch.export, then AOTInductor compiles the SymmetricResNet into a .pt2 package (a
    C++ compiler is needed: g++ here), which a new process that cannot import fluxact loads
    and runs, giving the model's output to the last bit."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("AOTInductor needs a C++ compiler")
    torch.manual_seed(1)
    act = fluxact.to_torch(fluxact.lookup("charbonnier"), params={"lam": 0.7},
                           trainable=("lam",), backend="torch")
    model = SymmetricResNet(act, 3, channels=2)
    x = torch.rand(3, 2, 24)
    program = torch.export.export(model, (x,))
    package = torch._inductor.aoti_compile_and_package(
        program, package_path=str(tmp_path / "model.pt2"))
    y = torch.rand_like(x)
    torch.save({"y": y, "want": model(y).detach()}, tmp_path / "io.pt")
    out = _python(f'''
import sys
sys.modules["fluxact"] = None  # the package needs torch only
import torch
io = torch.load({str(tmp_path / "io.pt")!r})
run = torch._inductor.aoti_load_package({package!r})
print(float((run(io["y"]) - io["want"]).abs().max()))
''')
    assert float(out.split()[-1]) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="the Triton path is traced into the graph on a GPU only (under "
                    "TRITON_INTERPRET=1 export reaches the interpreter with fake tensors)")
@pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec.*:FutureWarning")
def test_export_of_the_triton_path_on_cuda(tmp_path):
    """torch.export of a DiffusionBlock whose step is the fused Triton kernel (a
    torch.library.triton_op): the op stays in the graph, the exported program gives the
    block's output, and so does its AOTInductor package."""
    act = fluxact.to_torch(fluxact.lookup("charbonnier"), params={"lam": 0.7},
                           trainable=("lam",))
    model = DiffusionBlock(act).cuda()
    x = torch.rand(3, 1, 64, device="cuda")
    program = torch.export.export(model, (x,))
    assert "fluxact" in str(program.graph), program.graph
    y = torch.rand_like(x)
    want = model(y).detach()
    torch.testing.assert_close(program.module()(y), want, rtol=0, atol=0)
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("exported; AOTInductor needs a C++ compiler, which this machine lacks")
    package = torch._inductor.aoti_compile_and_package(
        program, package_path=str(tmp_path / "block.pt2"))
    run = torch._inductor.aoti_load_package(package)
    torch.testing.assert_close(run(y), want, rtol=1e-6, atol=1e-6)
