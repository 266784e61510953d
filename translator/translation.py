"""translate: one Nonlinearity -> the Translation holding all four forms (MATH.md 1); verify:
the same, then its StabilityReport (translator/verify.py, which works on a Translation and
does not import this module)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .budget import attempt, within_budget
from .catalogue import CatalogueEntry
from .dictionary import SIMPLIFY_SECONDS, Form, convert, fill_removable, tidy
from .errors import FluxactError, FormulaError, ParameterError, TranslationError
from .nonlinearity import (
    KINDS,
    SYMBOL_OF_KIND,
    Nonlinearity,
    exact_number,
    make_nonlinearity,
    normalise_convention,
)
from .parse import S2_NAME, parameter_symbol
from .verify import REQUIREMENTS, STEP_OF, StabilityReport, UnstableError, verify_translation

#: CPU time of one translation (each SymPy step inside has its own, smaller budget)
TRANSLATE_SECONDS = 30.0
DEFAULT_TAU = sp.Rational(1, 4)
DEFAULT_ALPHA = sp.Rational(1, 4)


@dataclass(frozen=True, slots=True)
class Translation:
    """The four forms of one nonlinearity, as functions of ``input.variable`` (r convention).

    ``diffusivity`` g, ``regulariser`` Psi, ``shrinkage`` S and ``activation`` Phi are SymPy
    expressions in r. ``shown(kind)`` gives g and Psi in the input's convention (in s2 for
    convention "s2"). ``closed_form`` is False for a regulariser SymPy could not integrate: it
    is then an unevaluated Integral, evaluated numerically by ``numeric``.
    """

    input: Nonlinearity
    diffusivity: sp.Expr
    regulariser: sp.Expr
    shrinkage: sp.Expr
    activation: sp.Expr
    tau: sp.Expr
    alpha: sp.Expr
    regulariser_closed_form: bool
    notes: tuple[str, ...]
    # g and Psi as functions of s2 (convention "s2" only; None where g is not even)
    s2_forms: tuple[sp.Expr | None, sp.Expr | None] = (None, None)

    @property
    def variable(self) -> sp.Symbol:
        return self.input.variable

    @property
    def convention(self) -> str:
        return self.input.convention

    @property
    def free_parameters(self) -> tuple[str, ...]:
        return self.input.free

    def form(self, kind: str) -> sp.Expr:
        """The form of the given kind (diffusivity, regulariser, shrinkage, activation)."""
        if kind not in KINDS:
            raise FormulaError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        return getattr(self, kind)

    def forms(self) -> dict[str, sp.Expr]:
        return {kind: self.form(kind) for kind in KINDS}

    def shown(self, kind: str) -> sp.Expr:
        """The form as the input's convention writes it: in convention "s2", g and Psi are
        functions of s2 = r^2 where g is even (antisymmetric Phi); otherwise in r."""
        expr = self.form(kind)
        if self.convention == "r" or kind not in ("diffusivity", "regulariser"):
            return expr
        s2_form = self.s2_forms[0 if kind == "diffusivity" else 1]
        return expr if s2_form is None else s2_form

    def argument(self, kind: str) -> str:
        """The name of the argument of ``shown(kind)``."""
        if self.convention == "s2" and kind in ("diffusivity", "regulariser"):
            if self.s2_forms[0 if kind == "diffusivity" else 1] is not None:
                return S2_NAME
        return self.variable.name

    def numeric(self, kind: str):
        """A float -> float function evaluating the form (numerically integrating where the
        regulariser has no closed form). All parameters must have values."""
        from .numeric import numeric_function

        return numeric_function(self.form(kind), self.variable, f"the {kind}")

    @property
    def report(self) -> StabilityReport:
        """The StabilityReport of this translation's activation (h = 1, 1D forward
        differences); ``fluxact.verify`` takes other h and ||K||^2."""
        return verify_translation(self)

    def to_dict(self) -> dict[str, object]:
        """Plain data: every formula as a SymPy-parsable string, in the input's convention."""
        return {
            "input": {
                "formula": self.input.text,
                "kind": self.input.kind,
                "name": self.input.name,
                "convention": self.convention,
                "variable": self.variable.name,
                "params": {k: sp.sstr(v) for k, v in self.input.values},
                "free_parameters": list(self.free_parameters),
                "tau": sp.sstr(self.tau),
                "alpha": sp.sstr(self.alpha),
            },
            **{kind: sp.sstr(self.shown(kind)) for kind in KINDS},
            "regulariser_closed_form": self.regulariser_closed_form,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def __str__(self) -> str:
        return format_translation(self)

    def _repr_latex_(self) -> str:
        rows = []
        for kind in KINDS:
            arg = sp.latex(sp.Symbol(self.argument(kind)))
            head = SYMBOL_OF_KIND[kind].replace("Psi", r"\Psi").replace("Phi", r"\Phi")
            body = sp.latex(self.shown(kind))
            rows.append(rf"\text{{{kind}}} & {head}({arg}) = {body}")
        return r"$\begin{array}{ll}" + r" \\ ".join(rows) + r"\end{array}$"


def to_s2(expr: sp.Expr, r: sp.Symbol) -> sp.Expr | None:
    """Rewrite an even function of r as a function of s2 = r^2; None when it is not even
    (then it has no s2 form: the activation is not antisymmetric)."""
    s2 = sp.Symbol(S2_NAME, nonnegative=True)
    if not _is_even(expr, r):
        return None
    rewritten = expr.subs(r, sp.sqrt(s2))
    if rewritten.has(sp.Integral):
        return rewritten
    return tidy(rewritten)


def _is_even(expr: sp.Expr, r: sp.Symbol) -> bool:
    """Symbolic check first; where SymPy cannot decide in its budget, compare at 64 points
    (this only chooses how a form is written, it certifies nothing)."""
    if isinstance(expr, sp.Integral):  # int_0^r f is even exactly when f is odd
        (x, lo, hi), f = expr.limits[0], expr.function
        if lo == 0 and hi == r:
            return _is_even(f.subs(x, r) * r, r)
    difference = expr.subs(r, -r) - expr
    decided = attempt(lambda: sp.simplify(difference) == 0, SIMPLIFY_SECONDS)
    if decided:
        return True
    if expr.free_symbols - {r}:
        return False
    from .numeric import numeric_function

    try:
        f = numeric_function(expr, r, "form")
        points = [0.37 * 1.2**k for k in range(64)]
        return all(abs(f(p) - f(-p)) <= 1e-12 * (1 + abs(f(p))) for p in points)
    except (ArithmeticError, ValueError, TypeError):
        return False


def format_translation(t: Translation) -> str:
    """The four forms as aligned text lines."""
    lines = []
    head = t.input.name or t.input.text
    lines.append(f"{head}  (given as {t.input.kind}, convention {t.convention})")
    if t.input.values:
        lines.append("  parameters: " + ", ".join(f"{k} = {v}" for k, v in t.input.values))
    if t.free_parameters:
        lines.append("  symbolic parameters (positive): " + ", ".join(t.free_parameters))
    width = max(len(k) for k in KINDS)
    for kind in KINDS:
        sym = SYMBOL_OF_KIND[kind]
        lines.append(f"  {kind:<{width}}  {sym}({t.argument(kind)}) = {sp.sstr(t.shown(kind))}")
    lines.append(f"  (tau = {t.tau}, alpha = {t.alpha}, h = 1)")
    lines.extend(f"  note: {n}" for n in t.notes)
    return "\n".join(lines)


def translate(
    expr: object,
    kind: str | None = None,
    *,
    params: Mapping[str, object] | None = None,
    convention: str | None = None,
    tau: object = DEFAULT_TAU,
    alpha: object = DEFAULT_ALPHA,
    variable: str = "r",
) -> Translation:
    """Translate a formula given as one of the four kinds into all four (P1 Table 1).

    ``expr`` is formula text, a SymPy expression, or a catalogue entry (then ``kind`` and
    ``convention`` default to the entry's). Parameters without a value stay symbolic and
    positive. ``tau`` and ``alpha`` are the time step and regularisation weight of the table
    (default 1/4, h = 1).
    """
    name = None
    if isinstance(expr, CatalogueEntry):
        entry = expr
        name = entry.name
        kind = kind or entry.kind
        if kind != entry.kind:
            raise FormulaError(
                f"catalogue entry {entry.name!r} is a {entry.kind}; "
                f"leave kind out or pass {entry.kind!r}"
            )
        convention = convention or entry.convention
        if convention != entry.convention:
            raise FormulaError(
                f"catalogue entry {entry.name!r} is written in convention {entry.convention!r}"
            )
        expr = entry.formula
    if kind is None:
        raise FormulaError(
            "say which kind the formula is: diffusivity, regulariser, shrinkage or activation"
        )
    nl = make_nonlinearity(
        expr, kind, params=params, convention=normalise_convention(convention or "r"),
        variable=variable, name=name,
    )
    return translate_nonlinearity(nl, tau=tau, alpha=alpha)


@lru_cache(maxsize=512)
def symbolic_forms(
    expr: sp.Expr, kind_in: str, r: sp.Symbol, tau: sp.Expr, alpha: sp.Expr, convention: str
) -> tuple[tuple[Form, ...], tuple[sp.Expr | None, sp.Expr | None], tuple[str, ...]]:
    """All four forms with the parameters symbolic (positive), so that integration and
    simplification work on the formula, not on the digits of its parameter values. Cached:
    the key is the formula itself (SymPy expressions hash by structure)."""
    forms: dict[str, Form] = {}
    for kind in KINDS:
        form = convert(expr, kind_in, kind, r, tau, alpha)
        filled_by_rule = kind == "diffusivity" and kind_in != kind  # the g rules fill at 0
        if form.closed_form and not filled_by_rule:
            filled = fill_removable(form.expr, r, f"the {kind}")
            form = Form(filled.expr, True, form.notes + filled.notes)
        forms[kind] = form
    notes: list[str] = []
    for kind in KINDS:
        notes.extend(n for n in forms[kind].notes if n not in notes)
    s2_forms: tuple[sp.Expr | None, sp.Expr | None] = (None, None)
    if convention == "s2":
        s2_forms = (to_s2(forms["diffusivity"].expr, r), to_s2(forms["regulariser"].expr, r))
        if s2_forms[0] is None:
            notes.append(
                "the diffusivity is not even in r (the activation is not antisymmetric), so it "
                "has no s2 form; g and Psi are shown as functions of r"
            )
    return tuple(forms[kind] for kind in KINDS), s2_forms, tuple(notes)


def translate_nonlinearity(nl: Nonlinearity, *, tau: object = DEFAULT_TAU,
                           alpha: object = DEFAULT_ALPHA) -> Translation:
    """The stage itself: Nonlinearity -> Translation."""
    tau_ = exact_number(tau, "tau")
    alpha_ = exact_number(alpha, "alpha")
    for what, value in (("tau", tau_), ("alpha", alpha_)):
        if not value.is_positive:
            raise TranslationError(f"{what} must be positive, got {value}")
    r = nl.variable

    def out_of_time() -> None:
        raise FormulaError(
            f"translating {nl.text!r} took more than {TRANSLATE_SECONDS:g} s of CPU time; "
            "simplify the formula (or give it as the kind it is simplest in)")

    def forms():
        try:
            return symbolic_forms(nl.symbolic, nl.kind, r, tau_, alpha_, nl.convention)
        except FluxactError:
            raise
        except (TypeError, ValueError, ArithmeticError, NotImplementedError, AttributeError,
                IndexError, KeyError, RecursionError, MemoryError) as exc:
            raise TranslationError(
                f"cannot translate {nl.text!r}: SymPy failed on it ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]}); simplify the formula") from None

    computed, s2_symbolic, notes_ = within_budget(forms, TRANSLATE_SECONDS, out_of_time)
    forms = dict(zip(KINDS, computed))
    notes = list(notes_)
    values = {parameter_symbol(k): v for k, v in nl.values}

    def given(expr: sp.Expr | None) -> sp.Expr | None:
        return expr.subs(values) if values and expr is not None else expr

    s2_forms = (given(s2_symbolic[0]), given(s2_symbolic[1]))
    numeric = {kind: given(forms[kind].expr) for kind in KINDS}
    for kind in KINDS:  # with numbers, the pieces beside 0 can be found: fill again there
        undefined = f"the {kind} is undefined at {r.name} = 0"
        if values and undefined in notes and forms[kind].closed_form:
            filled = fill_removable(numeric[kind], r, f"the {kind}")
            if undefined not in filled.notes:
                numeric[kind] = filled.expr
                notes = [n for n in notes if n != undefined] + list(filled.notes)
    if tau_ != alpha_:
        notes.append(
            f"tau = {tau_} differs from alpha = {alpha_}: the regulariser/variational link "
            "(P1 15) needs tau = alpha; forms follow the input's row of Table 1"
        )
    return Translation(
        input=nl,
        diffusivity=numeric["diffusivity"],
        regulariser=numeric["regulariser"],
        shrinkage=numeric["shrinkage"],
        activation=numeric["activation"],
        tau=tau_,
        alpha=alpha_,
        regulariser_closed_form=forms["regulariser"].closed_form,
        notes=tuple(notes),
        s2_forms=s2_forms,
    )


def verify(
    expr: object,
    kind: str = "activation",
    *,
    params: Mapping[str, object] | None = None,
    convention: str | None = None,
    h: float = 1.0,
    norm_K2: float | None = None,
    require: str | None = None,
    tau: object = sp.Rational(1, 4),
    alpha: object = sp.Rational(1, 4),
    variable: str = "r",
) -> StabilityReport:
    """Translate ``expr`` (as ``translate`` does) and verify its activation.

    ``require`` (linf, sign, euclidean): raise UnstableError, with the reason, when that
    stability notion has no safe time step (the CLI's --require exits 1 instead).
    """
    if require is not None and require not in REQUIREMENTS:
        raise ParameterError(
            f"unknown requirement {require!r}; use one of {', '.join(REQUIREMENTS)}"
        )
    if isinstance(expr, Translation):
        t = expr
    else:
        k = None if isinstance(expr, CatalogueEntry) and kind == "activation" else kind
        t = translate(expr, k, params=params, convention=convention, tau=tau, alpha=alpha,
                      variable=variable)
    report = verify_translation(t, h=h, norm_K2=norm_K2)
    if require is not None and not report.holds(require):
        reason = dict(report.reasons).get(STEP_OF[require], "no guarantee")
        raise UnstableError(f"{require} stability fails for {t.input.text}: {reason}")
    return report
