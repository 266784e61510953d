"""render: ActivationSpec -> generated Python source (printers for the bodies, Jinja2 for the
layout). Python computes every signature, argument list and body; the templates under
templates/ only place them. Every rendered file is checked with ast.parse."""

from __future__ import annotations

import ast
from importlib.resources import files

import jinja2
import sympy as sp

from ..translator.parse import parameter_symbol
from .errors import CodegenError
from .functions import FUNCTIONS
from .names import identifiers as parameter_identifiers
from .names import positional
from .prepare import ActivationSpec
from .printers import Lowered, lower

#: what `fluxact emit --target` prints -> template
TEMPLATES = {
    "module": "module/activation.py.j2",
    "triton": "triton/standalone.py.j2",
    "torch": "torch/standalone.py.j2",
}
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: templates from the fluxact.templates package."""
    root = files("fluxact.templates")

    def load(name: str) -> str:
        path = root.joinpath(*name.split("/"))
        if not path.is_file():
            raise jinja2.TemplateNotFound(name)
        return path.read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = repr
    env.filters["nan_of"] = lambda name: f"({name} != {name})"
    return env


def identifiers(spec: ActivationSpec) -> dict[str, str]:
    """Parameter name -> identifier inside the generated kernels and torch functions."""
    return parameter_identifiers(spec.params)


def render(spec: ActivationSpec, target: str = "module", version: str = "0") -> str:
    """The generated source for ``target`` (module, triton or torch)."""
    if target not in TEMPLATES:
        raise CodegenError(f"unknown target {target!r}; use one of {', '.join(TEMPLATES)}")
    context = _context(spec, version)
    source = environment().get_template(TEMPLATES[target]).render(**context)
    try:
        ast.parse(source)
    except SyntaxError as exc:  # a bug of fluxact, not of the formula
        raise CodegenError(
            f"fluxact rendered invalid Python for {spec.name} (line {exc.lineno}: {exc.msg}); "
            "please report this with the formula"
        ) from None
    return source


def _lowered(spec: ActivationSpec, keys: list[str], target: str,
             names: dict[sp.Symbol, str], ids: dict[str, str], repair: bool = True
             ) -> tuple[Lowered, list[str]]:
    """Print the outputs ``keys`` with, after each, its NaN repair where one is known (unless
    ``repair`` is False). Outputs are named in the code after the parameters' identifiers
    (dphi_lam)."""
    code = {"phi": "phi", "dphi": "dphi", **{f"dphi_{p}": f"dphi_{i}" for p, i in ids.items()}}
    outputs: dict[str, sp.Expr] = {}
    repaired: list[str] = []
    repairs = dict(spec.repairs)
    r = spec.argument
    extended = dict(names)
    for key in keys:
        out = code[key]
        outputs[out] = spec.output(key)
        left0, right0, at_pos, at_neg = repairs[key]
        if not repair or all(v is None for v in repairs[key]):
            continue
        raw = sp.Symbol(f"_{out}_raw")  # the unrepaired value, where no limit is proven
        extended[raw] = out
        pieces = []
        if right0 is not None:  # r = 0 itself: the limit from the right (prepare.py)
            pieces.append((right0[0], sp.Eq(spec.variable, 0)))
        # x = r/c with c > 0 (x = r unless reduced): x has r's sign, or underflowed to 0
        v = spec.variable
        for found, region in ((right0, lambda a: (v > 0) & (r <= a)),
                              (left0, lambda a: (v < 0) & (r >= -a)),
                              (at_pos, lambda a: r >= a), (at_neg, lambda a: r <= -a)):
            for radius, conditions in (() if found is None else found[1]):
                where = region(sp.Float(radius))
                for factor, bound in conditions:
                    where = where & (sp.Abs(factor) <= sp.Float(bound))
                pieces.append((found[0], where))
        # the regions are disjoint: one piece per limit, its regions or-ed (SymPy would merge
        # pieces of one value itself, into conjunctive normal form: exponentially long)
        merged: dict[sp.Expr, list[sp.Basic]] = {}
        for value, where in pieces:
            merged.setdefault(value, []).append(where)
        # '_' first: no parameter's name starts with '_', so no dphi_<p> is ever this name
        outputs[f"_{out}_nan"] = sp.Piecewise(
            *((value, sp.Or(*wheres)) for value, wheres in merged.items()), (raw, True))
        repaired.append(out)
    lowered = lower(outputs, extended, target, variable=spec.variable,
                    given=() if spec.reduced is None else (spec.reduced,), float64=repair)
    if "phi" in keys and _swallows_nan(spec.output("phi")):
        # where/min/max/comparisons may map a NaN input to a number (hard shrinkage: NaN ->
        # 0); Phi of NaN is NaN
        x = names[spec.variable]
        where = FUNCTIONS["Piecewise"].steps(target)[0]
        results = tuple((out, where.format(cond=f"{x} != {x}", a=x, b=text) if out == "phi"
                         else text) for out, text in lowered.results)
        lowered = Lowered(lowered.lines, results)
    return lowered, repaired


def _swallows_nan(expr: sp.Expr) -> bool:
    """Whether the printed ``expr`` may give a number for a NaN input: it has a comparison
    (Piecewise, Heaviside, sign in Triton) or a minimum or maximum (tl.minimum drops NaN)."""
    return expr.has(sp.Piecewise, sp.Min, sp.Max, sp.sign, sp.Heaviside) or any(
        isinstance(a, sp.core.relational.Relational) for a in sp.preorder_traversal(expr))


def _context(spec: ActivationSpec, version: str) -> dict[str, object]:
    ids = identifiers(spec)
    names = {spec.variable: "x", **{parameter_symbol(p): ids[p] for p in spec.params}}
    bwd_keys = ["dphi", *(f"dphi_{p}" for p in spec.trainable)]
    # each output twice: as computed in the input's dtype (``raw``), and with the limit
    # repair for where even float64 makes NaN from a finite input (``wide``)
    both = {(target, which, repair): _lowered(spec, keys, target, names, ids, repair)
            for target in ("triton", "torch")
            for which, keys in (("fwd", ["phi"]), ("bwd", bwd_keys))
            for repair in (False, True)}
    printed = {key: lowered for key, (lowered, _) in both.items()}
    # the outputs with a repair (the same for both targets)
    fwd_repaired, bwd_repaired = both["triton", "fwd", True][1], both["triton", "bwd", True][1]
    param_ids = [ids[p] for p in spec.params]
    # the class and the function take the parameters as keywords named as in the formula
    # (only kernels and torch functions use ``ids``); one without a value defaults to None,
    # refused when called (a required argument may not follow one with a default)
    init_args = "".join(f"{p}={d!r}, " for p, d in zip(spec.params, spec.defaults))
    required = [line for p, d in zip(spec.params, spec.defaults) if d is None for line in (
        f"if {p} is None:",
        f"    raise _rt.ActivationError({f'parameter {p!r} has no value; pass {p}=...'!r})")]
    params_line = ", ".join(
        f"{p} = {d if d is not None else '(no default)'}"
        f"{' (trainable)' if p in spec.trainable else ''}"
        for p, d in zip(spec.params, spec.defaults)) or "none"
    formula_line = (f"{spec.formula} ({spec.kind}, convention {spec.convention}, "
                    f"tau = {spec.tau}, alpha = {spec.alpha})")
    context: dict[str, object] = {
        "version": version,
        "formula_line": " ".join(formula_line.split()),  # one comment line
        "params_line": params_line,
        "digest": spec.digest,
        "docline": f"Activation {spec.name}: Phi from {spec.kind} {' '.join(spec.formula.split())}"
                   .replace('"""', "'''").replace("\\", "\\\\"),
        "name": spec.name,
        "class_name": spec.class_name,
        "formula": spec.formula,
        "kind": spec.kind,
        "convention": spec.convention,
        "params": spec.params,
        "defaults": spec.defaults,
        "trainable": [ids[p] for p in spec.trainable],
        "trainable_names": spec.trainable,
        "torch_forward": f"{spec.name}_forward_torch",
        "torch_backward": f"{spec.name}_backward_torch",
        "torch_forward_wide": f"_{spec.name}_forward_wide_torch",
        "torch_forward_raw": f"_{spec.name}_forward_raw_torch",
        "torch_derivatives": f"_{spec.name}_derivatives_torch",
        "torch_derivatives_wide": f"_{spec.name}_derivatives_wide_torch",
        # NaN or inf in the input or a parameter makes this NaN, so that only NaNs made by
        # floating point from finite inputs are repaired (a NaN input stays NaN)
        "finite_inputs": " + ".join(f"({n} - {n})" for n in ["x", *param_ids]) + " == 0.0",
        "param_loads": [f"{pid} = tl.load(p_ptr + {k}).to(x.dtype)"
                        for k, pid in enumerate(param_ids)],
        "torch_args": ", ".join(["x", *param_ids]),
        "torch_bwd_args": ", ".join(["x", "gy", *param_ids]),
        "fwd": printed["triton", "fwd", False], "fwd_wide": printed["triton", "fwd", True],
        "bwd": printed["triton", "bwd", False], "bwd_wide": printed["triton", "bwd", True],
        "tfwd": printed["torch", "fwd", False], "tfwd_wide": printed["torch", "fwd", True],
        "tbwd": printed["torch", "bwd", False], "tbwd_wide": printed["torch", "bwd", True],
        # the repaired outputs (the same names for both targets)
        "fwd_repaired": fwd_repaired, "bwd_repaired": bwd_repaired,
        "bwd_outs": ["dphi", *(f"dphi_{ids[p]}" for p in spec.trainable)],
        # the torch derivatives return (Phi', dPhi/dp, ...) flat, their float64 evaluation as
        # _w0, _w1, ...; the Triton DPHI returns (Phi', (dPhi/dp, ...)), its parts by output
        "bwd_wide_names": ", ".join(f"_w{k}" for k in range(1 + len(spec.trainable))),
        "bwd_return": "dphi, (" + "".join(f"dphi_{ids[p]}, " for p in spec.trainable).rstrip()
                      + ")",
        "bwd_wide_parts": [("dphi", "_w[0]"), *((f"dphi_{ids[p]}", f"_w[1][{k}]")
                                                for k, p in enumerate(spec.trainable))],
        "phi_text": sp.sstr(spec.phi).replace('"""', "'''").replace("\\", "\\\\"),
        "init_args": init_args,
        "init_values": ", ".join(f"{p!r}: {p}" for p in spec.params),
        "param_tuple": "".join(f"{p}, " for p in spec.params),
        "required": required,
        "self_name": positional("self", spec.params),
        "input_name": positional("x", spec.params),
        "stability": spec.stability.source() if spec.stability is not None else "None",
        # the names fluxact/kernels/formula.py binds the library's kernels to
        "phi_fn": "_phi",
        "dphi_fn": "_dphi",
        "phi_wide_fn": "_phi_wide",
        "dphi_wide_fn": "_dphi_wide",
        "torch_args_wide": "".join(f", {pid}.double()" for pid in param_ids),
    }
    return context
