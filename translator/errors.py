"""The project's errors: each message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class FluxactError(ValueError):
    """Base class of every error fluxact raises on bad input (the CLI prints it on one line)."""


class FormulaError(FluxactError):
    """The formula text (or expression) is not one fluxact accepts."""


class ParameterError(FluxactError):
    """A parameter value is missing, unknown or out of range."""


class TranslationError(FluxactError):
    """A form cannot be computed (e.g. the s2 convention for a non-even diffusivity)."""
