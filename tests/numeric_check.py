"""Numeric comparison of functions with a readable explanation of any mismatch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

Fn = Callable[[float], float]


def mismatches(f: Fn, g: Fn, points: Iterable[float], rtol: float = 1e-9,
               atol: float = 1e-9) -> list[str]:
    """Where f and g differ beyond atol + rtol*|g|, as lines 'r = ..: got .., want ..'."""
    bad = []
    for x in points:
        a, b = f(x), g(x)
        if math.isnan(a) or math.isnan(b):
            if not (math.isnan(a) and math.isnan(b)):
                bad.append(f"r = {x!r}: got {a!r}, want {b!r} (NaN disagreement)")
            continue
        if math.isinf(a) or math.isinf(b):
            if a != b:
                bad.append(f"r = {x!r}: got {a!r}, want {b!r} (inf disagreement)")
            continue
        if abs(a - b) > atol + rtol * abs(b):
            bad.append(f"r = {x!r}: got {a!r}, want {b!r} (diff {a - b:.3g})")
    return bad


def assert_same_function(f: Fn, g: Fn, points: Iterable[float], what: str = "function",
                         rtol: float = 1e-9, atol: float = 1e-9) -> None:
    points = list(points)
    bad = mismatches(f, g, points, rtol, atol)
    if bad:
        shown = "\n  ".join(bad[:5])
        raise AssertionError(
            f"{what}: {len(bad)} of {len(points)} points differ, first:\n  {shown}"
        )


def away_from(points: Iterable[float], boundaries: Iterable[float],
              gap: float = 1e-6) -> list[float]:
    """Drop points within `gap` (relative) of a boundary |r| = b, where forms may jump."""
    bs = [abs(b) for b in boundaries]
    return [x for x in points if all(abs(abs(x) - b) > gap * (1 + b) for b in bs)]
