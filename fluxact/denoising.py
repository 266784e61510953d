"""fluxact.denoise: run nonlinear diffusion with a translated nonlinearity up to a time T.

The signal (1D, 2D or 3D) is evolved with forward differences, grid spacing h (or one per
axis), reflecting (zero-flux) or periodic boundaries. Images and volumes take the isotropic
flux g(|grad u|^2) grad u by default (``coupling="isotropic"``, the Perona-Malik model, on
fluxact.grid.GridDiffusion) or the per-axis flux Phi(d_i u) (``coupling="uncoupled"``, medpy's
scheme), with tau <= 1/(2 g_max sum_i 1/h_i^2), or the anisotropic flux g(J) grad u_c of
P3 30 (``coupling="anisotropic"``: J the structure tensor summed over the channels, so it
differs from the isotropic flux on multi-channel data) with the same tau, under the
Euclidean notion only. Schemes:

- "explicit": n = ceil(T / tau) steps of length T / n <= tau, tau the stability bound of the
  chosen notion (MATH.md 2) unless given; a given tau above the bound is refused with it;
- "fsi": FSI cycles (P2 21) whose inner steps are explicit steps within the bound; cycles of
  length L <= max_cycle reach L(L+1)/3 tau each, so fewer evaluations than explicit steps
  (longer cycles save more and approximate the diffusion less well);
- "implicit": n steps of the implicit scheme (P2 23) by fixed-point iteration, tau default
  1/(2 L ||K||^2) (contraction factor 1/2).

FSI and implicit runs take the per-axis flux on 1D and 2D grids of one spacing.

``model`` names the diffusion (explicit steps):
- "pm" (default): the Perona-Malik model with the ``coupling`` above;
- "catte": the regularised Perona-Malik model of Catte, Lions, Morel and Coll (1992),
  g(|grad u_sigma|^2) grad u, on any grid (GridDiffusion(sigma=...)): the same bound, the
  max-min principle kept;
- "eed", "ced": edge- and coherence-enhancing diffusion on 2D images (fluxact.tensor), with
  the Euclidean bound tau <= 2 / (lambda_max ||K||^2) only.

Everything runs in float64 without gradients, on the CPU (generated torch code) or, with
``device="cuda"``, on a GPU: the fused Triton step kernels for 1D signals (temporally
blocked, 100 steps per launch), the per-axis flux on 2D images and on volumes (with voxel
spacing and channels: fluxact/kernels/step3d.py); the isotropic and anisotropic fluxes and
the per-axis flux on 2D images with channels or unequal spacing run the torch code of
fluxact.grid there.

A signal is a 1D, 2D or 3D array (numpy, torch or nested lists) of bools, integers or floats, at
least 2 samples per axis, all finite; bools count as 0 and 1 (a binary image diffuses like
its 0/1 image). Complex, string and object values are refused (SignalError), from Python as
from the command line: one check (``as_signal``) for both. ``load_signal`` reads a .npy file
for the command line, checking its header before any data are read.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .blocks import DiffusionBlock, FSIBlock, ImplicitBlock
from .grid import COUPLINGS, GridDiffusion, spacing_of
from .operators import BOUNDARIES, Operator
from .runtime import Activation, StabilityError
from .translator.verify import GRID_RANGE, check_grid_size

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
#: what explicit grid steps compute in (the output is float64 either way)
PRECISIONS = ("float64", "float32")
#: the diffusion models of ``denoise`` (module docstring)
MODELS = ("pm", "catte", "eed", "ced")
#: the pre-smoothing scale of the models that have one, when not given
SIGMA = 1.0


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
    coupling: str = "uncoupled"
    spacing: tuple[float, ...] = (1.0,)
    channels: int = 1
    precision: str = "float64"
    model: str = "pm"
    sigma: float | None = None

    def summary(self) -> str:
        how = {"explicit": f"{self.steps} explicit steps of tau = {self.tau:.6g}",
               "fsi": f"{self.steps // (self.cycle or 1)} FSI cycles of length {self.cycle} "
                      f"(inner tau = {self.tau:.6g}, {self.steps} evaluations)",
               "implicit": f"{self.steps} implicit steps of tau = {self.tau:.6g}"}[self.scheme]
        dims = len(self.spacing)
        bound = "" if self.bound is None else f"; {self.stability} bound tau <= {self.bound:.6g}"
        if dims == 1 and self.channels == 1 and self.model == "pm":
            return how + bound
        model = {"pm": "", "catte": "regularised Perona-Malik", "eed": "EED", "ced": "CED"}
        grid = (f"{dims}D, {self.coupling} flux" if self.model == "pm" else
                f"{dims}D, {model[self.model]}, sigma {self.sigma:g}")
        if self.channels > 1:
            shared = (" sharing one diffusion tensor" if self.model in ("eed", "ced") else
                      " sharing one diffusivity" if self.coupling == "isotropic" else
                      " sharing one structure tensor" if self.coupling == "anisotropic" else "")
            grid += f", {self.channels} channels{shared}"
        if len(set(self.spacing)) > 1 or self.spacing[0] != 1:
            grid += f", spacing {', '.join(f'{h:g}' for h in self.spacing)}"
        if self.precision != "float64":
            grid += f", computed in {self.precision}"
        if bound and self.model in ("eed", "ced"):
            bound += " = 2/(lambda_max ||K||^2)"
        elif bound and self.scheme == "explicit" and (dims > 1 or self.channels > 1):
            bound += (" = 2/(g_max ||K||^2), ||K||^2 <= 4 sum_i 1/h_i^2"
                      if self.coupling == "anisotropic" else " = 1/(2 g_max sum_i 1/h_i^2)")
        return f"{how} ({grid}){bound}"


class SignalError(StabilityError):
    """The signal (an array, or the .npy file it is read from) is not one denoise can run on."""


#: dtype kinds of a signal: bool (0 and 1), signed and unsigned integers, floats
SIGNAL_KINDS = "biuf"
#: the largest .npy header read (numpy's own limit); a 1D or 2D numeric array needs < 128 bytes
MAX_HEADER = 10_000
def _brief(exc: BaseException) -> str:
    """An exception's message on one line, at most 100 characters (for one-line errors)."""
    return " ".join(str(exc).split())[:100]


