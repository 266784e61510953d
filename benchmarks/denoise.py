"""Time explicit nonlinear diffusion on the CPU (issue 16): fluxact's grid engine against
medpy's scheme and a plain numpy loop, side by side in one run.

Cases: a 512 x 512 image and a 128^3 volume, 100 explicit steps of Perona-Malik's
g = exp(-(r/kappa)^2) (medpy's option 1) at the largest stable step (1/4 in 2D, 1/6 in 3D).

- medpy: medpy.filter.smoothing.anisotropic_diffusion's scheme in float32 numpy, computed by
  ``tests.blocks.test_grid.medpy_scheme`` (written from its equations; the test checks it
  against fluxact to float32 rounding). medpy itself is not a dependency.
- numpy: the same per-axis scheme as one would write it in float64 numpy (slices, no copies
  of the whole array per axis beyond the differences).
- fluxact uncoupled / isotropic: ``fluxact.grid.GridDiffusion.run`` in float64 and float32
  (setup: translation and code generation, not timed), with the max-min clamp; eagerly and
  with ``compiled=True`` (each step fused by torch.compile; its first run, which compiles, is
  timed apart and listed under the table).
- scikit-image's denoise_tv_chambolle (100 iterations, no early stop) as a reference point,
  where installed (the ``bench`` extra: pip install -c constraints.txt -e ".[bench]").

Each figure is the best of ``--repeat`` wall-clock runs with torch limited to the given
number of threads. Not a test: run it by hand from the repository root,

    .venv/bin/python benchmarks/denoise.py [--quick] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluxact.activation import diffusivity_to_torch  # noqa: E402
from fluxact.grid import GridDiffusion  # noqa: E402
from tests.blocks.test_grid import medpy_scheme  # noqa: E402

KAPPA = 30.0


def numpy_scheme(img: np.ndarray, steps: int, kappa: float, gamma: float) -> np.ndarray:
    """The per-axis scheme in float64 numpy, written plainly."""
    u = img.astype(np.float64)
    for _ in range(steps):
        update = np.zeros_like(u)
        for axis in range(u.ndim):
            d = np.diff(u, axis=axis)
            flux = np.exp(-(d / kappa) ** 2) * d
            head = (slice(None),) * axis + (slice(0, -1),)
            tail = (slice(None),) * axis + (slice(1, None),)
            update[head] += flux
            update[tail] -= flux
        u += gamma * update
    return u


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128^2 and 32^3, 20 steps")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    steps = 20 if args.quick else 100
    cases = [((128, 128) if args.quick else (512, 512), 0.25),
             ((32, 32, 32) if args.quick else (128, 128, 128), 1 / 6)]
    g = diffusivity_to_torch("exp(-s2/kappa**2)", params={"kappa": KAPPA})
    g.backend = "torch"
    phi_text = "exp(-r**2/kappa**2)"
    from fluxact.activation import as_activation

    phi = as_activation(phi_text, "diffusivity", params={"kappa": KAPPA})
    phi.backend = "torch"
    try:
        from skimage.restoration import denoise_tv_chambolle
    except ImportError:
        denoise_tv_chambolle = None
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, torch "
          f"{torch.__version__}, numpy {np.__version__}; {steps} steps, best of {args.repeat}")
    print("\n| case | threads | method | seconds | medpy / method |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    compile_times: list[tuple[str, float]] = []
    for shape, gamma in cases:
        img = rng.uniform(0, 255, size=shape)
        name = " x ".join(map(str, shape))
        for threads in args.threads:
            torch.set_num_threads(threads)
            rows = [("medpy's scheme (numpy float32)",
                     lambda: medpy_scheme(img, steps, KAPPA, gamma, 1)),
                    ("numpy float64", lambda: numpy_scheme(img, steps, KAPPA, gamma))]
            for dtype in (torch.float64, torch.float32):
                u = torch.from_numpy(img).to(dtype).reshape(1, 1, *shape)
                for coupling, act in (("uncoupled", phi), ("isotropic", g)):
                    block = GridDiffusion(act.clone().to(dtype=torch.float64),
                                          coupling=coupling, spacing=(1.0,) * len(shape),
                                          tau=gamma)

                    for compiled in (False, True):
                        def run(block=block, u=u, compiled=compiled) -> None:
                            with torch.no_grad():
                                block.run(u, steps, compiled=compiled)

                        label = f"fluxact {coupling} ({str(dtype)[6:]}" + (
                            ", compiled)" if compiled else ")")
                        if compiled:  # the first run compiles: timed apart
                            compile_times.append((f"{label}, {name}, {threads} thread(s)",
                                                  best(run, 1)))
                        rows.append((label, run))
            if denoise_tv_chambolle is not None:
                # eps=0: no early stop, so exactly 100 iterations run
                rows.append(("scikit-image TV (100 iterations)",
                             lambda: denoise_tv_chambolle(img, weight=10.0, eps=0.0,
                                                          max_num_iter=100)))
            reference = None
            for label, fn in rows:
                seconds = best(fn, args.repeat)
                reference = reference or seconds
                print(f"| {name} | {threads} | {label} | {seconds:.3f} | "
                      f"{reference / seconds:.2f} |", flush=True)
    print("\nFirst run of each compiled case (compiles, then runs; the compiler's cache "
          "warm or cold as found):\n")
    for label, seconds in compile_times:
        print(f"- {label}: {seconds:.1f} s")
    if denoise_tv_chambolle is None:
        print("\nscikit-image is not installed: no TV reference row.")


if __name__ == "__main__":
    main()
