"""Markers of the code generator's tests: where generated Triton code runs."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interpreter: runs generated Triton code on the CPU (TRITON_INTERPRET=1)"
    )
    config.addinivalue_line("markers", "gpu: runs compiled Triton code on a GPU")
    config.addinivalue_line(
        "markers", "compile: compiles generated Triton code for a GPU target (no GPU needed)"
    )
