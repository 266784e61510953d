"""Formula text -> SymPy expression, without eval.

The text is parsed by Python's ``ast`` module and the tree is walked against a whitelist:
numbers, names, + - * / **, unary minus, comparisons, and calls (positional arguments only)
to the functions in ``FUNCTIONS``. Everything else is refused with a FormulaError naming the
offending piece and its column. Sizes are capped so that inputs such as ``9**9**9**9`` fail
at once instead of hanging.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .errors import FormulaError, ParameterError

MAX_LENGTH = 2000  # characters of formula text
MAX_DEPTH = 60  # nesting depth of the syntax tree
MAX_NODES = 2000  # nodes of the syntax tree
MAX_EXPONENT = 100  # |n| for a numeric exponent
MAX_DIGITS = 300  # decimal digits of any number, literal or computed as base**exponent

#: The argument s^2 of the papers 002-004 (convention "s2"): the name s2 always means r**2.
S2_NAME = "s2"

# Whitelisted functions: formula name -> SymPy constructor.
FUNCTIONS: dict[str, Callable[..., sp.Basic]] = {
    "exp": sp.exp,
    "log": sp.log,
    "ln": sp.log,
    "sqrt": sp.sqrt,
    "cbrt": lambda x: sp.real_root(x, 3),  # the real cube root (sp.cbrt is complex for x < 0)
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "sign": sp.sign,
    "sgn": sp.sign,
    "Heaviside": sp.Heaviside,
    "Min": sp.Min,
    "min": sp.Min,
    "Max": sp.Max,
    "max": sp.Max,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "asinh": sp.asinh,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "atan": sp.atan,
    "arctan": sp.atan,
    "erf": sp.erf,
    "Piecewise": sp.Piecewise,
    "Eq": sp.Eq,
    "Ne": sp.Ne,
    "Le": sp.Le,
    "Lt": sp.Lt,
    "Ge": sp.Ge,
    "Gt": sp.Gt,
    "And": sp.And,
    "Or": sp.Or,
    "Not": sp.Not,
}

# Arity of each function: (min, max); None = any number.
_ARITY: dict[str, tuple[int, int | None]] = {
    "Min": (1, None),
    "min": (1, None),
    "Max": (1, None),
    "max": (1, None),
    "Piecewise": (1, None),
    "And": (1, None),
    "Or": (1, None),
    "Eq": (2, 2),
    "Ne": (2, 2),
    "Le": (2, 2),
    "Lt": (2, 2),
    "Ge": (2, 2),
    "Gt": (2, 2),
    "log": (1, 2),
}

#: what an undefined constant in a formula comes from, for the error message
_UNDEFINED = {"zoo": "complex infinity, from a division by 0 or log(0)",
              "nan": "not a number, from 0/0 or 0*oo"}

_UNDEFINED_TYPES = (type(sp.zoo), type(sp.nan), type(sp.oo), type(-sp.oo), sp.AccumBounds)

CONSTANTS: dict[str, sp.Basic] = {"pi": sp.pi, "E": sp.E, "True": sp.true, "False": sp.false}

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # used with fullmatch: ASCII only

_BINOPS: dict[type, Callable[[sp.Basic, sp.Basic], sp.Basic]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARE: dict[type, Callable[[sp.Basic, sp.Basic], sp.Basic]] = {
    ast.Lt: sp.Lt,
    ast.LtE: sp.Le,
    ast.Gt: sp.Gt,
    ast.GtE: sp.Ge,
    ast.Eq: sp.Eq,
    ast.NotEq: sp.Ne,
}
_HINTS: dict[type, str] = {
    ast.BitXor: "'^' is not a power here; write r**2",
    ast.FloorDiv: "'//' is not allowed; write a / b",
    ast.Mod: "'%' is not allowed",
    ast.MatMult: "'@' is not allowed",
    ast.LShift: "'<<' is not allowed",
    ast.RShift: "'>>' is not allowed",
    ast.Attribute: "attributes (a.b) are not allowed",
    ast.Subscript: "subscripts (a[b]) are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.IfExp: "'a if c else b' is not allowed; write Piecewise((a, c), (b, True))",
    ast.List: "lists are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.NamedExpr: "':=' is not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.Await: "await is not allowed",
}


def is_condition(value: sp.Basic) -> bool:
    """A relation or logical formula (a Symbol is a SymPy Boolean too, but not a condition)."""
    return isinstance(
        value, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
                sp.logic.boolalg.BooleanAtom)
    )


@dataclass(frozen=True, slots=True)
class ParsedFormula:
    """The result of parsing: the expression and the names it used."""

    expr: sp.Expr
    variable: sp.Symbol
    parameters: tuple[str, ...]  # sorted names of parameters (free symbols besides the variable)
    uses_variable: bool  # the bare variable name occurs in the text
    uses_s2: bool  # the name s2 occurs in the text


def normal_name(name: object, what: str = "parameter name") -> str:
    """A name as Python's parser reads an identifier: NFKC-normalised, so that the fullwidth
    'ｌａｍ' and 'lam' are one name, in the formula text and everywhere else."""
    if not isinstance(name, str):
        raise ParameterError(f"a {what} must be a string, got {name!r}")
    return unicodedata.normalize("NFKC", name)


def check_name(name: str, what: str) -> str:
    """``name`` if it can name the variable or a parameter: an ASCII letter followed by
    ASCII letters, digits and '_' (so it is the same identifier in the generated code), not a
    Python keyword and not a function or constant of formulas (nor s2)."""
    if (not isinstance(name, str) or not _NAME_RE.fullmatch(name) or keyword.iskeyword(name)
            or name in FUNCTIONS or name in CONSTANTS or name == S2_NAME):
        raise FormulaError(
            f"{what} {name!r} is not usable: use ASCII letters, digits and '_' starting with a "
            f"letter, and not a Python keyword or a function or constant name "
            f"({S2_NAME}, pi, E, exp, ...)"
        )
    return name


def undefined_constant(expr: sp.Basic) -> sp.Basic | None:
    """The first constant of ``expr`` that is undefined or infinite (zoo from 1/0 or log(0),
    nan from 0/0, +-oo), or None: a formula holding one is undefined wherever that part is
    evaluated. The value of a Piecewise branch that holds at single points (Eq(r, 0)) is not
    looked at: it is no formula of an interval but a value at a point, where the translator
    writes limits, +-oo included (Piecewise((oo, Eq(r, 0)), (1/Abs(r), True)), the
    total-variation g), and which code generation replaces by limits."""
    if isinstance(expr, _UNDEFINED_TYPES):
        return expr
    for arg in expr.args:
        if isinstance(expr, sp.Piecewise) and isinstance(arg.cond, sp.Eq):
            arg = arg.cond
        bad = undefined_constant(arg)
        if bad is not None:
            return bad
    return None


def variable_symbol(name: str = "r") -> sp.Symbol:
    """The real symbol used as the argument of every form."""
    return sp.Symbol(check_name(normal_name(name, "variable name"), "variable name"),
                     real=True)


def parameter_symbol(name: str) -> sp.Symbol:
    """Parameters are positive real symbols (contrast lam, threshold th, ...)."""
    return sp.Symbol(name, positive=True)


def parse_formula(text: str, variable: str = "r") -> ParsedFormula:
    """Parse formula text in the variable ``variable`` into a SymPy expression, safely."""
    if not isinstance(text, str):
        kind = type(text).__name__
        raise FormulaError(f"formula must be a string or a SymPy expression, not {kind}")
    var = variable_symbol(variable)
    stripped = text.strip()
    if not stripped:
        raise FormulaError("formula is empty; give an expression such as 'r*exp(-r**2/2)'")
    if len(stripped) > MAX_LENGTH:
        raise FormulaError(
            f"formula is {len(stripped)} characters long; at most {MAX_LENGTH} are accepted"
        )
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", stripped)) & set(keyword.kwlist)
        hint = ""
        if words - {"True", "False", "and", "or", "not", "if", "else", "in", "is"}:
            word = sorted(words)[0]
            hint = (f"; {word!r} is a Python keyword and cannot name a parameter: call it "
                    f"{'lam' if word == 'lambda' else word + '_'!r} instead")
        raise FormulaError(f"formula is not valid syntax{col}: {exc.msg}{hint}") from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError(
            "formula is nested too deeply or malformed; simplify it"
        ) from None
    _check_size(tree)
    walker = _Walker(var)
    expr = walker.visit(tree.body)
    if not isinstance(expr, sp.Expr) or is_condition(expr):
        raise FormulaError(
            "formula is a condition, not a function of the variable; give an expression"
        )
    bad = undefined_constant(expr)
    if bad is not None:
        raise FormulaError(
            f"formula {' '.join(stripped.split())!r} holds the constant {bad} "
            f"({_UNDEFINED.get(str(bad), 'an infinite value')}), so it is undefined wherever "
            "that part is evaluated; fix the formula"
        )
    params = tuple(sorted(walker.parameters))
    return ParsedFormula(expr, var, params, walker.uses_variable, walker.uses_s2)


def _check_size(tree: ast.AST) -> None:
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise FormulaError(f"formula is nested more than {MAX_DEPTH} levels deep; simplify it")
        if count > MAX_NODES:
            raise FormulaError(f"formula has more than {MAX_NODES} syntax nodes; simplify it")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _where(node: ast.AST) -> str:
    col = getattr(node, "col_offset", None)
    return f" at column {col + 1}" if col is not None else ""


def _numeric_digits(value: sp.Basic) -> float:
    """Decimal digits of a number's magnitude (0 for symbols)."""
    if isinstance(value, sp.Integer):
        return len(str(abs(int(value))))
    if isinstance(value, sp.Rational):
        return max(len(str(abs(value.p))), len(str(value.q)))
    if isinstance(value, sp.Float):
        return abs(math.log10(abs(float(value)))) if value != 0 else 0.0
    return 0.0


