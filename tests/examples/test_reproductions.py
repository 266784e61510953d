"""The examples of the reproduction tour (issue 7) run in their quickest mode and print what
they promise; each example ends with its own check, so exit status 0 is part of the test."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(*args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_wavelets_and_variational() -> None:
    text = run_example("examples/wavelets_and_variational.py", "--length", "64")
    assert "ok: wavelet shrinkage = explicit diffusion step" in text
    wave = float(text.split("max |explicit step - Haar shrinkage|")[1].split("=")[1].split()[0])
    grad = float(text.split("at the implicit step's result =")[1].split()[0])
    assert wave <= 1e-10 and grad <= 1e-8
    assert "Phi(r) = 10*r/sqrt(r**2 + 100)" in text  # Charbonnier's activation, P1 Table 3


def test_dictionary_figure(tmp_path: Path) -> None:
    out = tmp_path / "dictionary.png"
    text = run_example("examples/dictionary_figure.py", "--out", str(out))
    assert "ok: monotone, L and g_max as P1 section 4.2 states them" in text
    assert "truncated quadratic / hard shrinkage        nonmonotone     inf" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_tour_training_snippet(tmp_path: Path) -> None:
    """The tour's training code, as printed in README.md, runs and keeps its promises."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**4. Train a stable network**")[1]
    code = section.split("```python\n")[1].split("```")[0]
    script = tmp_path / "tour.py"
    script.write_text(code)
    text = run_example(str(script))
    noisy = float(text.split("noisy input: ")[1].split()[0])
    trained = float(text.split("after 300 Adam steps: ")[1].split()[0])
    assert trained > noisy + 5  # README: 28.09 -> 35.68 dB
    assert "outputs stay in [min f, max f]: True" in text
    tau, bound = text.split("tau = ")[1].split(" <= bound ")
    assert float(tau) <= float(bound.split()[0])


def test_denoise_1d_smoke(tmp_path: Path) -> None:
    """P2 7.1 in its smoke mode: every architecture, activation and study trains a few steps;
    the table, the parameter counts, the CSV and one plot per study come out."""
    text = run_example("examples/denoise_1d.py", "--smoke", "--out", str(tmp_path))
    assert "check passed (smoke: finite and better than noisy only)" in text
    noisy = float(text.split("noisy input ")[1].split()[0])
    assert 27.5 < noisy < 28.7  # sigma = 10 on [0, 255]: 20 log10(25.5) = 28.13 dB
    table = text.split("P2 in brackets\n")[1]
    for arch in ("symmetric", "dufort_frankel", "fsi", "resnet"):
        for act in ("relu", "charbonnier", "perona-malik"):
            assert table.count(f"{arch:15}{act:14}") == 3  # one line per study
    # one channel, shared: 3 kernel weights + tau + lam against 2 x (3 + 1) + lam
    assert "shared   perona-malik  m=2   C=1        5 (     3) vs      9 (     8)" in text
    with open(tmp_path / "denoise_1d.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4 * 3
    for r in rows:
        assert math.isfinite(float(r["test_psnr"]))
        if r["arch"] != "resnet":
            assert float(r["test_psnr"]) > noisy
    for study in ("shared", "dynamic", "channels"):
        png = tmp_path / f"denoise_1d_{study}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
