"""render: ActivationSpec -> generated Python source (printers for the bodies, Jinja2 for the
layout). Python computes every signature, argument list and body; the templates under
templates/ only place them. Every rendered file is checked with ast.parse."""

from __future__ import annotations

import ast
import re
from importlib.resources import files

import jinja2
import sympy as sp

from ..translator.parse import parameter_symbol
from .errors import CodegenError
from .prepare import REPAIR_SPLIT, ActivationSpec
from .printers import Lowered, lower

#: what `fluxact emit --target` prints -> template
TEMPLATES = {
    "module": "module/activation.py.j2",
    "triton": "triton/standalone.py.j2",
    "torch": "torch/standalone.py.j2",
}
#: identifiers the generated code uses itself: a parameter with one of these names is printed
#: with a "p_" prefix
_TAKEN = frozenset({
    "x", "y", "gy", "gx", "phi", "dphi", "mask", "offsets", "pid", "n_elements", "BLOCK_SIZE",
    "FP64", "tl", "triton", "torch", "x_ptr", "y_ptr", "p_ptr", "gp_ptr", "gx_ptr", "gy_ptr",
    "backend", "trainable", "self", "NAME", "FORMULA", "KIND", "CONVENTION", "PARAMS",
    "DEFAULTS", "TRAINABLE", "DIGEST", "OPS", "_rt", "STABILITY",
    # the fused step kernels (templates/triton/step.py.j2)
    "u", "up", "um", "gyp", "gym", "gu", "rp", "dp", "dm", "zp", "zm", "kgp", "vp", "vm", "tau",
    "inv_h", "row", "i", "ip", "im", "base", "gbase", "flux", "slot", "out", "n", "u_ptr",
    "out_ptr", "gu_ptr", "s_ptr", "PERIODIC", "steps", "ur", "ul", "ud", "uu", "gr", "gl", "gd",
    "gu_", "g", "rr", "rd", "dr", "dd", "dl", "du", "kgr", "kgd", "zr", "zl", "zd", "zu", "vr",
    "vl", "vd", "vu", "xr", "xl", "yd", "yu", "H", "W", "plane", "flux_r", "flux_d", "k",
    "chan", "acc", "j", "r", "q", "idx", "kq", "v", "d", "z", "kg", "gk_ptr", "k_ptr", "nflux",
    "C", "valid", "kslot", "gm", "m", "blocks",
})
#: also taken: printer temporaries t0, t1, ..., and names the kernels bind with a prefix
_TAKEN_PATTERN = re.compile(r"t\d+|_.*|dphi.*")


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
    return env


def identifiers(spec: ActivationSpec) -> dict[str, str]:
    """Parameter name -> identifier in the generated code."""
    out: dict[str, str] = {}
    for p in spec.params:
        ident = p
        while (ident in _TAKEN or _TAKEN_PATTERN.fullmatch(ident)
               or (ident != p and ident in spec.params) or ident in out.values()):
            ident = f"p_{ident}"
        out[p] = ident
    return out


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
             names: dict[sp.Symbol, str], ids: dict[str, str]) -> tuple[Lowered, list[str]]:
    """Print the outputs ``keys`` with, after each, its NaN repair where one is known.
    Outputs are named in the code after the parameters' identifiers (dphi_lam)."""
    code = {"phi": "phi", "dphi": "dphi", **{f"dphi_{p}": f"dphi_{i}" for p, i in ids.items()}}
    outputs: dict[str, sp.Expr] = {}
    repaired: list[str] = []
    repairs = dict(spec.repairs)
    r = spec.variable
    extended = dict(names)
    for key in keys:
        out = code[key]
        outputs[out] = spec.output(key)
        at0, at_pos, at_neg = repairs[key]
        if at0 is None and at_pos is None and at_neg is None:
            continue
        raw = sp.Symbol(f"_{out}_raw")  # the unrepaired value, where a limit is unknown
        extended[raw] = out
        outputs[f"{out}_nan"] = sp.Piecewise(
            (raw if at0 is None else at0, sp.Abs(r) < REPAIR_SPLIT),
            (raw if at_pos is None else at_pos, r > 0),
            (raw if at_neg is None else at_neg, True),
        )
        repaired.append(out)
    return lower(outputs, extended, target, variable=r), repaired


