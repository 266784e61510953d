"""Kernel tests: generated Triton kernels run compiled on a GPU when there is one, otherwise
on the CPU under Triton's interpreter (TRITON_INTERPRET=1, set in tests/conftest.py before
triton is imported)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE
