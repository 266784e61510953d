"""Every example runs and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_translate_perona_malik_example() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "translate_perona_malik.py")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert "Psi(r) = 2*lam**2 - 2*lam**2*exp(-r**2/(2*lam**2))" in out.stdout
    # at r = 1, lam = 1: g = exp(-1/2) = 0.60653, Phi = 0.60653
    assert " 1.0   0.60653" in out.stdout
