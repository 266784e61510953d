"""The catalogue of named nonlinearities that ships with fluxact.

Each entry is given in the form its own community writes it, with its source. The first six
are the rows of Table 3 of paper 001 (MATH.md 1), given there as diffusivities.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import FormulaError


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    title: str
    kind: str  # diffusivity | regulariser | shrinkage | activation
    formula: str
    source: str
    convention: str = "r"
    aliases: tuple[str, ...] = ()
    table3: bool = False  # a reference row of P1 Table 3


_ENTRIES: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        "linear", "constant diffusivity / Whittaker-Tikhonov / identity", "diffusivity", "1",
        "P1 Table 3; Whittaker 1923, Tikhonov 1963 (linear diffusion, quadratic regulariser)",
        aliases=("constant", "tikhonov", "whittaker-tikhonov", "identity"), table3=True,
    ),
    CatalogueEntry(
        "charbonnier", "Charbonnier", "diffusivity", "1/sqrt(1 + r**2/lam**2)",
        "P1 Table 3; Charbonnier, Blanc-Feraud, Aubert, Barlaud 1994",
        table3=True,
    ),
    CatalogueEntry(
        "huber", "truncated TV / Huber / soft shrinkage", "diffusivity",
        "Piecewise((1, Abs(r) <= sqrt(2)*th), (sqrt(2)*th/Abs(r), True))",
        "P1 Table 3; Huber 1973, Donoho 1995 (soft shrinkage)",
        aliases=("soft", "truncated-tv"), table3=True,
    ),
    CatalogueEntry(
        "perona-malik", "Perona-Malik (exponential)", "diffusivity", "exp(-r**2/(2*lam**2))",
        "P1 Table 3; Perona, Malik 1990",
        aliases=("pm", "perona-malik-exp"), table3=True,
    ),
    CatalogueEntry(
        "garrote", "truncated balanced forward-backward / garrote", "diffusivity",
        "Piecewise((1, Abs(r) <= sqrt(2)*th), (2*th**2/r**2, True))",
        "P1 Table 3; Keeling, Stollberger 2002 (BFB), Gao 1998 (garrote shrinkage)",
        aliases=("bfb", "truncated-bfb"), table3=True,
    ),
    CatalogueEntry(
        "hard", "truncated quadratic / hard shrinkage", "diffusivity",
        "Piecewise((1, Abs(r) <= sqrt(2)*th), (0, True))",
        "P1 Table 3; Geman, Geman 1984 (weak string), Mallat 1999 (hard shrinkage)",
        aliases=("truncated-quadratic",), table3=True,
    ),
    CatalogueEntry(
        "perona-malik-rational", "Perona-Malik (rational)", "diffusivity", "1/(1 + s2/lam**2)",
        "P2 (5) and section 7; Perona, Malik 1990",
        convention="s2", aliases=("pm-rational",),
    ),
    CatalogueEntry(
        "weickert", "Weickert (m = 4, C = 3.31488)", "diffusivity",
        "Piecewise((1, Eq(s2, 0)), (1 - exp(-3.31488/(s2/lam**2)**4), True))",
        "Weickert 1998, Anisotropic Diffusion in Image Processing, (1.15) with m = 4",
        convention="s2",
    ),
    CatalogueEntry(
        "tukey", "Tukey biweight", "activation",
        "Piecewise((r*(1 - r**2/lam**2)**2, Abs(r) <= lam), (0, True))",
        "Beaton, Tukey 1974; Black, Sapiro, Marimont, Heeger 1998 (robust anisotropic diffusion)",
        aliases=("biweight", "tukey-biweight"),
    ),
    CatalogueEntry(
        "geman-mcclure", "Geman-McClure", "regulariser", "r**2/(1 + r**2/lam**2)",
        "Geman, McClure 1987; Black, Rangarajan 1996",
    ),
    CatalogueEntry(
        "cauchy", "Cauchy / Lorentzian", "regulariser", "lam**2*log(1 + r**2/lam**2)",
        "Black, Anandan 1996; Black, Sapiro, Marimont, Heeger 1998",
        aliases=("lorentzian",),
    ),
    CatalogueEntry(
        "total-variation", "total variation", "diffusivity", "1/Abs(r)",
        "Rudin, Osher, Fatemi 1992; P1 section 2 (g = 1/|r|, Psi = 2|r|)",
        aliases=("tv",),
    ),
    CatalogueEntry(
        "tanh", "hyperbolic tangent", "activation", "tanh(r)",
        "LeCun, Bottou, Orr, Mueller 1998 (efficient backprop)",
    ),
    CatalogueEntry(
        "relu", "rectified linear unit", "activation", "Max(0, r)",
        "Nair, Hinton 2010; P2 3.2 (Euclidean stability of ReLU networks)",
    ),
)


class Catalogue(Mapping[str, CatalogueEntry]):
    """Read-only mapping name -> CatalogueEntry; aliases are accepted by ``lookup``."""

    def __init__(self, entries: tuple[CatalogueEntry, ...]) -> None:
        self._entries = MappingProxyType({e.name: e for e in entries})
        self._aliases = MappingProxyType({a: e.name for e in entries for a in e.aliases})

    def __getitem__(self, name: str) -> CatalogueEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Catalogue({', '.join(self._entries)})"

    def lookup(self, name: str) -> CatalogueEntry:
        """The entry with this name or alias (case and '_' vs '-' ignored)."""
        key = name.strip().lower().replace("_", "-").replace(" ", "-")
        key = self._aliases.get(key, key)
        if key in self._entries:
            return self._entries[key]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise FormulaError(
            f"no catalogue entry named {name!r}; {hint}see `fluxact catalogue` for the list"
        )


catalogue = Catalogue(_ENTRIES)
lookup = catalogue.lookup
