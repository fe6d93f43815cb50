"""Result types, as in rate-sync 0.4.2."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ratesync import _native


def _unix_time(reset_time: float | None, reset_in: float) -> int:
    """The Unix timestamp (whole seconds, as rate-sync) of a reset: the one fixed
    when the decision was made, else ``reset_in`` from now (a result built by hand)."""
    if reset_time is not None:
        return int(reset_time)
    return int(time.time() + reset_in)


@dataclass(frozen=True)
class RateLimitResult:
    """Outcome of ``check_limiter``: numbers for ``RateLimit`` headers.

    ``reset_time``: the Unix time (seconds, a float) of ``reset_in``, fixed when the
    decision was made: ``reset_at`` does not move as the result ages, and for a
    fixed window it is the end of the window (a daily quota resets at midnight
    exactly). ``None`` for a result built by hand: ``reset_at`` then counts
    ``reset_in`` from now, as rate-sync did. Not compared: two results of the same
    numbers are equal.

    ``limit`` is the quota users configured: a window's ``limit``, a token bucket's
    rate as ``limit`` units per ``window`` seconds (10/s: 10 per 1 s, not its burst;
    the core's ``RateQuota``). ``window``: those seconds, for the ``RateLimit-Policy``
    header (``None`` when not known). Not compared either."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds
    limiter_id: str | None = None
    reset_time: float | None = field(default=None, compare=False)
    window: float | None = field(default=None, compare=False)

    @property
    def reset_at(self) -> int:
        """Unix timestamp when the limit resets."""
        return _unix_time(self.reset_time, self.reset_in)

    @property
    def retry_after(self) -> int:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return max(1, int(self.reset_in))


@dataclass(frozen=True)
class LimiterState:
    """Current state of a limiter (a peek: nothing consumed)."""

    allowed: bool
    remaining: int
    reset_at: int  # Unix timestamp (seconds)
    current_usage: int


@dataclass(frozen=True)
class LimiterReadOnlyConfig:
    id: str
    algorithm: str
    store_id: str
    rate_per_second: float | None = None
    max_concurrent: int | None = None
    timeout: float | None = None
    limit: int | None = None
    window_seconds: float | None = None
    fail_closed: bool = False
    burst: int | None = None
    # ratesync's own: a sliding window's runs per key; a fixed window's calendar
    # period ("day", "week", "month") and UTC offset ("+05:30"); shadow mode.
    precision: int | None = None
    period: str | None = None
    utc_offset: str | None = None
    shadow: bool = False


@dataclass(frozen=True)
class MultiLimiterResult:
    """Outcome of ``check_multi_limiters``: the most restrictive of its limiters."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds (longest of all limiters)
    blocking_limiter_id: str | None = None
    results: list[RateLimitResult] = field(default_factory=list)
    reset_time: float | None = field(default=None, compare=False)  # as RateLimitResult's

    @property
    def reset_at(self) -> int:
        return _unix_time(self.reset_time, self.reset_in)

    @property
    def retry_after(self) -> int:
        return max(1, int(self.reset_in))

    @classmethod
    def from_results(cls, results: list[RateLimitResult]) -> MultiLimiterResult:
        """Combines results as rate-sync does: allowed only if all are; the lowest
        remaining (and its limit), the longest reset, the first that blocked."""
        if not results:
            return cls(allowed=True, limit=1000, remaining=999, reset_in=60.0, results=[])
        blocking = next((r.limiter_id for r in results if not r.allowed), None)
        most_restrictive = min(results, key=lambda r: r.remaining)
        longest = max(results, key=lambda r: r.reset_in)
        return cls(
            allowed=all(r.allowed for r in results),
            limit=most_restrictive.limit,
            remaining=most_restrictive.remaining,
            reset_in=longest.reset_in,
            blocking_limiter_id=blocking,
            results=list(results),
            reset_time=longest.reset_time,
        )


@dataclass
class RateLimiterMetrics:
    """Counters of one limiter, as rate-sync's: the same fields, methods and
    arithmetic (``record_acquisition`` sets the average, the maximum and the time of
    the last acquisition). ``get_limiter(id).get_metrics()`` counts every call on the
    limiter; an engine class counts its own calls.

    The numbers live in a native ``_native.Counters``, so that a call through the
    extension is counted where its answer is made, without Python code per call
    (``docs/design.md#python``); each field reads and writes them. A copy (``copy``,
    ``pickle``, ``dataclasses.replace``) is a snapshot with counters of its own."""

    total_acquisitions: int = 0
    total_wait_time_ms: float = 0.0
    avg_wait_time_ms: float = 0.0
    max_wait_time_ms: float = 0.0
    cas_failures: int = 0
    timeouts: int = 0
    last_acquisition_at: float | None = None
    current_concurrent: int = 0
    max_concurrent_reached: int = 0
    total_releases: int = 0
    # ratesync's own: calls a limiter in shadow mode admitted although its limit
    # would refuse them (also counted in total_acquisitions).
    shadow_denied: int = 0

    _counters: ClassVar[_native.Counters]  # each object's own, set by `__new__`

    def __new__(cls, *args: Any, **kwargs: Any) -> RateLimiterMetrics:
        # Before `__init__`, which sets each field through the counters.
        metrics = super().__new__(cls)
        object.__setattr__(metrics, "_counters", _native.Counters())
        return metrics

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, name) for name in _METRICS_FIELDS)

    def record_acquisition(self, wait_time_ms: float) -> None:
        self._counters.record_acquisition(wait_time_ms)

    def record_cas_failure(self) -> None:
        self._counters.record_cas_failure()

    def record_timeout(self) -> None:
        self._counters.record_timeout()

    def record_concurrent_acquire(self) -> None:
        self._counters.record_concurrent_acquire()

    def record_concurrent_release(self) -> None:
        self._counters.record_concurrent_release()

    def record_max_concurrent_reached(self) -> None:
        self._counters.record_max_concurrent_reached()


def _counter_field(name: str) -> property:
    def read(self: RateLimiterMetrics) -> Any:
        return getattr(self._counters, name)

    def write(self: RateLimiterMetrics, value: Any) -> None:
        setattr(self._counters, name, value)

    return property(read, write, doc=f"rate-sync's ``{name}``")


# Every field reads and writes the native counters (the dataclass machinery, its
# `__init__`, `__repr__`, `__eq__`, `fields()` and `asdict()`, goes through them).
_METRICS_FIELDS = tuple(f.name for f in fields(RateLimiterMetrics) if f.init)
for _name in _METRICS_FIELDS:
    setattr(RateLimiterMetrics, _name, _counter_field(_name))
del _name
