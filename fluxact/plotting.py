"""Plots of a nonlinearity's four forms, as in P1 Table 2: the diffusivity g, the regulariser
Psi, the shrinkage function S and the activation Phi side by side (Table 1 with tau = alpha
= 1/4, h = 1 by default), each panel annotated with the verifier's facts: g_max, convex or
not, the shrinkage conditions, monotone or not and the Lipschitz constant L.

matplotlib is imported only here, and only when a plot is drawn (``pip install matplotlib``);
figures are drawn without pyplot's global state.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import open_atomic
from .translator import FluxactError, Translation, translate
from .translator.verify import StabilityReport, verify_translation

#: (kind, axis label) per column, in the order of P1 Table 2
COLUMNS = (("diffusivity", "g(r)"), ("regulariser", "Psi(r)"), ("shrinkage", "S(r)"),
           ("activation", "Phi(r)"))


class PlotError(FluxactError):
    """A plot that cannot be drawn: matplotlib missing, parameters without values."""


def _matplotlib() -> Any:
    """The matplotlib package, or one line saying how to get it (it is optional: the plot
    extra)."""
    try:
        import matplotlib.backend_bases
        import matplotlib.figure
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install matplotlib") from None
    return matplotlib


def _figure(rows: int) -> Any:
    fig = _matplotlib().figure.Figure(figsize=(13, 2.6 * rows + 0.6), layout="constrained")
    return fig, fig.subplots(rows, 4, squeeze=False)


def default_range(t: Translation) -> float:
    """Half-width of the plotted interval: 4 times the largest parameter value (the contrast
    lam or threshold th sets the scale of every catalogue entry), at least 4."""
    values = []
    for _, v in t.input.values:
        try:
            values.append(abs(float(v)))
        except (TypeError, ValueError):
            continue
    return 4 * max([1.0, *values])


def _fmt(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def annotations(report: StabilityReport) -> dict[str, str]:
    """The facts written on each panel, by kind."""
    def yes(flag: object, true: str, false: str) -> str:
        return true if flag is True else false if flag is False else f"{true}: not proven"

    return {
        "diffusivity": f"g_max = {_fmt(report.g_max)}"
                       + {True: "", False: ", g < 0 somewhere",
                          None: ", g >= 0 not proven"}[report.nonnegative_diffusivity],
        "regulariser": yes(report.regulariser_convex, "convex", "nonconvex"),
        "shrinkage": yes(report.shrinkage_sign, "0 <= S(r) <= r for r > 0",
                         "S(r) leaves [0, r] for some r > 0"),
        "activation": yes(report.monotone, "monotone", "nonmonotone")
                      + f", L = {_fmt(report.lipschitz)}",
    }


def draw_row(axes: Sequence[Any], t: Translation, *, label: str = "", r_max: float | None = None,
             points: int = 400) -> StabilityReport:
    """Draw the four forms of ``t`` into four matplotlib axes; returns the verifier's report.
    Every parameter needs a value."""
    if t.free_parameters:
        name = t.free_parameters[0]
        raise PlotError(f"parameter {name!r} needs a value to be plotted; pass {name}=... "
                        f"(--param {name}=1 on the command line)")
    report = verify_translation(t)
    notes = annotations(report)
    half = default_range(t) if r_max is None else float(r_max)
    if not (math.isfinite(half) and half > 0):
        raise PlotError(f"the plotted range must be a positive number, got {r_max!r}")
    # an even number of points: r = 0, where some diffusivities are undefined, is not sampled
    rs = [-half + 2 * half * (k + 0.5) / points for k in range(points)]
    for ax, (kind, ylabel) in zip(axes, COLUMNS):
        f = t.numeric(kind)
        ax.plot(rs, [f(r) for r in rs], linewidth=1.6)
        ax.axhline(0, color="0.7", linewidth=0.6)
        ax.axvline(0, color="0.7", linewidth=0.6)
        ax.set_xlabel("r")
        ax.set_ylabel(ylabel)
        ax.set_title(notes[kind], fontsize=9)
    if label:  # once per row, wrapped: a long formula would run over the next panels
        axes[0].set_title("\n".join(textwrap.wrap(label, 48)) + "\n" + notes[COLUMNS[0][0]],
                          fontsize=9, loc="left")
    return report


def _label(t: Translation) -> str:
    """The formula and its parameter values."""
    values = ", ".join(f"{k} = {v}" for k, v in t.input.values)
    head = t.input.name or t.input.text
    return f"{head} ({values})" if values else head


def plot(expr: object, kind: str | None = None, *, params: Mapping[str, object] | None = None,
         convention: str | None = None, out: str | Path | None = None,
         r_max: float | None = None, title: str | None = None) -> Any:
    """The four forms of one nonlinearity in one row (a matplotlib Figure, saved to ``out``
    when given: a file name, in the format its suffix names (.png, .pdf, .svg, or any other
    matplotlib writes), or an open binary stream). ``expr``: a Translation, formula text (with
    ``kind``) or catalogue entry; every parameter needs a value."""
    if isinstance(out, str | os.PathLike):
        plot_format(out, _matplotlib_formats())  # before the translation: fails at once
    t = expr if isinstance(expr, Translation) else translate(expr, kind, params=params,
                                                             convention=convention)
    fig, axes = _figure(1)
    draw_row(axes[0], t, r_max=r_max)
    fig.suptitle("\n".join(textwrap.wrap(title or _label(t), 150)), fontsize=10)
    if out is not None:
        save(fig, out, dpi=120)
    return fig


def dictionary_figure(rows: Sequence[tuple[str, Translation]], out: str | Path | None = None
                      ) -> tuple[Any, list[StabilityReport]]:
    """The analogue of P1 Table 2: one row per (label, translation), columns g, Psi, S, Phi,
    each row on its own scale. Returns the figure and the reports."""
    fig, axes = _figure(len(rows))
    reports = [draw_row(axes[k], t, label=label) for k, (label, t) in enumerate(rows)]
    if out is not None:
        save(fig, out, dpi=100)
    return fig, reports


#: the formats `fluxact plot -o` writes, by the file name's suffix
FORMATS = ("png", "pdf", "svg")


def save(fig: Any, out: Any, *, dpi: int) -> None:
    """Save ``fig`` to ``out``. A file name is written atomically (fluxact/files.py: whole,
    beside it, renamed over it; a failure or a kill mid-write never leaves half a file or
    follows a link planted at a temporary name), in the format its suffix names; an open
    binary stream is the caller's and is written as matplotlib writes it."""
    if not isinstance(out, str | os.PathLike):
        fig.savefig(out, dpi=dpi)
        return
    suffix = plot_format(out, _matplotlib_formats())
    with open_atomic(out) as stream:
        fig.savefig(stream, format=suffix, dpi=dpi)


def plot_format(out: str | os.PathLike[str], formats: Sequence[str] = FORMATS,
                where: str = "") -> str:
    """The format of the figure file ``out``, from its suffix, which must be one of
    ``formats``; ``where``: how the caller names it in a message (the CLI says -o)."""
    suffix = Path(out).suffix.lstrip(".").lower()
    if suffix not in formats:
        named = [f".{f}" for f in formats[:3]]
        shown = (f"{', '.join(named[:-1])} or {named[-1]}" if len(formats) <= 3 else
                 f"{', '.join(named)} or another suffix matplotlib writes")
        raise PlotError(f"{where}{out}: the file name must end in {shown}")
    return suffix


def _matplotlib_formats() -> tuple[str, ...]:
    """The suffixes matplotlib can write (png, pdf, svg, eps, jpg, ...), PNG, PDF and SVG
    first."""
    supported = _matplotlib().backend_bases.FigureCanvasBase.get_supported_filetypes()
    return (*FORMATS, *sorted(set(supported) - set(FORMATS)))
