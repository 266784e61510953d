"""codegen/printers.py and codegen/functions.py: golden text for both targets, numeric checks of
every lowering and of the catalogue against float64 references, and the errors.

The generated code runs as the project runs it. torch code is exec'd in a namespace holding
torch (our own printed code, never user text). Triton code becomes a @triton.jit kernel in a
module file, interpreted on the CPU (TRITON_INTERPRET=1 while the module is imported: triton 3.6
decides at @triton.jit time; the lowerings use builtins only, none of Triton's @jit standard
library, which would need the variable before triton itself is imported) and compiled where
there is a GPU. The interpreter computes with numpy, whose overflow and 0/0 warnings would be
errors under filterwarnings=error; the launches run under np.errstate(all="ignore"), as the
IEEE results (inf, nan) in unused where-branches are intended.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import sympy as sp
from fluxact.codegen.errors import CodegenError
from fluxact.codegen.functions import FUNCTIONS, POWERS
from fluxact.codegen.printers import Lowered, TorchPrinter, TritonPrinter, lower
from fluxact.translator.numeric import numeric_function
from fluxact.translator.parse import parameter_symbol, variable_symbol

import fluxact

try:
    import torch
except ImportError:  # torch and triton are the optional extra "torch"
    torch = None

r = variable_symbol("r")
lam = parameter_symbol("lam")
NAMES = {r: "x", lam: "lam"}
LAM = 1.5
PRINTERS = {"triton": TritonPrinter, "torch": TorchPrinter}
TARGETS = ("triton", "torch")

#: rtol, atol per dtype: atol covers values near 0, where fp32 cancellation is absolute
TOLERANCE = {np.float32: (1e-5, 1e-6), np.float64: (1e-10, 1e-12)}

#: The inputs every numeric check uses (plus the breakpoints of each case).
POINTS = (0.0, 1e-30, -1e-30, 1e-5, -1e-5, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e4, -1e4)
#: A dense sweep for the lowerings: smooth range, branch switches, tiny and huge magnitudes.
SWEEP = np.concatenate([
    np.linspace(-10.0, 10.0, 2001),
    np.logspace(-30, 30, 241),
    -np.logspace(-30, 30, 241),
    [0.25, -0.25, 0.5, -0.5, 1e18, -1e18, 2e18, 88.0, -88.0, 89.0, -89.0],
])


# -- golden text ---------------------------------------------------------------------------------

def printed(expr: sp.Basic, target: str) -> tuple[tuple[str, ...], str]:
    """(lines, text) of one expression; conditions through the printer itself."""
    if isinstance(expr, sp.Expr):
        lowered = lower({"y": expr}, NAMES, target)
        return lowered.lines, lowered.results[0][1]
    printer = PRINTERS[target](NAMES, like="x")
    text = printer.doprint(expr)
    return tuple(printer.lines), text


CBRT_TRITON = ("t0 = tl.exp(0.3333333333333333*tl.log(tl.abs(x)))",)
CBRT_TORCH = ("t0 = torch.pow(torch.abs(x), 0.3333333333333333)",)

# (id, expression, triton (lines, text), torch (lines, text)); a text alone means no lines
GOLDEN: list[tuple[str, sp.Basic, object, object]] = [
    ("pow 2", r**2, "(x*x)", "(x*x)"),
    ("pow 3", r**3, "(x*x*x)", "(x*x*x)"),
    ("pow 8", r**8, (("t0 = x*x", "t1 = t0*t0"), "(t1*t1)"),
     (("t0 = x*x", "t1 = t0*t0"), "(t1*t1)")),
    ("pow 5", r**5, (("t0 = x*x",), "(x*(t0*t0))"), (("t0 = x*x",), "(x*(t0*t0))")),
    ("pow -1", 1 / r, "(1.0/x)", "(1.0/x)"),
    # the square of 1/x: it underflows gradually where x*x overflows
    ("pow -2", r**-2, (("t0 = 1.0/x",), "(t0*t0)"), (("t0 = 1.0/x",), "(t0*t0)")),
    ("3.3/x**8", sp.Float(3.3) / r**8, (("t0 = 1.0/x", "t1 = t0*t0", "t2 = t1*t1"),
                                         "(3.3*(t2*t2))"),
     (("t0 = 1.0/x", "t1 = t0*t0", "t2 = t1*t1"), "(3.3*(t2*t2))")),
    ("pow 1/2", sp.sqrt(r), "tl.sqrt(x)", "torch.sqrt(x)"),
    ("pow -1/2", 1 / sp.sqrt(r), "(1.0/tl.sqrt(x))", "torch.rsqrt(x)"),
    ("pow 1/3", sp.cbrt(r), (CBRT_TRITON, "tl.where(x < 0.0, -t0, t0)"),
     (CBRT_TORCH, "torch.where(x < 0.0, -t0, t0)")),
    ("pow 2/3", r ** sp.Rational(2, 3), "tl.exp(0.6666666666666666*tl.log(tl.abs(x)))",
     "torch.pow(torch.abs(x), 0.6666666666666666)"),
    ("pow 1/3 of a positive base", (r**2 + 1) ** sp.Rational(1, 3),
     "tl.exp(0.3333333333333333*tl.log((x*x) + 1.0))",
     "torch.pow((x*x) + 1.0, 0.3333333333333333)"),
    ("pow 5/2", r ** sp.Rational(5, 2), "((x*x)*tl.sqrt(x))", "((x*x)*torch.sqrt(x))"),
    ("pow -3/2", r ** sp.Rational(-3, 2), "(1.0/(x*tl.sqrt(x)))", "(1.0/(x*torch.sqrt(x)))"),
    ("pow lam", r**lam, "tl.exp(lam*tl.log(x))", "torch.pow(x, lam)"),
    ("pow 2**r", 2**r, "tl.exp(0.6931471805599453*x)", "torch.exp(0.6931471805599453*x)"),
    ("piecewise 2", sp.Piecewise((r, r < 1), (0, True)),
     "tl.where((x < 1.0), x, 0.0)", "torch.where((x < 1.0), x, 0.0)"),
    ("piecewise 3", sp.Piecewise((r, r < -1), (r**2, r < 1), (1, True)),
     "tl.where((x < -1.0), x, tl.where((x < 1.0), (x*x), 1.0))",
     "torch.where((x < -1.0), x, torch.where((x < 1.0), (x*x), 1.0))"),
    # torch.where(c, 1.0, 0.0) would have torch's default dtype: the last value is x's dtype
    ("piecewise of numbers", sp.Piecewise((1, sp.Abs(r) <= 1), (0, True)),
     "tl.where((tl.abs(x) <= 1.0), 1.0, 0.0)",
     "torch.where((torch.abs(x) <= 1.0), 1.0, torch.full_like(x, 0.0))"),
    ("min 2", sp.Min(r, 1), "tl.minimum(x, 1.0)", "torch.clamp(x, max=1.0)"),
    ("max 2", sp.Max(r, 0), "tl.maximum(x, 0.0)", "torch.clamp(x, min=0.0)"),
    ("min 3", sp.Min(r, lam, r**2), "tl.minimum(lam, tl.minimum(x, (x*x)))",
     "torch.minimum(lam, torch.minimum(x, (x*x)))"),
    ("max 3 with a number", sp.Max(r, lam, 2), "tl.maximum(tl.maximum(lam, x), 2.0)",
     "torch.clamp(torch.maximum(lam, x), min=2.0)"),
    ("abs", sp.Abs(r), "tl.abs(x)", "torch.abs(x)"),
    ("sign", sp.sign(r), "tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, x*0.0))",
     "torch.sign(x)"),
    ("heaviside", sp.Heaviside(r),
     "tl.where(x > 0.0, 1.0, tl.where(x < 0.0, 0.0, x*0.0 + 0.5))",
     "torch.where(x > 0.0, 1.0, torch.where(x < 0.0, 0.0, x*0.0 + 0.5))"),
    ("heaviside H0 = 1", sp.Heaviside(r, 1),
     "tl.where(x > 0.0, 1.0, tl.where(x < 0.0, 0.0, x*0.0 + 1.0))",
     "torch.where(x > 0.0, 1.0, torch.where(x < 0.0, 0.0, x*0.0 + 1.0))"),
    ("tan", sp.tan(r), "(tl.sin(x)/tl.cos(x))", "torch.tan(x)"),
    ("Eq", sp.Eq(r, 1), "(x == 1.0)", "(x == 1.0)"),
    ("Ne", sp.Ne(r, lam), "(x != lam)", "(x != lam)"),
    ("Lt", sp.Lt(r, 1), "(x < 1.0)", "(x < 1.0)"),
    ("Le", sp.Le(2 * r, 1), "(2.0*x <= 1.0)", "(2.0*x <= 1.0)"),
    ("Gt", sp.Gt(r**2, 1), "((x*x) > 1.0)", "((x*x) > 1.0)"),
    ("Ge", sp.Ge(r, -lam), "(x >= -lam)", "(x >= -lam)"),
    ("And", sp.And(r > 0, r < 1), "((x > 0.0) & (x < 1.0))", "((x > 0.0) & (x < 1.0))"),
    ("Or 3", sp.Or(r < 0, r > 2, sp.Eq(r, 1)), "((x == 1.0) | ((x > 2.0) | (x < 0.0)))",
     "((x == 1.0) | ((x > 2.0) | (x < 0.0)))"),
    ("Not", sp.Not(sp.And(r > 0, r < 1)), "(~((x > 0.0) & (x < 1.0)))",
     "(~((x > 0.0) & (x < 1.0)))"),
    ("rational", r / 3, "0.3333333333333333*x", "0.3333333333333333*x"),
    ("integer", 2 * r - 1, "2.0*x - 1.0", "2.0*x - 1.0"),
    ("float", sp.Float(0.1) * r, "0.1*x", "0.1*x"),
    ("pi and E", sp.pi * r + sp.E, "3.141592653589793*x + 2.718281828459045",
     "3.141592653589793*x + 2.718281828459045"),
    ("folded constant", 7 * sp.sqrt(2) / (10 * sp.Abs(r)), "0.9899494936611666/tl.abs(x)",
     "0.9899494936611666/torch.abs(x)"),
    ("constant result", sp.Integer(0), "tl.full(x.shape, 0.0, x.dtype)",
     "torch.full_like(x, 0.0)"),
    ("parameter result", lam**2, "((lam*lam) + tl.full(x.shape, 0.0, x.dtype))",
     "((lam*lam) + torch.zeros_like(x))"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", GOLDEN, ids=[c[0] for c in GOLDEN])
def test_golden(case: tuple, target: str) -> None:
    _, expr, *expected = case
    want = expected[TARGETS.index(target)]
    lines, text = want if isinstance(want, tuple) else ((), want)
    assert printed(expr, target) == (lines, text)


@pytest.mark.parametrize("target", TARGETS)
def test_cse_shares_subexpressions_between_outputs(target: str) -> None:
    phi = r * sp.exp(-(r**2) / (2 * lam**2))
    lowered = lower({"Phi": phi, "dPhi": sp.diff(phi, r)}, NAMES, target)
    module = "tl" if target == "triton" else "torch"
    assert lowered == Lowered(
        lines=("t0 = x/lam", "t1 = t0*t0", f"t2 = {module}.exp(-0.5*t1)"),
        results=(("Phi", "t2*x"), ("dPhi", "-t1*t2 + t2")),
    )


def test_temporaries_do_not_clash_with_names() -> None:
    t0 = parameter_symbol("t0")
    lowered = lower({"y": sp.tanh(r) * t0}, {r: "x", t0: "t0"}, "triton")
    assert lowered.lines[0].startswith("_t0 = ")


@pytest.mark.parametrize("target", TARGETS)
def test_table_covers_the_parser_whitelist(target: str) -> None:
    """Every function a formula may contain lowers (sqrt and cbrt are powers)."""
    from fluxact.translator.parse import FUNCTIONS as PARSED

    two = {"Eq", "Ne", "Le", "Lt", "Ge", "Gt", "Min", "min", "Max", "max"}
    for name, build in PARSED.items():
        if name == "Piecewise":
            expr = build((r, r < 1), (0, True))
        elif name in ("And", "Or"):
            expr = build(r < 1, r > 2)
        elif name == "Not":
            expr = build(sp.And(r > 0, r < 1))
        else:
            expr = build(r, r**2) if name in two else build(r)
        if not isinstance(expr, sp.Expr):
            expr = sp.Piecewise((1, expr), (0, True))
        lower({"y": expr}, NAMES, target)


def test_every_step_is_valid_python() -> None:
    for table in (FUNCTIONS, POWERS):
        for name, lowering in table.items():
            for target in TARGETS:
                steps = lowering.steps(target)
                fields = {k: "a0" for k in ("x", "y", "a", "b", "cond")}
                fields.update({f"s{k}": f"s{k}" for k in range(len(steps))})
                for step in steps:
                    ast.parse(step.format(**fields), mode="eval")
                assert "libdevice" not in "".join(steps), name


# -- running the printed code --------------------------------------------------------------------

def torch_function(lowered: Lowered, params: tuple[str, ...]) -> Callable:
    """Our own printed body as a Python function of (x, *params) returning the results."""
    source = "\n".join([
        f"def _lowered(x, {', '.join(params)}):",
        *(f"    {line}" for line in lowered.lines),
        f"    return ({''.join(text + ', ' for _, text in lowered.results)})",
    ])
    namespace: dict[str, object] = {"torch": torch}
    exec(compile(source, "<lowered torch code>", "exec"), namespace)
    return namespace["_lowered"]


def run_torch(lowered: Lowered, x: np.ndarray, params: dict[str, float]) -> list[np.ndarray]:
    function = torch_function(lowered, tuple(params))
    tx = torch.from_numpy(x)
    values = [torch.tensor(v, dtype=tx.dtype) for v in params.values()]
    outs = function(tx, *values)
    for (name, _), out in zip(lowered.results, outs):
        assert isinstance(out, torch.Tensor), f"{name} is {type(out).__name__}, not a tensor"
        assert out.shape == tx.shape and out.dtype == tx.dtype, (name, out.shape, out.dtype)
    return [out.numpy() for out in outs]


KERNEL = '''\
import triton
import triton.language as tl


@triton.jit
def _lowered_kernel(x_ptr, {outputs}, {params}n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
{body}
'''


def triton_source(lowered: Lowered, params: tuple[str, ...]) -> str:
    outputs = [f"y{k}_ptr" for k in range(len(lowered.results))]
    body = [f"    {line}" for line in lowered.lines]
    body += [f"    tl.store({ptr} + offsets, {text}, mask=mask)"
             for ptr, (_, text) in zip(outputs, lowered.results)]
    return KERNEL.format(outputs=", ".join(outputs), params="".join(p + ", " for p in params),
                         body="\n".join(body))


def run_triton(lowered: Lowered, x: np.ndarray, params: dict[str, float], mode: str,
               folder: Path) -> list[np.ndarray]:
    """Render, import and launch the kernel; mode "interpreter" (CPU) or "compiled" (GPU).

    triton itself is imported first, outside the TRITON_INTERPRET patch: imported inside it,
    its @jit standard library would be interpreted functions, and the launch (where the
    variable is back to its old value) trips over them (triton.experimental.gluon asserts).
    """
    pytest.importorskip("triton")
    source = triton_source(lowered, tuple(params))
    module_name = f"_lowered_kernel_{abs(hash(source)):x}"
    path = folder / f"{module_name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    interpret = "1" if mode == "interpreter" else "0"
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": interpret}):
        spec.loader.exec_module(module)  # triton.jit reads TRITON_INTERPRET here
    device = "cpu" if mode == "interpreter" else "cuda"
    tx = torch.from_numpy(x).to(device)
    outs = [torch.empty_like(tx) for _ in lowered.results]
    block = 1024
    grid = (triton_cdiv(tx.numel(), block),)
    with np.errstate(all="ignore"):
        module._lowered_kernel[grid](tx, *outs, *params.values(), tx.numel(), BLOCK_SIZE=block)
    return [out.cpu().numpy() for out in outs]


def triton_cdiv(n: int, d: int) -> int:
    return -(-n // d)


def mismatches(got: np.ndarray, want: np.ndarray, x: np.ndarray, dtype: type) -> list[str]:
    """Where got (computed in dtype) differs from the float64 reference beyond the dtype's
    tolerance; NaN and inf must agree (the reference rounded to dtype, so 1e60 is inf in fp32)."""
    rtol, atol = TOLERANCE[dtype]
    with np.errstate(all="ignore"):
        rounded = want.astype(dtype).astype(np.float64)
    got64 = got.astype(np.float64)
    bad = []
    for xi, g, w, w_rounded in zip(x, got64, want, rounded):
        if math.isnan(g) or math.isnan(w):
            ok = math.isnan(g) and math.isnan(w)
        elif math.isinf(g) or math.isinf(w_rounded):
            ok = g == w_rounded
        else:
            ok = abs(g - w) <= atol + rtol * abs(w)
        if not ok:
            bad.append(f"x = {float(xi)!r}: got {float(g)!r}, want {float(w)!r}")
    return bad


def explain(bad: list[str], total: int, what: str) -> str:
    shown = "\n  ".join(bad[:8])
    return f"{what}: {len(bad)} of {total} values differ, first:\n  {shown}"


TRITON_MODES = [pytest.param("interpreter", marks=pytest.mark.interpreter)]
if torch is not None and torch.cuda.is_available():
    TRITON_MODES.append(pytest.param("compiled", marks=pytest.mark.gpu))
RUNS = [pytest.param(("torch", np.float32), id="torch-fp32"),
        pytest.param(("torch", np.float64), id="torch-fp64")]
RUNS += [pytest.param(("triton", m.values[0]), id=f"triton-{m.values[0]}", marks=m.marks)
         for m in TRITON_MODES]


def run(lowered_by_target: Callable[[str], Lowered], how: tuple[str, object], x: np.ndarray,
        params: dict[str, float], folder: Path) -> tuple[list[np.ndarray], type]:
    """Run the code of one target; returns the results and the dtype they were computed in."""
    if torch is None:
        pytest.skip("torch is not installed (extra 'torch')")
    target, option = how
    if target == "torch":
        return run_torch(lowered_by_target("torch"), x.astype(option), params), option
    return run_triton(lowered_by_target("triton"), x.astype(np.float32), params, option,
                      folder), np.float32


# -- every lowering against numpy ----------------------------------------------------------------

def erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[float])(x)


def piecewise_reference(x: np.ndarray) -> np.ndarray:
    """numpy's reading of PIECEWISE below, branch by branch."""
    return np.select(
        [(x > 0) & (x < 1), (x == -1) | (x < -2), ~((x >= -1.5) & (x <= 3)), x != 2],
        [x, -x, 2 * x, x * x], 0.0,
    )