def _dtype_problem(dtype: np.dtype, shown: object = None) -> str | None:
    """Why values of ``dtype`` (``shown`` as this, e.g. a torch dtype) are no signal, or None:
    the one check of the dtype."""
    if dtype.kind in SIGNAL_KINDS and not dtype.hasobject:
        return None
    hint = "; take a.real or abs(a) first" if dtype.kind == "c" else ""
    return (f"holds {shown or dtype} values; a numeric array is needed (bool, integer or "
            f"float values){hint}")


def _shape_problem(shape: tuple[int, ...], channel_axis: int | None = None) -> str | None:
    spatial = list(shape)
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            return f"has no axis {channel_axis} for its channels (shape {shape})"
        del spatial[channel_axis]
    if len(spatial) not in (1, 2, 3):
        extra = " besides the channel axis" if channel_axis is not None else ""
        return f"must be 1D, 2D or 3D{extra}, got shape {shape}"
    if min(spatial) < 2:
        return f"needs at least 2 samples per axis, got shape {shape}"
    return None


def _channel_axis(channel_axis: object) -> int | None:
    if channel_axis is None:
        return None
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise SignalError(f"channel_axis must be an axis number (e.g. -1 for RGB images) or "
                          f"None, got {channel_axis!r}")
    return int(channel_axis)


def as_signal(signal: Any, channel_axis: int | None = None) -> np.ndarray:
    """A float64 copy of ``signal`` (numpy, torch or nested lists), refused with SignalError
    unless it is a finite 1D, 2D or 3D array of bools, integers or floats (with, at
    ``channel_axis``, one more axis of channels)."""
    if isinstance(signal, torch.Tensor):
        signal = _tensor_values(signal)
    try:
        a = np.asarray(signal)  # no dtype: strings, complex and objects keep theirs, refused
    except (TypeError, ValueError) as exc:  # e.g. ragged nested lists
        raise SignalError(f"the signal must be a numeric array, got {type(signal).__name__} "
                          f"({_brief(exc)})") from None
    problem = _dtype_problem(a.dtype) or _shape_problem(a.shape, _channel_axis(channel_axis))
    if problem:
        what = "" if isinstance(signal, np.ndarray) else f" (a {type(signal).__name__})"
        raise SignalError(f"the signal{what} {problem}")
    a = a.astype(np.float64)  # a copy: the run never writes into the caller's array
    if not np.isfinite(a).all():
        raise SignalError("the signal has NaN or infinite values")
    return a


