"""Names and values in generated code (issue 14): parameters named like the generated code's
own identifiers, the public keywords of the generated class and function, module names in
other spellings (NFKC), values a float64 cannot hold, and formulas undefined everywhere.
References are the same formula with plain names, or the formula in float64 torch."""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import keyword
import re
from types import ModuleType

import pytest
import sympy as sp
from fluxact.codegen.names import RESERVED
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fluxact
from fluxact import FluxactError, FormulaError, ParameterError, runtime
from fluxact.activation import import_source

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

RATIONAL = "r/(1 + r**2/({}))"  # Phi(r) = r/(1 + r^2/c): c > 0 is the product of the parameters


def load(source: str) -> ModuleType:
    """A generated module, imported under a name of its own."""
    return import_source(source, "names_" + hashlib.sha256(source.encode()).hexdigest()[:16])


def rational(x: torch.Tensor, c: float) -> torch.Tensor:
    return x / (1 + x * x / c)


def identifiers_of(source: str) -> set[str]:
    """Every identifier the source binds or reads (not attributes, not call keywords)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.split(".")[0])
    return out


# -- parameters named like the generated code's own identifiers (items 1, 2) ----------------


def test_reserved_names_cover_every_template() -> None:
    """Every identifier of every target is reserved (so a parameter never takes it inside
    kernels), apart from those made from the activation's and the parameters' names."""
    from fluxact.codegen import names
    from fluxact.codegen.prepare import prepare
    from fluxact.codegen.render import identifiers, render

    t = fluxact.translate("r*exp(-r**2/(2*lam**2*mu))", "activation", params={"lam": 1, "mu": 2})
    spec = prepare(t, name="pm", trainable=("lam", "mu"))
    own = {"pm", "Pm", "pm_forward_torch", "pm_backward_torch", *spec.params,
           *identifiers(spec).values()}
    for target in ("module", "triton", "torch"):
        unreserved = {n for n in identifiers_of(render(spec, target)) - own
                      if not names.is_reserved(n)}
        assert not unreserved, (target, sorted(unreserved))
    # what the module binds at its top, and the builtins it reads, an activation's function
    # or class must not be named: MODULE_NAMES
    tree = ast.parse(render(spec, "module"))
    top = {n for stmt in tree.body if not isinstance(stmt, ast.FunctionDef | ast.ClassDef)
           for n in identifiers_of(ast.unparse(stmt))}
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    made = {n for n in top | read if n.startswith("_pm_") or n in own}
    builtin = read & set(dir(builtins))
    assert top - made - builtin <= names.MODULE_NAMES, sorted(top - made - names.MODULE_NAMES)
    assert builtin <= names.MODULE_NAMES, sorted(builtin)


def test_identifiers_built_by_jinja_are_reserved_by_their_prefix() -> None:
    """TEMPLATE_NAMES reads identifiers with the Jinja2 tags cut out, so `_gp{{ loop.index }}`
    counts as `_gp`, not `_gp1`. That is safe only because every identifier glued to a Jinja2
    expression starts with '_' or 'dphi', which ``is_reserved`` reserves as a pattern: pin it
    (an indentation expression such as {{ ' ' * n }} followed by code is no identifier)."""
    from fluxact.codegen import names

    glued = []
    for name, text in names.template_sources():
        for m in re.finditer(r"(\w*)\{\{(.*?)\}\}(\w*)", text):
            prefix, expr, suffix = m.groups()
            indent = re.match(r"""\s*(['"]) \1 \*""", expr)  # ' ' * n, " " * n
            # init_args renders 'lam=1.0, ' (ends in a separator)
            if prefix or (suffix and not indent and expr.strip() != "init_args"):
                glued.append((name, m.group(0), prefix + "1" + suffix))
    assert glued  # _gp{{ loop.index }}, dphi_{{ p }}, _{{ out }}_nan, ...
    loose = [(name, text) for name, text, example in glued
             if not re.match(r"_|dphi", text) or not names.is_reserved(example)]
    assert not loose, loose


def test_parameter_identifiers_avoid_every_reserved_name() -> None:
    from fluxact.codegen import names

    params = sorted(n for n in names.RESERVED if n[0].isalpha()) + ["t0", "dphi_x", "p_x"]
    ids = names.identifiers(params)
    assert len(set(ids.values())) == len(params)
    for p, ident in ids.items():
        assert not names.is_reserved(ident), (p, ident)
        assert ident == p or ident not in params, (p, ident)
    assert ids["lam" if "lam" in ids else "t0"] in ("lam", "p_t0")


@pytest.mark.interpreter
def test_kernel_constexpr_names_as_parameters() -> None:
    """KH, KW, CP (constexprs of the channel-mixing step), n, u, tau, x, mask (arguments and
    locals of the other kernels): every kernel gives what the same formula with plain names
    gives."""
    bad = ("CP", "KH", "KW", "mask", "n", "tau", "u", "x")
    plain = ("a", "b", "c", "d", "e", "f", "g", "h")
    values = (1.5, 2.0, 0.5, 1.25, 0.8, 1.1, 0.9, 1.3)
    acts = [fluxact.to_torch(RATIONAL.format("*".join(ps)), "activation",
                             params=dict(zip(ps, values)), trainable=ps[:2],
                             backend="triton").to(DEVICE, torch.float64)
            for ps in (bad, plain)]
    torch.manual_seed(14)
    x = torch.randn(300, dtype=torch.float64, device=DEVICE, requires_grad=True)
    u2 = torch.randn(1, 2, 3, 5, dtype=torch.float64, device=DEVICE)
    k = torch.randn(2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    tau = torch.tensor(0.1, dtype=torch.float64, device=DEVICE)
    got = []
    for act in acts:
        y = act(x)
        (gx,) = torch.autograd.grad(y.sum(), [x])
        p = act.parameter_vector().to(DEVICE)
        step = runtime.step(act.ops, u2[0, :1, 0], p, tau, 1.0, False, 1)
        mixed = runtime.step_mixing(act.ops, u2, k, p, tau, False)
        got.append((y, gx, step, mixed))
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[0][0], rational(x, 1.5 * 2 * 0.5 * 1.25 * 0.8 * 1.1 * 0.9
                                                  * 1.3))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_super_self_and_module_constants_as_parameters(backend: str) -> None:
    """The generated class and function take parameters named super, self, x, OPS, FORMULA,
    TRAINABLE as keywords (issue 14, item 2)."""
    ps = ("FORMULA", "OPS", "TRAINABLE", "self", "super", "x")
    values = dict(zip(ps, (1.5, 2.0, 0.5, 1.25, 0.8, 1.1)))
    mod = load(fluxact.emit(RATIONAL.format("*".join(ps)), "activation", params=values,
                            trainable=("super",), name="odd"))
    act = mod.Odd(**values, backend=backend).to(DEVICE, torch.float64)
    assert [n for n, _ in act.named_parameters()] == ["super"]
    x = torch.linspace(-3, 3, 7, dtype=torch.float64, device=DEVICE)
    c = 1.5 * 2.0 * 0.5 * 1.25 * 0.8 * 1.1
    torch.testing.assert_close(act(x), rational(x, c))
    torch.testing.assert_close(mod.odd(x, **values, backend=backend), rational(x, c))
    torch.testing.assert_close(mod.odd(x, backend=backend), rational(x, c))  # the defaults
    doubled = {**values, "super": 1.6}
    torch.testing.assert_close(mod.Odd(**doubled, backend=backend).to(DEVICE)(x),
                               rational(x, 2 * c))


# -- the public keywords are the formula's names (item 3) -------------------------------------


def test_renamed_parameters_keep_their_public_keywords() -> None:
    from fluxact.codegen.prepare import prepare
    from fluxact.codegen.render import identifiers

    t = fluxact.translate(RATIONAL.format("phi*lam"), "activation", params={"phi": 3.0, "lam": 1})
    spec = prepare(t, name="shadow_x", trainable=("phi",))
    assert identifiers(spec)["phi"] != "phi"  # phi is Phi's output: renamed inside
    mod = load(fluxact.emit(t, trainable=("phi",), name="shadow_x"))
    assert mod.PARAMS == ("lam", "phi") and mod.TRAINABLE == ("phi",)
    assert list(inspect.signature(mod.ShadowX).parameters) == ["lam", "phi", "trainable",
                                                               "backend"]
    assert list(inspect.signature(mod.shadow_x).parameters) == ["x", "lam", "phi", "backend"]
    act = mod.ShadowX(phi=2.0, backend="torch")
    assert float(act.phi.detach()) == 2.0 and act.phi.requires_grad
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(act(x), rational(x, 2.0))
    torch.testing.assert_close(mod.shadow_x(x, phi=2.0, backend="torch"), rational(x, 2.0))
    torch.testing.assert_close(mod.shadow_x(x, 1.0, 4.0, backend="torch"), rational(x, 4.0))


def test_a_parameter_without_a_value_is_a_keyword_too() -> None:
    """A parameter that has no value may follow one that has: it defaults to None and is
    refused, with its name, when the module is called without it."""
    mod = load(fluxact.emit(RATIONAL.format("a*b"), "activation", params={"a": 1}, name="half"))
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(mod.Half(b=3.0, backend="torch")(x), rational(x, 3.0))
    torch.testing.assert_close(mod.half(x, b=3.0, backend="torch"), rational(x, 3.0))
    with pytest.raises(runtime.ActivationError, match="'b' has no value; pass b="):
        mod.half(x)
    with pytest.raises(runtime.ActivationError, match="'b' has no value"):
        mod.Half()


@pytest.mark.parametrize("name", ["trainable", "backend"])
def test_names_of_the_generated_keywords_are_refused(name: str) -> None:
    with pytest.raises(ParameterError, match=f"parameter '{name}'.*keyword.*rename") as err:
        fluxact.emit(RATIONAL.format(name), "activation", params={name: 1})
    assert "\n" not in str(err.value)


def test_sympy_symbols_follow_the_formula_text_rules() -> None:
    r = sp.Symbol("r", real=True)
    for bad in ("lambda", "ｌａｍ", "_x", "exp", "a b"):
        with pytest.raises(FormulaError, match="parameter name"):
            fluxact.translate(r / (1 + r**2 / sp.Symbol(bad, positive=True)), "activation")
    # one name with other assumptions is one parameter
    t = fluxact.translate(r / (sp.Symbol("lam") + sp.Symbol("lam", positive=True)), "activation")
    assert t.free_parameters == ("lam",)


# -- other spellings of names: NFKC (item 4) ---------------------------------------------------


def test_module_names_are_normalised_like_python_identifiers() -> None:
    from fluxact.codegen.names import MODULE_NAMES, class_name
    from fluxact.codegen.prepare import python_name

    assert python_name("ｔｏｒｃｈ") == "torch_"  # Python's parser reads it as torch
    assert python_name("ｐｍ") == python_name("pm") == "pm"
    assert python_name("Perona–Malik") == "perona_malik"
    assert python_name("ﬁlter") == "filter"
    for text in ("o_p_s", "n_a_m_e", "true", "none", "class"):
        name = python_name(text)
        assert name.isascii() and name.isidentifier() and not name.startswith("_")
        assert class_name(name) not in MODULE_NAMES and class_name(name).isidentifier()
        assert class_name(name) not in ("True", "None", "False")
    with pytest.raises(fluxact.CodegenError, match="not ASCII"):
        python_name("λ")
    mod = load(fluxact.emit("tanh(r)", "activation", name="ｔｏｒｃｈ"))
    x = torch.linspace(-1, 1, 5)
    torch.testing.assert_close(mod.torch_(x, backend="torch"), torch.tanh(x))
    assert mod.torch is torch


def test_parameter_and_variable_names_are_normalised() -> None:
    t = fluxact.translate("ｒ/(1 + ｒ**2/ｌａｍ)", "activation", params={"ｌａｍ": 2},
                          variable="ｒ")
    assert t.input.params == {"lam": 2} and t.input.variable.name == "r"
    with pytest.raises(ParameterError, match="given twice"):
        fluxact.translate(RATIONAL.format("lam"), "activation", params={"lam": 1, "ｌａｍ": 2})
    with pytest.raises(FormulaError, match="ASCII"):
        fluxact.translate("r/(1 + r**2/λ)", "activation")
    with pytest.raises(FormulaError, match="ASCII"):
        fluxact.translate("r", "activation", variable="r\n")


# -- values a float64 cannot hold, and values printed exactly (item 5) ------------------------


@pytest.mark.parametrize("value", [1e308 * 10, "1e308*10", "exp(1000)", 10**400, "exp(-1000)",
                                   float("nan")])
def test_values_beyond_float64_are_refused(value: object) -> None:
    with pytest.raises(ParameterError, match="parameter 'lam'") as err:
        fluxact.emit(RATIONAL.format("lam"), "activation", params={"lam": value})
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError):
        fluxact.translate(RATIONAL.format("lam"), "activation", params={"lam": value})


@pytest.mark.parametrize("value, expected", [
    (0.1 + 0.2, 0.30000000000000004), ("1/3", 1 / 3), (5e-324, 5e-324),
    (1.7976931348623157e308, 1.7976931348623157e308), ("exp(1)", 2.718281828459045),
])
def test_values_are_printed_exactly(value: object, expected: float) -> None:
    source = fluxact.emit(RATIONAL.format("lam"), "activation", params={"lam": value})
    (line,) = [s for s in source.splitlines() if s.startswith("DEFAULTS = ")]
    assert ast.literal_eval(line.removeprefix("DEFAULTS = ")) == (expected,)
    assert re.search(rf"lam={re.escape(repr(expected))}, trainable=", source)
    assert load(source).DEFAULTS == (expected,)


def test_repaired_outputs_do_not_take_a_parameters_name() -> None:
    """The NaN repair of dphi_lam is not named like dPhi/d(lam_nan)."""
    act = fluxact.to_torch("r*exp(-r**2/(2*lam**2*lam_nan))", "activation",
                           params={"lam": 1.0, "lam_nan": 1.0}, trainable=("lam", "lam_nan"),
                           backend="torch")
    x = torch.tensor([1e20, 3.0])  # float32: dPhi/dlam is inf * 0 at 1e20, repaired to 0
    act(x).sum().backward()
    lam = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    three = torch.tensor(3.0, dtype=torch.float64)
    (want,) = torch.autograd.grad(three * torch.exp(-three**2 / (2 * lam**2)), [lam])
    torch.testing.assert_close(act.lam.grad, want, rtol=1e-6, atol=0)


# -- formulas undefined everywhere (item 6) ---------------------------------------------------


@pytest.mark.parametrize("formula", ["r/0", "0/0", "log(0)*r", "r + 0**(-1)",
                                     "Piecewise((r, r > 0), (1/0, True))", "r/(lam - lam)"])
def test_undefined_formulas_are_refused(formula: str) -> None:
    with pytest.raises(FormulaError, match="holds the constant") as err:
        fluxact.translate(formula, "activation")
    assert "\n" not in str(err.value)


def test_undefined_formulas_from_values_and_sympy_are_refused() -> None:
    with pytest.raises(ParameterError, match="at lam = 1 .*holds the constant zoo"):
        fluxact.translate("r/(lam - 1)", "activation", params={"lam": 1})
    r = sp.Symbol("r", real=True)
    with pytest.raises(FormulaError, match="holds the constant"):
        fluxact.translate(sp.zoo * r, "activation")
    assert fluxact.translate("sin(r)/r", "diffusivity").input.free == ()  # a limit: fine


def test_every_refusal_is_a_fluxact_error() -> None:
    for call in (lambda: fluxact.translate("r/0", "activation"),
                 lambda: fluxact.emit(RATIONAL.format("backend"), "activation"),
                 lambda: fluxact.emit("tanh(r)", "activation", name="λ")):
        with pytest.raises(FluxactError):
            call()


def _library_names() -> set[str]:
    """The arguments of every kernel of fluxact.kernels (KH, CP, W, n, u_ptr, ...) and the
    globals a bound kernel computes with."""
    from fluxact.kernels.formula import FORMULA_NAMES
    from fluxact.kernels.library import KERNELS

    return {n for k in KERNELS.values() for n in inspect.signature(k.fn).parameters} | set(
        FORMULA_NAMES)


_NAMES = st.one_of(
    st.sampled_from(sorted(n for n in RESERVED | _library_names() if n.isidentifier()
                           and not n.startswith("_") and not keyword.iskeyword(n))),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True),
)


