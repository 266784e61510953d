"""The project's errors: each message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class FluxactError(ValueError):
    """Base class of every error fluxact raises on bad input (the CLI prints it on one line)."""


class FluxactWarning(UserWarning):
    """Input fluxact accepts but that is probably not what was meant (the CLI prints it on
    one line)."""


class FormulaError(FluxactError):
    """The formula text (or expression) is not one fluxact accepts."""


class ParameterError(FluxactError):
    """A parameter value is missing, unknown or out of range."""


def missing_value(name: str, what: str = "") -> ParameterError:
    """The one message for a parameter that needs a number and has none."""
    where = f" of {what}" if what else ""
    return ParameterError(
        f"parameter {name!r}{where} has no value; pass params={{{name!r}: ...}} "
        f"or --param {name}=..."
    )


class TranslationError(FluxactError):
    """A form cannot be computed (e.g. the s2 convention for a non-even diffusivity)."""
