"""1D denoising with stable diffusion networks: the experiment of P2 section 7.1.

    python examples/denoise_1d.py [--full | --quick | --smoke] [--out DIR] [--seed N]
        [--device DEV] [--train N] [--val N] [--test N] [--epochs E] [--batch B]
        [--depths 1,7,20] [--studies shared,dynamic,channels] [--channels C]
        [--architectures symmetric,dufort_frankel,fsi,resnet] [--patience P]

Data (P2 7.1.1): signals of length 256, piecewise linear with jumps, segments of 1/10 to 1/2
of the length, values in [0, 255], Gaussian noise of sigma 10, not clipped. Networks, kernels
of width 3: the symmetric ResNet (explicit blocks u - tau K^T Phi(K u), P2 11), its Du
Fort-Frankel (P2 20) and FSI (P2 21: one cycle over the blocks, trained weights) extensions
and the plain ResNet (P2 6), each with ReLU, Charbonnier and Perona-Malik; lam, tau and the
extrapolation weights train. Adam, lr 1e-3, MSE; the best model on validation is tested
(PSNR, peak 255). Studies: "shared" (one channel, shared weights; P2 Figure 5), "dynamic"
(weights per block with the penalty P2 27, beta = 10, 5 for the plain ResNet whose tau is
1/m; Figure 6), "channels" (C = 16, input copied into the channels, output their average,
weights per block, no penalty; Figure 7).

--full (the default): the paper's recipe, 10000 / 1000 / 1000 signals, depths 1..20, all
studies and architectures, at most 2000 epochs of batches of 100 (stopped after 100 epochs
without a better validation PSNR), CUDA when available. --quick (QUICK, one CPU thread):
1000 / 200 / 500 signals, 12 epochs of batches of 32 (375 Adam steps), depths 3 and 7, the
shared and dynamic studies, the three stable architectures; the plain ResNet is only
counted (it needs far more steps). --smoke: seconds, sanity only.

Choices the paper leaves open: integer segment lengths uniform in [26, 128], redrawn until
the last piece is long enough, end values of each segment uniform in [0, 255]; the networks
see f / 255 (the same function as on grey values with lam and biases times 255, all three
activations being homogeneous; one Adam step then suits kernels and lam alike), while loss
and penalty are in grey values; lam starts at 10 grey values and is kept above 1e-3;
symmetric kernels start at a forward difference plus noise (the library's default; the paper
draws them uniformly and keeps the best of several runs); with shared weights the blocks
also share tau (and alpha); the plain ResNet has torch's uniform initialisation with W2 and
b2 divided by 100; PSNR is the mean over the signals.

Writes DIR/denoise_1d.csv and DIR/denoise_1d_<study>.png. The final check exits with status 1
unless every model is finite and beats the noisy input (with --smoke the plain ResNet need
only be finite: it starts near the identity) and (not --smoke) the symmetric ResNet
ranks Perona-Malik > Charbonnier > ReLU at every depth and study trained and has at most half
the kernel and bias parameters of the plain ResNet, and at most half of all its trainable
parameters with C channels (with one channel lam and tau make it 5 against 9 per block).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

import fluxact
from fluxact.blocks import DiffusionBlock, DuFortFrankelBlock, ResNetBlock, fsi_weights

HERE = Path(__file__).resolve().parent
PEAK, SIGMA, LENGTH, LR = 255.0, 10.0, 256, 1e-3
LAM0, LAM_MIN = 10.0, 1e-3  # the initial contrast lam and its floor, in grey values
ACTIVATIONS = ("relu", "charbonnier", "perona-malik")
ARCHITECTURES = ("symmetric", "dufort_frankel", "fsi", "resnet")
STUDIES = {"shared": "(a) shared weights, one channel (P2 Figure 5)",
           "dynamic": "(b) time-dynamic weights, one channel, P2 27 penalty (P2 Figure 6)",
           "channels": "(c) weights per block, C channels, no penalty (P2 Figure 7)"}
BETA = {False: 10.0, True: 5.0}  # P2 7.1.4: beta, and for the plain ResNet
NUMERICAL = ("tau_logit", "log_tau", "alpha_theta")  # not regularised (P2 7.1.4)
PAPER = {("shared", 7, "perona-malik"): 36.51, ("dynamic", 7, "perona-malik"): 37.08,
         ("channels", 20, "relu"): 40.04, ("channels", 20, "charbonnier"): 40.44,
         ("channels", 20, "perona-malik"): 40.88}  # symmetric ResNet, test PSNR in dB


@dataclass(frozen=True, slots=True)
class Setting:
    """One scale of the experiment."""

    train: int
    val: int
    test: int
    epochs: int
    batch: int
    depths: tuple[int, ...]
    studies: tuple[str, ...] = tuple(STUDIES)
    architectures: tuple[str, ...] = ARCHITECTURES
    channels: int = 16
    patience: int | None = None


FULL = Setting(10000, 1000, 1000, epochs=2000, batch=100, depths=tuple(range(1, 21)),
               patience=100)
QUICK = Setting(1000, 200, 500, epochs=12, batch=32, depths=(3, 7),
                studies=("shared", "dynamic"), architectures=("symmetric", "dufort_frankel", "fsi"))
SMOKE = Setting(64, 32, 32, epochs=2, batch=16, depths=(2,), channels=2)


def make_signals(n: int, rng: np.random.Generator, length: int = LENGTH) -> np.ndarray:
    """Clean signals (n, length): linear segments of lengths/10 to length/2 samples whose
    end values are uniform in [0, 255], drawn independently (so there are jumps)."""
    lo, hi = math.ceil(length / 10), length // 2
    out = np.empty((n, length))
    for i in range(n):
        while True:  # lengths in [lo, hi]; the last is cut at the end and must keep >= lo
            cuts = [0]
            while cuts[-1] < length:
                cuts.append(cuts[-1] + int(rng.integers(lo, hi + 1)))
            if length - cuts[-2] >= lo:
                break
        cuts[-1] = length
        for a, b in zip(cuts, cuts[1:]):
            out[i, a:b] = np.linspace(*rng.uniform(0, PEAK, 2), b - a)
    return out


def make_data(setting: Setting, seed: int, device: str) -> dict[str, tuple[torch.Tensor, ...]]:
    """(noisy, clean) pairs / 255, shape (n, 1, 256), for train, val and test."""
    rng = np.random.default_rng(seed)
    sizes = {"train": setting.train, "val": setting.val, "test": setting.test}
    data = {}
    for name, n in sizes.items():
        clean = make_signals(n, rng)
        noisy = clean + rng.normal(0.0, SIGMA, clean.shape)  # not clipped
        data[name] = tuple(torch.tensor(a[:, None] / PEAK, dtype=torch.float32, device=device)
                           for a in (noisy, clean))
    return data


class FSINetwork(torch.nn.Module):
    """One FSI cycle over the m explicit blocks of ``net`` (P2 21):
    u^{l+1} = a_l block_l(u^l) + (1 - a_l) u^{l-1}, u^{-1} = u^0, with trainable a_l
    initialised to (4l + 2)/(2l + 3). (SymmetricResNet(scheme="fsi") makes every block a
    whole cycle with one kernel, so a cycle with a kernel per block is built here.)"""

    def __init__(self, net: fluxact.SymmetricResNet) -> None:
        super().__init__()
        self.blocks = net.blocks
        self.alpha = torch.nn.Parameter(torch.tensor(fsi_weights(len(net.blocks))))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        prev = cur = u
        for a, block in zip(self.alpha, self.blocks):
            prev, cur = cur, a * block(cur) + (1 - a) * prev
        return cur


class ResNet(torch.nn.Module):
    """m plain ResNet blocks u + W2 Phi(W1 u + b1) + b2 (P2 6), shared or one per block.
    W2 and b2 start at 1/100 of torch's uniform initialisation, near the identity: on the
    quick data, 7 shared blocks at torch's scale gave -0.7 / 27.3 / -0.7 dB (ReLU /
    Charbonnier / Perona-Malik) after 375 Adam steps, at 1/100 28.2 / 32.5 / 32.2 dB."""

    def __init__(self, act: fluxact.Activation, depth: int, channels: int, shared: bool) -> None:
        super().__init__()
        first = ResNetBlock(act, channels, width=3)
        rest = [first if shared else ResNetBlock(act.clone(), channels, width=3)
                for _ in range(depth - 1)]
        self.blocks = torch.nn.ModuleList([first, *rest])
        with torch.no_grad():
            for block in self.blocks[: 1 if shared else depth]:
                block.W2.weight.mul_(0.01)
                block.W2.bias.mul_(0.01)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            u = block(u)
        return u


class Denoiser(torch.nn.Module):
    """The input copied into C channels, the network, the average of the channels (P2 7.1.5)."""

    def __init__(self, body: torch.nn.Module, channels: int) -> None:
        super().__init__()
        self.body, self.channels = body, channels

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.body(f.expand(-1, self.channels, -1)).mean(dim=1, keepdim=True)


def make_activation(name: str) -> fluxact.Activation:
    """Generated Phi; Charbonnier and Perona-Malik with a trainable lam (on the f / 255 scale)."""
    if name == "relu":
        return fluxact.to_torch(fluxact.lookup("relu"))
    return fluxact.to_torch(fluxact.lookup(name), params={"lam": LAM0 / PEAK}, trainable=("lam",))


def build(arch: str, act: fluxact.Activation, depth: int, study: str, channels: int
          ) -> Denoiser:
    """A network of ``depth`` blocks; ``act`` is cloned, so models never share parameters."""
    shared, act = study == "shared", act.clone()
    if arch == "resnet":
        body: torch.nn.Module = ResNet(act, depth, channels, shared)
    else:
        scheme = "dufort_frankel" if arch == "dufort_frankel" else "explicit"
        # shared: one kernel, one Phi, one tau (and alpha) for all blocks
        net = fluxact.SymmetricResNet(act, blocks=depth, channels=channels, shared=shared,
                                      scheme=scheme)
        body = FSINetwork(net) if arch == "fsi" else net
    return Denoiser(body, channels)


def theta(block: torch.nn.Module) -> torch.Tensor:
    """The regularised parameters of a block: kernels, biases and lam (the latter two in grey
    values), not the numerical ones (P2 7.1.4)."""
    parts = [p.reshape(-1).double() * (PEAK if n.startswith("act.") or n.endswith(".bias")
                                       else 1.0)
             for n, p in block.named_parameters() if n not in NUMERICAL]
    return torch.cat(parts)


def smoothness_penalty(body: torch.nn.Module, beta: float) -> torch.Tensor:
    """beta sum_k tau ((theta_k - theta_{k-1}) / tau)^2 (P2 27), tau the block's time step as
    a constant (1/m for the plain ResNet, P2 7.1.4). Written here rather than taken from
    SymmetricResNet.smoothness_penalty because it also covers the plain ResNet and measures
    lam and the biases in grey values (the networks run on f / 255)."""
    blocks = list(body.blocks)
    total = torch.zeros((), dtype=torch.float64)
    for prev, block in zip(blocks, blocks[1:]):
        if isinstance(block, DiffusionBlock):
            tau = block.time_step().detach()
        elif isinstance(block, DuFortFrankelBlock):
            tau = block.tau().detach()
        else:
            tau = torch.tensor(1.0 / len(blocks), dtype=torch.float64)
        diff = theta(block) - theta(prev)
        total = total.to(diff.device) + (diff**2).sum() / tau.to(diff.device)
    return beta * total


def count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable parameters, of which kernel and bias entries); shared ones count once."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    filters = [p for n, p in named if "kernel" in n or n.endswith((".weight", ".bias"))]
    return sum(p.numel() for _, p in named), sum(p.numel() for p in filters)


@torch.no_grad()
def evaluate(model: torch.nn.Module, noisy: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR (peak 255, i.e. 1 on f / 255) over the signals, in dB."""
    u = torch.cat([model(f) for f in noisy.split(500)])
    mse = ((u - clean) ** 2).mean(dim=(1, 2))
    return float((10 * torch.log10(1.0 / mse)).mean())


