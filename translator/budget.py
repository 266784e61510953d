"""Time budgets for symbolic steps that may run for a long time (integrate, limit, simplify).

SymPy has no timeout of its own. On the main thread of a POSIX process a budget is enforced
with SIGALRM; the exception derives from BaseException so that SymPy's internal
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
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def within_budget(step: Callable[[], T], seconds: float, fallback: Callable[[], T]) -> T:
    """Run ``step()``; if it takes longer than ``seconds``, return ``fallback()`` instead."""
    if not _can_use_alarm() or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return step()

    def _expire(signum: int, frame: object) -> None:
        raise BudgetExceeded

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return step()
    except BudgetExceeded:
        return fallback()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
