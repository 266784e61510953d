"""Time of explicit diffusion steps: the fused Triton step kernels against the unfused block.

Contenders for one Perona-Malik step u - tau K^T Phi(K u), forward + backward (lam and tau
trainable), 1D (forward difference, signals of length 256 as in P2 7.1) and 2D (gradient):
- fused: DiffusionBlock(fused=True), one generated Triton kernel each way (GPU only);
- eager: DiffusionBlock(fused=False): torch conv / generated activation / conv_transpose;
- compile: the same unfused block under torch.compile.
And forward only, m = 100 steps of the 1D block:
- temporal: DiffusionBlock.run (the temporally blocked kernel: one launch for all steps);
- stepwise: 100 fused steps, one launch each (GPU only), and 100 eager steps.

Bytes: a fused step reads u and writes the output (2 N itemsize forward, 3 N backward: u, gy
in, gu out); the table gives GB/s of those against the copy bandwidth measured in the same run.
Not a test: run it by hand,

    .venv/bin/python benchmarks/blocks.py                  # CPU: eager, compile; small sizes
    PYTHONPATH=. python benchmarks/blocks.py --threads 0   # GPU
"""

from __future__ import annotations

import argparse
import platform

import torch
from activation import timer  # benchmarks/activation.py, beside this script

import fluxact
from fluxact.blocks import DiffusionBlock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: keep)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}; torch {torch.__version__}; dtype {args.dtype}")
    act = fluxact.to_torch(fluxact.lookup("perona-malik"), params={"lam": 20.0},
                           trainable=("lam",)).to(device)
    rows, planes, side = (65536, 16, 1024) if device == "cuda" else (2048, 2, 256)
    shapes = {f"1D {rows} x 256": (rows, 1, 256),
              f"2D {planes} x {side} x {side}": (planes, 1, side, side)}
    copy_src = torch.randn(rows * 256, device=device, dtype=dtype)
    copy_dst = torch.empty_like(copy_src)
    t_copy = timer(device, lambda: copy_dst.copy_(copy_src), args.reps)
    copy_bw = 2 * copy_src.numel() * copy_src.element_size() / t_copy / 1e9
    print(f"copy bandwidth: {copy_bw:.0f} GB/s\n")
    print("| step | contender | fwd+bwd ms | GB/s (5 N itemsize) | x eager |")
    print("| --- | --- | --- | --- | --- |")
    for label, shape in shapes.items():
        dims = len(shape) - 2
        u = (torch.randn(shape, device=device) * 30).to(dtype).requires_grad_()
        blocks = {"eager": DiffusionBlock(act, dims=dims, train_tau=True, fused=False).to(device)}
        blocks["compile"] = torch.compile(blocks["eager"])
        if device == "cuda":
            blocks["fused"] = DiffusionBlock(act, dims=dims, train_tau=True, fused=True).to(device)
        times = {}
        for who, block in blocks.items():
            def run(block=block) -> None:
                block(u).sum().backward()
            times[who] = timer(device, run, args.reps)
        for who, t in times.items():
            gbs = 5 * u.numel() * u.element_size() / t / 1e9
            print(f"| {label} | {who} | {t * 1e3:.2f} | {gbs:.0f} | "
                  f"{times['eager'] / t:.2f} |")
    u = (torch.randn(rows, 1, 256, device=device) * 30).to(dtype)
    print(f"\n| 100 steps, 1D {rows} x 256, forward | ms | x eager |")
    print("| --- | --- | --- |")
    eager = DiffusionBlock(act, fused=False).to(device)
    runs = {"eager, step by step": lambda: eager.run(u, 100)}
    if device == "cuda":
        fused = DiffusionBlock(act, fused=True).to(device)
        runs["fused, step by step"] = lambda: _steps(fused, u)
        runs["temporal (one launch)"] = lambda: fused.run(u, 100)
    with torch.no_grad():
        times = {who: timer(device, fn, args.reps) for who, fn in runs.items()}
    for who, t in times.items():
        print(f"| {who} | {t * 1e3:.2f} | {times['eager, step by step'] / t:.2f} |")


def _steps(block: DiffusionBlock, u: torch.Tensor) -> torch.Tensor:
    for _ in range(100):
        u = block(u)
    return u


if __name__ == "__main__":
    main()
