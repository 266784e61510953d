"""fluxact.translator: formula parsing, the Nonlinearity record, the dictionary between
diffusivity, regulariser, shrinkage and activation, and the catalogue. Knows SymPy, not torch."""

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
from .verify import StabilityReport as StabilityReport
from .verify import UnstableError as UnstableError
from .verify import verify as verify
from .verify import verify_translation as verify_translation
