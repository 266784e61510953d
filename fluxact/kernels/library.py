"""The kernels of this package by name, bound to one formula, and the torch custom ops of all
families (fluxact.runtime.Ops holds both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import convolution, coupled, elementwise, step1d, step2d, step3d
from .formula import bind
from .launch import register

#: kernel name (fluxact.runtime.Ops.kernel) -> the library's kernel
KERNELS = {
    "fwd": elementwise.activation_fwd,
    "bwd": elementwise.activation_bwd,
    "step1d_fwd": step1d.step1d_fwd,
    "step1d_bwd": step1d.step1d_bwd,
    "steps1d": step1d.steps1d,
    "step2d_fwd": step2d.step2d_fwd,
    "step2d_bwd": step2d.step2d_bwd,
    "step3d_fwd": step3d.step3d_fwd,
    "step3d_bwd": step3d.step3d_bwd,
    "stepk_fwd": convolution.learned1d_fwd,
    "stepk_bwd": convolution.learned1d_bwd,
    "stepc_fwd": convolution.mixing_fwd,
    "stepc_bwd": convolution.mixing_bwd,
    "iso_fwd": coupled.iso_fwd,
    "iso_bwd": coupled.iso_bwd,
    "aniso_fwd": coupled.aniso_fwd,
    "aniso_bwd": coupled.aniso_bwd,
    "c2d_fwd": coupled.c2d_fwd,
    "c2d_bwd": coupled.c2d_bwd,
}
FAMILIES = (elementwise, step1d, step2d, step3d, convolution, coupled)


class Bound:
    """The kernels of this package bound to one formula, each made once, when first asked
    for (the custom ops of runtime.Ops ask for all of them when they are registered)."""

    def __init__(self, phi: Any, dphi: Any, trainable: int) -> None:
        self.phi, self.dphi, self.trainable = phi, dphi, trainable
        self._made: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = bind(KERNELS[name], self.phi, self.dphi, self.trainable)
        return self._made[name]


def custom_ops(tag: str, kernels: Bound, trainable_at: Sequence[int]) -> dict[str, Any]:
    """Op name ("act", "1d", "2d", "3d", "k1d", "c", "iso", "aniso", "c2d") -> the forward torch
    custom op (with autograd) of every family, registered as ``tag``_<name>_fwd/_bwd."""
    ops = {}
    for family in FAMILIES:
        for name, (forward, backward) in family.launchers(kernels, kernels.trainable).items():
            ops[name] = register(f"{tag}_{name}", forward, backward, trainable_at)
    return ops