def _tensor_values(t: torch.Tensor) -> np.ndarray:
    """A torch tensor's values as numpy (detached, on the CPU; float types as float64: numpy
    has no bfloat16)."""
    if t.is_complex():
        raise SignalError(f"the signal {_dtype_problem(np.dtype(np.complex128), t.dtype)}")
    try:
        t = t.detach().to("cpu", torch.float64 if t.is_floating_point() else t.dtype)
        return t.numpy()
    except (TypeError, RuntimeError, NotImplementedError) as exc:
        raise SignalError(f"the signal is a {t.dtype} tensor ({t.layout}, on {t.device}) that "
                          f"cannot be read as an array: {_brief(exc)}; "
                          "pass a dense real tensor") from None


def load_signal(path: str | os.PathLike[str], channel_axis: int | None = None) -> np.ndarray:
    """The array of a .npy file, checked before its data are read: a regular file (no FIFO
    that would block), numpy's magic, a header of at most MAX_HEADER bytes, a signal's dtype
    and shape, and as many data bytes as the header promises (a forged shape does not make
    numpy allocate terabytes). Never unpickles. A .npz archive is refused: it may hold several
    arrays, compressed (a few bytes can inflate to gigabytes); save the one array as .npy."""
    name = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SignalError(f"{name} is not a regular file; save the array with numpy.save "
                              "and give that file")
        head = f.read(12)
        if head[:2] == b"PK":
            raise SignalError(f"{name} is a .npz archive, not a numeric .npy array; save the "
                              "one array to denoise with numpy.save('in.npy', "
                              "numpy.load('in.npz')['NAME'])")
        bad = f"{name} is not a numeric .npy array"
        if not head.startswith(b"\x93NUMPY") or len(head) < 12 or head[6] not in (1, 2, 3):
            raise SignalError(f"{bad}: no numpy .npy header; write it with numpy.save")
        size = int.from_bytes(head[8:10] if head[6] == 1 else head[8:12], "little")
        if size > MAX_HEADER:
            raise SignalError(f"{bad}: its header is {size} bytes, more than {MAX_HEADER} (a "
                              "1D, 2D or 3D array needs under 128); save the array again with "
                              "numpy.save")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f, max_header_size=MAX_HEADER)
        except ValueError as exc:
            raise SignalError(f"{bad}: unreadable header ({_brief(exc)})"
                              ) from None
        problem = _dtype_problem(dtype) or _shape_problem(shape, _channel_axis(channel_axis))
        if problem:
            raise SignalError(f"{bad}: it {problem}")
        need, have = math.prod(shape) * dtype.itemsize, info.st_size - f.tell()
        if have < need:
            raise SignalError(f"{bad}: its header promises {need} bytes of {dtype} values "
                              f"(shape {shape}), the file holds {have}: it is truncated")
        f.seek(0)
        try:
            return np.lib.format.read_array(f, allow_pickle=False, max_header_size=MAX_HEADER)
        except ValueError as exc:
            raise SignalError(f"{bad}: {_brief(exc)}") from None


def _activation(nonlinearity: Any, kind: str | None, params: Mapping[str, object] | None,
                convention: str | None, table_tau: object, table_alpha: object,
                role: str = "activation") -> Activation:
    """Phi (role "activation") or the diffusivity g(s2) (role "diffusivity", for the
    isotropic scheme) of the nonlinearity."""
    if isinstance(nonlinearity, Activation) and not (
            params or table_tau is not None or table_alpha is not None):
        nonlinearity.check_role(role)
        return nonlinearity  # as it is, without importing the code generator
    from .activation import as_activation  # refuses what cannot apply

    return as_activation(nonlinearity, kind, role=role, params=params, convention=convention,
                         tau=table_tau, alpha=table_alpha)


