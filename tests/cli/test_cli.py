"""The command line: output, JSON, catalogue names, and bad input -> one line, status 2."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import fluxact
from fluxact.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxact", *args], capture_output=True, text=True, timeout=120,
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_translate_pretty() -> None:
    out = run_cli("translate", "r*exp(-r**2/(2*lam**2))", "--from", "activation",
                  "--param", "lam=2")
    assert out.returncode == 0, out.stderr
    assert "diffusivity  g(r) = exp(-r**2/8)" in out.stdout
    assert "regulariser  Psi(r) = 8 - 8*exp(-r**2/8)" in out.stdout


def test_translate_json_matches_python_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "--name", "charbonnier", "--param", "lam=0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"input", "diffusivity", "regulariser", "shrinkage", "activation"}
    t = fluxact.translate(fluxact.catalogue["charbonnier"], params={"lam": 0.5})
    r = sp.Symbol("r", real=True)
    for kind in fluxact.KINDS:
        parsed = sp.sympify(data[kind], locals={"r": r})
        assert sp.simplify(parsed - t.form(kind)) == 0, kind


def test_s2_convention_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "1/(1 + s2/lam**2)", "--from", "g", "--convention", "s2",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "s2" in data["diffusivity"] and "s2" in data["regulariser"]
    assert "s2" not in data["activation"]


def test_catalogue_lists_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert names == list(fluxact.catalogue)


def test_demo_prints_every_entry() -> None:
    out = run_cli("demo")
    assert out.returncode == 0, out.stderr
    for name in fluxact.catalogue:
        assert f"{name}  (given as" in out.stdout
    assert out.stdout.count("time steps (h = 1") == len(fluxact.catalogue)
    assert "def _dphi(x, p_ptr):" in out.stdout  # the generated Triton functions close it


BAD = [
    ["translate", "__import__('os').system('echo x > pwned')", "--from", "phi"],
    ["translate", "().__class__.__bases__[0].__subclasses__()", "--from", "phi"],
    ["translate", "lambda: 0", "--from", "phi"],
    ["translate", "9**9**9**9", "--from", "phi"],
    ["translate", "(" * 500 + "r" + ")" * 500, "--from", "phi"],
    ["translate", "open('pwned', 'w')", "--from", "phi"],
    ["translate", "r", "--from", "nonsense"],
    ["translate", "r"],
    ["translate", "--name", "no-such-thing"],
    ["translate", "r", "--from", "phi", "--name", "tanh"],
    ["translate", "r/lam", "--from", "phi", "--param", "lam"],
    ["translate", "r/lam", "--from", "phi", "--param", "lam=-2"],
    ["translate", "r/lam", "--from", "phi", "--param", "mu=2"],
    ["translate", "r", "--from", "phi", "--tau", "0"],
    ["translate", "r", "--from", "phi", "--tau", "__import__('os')"],
    ["translate", "exp(-r**2)", "--from", "g", "--convention", "s2"],
    ["translate", "r", "--from", "phi", "--variable", "__x"],
    ["translate", "r", "--from", "phi", "--convention", "q"],
    ["frobnicate"],
    [],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a)[:40] or "no-args" for a in BAD])
def test_bad_input_one_line_status_2_no_side_effects(args: list[str], tmp_path: Path) -> None:
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fluxact: error: "), out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was created
    assert out.stdout == ""


JUNK = st.text(alphabet="r0129.+-*/()<=>,&|^%~!@#$[]{}:;'\"\\ _abexpqslgnPiwTrue", max_size=50)


@given(JUNK)
def test_junk_formula_exits_0_or_2_with_one_line(text: str) -> None:
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(["translate", text, "--from", "activation"])
        except SystemExit as exc:  # --help-like paths only
            code = exc.code
    assert code in (0, 2)
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1


def test_verify_exit_status_follows_requirement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "tanh(r)", "--require", "euclidean"]) == 0
    assert main(["verify", "sin(r)", "--require", "linf"]) == 1
    captured = capsys.readouterr()
    assert "g < 0" in captured.err and "counterexample" in captured.out
    assert main(["verify", "sin(r)"]) == 0  # no requirement: only a report


def test_verify_json_and_catalogue_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--name", "hard", "--param", "th=1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lipschitz"] == "inf" and data["tau_linf"] == pytest.approx(0.5)
    assert data["tau_linf_paper"] is None


def test_verify_symbolic_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--name", "perona-malik", "--require", "linf"]) == 0
    out = capsys.readouterr().out
    assert "L = 1 " in out and "for every lam > 0" in out
    assert main(["verify", "a*tanh(r/b)", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lipschitz"] == "a/b" and data["parameters"] == ["a", "b"]


@pytest.mark.parametrize("args", [
    ["verify", "r/(1 + r**2/lam**2) + eps*r"],  # no closed form: eps needs a value
    ["verify", "r", "--h", "-1"],
    ["verify", "r", "--require", "strong"],
    ["verify", "__import__('os')"],
    ["verify", "sqrt(r)"],  # complex for r < 0
    ["verify", "r/0"],
    ["verify", "sin(1/r)"],
    ["verify", "exp(sqrt(r))"],
    ["verify", "r*sqrt(r**2 - 1)"],
    ["verify", "Piecewise((r, sin(r) > 0), (0, True))"],
])
def test_verify_bad_input(args: list[str]) -> None:
    out = run_cli(*args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_translate_shows_verdicts() -> None:
    out = run_cli("translate", "--name", "perona-malik", "--param", "lam=1")
    assert "time steps (h = 1" in out.stdout and "linf 0.5" in out.stdout
    out = run_cli("translate", "--name", "perona-malik")
    assert "for every lam > 0" in out.stdout and "linf 0.5" in out.stdout
    out = run_cli("translate", "r/(1 + r**2/lam**2) + eps*r", "--from", "activation")
    assert out.returncode == 0 and "stability: not verified: parameter 'eps'" in out.stdout


@pytest.mark.parametrize("formula", ["exp(exp(exp(r)))", "sinh(sinh(r))"])
def test_verify_explosive_formula_finishes(formula: str) -> None:
    out = run_cli("verify", formula)  # run_cli's own timeout is the hang detector
    assert out.returncode == 0, out.stderr
    assert "L = inf" in out.stdout


# -- emit (issue 4) ------------------------------------------------------------------------


def test_emit_targets(capsys: pytest.CaptureFixture[str]) -> None:
    import ast

    assert main(["emit", "--name", "perona-malik", "--param", "lam=2", "--target", "triton",
                 "--trainable", "lam"]) == 0
    triton_src = capsys.readouterr().out
    ast.parse(triton_src)
    assert "@triton.jit" in triton_src and "def _dphi(x, p_ptr)" in triton_src
    assert "dphi_lam" in triton_src  # dPhi/dlam, for the trainable lam
    # the parameter gradient is reduced on the device, in the library kernel bound to _dphi
    from fluxact.kernels import elementwise

    assert "_dphi(x, p_ptr)" in inspect.getsource(elementwise.activation_bwd.fn)
    assert "tl.sum(" in inspect.getsource(elementwise.activation_bwd.fn)
    assert main(["emit", "r/(1 + r**2)", "--from", "activation", "--target", "torch",
                 "--module-name", "rational"]) == 0
    torch_src = capsys.readouterr().out
    assert "def rational_forward_torch(x):" in torch_src and "triton" not in torch_src
    assert main(["emit", "tanh(r)"]) == 0
    module_src = capsys.readouterr().out
    assert "class Activation(_rt.Activation)" in module_src


def test_emit_to_file_and_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "k.py"
    assert run_cli("emit", "tanh(r)", "-o", str(out)).returncode == 0
    assert out.read_text().startswith("# generated by fluxact")
    for args in (["emit", "tanh(r)", "--target", "cuda"],
                 ["emit", "r/(1+r**2/lam**2)", "--trainable", "mu"],
                 ["emit", "erfc(r)"],
                 ["emit", "tanh(r)", "-o", str(tmp_path / "missing" / "k.py")]):
        res = run_cli(*args)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


# -- issue 13: the interface ------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"fluxact {fluxact.__version__}")


def test_a_closed_pipe_ends_quietly() -> None:
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    writer = subprocess.run(
        [sys.executable, "-m", "fluxact", "demo"], stdout=reader.stdin, stderr=subprocess.PIPE,
        text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    reader.stdin.close()
    reader.wait(timeout=30)
    assert writer.returncode == 0 and "Broken pipe" not in writer.stderr, writer.stderr


def test_every_option_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["denoise", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--scheme {explicit,fsi,implicit} explicit steps" in text
    assert "--boundary {reflect,periodic} reflect: zero flux" in text


def test_a_python_keyword_as_a_name_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "r/(1 + lambda*r**2)"]) == 2
    err = capsys.readouterr().err
    assert "'lambda' is a Python keyword" in err and "'lam'" in err and len(err.splitlines()) == 1


def test_a_formula_without_its_variable_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "x/(1 + x**2)", "--from", "activation"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("fluxact: warning:") and "does not use the variable 'r'" in err
    assert "--variable x" in err and len(err.splitlines()) == 1
    with pytest.warns(fluxact.FluxactWarning, match="symbols x were taken as parameters"):
        fluxact.translate("x/(1 + x**2)", "activation")


def test_verify_json_is_strict_for_unknown_and_infinite_values(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "Piecewise((r, Abs(r) > 0), (1, True))", "--json"]) == 0
    data = json.loads(capsys.readouterr().out,
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert data["lipschitz"] == "inf" and data["tau_linf"] is None
