"""Forward+backward time of a generated activation against the same formula written by hand.

Contenders (all with the contrast lam a trainable tensor, so every one computes dL/dlam too):
- fluxact: ``fluxact.to_torch`` (Triton kernels on CUDA; the generated torch code on the CPU,
  eager by default);
- fluxact-compile: the same with ``ops.compile_min_elements = 1``, the opt-in to torch.compile
  of the generated torch code (CPU; on CUDA it is the same Triton kernels);
- eager: the formula by hand in torch, autograd for the backward;
- compile: that hand-written formula under torch.compile;
- lambdify: sympy.lambdify(modules="torch") of the same formula, autograd for the backward.

Bytes moved by forward+backward: read x, write y; read x and dy, write dx: 5 N itemsize. The copy
bandwidth is measured in the same run (y.copy_(x), 2 N itemsize). Not a test: run it by hand,

    .venv/bin/python benchmarks/activation.py                       # CPU: 2^24, fp32 and bf16
    python benchmarks/activation.py --sizes 24 28 --threads 0       # GPU (PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import sympy as sp
import torch

import fluxact

FORMULA = "exp(-r**2/(2*lam**2))"  # Perona-Malik diffusivity; Phi = r exp(-r^2/(2 lam^2))
LAM = 1.5


def hand(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return x * torch.exp(-x * x / (2 * lam * lam))


def timer(device: str, fn: Callable[[], None], reps: int) -> float:
    """Median seconds of fn over reps runs (after two warm-up runs)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def contenders(device: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    act = fluxact.to_torch(FORMULA, "diffusivity", params={"lam": LAM}, trainable=("lam",),
                           name="perona_malik").to(device)
    opted = fluxact.to_torch(FORMULA, "diffusivity", params={"lam": LAM}, trainable=("lam",),
                             name="perona_malik_compiled").to(device)
    opted.ops.compile_min_elements = 1  # its own module (another name): act stays eager
    lam = torch.tensor(LAM, device=device, requires_grad=True)
    compiled = torch.compile(hand, dynamic=False)
    r, lam_s = sp.Symbol("r", real=True), sp.Symbol("lam", positive=True)
    lambdified = sp.lambdify((r, lam_s), r * sp.exp(-r**2 / (2 * lam_s**2)), modules="torch")
    return {
        "fluxact": act,
        "fluxact-compile": opted,
        "eager": lambda x: hand(x, lam.to(x.dtype)),
        "compile": lambda x: compiled(x, lam.to(x.dtype)),
        "lambdify": lambda x: lambdified(x, lam.to(x.dtype)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[24], help="log2 of elements")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (0: leave as is)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if device == "cuda" else (
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}; torch {torch.__version__}; formula Phi = r exp(-r^2/(2 lam^2)), "
          f"forward+backward incl. dL/dlam; median of {args.reps}")
    print(f"{'n':>6} {'dtype':>9} {'contender':>10} {'ms':>9} {'GB/s':>8} {'% copy':>7} "
          f"{'vs eager':>9} {'vs compile':>10}")
    funcs = contenders(device)
    for log_n in args.sizes:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            n = 1 << log_n
            x = torch.randn(n, device=device, dtype=dtype)
            gy = torch.randn(n, device=device, dtype=dtype)
            size = x.element_size()
            y = torch.empty_like(x)
            copy_s = timer(device, lambda: y.copy_(x), args.reps)
            copy_bw = 2 * n * size / copy_s
            results = {}
            for label, f in funcs.items():
                xr = x.clone().requires_grad_()

                def step(f: Callable[[torch.Tensor], torch.Tensor] = f,
                         xr: torch.Tensor = xr) -> None:
                    out = f(xr)
                    out.backward(gy)
                    xr.grad = None

                results[label] = timer(device, step, args.reps)
            for label, seconds in results.items():
                bw = 5 * n * size / seconds
                print(f"  2^{log_n} {dtype_name:>9} {label:>10} {seconds * 1e3:>9.2f} "
                      f"{bw / 1e9:>8.1f} {100 * bw / copy_bw:>6.0f}% "
                      f"{results['eager'] / seconds:>8.2f}x {results['compile'] / seconds:>9.2f}x")
            print(f"  2^{log_n} {dtype_name:>9} {'copy':>10} {copy_s * 1e3:>9.2f} "
                  f"{copy_bw / 1e9:>8.1f}")


if __name__ == "__main__":
    main()