def denoise_run(signal: Any, nonlinearity: Any, kind: str | None = None, *, time: float,
                params: Mapping[str, object] | None = None, convention: str | None = None,
                tau: float | None = None, stability: str | None = None,
                scheme: str = "explicit", coupling: str | None = None,
                channel_axis: int | None = None,
                boundary: str = "reflect", h: float | None = None, spacing: Any = None,
                unsafe: bool = False, table_tau: object = None, table_alpha: object = None,
                max_cycle: int = MAX_CYCLE, progress: bool | None = None,
                device: str | torch.device = "cpu", compile: bool = False,
                precision: str = "float64", model: str = "pm", sigma: float | None = None,
                rho: float | None = None) -> DenoiseRun:
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
    if h is not None and spacing is not None:
        raise StabilityError("give the grid spacing once: h= (every axis) or spacing= (one "
                             "number, or one per axis), not both")
    if precision not in PRECISIONS:
        raise StabilityError(f"unknown precision {precision!r}; use one of "
                             f"{', '.join(PRECISIONS)}")
    if model not in MODELS:
        raise StabilityError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    if model != "pm" and scheme != "explicit":
        raise StabilityError(f"model {model!r} runs explicit steps; use scheme='explicit'")
    if sigma is not None and model == "pm":
        raise StabilityError("sigma= smooths the image the diffusivity sees: it belongs to "
                             "model='catte', 'eed' or 'ced'")
    if rho is not None and model != "ced":
        raise StabilityError("rho= (the integration scale) belongs to model='ced'")
    h = check_grid_size(1.0 if h is None else h)
    channel_axis = _channel_axis(channel_axis)
    a = as_signal(signal, channel_axis)
    if channel_axis is not None:  # (channels, *grid)
        a = np.moveaxis(a, channel_axis, 0)
    grid = a.shape[1:] if channel_axis is not None else a.shape
    spacing = _spacing(spacing, h, len(grid))
    if model in ("eed", "ced"):
        run = _tensor_run(a, grid, spacing, nonlinearity, kind, params, convention, table_tau,
                          table_alpha, model=model, time=time, tau=tau,
                          stability=stability or "euclidean", coupling=coupling,
                          boundary=boundary, sigma=SIGMA if sigma is None else sigma, rho=rho,
                          unsafe=unsafe, progress=progress, compiled=compile,
                          precision=precision, device=device)
        if channel_axis is not None:
            run = replace(run, output=np.moveaxis(run.output, 0, channel_axis))
        return run
    if model == "catte":
        if coupling not in (None, "isotropic"):
            raise StabilityError("the regularised Perona-Malik model (model='catte') has the "
                                 "isotropic flux g(|grad u_sigma|^2) grad u; drop coupling=")
        sigma = SIGMA if sigma is None else sigma
    coupling = _coupling(coupling, len(grid), scheme)
    u = torch.from_numpy(a).reshape(1, -1, *grid).to(device)
    if model == "catte" and len(grid) == 1:
        coupling = "isotropic"  # g(u_sigma,x^2) u_x: the grid step, in one dimension too
    on_grid = (model == "catte" or len(grid) > 1 or channel_axis is not None
               or coupling == "isotropic")
    if on_grid and scheme == "explicit" and not (
            coupling == "uncoupled" and len(grid) == 2 and len(set(spacing)) == 1
            and u.is_cuda and channel_axis is None):  # (the fused 2D kernel of DiffusionBlock)
        # the anisotropic flux keeps the Euclidean bound only (fluxact/grid.py)
        default = "euclidean" if coupling == "anisotropic" else "linf"
        run = _grid_run(u, a, nonlinearity, kind, params, convention, table_tau, table_alpha,
                        time=time, tau=tau, stability=stability or default, coupling=coupling,
                        boundary=boundary, spacing=spacing, unsafe=unsafe, progress=progress,
                        compiled=compile, precision=precision, sigma=sigma)
        if channel_axis is not None:
            run = replace(run, output=np.moveaxis(run.output, 0, channel_axis))
        return run
    others = (f"the {scheme} scheme runs" if scheme != "explicit" else
              "1D signals and the fused CUDA kernels run")
    for asked, what in ((compile, "compile=True"), (precision != "float64", "precision=" +
                                                     repr(precision))):
        if asked:
            raise StabilityError(f"{what} runs explicit steps on images and volumes (2D, 3D, "
                                 f"or a channel axis); {others} without it")
    if len(grid) == 3 or len(set(spacing)) > 1 or channel_axis is not None:
        raise StabilityError(f"scheme {scheme!r} runs on 1D and 2D grids of one spacing and "
                             "one channel; use scheme='explicit' for volumes, per-axis spacing "
                             "and channels")
    h = spacing[0]
    # float64 throughout: a copy of the activation with float64 parameters, float64 stencils
    act = _activation(nonlinearity, kind, params, convention, table_tau, table_alpha
                      ).clone().to(device, torch.float64)
    K = Operator.forward_difference(u.dim() - 2, 1, h, boundary, torch.float64).to(device)
    # explicit steps keep the max-min principle by default; FSI cycles extrapolate and only
    # keep the Euclidean guarantee (FSIBlock refuses the others)
    stability = stability or ("euclidean" if scheme == "fsi" else "linf")
    cycle = None
    with torch.no_grad():
        if scheme == "implicit":  # its tau is a contraction's, not a stability bound
            block, n, inner, _ = _plan(lambda t: ImplicitBlock(act, K, tau=t, unsafe=unsafe),
                                       tau, time, h, bound=False)
            bound, steps = None, n
        elif scheme == "explicit":
            block, n, inner, bound = _plan(
                lambda t: DiffusionBlock(act, K, stability=stability, tau=t, unsafe=unsafe),
                tau, time, h, bound=not unsafe)
            steps = n
        else:
            probe = DiffusionBlock(act, K, stability=stability, tau=tau, unsafe=unsafe)
            step_max = _step(probe, h)
            bound = None if unsafe else float(probe.tau_max())
            cycles, cycle = _fsi_plan(time, step_max, max_cycle)
            _cap(cycles * cycle, time, step_max)
            inner = min(time / (cycles * cycle * (cycle + 1) / 3), step_max)
            steps, n = cycles * cycle, cycles
            block = FSIBlock(act, K, cycle=cycle, stability=stability, tau=inner, unsafe=unsafe)
        u = _evolve(block, u, n, explicit=scheme == "explicit", per_call=cycle or 1,
                    progress=progress)
    _check_finite(u, a)
    return DenoiseRun(output=u.reshape(u.shape[2:]).cpu().numpy(), scheme=scheme, steps=steps,
                      tau=inner, bound=bound, cycle=cycle, stability=stability,
                      coupling=coupling, spacing=spacing)


