"""Block tests: activations are generated once per formula and parameter set."""

from __future__ import annotations

from functools import cache

import pytest

torch = pytest.importorskip("torch")


@cache
def catalogue_activation(name: str, value: float = 1.0, trainable: tuple[str, ...] = ()):
    """The catalogue entry's activation with every parameter set to ``value`` (torch path)."""
    import fluxact

    entry = fluxact.lookup(name)
    t = fluxact.translate(entry)
    params = {p: value for p in t.free_parameters}
    return fluxact.to_torch(entry, params=params, trainable=trainable, backend="torch")


def activation(name: str, value: float = 1.0, trainable: tuple[str, ...] = ()):
    """A fresh module (its own parameters) sharing the generated code."""
    return catalogue_activation(name, value, trainable).clone()
