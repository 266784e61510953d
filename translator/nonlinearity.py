"""The Nonlinearity record: one formula, what kind of function it is, and its parameters.

Kinds (MATH.md 1): a diffusivity g, a regulariser Psi, a wavelet shrinkage function S, or an
activation (flux) Phi. Two conventions for g and Psi:
- "r" (paper 001): Phi(r) = g(r) r, Psi(r) = 2 int_0^r g(x) x dx;
- "s2" (papers 002-004): Phi(s) = g(s^2) s, g = Psi'(s^2) (P2 5); the formula is written in s2.
Internally every form is a function of the real variable r in the "r" convention; the s2 forms
are g_r(r) = g_s2(r^2) and Psi_r(r) = Psi_s2(r^2) - Psi_s2(0) (substitute s2 = r^2).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Rational as NumbersRational
from numbers import Real

import sympy as sp

from .errors import FluxactWarning, FormulaError, ParameterError
from .parse import (
    S2_NAME,
    check_name,
    is_condition,
    normal_name,
    parameter_symbol,
    parse_formula,
    undefined_constant,
    variable_symbol,
)

KINDS: tuple[str, ...] = ("diffusivity", "regulariser", "shrinkage", "activation")
CONVENTIONS: tuple[str, ...] = ("r", "s2")

_KIND_ALIASES: dict[str, str] = {
    "diffusivity": "diffusivity",
    "g": "diffusivity",
    "regulariser": "regulariser",
    "regularizer": "regulariser",
    "psi": "regulariser",
    "penaliser": "regulariser",
    "shrinkage": "shrinkage",
    "s": "shrinkage",
    "activation": "activation",
    "phi": "activation",
    "flux": "activation",
}

SYMBOL_OF_KIND: dict[str, str] = {
    "diffusivity": "g",
    "regulariser": "Psi",
    "shrinkage": "S",
    "activation": "Phi",
}


def normalise_kind(kind: str) -> str:
    """Map a kind or one of its aliases (g, Psi, S, Phi, regularizer, flux) to its name."""
    key = str(kind).strip().lower()
    if key not in _KIND_ALIASES:
        raise FormulaError(
            f"unknown kind {kind!r}; use one of {', '.join(KINDS)} (or g, Psi, S, Phi)"
        )
    return _KIND_ALIASES[key]


def normalise_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise FormulaError(f"unknown convention {convention!r}; use 'r' or 's2'")
    return convention


def exact_number(value: object, what: str) -> sp.Expr:
    """A user-given number as an exact SymPy number (1.5 -> 3/2), real and finite as a float64.

    The one place where numbers given for parameters (and tau, alpha) are coerced: a float is
    taken as its shortest repr (0.1 -> 1/10), an int or Fraction exactly, text is parsed as a
    formula without symbols ("exp(1)/2"), a SymPy number as it is. A value whose float64 is
    infinite (1e308*10, "exp(1000)", 10**400) or 0 while the value is not (exp(-1000)) is
    refused: generated code holds the float64, and it must be the value given.
    """
    if isinstance(value, bool) or not isinstance(value, (Real, str, sp.Basic)):
        raise ParameterError(f"{what} must be a number, got {value!r}")
    if isinstance(value, sp.Basic):
        number = sp.sympify(value)
    elif isinstance(value, str):
        try:
            parsed = parse_formula(value)
        except FormulaError as exc:
            raise ParameterError(f"{what} must be a number, got {value!r}: {exc}") from None
        if parsed.expr.free_symbols:
            raise ParameterError(f"{what} must be a number, got {value!r}")
        number = parsed.expr
    elif isinstance(value, NumbersRational):  # int, Fraction, numpy integers: exactly
        number = sp.Rational(int(value.numerator), int(value.denominator))
    else:
        if not math.isfinite(float(value)):
            raise ParameterError(f"{what} must be finite, got {value!r}")
        number = sp.Rational(repr(float(value)))
    if not (number.is_number and number.is_real and number.is_finite):
        raise ParameterError(f"{what} must be a finite real number, got {value}")
    try:
        double = float(number)
    except (OverflowError, TypeError, ValueError):
        double = math.inf
    if not math.isfinite(double):
        raise ParameterError(
            f"{what} = {value} is beyond the largest float64 ({sys.float_info.max:.4g}); "
            "give a finite value (e.g. rescale the formula)")
    if double == 0 and number != 0:
        raise ParameterError(
            f"{what} = {value} is below the smallest float64 ({5e-324:.4g}) and would be 0; "
            "give a representable value (e.g. rescale the formula)")
    return number


@dataclass(frozen=True, slots=True)
class Nonlinearity:
    """A parsed input: ``expr`` is the form of kind ``kind`` as a function of ``variable``.

    ``expr`` is in the "r" convention whatever ``convention`` says (s2 substituted by r**2);
    ``values`` holds the parameters that were given numbers (substituted into ``expr``;
    ``symbolic`` is the same formula with every parameter a positive symbol), ``free`` the
    ones left symbolic.
    """

    expr: sp.Expr
    symbolic: sp.Expr
    kind: str
    variable: sp.Symbol
    convention: str
    values: tuple[tuple[str, sp.Expr], ...]
    free: tuple[str, ...]
    text: str  # the formula as given (string form)
    name: str | None = None  # catalogue entry, if any

    @property
    def params(self) -> dict[str, sp.Expr]:
        return dict(self.values)


def make_nonlinearity(
    expr: str | sp.Basic,
    kind: str,
    *,
    params: Mapping[str, object] | None = None,
    convention: str = "r",
    variable: str = "r",
    name: str | None = None,
) -> Nonlinearity:
    """Parse and check an input formula (string or SymPy expression) into a Nonlinearity."""
    kind = normalise_kind(kind)
    convention = normalise_convention(convention)
    var = variable_symbol(variable)
    if isinstance(expr, str):
        parsed = parse_formula(expr, variable)
        body, names = parsed.expr, parsed.parameters
        uses_var, uses_s2, text = parsed.uses_variable, parsed.uses_s2, expr.strip()
    elif isinstance(expr, sp.Basic):
        body, names, uses_var, uses_s2 = _from_sympy(expr, var)
        text = sp.sstr(expr)
    else:
        raise FormulaError(
            f"formula must be a string or a SymPy expression, not {type(expr).__name__}"
        )
    if convention == "s2" and kind in ("diffusivity", "regulariser") and uses_var:
        raise FormulaError(
            f"in convention 's2' a {kind} is a function of s2 = {var.name}^2: write it in "
            f"'{S2_NAME}' (e.g. 1/(1 + s2/lam**2)), or use convention 'r'"
        )
    if not uses_var and not uses_s2 and names:
        warnings.warn(FluxactWarning(
            f"the formula {text!r} does not use the variable {var.name!r}, so it is a constant "
            f"of {var.name}; its symbols {', '.join(names)} were taken as parameters (give "
            f"--variable {names[0]} / variable={names[0]!r} if {names[0]} is the variable)"),
            stacklevel=3)
    given = parameter_values(params)
    unknown = sorted(set(given) - set(names))
    if unknown:
        have = ", ".join(names) if names else "none"
        raise ParameterError(
            f"parameter {unknown[0]!r} does not occur in the formula (its parameters: {have})"
        )
    values: list[tuple[str, sp.Expr]] = []
    subs: dict[sp.Symbol, sp.Expr] = {}
    for pname in sorted(given):
        value = exact_number(given[pname], f"parameter {pname!r}")
        if not value.is_positive:
            raise ParameterError(
                f"parameter {pname!r} must be positive (parameters are positive), got {value}"
            )
        values.append((pname, value))
        subs[parameter_symbol(pname)] = value
    free = tuple(n for n in names if n not in given)
    valued = body.subs(subs) if subs else body
    bad = undefined_constant(valued)
    if bad is not None:
        at = ", ".join(f"{k} = {v}" for k, v in values)
        raise ParameterError(
            f"at {at} the formula {text!r} holds the constant {bad} (a division by 0 or the "
            "like), so it is undefined there; give other values")
    return Nonlinearity(
        expr=valued,
        symbolic=body,
        kind=kind,
        variable=var,
        convention=convention,
        values=tuple(values),
        free=free,
        text=text,
        name=name,
    )


def parameter_values(params: Mapping[str, object] | None) -> dict[str, object]:
    """The user's parameter name -> value mapping with each name NFKC-normalised as an
    identifier in the formula text is ('ｌａｍ' is lam); two spellings of one name are refused."""
    out: dict[str, object] = {}
    for key, value in (params or {}).items():
        name = normal_name(key)
        if name in out:
            raise ParameterError(f"parameter {name!r} is given twice (as {key!r} too)")
        out[name] = value
    return out


def _from_sympy(expr: sp.Basic, var: sp.Symbol) -> tuple[sp.Expr, tuple[str, ...], bool, bool]:
    """Normalise a user's SymPy expression: the variable becomes real, s2 becomes r**2,
    other symbols become positive parameters."""
    if not isinstance(expr, sp.Expr) or is_condition(expr):
        raise FormulaError(f"formula must be a SymPy expression, got {type(expr).__name__}")
    replace: dict[sp.Symbol, sp.Expr] = {}
    names: list[str] = []
    uses_var = uses_s2 = False
    for sym in expr.free_symbols:
        if not isinstance(sym, sp.Symbol):
            raise FormulaError(f"free symbol {sym} is not a plain symbol")
        if sym.name == var.name:
            uses_var = True
            replace[sym] = var
        elif sym.name == S2_NAME:
            uses_s2 = True
            replace[sym] = var**2
        else:
            names.append(check_name(sym.name, "parameter name"))
            replace[sym] = parameter_symbol(sym.name)
    if expr.has(sp.Integral, sp.Derivative):
        raise FormulaError(
            "formula contains an unevaluated integral or derivative; evaluate it first"
        )
    for fn in expr.atoms(sp.core.function.AppliedUndef):
        raise FormulaError(f"formula contains the undefined function {fn.func}; define it first")
    bad = undefined_constant(expr)
    if bad is not None:
        raise FormulaError(f"formula {sp.sstr(expr)!r} holds the constant {bad}, so it is "
                           "undefined wherever that part is evaluated; fix the formula")
    # symbols of one name with different assumptions are one parameter
    return expr.xreplace(replace), tuple(sorted(set(names))), uses_var, uses_s2
