"""fluxact: a compiler for nonlinearities.

Translate a diffusivity g, regulariser Psi, wavelet shrinkage function S or activation Phi
into the other three (P1 Table 1), verify the stability of the activation, generate Triton
kernels and torch modules for it, and use it in diffusion blocks whose time step is computed
to keep any number of them stable, from Python or the command line (`fluxact --help`).

The public names load on first use: ``import fluxact.runtime`` (what generated code imports)
must not import SymPy.
"""

from __future__ import annotations

import sys as _sys
from importlib.abc import MetaPathFinder as _MetaPathFinder
from importlib.metadata import PackageNotFoundError, version
from importlib.util import spec_from_file_location as _spec_from_file_location
from pathlib import Path as _Path
from typing import TYPE_CHECKING


class _SourceCheckout(_MetaPathFinder):
    """Run from a source checkout that is not installed (PYTHONPATH=<repo>, as on the GPU
    machines): the top-level folders translator/, codegen/ and templates/ are the subpackages
    fluxact.translator, fluxact.codegen and fluxact.templates, as pyproject's package-dir maps
    them in an install. Exactly these three: nothing else of the checkout (tests/,
    benchmarks/) becomes part of fluxact. Consulted first, and only for the fluxact of this
    checkout (the parent's __path__): an editable install of another checkout in the same
    environment must not supply the subpackages of this one."""

    root = _Path(__file__).resolve().parent.parent
    folders = {"fluxact.translator": "translator", "fluxact.codegen": "codegen",
               "fluxact.templates": "templates"}

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        folder = self.folders.get(name)
        own = str(self.root / "fluxact")
        if folder is None or path is None or not any(
                str(_Path(p).resolve()) == own for p in path):
            return None
        init = self.root / folder / "__init__.py"
        if not init.is_file():
            return None
        return _spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])


if (_SourceCheckout.root / "pyproject.toml").is_file() and not any(
        getattr(f, "root", None) == _SourceCheckout.root for f in _sys.meta_path):
    _sys.meta_path.insert(0, _SourceCheckout())

from .translator.lazy import lazy_exports  # noqa: E402 (after the finder: a source checkout)

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(
        ("KINDS", "CatalogueEntry", "FluxactError", "FluxactWarning", "FormulaError",
         "Nonlinearity",
         "ParameterError", "StabilityReport", "Translation", "TranslationError",
         "UnstableError", "catalogue", "lookup", "parse_formula", "translate", "verify"),
        ".translator"),
    "CodegenError": ".codegen",
    "Activation": ".runtime",
    "ActivationError": ".runtime",
    "to_torch": ".activation",
    "emit": ".activation",
    **dict.fromkeys(
        ("DiffusionBlock", "DuFortFrankelBlock", "FSIBlock", "ImplicitBlock", "ResNetBlock",
         "SymmetricResNet"), ".blocks"),
    "Operator": ".operators",
    "StabilityError": ".runtime",
    "coupled": ".translator.coupled",
    "LearnedDiffusivity": ".learned",
    "CoupledDiffusionBlock2D": ".coupling",
    "MultiscaleDiffusionBlock2D": ".coupling",
    "CoupledReport": ".translator.coupled",
    "denoise": ".denoising",
    "inpaint": ".inpainting",
    "plot": ".plotting",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads them
    from .activation import emit as emit
    from .activation import to_torch as to_torch
    from .blocks import DiffusionBlock as DiffusionBlock
    from .blocks import DuFortFrankelBlock as DuFortFrankelBlock
    from .blocks import FSIBlock as FSIBlock
    from .blocks import ImplicitBlock as ImplicitBlock
    from .blocks import ResNetBlock as ResNetBlock
    from .blocks import SymmetricResNet as SymmetricResNet
    from .codegen import CodegenError as CodegenError
    from .coupling import CoupledDiffusionBlock2D as CoupledDiffusionBlock2D
    from .coupling import MultiscaleDiffusionBlock2D as MultiscaleDiffusionBlock2D
    from .denoising import denoise as denoise
    from .inpainting import inpaint as inpaint
    from .learned import LearnedDiffusivity as LearnedDiffusivity
    from .operators import Operator as Operator
    from .plotting import plot as plot
    from .runtime import Activation as Activation
    from .runtime import ActivationError as ActivationError
    from .runtime import StabilityError as StabilityError
    from .translator import KINDS as KINDS
    from .translator import CatalogueEntry as CatalogueEntry
    from .translator import FluxactError as FluxactError
    from .translator import FluxactWarning as FluxactWarning
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
    from .translator.coupled import CoupledReport as CoupledReport
    from .translator.coupled import coupled as coupled


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

try:
    __version__ = version("fluxact")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
