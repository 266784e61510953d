"""A plain wheel build contains the subpackages under their installed names."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_has_subpackages(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("fluxact-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("fluxact/__init__.py", "fluxact/cli.py", "fluxact/translator/parse.py",
                   "fluxact/translator/dictionary.py", "fluxact/codegen/__init__.py",
                   "fluxact/templates/__init__.py", "fluxact/runtime.py",
                   "fluxact/codegen/printers.py", "fluxact/templates/_header.j2",
                   "fluxact/templates/module/activation.py.j2",
                   "fluxact/templates/triton/kernels.py.j2",
                   "fluxact/templates/torch/functions.py.j2", "fluxact/kernels/__init__.py",
                   "fluxact/kernels/step1d.py", "fluxact/kernels/coupled.py"):
        assert module in names, module
    assert not any(n.startswith(("translator/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fluxact = fluxact.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_a_source_checkout_maps_exactly_the_three_subpackages() -> None:
    """PYTHONPATH=<repo> without an install (as on the GPU machines): translator/, codegen/ and
    templates/ import as fluxact.translator, fluxact.codegen and fluxact.templates, and nothing
    else of the checkout (tests/, benchmarks/) is part of fluxact. ``-S`` keeps the editable
    install's finder out; site-packages is put back by hand for SymPy and torch."""
    import sysconfig

    code = (
        "import sys, importlib.util\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {sysconfig.get_paths()['purelib']!r}]\n"
        "import fluxact, fluxact.translator.parse, fluxact.codegen.render, fluxact.templates\n"
        "print(sys.modules['fluxact.translator.parse'].__file__)\n"
        "print(sys.modules['fluxact.codegen.render'].__file__)\n"
        "print(importlib.util.find_spec('fluxact.tests'), "
        "importlib.util.find_spec('fluxact.benchmarks'))\n"
        "print(len(fluxact.emit(fluxact.lookup('tanh')).splitlines()) > 50)\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT / "docs")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(ROOT / "translator" / "parse.py")
    assert lines[1] == str(ROOT / "codegen" / "render.py")
    assert lines[2:] == ["None None", "True"]


def test_a_second_checkout_takes_its_own_subpackages(tmp_path: Path) -> None:
    """A copy of the checkout run through PYTHONPATH, in an environment whose editable install
    is the original (as with a second worktree and one venv): fluxact and its three
    subpackages all come from the copy, none from the installed checkout."""
    import shutil

    copy = tmp_path / "copy"
    for folder in ("fluxact", "translator", "codegen", "templates"):
        shutil.copytree(ROOT / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    code = ("import fluxact, fluxact.translator, fluxact.codegen, fluxact.templates\n"
            "for m in ('fluxact', 'fluxact.translator', 'fluxact.codegen', 'fluxact.templates'):"
            "\n    print(__import__('sys').modules[m].__file__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(copy)})
    assert out.returncode == 0, out.stderr
    files = out.stdout.splitlines()
    assert len(files) == 4
    assert all(Path(f).resolve().is_relative_to(copy.resolve()) for f in files), files
