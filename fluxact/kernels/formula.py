"""The formula in the kernels of this package, and how a kernel is bound to one.

Every kernel here computes with three global names: ``_phi(x, p_ptr) -> Phi(x)``,
``_dphi(x, p_ptr) -> (Phi'(x), (dPhi/dp_k for the trainable parameters))`` and ``N_TRAIN``,
the number of trainable parameters (``N_TRAIN_P2``: the power of two >= it that the
channel-mixing backward sums in). In this module they are placeholders that refuse to
compile. A generated module defines ``_phi`` and ``_dphi`` (@triton.jit functions under
exactly these names); ``bind`` makes a copy of a kernel whose globals hold them, and Triton
inlines them when it compiles the copy.

Why globals and not constexpr arguments: torch.compile re-emits a user kernel from its source
and the functions it reaches through its globals, each under the name it was defined with
(torch/_inductor/codegen/wrapper.py, user_defined_triton_kernel_transitive_closure_source_code),
so a kernel must call every @triton.jit function by that function's own name; a
function-valued argument, or a function imported under an alias, does not survive it
(benchmarks/compile_sm90.py compiles that re-emitted source).
"""

from __future__ import annotations

import types
from typing import Any

import triton
import triton.language as tl


@triton.jit
def _phi(x, p_ptr):
    """Placeholder for the formula's Phi: a kernel must be bound (``bind``) before it runs."""
    tl.static_assert(False, "this fluxact kernel is not bound to a formula (formula.bind)")
    return x


@triton.jit
def _dphi(x, p_ptr):
    """Placeholder for the formula's (Phi', (dPhi/dp, ...)): see ``_phi``."""
    tl.static_assert(False, "this fluxact kernel is not bound to a formula (formula.bind)")
    return x, ()


N_TRAIN = tl.constexpr(0)
N_TRAIN_P2 = tl.constexpr(1)

#: the names ``bind`` sets
FORMULA_NAMES = ("_phi", "_dphi", "N_TRAIN", "N_TRAIN_P2")


def bind(kernel: Any, phi: Any, dphi: Any, trainable: int) -> Any:
    """A copy of ``kernel`` (a @triton.jit function of this package) that computes with the
    formula ``phi``, ``dphi`` (@triton.jit functions named ``_phi`` and ``_dphi``) and
    ``trainable`` trainable parameters. The copy has its own globals: the library's kernel,
    and every other copy, are left as they are."""
    for fn, name in ((phi, "_phi"), (dphi, "_dphi")):
        if getattr(getattr(fn, "fn", None), "__name__", None) != name:
            raise ValueError(f"a kernel is bound to @triton.jit functions named {name}, got "
                             f"{fn!r}")
    fn = kernel.fn
    scope = dict(fn.__globals__)
    scope.update(_phi=phi, _dphi=dphi, N_TRAIN=tl.constexpr(trainable),
                 N_TRAIN_P2=tl.constexpr(1 << max(trainable - 1, 0).bit_length()))
    copy = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
    copy.__module__, copy.__annotations__ = fn.__module__, dict(fn.__annotations__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    # the kernel's own jit options (the interpreter's functions have none)
    options = {key: getattr(kernel, attribute) for key, attribute in _JIT_OPTIONS.items()
               if getattr(kernel, attribute, None)}
    return triton.jit(copy, **options)


#: the triton.jit keywords and the JITFunction attributes that keep them
_JIT_OPTIONS = {"do_not_specialize": "do_not_specialize",
                "do_not_specialize_on_alignment": "do_not_specialize_on_alignment",
                "debug": "debug", "noinline": "noinline", "repr": "_repr",
                "launch_metadata": "launch_metadata"}
