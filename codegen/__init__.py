"""fluxact.codegen: SymPy -> Triton / torch code generation.

Stages: ``prepare`` (Translation -> ActivationSpec: Phi, Phi', dPhi/dp with symbolic
parameters, NaN repairs), ``lower`` (printers: SymPy -> target text, after sympy.cse) and
``render`` (Jinja2 templates -> one generated Python module, checked with ast.parse).
"""

from .errors import CodegenError as CodegenError
from .prepare import ActivationSpec as ActivationSpec
from .prepare import prepare as prepare
from .printers import Lowered as Lowered
from .printers import TorchPrinter as TorchPrinter
from .printers import TritonPrinter as TritonPrinter
from .printers import lower as lower
from .render import render as render