PIECEWISE = sp.Piecewise(
    (r, (r > 0) & (r < 1)),
    (-r, sp.Eq(r, -1) | (r < -2)),
    (2 * r, sp.Not(sp.And(r >= -sp.Rational(3, 2), r <= 3))),
    (r**2, sp.Ne(r, 2)),
    (0, True),
)

# (id, expression in r and lam, float64 reference of x with lam = LAM)
NUMERIC: list[tuple[str, sp.Expr, Callable[[np.ndarray], np.ndarray]]] = [
    ("exp", sp.exp(r), np.exp),
    ("exp with lam", sp.exp(-(r**2) / (2 * lam**2)), lambda x: np.exp(-(x**2) / (2 * LAM**2))),
    ("log", sp.log(r), np.log),
    ("sqrt", sp.sqrt(r), np.sqrt),
    ("rsqrt", 1 / sp.sqrt(r), lambda x: 1 / np.sqrt(x)),
    ("cbrt", sp.cbrt(r), np.cbrt),
    ("pow 2/3", r ** sp.Rational(2, 3), lambda x: np.cbrt(x) ** 2),
    ("pow 5/2", r ** sp.Rational(5, 2), lambda x: np.power(x, 2.5)),
    ("pow -3/2", r ** sp.Rational(-3, 2), lambda x: np.power(x, -1.5)),
    ("pow 1/4 of x^2+1", (r**2 + 1) ** sp.Rational(1, 4), lambda x: np.power(x * x + 1, 0.25)),
    ("pow 8", r**8, lambda x: x**8),
    ("pow 5", r**5, lambda x: x**5),
    ("pow -3", r**-3, lambda x: x**-3.0),
    ("pow lam", r**lam, lambda x: np.power(x, LAM)),
    ("2**r", 2**r, lambda x: np.power(2.0, x)),
    ("Abs", sp.Abs(r), np.abs),
    ("sign", sp.sign(r), np.sign),
    ("Heaviside", sp.Heaviside(r), lambda x: np.heaviside(x, 0.5)),
    ("Heaviside H0=0", sp.Heaviside(r, 0), lambda x: np.heaviside(x, 0.0)),
    ("Min 2", sp.Min(r, sp.Rational(1, 2)), lambda x: np.minimum(x, 0.5)),
    ("Min with lam", sp.Min(r, lam), lambda x: np.minimum(x, LAM)),
    ("Max 3", sp.Max(r, -r / 2, lam), lambda x: np.maximum(np.maximum(x, -x / 2), LAM)),
    ("tanh", sp.tanh(r), np.tanh),
    ("sinh", sp.sinh(r), np.sinh),
    ("cosh", sp.cosh(r), np.cosh),
    ("asinh", sp.asinh(r), np.arcsinh),
    ("sin", sp.sin(r), np.sin),
    ("cos", sp.cos(r), np.cos),
    ("tan", sp.tan(r), np.tan),
    ("atan", sp.atan(r), np.arctan),
    ("erf", sp.erf(r), erf),
    ("Piecewise, relations, And, Or, Not", PIECEWISE, piecewise_reference),
    ("constant", sp.Integer(3), lambda x: np.full_like(x, 3.0)),
    ("parameter only", lam**2, lambda x: np.full_like(x, LAM**2)),
]
#: Largest |x| checked where the limit is not the lowering's: sin, cos and tan of huge
#: arguments are the platform's (numpy's fp32 in the interpreter); x*x in (x*x + 1)**(1/4)
#: overflows fp32 above 1.8e19, as the formula says.
LIMIT = {"sin": 1e4, "cos": 1e4, "tan": 1e4, "pow 1/4 of x^2+1": 1e19}
#: torch.sinh and torch.cosh overflow in fp32 from |x| = 88.7 (their exp does), 0.7 before
#: the functions themselves; the Triton lowerings (exp(|x|/2) squared) do not.
TORCH_FP32_LIMIT = {"sinh": 88.5, "cosh": 88.5}


