"""fluxact.translator: formula parsing, the Nonlinearity record, the dictionary between
diffusivity, regulariser, shrinkage and activation, and the catalogue. Knows SymPy, not torch.

The public names load on first use, so that ``fluxact.translator.errors`` (the root of every
fluxact error, which the torch runtime subclasses) imports no SymPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import keep_exports_bound, lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    **dict.fromkeys(("Catalogue", "CatalogueEntry", "catalogue", "lookup"), ".catalogue"),
    **dict.fromkeys(("FluxactError", "FluxactWarning", "FormulaError", "ParameterError",
                     "TranslationError"), ".errors"),
    **dict.fromkeys(("KINDS", "Nonlinearity", "make_nonlinearity"), ".nonlinearity"),
    "parse_formula": ".parse",
    **dict.fromkeys(("Translation", "translate", "translate_nonlinearity", "verify"),
                    ".translation"),
    **dict.fromkeys(("StabilityReport", "UnstableError", "verify_translation"), ".verify"),
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .catalogue import Catalogue as Catalogue
    from .catalogue import CatalogueEntry as CatalogueEntry
    from .catalogue import catalogue as catalogue
    from .catalogue import lookup as lookup
    from .errors import FluxactError as FluxactError
    from .errors import FluxactWarning as FluxactWarning
    from .errors import FormulaError as FormulaError
    from .errors import ParameterError as ParameterError
    from .errors import TranslationError as TranslationError
    from .nonlinearity import KINDS as KINDS
    from .nonlinearity import Nonlinearity as Nonlinearity
    from .nonlinearity import make_nonlinearity as make_nonlinearity
    from .parse import parse_formula as parse_formula
    from .translation import Translation as Translation
    from .translation import translate as translate
    from .translation import translate_nonlinearity as translate_nonlinearity
    from .translation import verify as verify
    from .verify import StabilityReport as StabilityReport
    from .verify import UnstableError as UnstableError
    from .verify import verify_translation as verify_translation


keep_exports_bound(__name__, _EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
