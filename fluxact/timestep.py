"""The time-step policy of every explicit diffusion block, in one place.

A block's step is (P2 11) u <- u - tau K^T Phi(K u). Its tau is, in this order:
- ``unsafe=True``: the caller's tau, unchecked against the bound (still a positive, finite
  number: tau <= 0 reverses diffusion and nan poisons every value);
- a given tau: checked against the bound at every call (the bound moves when parameters
  train), refused with the bound in the message when it is larger;
- otherwise ``safety * bound``, times sigmoid(theta) when tau trains (theta = ``logit``), so a
  trained tau never leaves the bound.
The bound itself (linf, sign or Euclidean, P1 15-16, P3 29-30; the contraction bound of the
implicit step) is the block's; ``TimeStep`` is the policy every block holds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from .runtime import StabilityError


def positive(value: object, what: str) -> float:
    """``value`` as a float when it is a positive, finite real number (not a bool)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    try:
        number = float(value) if isinstance(value, numbers.Real) else math.nan
    except OverflowError:  # an int beyond float64
        number = math.inf
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else f"{shown[:20]}...({len(shown)} characters)"
        raise StabilityError(f"{what} must be a positive, finite number, got {shown}")
    return number


class TimeStep:
    """The time-step policy of one block, built from its ``tau``, ``unsafe``, ``safety`` and
    ``train_tau`` arguments (validated here, the same way for every block), and called with
    the block's bound to give tau for the next step."""

    def __init__(self, tau: object = None, *, unsafe: object = False, safety: object = 1.0,
                 train_tau: object = False) -> None:
        self.safety = positive(safety, "safety")
        if self.safety > 1:
            raise StabilityError(f"safety must be in (0, 1], got {safety!r}")
        self.given = None if tau is None else positive(tau, "tau")
        for name, flag in (("unsafe", unsafe), ("train_tau", train_tau)):
            if not isinstance(flag, bool):
                raise StabilityError(f"{name} must be True or False, got {flag!r}")
        if unsafe and self.given is None:
            raise StabilityError("unsafe=True needs an explicit tau=...")
        if train_tau and self.given is not None:
            raise StabilityError("pass either tau=... or train_tau=True, not both")
        self.unsafe, self.trains = bool(unsafe), bool(train_tau)

    def parameter(self, dtype: torch.dtype = torch.float32) -> torch.nn.Parameter | None:
        """theta of a trained tau (tau = safety * bound * sigmoid(theta), starting near the
        bound), or None."""
        return torch.nn.Parameter(torch.tensor(4.0, dtype=dtype)) if self.trains else None

    def __call__(self, bound: Callable[[], torch.Tensor], notion: str, *,
                 logit: torch.Tensor | None = None, strict: bool = False,
                 detail: Callable[[], str] = lambda: "") -> torch.Tensor:
        """tau for the next step (float64 tensor; carries gradients to trainable parameters
        when it is the bound). ``bound()``: the block's largest stable step now (``strict``:
        a step must stay below it); ``notion``: its name (linf, euclidean, ...) and
        ``detail()``: how it is made, for the message refusing a larger tau."""
        if self.unsafe:
            assert self.given is not None
            return torch.tensor(self.given, dtype=torch.float64)
        b = bound()
        if self.given is not None:
            limit = float(b.detach())
            if not (self.given < limit if strict else self.given <= limit):
                raise StabilityError(
                    f"tau = {self.given:g} breaks the {notion} bound tau {'<' if strict else '<='} "
                    f"{limit!r}{detail()}; use a smaller tau, or unsafe=True")
            return torch.tensor(self.given, dtype=torch.float64)
        tau = self.safety * b
        if logit is not None:
            tau = tau * torch.sigmoid(logit.to(tau.device, torch.float64))
        # a NaN bound or logit (a parameter that training made NaN) would step with tau = NaN
        ok = torch.isfinite(tau) & (tau > 0)
        message = f"the {notion} time step is not a positive finite float64"
        if tau.is_cuda or torch.compiler.is_compiling():
            torch._assert_async(ok, message)  # no synchronisation
        elif not bool(ok):
            raise StabilityError(
                f"{message}: tau = {float(tau.detach())!r} from the bound "
                f"{float(b.detach())!r}{detail()}; a parameter (NaN after training?), the grid "
                "size or the operator put it out of range")
        return tau

    def describe(self) -> str:
        """"unsafe", "given" or "auto" (for a block's repr)."""
        return "unsafe" if self.unsafe else "auto" if self.given is None else "given"