def test_numeric_cases_cover_the_table() -> None:
    kinds = {type(n).__name__ for _, e, _ in NUMERIC for n in sp.preorder_traversal(e)}
    assert set(FUNCTIONS) <= kinds


@pytest.mark.parametrize("how", RUNS)
@pytest.mark.parametrize("case", NUMERIC, ids=[c[0] for c in NUMERIC])
def test_lowering_matches_numpy(case: tuple, how: tuple, tmp_path: Path) -> None:
    name, expr, reference = case
    points = np.concatenate([POINTS, SWEEP, [-1.5, -2.0, 2.0, 3.0, -1.0]])
    limit = LIMIT.get(name, np.inf)
    if how == ("torch", np.float32):
        limit = min(limit, TORCH_FP32_LIMIT.get(name, np.inf))
    points = points[np.abs(points) <= limit]
    (got,), dtype = run(lambda target: lower({"y": expr}, NAMES, target), how, points,
                        {"lam": LAM}, tmp_path)
    x = points.astype(dtype).astype(np.float64)  # the reference at the inputs the code saw
    with np.errstate(all="ignore"):
        want = reference(x)
    bad = mismatches(got, want, x, dtype)
    assert not bad, explain(bad, len(x), f"{name} ({how[0]})")


@pytest.mark.compile
def test_every_lowering_compiles_for_a_gpu(tmp_path: Path) -> None:
    """Compiled mode without a GPU: the whole table, in one kernel, through Triton's compiler
    for an sm_90 target down to a cubin (ptxas ships with triton). Its TTIR calls no extern
    (libdevice) function: only builtins, lowered by Triton itself."""
    pytest.importorskip("triton")
    lowered = lower({name: expr for name, expr, _ in NUMERIC}, NAMES, "triton")
    path = tmp_path / "_lowered_kernel_compiled.py"
    path.write_text(triton_source(lowered, ("lam",)))
    # a fresh process without TRITON_INTERPRET: tests/conftest.py sets it for this one before
    # triton is imported, and triton 3.6 reads it at import (gluon then refuses to compile)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    child = subprocess.run([sys.executable, "-c", COMPILE_CHILD, str(path),
                            str(len(lowered.results))],
                           capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["cubin", "no-extern"], child.stdout


