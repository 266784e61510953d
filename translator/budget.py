"""Time budgets for symbolic steps that may run for a long time (integrate, limit, simplify).

SymPy has no timeout of its own. On the main thread of a POSIX process a budget is enforced
with a profiling timer (ITIMER_PROF, SIGPROF): it counts the CPU time of this process, not
wall-clock time, so a busy machine (other jobs on the same cores) does not make a step run out
of time and a result does not depend on the load; the budget still stops a step that computes
for too long. The exception derives from BaseException so that SymPy's internal
``except Exception`` clauses cannot swallow it. Elsewhere (other threads, Windows) the step
runs unbudgeted. Budgets do not nest: an inner call under a running budget is governed by the
outer one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class BudgetExceeded(BaseException):
    """Raised inside a budgeted step when its time is up (never escapes ``within_budget``)."""


def attempt(step: Callable[[], T], seconds: float) -> T | None:
    """Run a symbolic step under a time budget; None when it fails (SymPy raises many kinds of
    errors on inputs it cannot handle) or runs out of time."""

    def guarded() -> T | None:
        try:
            return step()
        except Exception:  # noqa: BLE001 - any failure of a symbolic attempt means "no answer"
            return None

    return within_budget(guarded, seconds, lambda: None)


def _can_use_alarm() -> bool:
    return (hasattr(signal, "setitimer") and hasattr(signal, "SIGPROF")
            and threading.current_thread() is threading.main_thread())


def within_budget(step: Callable[[], T], seconds: float, fallback: Callable[[], T]) -> T:
    """Run ``step()``; if it uses more than ``seconds`` of CPU time, return ``fallback()``."""
    if not _can_use_alarm() or signal.getitimer(signal.ITIMER_PROF)[0] > 0:
        return step()

    def _expire(signum: int, frame: object) -> None:
        raise BudgetExceeded

    previous = signal.signal(signal.SIGPROF, _expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        return step()
    except BudgetExceeded:
        return fallback()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
