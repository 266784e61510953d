"""Compile every Triton kernel of fluxact.kernels, bound to a generated module's formula, for
an H100/H200 (sm_90) without a GPU, and report the registers and spills ptxas gives each one.

Triton compiles a kernel for a CUDA GPUTarget down to PTX and a cubin with the ptxas it ships,
so compile errors and register spills show before any GPU sees the code. What is compiled is
the source torch.compile emits for the kernel (the kernel and every @triton.jit function and
constexpr it reaches through its globals, each under its own name: torch._inductor's
user_defined_triton_kernel_transitive_closure_source_code), so a kernel that only works as a
Python object (a function imported under an alias, a function-valued argument) fails here as
it would under torch.compile on a GPU. Each kernel is compiled with the constexpr values its
launcher in fluxact/kernels/ uses for a 256-wide image (BLOCK_SIZE_2D for the 2D steps, 1024
elements for the elementwise kernels), 4 channels and 3 x 3 learned kernels. Prints one
markdown row per kernel and dtype, and exits 1 if any compile failed. Run it without
TRITON_INTERPRET (tests/codegen/test_compile_sm90.py runs it in a child process):

    env -u TRITON_INTERPRET .venv/bin/python benchmarks/compile_sm90.py [--quick]

``--quick``: bf16 (fp32 arithmetic with the bf16 bit conversions) for every kernel, fp64 for
all but the channel-mixing step, whose fully unrolled 3 x 3 x 3 x 3 loops take about 30 s per
compile on a CPU core; the full run also compiles fp32 and that step in fp64.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if os.environ.get("TRITON_INTERPRET"):
    sys.exit("unset TRITON_INTERPRET: this compiles for a GPU target")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402

import fluxact  # noqa: E402
from fluxact.activation import import_source  # noqa: E402
from fluxact.kernels.launch import BLOCK_SIZE, BLOCK_SIZE_2D, row_block  # noqa: E402
from fluxact.kernels.library import KERNELS  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
#: pointers to parameters, time steps and learned kernels hold the compute dtype; the others
#: the data's
COMPUTE_POINTERS = {"p_ptr", "s_ptr", "_st_ptr", "gp_ptr", "_gp_ptr", "gk_ptr", "_gk_ptr",
                    "k_ptr", "_k_ptr"}
COMPUTE = {"fp32": "fp32", "bf16": "fp32", "fp64": "fp64"}
SLOW = "stepc"  # the channel-mixing step: unrolled KH x KW x KH x KW loops


def constexprs(kernel: str, data: str) -> dict[str, object]:
    """The constexpr values the launchers in fluxact/kernels/ pass for a 256-wide image with
    4 channels and 3 x 3 kernels."""
    block = BLOCK_SIZE if kernel in ("fwd", "bwd") else row_block(256, BLOCK_SIZE_2D)
    return {"BLOCK_SIZE": block, "CP": 4, "KH": 3, "KW": 3, "W": 3, "PERIODIC": False,
            "CLAMP": True, "FP64": data == "fp64"}


def as_torch_compile_emits(kernel: triton.runtime.jit.JITFunction, folder: str
                           ) -> triton.runtime.jit.JITFunction:
    """``kernel`` from the source torch.compile (inductor) writes for it, imported from a file
    in ``folder``."""
    from torch._inductor.codegen.wrapper import (
        user_defined_triton_kernel_transitive_closure_source_code as closure,
    )

    name = kernel.fn.__name__
    path = Path(folder, f"emitted_{name}.py")
    path.write_text("import triton\nimport triton.language as tl\n\n\n@triton.jit\n"
                    + closure(kernel))
    spec = importlib.util.spec_from_file_location(f"emitted_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def compile_one(fn: triton.runtime.jit.JITFunction, name: str, data: str) -> dict[str, object]:
    values = constexprs(name, data)
    signature, consts = {}, {}
    for param in fn.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            consts[param.name] = values[param.name]
        elif param.name.endswith("_ptr"):
            signature[param.name] = "*" + (COMPUTE[data] if param.name in COMPUTE_POINTERS
                                           else data)
        else:
            signature[param.name] = "i32"
    start = time.perf_counter()
    kernel = triton.compile(triton.compiler.ASTSource(fn=fn, signature=signature,
                                                      constexprs=consts), target=TARGET)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:  # ptxas -v: registers and spills
        ptx = Path(folder, "kernel.ptx")
        ptx.write_text(kernel.asm["ptx"])
        report = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name", "sm_90a", str(ptx),
                                 "-o", str(Path(folder, "kernel.cubin"))],
                                capture_output=True, text=True, check=True).stderr
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    return {"registers": int(registers.group(1)) if registers else -1,
            "stores": int(spills.group(1)) if spills else -1,
            "loads": int(spills.group(2)) if spills else -1, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI subset (see above)")
    parser.add_argument("--formula", default="perona-malik",
                        help="catalogue name (its parameters 1, all trainable)")
    args = parser.parse_args()
    entry = fluxact.lookup(args.formula)
    params = {p: 1.0 for p in fluxact.translate(entry).free_parameters}
    source = fluxact.emit(entry, target="module", params=params, trainable=tuple(params))
    module = import_source(source, "fluxact_sm90_check")
    dtypes = ("bf16", "fp64") if args.quick else ("fp32", "bf16", "fp64")
    print(f"Triton {triton.__version__}, target sm_90, {args.formula} (parameters trainable), "
          "the source torch.compile emits")
    print()
    print("| kernel | dtype | registers | spill stores (bytes) | spill loads (bytes) | compile s |")
    print("|---|---|---:|---:|---:|---:|")
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in KERNELS:
            for data in dtypes:
                if args.quick and data == "fp64" and SLOW in name:
                    continue
                try:
                    kernel = as_torch_compile_emits(module.OPS.kernel(name), folder)
                    r = compile_one(kernel, name, data)
                except Exception as exc:  # every failure is reported, then the exit status
                    failed += 1
                    print(f"| {name} | {data} | FAILED: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]} | | | |", flush=True)
                    continue
                print(f"| {name} | {data} | {r['registers']} | {r['stores']} | {r['loads']} | "
                      f"{r['seconds']:.1f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