def lam_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable lam of every activation (on the f / 255 scale)."""
    return [p for n, p in model.named_parameters() if n.endswith("act.lam")]


@torch.no_grad()
def keep_lam_floor(lams: list[torch.nn.Parameter]) -> None:
    """lam is kept above LAM_MIN grey values after every optimiser step."""
    for lam in lams:
        lam.clamp_(min=LAM_MIN / PEAK)


def train(model: Denoiser, data: dict, setting: Setting, beta: float, desc: str
          ) -> tuple[float, float, int]:
    """Adam (lr 1e-3) on MSE in grey values + beta * penalty; returns (best validation PSNR,
    its test PSNR, its epoch)."""
    noisy, clean = data["train"]
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    lams = lam_parameters(model)
    best, best_epoch, state = -math.inf, 0, None
    bar = tqdm(range(1, setting.epochs + 1), desc=desc, unit="epoch", leave=False)
    for epoch in bar:
        for idx in torch.randperm(len(noisy), device=noisy.device).split(setting.batch):
            optimiser.zero_grad()
            loss = PEAK**2 * ((model(noisy[idx]) - clean[idx]) ** 2).mean()
            if beta:
                loss = loss + smoothness_penalty(model.body, beta)
            loss.backward()
            optimiser.step()
            keep_lam_floor(lams)
        val = evaluate(model, *data["val"])
        if val > best:
            best, best_epoch = val, epoch
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif setting.patience and epoch - best_epoch >= setting.patience:
            break
        bar.set_postfix(val=f"{val:.2f}", best=f"{best:.2f}")
    if state is not None:
        model.load_state_dict(state)
    return best, evaluate(model, *data["test"]), best_epoch


def parameter_table(setting: Setting, acts: dict[str, fluxact.Activation]) -> list[dict]:
    """Trainable parameters of the symmetric and the plain ResNet at the largest depth, for
    each study's sharing and channels (built, not trained)."""
    depth, rows = max(setting.depths), []
    for study in STUDIES:
        channels = setting.channels if study == "channels" else 1
        for name, act in acts.items():
            sym, res = (count(build(a, act, depth, study, channels))
                        for a in ("symmetric", "resnet"))
            rows.append(dict(study=study, activation=name, depth=depth, channels=channels,
                             symmetric=sym, resnet=res))
    return rows


