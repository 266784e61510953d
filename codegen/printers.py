"""SymPy -> Triton / torch source text: the two printers and ``lower`` (cse, then print).

``lower`` takes the forms to compute (e.g. {"Phi": Phi, "dPhi": Phi'}) and the identifier of
each symbol, runs ``sympy.cse`` over all of them together, and returns the body lines
``t<k> = ...`` and one expression per form. The printers subclass SymPy's CodePrinter (not
PythonCodePrinter: Python semantics such as // and builtin min/max must not leak into Triton);
every call they print comes from the table in ``functions.py``, everything else they cannot
lower goes through ``_print_not_supported`` and raises CodegenError.

Arithmetic is floating point: numbers print as float literals (Rational(1, 3) ->
0.3333333333333333, 2 -> 2.0, pi -> 3.141592653589793), subexpressions without symbols are
evaluated once in high precision (7*sqrt(2)/10 -> 0.9899494936611666), and integer powers are
products (x**2 -> (x*x); x**8 -> t0 = x*x, t1 = t0*t0, (t1*t1)).

The generated code must bind every name of ``names`` to a tensor (Triton: the loaded block or a
scalar kernel argument; torch: a tensor, parameters as 0-dim tensors: torch.exp(1.5) fails) and
import ``triton.language as tl`` or ``torch``.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.codegen.cfunctions import expm1, hypot
from sympy.core.function import UndefinedFunction
from sympy.printing.codeprinter import CodePrinter

from .errors import CodegenError
from .functions import FUNCTIONS, POWERS, TARGETS, Lowering

#: Largest finite and smallest normal float32: Triton types a float literal outside
#: [FP32_TINY, FP32_MAX] as float64, which would move the whole kernel to float64.
FP32_MAX = 3.4028234663852886e38
FP32_TINY = 1.1754943508222875e-38

#: Names the generated code uses for modules; a symbol may not be printed as one of them.
RESERVED_NAMES = frozenset({"tl", "triton", "torch"})

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a float literal as repr prints it; a leading minus is safe too, as no ** is ever printed
_LITERAL = re.compile(r"^-?\d+\.?\d*(e[+-]?\d+)?$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SHOWN = 160  # characters of a sub-expression quoted in an error message


@dataclass(frozen=True, slots=True)
class Lowered:
    """The printed body: ``lines`` are assignments ``t<k> = ...`` in order (shared temporaries
    of sympy.cse and helper temporaries of the lowerings); ``results`` pairs each output name
    with its printed expression, which uses the temporaries."""

    lines: tuple[str, ...]
    results: tuple[tuple[str, str], ...]


def _is_name(text: str) -> bool:
    """An identifier or a literal: cheap to repeat, never needs parentheses."""
    return bool(_IDENTIFIER.match(text) or _LITERAL.match(text))


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``start`` (-1 if none)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _is_atomic(text: str) -> bool:
    """Safe as an operand anywhere: a name, a literal, (...) or a call f(...) as a whole."""
    if _is_name(text):
        return True
    if not text.endswith(")"):
        return False
    head = text.find("(")
    if head < 0 or not (head == 0 or re.match(r"^[A-Za-z_][\w.]*$", text[:head])):
        return False
    return _closing(text, head) == len(text) - 1


def _whole_arguments(steps: tuple[str, ...], placeholder: str) -> bool:
    """Whether every use of ``{placeholder}`` in the steps is a whole call argument."""
    token = "{" + placeholder + "}"
    for step in steps:
        start = step.find(token)
        while start >= 0:
            before = step[:start].rstrip()
            after = step[start + len(token):].lstrip()
            if not (before.endswith(("(", ",")) and after.startswith((")", ","))):
                return False
            start = step.find(token, start + 1)
    return True


def _shown(expr: sp.Basic) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _is_sympy_function(expr: sp.Basic) -> bool:
    """A function of SymPy itself listed in FUNCTIONS (not a user's Function('exp'))."""
    cls = type(expr)
    return (
        cls.__name__ in FUNCTIONS
        and not isinstance(cls, UndefinedFunction)
        and cls.__module__.startswith("sympy.")
    )


def _is_arithmetic(expr: sp.Basic) -> bool:
    """Every node of ``expr`` is a number, + * ** or a known function: it can be evaluated."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Number, sp.NumberSymbol, sp.Add, sp.Mul, sp.Pow)):
            if isinstance(node, sp.Number) and not node.is_finite:
                return False
            continue
        if isinstance(node, sp.Expr) and _is_sympy_function(node):
            continue
        return False
    return True


def _is_constant(expr: sp.Basic) -> bool:
    """A compound numeric subexpression (sqrt(2)/2, log(7/10), tanh(2)): fold it."""
    return (
        isinstance(expr, sp.Expr)
        and not expr.is_Atom
        and not expr.free_symbols
        and _is_arithmetic(expr)
    )


def _real_value(expr: sp.Expr) -> float | None:
    """The value of a constant expression as a float; None where it is complex."""
    value = expr.evalf(30)
    real, imag = value.as_real_imag()
    if imag != 0:
        return None
    try:
        return float(real)
    except (TypeError, OverflowError):
        return math.inf


def fold_constants(expr: sp.Basic) -> sp.Basic:
    """Replace each compound numeric subexpression by its value as a Float (30 digits, then
    rounded once), so that no function of a number reaches the target (torch.tanh(2.0) fails)
    and cse sees numbers, not trees. Complex or infinite constants are left for the printer
    to refuse with their text."""
    if _is_constant(expr):
        value = _real_value(expr)
        if value is not None and math.isfinite(value):
            return sp.Float(value)
        return expr
    if not expr.args or isinstance(expr, (sp.Number, sp.Symbol)):
        return expr
    args = [fold_constants(a) for a in expr.args]
    if all(new is old for new, old in zip(args, expr.args)):
        return expr
    return expr.func(*args)


def _with_expm1(add: sp.Add) -> sp.Expr:
    """a - a exp(y) + ... -> -a expm1(y) + ...: exp(y) - 1 cancels for small y (Weickert's
    1 - exp(-C/s^4) is 0 in fp64 for s > 8 where the value is 1e-15)."""
    terms = list(add.args)
    for k, term in enumerate(terms):
        factors = sp.Mul.make_args(term)
        for factor in factors:
            if not isinstance(factor, sp.exp):
                continue
            rest = sp.Mul(*[f for f in factors if f is not factor])
            if -rest in terms[:k] + terms[k + 1:]:
                terms.remove(-rest)
                terms[terms.index(term)] = rest * expm1(factor.args[0])
                return _with_expm1(sp.Add(*terms)) if len(terms) > 1 else terms[0]
    return add


def _square_roots(add: sp.Add) -> list[sp.Expr] | None:
    """[u, v, ...] with add = u**2 + v**2 + ..., each u free of roots of the symbols (|r|/lam
    for r**2/lam**2, lam for lam**2, 1 for 1); None when a term is no such square."""
    roots = []
    for term in add.args:
        if term.is_nonnegative is not True:
            return None
        root = sp.sqrt(term)
        if any(isinstance(p, sp.Pow) and not p.exp.is_integer and p.base.free_symbols
               for p in sp.preorder_traversal(root)):
            return None
        roots.append(root)
    return roots


def _with_hypot(power: sp.Pow) -> sp.Expr:
    """(u**2 + v**2)**(k/2) -> hypot(u, v)**k, so that the squares do not overflow
    (Charbonnier r/sqrt(1 + r**2/lam**2) at |r| = 1e20 in fp32 is lam, not 0)."""
    exponent = power.exp
    if isinstance(exponent, sp.Float):
        exponent = sp.Rational(float(exponent))
    if not (isinstance(power.base, sp.Add) and power.base.free_symbols and exponent.is_Rational
            and (exponent.q == 2 or (exponent.is_integer and exponent < 0))):
        return power
    roots = _square_roots(power.base)
    if roots is None:
        return power
    roots.sort(key=lambda u: u.is_number)  # numbers last: torch.hypot takes a tensor first
    value = roots[-1]
    for root in reversed(roots[:-1]):
        value = hypot(root, value)
    return sp.Pow(value, 2 * exponent, evaluate=False)


def stable_form(expr: sp.Basic) -> sp.Basic:
    """``expr`` rewritten for floating point, the same function: a - a exp(y) as -a expm1(y),
    powers of sums of squares through hypot (their quotients divide by hypot step by step in
    the printer)."""
    expr = expr.replace(lambda e: isinstance(e, sp.Add), _with_expm1)
    return expr.replace(lambda e: isinstance(e, sp.Pow), _with_hypot)


class _Printer(CodePrinter):
    """The printer both targets share; the subclasses set ``target`` and ``language``.

    State: ``names`` (symbol -> identifier, extended with the temporaries of cse), ``lines``
    (helper assignments the printed expressions use, in order), ``like`` (the identifier of the
    variable, whose tensor gives results their shape), ``tensors`` (symbols holding tensors
    of that shape: the variable and the temporaries computed from it) and ``definitions`` (what
    each cse temporary stands for, so that assumptions such as x**2 + 1 > 0 survive cse).
    """

    target = ""
    language = ""
    printmethod = "_fluxact_print"  # no SymPy class defines it: every node goes through _print

    def __init__(
        self,
        names: Mapping[sp.Symbol, str],
        *,
        like: str | None = None,
        tensors: set[sp.Basic] | None = None,
        prefix: str = "t",
        float64: bool = False,
    ) -> None:
        super().__init__()
        self.float64 = float64  # the code computes in float64: any finite literal prints
        self.names: dict[sp.Basic, str] = dict(_checked_names(names))
        self.lines: list[str] = []
        self.like = like
        if tensors is None:  # by default only the variable itself holds a tensor
            tensors = {s for s, name in self.names.items() if name == like}
        self.tensors: set[sp.Basic] = set(tensors)
        self.prefix = prefix
        self._bound: dict[str, str] = {}  # text -> the temporary holding it
        # cse temporary -> the expression it stands for, in the original symbols
        self.definitions: dict[sp.Symbol, sp.Basic] = {}

    # -- the interface -------------------------------------------------------------------------

    def doprint(self, expr: Any, assign_to: Any = None) -> str:
        """The target text of ``expr``; helper temporaries it needs are appended to ``lines``
        (emit them first). With ``assign_to`` (a name or symbol): the statement ``name = ...``."""
        if not isinstance(expr, sp.Basic):
            if isinstance(expr, (int, float)) and not isinstance(expr, bool):
                expr = sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
            else:
                raise CodegenError(
                    f"cannot print {expr!r} for {self.language}: give a SymPy expression"
                )
        text = self._print(expr)
        if assign_to is None:
            return text
        target = assign_to if isinstance(assign_to, str) else self._print(assign_to)
        return f"{target} = {text}"

    def bind(self, text: str) -> str:
        """A temporary holding ``text``: appends ``t<k> = text`` to ``lines``, or returns the
        temporary that already holds the same text (the lines are straight-line code)."""
        if text.startswith("(") and _closing(text, 0) == len(text) - 1:
            text = text[1:-1]
        if text not in self._bound:
            self._bound[text] = f"{self.prefix}{len(self._bound)}"
            self.lines.append(f"{self._bound[text]} = {text}")
        return self._bound[text]

    def broadcast(self, text: str, expr: sp.Basic) -> str:
        """``text`` (a value not computed from the variable) as a tensor of the variable's
        shape, so that every result is one; unchanged without a variable."""
        if self.like is None:
            return text
        helper = POWERS["full" if isinstance(expr, sp.Number) else "broadcast"]
        return self._apply(helper, {"x": self.like, "y": text})

    # -- dispatch: a whitelist, so nothing unknown is printed by a SymPy fallback -------------

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if not isinstance(expr, sp.Basic):
            return super()._print(expr, **kwargs)
        if _is_constant(expr):
            value = _real_value(expr)
            if value is None:
                return self._print_not_supported(expr)
            return self._literal(value, expr)
        if isinstance(expr, sp.Symbol):
            return self._print_Symbol(expr)
        if isinstance(expr, (sp.Number, sp.NumberSymbol)):
            if not (expr.is_finite and expr.is_real):
                return self._print_not_supported(expr)
            return self._literal(float(expr), expr)
        if isinstance(expr, sp.logic.boolalg.BooleanAtom):
            return "True" if expr else "False"
        if isinstance(expr, sp.Pow):
            return self._print_Pow(expr)
        if isinstance(expr, sp.Mul) and self._chains_hypot(expr):
            return self._print_hypot_quotient(expr)
        if isinstance(expr, sp.Mul) and _power_ratio(expr) is not None:
            return self._print_power_ratio(expr)
        if isinstance(expr, sp.Mul) and _reciprocal_power(expr) is not None:
            return self._print_reciprocal_power(expr)
        if isinstance(expr, (sp.Add, sp.Mul)):
            return super()._print(expr, **kwargs)
        if isinstance(expr, (expm1, hypot)):  # from stable_form
            lowering = POWERS[type(expr).__name__]
            return self._apply(lowering, dict(zip(("x", "y"), map(self._print, expr.args))))
        if _is_sympy_function(expr):
            return self._print_known(expr, FUNCTIONS[type(expr).__name__])
        return self._print_not_supported(expr)

    def _print_not_supported(self, expr: Any) -> str:
        """The one exit for everything the printer cannot lower."""
        raise CodegenError(f"cannot print {_shown(expr)} for {self.language}: {_hint(expr)}")

    def parenthesize(self, item: Any, level: float, strict: bool = False) -> str:
        # a non-negative number prints as a literal: 0.5*x, not (0.5)*x
        if isinstance(item, sp.Number) and item.is_finite and item >= 0:
            return self._print(item)
        return super().parenthesize(item, level, strict)

    def _chains_hypot(self, expr: sp.Mul) -> bool:
        """Whether a / hypot(u, v)**n prints as a quotient chain: it has such a factor (also
        as a common subexpression bound to a name), and a is a sum of terms of degree at most
        1 (a = 1 - 3 r**2 overflows itself: then a * h**-n gives inf * 0 = NaN, which the
        repair of NaN from finite inputs turns into the limit, instead of -inf/h/h)."""
        hyp = [f for f in expr.args if _is_hypot_quotient(f, self.definitions)]
        if not hyp:
            return False
        rest = sp.Mul(*[f for f in expr.args if f not in hyp])
        for term in sp.Add.make_args(rest.xreplace(self.definitions)):
            symbols = sorted(term.free_symbols, key=str)
            if not symbols:
                continue
            try:
                if sp.Poly(term, *symbols).total_degree() > 1:
                    return False
            except sp.PolynomialError:
                return False
        return True

    def _print_hypot_quotient(self, expr: sp.Mul) -> str:
        """a / hypot(u, v)**n as ((a/h)/h)...: a/(h*h) overflows where h*h does (r/(1 +
        r**2) at r = 1e20 in fp32 is 1e-20, not 0)."""
        rest = [f for f in expr.args if not _is_hypot_quotient(f, self.definitions)]
        text = self._print(sp.Mul(*rest)) if rest else "1.0"
        text = text if _is_atomic(text) else f"({text})"
        for factor in expr.args:
            if _is_hypot_quotient(factor, self.definitions):
                h = self._print(factor.base)
                h = h if _is_name(h) else self.bind(h)
                for _ in range(-int(factor.exp)):
                    text = f"({text}/{h})"
        return text

    def _print_power_ratio(self, expr: sp.Mul) -> str:
        """u**n / v**n as (u/v)**n: lam**8/r**8 is 0 in fp32 for r > 1e5 where r**8
        overflows, (lam/r)**8 only where the value underflows."""
        ratio = _power_ratio(expr)
        assert ratio is not None
        up, down = ratio
        quotient = self._print(up.base / down.base)
        name = quotient if _is_name(quotient) else self.bind(quotient)
        return self._times_rest(expr, (up, down), self._power_of_name(name, int(up.exp)))

    def _print_reciprocal_power(self, expr: sp.Mul) -> str:
        """c / v**n as c*(1/v)**n (_integer_power): 3.3/x**8 is 0 in fp32 from x = 6e4 on,
        3.3*(1/x)**8 only where the value underflows."""
        down = _reciprocal_power(expr)
        assert down is not None
        return self._times_rest(expr, (down,), self._integer_power(down.base, int(down.exp)))

    def _times_rest(self, expr: sp.Mul, used: tuple[sp.Basic, ...], power: str) -> str:
        """``power`` (the printed factors ``used`` of ``expr``) times the other factors."""
        rest = [f for f in expr.args if not any(f is u for u in used)]
        if not rest:
            return power
        return f"({self.parenthesize(sp.Mul(*rest), sp.printing.precedence.PRECEDENCE['Mul'])}"\
               f"*{power})"

    # -- atoms ---------------------------------------------------------------------------------

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        name = self.names.get(expr)
        if name is None:
            raise CodegenError(
                f"cannot print the symbol {expr.name!r} for {self.language}: it has no name; "
                f"give it a value (params={{{expr.name!r}: ...}}) or pass "
                f"names={{..., {expr.name}: {expr.name!r}}} to lower()"
            )
        return name

    def _literal(self, value: float, expr: sp.Basic) -> str:
        """A number as a float literal with the full double precision of its value."""
        if not math.isfinite(value):
            return self._print_not_supported(expr)
        if (self.target == "triton" and not self.float64 and value != 0
                and not FP32_TINY <= abs(value) <= FP32_MAX):
            raise CodegenError(
                f"cannot print the number {_shown(expr)} for {self.language}: it is outside "
                f"float32's normal range [{FP32_TINY:.3g}, {FP32_MAX:.3g}]; rescale the "
                f"formula (e.g. a parameter in other units)"
            )
        return repr(float(value))

    # -- powers --------------------------------------------------------------------------------

    def _print_Pow(self, expr: sp.Pow) -> str:
        base, exponent = expr.base, expr.exp
        if isinstance(exponent, sp.Float):
            exponent = sp.Rational(float(exponent))  # exact: 2.0 -> 2, 0.5 -> 1/2
        if exponent.is_Integer:
            return self._integer_power(base, int(exponent))
        if base.is_number:  # 2**y, pi**y (constant bases of other kinds are folded)
            if not base > 0:
                return self._print_not_supported(expr)  # (-2)**y: complex
            # c**y = exp(y log c), log c evaluated once
            log_base = self._literal(float(sp.log(base).evalf(30)), base)
            scaled = self.parenthesize(exponent, sp.printing.precedence.PRECEDENCE["Mul"])
            return self._apply(FUNCTIONS["exp"], {"x": f"{log_base}*{scaled}"})
        if exponent.is_Rational:
            p, q = int(exponent.p), int(exponent.q)
            if q == 2:
                return self._half_integer_power(base, p)
            if q % 2 == 1 and not base.xreplace(self.definitions).is_nonnegative:
                # the real root: cbrt(x) = sign(x) |x|**(1/3), and |x|**(p/q) for even p
                helper = POWERS["odd_root" if p % 2 else "even_root"]
                return self._apply(helper, {"x": self._print(base), "y": self._print(exponent)})
        return self._apply(POWERS["pow"], {"x": self._print(base), "y": self._print(exponent)})

    def _integer_power(self, base: sp.Basic, n: int) -> str:
        """x**n as products: (x*x), (x*x*x), squarings into temporaries above 3; for n < -1
        the same of 1/x, which underflows gradually where x**-n overflows (1/x**8 is 0 in
        fp32 from x = 6e4 on, (1/x)**8 keeps digits down to 1e-45: Weickert's F(x) at large
        x); 1/x for n = -1."""
        if n == 0:
            return "1.0"
        if n == -1:
            return f"(1.0/{self._integer_power(base, 1)})"
        if n < 0:
            return self._power_of_name(self.bind(f"1.0/{self._integer_power(base, 1)}"), -n)
        text = self._print(base)
        if n == 1:
            return text if _is_atomic(text) else f"({text})"
        return self._power_of_name(text if _is_name(text) else self.bind(text), n)

    def _power_of_name(self, name: str, n: int) -> str:
        """name**n for n >= 2 by binary powering: the product of name**(2**k) over the bits k
        of n, each square but the last bound to a temporary (x**8 -> 3 multiplications)."""
        if n <= 3:
            return "(" + "*".join([name] * n) + ")"
        factors = []
        square = name
        while True:
            if n & 1:
                factors.append(square)
            n >>= 1
            if not n:
                break
            product = f"{square}*{square}"
            square = self.bind(product) if n > 1 else f"({product})"
        return factors[0] if len(factors) == 1 else "(" + "*".join(factors) + ")"

    def _half_integer_power(self, base: sp.Basic, p: int) -> str:
        """x**(p/2), p odd: x**((|p|-1)/2) * sqrt(x), and 1/that for p < 0 (NaN for x < 0,
        where SymPy's value is complex)."""
        if p in (1, -1):
            helper = POWERS["sqrt" if p == 1 else "rsqrt"]
            return self._apply(helper, {"x": self._print(base)})
        text = self._print(base)
        name = text if _is_name(text) else self.bind(text)
        n = (abs(p) - 1) // 2
        root = self._apply(POWERS["sqrt"], {"x": name})
        power = self._power_of_name(name, n) if n > 1 else name
        value = f"({power}*{root})"
        return value if p > 0 else f"(1.0/{value})"

    # -- known functions -----------------------------------------------------------------------

    def _print_known(self, expr: sp.Basic, lowering: Lowering) -> str:
        if lowering.form == "where":
            return self._print_where(expr, lowering)
        if lowering.form == "fold":
            return self._print_fold(expr, lowering)
        places = ("a", "b") if lowering.form == "relation" else ("x", "y")
        used = {p for step in lowering.steps(self.target) for p in _PLACEHOLDER.findall(step)}
        if len(expr.args) != len([p for p in places if p in used]):
            return self._print_not_supported(expr)
        args = dict(zip(places, (self._print(a) for a in expr.args)))
        return self._apply(lowering, args)

    def _print_fold(self, expr: sp.Basic, lowering: Lowering) -> str:
        """Min/Max/And/Or of any number of arguments, folded from the right; for torch, a
        number argument comes last through ``torch_number`` (torch.clamp)."""
        args = list(expr.args)
        numbers = [a for a in args if not a.free_symbols]
        others = [a for a in args if a.free_symbols]
        if not others:
            return self._print_not_supported(expr)
        if self.target == "triton" and isinstance(expr, (sp.And, sp.Or)):
            scalars = [a for a in others if not a.free_symbols & self.tensors]
            tensors = [a for a in others if a.free_symbols & self.tensors]
            if scalars and tensors:
                # the interpreter cannot '&' a scalar boolean (a parameter's condition) with a
                # tensor one (numpy refuses the casting): where(s, t, False) is s & t
                text = self._print(expr.func(*tensors))
                for scalar in scalars:
                    s_text = self._print(scalar)
                    text = (f"tl.where({s_text}, {text}, False)" if isinstance(expr, sp.And)
                            else f"tl.where({s_text}, True, {text})")
                return text
        texts = [self._print(a) for a in others]
        text = texts[-1]
        for left in reversed(texts[:-1]):
            text = self._apply(lowering, {"a": left, "b": text})
        number_step = lowering.torch_number if self.target == "torch" else None
        for number in numbers:
            value = self._print(number)
            if number_step is None:
                text = self._apply(lowering, {"a": text, "b": value})
            else:
                text = self._apply(Lowering("call", (number_step,), (number_step,)),
                                   {"a": text, "b": value})
        return text

    def _print_where(self, expr: sp.Piecewise, lowering: Lowering) -> str:
        """Piecewise((v1, c1), ..., (vn, True)) -> where(c1, v1, where(..., vn))."""
        pairs = expr.args
        if pairs[-1].cond != sp.true:
            raise CodegenError(
                f"cannot print {_shown(expr)} for {self.language}: the Piecewise has no final "
                f"branch (value, True), so some inputs have no value; add one, e.g. (0, True)"
            )
        printed = [(self._print(v), self._print(c)) for v, c in pairs[:-1]]
        last = pairs[-1].expr
        text = self._print(last)
        if self.target == "torch" and not any(v.free_symbols & self.tensors for v, _ in pairs):
            # torch.where(c, 1.0, 0.0) would take torch's default dtype, not the input's
            text = self.broadcast(text, last)
        for value, cond in reversed(printed):
            text = self._apply(lowering, {"cond": cond, "a": value, "b": text})
        return text

    def _apply(self, lowering: Lowering, args: dict[str, str]) -> str:
        """Render a lowering's steps: repeated or embedded arguments are bound or
        parenthesized first, every step but the last becomes a temporary."""
        steps = lowering.steps(self.target)
        args = dict(args)
        for place, text in args.items():
            uses = sum(step.count("{" + place + "}") for step in steps)
            if uses > 1 and not _is_name(text):
                args[place] = self.bind(text)
            elif (
                not _is_atomic(text)
                and not _whole_arguments(steps, place)
                and lowering.form != "relation"  # + - * / bind tighter than a comparison
            ):
                args[place] = f"({text})"
        for k, step in enumerate(steps[:-1]):
            args[f"s{k}"] = self.bind(step.format(**args))
        text = steps[-1].format(**args)
        return text if _is_atomic(text) else f"({text})"


class TritonPrinter(_Printer):
    """Prints for a @triton.jit body (``import triton.language as tl``), fp32 arithmetic."""

    target = "triton"
    language = "Triton"


class TorchPrinter(_Printer):
    """Prints torch code (``import torch``) in the input tensor's floating dtype."""

    target = "torch"
    language = "torch"


PRINTERS: Mapping[str, type[_Printer]] = {"triton": TritonPrinter, "torch": TorchPrinter}


def _hint(expr: Any) -> str:
    """How to fix an expression the printers cannot lower."""
    if isinstance(expr, (sp.Integral, sp.Derivative)):
        return (
            "give a closed form (SymPy found none), or add a lowering to codegen/functions.py"
        )
    if isinstance(expr, (sp.Number, sp.NumberSymbol)) or expr in (sp.zoo, sp.nan):
        return (
            "the value is not a finite real number; fluxact generates code for finite values "
            "only: give a finite value there (e.g. the limit), or leave out this form"
        )
    if isinstance(expr, sp.Basic) and (expr.has(sp.I) or expr.is_extended_real is False):
        return (
            "the value is complex; fluxact generates real code only: restrict the formula to "
            "where it is real"
        )
    if isinstance(expr, sp.Piecewise):
        return "add a final branch (value, True)"
    if isinstance(expr, (sp.Function, sp.Min, sp.Max)):
        known = ", ".join(sorted(FUNCTIONS))
        return (
            f"{type(expr).__name__} with these arguments has no lowering; rewrite the formula "
            f"with {known}, or add a lowering to codegen/functions.py"
        )
    return (
        f"{type(expr).__name__} is not printable (numbers, named symbols, + - * / ** and the "
        f"functions of codegen/functions.py are); rewrite it, or add a lowering to "
        f"codegen/functions.py"
    )


def _power_ratio(expr: sp.Mul) -> tuple[sp.Pow, sp.Pow] | None:
    """Factors u**n and v**-n (n >= 2 an integer) of a product, or None: printed as (u/v)**n,
    which is finite wherever the value is (u*u/(v*v) is inf/inf = NaN for u = v = 1e20 and
    0/0 for u = v = 1e-25 in fp32), with fewer roundings."""
    powers = [f for f in expr.args if isinstance(f, sp.Pow) and f.exp.is_Integer]
    for up in powers:
        if up.exp < 2:
            continue
        for down in powers:
            if down.exp == -up.exp and up.base.free_symbols | down.base.free_symbols:
                return up, down
    return None


def _reciprocal_power(expr: sp.Mul) -> sp.Pow | None:
    """A factor v**-n (n >= 2 an integer, v not a number) of a product, or None."""
    for f in expr.args:
        if (isinstance(f, sp.Pow) and f.exp.is_Integer and f.exp <= -2
                and f.base.free_symbols):
            return f
    return None


def _inline_hypot_powers(replacements: list[tuple[sp.Symbol, sp.Basic]],
                         reduced: list[sp.Basic]
                         ) -> tuple[list[tuple[sp.Symbol, sp.Basic]], list[sp.Basic]]:
    """Put hypot(u, v)**-n back where common subexpression elimination bound it to a name:
    t = 1/h**3 overflows to 0 where the product it multiplies (lam**3 t) does not; inline, the
    printer divides step by step or as (lam/h)**3."""
    inline: dict[sp.Symbol, sp.Basic] = {}
    kept = []
    for symbol, expr in replacements:
        expr = expr.xreplace(inline)
        if isinstance(expr, sp.Pow) and expr.exp.is_integer is True and expr.exp < 0 and (
                isinstance(expr.base, hypot) or isinstance(expr.base, sp.Symbol)):
            base = expr.base
            if isinstance(base, hypot) or any(base == s and isinstance(e, hypot)
                                              for s, e in kept):
                inline[symbol] = expr
                continue
        kept.append((symbol, expr))
    return kept, [e.xreplace(inline) for e in reduced]


def _is_hypot_quotient(expr: sp.Basic, definitions: Mapping[sp.Symbol, sp.Basic] | None = None
                       ) -> bool:
    """hypot(u, v)**-n, n a positive integer; the base may be a name that common subexpression
    elimination bound to a hypot (``definitions``)."""
    if not (isinstance(expr, sp.Pow) and expr.exp.is_integer is True and expr.exp < 0):
        return False
    base = expr.base
    if isinstance(base, sp.Symbol) and definitions:
        base = definitions.get(base, base)
    return isinstance(base, hypot)


def _checked_names(names: Mapping[sp.Symbol, str]) -> Iterator[tuple[sp.Basic, str]]:
    """The symbol -> identifier pairs, refusing what the generated code could not bind."""
    seen: dict[str, sp.Basic] = {}
    for symbol, name in names.items():
        if not isinstance(symbol, sp.Symbol):
            raise CodegenError(f"names maps {symbol!r}, which is not a SymPy Symbol")
        if (
            not isinstance(name, str)
            or not _IDENTIFIER.match(name)
            or keyword.iskeyword(name)
            or name in RESERVED_NAMES
        ):
            raise CodegenError(
                f"the name {name!r} for the symbol {symbol} is not usable in generated code: "
                f"use a Python identifier other than {', '.join(sorted(RESERVED_NAMES))}"
            )
        if name in seen and seen[name] != symbol:
            raise CodegenError(
                f"the symbols {seen[name]} and {symbol} are both named {name!r}; give each "
                f"its own name"
            )
        seen[name] = symbol
        yield symbol, name


def _temporary_prefix(names: Mapping[sp.Symbol, str]) -> str:
    """'t' (t0, t1, ...), or another prefix where a name of ``names`` looks like t<k>."""
    prefix = "t"
    while any(re.fullmatch(rf"{prefix}\d+", name) for name in names.values()):
        prefix = "_" + prefix
    return prefix


def _cse_symbols() -> Iterator[sp.Symbol]:
    k = 0
    while True:
        yield sp.Dummy(f"cse{k}")
        k += 1


def lower(
    outputs: Mapping[str, sp.Expr],
    names: Mapping[sp.Symbol, str],
    target: str,
    *,
    variable: sp.Symbol | None = None,
    given: Sequence[tuple[sp.Symbol, sp.Expr]] = (),
    float64: bool = False,
) -> Lowered:
    """Print ``outputs`` (output name -> expression) for ``target`` ("triton" or "torch"),
    sharing common subexpressions (sympy.cse over all outputs together).

    ``names`` gives the identifier of every symbol (the variable and the parameters, e.g.
    {r: "x", lam: "lam"}). ``variable`` is the symbol whose tensor the results take the shape
    of (default: the first symbol of ``names``): a result that does not depend on it (Phi = 0,
    Psi = lam**2) is printed as a tensor of its shape (tl.full / torch.full_like, or
    ``c + zeros``), so that every result is a tensor like the input. ``given``: symbols the
    outputs use, each with its expression in the symbols of ``names`` (and of the ones before
    it), computed first in that order (the reduced variable x = r/c). ``float64``: the code
    runs in float64 only (the limit repair), so numbers outside float32's range may be
    printed (Triton types them float64, which is then no change). Raises CodegenError,
    naming the output and the sub-expression, for anything that has no lowering.
    """
    if target not in TARGETS:
        raise CodegenError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    printer_class = PRINTERS[target]
    checked = dict(_checked_names(names))
    if variable is None:
        variable = next(iter(checked), None)
    like = checked.get(variable) if variable is not None else None
    prefix = _temporary_prefix(checked)
    given = [(symbol, fold_constants(stable_form(fold_constants(expr))))
             for symbol, expr in given]
    placeholders = {**checked, **{symbol: f"_given{k}" for k, (symbol, _) in enumerate(given)}}

    forms: dict[str, sp.Expr] = {}
    for out, expr in outputs.items():
        if isinstance(expr, (int, float)) and not isinstance(expr, bool):
            expr = sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
        if not isinstance(expr, sp.Expr):
            raise CodegenError(
                f"output {out!r} is {_shown(expr) if isinstance(expr, sp.Basic) else expr!r}, "
                f"not a SymPy expression with a value; give an expression (a condition c is "
                f"Piecewise((1, c), (0, True)))"
            )
        folded = fold_constants(stable_form(fold_constants(expr)))
        try:  # a first pass on the whole form, so an error names the form's own sub-expression
            printer_class(placeholders, like=like, prefix=prefix, float64=float64).doprint(folded)
        except CodegenError as exc:
            raise CodegenError(f"output {out!r}: {exc}") from None
        forms[out] = folded

    replacements, reduced = sp.cse(list(forms.values()), symbols=_cse_symbols())
    replacements, reduced = _inline_hypot_powers(replacements, reduced)
    tensors: set[sp.Basic] = {variable} if variable is not None else set()
    printer = printer_class(checked, like=like, tensors=tensors, prefix=prefix,
                            float64=float64)
    for symbol, expr in [*given, *replacements]:
        printer.names[symbol] = printer.bind(printer.doprint(expr))
        printer.definitions[symbol] = expr.xreplace(printer.definitions)
        if expr.free_symbols & printer.tensors:
            printer.tensors.add(symbol)
    results = []
    for out, expr in zip(forms, reduced):
        text = printer.doprint(expr)
        if not expr.free_symbols & printer.tensors:
            text = printer.broadcast(text, expr)
        results.append((out, text))
    return Lowered(tuple(printer.lines), tuple(results))
