"""EED inpainting by a trained full multigrid network: the experiment of P2 section 7.2.

    python examples/multigrid_inpainting.py [--full | --quick | --smoke] [--out DIR]
        [--seed N] [--device DEV] [--steps N] [--batch B] [--crop C]

Problem (P2 7.2.1): EED inpainting, (1 - c) div(D grad u) - c (u - f) = 0 (P2 29), D =
g(grad u_sigma grad u_sigma^T) with Charbonnier's g, lam = 0.93, sigma = 0.97, grey values in
[0, 1], random masks of 20 % density. Networks (P2 7.2.2-7.2.3, fluxact.multigrid): the FMG
network (three grids, P2's level order [4h, 2h, 4h, 2h, h, 2h, 4h, 2h, 4h, 2h, h], one
solver of ``layers`` 3 x 3 convolutions with ``channels`` channels and ReLU per grid, shared
by its visits, restriction by 2 x 2 means, prolongation nearest neighbour, coarse solves
started from 0, no Dirichlet clamp) and a single-grid network (one solver on the fine grid)
with about the same number of parameters. Loss: the mean absolute residual of P2 29 (no
ground truth). Adam, lr 1e-3.

Data: photographs that matplotlib's wheel ships (mpl-data/sample_data, so nothing is
downloaded): random crops of grace_hopper.jpg and Minduka_Present_Blue_Pack.png (greyscale,
flipped and rotated by multiples of 90 degrees) for training; held out for testing, crops of
the MRI slice s1045.ima.gz and the terrain map jacksboro_fault_dem.npz, each scaled to
[0, 1].

Evaluation on the held-out crops against the CG reference (fluxact.inpainting.solve_cg,
lagged diffusivity, tolerance 1e-10): MSE and PSNR (peak 1) to the CG result, the mean
absolute residual of P2 29, the fine-grid work (convolution layers run on the fine grid) and
the time per image.

--full: P2's sizes (12 layers of 20 channels per grid; 25 layers of 24 channels for the
single grid), 64 x 64 crops, 20000 steps of batches of 16; meant for a GPU. --quick (one CPU
thread, minutes): 5 layers of 16 channels per grid, 32 x 32 crops, 400 steps of batches of
8. --smoke: seconds, sanity only.

Writes DIR/multigrid_inpainting.csv and DIR/multigrid_inpainting.png (mask, CG result, FMG
network, single-grid network, as P2 Fig. 8). The check (not --smoke) exits with status 1
unless the FMG network is closer to the CG result (mean MSE) than the single-grid network,
P2's claim ("The full multigrid network approximates an EED inpainting result, while a
single grid network fails to do so").
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fluxact.activation import diffusivity_to_torch
from fluxact.inpainting import Inpainting, solve_cg
from fluxact.multigrid import FMGNetwork, SingleGridNetwork
from fluxact.tensor import TensorDiffusion

HERE = Path(__file__).resolve().parent
LAM, SIGMA, DENSITY, LR = 0.93, 0.97, 0.2, 1e-3


@dataclass(frozen=True, slots=True)
class Setting:
    layers: int
    channels: int
    single_layers: int
    single_channels: int
    crop: int
    steps: int
    batch: int
    tests: int
    test_crop: int


FULL = Setting(12, 20, 25, 24, crop=64, steps=20000, batch=16, tests=8, test_crop=128)
QUICK = Setting(5, 16, 9, 20, crop=32, steps=400, batch=8, tests=4, test_crop=64)
SMOKE = Setting(2, 4, 3, 5, crop=16, steps=3, batch=2, tests=1, test_crop=16)


def sample_images() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training, held-out) greyscale images in [0, 1] from matplotlib's sample data."""
    import matplotlib
    from PIL import Image

    folder = Path(matplotlib.get_data_path()) / "sample_data"

    def grey(name: str) -> np.ndarray:
        with Image.open(folder / name) as im:
            a = np.asarray(im.convert("L"), dtype=np.float64)
        return a / 255.0

    train = [grey("grace_hopper.jpg"), grey("Minduka_Present_Blue_Pack.png")]
    with gzip.open(folder / "s1045.ima.gz") as f:
        mri = np.frombuffer(f.read(), dtype=np.uint16).reshape(256, 256).astype(np.float64)
    with np.load(folder / "jacksboro_fault_dem.npz") as data:
        dem = np.asarray(data["elevation"], dtype=np.float64)
    held_out = [(a - a.min()) / (a.max() - a.min()) for a in (mri, dem)]
    return train, held_out


def crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator,
          augment: bool) -> torch.Tensor:
    out = []
    for _ in range(n):
        a = images[int(rng.integers(len(images)))]
        i, j = (int(rng.integers(0, s - size + 1)) for s in a.shape)
        c = a[i:i + size, j:j + size]
        if augment:
            c = np.rot90(c, int(rng.integers(4)))
            if rng.random() < 0.5:
                c = c[:, ::-1]
        out.append(np.ascontiguousarray(c))
    return torch.from_numpy(np.stack(out)[:, None])


