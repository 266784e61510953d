"""shims: the kernels of a generated module. Each is a few lines that call a formula-free
body of fluxact.kernels with the module's Phi and Phi' (@triton.jit functions, passed as
constexpr arguments; Triton specialises the body on them and inlines them). The table says,
per kernel, its library body and its arguments, which the runtime's launchers pass.

Why shims rather than passing PHI from the launchers: a kernel called with @triton.jit
functions as arguments works under TRITON_INTERPRET=1 and compiles for sm_90 (checked), but
torch.compile's support for user Triton kernels with function-valued constexpr arguments
could not be checked without a GPU; the shims are ordinary kernels to torch.compile.
"""

from __future__ import annotations

#: The kernels of a generated module: each calls a body of fluxact.kernels with the formula.
#: (name: the kernel is _<activation>_<name>_kernel, fluxact.runtime.Ops.kernel(name) finds
#: it; library module, body, run-time arguments, constexpr arguments,
#: formula arguments: "phi" for PHI, "dphi" for DPHI and NT, "both" for PHI, DPHI and NT,
#: "both+rows" with NTP, the power of two >= NT the channel-mixing backward sums in)
KERNELS = (
    ("fwd", "elementwise", "activation_fwd", "x_ptr, y_ptr, p_ptr, n_elements",
     "BLOCK_SIZE, FP64", "phi"),
    ("bwd", "elementwise", "activation_bwd",
     "x_ptr, gy_ptr, gx_ptr, p_ptr, gp_ptr, n_elements", "BLOCK_SIZE, FP64", "dphi"),
    ("step1d_fwd", "step1d", "step1d_fwd", "u_ptr, out_ptr, p_ptr, s_ptr, n",
     "PERIODIC, BLOCK_SIZE, FP64, CLAMP", "phi"),
    ("step1d_bwd", "step1d", "step1d_bwd", "u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, n",
     "PERIODIC, BLOCK_SIZE, FP64", "both"),
    ("steps1d", "step1d", "steps1d", "u_ptr, out_ptr, p_ptr, s_ptr, n, steps",
     "PERIODIC, BLOCK_SIZE, FP64, CLAMP", "phi"),
    ("step2d_fwd", "step2d", "step2d_fwd", "u_ptr, out_ptr, p_ptr, s_ptr, H, W",
     "PERIODIC, BLOCK_SIZE, FP64, CLAMP", "phi"),
    ("step2d_bwd", "step2d", "step2d_bwd",
     "u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, H, W", "PERIODIC, BLOCK_SIZE, FP64", "both"),
    ("stepk_fwd", "convolution", "learned1d_fwd",
     "u_ptr, out_ptr, k_ptr, p_ptr, s_ptr, n, C", "W, PERIODIC, BLOCK_SIZE, FP64", "phi"),
    ("stepk_bwd", "convolution", "learned1d_bwd",
     "u_ptr, gy_ptr, gu_ptr, k_ptr, p_ptr, s_ptr, gp_ptr, gk_ptr, n, C",
     "W, PERIODIC, BLOCK_SIZE, FP64", "both"),
    ("stepc_fwd", "convolution", "mixing_fwd",
     "u_ptr, out_ptr, k_ptr, p_ptr, s_ptr, C, H, W", "CP, KH, KW, PERIODIC, BLOCK_SIZE, FP64",
     "phi"),
    ("stepc_bwd", "convolution", "mixing_bwd",
     "u_ptr, gy_ptr, gu_ptr, k_ptr, p_ptr, s_ptr, gp_ptr, gk_ptr, C, H, W",
     "CP, KH, KW, PERIODIC, BLOCK_SIZE, FP64", "both+rows"),
    ("iso_fwd", "coupled", "iso_fwd", "s_ptr, out_ptr, p_ptr, C, N", "BLOCK_SIZE, FP64",
     "phi"),
    ("iso_bwd", "coupled", "iso_bwd", "s_ptr, gy_ptr, gs_ptr, p_ptr, gp_ptr, C, N",
     "BLOCK_SIZE, FP64", "both"),
    ("aniso_fwd", "coupled", "aniso_fwd", "s_ptr, out_ptr, p_ptr, V, N",
     "BLOCK_SIZE, FP64", "both"),
    ("aniso_bwd", "coupled", "aniso_bwd", "s_ptr, gy_ptr, gs_ptr, p_ptr, gp_ptr, V, N",
     "BLOCK_SIZE, FP64", "both"),
    ("c2d_fwd", "coupled", "c2d_fwd", "u_ptr, out_ptr, p_ptr, s_ptr, M, H, W",
     "BLOCK_SIZE, FP64, CLAMP", "phi"),
    ("c2d_bwd", "coupled", "c2d_bwd", "u_ptr, gy_ptr, gu_ptr, p_ptr, s_ptr, gp_ptr, M, H, W",
     "BLOCK_SIZE, FP64", "both"),
)


#: the names the module imports the kernel bodies under
LIBRARY_ALIASES = frozenset(f"_k_{k[2]}" for k in KERNELS)
#: every identifier of the kernels (codegen/names.py reserves them)
KERNEL_NAMES = frozenset(name for k in KERNELS for part in k[3:5] for name in part.split(", "))


def shims(activation: str, trainable: int) -> tuple[list[str], list[dict[str, str]]]:
    """(imports, kernels) of the generated module of ``activation`` with ``trainable``
    trainable parameters: each kernel calls its library body with the module's PHI
    (_<activation>_phi) and DPHI (_<activation>_dphi)."""
    phi, dphi = f"_{activation}_phi", f"_{activation}_dphi"
    nt = trainable
    formula = {"phi": [phi], "dphi": [dphi, str(nt)], "both": [phi, dphi, str(nt)],
               "both+rows": [phi, dphi, str(nt), str(1 << max(nt - 1, 0).bit_length())]}
    imports, shims = [], []
    for key, module, body, runtime, constexprs, uses in KERNELS:
        name = f"_{activation}_{key}_kernel"
        alias = f"_k_{body}"  # LIBRARY_ALIASES
        imports.append(f"from fluxact.kernels.{module} import {body} as {alias}")
        args = [*runtime.split(", "), *constexprs.split(", ")]
        params = [*runtime.split(", "), *(f"{c}: tl.constexpr" for c in constexprs.split(", "))]
        shims.append({
            "key": key,
            "name": name,
            "signature": _wrap(params, len(f"def {name}(")),
            "call": f"{alias}(" + _wrap([*args, *formula[uses]], len(alias) + 5) + ")",
        })
    return imports, shims


def _wrap(items: list[str], indent: int, width: int = 99) -> str:
    """``items`` joined by ', ', broken into lines of at most ``width`` columns after an
    opening parenthesis at column ``indent``."""
    lines, line = [], ""
    for item in items:
        piece = f"{line}, {item}" if line else item
        if line and indent + len(piece) + 2 > width:
            lines.append(line + ",")
            line = item
        else:
            line = piece
    lines.append(line)
    return ("\n" + " " * indent).join(lines)
