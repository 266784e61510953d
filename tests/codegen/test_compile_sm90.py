"""Every kernel of fluxact.kernels, bound to a generated module's formula, compiles for an
sm_90 GPU (H100/H200) on a machine without one, from the source torch.compile emits for it:
benchmarks/compile_sm90.py --quick in a child process (no TRITON_INTERPRET). Register spills
are reported (docs/benchmarks.md), not failed on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.compile
def test_every_generated_kernel_compiles_for_sm90(tmp_path: Path) -> None:
    pytest.importorskip("triton")
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    child = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_sm90.py"),
                            "--quick"], capture_output=True, text=True, env=env, timeout=600,
                           cwd=ROOT)
    assert child.returncode == 0, (child.stdout + child.stderr)[-3000:]
    from fluxact.kernels.library import KERNELS

    rows = [line for line in child.stdout.splitlines() if line.startswith("| ")
            and line.split("|")[1].strip() in KERNELS]
    # 19 kernels (elementwise, 1D/2D/3D/temporal/learned/channel-mixing steps, coupled), in
    # bf16 and all but the channel-mixing step in fp64
    assert len(rows) == 36 and not any("FAILED" in row for row in rows), child.stdout
