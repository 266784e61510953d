"""The one table of known functions: how each SymPy function lowers to Triton and to torch.

A ``Lowering`` holds, for each target, the *steps* of the lowering: format strings over the
placeholders of its ``form`` and the earlier steps ``{s0}``, ``{s1}``, ... Every step but the
last becomes a temporary ``t<k> = ...``; the last is the value. A placeholder used more than once
is bound to a temporary first, so no argument is computed twice.

Forms and their placeholders:
- ``call``: ``{x}`` (first argument), ``{y}`` (second; Heaviside's value at 0);
- ``relation``: ``{a}``, ``{b}`` (left and right side);
- ``fold``: ``{a}``, ``{b}``, folded from the right over any number of arguments
  (Min(a, b, c) -> min(a, min(b, c))); ``torch_number`` is the torch step where ``b`` is a
  number (torch.clamp takes a number, torch.minimum does not);
- ``where``: ``{cond}``, ``{a}``, ``{b}``, nested from the last branch (Piecewise).

Why Triton lowers tanh, sinh, cosh, asinh, tan, atan and erf by hand: under TRITON_INTERPRET=1
the libdevice functions (tl.extra.*.libdevice: tanh, erf, pow, atan, ...) have failed (triton
issue 8825), and Triton's standard library (tl.sigmoid, tl.zeros_like, ...) is made of
@triton.jit functions that only run in the interpreter when TRITON_INTERPRET was set before
triton was imported. Every Triton step below therefore uses builtins only (tl.exp, tl.log,
tl.sqrt, tl.sin, tl.cos, tl.abs, tl.where, tl.minimum, tl.maximum, tl.full), which run both
compiled and interpreted (compiled, Triton maps tl.log, tl.sin, tl.cos and tl.sqrt to libdevice
itself, below its IR: the kernel's TTIR calls no extern function). Each hand lowering is exact
near 0 (a series there, so that tanh(r)/r -> 1 survives in fp32) and never overflows before the
function itself does. torch has accurate tanh, erf, atan, asinh, ... and uses them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

TARGETS: tuple[str, ...] = ("triton", "torch")
FORMS: tuple[str, ...] = ("call", "relation", "fold", "where")


@dataclass(frozen=True, slots=True)
class Lowering:
    """How one function prints: its ``form`` and its steps for each target (module docstring).

    ``needs_fp32``: the Triton step accepts only fp32/fp64 (tl.exp, tl.log, tl.sqrt, tl.sin and
    tl.cos do), so the kernel must compute in fp32 (fp16/bf16 loaded, upcast, stored back).
    ``note`` states the math and, for hand lowerings, the error bound.
    """

    form: str
    triton: tuple[str, ...]
    torch: tuple[str, ...]
    needs_fp32: bool = False
    torch_number: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"unknown form {self.form!r}; use one of {', '.join(FORMS)}")

    def steps(self, target: str) -> tuple[str, ...]:
        """The steps for ``target`` ("triton" or "torch")."""
        return self.triton if target == "triton" else self.torch


def _horner(var: str, coefficients: tuple[float, ...]) -> str:
    """c0 + v*(c1 + v*(c2 + ...)) as text, the coefficients as full-precision literals."""
    text = repr(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        text = f"{c!r} + {var}*({text})"
    return text


def _odd_series(coefficients: tuple[float, ...]) -> str:
    """x*(c0 + x2*(c1 + ...)): an odd Maclaurin series in {x} with x2 = {s3} = x*x."""
    return "{x}*(" + _horner("{s3}", coefficients) + ")"


def _signed(magnitude: str) -> str:
    """f(x) = sign(x) f(|x|) for an odd f, where ``magnitude`` is the step holding f(|x|)."""
    return f"tl.where({{x}} < 0.0, -{magnitude}, {magnitude})"


# tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - ... to x^23; for |x| < 1/4 the first
# omitted term is below 6e-20 |x|: the series is as good as the float64 arithmetic (with five
# terms it was 1e-8 off, which float64 kernels showed)
_TANH_SERIES = (1.0, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075,
                -929569 / 638512875, 6404582 / 10854718875, -443861162 / 1856156927625,
                18888466084 / 194896477400625, -113927491862 / 2900518163668125)
# sinh x = x + x^3/3! + ... + x^21/21!; for |x| < 1/2 the first omitted term is below 1e-28 |x|
# (to x^9 it was 3e-10: float64 kernels showed it).
_SINH_SERIES = tuple(1 / math.factorial(2 * k + 1) for k in range(11))
# asinh x = sum_k (-1)^k (2k)! / (4^k (k!)^2 (2k + 1)) x^(2k+1) = x - x^3/6 + 3x^5/40 - ...,
# to x^29; for |x| < 1/4 the first omitted term is below 1e-19 |x| (to x^9 it was 3e-8).
_ASINH_SERIES = tuple((-1) ** k * math.factorial(2 * k) / (4**k * math.factorial(k) ** 2
                                                           * (2 * k + 1)) for k in range(15))
# erf x = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1)), n = 0..18; for |x| < 1 the first
# omitted term is below 2.4e-19 and the alternating sum loses at most a factor
# erfi(1)/erf(1) < 2 to cancellation.
_ERF_SERIES = tuple(1.1283791670955126 * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                    for n in range(19))
#: erf x = 1 - exp(-x^2) erfcx(x) for x >= 1, erfcx(x) = exp(x^2) erfc(x) interpolated on
#: [1, ERF_ONE] at the Chebyshev points; past ERF_ONE, erfc x < 2.2e-17 and erf x rounds to 1
#: in float64.
ERF_ONE = 6.0
ERFCX_DEGREE = 30


def _erfcx_chebyshev(a: float, b: float, degree: int) -> tuple[float, ...]:
    """Coefficients c_j of erfcx(x) ~ c_0/2 + sum_j c_j T_j(t), t = (2x - a - b)/(b - a), by
    interpolation at the degree + 1 Chebyshev points, computed with mpmath at 40 digits.
    erfcx is entire, so the c_j fall geometrically: at degree 30 on [1, 6] the interpolant is
    within 2e-18 relative (measured against mpmath); with the c_j rounded to float64, 9e-17."""
    import mpmath  # SymPy's own dependency; only the code generator needs it

    with mpmath.workdps(40):
        n = degree + 1
        half, mid = mpmath.mpf(b - a) / 2, mpmath.mpf(b + a) / 2
        theta = [mpmath.pi * (k + mpmath.mpf(1) / 2) / n for k in range(n)]
        values = [mpmath.erfc(x) * mpmath.exp(x * x)
                  for x in (mid + half * mpmath.cos(t) for t in theta)]
        return tuple(float(2 * mpmath.fsum(v * mpmath.cos(j * t) for v, t in zip(values, theta))
                           / n) for j in range(n))


def _clenshaw(t: str, first: int, coefficients: tuple[float, ...]) -> tuple[str, ...]:
    """Steps summing c_0/2 + sum_j c_j T_j(t) by Clenshaw's recurrence b_j = c_j + 2t b_(j+1)
    - b_(j+2) (stable: its rounding errors stay of the order of the largest |c_j|); ``t`` is a
    step's placeholder, ``first`` the index the first step gets."""
    c = coefficients
    steps = [f"2.0*{t}", repr(c[-1]), f"{c[-2]!r} + {{s{first}}}*{{s{first + 1}}}"]
    for j in range(len(c) - 3, 0, -1):  # b_j for j = n-2 .. 1
        k = first + len(steps)
        steps.append(f"{c[j]!r} + {{s{first}}}*{{s{k - 1}}} - {{s{k - 2}}}")
    k = first + len(steps)
    steps.append(f"{c[0] / 2!r} + {t}*{{s{k - 1}}} - {{s{k - 2}}}")
    return tuple(steps)