class _Walker:
    """Builds the SymPy expression bottom-up from a whitelisted syntax tree."""

    def __init__(self, var: sp.Symbol) -> None:
        self.var = var
        self.parameters: set[str] = set()
        self.uses_variable = False
        self.uses_s2 = False

    def refuse(self, node: ast.AST, what: str) -> FormulaError:
        return FormulaError(f"{what}{_where(node)}")

    def visit(self, node: ast.AST) -> sp.Basic:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            hint = _HINTS.get(type(node), f"{type(node).__name__} is not allowed in a formula")
            raise self.refuse(node, hint)
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> sp.Basic:
        value = node.value
        if isinstance(value, bool):
            return sp.true if value else sp.false
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_DIGITS:
                raise self.refuse(node, f"number has more than {MAX_DIGITS} digits")
            return sp.Integer(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.refuse(node, "number is not finite")
            return sp.Rational(repr(value))  # the decimal as written, exactly
        if isinstance(value, str):
            raise self.refuse(node, f"strings are not allowed (found {value[:20]!r})")
        raise self.refuse(node, f"constant {value!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> sp.Basic:
        name = node.id
        if name == self.var.name:
            self.uses_variable = True
            return self.var
        if name == S2_NAME:
            self.uses_s2 = True
            return self.var**2
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.refuse(node, f"function {name!r} must be called, e.g. {name}(r)")
        if not _NAME_RE.fullmatch(name):
            raise self.refuse(node, f"name {name!r} is not allowed: names are ASCII letters, "
                              "digits and '_', starting with a letter")
        self.parameters.add(name)
        return parameter_symbol(name)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> sp.Basic:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return -self._expr(operand, node.operand)
        if isinstance(node.op, ast.UAdd):
            return self._expr(operand, node.operand)
        if isinstance(node.op, ast.Not):
            return sp.Not(self._cond(operand, node.operand))
        if isinstance(node.op, ast.Invert):
            return sp.Not(self._cond(operand, node.operand))
        raise self.refuse(node, "this unary operator is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> sp.Basic:
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            left = self._cond(self.visit(node.left), node.left)
            right = self._cond(self.visit(node.right), node.right)
            return sp.And(left, right) if isinstance(node.op, ast.BitAnd) else sp.Or(left, right)
        if isinstance(node.op, ast.Pow):
            return self._pow(node)
        build = _BINOPS.get(type(node.op))
        if build is None:
            hint = _HINTS.get(type(node.op), f"operator {type(node.op).__name__} is not allowed")
            raise self.refuse(node, hint)
        left = self._expr(self.visit(node.left), node.left)
        right = self._expr(self.visit(node.right), node.right)
        return build(left, right)

    def _pow(self, node: ast.BinOp) -> sp.Basic:
        base = self._expr(self.visit(node.left), node.left)
        exponent = self._expr(self.visit(node.right), node.right)
        if exponent.is_Number:
            if abs(exponent) > MAX_EXPONENT:
                raise self.refuse(
                    node.right, f"exponent {exponent} is too large (at most {MAX_EXPONENT})"
                )
            if base.is_Number and _numeric_digits(base) * abs(float(exponent)) > MAX_DIGITS:
                raise self.refuse(node, f"power has more than {MAX_DIGITS} digits")
        return sp.Pow(base, exponent)

    def visit_BoolOp(self, node: ast.BoolOp) -> sp.Basic:
        values = [self._cond(self.visit(v), v) for v in node.values]
        return sp.And(*values) if isinstance(node.op, ast.And) else sp.Or(*values)

    def visit_Compare(self, node: ast.Compare) -> sp.Basic:
        terms = [self._expr(self.visit(node.left), node.left)]
        terms += [self._expr(self.visit(c), c) for c in node.comparators]
        parts = []
        for op, a, b in zip(node.ops, terms, terms[1:]):
            build = _COMPARE.get(type(op))
            if build is None:
                raise self.refuse(node, f"comparison {type(op).__name__} is not allowed")
            parts.append(build(a, b))
        return parts[0] if len(parts) == 1 else sp.And(*parts)

    def visit_Call(self, node: ast.Call) -> sp.Basic:
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node, "only calls of named functions such as exp(r) are allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.refuse(node, f"function {name!r} is not allowed; allowed: {allowed}")
        if node.keywords:
            raise self.refuse(
                node.keywords[0].value, f"keyword arguments are not allowed in {name}()"
            )
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.refuse(node, "starred arguments are not allowed")
        lo, hi = _ARITY.get(name, (1, 1))
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise self.refuse(node, f"{name}() takes {want} argument(s), got {n}")
        if name == "Piecewise":
            return self._piecewise(node)
        args = [self.visit(a) for a in node.args]
        if name in ("And", "Or", "Not"):
            args = [self._cond(a, src) for a, src in zip(args, node.args)]
        else:
            args = [self._expr(a, src) for a, src in zip(args, node.args)]
        try:
            return FUNCTIONS[name](*args)
        except (TypeError, ValueError) as exc:
            raise self.refuse(node, f"{name}() cannot take these arguments: {exc}") from None

    def _piecewise(self, node: ast.Call) -> sp.Basic:
        pieces = []
        for arg in node.args:
            if not isinstance(arg, ast.Tuple) or len(arg.elts) != 2:
                raise self.refuse(
                    arg, "each Piecewise argument must be a pair (expression, condition)"
                )
            value = self._expr(self.visit(arg.elts[0]), arg.elts[0])
            cond = self._cond(self.visit(arg.elts[1]), arg.elts[1])
            pieces.append((value, cond))
        if pieces[-1][1] is not sp.true:
            raise self.refuse(
                node.args[-1],
                "Piecewise needs a final branch (expression, True) that covers the rest",
            )
        return sp.Piecewise(*pieces)

    def _expr(self, value: sp.Basic, node: ast.AST) -> sp.Expr:
        if is_condition(value) or not isinstance(value, sp.Expr):
            raise self.refuse(node, "a condition stands where an expression is expected")
        return value

    def _cond(self, value: sp.Basic, node: ast.AST) -> sp.Basic:
        if not is_condition(value):
            raise self.refuse(
                node, "an expression stands where a condition (e.g. r < 1) is expected"
            )
        return value
