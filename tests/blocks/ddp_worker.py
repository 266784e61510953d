"""The worker of tests/blocks/test_distributed.py, started by torchrun with 2 processes.

Each rank trains two models under DistributedDataParallel (gloo, float64) for STEPS Adam
steps on its half of every batch: a SymmetricResNet with a trainable Perona-Malik lam and
trainable time steps, and two coupled 2D blocks (isotropic, g = 1/(1 + s2/lam^2) with lam
trainable). Rank 0 then trains the same models in one process on the whole batches and
writes, as JSON to OUT/result.json, the largest difference of every parameter and time step
between the ranks and between DDP and one process. ``--fsdp`` does the same with FSDP2's
``fully_shard`` (each parameter sharded over the ranks) instead of DDP.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import fluxact
from fluxact.activation import diffusivity_to_torch
from fluxact.coupling import CoupledDiffusionBlock2D

STEPS, BATCH = 4, 8


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    act = fluxact.to_torch(fluxact.lookup("perona-malik"), params={"lam": 0.5},
                           trainable=("lam",))
    resnet = fluxact.SymmetricResNet(act, 3, channels=2)
    g = diffusivity_to_torch("1/(1 + s2/lam**2)", params={"lam": 0.3}, trainable=("lam",))
    coupled = torch.nn.Sequential(CoupledDiffusionBlock2D(g, safety=0.9),
                                  CoupledDiffusionBlock2D(g.clone(), safety=0.9))
    return {"resnet": resnet.double(), "coupled": coupled.double()}


def data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of STEPS batches of BATCH, the same on every rank."""
    gen = torch.Generator().manual_seed(1)
    shape = (STEPS, BATCH, 2, 32) if name == "resnet" else (STEPS, BATCH, 1, 12, 12)
    clean = torch.rand(shape, generator=gen, dtype=torch.float64)
    return clean + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64), clean


def time_steps(model: torch.nn.Module) -> torch.Tensor:
    """The time step every block would take now (recomputed from the parameters)."""
    return torch.stack([m.time_step().reshape(()) for m in model.modules()
                        if hasattr(m, "time_step") and callable(m.time_step)])


def train(model: torch.nn.Module, wrapped: torch.nn.Module, name: str, part: slice
          ) -> None:
    optimiser = torch.optim.Adam(wrapped.parameters(), lr=1e-2)
    inputs, targets = data(name)
    for x, y in zip(inputs, targets):
        optimiser.zero_grad()
        loss = ((wrapped(x[part]) - y[part]) ** 2).mean()
        loss.backward()
        optimiser.step()


def flat(model: torch.nn.Module) -> torch.Tensor:
    parts = []
    for p in model.parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p  # an FSDP2 DTensor
        parts.append(full.detach().reshape(-1))
    return torch.cat(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict[str, object] = {"world": world}
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    for name, model in models().items():
        if args.fsdp:
            from torch.distributed.fsdp import fully_shard

            try:
                wrapped = fully_shard(model)
                train(model, wrapped, name, part)
            except Exception as exc:  # what blocks FSDP is the finding: docs/scale.md
                result[f"{name}_fsdp_error"] = f"{type(exc).__name__}: {exc}"
                continue
        else:
            wrapped = DistributedDataParallel(model)
            train(model, wrapped, name, part)
        params = flat(model)
        taus = time_steps(model).detach()
        mine = torch.cat([params, taus])
        gathered = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        if rank == 0:
            single = models()[name]
            train(single, single, name, slice(None))
            one = torch.cat([flat(single), time_steps(single).detach()])
            result[name] = {
                "between_ranks": max(float((g - gathered[0]).abs().max()) for g in gathered),
                "ddp_vs_single": float((gathered[0] - one).abs().max()),
                "moved": float((one - torch.cat([flat(models()[name]),
                                                time_steps(models()[name]).detach()])
                                ).abs().max()),
                "taus": taus.tolist(),
            }
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result))
    # every rank leaves together: a rank that tore its process group down while rank 0 was
    # still training its one-process comparison aborted in gloo on a busy 2-core machine
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