_ERFCX = _erfcx_chebyshev(1.0, ERF_ONE, ERFCX_DEGREE)
# atan y = sum_k (-1)^k y^(2k+1) / (2k + 1) to y^23; after two argument halvings
# (atan z = 4 atan y, y <= tan(pi/16) < 0.199) the first omitted term is below 1e-18 |y|
_ATAN_SERIES = tuple((-1) ** k / (2 * k + 1) for k in range(12))


def _call(triton: str, torch: str, needs_fp32: bool = True, note: str = "") -> Lowering:
    return Lowering("call", (triton,), (torch,), needs_fp32, note=note)


def _relation(op: str) -> Lowering:
    step = f"({{a}} {op} {{b}})"
    return Lowering("relation", (step,), (step,), note=f"a {op} b, a boolean tensor")


_TABLE: dict[str, Lowering] = {
    "exp": _call("tl.exp({x})", "torch.exp({x})"),
    "log": _call("tl.log({x})", "torch.log({x})", note="natural log; log(x, b) reaches the "
                 "printer as log(x)/log(b)"),
    "Abs": _call("tl.abs({x})", "torch.abs({x})", needs_fp32=False),
    "sign": Lowering(
        "call",
        ("tl.where({x} > 0.0, 1.0, tl.where({x} < 0.0, -1.0, {x}*0.0))",),
        ("torch.sign({x})",),
        note="-1, 0, 1; x*0.0 keeps the sign of -0.0 and propagates NaN",
    ),
    "Heaviside": Lowering(
        "call",
        ("tl.where({x} > 0.0, 1.0, tl.where({x} < 0.0, 0.0, {x}*0.0 + {y}))",),
        ("torch.where({x} > 0.0, 1.0, torch.where({x} < 0.0, 0.0, {x}*0.0 + {y}))",),
        note="SymPy's Heaviside(x, H0): 1 for x > 0, 0 for x < 0, H0 (default 1/2) at 0; "
             "x*0.0 + H0 propagates NaN and gives the input's dtype",
    ),
    "Min": Lowering("fold", ("tl.minimum({a}, {b})",), ("torch.minimum({a}, {b})",),
                    torch_number="torch.clamp({a}, max={b})",
                    note="min over any number of arguments, numbers last"),
    "Max": Lowering("fold", ("tl.maximum({a}, {b})",), ("torch.maximum({a}, {b})",),
                    torch_number="torch.clamp({a}, min={b})",
                    note="max over any number of arguments, numbers last"),
    "tanh": Lowering(
        "call",
        (
            "tl.abs({x})",
            "tl.exp(-2.0*{s0})",  # e = exp(-2|x|) in (0, 1]: never overflows
            "(1.0 - {s1})/(1.0 + {s1})",  # tanh|x| = (1 - e)/(1 + e)
            "{x}*{x}",
            "tl.where({s0} < 0.25, " + _odd_series(_TANH_SERIES) + ", " + _signed("{s2}") + ")",
        ),
        ("torch.tanh({x})",),
        True,
        note="tanh x = sign(x) (1 - e)/(1 + e), e = exp(-2|x|); Maclaurin series (to x^23) "
             "for |x| < 1/4 where 1 - e cancels. Error: below 3e-7 relative in fp32 (measured "
             "2.7e-7), a few ulps in fp64 (measured 3.6e-16).",
    ),
    "sinh": Lowering(
        "call",
        (
            "tl.abs({x})",
            "tl.exp(0.5*{s0})",  # h = exp(|x|/2), so h*h/2 overflows only where sinh does
            "(0.5*{s1})*{s1} - 0.5*tl.exp(-{s0})",  # sinh|x| = (e^|x| - e^-|x|)/2
            "{x}*{x}",
            "tl.where({s0} < 0.5, " + _odd_series(_SINH_SERIES) + ", " + _signed("{s2}") + ")",
        ),
        ("torch.sinh({x})",),
        True,
        note="sinh x = sign(x) (h*h/2 - exp(-|x|)/2), h = exp(|x|/2); Maclaurin series for "
             "|x| < 1/2 where the difference cancels. Error: below 6e-7 relative in fp32 "
             "(measured 5.4e-7), a few ulps in fp64 (measured 4.4e-16).",
    ),
    "cosh": Lowering(
        "call",
        (
            "tl.abs({x})",
            "tl.exp(0.5*{s0})",  # h = exp(|x|/2)
            "(0.5*{s1})*{s1} + 0.5*tl.exp(-{s0})",  # cosh x = (e^|x| + e^-|x|)/2, no cancelling
        ),
        ("torch.cosh({x})",),
        True,
        note="cosh x = h*h/2 + exp(-|x|)/2, h = exp(|x|/2): overflows only where cosh does. "
             "Error: below 5e-7 relative in fp32 (measured 4.4e-7).",
    ),
    "asinh": Lowering(
        "call",
        (
            "tl.abs({x})",
            "{x}*{x}",
            # log(2|x|) above 1e18, where x*x + 1 would overflow (and equals x*x in fp32)
            "tl.where({s0} > 1e18, 0.6931471805599453 + tl.log({s0}), "
            "tl.log({s0} + tl.sqrt({s1} + 1.0)))",
            "tl.where({s0} < 0.25, {x}*(" + _horner("{s1}", _ASINH_SERIES) + "), "
            + _signed("{s2}") + ")",
        ),
        ("torch.asinh({x})",),
        True,
        note="asinh x = sign(x) log(|x| + sqrt(x^2 + 1)), log(2|x|) for |x| > 1e18; Maclaurin "
             "series for |x| < 1/4 where the log of 1 + small loses digits. Error: below 5e-7 "
             "relative in fp32 (measured 4.5e-7, at |x| = 1/4), a few ulps in fp64 (measured "
             "6.4e-16).",
    ),
    "sin": _call("tl.sin({x})", "torch.sin({x})"),
    "cos": _call("tl.cos({x})", "torch.cos({x})"),
    "tan": _call("(tl.sin({x})/tl.cos({x}))", "torch.tan({x})", note="tan x = sin x / cos x"),
    "atan": Lowering(
        "call",
        (
            "tl.abs({x})",
            # z = |x| or 1/|x|, in [0, 1]; the maximum keeps 1/0 out of the unused branch
            "tl.where({s0} > 1.0, 1.0/tl.maximum({s0}, 1.0), {s0})",
            # atan z = 2 atan(z/(1 + sqrt(1 + z^2))), twice: y in [0, tan(pi/16)]
            "{s1}/(1.0 + tl.sqrt(1.0 + {s1}*{s1}))",
            "{s2}/(1.0 + tl.sqrt(1.0 + {s2}*{s2}))",
            "{s3}*{s3}",
            "4.0*({s3}*(" + _horner("{s4}", _ATAN_SERIES) + "))",  # atan z
            "tl.where({s0} > 1.0, 1.5707963267948966 - {s5}, {s5})",  # atan|x| = pi/2 - atan(1/|x|)
            _signed("{s6}"),
        ),
        ("torch.atan({x})",),
        True,
        note="atan x = sign(x) atan|x|, atan|x| = pi/2 - atan(1/|x|) for |x| > 1, atan z on "
             "[0, 1] as 4 atan y after two halvings y = z/(1 + sqrt(1 + z^2)) (y <= 0.199), "
             "its Maclaurin series to y^23. Error: below 3e-7 absolute and relative in fp32 "
             "(measured 2.5e-7 absolute near pi/2 and 2.1e-7 relative; Abramowitz-Stegun "
             "4.4.49 had 1.8e-7 absolute there but 1.4e-8 in fp64), a few ulps in fp64 "
             "(measured 4.7e-16 relative).",
    ),
    "erf": Lowering(
        "call",
        (
            "tl.abs({x})",
            "{x}*{x}",
            # y = min(|x|, ERF_ONE), NaN kept (a comparison with NaN is false)
            f"tl.where({{s0}} > {ERF_ONE!r}, {ERF_ONE!r}, {{s0}})",
            f"{2 / (ERF_ONE - 1)!r}*{{s2}} - {(ERF_ONE + 1) / (ERF_ONE - 1)!r}",  # t in [-1, 1]
            *_clenshaw("{s3}", 4, _ERFCX),  # erfcx(y)
            f"1.0 - tl.exp(-{{s2}}*{{s2}})*{{s{4 + ERFCX_DEGREE + 1}}}",  # erf y, y >= 1
            "tl.where({s0} < 1.0, {x}*(" + _horner("{s1}", _ERF_SERIES) + "), "
            + _signed(f"{{s{4 + ERFCX_DEGREE + 2}}}") + ")",
        ),
        ("torch.erf({x})",),
        True,
        note="erf x = sign(x) erf|x|: the Maclaurin series to x^37 for |x| < 1 (relative "
             "accuracy near 0, so that erf(r)/r survives); for |x| >= 1, 1 - exp(-y^2) "
             "erfcx(y), y = min(|x|, 6), with erfcx = exp(x^2) erfc(x) a degree-30 Chebyshev "
             "interpolant on [1, 6] summed by Clenshaw's recurrence (9e-17 relative; erfc < "
             "2.2e-17 past 6). The error of exp(-y^2) (y^2 rounding) is relative to erfc <= "
             "0.16. Error: below 1.5e-7 absolute and 2e-7 relative in fp32 (measured 1.4e-7 "
             "and 1.9e-7 near |x| = 0.95), a few ulps in fp64 (measured 2.2e-16 relative).",
    ),
    "Equality": _relation("=="),
    "Unequality": _relation("!="),
    "StrictLessThan": _relation("<"),
    "LessThan": _relation("<="),
    "StrictGreaterThan": _relation(">"),
    "GreaterThan": _relation(">="),
    "And": Lowering("fold", ("({a} & {b})",), ("({a} & {b})",), note="elementwise and"),
    "Or": Lowering("fold", ("({a} | {b})",), ("({a} | {b})",), note="elementwise or"),
    "Not": Lowering("call", ("~{x}",), ("~{x}",), needs_fp32=False, note="elementwise not"),
    "Piecewise": Lowering(
        "where",
        ("tl.where({cond}, {a}, {b})",),
        ("torch.where({cond}, {a}, {b})",),
        note="the first branch whose condition holds; the last branch must be (value, True)",
    ),
}

