"""The kernel library: a kernel computes with the formula it is bound to, and only with it.

fluxact/kernels/formula.py binds a kernel by giving a copy of its function new globals
(_phi, _dphi, N_TRAIN); a helper keeps its module's globals, the placeholders, so a helper
that named _phi itself would compute with no formula (it refuses to compile) or, in the source
torch.compile emits (one namespace), with the kernel's."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import fluxact
from fluxact.kernels import formula
from fluxact.kernels.library import KERNELS

from .conftest import DEVICE, torch

KERNELS_DIR = Path(formula.__file__).parent


def test_only_kernels_name_the_formula_globals() -> None:
    kernels = {k.fn.__name__ for k in KERNELS.values()}
    helpers = []
    for path in sorted(KERNELS_DIR.glob("*.py")):
        if path.name == "formula.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name not in kernels:
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                if names & set(formula.FORMULA_NAMES):
                    helpers.append(f"{path.name}:{node.name}")
    assert not helpers, f"helpers must take the formula as arguments: {helpers}"


def test_every_kernel_is_named_once_and_reads_the_formula() -> None:
    names = [k.fn.__name__ for k in KERNELS.values()]
    assert len(set(names)) == len(names)
    for kernel in KERNELS.values():
        reads = set(kernel.fn.__code__.co_names)
        assert reads & {"_phi", "_dphi"}, kernel.fn.__name__


def _module(formula_text: str) -> object:
    act = fluxact.to_torch(formula_text, "activation", params={"a": 2.0}, trainable=("a",))
    return act.ops


def test_two_bindings_of_one_kernel_compute_two_formulas() -> None:
    """The copies do not share globals: each computes its own Phi, and the library's kernel
    stays unbound (it refuses to run)."""
    tanh, rational = _module("a*tanh(r)"), _module("r/(1 + a*r**2)")
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, device=DEVICE)
    p = torch.tensor([2.0], dtype=torch.float64, device=DEVICE)
    outs = []
    for ops in (tanh, rational):
        y = torch.empty_like(x)
        ops.kernel("fwd")[(1,)](x, y, p, x.numel(), BLOCK_SIZE=16, FP64=True)
        outs.append(y)
    torch.testing.assert_close(outs[0], 2.0 * torch.tanh(x), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(outs[1], x / (1 + 2.0 * x**2), rtol=1e-12, atol=1e-15)
    assert tanh.kernel("fwd") is tanh.kernel("fwd")  # bound once per module
    with pytest.raises(Exception, match="not bound to a formula"):
        KERNELS["fwd"][(1,)](x, torch.empty_like(x), p, x.numel(), BLOCK_SIZE=16, FP64=True)


def test_bind_refuses_functions_under_other_names() -> None:
    ops = _module("a*tanh(r)")
    with pytest.raises(ValueError, match="named _dphi"):
        formula.bind(KERNELS["bwd"], ops.phi, ops.phi, 1)
    assert "N_TRAIN" in inspect.getsource(KERNELS["bwd"].fn)