COMPILE_CHILD = r"""
import importlib.util, sys
import triton
from triton.backends.compiler import GPUTarget
path, outputs = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location("_lowered_kernel_compiled", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
signature = {"x_ptr": "*fp32", "lam": "fp32", "n_elements": "i32", "BLOCK_SIZE": "constexpr"}
signature.update({f"y{k}_ptr": "*fp32" for k in range(outputs)})
source = triton.compiler.ASTSource(fn=module._lowered_kernel, signature=signature,
                                   constexprs={"BLOCK_SIZE": 1024})
kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32))
print("cubin" if kernel.asm["cubin"] else "no-cubin")
print("extern" if "extern" in kernel.asm["ttir"] else "no-extern")
"""


# (id, expression, float64 reference, max absolute error, max relative error): the bounds the
# notes in codegen/functions.py state for the hand lowerings, measured on the CPU interpreter
BOUNDS = [
    ("tanh", sp.tanh(r), np.tanh, np.inf, 3e-7),
    ("sinh", sp.sinh(r), np.sinh, np.inf, 6e-7),
    ("cosh", sp.cosh(r), np.cosh, np.inf, 5e-7),
    ("asinh", sp.asinh(r), np.arcsinh, np.inf, 5e-7),
    ("atan", sp.atan(r), np.arctan, 3e-7, 3e-7),
    ("erf", sp.erf(r), erf, 1.5e-7, 2e-7),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("case", BOUNDS, ids=[c[0] for c in BOUNDS])
def test_hand_lowerings_meet_their_bounds(case: tuple, tmp_path: Path) -> None:
    name, expr, reference, abs_bound, rel_bound = case
    if torch is None:
        pytest.skip("torch is not installed (extra 'torch')")
    x32 = np.concatenate([np.linspace(-6.0, 6.0, 60001), SWEEP]).astype(np.float32)
    (got,) = run_triton(lower({"y": expr}, NAMES, "triton"), x32, {}, "interpreter", tmp_path)
    x = x32.astype(np.float64)
    with np.errstate(all="ignore"):
        want = reference(x)
    finite = np.isfinite(want) & (np.abs(want) < 3e38)  # fp32 overflow is checked above
    error = np.abs(got[finite] - want[finite])
    assert error.max() <= abs_bound, (name, error.max())
    relative = error / np.maximum(np.abs(want[finite]), np.finfo(np.float64).tiny)
    assert relative.max() <= rel_bound, (name, relative.max())


# -- the catalogue -------------------------------------------------------------------------------

PARAMS = {"lam": LAM, "th": 0.7}
#: forms the printers must refuse, and the sub-expression the message names
UNPRINTABLE = {("weickert", "regulariser"): "Integral(", ("total-variation", "diffusivity"): "oo"}


@cache
def catalogue_forms(name: str) -> tuple[sp.Symbol, dict[str, sp.Expr]]:
    entry = fluxact.catalogue[name]
    free = fluxact.translate(entry).free_parameters
    translation = fluxact.translate(entry, params={p: PARAMS[p] for p in free})
    return translation.variable, translation.forms()


def breakpoints() -> list[float]:
    """Where catalogue forms jump or kink: simple multiples of the parameters, both signs."""
    scales = (1, math.sqrt(2), 2, 1 / math.sqrt(2), 0.5)
    return [s * v * c for v in PARAMS.values() for c in scales for s in (1, -1)]


@cache
def reference_values(name: str, kind: str, x: float) -> float:
    variable, forms = catalogue_forms(name)
    return numeric_function(forms[kind], variable, f"{name} {kind}")(x)


@pytest.mark.parametrize("how", RUNS)
@pytest.mark.parametrize("name", list(fluxact.catalogue))
def test_catalogue_forms_match_mpmath(name: str, how: tuple, tmp_path: Path) -> None:
    """All printable forms of each entry, lowered together, against SymPy/mpmath at 30 digits.
    A comparison at a breakpoint that fp32 cannot represent may fall on either side, so there
    the value of either fp32 neighbour is accepted too."""
    variable, forms = catalogue_forms(name)
    printable = {k: v for k, v in forms.items() if (name, k) not in UNPRINTABLE}
    names = {variable: "x"}
    points = np.array(POINTS + tuple(breakpoints()))
    results, dtype = run(lambda target: lower(printable, names, target), how, points, {},
                         tmp_path)
    x = points.astype(dtype).astype(np.float64)
    for kind, got in zip(printable, results):
        bad = []
        for xi, g in zip(x, got):
            sides = [float(np.nextafter(dtype(xi), dtype(s))) for s in (-np.inf, np.inf)]
            if all(mismatches(np.array([g]), np.array([reference_values(name, kind, v)]),
                              np.array([xi]), dtype) for v in [xi, *sides]):
                bad.append(f"x = {float(xi)!r}: got {float(g)!r}, "
                           f"want {reference_values(name, kind, xi)!r}")
        assert not bad, explain(bad, len(x), f"{name} {kind} ({how[0]})")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(fluxact.catalogue))
