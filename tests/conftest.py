"""Shared test setup: hypothesis profiles (dev, ci) and a seed fixture.

CI sets HYPOTHESIS_PROFILE=ci (fewer examples, same properties); the default is dev.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def seed() -> int:
    """A fixed seed for tests that draw their own random numbers."""
    random.seed(20261121)
    return 20261121


def _interpret_triton_without_gpu() -> None:
    """Generated Triton kernels run on the CPU under Triton's interpreter when there is no GPU;
    TRITON_INTERPRET must be set before triton is first imported."""
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")



_interpret_triton_without_gpu()


def _one_thread_per_worker() -> None:
    """Under pytest-xdist (`make test` runs one worker per core) each worker computes with one
    torch thread: two workers with two threads each on two cores would oversubscribe them, and
    torch's small tensor operations are many times slower then. The CPU-time budgets of the
    verifier are scaled for the same reason."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    os.environ["OMP_NUM_THREADS"] = "1"  # and for the child processes tests start
    # the verifier's budgets count CPU time, which runs up to 3.3 times slower beside a second
    # busy worker on a 2-core machine (9 s alone, past 30 s there; translator/budget.py)
    os.environ.setdefault("FLUXACT_BUDGET_SCALE", "3")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


_one_thread_per_worker()
