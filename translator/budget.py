"""Time budgets for steps that may run for a long time (integrate, limit, simplify, a whole
verification).

SymPy has no timeout of its own. On the main thread of a POSIX process a budget is enforced
with a profiling timer (ITIMER_PROF, SIGPROF): it counts the CPU time of this process, not
wall-clock time, so a process that waits for a core does not use its budget up; the budget
still stops a step that computes for too long. CPU time is not free of the load, though: a
process that shares its core's caches (and, in a virtual machine, its hyperthread sibling)
with another busy one computes slower per CPU second. Measured on a 2-core development
machine: a verification that needs 9 s alone needed more than 30 s beside a second busy test
process. The environment variable FLUXACT_BUDGET_SCALE (a number >= 1, default 1) multiplies
every budget for such machines; the test suite sets it under pytest-xdist. The exception
derives from BaseException so that SymPy's internal ``except Exception`` clauses cannot
swallow it.

Budgets nest: an inner budget is cut to what is left of the outer one, and when the outer one
runs out inside an inner step, the inner step gives up and the outer one takes its fallback
(a whole verification answers "unknown" even when one of its SymPy steps was running).
Elsewhere (other threads, Windows) a step runs unbudgeted.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import types
from collections.abc import Callable
from typing import TypeVar

from .errors import FluxactError

T = TypeVar("T")

#: the timer is re-armed with at least this much, so that it always fires
_MIN_ARM = 1e-4
SCALE_VARIABLE = "FLUXACT_BUDGET_SCALE"


def budget_scale() -> float:
    """The factor every budget is multiplied by: FLUXACT_BUDGET_SCALE, default 1. A value that
    is not a number >= 1 is refused (a smaller one would only make verdicts "unknown")."""
    text = os.environ.get(SCALE_VARIABLE, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (1.0 <= value < math.inf):
        raise FluxactError(f"{SCALE_VARIABLE}={text!r} is not a number >= 1; unset it or give "
                           "e.g. 2 to double every CPU-time budget")
    return value


class BudgetExceeded(BaseException):
    """Raised inside a budgeted step when its time is up (never escapes ``within_budget``).
    ``level`` is the depth of the budget that ran out (0 = outermost)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.level = level


# absolute CPU-time deadlines (time.process_time()) of the running budgets, outermost first;
# each is already cut to the ones outside it
_deadlines: list[float] = []


def attempt(step: Callable[[], T], seconds: float) -> T | None:
    """Run a symbolic step under a time budget; None when it fails (SymPy raises many kinds of
    errors on inputs it cannot handle, MemoryError and RecursionError included) or runs out
    of time."""

    def guarded() -> T | None:
        try:
            return step()
        except Exception:  # noqa: BLE001 - any failure of a symbolic attempt means "no answer"
            return None

    return within_budget(guarded, seconds, lambda: None)


def _can_use_alarm() -> bool:
    return (hasattr(signal, "setitimer") and hasattr(signal, "SIGPROF")
            and threading.current_thread() is threading.main_thread())


#: code running here, or called from here, swallows exceptions (Python reports them as
#: "unraisable"; weakref.finalize's __call__ too): a budget's exception raised there would be
#: lost, so it waits for the next tick
_SWALLOWING = ("__del__", "gc_callback", "_remove", "__exit__")
_RETRY = 0.01  # seconds of CPU time until the timer fires again


def _swallowed_in(frame: types.FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` would be swallowed: the frame, or one it was
    called from, is a finalizer, a weakref or gc callback or an __exit__ (the timer may fire
    anywhere inside one: in SymPy code a weakref.finalize callback runs, say)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name in _SWALLOWING or (code.co_name == "__call__"
                                           and code.co_filename.endswith("weakref.py")):
            return True
        frame = frame.f_back
    return False


def _expire(signum: int, frame: types.FrameType | None) -> None:
    if frame is not None and frame.f_code is _OWN_CODE:
        # within_budget's own setup and clean-up, not a step: never cut (a budget's exception
        # raised there would skip the clean-up and leave its deadline and timer behind)
        signal.setitimer(signal.ITIMER_PROF, _RETRY)
        return
    now = time.process_time()
    # the outermost budget whose deadline has passed: every budget inside it is cut to it
    for level, deadline in enumerate(_deadlines):
        if deadline <= now + 1e-3:
            # fire again soon in any case: should the exception be swallowed after all (a
            # weakref callback), the budget still ends
            signal.setitimer(signal.ITIMER_PROF, _RETRY)
            if _swallowed_in(frame):
                return
            raise BudgetExceeded(level)
    if _deadlines:  # fired a little early (timer granularity): wait for the innermost
        signal.setitimer(signal.ITIMER_PROF, max(_deadlines[-1] - now, _MIN_ARM))


def remaining() -> float:
    """CPU seconds left to the innermost running budget (inf when none runs)."""
    if not _deadlines:
        return math.inf
    return max(_deadlines[-1] - time.process_time(), 0.0)


def within_budget(step: Callable[[], T], seconds: float, fallback: Callable[[], T]) -> T:
    """Run ``step()``; if it uses more than ``seconds`` of CPU time, return ``fallback()``.
    Inside another budget, ``seconds`` is cut to what that one has left, and the outer budget
    running out ends this step too (the outer fallback is taken, not this one)."""
    if not _can_use_alarm():
        return step()
    seconds *= budget_scale()
    now = time.process_time()
    level = len(_deadlines)
    if level and _deadlines[-1] <= now:  # the enclosing budget is already used up
        raise BudgetExceeded(level - 1)
    deadline = min(now + seconds, _deadlines[-1]) if level else now + seconds
    if level == 0:
        previous = signal.signal(signal.SIGPROF, _expire)
    _deadlines.append(deadline)
    signal.setitimer(signal.ITIMER_PROF, max(deadline - now, _MIN_ARM))
    # the fallback runs only once this budget is gone: its timer fires again every _RETRY
    # seconds until then, and would otherwise stop the fallback too. The timer never cuts
    # this function's own code (_expire), so the clean-up always runs whole.
    try:
        return _call(step)
    except BudgetExceeded as exc:
        if exc.level < level:  # an enclosing budget ran out: it takes its own fallback
            raise
    finally:
        del _deadlines[level:]
        if level == 0:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
        else:  # the enclosing budget's timer again (at once if its time is up)
            signal.setitimer(signal.ITIMER_PROF,
                             max(_deadlines[-1] - time.process_time(), _MIN_ARM))
    return fallback()


def _call(step: Callable[[], T]) -> T:
    """step() in a frame of its own: a step that is a C function (functools.partial of one)
    runs in no Python frame, and the timer would find within_budget's, which it never cuts."""
    return step()


#: the code the timer never cuts (see _expire)
_OWN_CODE = within_budget.__code__
