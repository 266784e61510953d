"""The time-step policy of every explicit diffusion block, in one place.

A block's step is (P2 11) u <- u - tau K^T Phi(K u). Its tau is, in this order:
- ``unsafe=True``: the caller's tau, unchecked against the bound (still a positive, finite
  number: tau <= 0 reverses diffusion and nan poisons every value);
- a given tau: checked against the bound at every call (the bound moves when parameters
  train), refused with the bound in the message when it is larger;
- otherwise ``safety * bound``, times sigmoid(theta) when tau trains (theta = ``logit``), so a
  trained tau never leaves the bound.
The bound itself (linf, sign or Euclidean, P1 15-16, P3 29-30) is the block's.
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


def step_options(tau: object, unsafe: object, safety: object, train_tau: bool = False
                 ) -> tuple[float | None, bool, float]:
    """(tau given or None, unsafe, safety), validated the same way for every block."""
    safety_value = positive(safety, "safety")
    if safety_value > 1:
        raise StabilityError(f"safety must be in (0, 1], got {safety!r}")
    tau_given = None if tau is None else positive(tau, "tau")
    if not isinstance(unsafe, bool):
        raise StabilityError(f"unsafe must be True or False, got {unsafe!r}")
    if unsafe and tau_given is None:
        raise StabilityError("unsafe=True needs an explicit tau=...")
    if train_tau and tau_given is not None:
        raise StabilityError("pass either tau=... or train_tau=True, not both")
    return tau_given, unsafe, safety_value


def explicit_step(bound: Callable[[], torch.Tensor], *, tau_given: float | None, unsafe: bool,
                  safety: float, stability: str, logit: torch.Tensor | None = None,
                  detail: Callable[[], str] = lambda: "") -> torch.Tensor:
    """tau for the next step (float64 tensor; carries gradients to trainable parameters when
    it is the bound). ``bound()``: the block's largest stable step now; ``detail()``: how
    the bound is made, for the message refusing a larger tau."""
    if unsafe:
        assert tau_given is not None
        return torch.tensor(tau_given, dtype=torch.float64)
    b = bound()
    if tau_given is not None:
        limit = float(b.detach())
        if not tau_given <= limit:
            raise StabilityError(f"tau = {tau_given:g} breaks the {stability} bound tau <= "
                                 f"{limit!r}{detail()}; use a smaller tau, or unsafe=True")
        return torch.tensor(tau_given, dtype=torch.float64)
    tau = safety * b
    if logit is not None:
        tau = tau * torch.sigmoid(logit.to(tau.device, torch.float64))
    return tau
