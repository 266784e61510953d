"""Budgets count CPU time: waiting (another job on the core) does not use one up, computing
does."""

from __future__ import annotations

import time

from fluxact.translator.budget import attempt, within_budget


def test_waiting_does_not_use_the_budget() -> None:
    def wait() -> str:
        time.sleep(0.3)  # no CPU time, as when other processes hold the cores
        return "done"

    assert within_budget(wait, 0.05, lambda: "expired") == "done"


def test_computing_runs_out() -> None:
    def spin() -> str:
        end = time.process_time() + 5.0
        while time.process_time() < end:
            pass
        return "finished"

    start = time.process_time()
    assert within_budget(spin, 0.2, lambda: "expired") == "expired"
    assert time.process_time() - start < 2.0
    assert attempt(spin, 0.2) is None
