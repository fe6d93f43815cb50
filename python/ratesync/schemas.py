"""Result types, as in rate-sync 0.4.2."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimitResult:
    """Outcome of ``check_limiter``: numbers for ``RateLimit`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds
    limiter_id: str | None = None


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
