"""`fluxact build`: a spec with three entries round-trips (build, import in a fresh process
with SymPy made unimportable, run, compare); --check; determinism; atomic writes; errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxact.cli import main

SPEC = """
[[activation]]
name = "perona_malik"
formula = "exp(-s2/(2*lam**2))"
kind = "diffusivity"
convention = "s2"
params = { lam = 1.5 }
trainable = ["lam"]

[[activation]]
name = "charbonnier"
catalogue = "charbonnier"
params = { lam = 0.5 }

[[activation]]
name = "soft"
formula = "Piecewise((0, Abs(r) <= th), (r - th*sign(r), True))"
kind = "shrinkage"
params = { th = 0.25 }
trainable = ["th"]
"""

# runs in a fresh interpreter where fluxact and the generated package cannot import sympy,
# jinja2 or mpmath (torch's own compiler stack may import sympy: a dependency of torch)
CHILD = r"""
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, globals=None, *args, **kwargs):
    importer = (globals or {}).get("__name__", "")
    if (name.split(".")[0] in ("sympy", "jinja2", "mpmath")
            and importer.split(".")[0] in ("fluxact", "gen", "__main__")):
        raise ImportError(f"{name} is not allowed in {importer}")
    return real_import(name, globals, *args, **kwargs)
builtins.__import__ = guarded
sys.path.insert(0, sys.argv[1])
import torch
import gen
x = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
out = {}
for name in ("perona_malik", "charbonnier", "soft"):
    y = getattr(gen, name)(x.detach())
    act = getattr(gen, "".join(p.capitalize() for p in name.split("_")))().double()
    y2 = act(x)
    y2.sum().backward()
    out[name] = [y.tolist(), y2.tolist(), [float(p.grad) for p in act.parameters()]]
from fluxact.blocks import DiffusionBlock  # stable blocks from build-time modules, no SymPy
block = DiffusionBlock(gen.PeronaMalik().double(), "learned", train_tau=True)
out["tau"] = [float(block.time_step().detach()), float(block.tau_max().detach())]
block(x.detach().reshape(1, 1, -1)).sum().backward()
print(json.dumps(out))
# the translator's package loads lazily: its error classes (the root of every fluxact error),
# the stability record and the lazy loader (no SymPy in any) are allowed, nothing else of it
print(sorted(m for m in sys.modules if m == "jinja2" or m.startswith("fluxact.codegen")
             or (m.startswith("fluxact.translator.")
                 and m not in ("fluxact.translator.errors", "fluxact.translator.facts",
                               "fluxact.translator.lazy"))),
      file=sys.stderr)
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "activations.toml"
    path.write_text(SPEC)
    return path