def plot(rows: list[dict], study: str, noisy: float, path: Path) -> None:
    """Test PSNR against depth (a) or parameters (b, c), one panel per activation."""
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, len(ACTIVATIONS), sharey=True)
    x = "depth" if study == "shared" else "params"
    for ax, act in zip(axes, ACTIVATIONS):
        for arch in ARCHITECTURES:
            pts = sorted((r[x], r["test_psnr"]) for r in rows
                         if r["study"] == study and r["activation"] == act and r["arch"] == arch)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=arch)
        ax.axhline(noisy, color="grey", linestyle=":", label="noisy input")
        ax.set(title=act, xlabel="residual blocks" if x == "depth" else "parameters")
    axes[0].set_ylabel("test PSNR (dB)")
    axes[0].legend(fontsize=8)
    fig.suptitle(STUDIES[study])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def check(rows: list[dict], counts: list[dict], noisy: float, strict: bool) -> None:
    """Exit non-zero unless every model is finite and beats the noisy input (with --smoke
    the plain ResNet, which starts near the identity and needs hundreds of Adam steps, only
    finite) and (strict) the symmetric ResNet ranks PM > Charbonnier > ReLU and needs at most
    half the parameters."""
    for r in rows:
        if not math.isfinite(r["test_psnr"]) or (
                (strict or r["arch"] != "resnet") and not r["test_psnr"] > noisy):
            raise SystemExit(f"FAILED: {r['arch']} / {r['activation']} / {r['study']} / "
                             f"m = {r['depth']} gives {r['test_psnr']:.3f} dB, not better "
                             f"than the noisy input ({noisy:.3f} dB)")
    if strict:
        ranked = 0
        for study in STUDIES:
            for depth in sorted({r["depth"] for r in rows}):
                psnr = {r["activation"]: r["test_psnr"] for r in rows if r["study"] == study
                        and r["depth"] == depth and r["arch"] == "symmetric"}
                if len(psnr) < len(ACTIVATIONS):
                    continue
                ranked += 1
                if not psnr["perona-malik"] > psnr["charbonnier"] > psnr["relu"]:
                    raise SystemExit(
                        f"FAILED: symmetric ResNet, {study}, m = {depth}: Perona-Malik "
                        f"{psnr['perona-malik']:.3f} > Charbonnier {psnr['charbonnier']:.3f} "
                        f"> ReLU {psnr['relu']:.3f} dB does not hold (P2 7.1.2)")
        for c in counts:
            (s_all, s_filt), (r_all, r_filt) = c["symmetric"], c["resnet"]
            if 2 * s_filt > r_filt or (c["channels"] > 1 and 2 * s_all > r_all):
                raise SystemExit(f"FAILED: the symmetric ResNet has {s_all} ({s_filt} kernel "
                                 f"and bias) parameters against the plain ResNet's {r_all} "
                                 f"({r_filt}) in {c['study']} / {c['activation']}: not half")
        if not ranked:
            print("note: the ranking was not checked (no symmetric ResNet with all three "
                  "activations trained)")
    print("check passed" + ("" if strict else " (smoke: finite and better than noisy only)"))