def _context(spec: ActivationSpec, version: str) -> dict[str, object]:
    ids = identifiers(spec)
    names = {spec.variable: "x", **{parameter_symbol(p): ids[p] for p in spec.params}}
    bwd_keys = ["dphi", *(f"dphi_{p}" for p in spec.trainable)]
    fwd, fwd_repaired = _lowered(spec, ["phi"], "triton", names, ids)
    bwd, bwd_repaired = _lowered(spec, bwd_keys, "triton", names, ids)
    tfwd, tfwd_repaired = _lowered(spec, ["phi"], "torch", names, ids)
    tbwd, tbwd_repaired = _lowered(spec, bwd_keys, "torch", names, ids)
    param_ids = [ids[p] for p in spec.params]
    defaults = dict(zip(spec.params, spec.defaults))
    init_args = "".join(
        f"{ids[p]}={defaults[p]!r}, " if defaults[p] is not None else f"{ids[p]}, "
        for p in spec.params)
    params_line = ", ".join(
        f"{p} = {d if d is not None else '(no default)'}"
        f"{' (trainable)' if p in spec.trainable else ''}"
        for p, d in zip(spec.params, spec.defaults)) or "none"
    formula_line = (f"{spec.formula} ({spec.kind}, convention {spec.convention}, "
                    f"tau = {spec.tau}, alpha = {spec.alpha})")
    return {
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
        "fwd_kernel": f"_{spec.name}_fwd_kernel",
        "bwd_kernel": f"_{spec.name}_bwd_kernel",
        "torch_forward": f"{spec.name}_forward_torch",
        "torch_backward": f"{spec.name}_backward_torch",
        # NaN or inf in the input or a parameter makes this NaN, so that only NaNs made by
        # floating point from finite inputs are repaired (a NaN input stays NaN)
        "finite_inputs": " + ".join(f"({n} - {n})" for n in ["x", *param_ids]) + " == 0.0",
        "param_loads": [f"{pid} = tl.load(p_ptr + {k}).to(x.dtype)"
                        for k, pid in enumerate(param_ids)],
        "torch_args": ", ".join(["x", *param_ids]),
        "torch_bwd_args": ", ".join(["x", "gy", *param_ids]),
        "fwd": fwd, "fwd_repaired": fwd_repaired,
        "bwd": bwd, "bwd_repaired": bwd_repaired,
        "tfwd": tfwd, "tfwd_repaired": tfwd_repaired,
        "tbwd": tbwd, "tbwd_repaired": tbwd_repaired,
        "phi_text": sp.sstr(spec.output("phi")).replace('"""', "'''").replace("\\", "\\\\"),
        "init_args": init_args,
        "init_values": ", ".join(f"{p!r}: {ids[p]}" for p in spec.params),
        "param_tuple": "".join(f"{pid}, " for pid in param_ids),
        "stability": spec.stability.source() if spec.stability is not None else "None",
        "phi_fn": f"_{spec.name}_phi",
        "dphi_fn": f"_{spec.name}_dphi",
        "step_fwd_kernel": f"_{spec.name}_step1d_fwd_kernel",
        "step_bwd_kernel": f"_{spec.name}_step1d_bwd_kernel",
        "steps_kernel": f"_{spec.name}_steps1d_kernel",
        "step2d_fwd_kernel": f"_{spec.name}_step2d_fwd_kernel",
        "step2d_bwd_kernel": f"_{spec.name}_step2d_bwd_kernel",
        "stepk_fwd_kernel": f"_{spec.name}_stepk_fwd_kernel",
        "stepk_bwd_kernel": f"_{spec.name}_stepk_bwd_kernel",
        "stepc_fwd_kernel": f"_{spec.name}_stepc_fwd_kernel",
        "stepc_bwd_kernel": f"_{spec.name}_stepc_bwd_kernel",
        # the coupled activations and the fused coupled 2D step (templates/triton/coupled.py.j2)
        "iso_fwd_kernel": f"_{spec.name}_iso_fwd_kernel",
        "iso_bwd_kernel": f"_{spec.name}_iso_bwd_kernel",
        "eig_fn": f"_{spec.name}_eig2",
        "aniso_fwd_kernel": f"_{spec.name}_aniso_fwd_kernel",
        "aniso_bwd_kernel": f"_{spec.name}_aniso_bwd_kernel",
        "c2d_fwd_kernel": f"_{spec.name}_c2d_fwd_kernel",
        "c2d_bwd_kernel": f"_{spec.name}_c2d_bwd_kernel",
        "param_ids": param_ids,
        "param_args": ", ".join(param_ids),
        "step_param_loads": [f"{pid} = tl.load(p_ptr + {k}).to(u.dtype)"
                             for k, pid in enumerate(param_ids)],
    }