def test_round_trip_without_sympy(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg" / "gen"
    assert main(["build", str(spec), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "charbonnier.py",
                                                     "perona_malik.py", "soft.py"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.run([sys.executable, "-c", CHILD, str(out.parent)], capture_output=True,
                           text=True, env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stderr.strip().splitlines()[-1] == "[]"  # no SymPy-side module, no jinja2
    got = json.loads(child.stdout)
    import torch

    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    pm = x * torch.exp(-x * x / (2 * 1.5**2))
    ch = 0.5 * x / torch.sqrt(0.25 + x * x)
    # soft shrinkage S with tau = 1/4 gives Phi(r) = (r - sqrt2 S(r/sqrt2)) (Table 1)
    s = torch.where(x.abs() / 2**0.5 <= 0.25, 0 * x, x / 2**0.5 - 0.25 * torch.sign(x))
    soft = x - 2**0.5 * s
    for name, want in (("perona_malik", pm), ("charbonnier", ch), ("soft", soft)):
        for values in got[name][:2]:
            torch.testing.assert_close(torch.tensor(values, dtype=torch.float64), want)
    assert len(got["perona_malik"][2]) == 1 and len(got["charbonnier"][2]) == 0
    tau, bound = got["tau"]  # the verifier's g_max = 1 travelled in the generated module
    assert 0 < tau < bound


def test_check_and_determinism(spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    out = tmp_path / "gen"
    assert main(["build", str(spec), "--check", "--out", str(out)]) == 1  # nothing built yet
    assert main(["build", str(spec), "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["build", str(spec), "--check", "--out", str(out)]) == 0
    assert main(["build", str(spec), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # same bytes
    assert "4 file(s) unchanged" in capsys.readouterr().out
    spec.write_text(SPEC.replace("lam = 1.5", "lam = 2.5"))
    assert main(["build", str(spec), "--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "perona_malik.py" in err and "charbonnier.py" not in err
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.parametrize(("text", "message"), [
    ("[[activation]]\nname = 'a'\n", "exactly one of 'formula' and 'catalogue'"),
    ("[[activation]]\nname = 'a'\nformula = 'r'\n", "'kind' is missing"),
    ("[[activation]]\nname = 'Bad-Name'\nformula = 'r'\nkind = 'activation'\n",
     "'name' must be a Python identifier"),
    ("[[activation]]\nname = 'a'\nformula = 'r/(1+r**2/lam**2)'\nkind = 'activation'\n",
     "'lam'.*has no value"),
    ("[[activation]]\nname = 'a'\nformula = 'r'\nkind = 'activation'\ncolour = 1\n",
     "unknown key 'colour'"),
    ("[[activation]\n", "not valid TOML"),
    ("[[activation]]\nname = 'a'\nformula = '__import__(\"os\")'\nkind = 'activation'\n",
     "activation 1"),
])
def test_bad_specs_give_one_line(tmp_path: Path, text: str, message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import re

    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["build", str(path), "--out", str(tmp_path / "gen")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "gen").exists()


# issue 14: the package appears whole or not at all, with the umask's modes, through no link
def test_init_moves_last(spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    real, calls = os.replace, []

    def failing(src, dst) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise OSError(5, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    assert main(["build", str(spec), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (out / "__init__.py").exists()  # no package naming modules that are missing
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging
    monkeypatch.setattr(os, "replace", real)
    (out / "soft.py").mkdir()  # found before anything moves: nothing is written
    assert main(["build", str(spec), "--out", str(out)]) == 2
    assert "soft.py is a folder" in capsys.readouterr().err
    assert not (out / "__init__.py").exists()


@pytest.mark.skipif(os.name != "posix", reason="links and modes of POSIX")
def test_built_files_modes_links_and_timestamps(spec: Path, tmp_path: Path) -> None:
    import stat

    from fluxact.build import build

    out = tmp_path / "gen"
    old = os.umask(0o022)
    try:
        build(spec, out)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
        assert set(modes.values()) == {0o644}, modes  # not mkstemp's 0600
        (out / "perona_malik.py").chmod(0o640)
        (out / "perona_malik.py").write_text("stale")
        victim = tmp_path / "victim.py"
        victim.write_text("precious")
        (out / "soft.py").unlink()
        (out / "soft.py").symlink_to(victim)
        (out / "charbonnier.py").touch()
        os.utime(out / "charbonnier.py", (1e9, 1e9))
        result = build(spec, out)
    finally:
        os.umask(old)
    assert sorted(p.name for p in result.written) == ["perona_malik.py", "soft.py"]
    assert stat.S_IMODE((out / "perona_malik.py").stat().st_mode) == 0o640  # mode kept
    assert victim.read_text() == "precious" and not (out / "soft.py").is_symlink()
    assert (out / "charbonnier.py").stat().st_mtime == 1e9  # unchanged: untouched


@pytest.mark.parametrize("bomb", ["a = " + "[" * 100_000 + "]" * 100_000,
                                  "a = " + "{b = " * 100_000 + "1" + "}" * 100_000],
                         ids=["arrays", "tables"])
def test_toml_nesting_bomb(tmp_path: Path, bomb: str, capsys: pytest.CaptureFixture[str]
                           ) -> None:
    from fluxact.build import BuildError, read_spec

    path = tmp_path / "bomb.toml"
    path.write_text(bomb)
    assert main(["build", str(path), "--out", str(tmp_path / "gen")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested too deeply" in err and "report" not in err
    with pytest.raises(BuildError, match="nested too deeply"):
        read_spec(path)


def test_staging_is_inside_the_output_folder(spec: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The staging folder lives inside DIR, so the renames into DIR never cross file systems
    (DIR a mount point, or a link to a folder on another file system: EXDEV before)."""
    import tempfile

    made: list[Path] = []
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "pkg"
    link.symlink_to(target, target_is_directory=True)
    assert main(["build", str(spec), "--out", str(link)]) == 0
    assert made and all(p.parent == link for p in made)
    assert sorted(p.name for p in target.iterdir()) == ["__init__.py", "charbonnier.py",
                                                        "perona_malik.py", "soft.py"]
