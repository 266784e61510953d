"""Budgets count CPU time: waiting (another job on the core) does not use one up, computing
does."""

from __future__ import annotations

import time

import pytest
from fluxact.translator.budget import attempt, within_budget
from fluxact.translator.errors import FluxactError


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


def spin(seconds: float) -> str:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "finished"


def test_an_inner_budget_is_cut_to_the_outer_one() -> None:
    """The outer budget running out inside an inner step ends both: the outer fallback is
    taken, not the inner one (a whole verification answers "unknown" even while one of its
    SymPy steps runs)."""
    inner_fallbacks = []

    def outer() -> str:
        return within_budget(lambda: spin(5.0), 10.0, lambda: inner_fallbacks.append(1) or "inner")

    start = time.process_time()
    assert within_budget(outer, 0.2, lambda: "outer") == "outer"
    assert not inner_fallbacks and time.process_time() - start < 2.0


def test_an_inner_budget_that_runs_out_first_leaves_the_outer_running() -> None:
    def outer() -> tuple[str, str]:
        first = within_budget(lambda: spin(5.0), 0.1, lambda: "inner expired")
        return first, spin(0.05)

    assert within_budget(outer, 3.0, lambda: ("outer expired", "")) == ("inner expired",
                                                                        "finished")


def test_the_fallback_runs_to_its_end() -> None:
    """A fallback that computes for longer than the timer's retry interval (after a budget ends,
    its timer fires every 10 ms until it is disarmed) returns its value, at the outermost
    level and nested: the budget is gone before the fallback runs."""
    assert within_budget(lambda: spin(5.0), 0.1, lambda: spin(0.2)) == "finished"

    def outer() -> str:
        return within_budget(lambda: spin(5.0), 0.1, lambda: spin(0.2) + " inner")

    assert within_budget(outer, 3.0, lambda: "outer expired") == "finished inner"


def test_a_budget_never_ends_inside_a_finalizer(monkeypatch) -> None:
    """The timer can fire in code that a weakref.finalize callback runs (SymPy's caches do
    this): an exception raised there is swallowed ("unraisable"), so the budget waits for the
    next tick instead. Outside a finalizer it ends the step."""
    import gc
    import signal
    import sys
    import weakref

    import pytest
    from fluxact.translator import budget

    monkeypatch.setattr(signal, "setitimer", lambda *args: None)  # no real timer here
    monkeypatch.setattr(budget, "_deadlines", [0.0])  # a budget whose time is up
    raised = []

    def deep() -> None:  # a call inside the callback, as SymPy's assumptions code is
        try:
            budget._expire(signal.SIGPROF, sys._getframe())
        except budget.BudgetExceeded:
            raised.append(True)

    class Thing:
        pass

    thing = Thing()
    weakref.finalize(thing, deep)
    del thing
    gc.collect()
    assert raised == []
    with pytest.raises(budget.BudgetExceeded):
        budget._expire(signal.SIGPROF, sys._getframe())


def test_the_scale_multiplies_every_budget(monkeypatch) -> None:
    monkeypatch.setenv("FLUXACT_BUDGET_SCALE", "1")
    assert within_budget(lambda: spin(0.3), 0.1, lambda: "expired") == "expired"
    monkeypatch.setenv("FLUXACT_BUDGET_SCALE", "5")
    assert within_budget(lambda: spin(0.3), 0.1, lambda: "expired") == "finished"
    for bad in ("0.5", "nan", "inf", "two", "-3"):
        monkeypatch.setenv("FLUXACT_BUDGET_SCALE", bad)
        with pytest.raises(FluxactError, match="FLUXACT_BUDGET_SCALE"):
            within_budget(lambda: "ran", 1.0, lambda: "expired")


def test_the_timer_never_cuts_the_budgets_own_code() -> None:
    """A tick that lands in within_budget's own frame (its clean-up after the step) re-arms
    the timer instead of raising: raised there, it skipped the clean-up and left the deadline
    and the timer behind, and every later budget ended at once. In the step's frame it
    raises."""
    import signal
    import sys

    from fluxact.translator import budget

    seen = []

    def step() -> str:
        budget._deadlines[-1] = time.process_time() - 1.0  # as if its time were up
        own = sys._getframe(2)  # within_budget's frame (it calls the step through _call)
        assert own.f_code is within_budget.__code__
        budget._expire(signal.SIGPROF, own)  # no exception
        seen.append("kept")
        budget._expire(signal.SIGPROF, sys._getframe(0))  # the step's frame: raises
        seen.append("not cut")
        return "finished"

    assert within_budget(step, 5.0, lambda: "expired") == "expired"
    assert seen == ["kept"] and budget._deadlines == []
    assert within_budget(lambda: "ran", 1.0, lambda: "expired") == "ran"


def test_a_step_that_is_a_c_function_is_cut() -> None:
    """A C callable runs in no Python frame of its own: within_budget calls it through one,
    so the timer does not take it for within_budget's own code."""
    import functools

    start = time.process_time()
    assert within_budget(functools.partial(pow, 3, 3 * 10**6), 0.05, lambda: "expired") \
        == "expired"
    assert time.process_time() - start < 0.25