def masks(shape: tuple[int, ...], rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy((rng.random(shape) < DENSITY).astype(np.float64))


def make_problem(g):
    def problem(masked: torch.Tensor, mask: torch.Tensor) -> Inpainting:
        return Inpainting(masked, mask, TensorDiffusion(g, "eed", sigma=SIGMA))
    return problem


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def train(net: torch.nn.Module, name: str, problem, images, s: Setting,
          rng: np.random.Generator, device: str) -> list[float]:
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    losses = []
    for step in range(s.steps):
        f = crops(images, s.batch, s.crop, rng, augment=True).to(device)
        c = masks(tuple(f.shape[:1]) + (1,) + tuple(f.shape[2:]), rng).to(device)
        u = net(f * c, c)
        loss = problem(f * c, c).loss(u)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % max(1, s.steps // 10) == 0 or step == s.steps - 1:
            print(f"  {name} step {step:5d}: mean |residual| {losses[-1]:.4g}", flush=True)
    return losses


def evaluate(nets: dict, problem, f: torch.Tensor, c: torch.Tensor) -> tuple[list[dict], dict]:
    rows, outputs = [], {}
    with torch.no_grad():
        reference, info = solve_cg(problem(f * c, c), tol=1e-10, outer_tol=1e-10)
    outputs["CG"] = reference
    for name, (net, work) in nets.items():
        t = time.perf_counter()
        with torch.no_grad():
            u = net(f * c, c)
        elapsed = time.perf_counter() - t
        outputs[name] = u
        mse = float(((u - reference) ** 2).mean())
        rows.append({"network": name, "mse_to_cg": mse,
                     "psnr_to_cg": 10 * math.log10(1 / mse) if mse > 0 else math.inf,
                     "mean_abs_residual": float(problem(f * c, c).loss(u)),
                     "fine_grid_layers": work, "seconds": elapsed,
                     "cg_residual": info.residual})
    return rows, outputs


def figure(path: Path, c: torch.Tensor, outputs: dict) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.4))
    panels = [("mask (known pixels)", c)] + [
        (name if name != "CG" else "CG solver (reference)", u) for name, u in outputs.items()]
    for k, (title, img) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(img[0, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse() -> tuple[argparse.Namespace, Setting]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="P2's sizes (the default; a GPU)")
    mode.add_argument("--quick", action="store_true", help="a reduced run, minutes on a CPU")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds, sanity only")
    parser.add_argument("--out", default=str(HERE / "out" / "multigrid_inpainting"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    for name in ("steps", "batch", "crop"):
        parser.add_argument(f"--{name}", type=int, help=f"override the {name} of the mode")
    args = parser.parse_args()
    s = SMOKE if args.smoke else QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "crop")
                 if getattr(args, k) is not None}
    if overrides:
        s = Setting(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, **overrides})
    return args, s


def main() -> None:
    args, s = parse()
    if args.quick or args.smoke:
        torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = diffusivity_to_torch("1/sqrt(1 + s2/lam**2)", params={"lam": LAM}).double()
    problem = make_problem(g)
    torch.set_default_dtype(torch.float64)
    fmg = FMGNetwork(problem, layers=s.layers, channels=s.channels).to(args.device)
    single = SingleGridNetwork(problem, layers=s.single_layers,
                               channels=s.single_channels).to(args.device)
    print(f"FMG network: 3 grids x {s.layers} layers x {s.channels} channels, "
          f"{parameters(fmg)} parameters; single grid: {s.single_layers} layers x "
          f"{s.single_channels} channels, {parameters(single)} parameters")
    train_images, test_images = sample_images()
    t = time.perf_counter()
    train(fmg, "FMG", problem, train_images, s, rng, args.device)
    train(single, "single grid", problem, train_images, s, rng, args.device)
    print(f"trained in {time.perf_counter() - t:.1f} s")
    test_rng = np.random.default_rng(10_000 + args.seed)
    f = crops(test_images, s.tests, s.test_crop, test_rng, augment=False).to(args.device)
    c = masks((s.tests, 1, s.test_crop, s.test_crop), test_rng).to(args.device)
    nets = {"FMG network": (fmg, 2 * s.layers),
            "single-grid network": (single, s.single_layers)}
    rows = []
    for k in range(s.tests):
        r, outputs = evaluate(nets, problem, f[k:k + 1], c[k:k + 1])
        rows += [{"image": k, **row} for row in r]
        if k == 0:
            figure(out / "multigrid_inpainting.png", c[:1], outputs)
    with open(out / "multigrid_inpainting.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{'network':<22}{'MSE to CG':>12}{'PSNR (dB)':>11}{'|residual|':>12}"
          f"{'fine layers':>12}{'s/image':>9}")
    means = {}
    for name in nets:
        mine = [r for r in rows if r["network"] == name]
        mse = float(np.mean([r["mse_to_cg"] for r in mine]))
        means[name] = mse
        print(f"{name:<22}{mse:>12.3g}{10 * math.log10(1 / mse):>11.2f}"
              f"{np.mean([r['mean_abs_residual'] for r in mine]):>12.3g}"
              f"{mine[0]['fine_grid_layers']:>12d}"
              f"{np.mean([r['seconds'] for r in mine]):>9.3f}")
    print(f"wrote {out / 'multigrid_inpainting.csv'} and {out / 'multigrid_inpainting.png'}")
    if args.smoke:
        ok = all(math.isfinite(v) for v in means.values())
    else:
        ok = means["FMG network"] < means["single-grid network"]
    print("check passed: the FMG network is closer to the CG result than the single-grid "
          "network" if ok and not args.smoke else "check passed (smoke: finite)" if ok else
          "check FAILED: the FMG network is not closer to the CG result than the single-grid "
          "network")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
