"""One rate limit decision for the FastAPI integration, with its real numbers."""

from __future__ import annotations

from typing import Any

from ratesync import _api, _native
from ratesync._native import Decision, Permit
from ratesync.contrib.fastapi.headers import RateLimitResult
from ratesync.exceptions import RateLimiterAcquisitionError, StoreUnavailableError


# The length of a calendar period; a month counts as its longest, 31 days, as in the
# Rust layer's `Quota::of` (its real end is in the `t` of `RateLimit`).
_PERIOD_SECONDS = {"day": 86_400.0, "week": 7 * 86_400.0, "month": 31 * 86_400.0}


def policy_window(config: dict[str, Any], limit: int) -> float | None:
    """The IETF policy window: the limiter's window (a fixed window's period), or
    for a token bucket the time to refill it from empty (``limit / rate``); ``None``
    for concurrency only."""
    if config.get("window_seconds"):
        return float(config["window_seconds"])
    if config.get("period"):
        return _PERIOD_SECONDS[config["period"]]
    rate = config.get("rate_per_second")
    if rate:
        return limit / float(rate)
    return None


def to_result(
    decision: Decision, allowed: bool, policy: str, config: dict[str, Any]
) -> RateLimitResult:
    return RateLimitResult(
        allowed=allowed,
        limit=decision.limit,
        remaining=decision.remaining if allowed else 0,
        reset_in=decision.reset_after if allowed else max(decision.retry_after, 0.0),
        retry_after_seconds=None if allowed else max(decision.retry_after, 0.0),
        policy=policy,
        window=policy_window(config, decision.limit),
        quota_unit=quota_unit(config),
    )


def has_quota(config: dict[str, Any]) -> bool:
    """Whether the limiter limits a rate (not only concurrency)."""
    return config.get("rate_per_second") is not None or config.get("limit") is not None


def quota_unit(config: dict[str, Any]) -> str:
    """What the limiter's quota counts: ``"requests"`` over time for a limiter with a
    rate, else (concurrency only) ``"concurrent-requests"``."""
    return "requests" if has_quota(config) else "concurrent-requests"


async def check(
    limiter_id: str, key: str, cost: int = 1, timeout: float = 0
) -> tuple[Permit | None, RateLimitResult]:
    """Takes ``cost`` units of ``limiter_id`` for ``key`` (waiting up to ``timeout``).

    Returns the permit (``None`` if refused; the caller releases it) and the result.
    Raises ``LimiterNotFoundError`` and ``StoreUnavailableError`` (fail-closed outage)."""
    config = _native.limiter_config(limiter_id)
    permit: Permit | None
    try:
        if timeout and timeout > 0:
            permit = await _api._acquire(limiter_id, timeout, key, cost)
        else:
            permit = await _api._attempt(limiter_id, key, cost)
    except StoreUnavailableError:
        raise
    except RateLimiterAcquisitionError:
        permit = None
    if permit is not None:
        return permit, to_result(permit.decision, True, limiter_id, config)
    decision = await _api._state(limiter_id, key, cost)
    return None, to_result(decision, False, limiter_id, config)