def _spacing(spacing: Any, h: float, dims: int) -> tuple[float, ...]:
    """Grid spacing per axis from ``spacing`` (one number or one per axis) or ``h``."""
    if spacing is None:
        return (h,) * dims
    values = spacing_of(spacing, dims)
    return tuple(check_grid_size(x) for x in values)


def _coupling(coupling: str | None, dims: int, scheme: str) -> str:
    """The flux: isotropic by default for images and volumes (rotation invariant), uncoupled
    (per axis) for FSI and implicit runs, which step the per-axis scheme only."""
    if coupling is None:
        return "isotropic" if dims > 1 and scheme == "explicit" else "uncoupled"
    if coupling not in COUPLINGS:
        raise StabilityError(f"unknown coupling {coupling!r}; use one of {', '.join(COUPLINGS)}")
    if dims == 1:  # one axis: g(u_x^2) u_x either way for one channel; with channels the
        # isotropic and anisotropic fluxes (equal in 1D: J = sum_c u_c,x^2) share one g,
        # on the grid path (so g is read as a diffusivity with or without channels)
        return "uncoupled" if coupling == "uncoupled" or scheme != "explicit" else "isotropic"
    if scheme != "explicit" and coupling != "uncoupled":
        raise StabilityError(f"scheme {scheme!r} runs the per-axis (uncoupled) flux on 1D and 2D "
                             "grids; use scheme='explicit' for the isotropic flux, or "
                             "coupling='uncoupled'")
    return coupling


