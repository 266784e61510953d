"""The literature's nonlinearities (issue 13): every verdict right, not only safe. Truths are
derived by hand in literature.py."""

from __future__ import annotations

import math

import pytest

import fluxact

from .literature import CASES, Case


def close_above(value: float, truth: float) -> bool:
    """An upper bound within a relative 1e-6 of the truth (inf for inf)."""
    if math.isinf(truth):
        return math.isinf(value)
    return truth * (1 - 1e-7) <= value <= truth * (1 + 1e-6) + 1e-12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_literature_verdicts(case: Case) -> None:
    rep = fluxact.verify(case.formula, case.kind, params=case.params,
                         convention=case.convention)
    assert close_above(rep.lipschitz, case.L), rep.lipschitz
    assert close_above(rep.g_max, case.g_max), rep.g_max
    assert rep.nonnegative_diffusivity is case.nonnegative
    assert rep.monotone is case.monotone, dict(rep.reasons).get("monotone")
    assert rep.antisymmetric is case.antisymmetric, dict(rep.reasons).get("antisymmetric")
    if case.nonnegative and math.isfinite(case.g_max):
        assert rep.tau_linf == pytest.approx(0.5 / case.g_max, rel=1e-6)
