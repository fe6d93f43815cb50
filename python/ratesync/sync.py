"""The blocking API, for threads and Celery workers: the same native calls as the
coroutines, without an event loop (a store that answers at once decides on the
calling thread; any other is waited for with the GIL released).

    >>> from ratesync import sync
    >>> with sync.acquire("api", key="user-42"):
    ...     ...
    >>> permit = sync.try_acquire("api")   # a Permit, or None when refused
    >>> permit = sync.acquire("llm", key="user-42", cost=4000)
    >>> permit.settle(used)                # gives back 4000 - used, done on return
"""

from __future__ import annotations

from ratesync import _api, _native
from ratesync._native import Decision, Permit


def acquire(
    limiter_id: str, timeout: float | None = None, *, key: str | None = None, cost: int = 1
) -> Permit:
    """Blocks until admitted (``timeout`` seconds; ``None`` = the limiter's own; a
    wait that cannot succeed in time is waited out, as the coroutines do). The
    permit is a context manager that releases its concurrency slot. Counted in the
    limiter's ``get_metrics()`` (acquisitions, waits, timeouts)."""
    metrics = _api._metrics_of(limiter_id)._counters
    return _native.acquire(False, limiter_id, key or "", cost, timeout, metrics, False)


def try_acquire(limiter_id: str, *, key: str | None = None, cost: int = 1) -> Permit | None:
    """One attempt, never waits: a ``Permit``, or ``None`` when refused (counted in
    the limiter's ``get_metrics()``)."""
    metrics = _api._metrics_of(limiter_id)._counters
    return _native.attempt(False, limiter_id, key or "", cost, metrics, False)


def state(limiter_id: str, *, key: str | None = None, cost: int = 1) -> Decision:
    """The decision an attempt would get now, consuming nothing."""
    return _native.state(False, limiter_id, key or "", cost)


__all__ = ["acquire", "try_acquire", "state"]