def _grid_run(u: torch.Tensor, a: np.ndarray, nonlinearity: Any, kind: str | None,
              params: Mapping[str, object] | None, convention: str | None, table_tau: object,
              table_alpha: object, *, time: float, tau: float | None, stability: str,
              coupling: str, boundary: str, spacing: tuple[float, ...], unsafe: bool,
              progress: bool | None, compiled: bool, precision: str,
              sigma: float | None = None) -> DenoiseRun:
    """Explicit steps on a grid (fluxact.grid.GridDiffusion), in ``precision``."""
    u = _in_precision(u, a, precision)
    role = "activation" if coupling == "uncoupled" else "diffusivity"
    act = _activation(nonlinearity, kind, params, convention, table_tau, table_alpha, role
                      ).clone().to(u.device, torch.float64)
    options = {"coupling": coupling, "spacing": spacing, "boundary": boundary,
               "stability": stability, "unsafe": unsafe, "sigma": sigma}
    with torch.no_grad():
        block, n, inner, bound = _plan(lambda t: GridDiffusion(act, tau=t, **options), tau,
                                       time, min(spacing), bound=not unsafe)
        u = _evolve(block, u, n, explicit=True, per_call=1, progress=progress,
                    compiled=compiled)
    _check_finite(u, a)
    return DenoiseRun(output=u.reshape(a.shape).to(torch.float64).cpu().numpy(),
                      scheme="explicit", steps=n, tau=inner, bound=bound, cycle=None,
                      stability=stability, coupling=coupling, spacing=spacing,
                      channels=u.shape[1], precision=precision,
                      model="pm" if sigma is None else "catte", sigma=sigma)


def _in_precision(u: torch.Tensor, a: np.ndarray, precision: str) -> torch.Tensor:
    if precision == "float32":
        u = u.to(torch.float32)
        if not bool(torch.isfinite(u).all()):
            raise SignalError(f"the signal has values beyond float32's range (max |f| = "
                              f"{float(np.abs(a).max()):.3g}); use precision='float64'")
    return u


def _tensor_run(a: np.ndarray, grid: tuple[int, ...], spacing: tuple[float, ...],
                nonlinearity: Any, kind: str | None, params: Mapping[str, object] | None,
                convention: str | None, table_tau: object, table_alpha: object, *,
                model: str, time: float, tau: float | None, stability: str,
                coupling: str | None, boundary: str, sigma: float, rho: float | None,
                unsafe: bool, progress: bool | None, compiled: bool, precision: str,
                device: str | torch.device) -> DenoiseRun:
    """EED or CED (fluxact.tensor.TensorDiffusion) on a 2D image with channels."""
    from .tensor import TensorDiffusion

    name = model.upper()
    if len(grid) != 2:
        raise StabilityError(f"{name} runs on 2D images (with a channel axis for colour); for "
                             f"{len(grid)}D data use model='catte' or 'pm'")
    if len(set(spacing)) > 1:
        raise StabilityError(f"{name}'s stencil takes one grid spacing for both axes, got "
                             f"{spacing}; resample the image, or use model='catte'")
    if boundary != "reflect":
        raise StabilityError(f"{name} runs with the reflecting boundary; drop "
                             f"boundary={boundary!r}")
    if coupling is not None:
        raise StabilityError(f"{name} diffuses with a tensor, not a flux coupling; drop "
                             f"coupling={coupling!r}")
    if compiled:
        raise StabilityError(f"compile=True fuses the grid steps of models 'pm' and 'catte'; "
                             f"{name} runs without it")
    u = _in_precision(torch.from_numpy(a).reshape(1, -1, *grid).to(device), a, precision)
    g = _activation(nonlinearity, kind, params, convention, table_tau, table_alpha,
                    "diffusivity").clone().to(u.device, torch.float64)
    with torch.no_grad():
        block, n, inner, bound = _plan(
            lambda t: TensorDiffusion(g, model, sigma=sigma, rho=rho, h=spacing[0], tau=t,
                                      unsafe=unsafe, stability=stability),
            tau, time, spacing[0], bound=not unsafe)
        u = _evolve(block, u, n, explicit=True, per_call=1, progress=progress)
    _check_finite(u, a)
    return DenoiseRun(output=u.reshape(a.shape).to(torch.float64).cpu().numpy(),
                      scheme="explicit", steps=n, tau=inner, bound=bound, cycle=None,
                      stability=stability, coupling="tensor", spacing=spacing,
                      channels=u.shape[1], precision=precision, model=model, sigma=sigma)


def _plan(make: Callable[[float | None], Any], tau: float | None, time: float, h: float, *,
          bound: bool) -> tuple[Any, int, float, float | None]:
    """(block, n, tau', its bound or None): ``make(tau)`` gives the block of a step of the
    automatic or the given tau; n = ceil(time / step) steps of tau' = time / n, never an ulp
    above that step."""
    probe = make(tau)
    step_max = _step(probe, h)
    limit = float(probe.tau_max()) if bound else None
    n = _count(time, step_max)
    inner = min(time / n, step_max)
    return make(inner), n, inner, limit


