"""fluxact: a compiler for nonlinearities.

Translate a diffusivity g, regulariser Psi, wavelet shrinkage function S or activation Phi
into the other three (P1 Table 1), from Python or the command line (`fluxact --help`).
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path as _Path

# Run from a source checkout (PYTHONPATH=<repo>, as on the GPU machines): the top-level folders
# translator/, codegen/ and templates/ are the subpackages fluxact.translator, fluxact.codegen
# and fluxact.templates, which an install maps through pyproject's package-dir.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "translator" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 (the package's own __path__)

from .translator import KINDS as KINDS
from .translator import CatalogueEntry as CatalogueEntry
from .translator import FluxactError as FluxactError
from .translator import FormulaError as FormulaError
from .translator import Nonlinearity as Nonlinearity
from .translator import ParameterError as ParameterError
from .translator import StabilityReport as StabilityReport
from .translator import Translation as Translation
from .translator import TranslationError as TranslationError
from .translator import UnstableError as UnstableError
from .translator import catalogue as catalogue
from .translator import lookup as lookup
from .translator import parse_formula as parse_formula
from .translator import translate as translate
from .translator import verify as verify

try:
    __version__ = version("fluxact")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