@pytest.mark.interpreter
@settings(max_examples=12, deadline=None)
@given(name=_NAMES)
def test_no_parameter_name_reaches_a_kernel(name: str) -> None:
    """A parameter may take any name the parser accepts, the kernels' own (KH, CP, W, n,
    u_ptr, ...) included: it is a local of the generated Phi functions, read from p_ptr, and
    never appears in a kernel body (fluxact/kernels/). The elementwise kernels and a fused
    step with the parameter named so equal those with a plain name."""
    try:
        act = fluxact.to_torch(RATIONAL.format(name), "activation", params={name: 1.5},
                               trainable=(name,), backend="triton")
    except FluxactError:
        assume(False)  # a name the parser refuses (a function's name, a keyword)
        return
    plain = fluxact.to_torch(RATIONAL.format("q"), "activation", params={"q": 1.5},
                             trainable=("q",), backend="triton")
    x = torch.linspace(-3, 3, 7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    got, want = act.double()(x), plain.double()(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), x)[0],
                               torch.autograd.grad(want.sum(), x)[0], rtol=1e-12, atol=0)
    u = torch.randn(1, 9, dtype=torch.float64, device=DEVICE)
    tau = torch.tensor(0.2, dtype=torch.float64, device=DEVICE)
    steps = [runtime.step(a.ops, u, a.parameter_vector().to(DEVICE), tau, 1.0, False, 1)
             for a in (act, plain)]
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-12, atol=0)