#: SymPy function class name (type(expr).__name__) -> its lowering. sqrt and cbrt are no classes
#: of their own (SymPy writes them as powers): see POWERS.
FUNCTIONS = MappingProxyType(_TABLE)

_POWERS: dict[str, Lowering] = {
    # x**(1/2) and x**(-1/2); x**(n + 1/2) = x**n * sqrt(x) is built from these by the printer
    "sqrt": _call("tl.sqrt({x})", "torch.sqrt({x})"),
    "rsqrt": _call("(1.0/tl.sqrt({x}))", "torch.rsqrt({x})"),
    # x**y = exp(y log x) for x > 0 (NaN for x < 0 where SymPy's value is complex too)
    "pow": _call("tl.exp({y}*tl.log({x}))", "torch.pow({x}, {y})",
                 note="x**y for x > 0: where SymPy keeps such a power in a real formula of this "
                      "project its base is positive (or the value is complex, then NaN). Error: "
                      "about |y log x| fp32 ulps (2e-6 relative for x**(1/3) at x = 1e30)"),
    # the real root for an odd denominator: cbrt(-8) = -2 (SymPy's principal root is complex)
    "odd_root": Lowering(
        "call",
        ("tl.exp({y}*tl.log(tl.abs({x})))", _signed("{s0}")),
        ("torch.pow(torch.abs({x}), {y})", "torch.where({x} < 0.0, -{s0}, {s0})"),
        True,
        note="x**(p/q), p and q odd: sign(x) |x|**(p/q), the real root (cbrt)",
    ),
    "even_root": _call("tl.exp({y}*tl.log(tl.abs({x})))", "torch.pow(torch.abs({x}), {y})",
                       note="x**(p/q), p even, q odd: |x|**(p/q), the real root"),
    "expm1": Lowering(
        "call",
        (
            "tl.exp({x})",
            "{s0} - 1.0",
            # Kahan: (u - 1) x / log u is exact to a few ulps for u = exp(x) near 1
            "tl.where(tl.abs({x}) >= 0.5, {s1}, tl.where({s0} == 1.0, {x}, {s1}*{x}/tl.log({s0})))",
        ),
        ("torch.expm1({x})",),
        True,
        note="expm1 x = exp(x) - 1 without cancelling near 0 (the printers write a - a exp(y) as "
             "-a expm1(y)); Kahan's (u - 1) x / log(u), u = exp(x), for |x| < 1/2. Error: a few "
             "ulps (fp32 and fp64).",
    ),
    "hypot": Lowering(
        "call",
        (
            "tl.abs({x})",
            # a number y takes x's dtype here (tl.abs of a bare float rounds it to fp32)
            "tl.abs({y} + tl.zeros_like({x}))",
            "tl.maximum({s0}, {s1})",
            "tl.minimum({s0}, {s1})",
            "tl.where({s2} > 0.0, {s3}/{s2}, 0.0)",
            # m sqrt(1 + (n/m)^2), m = max: never overflows before the value does; m sqrt 2
            # where n = m; as IEEE 754 hypot, inf where either is infinite (even if the other
            # is NaN: a > 0 with a/2 == a is inf), else NaN stays NaN (tl.maximum may drop it)
            "tl.where(({s0} > 0.0) & (0.5*{s0} == {s0}), {s0}, "
            "tl.where(({s1} > 0.0) & (0.5*{s1} == {s1}), {s1}, "
            "tl.where({s0} != {s0}, {s0}, tl.where({s1} != {s1}, {s1}, tl.where({s3} == {s2}, "
            "1.4142135623730951*{s2}, {s2}*tl.sqrt(1.0 + {s4}*{s4}))))))",
        ),
        # a number comes second (printers order it so); torch.hypot takes tensors only
        ("torch.hypot({x}, torch.as_tensor({y}, dtype={x}.dtype))",),
        True,
        note="hypot(a, b) = sqrt(a^2 + b^2) without overflow or underflow of the squares "
             "(the printers write sqrt(u^2 + v^2) and its powers so). Error: about 2 ulps.",
    ),
    # results that do not depend on the variable {x}: a tensor of its shape holding {y}
    "full": Lowering("call", ("tl.full({x}.shape, {y}, {x}.dtype)",),
                     ("torch.full_like({x}, {y})",), note="a number as a tensor like x"),
    "broadcast": Lowering("call", ("({y} + tl.full({x}.shape, 0.0, {x}.dtype))",),
                          ("({y} + torch.zeros_like({x}))",),
                          note="a parameter expression as a tensor like x"),
}

#: The printer's own lowerings of powers, of constant results and of the functions its
#: rewrites for floating point bring in (expm1, hypot: formulas do not name them), keyed by name.
POWERS = MappingProxyType(_POWERS)
