"""A learned diffusivity with a certified time step, on the P2 7.1 denoising data.

    python examples/learned_diffusivity.py [--quick | --smoke] [--out DIR] [--depth M]
        [--epochs E] [--seed N]

The symmetric ResNet of examples/denoise_1d.py (shared weights, one channel: P2 Figure 5's
setting) with three activations: Perona-Malik and Charbonnier with a trainable lam, and
fluxact.LearnedDiffusivity, g(s2) = sum_k w_k b_k(s2/l_k^2) over the rational, exponential
and Charbonnier bases with trainable weights and scales (starting at w_k = 1/3 and l_k = 5,
10 and 20 grey values). Its time step is 2/(g_max ||K||^2) with g_max = sum_k w_k, exact for
every value training reaches, so the network stays stable at any depth throughout training.

--quick (the default; one CPU thread, about 2 minutes): the data of denoise_1d.py --quick
(1000 / 200 / 500 signals, batches of 32), depth 7, 60 epochs (12, as there, leave the
learned g still moving). --smoke: seconds.

Writes DIR/learned_diffusivity.csv (test PSNR of each activation), DIR/learned_g.png (the
learned g, Psi, S and Phi drawn by fluxact.plot, on the network's f / 255 scale) and prints
the learned weights and scales. Exits with status 1 unless every model beats the noisy input
and every time step of the learned model is at most its bound.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import fluxact

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from denoise_1d import (  # noqa: E402  (the study's data, model and training, one home)
    LAM0,
    PEAK,
    QUICK,
    SMOKE,
    build,
    evaluate,
    make_activation,
    make_data,
    train,
)

BASIS = ("rational", "exponential", "charbonnier")
SCALES = (LAM0 / 2, LAM0, 2 * LAM0)  # grey values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", default=str(HERE / "out" / "learned_diffusivity"))
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--epochs", type=int, help="override the mode's epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setting = replace(SMOKE, depths=(args.depth,)) if args.smoke else replace(
        QUICK, depths=(args.depth,), epochs=60)
    if args.epochs is not None:
        setting = replace(setting, epochs=args.epochs)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(setting, args.seed, "cpu")
    noisy = evaluate(torch.nn.Identity(), *data["test"])
    acts = {name: make_activation(name) for name in ("perona-malik", "charbonnier")}
    acts["learned"] = fluxact.LearnedDiffusivity(
        BASIS, weights=[1 / 3] * 3, scales=[s / PEAK for s in SCALES])
    print(f"depth {args.depth}, shared weights, {setting.train} training signals, "
          f"{setting.epochs} epochs; noisy input {noisy:.3f} dB")
    rows, models = [], {}
    for name, act in acts.items():
        torch.manual_seed(args.seed)
        model = build("symmetric", act, args.depth, "shared", 1)
        t0 = time.perf_counter()
        val, test, epoch = train(model, data, setting, 0.0, f"{name} m={args.depth}")
        models[name] = model
        rows.append({"activation": name, "val_psnr": val, "test_psnr": test,
                     "best_epoch": epoch, "seconds": time.perf_counter() - t0})
        print(f"{name:13} val {val:.3f}  test {test:.3f} dB  (epoch {epoch}, "
              f"{rows[-1]['seconds']:.0f} s)")
    with open(out / "learned_diffusivity.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()}
                         for r in rows)

    learned = models["learned"].body.blocks[0].act  # shared: one g for every block
    w = learned.weights().detach()
    s = learned.scales().detach()
    for b, wk, sk in zip(learned.basis, w, s):
        print(f"  {b:12} w = {float(wk):.4f}   l = {PEAK * float(sk):.3f} grey values")
    print(f"  g_max = sum w = {float(w.sum()):.4f}")
    ratios = [float(block.time_step().detach() / block.tau_max().detach())
              for block in models["learned"].body.blocks]
    print(f"largest time step / its bound 2/(g_max ||K||^2): {max(ratios):.4f}")
    fluxact.plot(learned.translation(), out=out / "learned_g.png",
                 r_max=float(4 * s.max()), title="learned diffusivity (f / 255 scale)")
    print(f"wrote {out / 'learned_diffusivity.csv'} and {out / 'learned_g.png'}")
    ok = all(r["test_psnr"] > noisy for r in rows) and max(ratios) <= 1.0
    print("check passed" if ok else "check FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
