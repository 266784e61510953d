"""fluxact.denoise: run nonlinear diffusion with a translated nonlinearity up to a time T.

The signal (1D or 2D) is evolved with forward differences (the gradient in 2D), grid size h,
reflecting (zero-flux) or periodic boundaries, by one of three schemes:

- "explicit": n = ceil(T / tau) steps of length T / n <= tau, tau the stability bound of the
  chosen notion (MATH.md 2) unless given; a given tau above the bound is refused with it;
- "fsi": FSI cycles (P2 21) whose inner steps are explicit steps within the bound; cycles of
  length L <= max_cycle reach L(L+1)/3 tau each, so fewer evaluations than explicit steps
  (longer cycles save more and approximate the diffusion less well);
- "implicit": n steps of the implicit scheme (P2 23) by fixed-point iteration, tau default
  1/(2 L ||K||^2) (contraction factor 1/2).

Everything runs in float64 without gradients, on the CPU (generated torch code) or, with
``device="cuda"``, on a GPU with the fused Triton step kernels (1D: temporally blocked, 100
steps per launch).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .blocks import DiffusionBlock, FSIBlock, ImplicitBlock, activation_of
from .operators import BOUNDARIES, Operator
from .runtime import Activation, StabilityError

SCHEMES = ("explicit", "fsi", "implicit")
#: default longest FSI cycle: one long cycle approximates linear diffusion poorly (relative
#: error 18% at T = 100, tau = 1/2 with one cycle of 24; 1.6% with 6 cycles of 10; measured
#: on the smooth 1D signal of tests/blocks/test_denoise.py), so time is split into cycles of
#: at most this length
MAX_CYCLE = 10
#: a run shows a progress bar (on a terminal) from this many evaluations of the flux on
PROGRESS_FROM = 500
#: explicit steps per call of DiffusionBlock.run (one launch of the temporally blocked kernel
#: on CUDA), so that the progress bar moves
CHUNK = 100


@dataclass(frozen=True, slots=True)
class DenoiseRun:
    """What ``denoise`` did: ``steps`` evaluations of the flux of step ``tau`` (inner step for
    FSI), ``bound`` the stability bound of tau (None for unsafe or implicit runs)."""

    output: np.ndarray
    scheme: str
    steps: int
    tau: float
    bound: float | None
    cycle: int | None
    stability: str

    def summary(self) -> str:
        how = {"explicit": f"{self.steps} explicit steps of tau = {self.tau:.6g}",
               "fsi": f"{self.steps // (self.cycle or 1)} FSI cycles of length {self.cycle} "
                      f"(inner tau = {self.tau:.6g}, {self.steps} evaluations)",
               "implicit": f"{self.steps} implicit steps of tau = {self.tau:.6g}"}[self.scheme]
        bound = "" if self.bound is None else f"; {self.stability} bound tau <= {self.bound:.6g}"
        return how + bound


def _signal(signal: Any) -> torch.Tensor:
    try:
        a = np.asarray(signal, dtype=np.float64)
    except (TypeError, ValueError):
        raise StabilityError(f"the signal must be a numeric array, got {type(signal).__name__}"
                             ) from None
    if a.ndim not in (1, 2):
        raise StabilityError(f"the signal must be 1D or 2D, got shape {a.shape}")
    if min(a.shape) < 2:
        raise StabilityError(f"the signal needs at least 2 samples per axis, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise StabilityError("the signal has NaN or infinite values")
    return torch.from_numpy(a.copy()).reshape(1, 1, *a.shape)


def _activation(nonlinearity: Any, kind: str | None, params: Mapping[str, object] | None,
                convention: str | None, table_tau: object, table_alpha: object) -> Activation:
    if isinstance(nonlinearity, Activation):
        return nonlinearity
    from .activation import to_torch
    from .translator import CatalogueEntry, Translation, lookup, translate

    if isinstance(nonlinearity, str) and kind is None:
        nonlinearity = lookup(nonlinearity)
    if not isinstance(nonlinearity, Translation):
        if not isinstance(nonlinearity, CatalogueEntry | str):
            return activation_of(nonlinearity)
        nonlinearity = translate(nonlinearity, kind, params=params, convention=convention,
                                 tau=table_tau, alpha=table_alpha)
    return to_torch(nonlinearity)  # generated torch code on the CPU, Triton on CUDA


def denoise_run(signal: Any, nonlinearity: Any, kind: str | None = None, *, time: float,
                params: Mapping[str, object] | None = None, convention: str | None = None,
                tau: float | None = None, stability: str | None = None,
                scheme: str = "explicit",
                boundary: str = "reflect", h: float = 1.0, unsafe: bool = False,
                table_tau: object = "1/4", table_alpha: object = "1/4",
                max_cycle: int = MAX_CYCLE, progress: bool | None = None,
                device: str | torch.device = "cpu") -> DenoiseRun:
    """``denoise`` with a record of what it did (see DenoiseRun)."""
    if isinstance(time, bool) or not isinstance(time, numbers.Real) or not (
            math.isfinite(time) and time > 0):
        raise StabilityError(f"time must be a positive number, got {time!r}")
    if scheme not in SCHEMES:
        raise StabilityError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if boundary not in BOUNDARIES:
        raise StabilityError(f"unknown boundary {boundary!r}; use one of {', '.join(BOUNDARIES)}")
    if isinstance(max_cycle, bool) or not isinstance(max_cycle, int) or max_cycle < 1:
        raise StabilityError(f"max_cycle must be a positive integer, got {max_cycle!r}")
    u = _signal(signal).to(device)
    # float64 throughout: a copy of the activation with float64 parameters, float64 stencils
    act = _activation(nonlinearity, kind, params, convention, table_tau, table_alpha
                      ).clone().to(device, torch.float64)
    K = Operator.forward_difference(u.dim() - 2, 1, h, boundary, torch.float64).to(device)
    # explicit steps keep the max-min principle by default; FSI cycles extrapolate and only
    # keep the Euclidean guarantee (FSIBlock refuses the others)
    stability = stability or ("euclidean" if scheme == "fsi" else "linf")
    cycle = None
    with torch.no_grad():
        if scheme == "implicit":
            probe = ImplicitBlock(act, K, tau=tau, unsafe=unsafe)
            step_max = float(probe.time_step())
            n = _count(time, step_max)
            inner = min(time / n, step_max)
            block: torch.nn.Module = ImplicitBlock(act, K, tau=inner, unsafe=unsafe)
            bound, steps = None, n
        else:
            probe = DiffusionBlock(act, K, stability=stability, tau=tau, unsafe=unsafe)
            step_max = float(probe.time_step())
            bound = None if unsafe else float(probe.tau_max())
            if scheme == "explicit":
                n = _count(time, step_max)
                inner, steps = min(time / n, step_max), n  # never an ulp above the bound
                block = DiffusionBlock(act, K, stability=stability, tau=inner, unsafe=unsafe)
            else:
                cycles, cycle = _fsi_plan(time, step_max, max_cycle)
                _cap(cycles * cycle, time, step_max)
                inner = min(time / (cycles * cycle * (cycle + 1) / 3), step_max)
                steps, n = cycles * cycle, cycles
                block = FSIBlock(act, K, cycle=cycle, stability=stability, tau=inner,
                                 unsafe=unsafe)
        bar = _progress(progress, steps)
        per_call = cycle or 1
        done = 0
        while done < n:  # explicit steps in chunks (one launch each with the fused kernels)
            chunk = min(n - done, CHUNK) if scheme == "explicit" else 1
            u = block.run(u, chunk) if scheme == "explicit" else block(u)
            done += chunk
            if bar is not None:
                bar.update(chunk * per_call)
        if bar is not None:
            bar.close()
    if not bool(torch.isfinite(u).all()):
        raise StabilityError(
            f"the result is not finite: differences of a signal with max |f| = "
            f"{float(np.abs(np.asarray(signal, dtype=np.float64)).max()):.3g} overflow float64; "
            "rescale the signal")
    return DenoiseRun(output=u.reshape(u.shape[2:]).cpu().numpy(), scheme=scheme, steps=steps,
                      tau=inner, bound=bound, cycle=cycle, stability=stability)


def denoise(signal: Any, nonlinearity: Any, kind: str | None = None, *, time: float,
            **options: Any) -> np.ndarray:
    """Nonlinear diffusion of ``signal`` (1D or 2D array) up to time ``time``.

    ``nonlinearity``: a catalogue name, a formula with ``kind`` (diffusivity, regulariser,
    shrinkage, activation), a Translation or an Activation; ``params`` gives parameter values.
    Options: ``tau`` (default: the stability bound), ``stability`` (linf, sign, euclidean;
    default linf, euclidean for FSI),
    ``scheme`` (explicit, fsi, implicit), ``boundary`` (reflect, periodic), ``h``,
    ``unsafe`` (use a tau above the bound), ``progress`` (None: a bar on a terminal for long
    runs), ``max_cycle`` (longest FSI cycle), ``device`` ("cpu", or "cuda" for the fused
    Triton kernels). Returns a float64 array of the signal's shape.
    """
    return denoise_run(signal, nonlinearity, kind, time=time, **options).output


#: most steps (flux evaluations) a run may take
MAX_STEPS = 10**7


def _count(time: float, step: float) -> int:
    """ceil(time / step) steps, refused beyond MAX_STEPS."""
    n = time / step
    _cap(n, time, step)
    return max(1, math.ceil(n))


def _cap(steps: float, time: float, step: float) -> None:
    """Refuse a run of more than MAX_STEPS flux evaluations (a tiny tau would run for days)."""
    if not steps <= MAX_STEPS:
        raise StabilityError(
            f"time {time:g} with steps of at most {step:.6g} needs {steps:.3g} evaluations, "
            f"more than {MAX_STEPS:g}; use a larger tau or a shorter time")


def _fsi_plan(time: float, tau: float, max_cycle: int = MAX_CYCLE) -> tuple[int, int]:
    """(cycles M, cycle length L): M least with M L(L+1)/3 tau >= time for some
    L <= max_cycle, and L least for that M."""
    per_cycle = max_cycle * (max_cycle + 1) / 3 * tau
    m = max(1, math.ceil(time / per_cycle))
    length = math.ceil((-1 + math.sqrt(1 + 12 * time / (m * tau))) / 2)
    while length > 1 and m * (length - 1) * length / 3 * tau >= time:  # rounding of sqrt
        length -= 1
    while m * length * (length + 1) / 3 * tau < time:
        length += 1
    return m, length


def _progress(progress: bool | None, total: int) -> Any:
    if progress is None:
        progress = total >= PROGRESS_FROM and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="fluxact denoise", leave=False)
