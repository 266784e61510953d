"""The P2 7.1 denoising model trained with DistributedDataParallel, launched with torchrun.

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py [--quick | --smoke]
        [--out DIR] [--resume] [--epochs E] [--depth M] [--activation NAME] [--seed N]

The model, data and loss of examples/denoise_1d.py ("dynamic" study: one channel, weights per
block, the P2 27 penalty): a symmetric ResNet of M explicit blocks with a trainable lam and
trainable time steps that stay below the certified bound. Each rank takes its share of every
batch; the loss is scaled so that DDP's averaged gradient is that of the whole batch, which
makes the run equal to training in one process to rounding
(tests/blocks/test_distributed.py checks this for a SymmetricResNet and coupled blocks).

The backend is NCCL on CUDA (each rank on GPU LOCAL_RANK), gloo on the CPU. Rank 0 shows the
progress bar and writes DIR/train_ddp.pt after every epoch (model, optimiser, epoch, best
validation PSNR; written to a temporary file and renamed, so a killed run leaves the last
complete checkpoint); --resume continues from it on every rank. At the end rank 0 prints the
test PSNR of the best model and exits with status 1 unless it beats the noisy input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from denoise_1d import (  # noqa: E402  (the study's model, data and loss, one home)
    BETA,
    FULL,
    LR,
    PEAK,
    QUICK,
    SMOKE,
    build,
    evaluate,
    keep_lam_floor,
    lam_parameters,
    make_activation,
    make_data,
    smoothness_penalty,
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the paper's sizes (the default)")
    mode.add_argument("--quick", action="store_true", help="a reduced run on the CPU")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", default=str(HERE / "out" / "train_ddp"))
    parser.add_argument("--resume", action="store_true", help="continue from DIR/train_ddp.pt")
    parser.add_argument("--epochs", type=int, help="override the mode's epochs")
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--activation", default="perona-malik",
                        choices=("relu", "charbonnier", "perona-malik"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def save(state: dict, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: atomic."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    args = parse()
    setting = QUICK if args.quick else SMOKE if args.smoke else FULL
    if args.epochs is not None:
        setting = replace(setting, epochs=args.epochs)
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # one thread per process: the ranks share the cores
    out = Path(args.out)
    checkpoint = out / "train_ddp.pt"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    data = make_data(setting, args.seed, str(device))  # the same on every rank
    torch.manual_seed(args.seed)
    model = build("symmetric", make_activation(args.activation), args.depth, "dynamic", 1)
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    first, best, best_state = 1, float("-inf"), None
    if args.resume:
        dist.barrier()
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        first, best, best_state = state["epoch"] + 1, state["best"], state["best_model"]
        if rank == 0:
            print(f"resumed from epoch {state['epoch']} of {checkpoint}")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    lams = lam_parameters(model)
    noisy, clean = data["train"]
    if rank == 0:
        print(f"{world} processes ({dist.get_backend()}), {args.activation}, depth "
              f"{args.depth}, {setting.train} training signals, batches of {setting.batch}")
    bar = tqdm(range(first, setting.epochs + 1), desc="train_ddp", unit="epoch",
               disable=rank != 0)
    for epoch in bar:
        # one permutation for all ranks (seeded by the epoch), each rank a part of each batch
        order = torch.randperm(len(noisy), generator=torch.Generator().manual_seed(
            args.seed * 100003 + epoch)).to(device)
        for batch in order.split(setting.batch):
            mine = batch.tensor_split(world)[rank]
            optimiser.zero_grad()
            # sum over this rank's part / the whole batch, times world: DDP averages over
            # the ranks, so the gradient is that of the whole batch's mean
            err = (ddp(noisy[mine]) - clean[mine]) ** 2
            # (a rank's share may be empty: a last batch smaller than the number of ranks)
            loss = PEAK**2 * err.sum() * world / (len(batch) * clean[0].numel())
            loss = loss + smoothness_penalty(model.body, BETA[False])
            loss.backward()
            optimiser.step()
            keep_lam_floor(lams)
        val = evaluate(model, *data["val"])
        if val > best:
            best = val
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(val=f"{val:.2f}", best=f"{best:.2f}")
        if rank == 0:
            save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                  "epoch": epoch, "best": best, "best_model": best_state,
                  "args": vars(args)}, checkpoint)
        dist.barrier()  # the checkpoint is complete before any rank may read it
    status = 0
    if rank == 0:
        if best_state is not None:
            model.load_state_dict(best_state)
        ratio = max(float(b.time_step().detach() / b.tau_max().detach())
                    for b in model.body.blocks)
        test, noisy_psnr = evaluate(model, *data["test"]), evaluate(torch.nn.Identity(),
                                                                      *data["test"])
        print(f"largest time step / its certified bound over the blocks: {ratio:.4f}")
        print(f"test PSNR {test:.3f} dB (noisy input {noisy_psnr:.3f} dB), "
              f"best validation {best:.3f} dB; checkpoint {checkpoint}")
        status = 0 if test > noisy_psnr else 1
        print("check passed" if status == 0 else "check FAILED: no better than the input")
    dist.barrier()  # the ranks leave together (one tearing down gloo early could abort)
    dist.destroy_process_group()
    sys.exit(status)


if __name__ == "__main__":
    main()