def parse() -> tuple[argparse.Namespace, Setting]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the paper's recipe (the default)")
    mode.add_argument("--quick", action="store_true", help="a reduced run, < 10 min on a CPU")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds, sanity only")
    parser.add_argument("--out", default=str(HERE / "out" / "denoise_1d"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="used in full mode; --quick and --smoke run on one CPU thread")
    for name in ("train", "val", "test", "epochs", "batch", "channels", "patience"):
        parser.add_argument(f"--{name}", type=int, help=f"override the {name} of the mode")
    parser.add_argument("--depths", help="comma-separated, e.g. 1,7,20")
    parser.add_argument("--studies", help=f"comma-separated: {', '.join(STUDIES)}")
    parser.add_argument("--architectures", help=f"comma-separated: {', '.join(ARCHITECTURES)}")
    args = parser.parse_args()
    setting = QUICK if args.quick else SMOKE if args.smoke else FULL
    for name in ("train", "val", "test", "epochs", "batch", "channels", "patience"):
        if getattr(args, name) is not None:
            setting = replace(setting, **{name: getattr(args, name)})
    if args.depths:
        setting = replace(setting, depths=tuple(int(d) for d in args.depths.split(",")))
    for name, known in (("studies", STUDIES), ("architectures", ARCHITECTURES)):
        if getattr(args, name):
            chosen = tuple(getattr(args, name).split(","))
            if unknown := [c for c in chosen if c not in known]:
                parser.error(f"unknown --{name} {unknown[0]!r}; use {', '.join(known)}")
            setting = replace(setting, **{name: chosen})
    return args, setting


def report(rows: list[dict], counts: list[dict], setting: Setting, noisy: float) -> None:
    """The tables: test PSNR per study (the paper's figure in brackets), parameter counts."""
    print(f"\ntest PSNR (dB); noisy input {noisy:.3f} dB; P2 in brackets")
    for study in setting.studies:
        print(STUDIES[study])
        print(f"{'architecture':15}{'activation':14}"
              + "".join(f"{'m=' + str(d):>16}" for d in setting.depths))
        for arch in setting.architectures:
            for name in ACTIVATIONS:
                cells = {r["depth"]: r for r in rows if (r["study"], r["arch"],
                                                         r["activation"]) == (study, arch, name)}
                print(f"{arch:15}{name:14}" + "".join(
                    f"{cells[d]['test_psnr']:8.3f}" + (f" [{cells[d]['paper']:.2f}]"
                    if math.isfinite(cells[d]["paper"]) else " " * 8) for d in setting.depths))
    print("\ntrainable parameters (kernels and biases), symmetric ResNet vs plain ResNet")
    for c in counts:
        (s_all, s_filt), (r_all, r_filt) = c["symmetric"], c["resnet"]
        print(f"{c['study']:9}{c['activation']:13} m={c['depth']:<3} C={c['channels']:<3} "
              f"{s_all:6d} ({s_filt:6d}) vs {r_all:6d} ({r_filt:6d})   ratio "
              f"{s_all / r_all:.3f} ({s_filt / r_filt:.3f})")


def main() -> None:
    args, setting = parse()
    device = "cpu" if args.quick or args.smoke else args.device
    if args.quick or args.smoke:
        torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"settings: {setting}, device {device}, seed {args.seed}")

    data = make_data(setting, args.seed, device)
    noisy = evaluate(torch.nn.Identity(), *data["test"])
    acts = {name: make_activation(name) for name in ACTIVATIONS}
    rows: list[dict] = []
    for study in setting.studies:
        channels = setting.channels if study == "channels" else 1
        for depth in setting.depths:
            for arch in setting.architectures:
                beta = BETA[arch == "resnet"] if study == "dynamic" else 0.0
                for name, act in acts.items():
                    torch.manual_seed(args.seed)
                    model = build(arch, act, depth, study, channels).to(device)
                    t0 = time.perf_counter()
                    val, test, epoch = train(model, data, setting, beta,
                                             f"{study} {arch} {name} m={depth}")
                    lam = [PEAK * float(p.detach()) for p in lam_parameters(model)] \
                        or [math.nan]
                    paper = PAPER.get((study, depth, name), math.nan)
                    rows.append(dict(study=study, arch=arch, activation=name, depth=depth,
                                     channels=channels, params=count(model)[0], val_psnr=val,
                                     test_psnr=test, best_epoch=epoch,
                                     seconds=time.perf_counter() - t0, lam=lam[0],
                                     paper=paper if arch == "symmetric" else math.nan))
                    print(f"{study:8} {arch:14} {name:12} m={depth:<2} val {val:.3f} "
                          f"test {test:.3f} dB (epoch {epoch}, {rows[-1]['seconds']:.0f} s)")
    counts = parameter_table(setting, acts)
    report(rows, counts, setting, noisy)
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min")

    with open(out / "denoise_1d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["study"])
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()}
                         for r in rows)
    for study in setting.studies:
        plot(rows, study, noisy, out / f"denoise_1d_{study}.png")
    check(rows, counts, noisy, strict=not args.smoke)


if __name__ == "__main__":
    main()
