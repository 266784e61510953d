"""The safe parser: whitelisted formulas become SymPy expressions; everything else is refused
with a FormulaError naming the piece and its column, quickly, and nothing is executed."""

from __future__ import annotations

import time

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from fluxact import FormulaError, parse_formula

r = sp.Symbol("r", real=True)
lam = sp.Symbol("lam", positive=True)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("r*exp(-r**2/(2*lam**2))", r * sp.exp(-r**2 / (2 * lam**2))),
        ("1/(1 + s2/lam**2)", 1 / (1 + r**2 / lam**2)),  # s2 means r**2
        ("Abs(r) + sign(r) - Max(0, r)", sp.Abs(r) + sp.sign(r) - sp.Max(0, r)),
        ("Piecewise((r, Abs(r) <= 1), (0, True))", sp.Piecewise((r, sp.Abs(r) <= 1), (0, True))),
        ("Piecewise((0, 0 < r < 1), (r, True))",
         sp.Piecewise((0, sp.And(r > 0, r < 1)), (r, True))),
        ("0.25*r", r / 4),  # decimals are exact
        ("-r + +r**-2", -r + r**-2),
        ("tanh(r) + erf(r) + atan(r)", sp.tanh(r) + sp.erf(r) + sp.atan(r)),
        ("Piecewise((1, Eq(r, 0)), (sin(r)/r, True))",
         sp.Piecewise((1, sp.Eq(r, 0)), (sp.sin(r) / r, True))),
        ("Piecewise((1, (r > 0) & (r < 2) | Eq(r, 5)), (0, True))",
         sp.Piecewise((1, sp.Or(sp.And(r > 0, r < 2), sp.Eq(r, 5))), (0, True))),
    ],
)
def test_accepts(text: str, want: sp.Expr) -> None:
    assert parse_formula(text).expr == want


def test_parameters_are_positive_and_listed() -> None:
    parsed = parse_formula("r/(th + lam)")
    assert parsed.parameters == ("lam", "th")
    assert all(s.is_positive for s in parsed.expr.free_symbols if s.name != "r")


def test_variable_name_is_configurable() -> None:
    parsed = parse_formula("x*exp(-x**2)", variable="x")
    assert parsed.parameters == ()
    assert parsed.variable.name == "x"


HOSTILE = [
    ("__import__('os').system('echo x')", "only calls of named functions"),
    ("().__class__", "attributes"),
    ("lambda: 0", "lambda"),
    ("[c for c in ()]", "comprehensions"),
    ("exp(r)[0]", "subscripts"),
    ("exp(*r)", "starred"),
    ("exp(r, base=2)", "keyword"),
    ("'abc'", "strings"),
    ("__builtins__", "not allowed"),
    ("open('f', 'w')", "'open' is not allowed"),
    ("eval('1')", "'eval' is not allowed"),
    ("r if r else 0", "Piecewise"),
    ("r^2", "write r**2"),
    ("r // 2", "'//'"),
    ("9**9**9**9", "too large"),
    ("10**100**2", "too large"),
    ("(10**99)**99", "digits"),
    ("(" * 300 + "r" + ")" * 300, "nested"),
    ("-" * 150 + "r", "nested"),
    ("Max(" + ",".join(["-r"] * 600) + ")", "syntax nodes"),
    ("r" * 3000, "characters long"),
    ("", "empty"),
    ("exp(r", "column"),
    ("Piecewise((r, r < 1))", "final branch"),
    ("Piecewise(r)", "pair"),
    ("exp", "must be called"),
    ("r < 1", "condition"),
    ("exp(r < 1)", "condition"),
    ("1e999", "finite"),
    ("x := 1", "syntax"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE, ids=[h[0][:30] for h in HOSTILE])
def test_refuses_hostile_and_malformed(text: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert message.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < 2.0


def test_error_names_column() -> None:
    with pytest.raises(FormulaError, match="column 5"):
        parse_formula("r + foo(r)")


ALPHABET = "r0129.+-*/()<=>,&|^%~!@#$[]{}:;'\"\\ _abexpqslgnPiwTrue"


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_junk_is_parsed_or_refused_cleanly(text: str) -> None:
    try:
        parsed = parse_formula(text)
    except FormulaError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(parsed.expr, sp.Expr)


@st.composite
def formulas(draw, depth: int = 3) -> str:
    """Random well-formed formulas of whitelisted pieces."""
    if depth == 0:
        return draw(st.sampled_from(["r", "lam", "2", "0.5", "s2", "pi"]))
    kind = draw(st.integers(0, 3))
    a = draw(formulas(depth - 1))
    if kind == 0:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({a}) {op} ({draw(formulas(depth - 1))})"
    if kind == 1:
        return f"{draw(st.sampled_from(['exp', 'tanh', 'Abs', 'sqrt', 'atan']))}({a})"
    if kind == 2:
        return f"({a})**{draw(st.integers(-3, 3))}"
    return f"Piecewise(({a}, Abs(r) <= 1), ({draw(formulas(depth - 1))}, True))"


@given(formulas())
def test_generated_formulas_parse(text: str) -> None:
    parsed = parse_formula(text)
    assert parsed.expr.free_symbols <= {r, lam}