def _evolve(block: Any, u: torch.Tensor, n: int, *, explicit: bool, per_call: int,
            progress: bool | None, compiled: bool = False) -> torch.Tensor:
    """n calls of ``block`` (each ``per_call`` flux evaluations) with the progress bar; explicit
    steps in chunks of CHUNK (one launch each with the fused kernels; with ``compiled``, one
    check of the result each, GridDiffusion.run)."""
    bar = progress_bar(progress, n * per_call)
    done = 0
    while done < n:
        chunk = min(n - done, CHUNK) if explicit else 1
        if not explicit:
            u = block(u)
        else:
            u = block.run(u, chunk, compiled=True) if compiled else block.run(u, chunk)
        done += chunk
        if bar is not None:
            bar.update(chunk * per_call)
    if bar is not None:
        bar.close()
    return u


def _check_finite(u: torch.Tensor, a: np.ndarray) -> None:
    if not bool(torch.isfinite(u).all()):
        raise StabilityError(
            f"the result is not finite: differences of a signal with max |f| = "
            f"{float(np.abs(a).max()):.3g} overflow float64; rescale the signal")


def denoise(signal: Any, nonlinearity: Any, kind: str | None = None, *, time: float,
            **options: Any) -> np.ndarray:
    """Nonlinear diffusion of ``signal`` (1D, 2D or 3D array) up to time ``time``.

    ``nonlinearity``: a catalogue name, a formula with ``kind`` (diffusivity, regulariser,
    shrinkage, activation), a Translation or an Activation (Phi; for the isotropic flux a
    diffusivity module, fluxact.activation.diffusivity_to_torch); ``params`` gives parameter
    values. Options: ``tau`` (default: the stability bound), ``stability`` (linf, sign,
    euclidean; default linf, euclidean for FSI), ``coupling`` ("isotropic", the default for
    explicit runs on images and volumes, or "uncoupled": the per-axis flux),
    ``channel_axis`` (the axis of colour or other channels, e.g. -1 for (H, W, 3) images: the
    isotropic flux takes one diffusivity from the gradients of all channels, P3 29),
    ``scheme`` (explicit, fsi, implicit), ``boundary`` (reflect, periodic), ``h`` (the grid
    spacing of every axis) or ``spacing`` (one number per axis, first axis first, as ITK's
    and medpy's voxel spacing),
    ``unsafe`` (use a tau above the bound), ``progress`` (None: a bar on a terminal for long
    runs), ``max_cycle`` (longest FSI cycle), ``compile`` (explicit steps on images and
    volumes fused by torch.compile: GridDiffusion.run(compiled=True); the first run of a
    formula and shape compiles), ``precision`` ("float64", or "float32" for explicit steps
    on images and volumes: faster, rounding to float32, the output still float64),
    ``device`` ("cpu", or "cuda" for the fused
    Triton kernels), ``model`` ("pm", the default; "catte", "eed", "ced": the module
    docstring) with ``sigma`` (their pre-smoothing scale, default 1) and ``rho`` (CED's
    integration scale, default 4). Returns a float64 array of the signal's shape.
    """
    return denoise_run(signal, nonlinearity, kind, time=time, **options).output


def _step(block: torch.nn.Module, h: float) -> float:
    """The block's time step, refused unless a positive finite float64 (g ||K||^2 can overflow
    or underflow at an extreme h even within GRID_RANGE)."""
    step = float(block.time_step())
    if not 0 < step < math.inf:
        raise StabilityError(
            f"the time step at grid size h = {h:g} is {step:g}, not a positive finite float64 "
            f"(g_max ||K||^2 with ||K||^2 ~ 1/h^2 is out of range); choose h nearer 1 within "
            f"{GRID_RANGE[0]:g} to {GRID_RANGE[1]:g}, or rescale the grid")
    return step


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


def progress_bar(progress: bool | None, total: int | None = None, *, unit: str = "step",
                 desc: str = "fluxact denoise") -> Any:
    """A tqdm bar, or None: ``progress`` True or False, or None for a bar on a terminal for
    runs of PROGRESS_FROM steps or more (of any length when ``total`` is unknown)."""
    if progress is None:
        progress = (total is None or total >= PROGRESS_FROM) and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, leave=False)
