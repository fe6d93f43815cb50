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

import time

from ratesync import _api, _native
from ratesync._native import Decision, Permit
from ratesync.exceptions import RateLimiterAcquisitionError, StoreUnavailableError


def acquire(
    limiter_id: str, timeout: float | None = None, *, key: str | None = None, cost: int = 1
) -> Permit:
    """Blocks until admitted (``timeout`` seconds; ``None`` = the limiter's own; a
    wait that cannot succeed in time is waited out, as the coroutines do). The
    permit is a context manager that releases its concurrency slot. Counted in the
    limiter's ``get_metrics()`` (acquisitions, waits, timeouts)."""
    start = time.perf_counter()
    try:
        permit = _native.acquire(None, limiter_id, key or "", cost, timeout)
    except StoreUnavailableError:
        raise
    except RateLimiterAcquisitionError as error:
        _api._count_refusal(_api._metrics_of(limiter_id), error.denied_by)
        raise
    waited_ms = (time.perf_counter() - start) * 1000.0
    _api._count_admission(_api._metrics_of(limiter_id), permit, waited_ms, slot=False)
    return permit


def try_acquire(limiter_id: str, *, key: str | None = None, cost: int = 1) -> Permit | None:
    """One attempt, never waits: a ``Permit``, or ``None`` when refused (counted in
    the limiter's ``get_metrics()``)."""
    answer = _native.attempt(None, limiter_id, key or "", cost, True)
    metrics = _api._metrics_of(limiter_id)
    if isinstance(answer, Permit):
        _api._count_admission(metrics, answer, slot=False)
        return answer
    _api._count_refusal(metrics, answer.denied_by)
    return None


def state(limiter_id: str, *, key: str | None = None, cost: int = 1) -> Decision:
    """The decision an attempt would get now, consuming nothing."""
    return _native.state(None, limiter_id, key or "", cost)


__all__ = ["acquire", "try_acquire", "state"]
