"""Distributed training of fluxact blocks on an existing engine (issue 18): 2 processes with
the gloo backend on the CPU, started by torchrun (tests/blocks/ddp_worker.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


def _torchrun(out: Path, *options: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "blocks" / "ddp_worker.py"), str(out), *options],
        capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def test_ddp_agrees_across_ranks_and_with_one_process(tmp_path: Path) -> None:
    """After 4 Adam steps under DistributedDataParallel, parameters and the recomputed time
    steps are the same on both ranks, and equal those of training in one process on the
    whole batches to float64 rounding (the gradients are averaged in another order)."""
    result = _torchrun(tmp_path)
    assert result["world"] == 2
    for name in ("resnet", "coupled"):
        r = result[name]
        assert r["between_ranks"] == 0.0, (name, r)
        assert r["ddp_vs_single"] <= 1e-12, (name, r)
        assert r["moved"] > 1e-3, (name, r)  # training changed the parameters
        assert all(t > 0 for t in r["taus"])


def test_fsdp2_refuses_fluxacts_scalar_parameters(tmp_path: Path) -> None:
    """What blocks FSDP (docs/scale.md): FSDP2's fully_shard refuses 0-dim parameters, and
    an activation's parameters (lam) and a block's trained time step are 0-dim."""
    result = _torchrun(tmp_path, "--fsdp")
    for name in ("resnet", "coupled"):
        error = result.get(f"{name}_fsdp_error", "")
        assert "scalar parameters" in error, (name, result)