def test_catalogue_lines_define_names_before_use(name: str, target: str) -> None:
    variable, forms = catalogue_forms(name)
    printable = {k: v for k, v in forms.items() if (name, k) not in UNPRINTABLE}
    lowered = lower(printable, {variable: "x"}, target)
    defined = {"x", "tl", "torch"}
    for line in lowered.lines:
        statement = ast.parse(line).body[0]
        assert isinstance(statement, ast.Assign)
        used = {n.id for n in ast.walk(statement.value) if isinstance(n, ast.Name)}
        assert used <= defined, (line, used - defined)
        defined.add(statement.targets[0].id)
    for _, text in lowered.results:
        used = {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}
        assert used <= defined, (text, used - defined)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("key", sorted(UNPRINTABLE), ids="-".join)
def test_catalogue_unprintable_forms_are_refused(key: tuple[str, str], target: str) -> None:
    name, kind = key
    variable, forms = catalogue_forms(name)
    with pytest.raises(CodegenError) as info:
        lower(forms, {variable: "x"}, target)
    message = str(info.value)
    assert f"output {kind!r}" in message and UNPRINTABLE[key] in message


# -- errors --------------------------------------------------------------------------------------

f = sp.Function("f")
mu = parameter_symbol("mu")
ERRORS: list[tuple[str, sp.Basic, tuple[str, ...]]] = [
    ("unknown function", f(r) + 1, ("f(r)", "codegen/functions.py")),
    ("sympy function without lowering", sp.acosh(r + 2), ("acosh(r + 2)", "functions.py")),
    ("Piecewise without True", sp.Piecewise((r, r < 1)), ("Piecewise((r, r < 1))",
                                                          "(value, True)")),
    ("unnamed symbol", r * mu, ("'mu'", "names=", "params=")),
    ("Integral", sp.Integral(sp.exp(-(r**2)), (r, 0, 1)) * r, ("Integral(", "closed form")),
    ("Derivative", sp.Derivative(f(r), r), ("Derivative(f(r), r)",)),
    ("infinity", sp.Piecewise((sp.oo, sp.Eq(r, 0)), (1 / r, True)), ("oo", "finite")),
    ("nan", sp.Piecewise((sp.nan, sp.Eq(r, 0)), (1 / r, True)), ("nan", "finite")),
    ("complex", sp.I * r, ("I", "complex")),
    ("complex constant", sp.cbrt(-8) * r, ("(-1)**(1/3)", "complex")),
    ("log of a negative number", sp.log(-2) * r, ("I", "complex")),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_error_names_the_subexpression(case: tuple, target: str) -> None:
    _, expr, fragments = case
    with pytest.raises(CodegenError) as info:
        lower({"Phi": expr}, NAMES, target)
    message = str(info.value)
    assert message.startswith("output 'Phi': cannot print ")
    for fragment in fragments:
        assert fragment in message


def test_codegen_error_is_a_fluxact_error() -> None:
    assert issubclass(CodegenError, fluxact.FluxactError)


@pytest.mark.parametrize(
    "names, fragment",
    [({r: "tl"}, "'tl'"), ({r: "x y"}, "'x y'"), ({r: "lambda"}, "'lambda'"),
     ({r: "x", lam: "x"}, "both named 'x'")],
)
def test_unusable_names_are_refused(names: dict, fragment: str) -> None:
    with pytest.raises(CodegenError, match=fragment):
        lower({"y": r}, names, "torch")


def test_other_refusals() -> None:
    with pytest.raises(CodegenError, match="unknown target 'cuda'"):
        lower({"y": r}, NAMES, "cuda")
    with pytest.raises(CodegenError, match="condition"):
        lower({"y": r < 1}, NAMES, "torch")
    with pytest.raises(CodegenError, match="float32"):  # Triton would compute in float64
        lower({"y": sp.Float(1e40) * r}, NAMES, "triton")
    assert lower({"y": sp.Float(1e40) * r}, NAMES, "torch").results == (("y", "1e+40*x"),)


@pytest.mark.parametrize("how", RUNS)
def test_hypot_at_infinities_and_nan(how: tuple, tmp_path: Path) -> None:
    """sqrt(u^2 + v^2) prints as hypot(u, v), which is IEEE 754's: inf where either term is
    infinite even if the other is NaN (hypot(inf, sin(inf)) = inf), NaN where one is NaN."""
    expr = sp.sqrt(r**2 + sp.sin(r) ** 2)
    x = np.array([np.inf, -np.inf, np.nan, 3.0, 0.0])
    (got,), dtype = run(lambda target: lower({"y": expr}, NAMES, target), how, x, {}, tmp_path)
    with np.errstate(all="ignore"):
        want = np.hypot(x, np.sin(x))
    assert np.isposinf(got[:2]).all() and np.isnan(got[2]), got
    np.testing.assert_allclose(got[3:], want[3:].astype(dtype), rtol=1e-6)
