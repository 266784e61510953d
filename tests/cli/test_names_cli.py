"""The command line on names and values generated code cannot hold (issue 14): one line on
stderr and status 2, or, for a name given in another spelling, the name Python reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fluxact.cli import main


def refused(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not captured.out


@pytest.mark.parametrize("formula, kind", [("r/0", "activation"), ("0/0", "diffusivity"),
                                           ("log(0)*r", "activation"),
                                           ("exp(-r**2) + 1/(r - r)", "diffusivity")])
def test_translate_refuses_a_formula_undefined_everywhere(
        capsys: pytest.CaptureFixture[str], formula: str, kind: str) -> None:
    refused(capsys, ["translate", formula, "--from", kind], "holds the constant (zoo|nan)")


@pytest.mark.parametrize("value", ["1e308*10", "exp(1000)", "exp(-1000)",
                                   "10**100*10**100*10**100*10**10"])
def test_emit_refuses_values_beyond_float64(capsys: pytest.CaptureFixture[str],
                                            value: str) -> None:
    refused(capsys, ["emit", "r/(1 + r**2/lam**2)", "--from", "activation", "--param",
                     f"lam={value}"], "parameter 'lam'.*float64")


def test_emit_refuses_parameters_named_like_its_keywords(
        capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["emit", "r/(1 + r**2/backend**2)", "--from", "activation", "--param",
                     "backend=1"], "parameter 'backend'.*rename")


def test_emit_keeps_the_public_keywords(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emit", "r/(1 + r**2/(n*KH))", "--from", "activation", "--param", "n=3",
                 "--param", "KH=2", "--module-name", "shadow_x"]) == 0
    tree = ast.parse(capsys.readouterr().out)
    defs = {node.name: node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    init = next(n for n in defs["ShadowX"].body if isinstance(n, ast.FunctionDef))
    assert [a.arg for a in init.args.args] == ["KH", "n", "trainable", "backend"]
    assert [a.arg for a in defs["shadow_x"].args.args] == ["KH", "n", "backend"]


def test_emit_module_name_is_read_as_python_reads_it(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    assert main(["emit", "tanh(r)", "--from", "activation", "--module-name", "ｔｏｒｃｈ"]) == 0
    source = capsys.readouterr().out
    assert "def torch_(x, /, backend=" in source and "class Torch_(" in source
    refused(capsys, ["emit", "tanh(r)", "--from", "activation", "--module-name", "λ"],
            "not ASCII")


def test_build_refuses_two_spellings_of_one_name(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "twins.toml"
    entry = "[[activation]]\nname = '{}'\nformula = 'tanh(r)'\nkind = 'activation'\n"
    spec.write_text(entry.format("pm") + entry.format("ｐｍ"), encoding="utf-8")
    refused(capsys, ["build", str(spec), "--out", str(tmp_path / "gen")], "activation 2")
    assert not (tmp_path / "gen").exists()
